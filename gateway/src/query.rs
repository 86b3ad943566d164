//! Answers for `report` and `stores`: rows under SPEC field names, per store
//! and agent, printed as a table, CSV, or JSON lines.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use footfall_report::{DayReport, Sketch, WindowReport};
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
            // Distinct people over the period: merged visitor sketches
            // (SPEC §4), with the chain as a whole as store `*`.
            let sketches = distinct_visitors(store, by, q)?;
            let mut chain: BTreeMap<String, u64> = BTreeMap::new();
            for ((_, _, p), counts) in &groups {
                *chain.entry(p.clone()).or_default() +=
                    counts.get("visits").and_then(Value::as_u64).unwrap_or(0);
            }
            let error = (footfall_report::sketch::standard_error() * 10_000.0).round() / 10_000.0;
            let mut push = |s: &str, a: &str, p: &str, counts: Map<String, Value>| {
                let mut row = Map::new();
                row.insert("store_id".into(), json!(s));
                row.insert("agent_id".into(), json!(a));
                row.insert(if by == By::Day { "date" } else { "week" }.into(), json!(p));
                row.extend(counts);
                let est = sketches
                    .get(&(s.to_string(), a.to_string(), p.to_string()))
                    .map_or(0, |k| k.estimate().round() as u64);
                row.insert("unique_visitors_est".into(), json!(est));
                row.insert("unique_visitors_rel_error".into(), json!(error));
                rows.push(row);
            };
            for ((s, a, p), counts) in groups {
                push(&s, &a, &p, counts);
            }
            if q.store_id.is_none() {
                for (p, visits) in chain {
                    let mut counts = Map::new();
                    counts.insert("visits".into(), json!(visits));
                    push("*", "*", &p, counts);
                }
            }
        }
    }
    Ok(rows)
}

/// Each store's IANA time zone, from its agents' last status (UTC when a
/// store has not said): local days and campaign dates are cut in it.
pub fn store_timezones(store: &dyn ReportStore) -> Result<BTreeMap<String, jiff::tz::TimeZone>> {
    let mut out = BTreeMap::new();
    for a in store.agents()? {
        if let Some(tz) = a
            .status
            .get("timezone")
            .and_then(|t| t.as_str())
            .and_then(|n| jiff::tz::TimeZone::get(n).ok())
        {
            out.insert(a.store_id.clone(), tz);
        }
    }
    Ok(out)
}

/// Whether the zone's offset is a whole number of hours at every instant
/// of [from, to) (no bound: 1970 to 2100): then every local midnight is a
/// whole UTC hour, and a store's hours can stand for its windows when a
/// report cuts local days (zones such as Asia/Kolkata cannot).
pub(crate) fn whole_hours(tz: &jiff::tz::TimeZone, from: Option<i64>, to: Option<i64>) -> bool {
    let at = |t: i64| jiff::Timestamp::from_second(t).ok();
    let (Some(from), Some(to)) = (
        at(from.unwrap_or(0)),
        at(to.unwrap_or(4_102_444_800)), // 2100-01-01
    ) else {
        return false;
    };
    let whole = |o: jiff::tz::Offset| o.seconds() % 3_600 == 0;
    whole(tz.to_offset(from))
        && tz
            .following(from)
            .take_while(|t| t.timestamp() < to)
            .all(|t| whole(t.offset()))
}

