//! Answers for `report` and `stores`: rows under SPEC field names, per store
//! and agent, printed as a table, CSV, or JSON lines.

use std::collections::BTreeMap;

use anyhow::Result;
use footfall_report::{DayReport, WindowReport};
use serde_json::{json, Map, Value};

use crate::store::{now_s, Query, ReportStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Window,
    Hour,
    Day,
    Week,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Window counts that add up across windows (SPEC §4). `detected`,
/// `visitors` and `residents` add up per window: a device counts once in
/// each window it is in.
const WINDOW_SUMS: [&str; 11] = [
    "frames",
    "frames_no_signal",
    "detected",
    "visits",
    "visitors",
    "visitors_new",
    "visitors_returning",
    "visitors_randomized",
    "passersby",
    "residents",
    "dwell_sum_s",
];

const DAY_FIELDS: [&str; 6] = [
    "visits",
    "unique_visitors",
    "visitors_new",
    "visitors_returning",
    "visitors_randomized",
    "residents",
];

fn window_row(w: &WindowReport) -> Map<String, Value> {
    let v = serde_json::to_value(w).expect("serializes");
    let mut row = Map::new();
    for k in WINDOW_SUMS {
        row.insert(k.into(), v[k].clone());
    }
    row.insert("dwell_counts".into(), json!(w.dwell_counts));
    row
}

fn add_into(acc: &mut Map<String, Value>, row: &Map<String, Value>) {
    for (k, v) in row {
        match (acc.get_mut(k), v) {
            (Some(Value::Number(a)), Value::Number(b)) => {
                *a = (a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0)).into();
            }
            (Some(Value::Array(a)), Value::Array(b)) => {
                for (x, y) in a.iter_mut().zip(b) {
                    *x = (x.as_u64().unwrap_or(0) + y.as_u64().unwrap_or(0)).into();
                }
            }
            _ => {
                acc.insert(k.clone(), v.clone());
            }
        }
    }
}

fn day_start(s: &str, what: &str) -> Result<i64> {
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| anyhow::anyhow!("{what} {s:?}: expected YYYY-MM-DD"))?;
    Ok(d.to_zoned_datetime(jiff::tz::TimeZone::UTC)?
        .timestamp()
        .as_second())
}

/// A query from command-line or URL arguments: `from`/`to` are UTC days,
/// both inclusive.
pub fn query(store_id: Option<String>, from: Option<&str>, to: Option<&str>) -> Result<Query> {
    Ok(Query {
        store_id,
        from_s: from.map(|s| day_start(s, "from")).transpose()?,
        to_s: to
            .map(|s| day_start(s, "to").map(|t| t + 86_400))
            .transpose()?,
    })
}