/// Distinct visitors per (store, agent, period) and per period across the
/// chain (store and agent `*`), from merged sketches: of hours where the
/// store's zone allows, else of windows.
fn distinct_visitors(
    store: &dyn ReportStore,
    by: By,
    q: &Query,
) -> Result<BTreeMap<(String, String, String), Sketch>> {
    let tzs = store_timezones(store)?;
    let mut out: BTreeMap<(String, String, String), Sketch> = BTreeMap::new();
    // Local days can start up to 14 h either side of UTC midnight.
    let wide = Query {
        store_id: q.store_id.clone(),
        from_s: q.from_s.map(|f| f - 86_400),
        to_s: q.to_s.map(|t| t + 86_400),
    };
    let mut add = |store_id: &str, agent_id: &str, start: i64, sketch: &Sketch| {
        let tz = tzs
            .get(store_id)
            .cloned()
            .unwrap_or(jiff::tz::TimeZone::UTC);
        let Ok(ts) = jiff::Timestamp::from_second(start) else {
            return;
        };
        let date = ts.to_zoned_datetime(tz).date();
        let noon = date
            .to_datetime(jiff::civil::Time::constant(12, 0, 0, 0))
            .to_zoned_datetime(jiff::tz::TimeZone::UTC);
        let Ok(t) = noon.map(|z| z.timestamp().as_second()) else {
            return;
        };
        if !(q.from_s.is_none_or(|f| t >= f) && q.to_s.is_none_or(|to| t < to)) {
            return;
        }
        let period = match by {
            By::Week => iso_week(&date.to_string()),
            _ => date.to_string(),
        };
        out.entry((store_id.to_string(), agent_id.to_string(), period.clone()))
            .or_default()
            .merge(sketch);
        // The chain's day has every store's visitors: dense from the start.
        out.entry(("*".into(), "*".into(), period))
            .or_insert_with(Sketch::new_dense)
            .merge(sketch);
    };
    let by_window: BTreeSet<String> = store
        .reporting_agents()?
        .into_iter()
        .map(|(store_id, _, _)| store_id)
        .filter(|s| wide.store_id.as_ref().is_none_or(|w| w == s))
        .filter(|s| {
            let tz = tzs.get(s).cloned().unwrap_or(jiff::tz::TimeZone::UTC);
            !whole_hours(&tz, wide.from_s, wide.to_s)
        })
        .collect();
    for h in store.hours(&wide)? {
        if !by_window.contains(&h.store_id) {
            add(
                &h.store_id,
                &h.agent_id,
                h.hour_start,
                &h.counts.visitor_sketch,
            );
        }
    }
    for store_id in by_window {
        let one = Query {
            store_id: Some(store_id),
            ..wide.clone()
        };
        for w in store.windows(&one)? {
            add(&w.store_id, &w.agent_id, w.window_start, &w.visitor_sketch);
        }
    }
    Ok(out)
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
        Value::Null => String::new(),
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
                    .map(|k| cell(r.get(k.as_str()).unwrap_or(&Value::Null)))
                    .collect::<Vec<_>>()
                    .join(",");
                out.push('\n');
            }
        }
        Format::Table => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    keys.iter()
                        .map(|k| cell(r.get(k.as_str()).unwrap_or(&Value::Null)))
                        .collect()
                })
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
    // Every agent that ever reported, even one that never sent a status
    // (its reports came by `ingest`) or went quiet long ago.
    for (s, a, last_end) in store.reporting_agents()? {
        let mut row = Map::new();
        row.insert("last_report_unix_s".into(), json!(last_end));
        seen.insert((s, a), row);
    }
    for a in store.agents()? {
        let mut row = seen
            .remove(&(a.store_id.clone(), a.agent_id.clone()))
            .unwrap_or_default();
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
        row.insert(
            "capture_finished".into(),
            a.status
                .get("capture_finished")
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
            "last_report_unix_s".into(),
            info.remove("last_report_unix_s").unwrap_or(Value::Null),
        );
        row.insert(
            "outbox_pending".into(),
            info.remove("outbox_pending").unwrap_or(Value::Null),
        );
        row.insert(
            "capture_finished".into(),
            info.remove("capture_finished").unwrap_or(Value::Null),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;
    use footfall_report::{Report, DWELL_EDGES_S, WINDOW_SCHEMA};
    use serde_json::json;

    /// 2026-03-30T00:00:00Z, a Monday.
    const T: i64 = 1_774_828_800;

    /// Spreads n over 128 bits as HMAC output would be (splitmix64).
    fn id(n: u64) -> u128 {
        let mut x = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        (u128::from(x) << 64) | u128::from(n)
    }

    /// One agent's window of `n` visitors, every count `n` but the ones
    /// the tests leave at 0.
    fn window_report(store: &str, seq: u64, start: i64, n: u64, sketch: Sketch) -> Report {
        Report::Window(WindowReport {
            schema: WINDOW_SCHEMA.into(),
            store_id: store.to_string(),
            agent_id: "a".into(),
            seq,
            window_start: start,
            window_end: start + 900,
            frames: n,
            frames_no_signal: 0,
            detected: n,
            visits: n,
            visitors: n,
            visitors_new: n,
            visitors_returning: 0,
            visitors_randomized: 0,
            passersby: 0,
            residents: 0,
            dwell_edges_s: DWELL_EDGES_S.to_vec(),
            dwell_counts: vec![n, 0, 0, 0, 0, 0],
            dwell_sum_s: 0,
            visitor_sketch: sketch,
            agent_version: "t".into(),
            params_hash: "p".into(),
        })
    }

    /// One agent's day of `n` new visitors.
    fn day_report(store: &str, seq: u64, date: &str, n: u64) -> Report {
        Report::Day(footfall_report::DayReport {
            schema: footfall_report::DAY_SCHEMA.into(),
            store_id: store.to_string(),
            agent_id: "a".into(),
            seq,
            date: date.to_string(),
            visits: n,
            unique_visitors: n,
            visitors_new: n,
            visitors_returning: 0,
            visitors_randomized: 0,
            residents: 0,
            agent_version: "t".into(),
            params_hash: "p".into(),
        })
    }

    /// A week of two stores: each day 400 visitors per store, of whom 300
    /// come back every day (regulars) and 100 are new that day; 50 of the
    /// regulars shop at both stores. Exact distinct visitors are known.
    fn week() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        for (si, store) in ["A", "B"].iter().enumerate() {
            for day in 0..7u64 {
                let regulars = (0..300u64).map(|r| {
                    if r < 50 {
                        r
                    } else {
                        1000 * (si as u64 + 1) + r
                    }
                });
                let fresh = (0..100u64).map(|n| 100_000 * (si as u64 + 1) + 1000 * day + n);
                let mut sketch = Sketch::new();
                let mut n = 0;
                for v in regulars.chain(fresh) {
                    sketch.insert(id(v));
                    n += 1;
                }
                let start = T + day as i64 * 86_400 + 12 * 3600;
                s.put(&window_report(store, 0, start, n, sketch)).unwrap();
                let date = jiff::Timestamp::from_second(start)
                    .unwrap()
                    .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .date();
                s.put(&day_report(store, 0, &date.to_string(), n)).unwrap();
            }
        }
        (dir, s)
    }

    /// A local day's distinct visitors are those of the windows that start
    /// in it, in Kolkata (UTC+05:30, read by window) as in Berlin (read by
    /// hour): the estimate is that of a sketch of exactly those visitors.
    /// Every 15-minute window has 1 to 10 visitors of its own.
    #[test]
    fn local_days_are_cut_at_local_midnight_by_hour_or_by_window() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        let mut want = BTreeMap::new();
        for (si, (store, zone)) in [("K", "Asia/Kolkata"), ("B", "Europe/Berlin")]
            .iter()
            .enumerate()
        {
            let tz = jiff::tz::TimeZone::get(zone).unwrap();
            let day: &mut Sketch = want.entry(*store).or_default();
            s.set_status(&crate::store::AgentInfo {
                store_id: store.to_string(),
                agent_id: "a".into(),
                last_seen_unix_s: T,
                status: json!({"state": "online", "timezone": zone}),
            })
            .unwrap();
            for q in 0..3 * 96u64 {
                let start = T + q as i64 * 900;
                let mut sketch = Sketch::new();
                let n = 1 + q * 7 % 10;
                for v in 0..n {
                    sketch.insert(id(1_000_000 * si as u64 + 10 * q + v));
                }
                let local = jiff::Timestamp::from_second(start)
                    .unwrap()
                    .to_zoned_datetime(tz.clone())
                    .date();
                if local.to_string() == "2026-03-31" {
                    day.merge(&sketch);
                }
                s.put(&window_report(store, q, start, 2, sketch)).unwrap();
            }
            s.put(&day_report(store, 1_000, "2026-03-31", 192)).unwrap();
        }
        let q = query(None, Some("2026-03-31"), Some("2026-03-31")).unwrap();
        let rows = report_rows(&s, By::Day, &q).unwrap();
        for store in ["K", "B"] {
            let row = rows.iter().find(|r| r["store_id"] == store).unwrap();
            let est = row["unique_visitors_est"].as_u64().unwrap();
            assert_eq!(est, want[store].estimate().round() as u64, "{store}");
        }
    }

    #[test]
    fn weekly_distinct_visitors_from_sketches_match_exact_counts() {
        let (_dir, s) = week();
        let rows = report_rows(&s, By::Week, &Query::default()).unwrap();
        let get = |store: &str| {
            rows.iter()
                .find(|r| r["store_id"] == store)
                .unwrap_or_else(|| panic!("{rows:?}"))
        };
        // Per store: 300 regulars + 7 x 100 new = 1000 distinct, 2800 visits.
        // Chain: 50 shared regulars + 2 x 250 own + 2 x 700 new = 1950.
        for (store, exact, visits) in [
            ("A", 1000.0, 2800),
            ("B", 1000.0, 2800),
            ("*", 1950.0, 5600),
        ] {
            let r = get(store);
            let est = r["unique_visitors_est"].as_f64().unwrap();
            let err = r["unique_visitors_rel_error"].as_f64().unwrap();
            assert!(
                (est - exact).abs() <= 3.0 * err * exact,
                "{store}: estimate {est}, exact {exact}"
            );
            assert_eq!(r["visits"], visits);
        }
        // Daily: 400 distinct per store and day.
        let days = report_rows(
            &s,
            By::Day,
            &Query {
                store_id: Some("A".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(days.len(), 7);
        for d in &days {
            let est = d["unique_visitors_est"].as_f64().unwrap();
            assert!((est - 400.0).abs() <= 3.0 * 0.0081 * 400.0 + 2.0, "{est}");
        }
        let text = render(&rows, Format::Table);
        assert_eq!(text.lines().count(), rows.len() + 1, "{text}");
    }
}