/// Rows of a report: each a JSON object with `store_id`, `agent_id`, the
/// period, and counts.
pub fn report_rows(store: &dyn ReportStore, by: By, q: &Query) -> Result<Vec<Map<String, Value>>> {
    let mut rows = Vec::new();
    match by {
        By::Window | By::Hour => {
            let mut groups: BTreeMap<(String, String, i64), Map<String, Value>> = BTreeMap::new();
            for w in store.windows(q)? {
                let (period, start) = match by {
                    By::Window => ("window_start", w.window_start),
                    _ => ("hour_start", w.window_start.div_euclid(3600) * 3600),
                };
                let acc = groups
                    .entry((w.store_id.clone(), w.agent_id.clone(), start))
                    .or_insert_with(|| {
                        let mut m = Map::new();
                        m.insert(period.into(), json!(start));
                        m
                    });
                add_into(acc, &window_row(&w));
            }
            for ((s, a, _), counts) in groups {
                let mut row = Map::new();
                row.insert("store_id".into(), json!(s));
                row.insert("agent_id".into(), json!(a));
                row.extend(counts);
                rows.push(row);
            }
        }
        By::Day | By::Week => {
            let mut groups: BTreeMap<(String, String, String), Map<String, Value>> =
                BTreeMap::new();
            for d in store.days(q)? {
                if !in_range(&d, q) {
                    continue;
                }
                let period = match by {
                    By::Day => d.date.clone(),
                    _ => iso_week(&d.date),
                };
                let acc = groups
                    .entry((d.store_id.clone(), d.agent_id.clone(), period))
                    .or_default();
                let v = serde_json::to_value(&d).expect("serializes");
                let mut row = Map::new();
                for k in DAY_FIELDS {
                    // Distinct counts do not add up across days: a week
                    // sums them as visitor-days (issue #5 merges sketches).
                    let name = if by == By::Week && k != "visits" {
                        format!("{k}_daysum")
                    } else {
                        k.to_string()
                    };
                    row.insert(name, v[k].clone());
                }
                add_into(acc, &row);
            }
            for ((s, a, p), counts) in groups {
                let mut row = Map::new();
                row.insert("store_id".into(), json!(s));
                row.insert("agent_id".into(), json!(a));
                row.insert(if by == By::Day { "date" } else { "week" }.into(), json!(p));
                row.extend(counts);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

fn in_range(d: &DayReport, q: &Query) -> bool {
    let Ok(date) = d.date.parse::<jiff::civil::Date>() else {
        return false;
    };
    let noon = date
        .to_datetime(jiff::civil::Time::constant(12, 0, 0, 0))
        .to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let Ok(t) = noon.map(|z| z.timestamp().as_second()) else {
        return false;
    };
    q.from_s.is_none_or(|f| t >= f) && q.to_s.is_none_or(|to| t < to)
}

fn iso_week(date: &str) -> String {
    match date.parse::<jiff::civil::Date>() {
        Ok(d) => {
            let w = d.iso_week_date();
            format!("{}-W{:02}", w.year(), w.week())
        }
        Err(_) => date.to_string(),
    }
}

/// Renders rows; every row has the same keys in the same order.
pub fn render(rows: &[Map<String, Value>], format: Format) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else {
        return if format == Format::Table {
            "no reports match\n".into()
        } else {
            String::new()
        };
    };
    let keys: Vec<&String> = first.keys().collect();
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join("/"),
        other => other.to_string(),
    };
    match format {
        Format::Json => {
            for r in rows {
                out += &Value::Object(r.clone()).to_string();
                out.push('\n');
            }
        }
        Format::Csv => {
            out += &keys
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(",");
            out.push('\n');
            for r in rows {
                out += &keys
                    .iter()
                    .map(|k| cell(&r[k.as_str()]))
                    .collect::<Vec<_>>()
                    .join(",");
                out.push('\n');
            }
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| keys.iter().map(|k| cell(&r[k.as_str()])).collect())
                .collect();
            let widths: Vec<usize> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    cells
                        .iter()
                        .map(|c| c[i].len())
                        .max()
                        .unwrap_or(0)
                        .max(k.len())
                })
                .collect();
            let line = |vals: Vec<&str>| {
                vals.iter()
                    .zip(&widths)
                    .map(|(v, w)| format!("{v:>w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    + "\n"
            };
            out += &line(keys.iter().map(|k| k.as_str()).collect());
            for c in &cells {
                out += &line(c.iter().map(|s| s.as_str()).collect());
            }
        }
    }
    out
}

/// `stores`: each agent, when last heard of, online or offline, and how
/// many windows arrived of those expected on each of the last 7 UTC days.
pub fn stores_rows(store: &dyn ReportStore) -> Result<Vec<Map<String, Value>>> {
    let now = now_s();
    let today = now.div_euclid(86_400);
    let mut rows = Vec::new();
    let mut seen: BTreeMap<(String, String), Map<String, Value>> = BTreeMap::new();
    for a in store.agents()? {
        let mut row = Map::new();
        row.insert("last_seen_unix_s".into(), json!(a.last_seen_unix_s));
        row.insert(
            "state".into(),
            a.status.get("state").cloned().unwrap_or(json!("unknown")),
        );
        row.insert(
            "outbox_pending".into(),
            a.status
                .get("outbox_pending")
                .cloned()
                .unwrap_or(Value::Null),
        );
        seen.insert((a.store_id, a.agent_id), row);
    }
    let windows = store.windows(&Query {
        from_s: Some((today - 6) * 86_400),
        ..Query::default()
    })?;
    let mut per_day: BTreeMap<(String, String), [u64; 7]> = BTreeMap::new();
    let mut window_len: BTreeMap<(String, String), i64> = BTreeMap::new();
    for w in &windows {
        let key = (w.store_id.clone(), w.agent_id.clone());
        let day = w.window_start.div_euclid(86_400) - (today - 6);
        if (0..7).contains(&day) {
            per_day.entry(key.clone()).or_default()[day as usize] += 1;
        }
        window_len.insert(key.clone(), w.window_end - w.window_start);
        seen.entry(key).or_default();
    }
    for ((s, a), mut info) in seen {
        let mut row = Map::new();
        row.insert("store_id".into(), json!(s));
        row.insert("agent_id".into(), json!(a));
        row.insert(
            "state".into(),
            info.remove("state").unwrap_or(json!("unknown")),
        );
        row.insert(
            "last_seen_unix_s".into(),
            info.remove("last_seen_unix_s").unwrap_or(Value::Null),
        );
        row.insert(
            "outbox_pending".into(),
            info.remove("outbox_pending").unwrap_or(Value::Null),
        );
        let expected = 86_400
            / window_len
                .get(&(s.clone(), a.clone()))
                .copied()
                .unwrap_or(900)
                .max(1);
        let counts = per_day
            .get(&(s.clone(), a.clone()))
            .copied()
            .unwrap_or_default();
        let complete: Vec<String> = counts.iter().map(|c| format!("{c}/{expected}")).collect();
        row.insert("windows_last_7_days".into(), json!(complete.join(" ")));
        rows.push(row);
    }
    Ok(rows)
}
