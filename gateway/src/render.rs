//! How answers look: rows as a table, CSV or JSON lines, and campaign
//! reports as a table or CSV. Rounding happens here and only here: the
//! values themselves, and `--format json`, keep full precision.

use footfall_report::campaign::{CampaignReport, Figures};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
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
                out += &serde_json::to_string(r).expect("rows serialize");
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
            let header = keys.iter().map(|k| k.to_string()).collect();
            let cells = rows.iter().map(|r| {
                keys.iter()
                    .map(|k| cell(r.get(k.as_str()).unwrap_or(&Value::Null)))
                    .collect()
            });
            out += &aligned(
                &std::iter::once(header).chain(cells).collect::<Vec<_>>(),
                "",
            );
        }
    }
    out
}

/// Rows of cells as lines, each column right-aligned to its widest cell,
/// columns two spaces apart, every line after `indent`.
fn aligned(rows: &[Vec<String>], indent: &str) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        out += indent;
        out += &row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.push('\n');
    }
    out
}

/// The SPEC §7 columns of one report row, in a fixed order for CSV, then
/// SPEC §8's on people (appended, so the older columns keep their place).
fn csv_row(m: &Map<String, Value>) -> Map<String, Value> {
    const COLS: [&str; 26] = [
        "campaign_id",
        "store_id",
        "visits",
        "visitors",
        "passersby",
        "baseline_visits",
        "baseline_weeks_used",
        "lift",
        "incremental_visits",
        "visits_per_1k_impressions",
        "cost_per_incremental_visit",
        "capture_rate",
        "did_lift",
        "detected",
        "visitors_new",
        "visitors_returning",
        "visitors_randomized",
        "unique_visitors_est",
        "dwell_sum_s",
        "dwell_counts",
        "entries_est",
        "baseline_entries_est",
        "entries_lift",
        "incremental_entries_est",
        "entries_did_lift",
        "person_hours_est",
    ];
    COLS.iter()
        .map(|k| {
            let v = match m.get(*k) {
                Some(Value::Null) | None => Value::from(""),
                Some(v) => v.clone(),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// Rounds every fractional number in `v` to 4 decimals, for people, but
/// `spend`, which is the user's own figure.
fn round(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            *v = serde_json::json!((x * 10_000.0).round() / 10_000.0);
        }
        Value::Array(a) => a.iter_mut().for_each(round),
        Value::Object(m) => m
            .iter_mut()
            .filter(|(k, _)| *k != "spend")
            .for_each(|(_, v)| round(v)),
        _ => {}
    }
}

fn rounded<T: serde::Serialize>(value: &T) -> Value {
    let mut v = serde_json::to_value(value).expect("reports serialize");
    round(&mut v);
    v
}

/// Campaign reports as CSV: per campaign, the totals as store `ALL`, then
/// one row per store, in the columns of `csv_row`.
pub fn campaigns_csv(reports: &[CampaignReport]) -> String {
    let rows: Vec<Map<String, Value>> = reports
        .iter()
        .flat_map(|r| {
            let id = Value::from(r.campaign_id.as_str());
            let total = figures_row(&id, "ALL", &r.figures);
            std::iter::once(total).chain(
                r.stores
                    .iter()
                    .map(move |s| figures_row(&id, &s.store_id, &s.figures)),
            )
        })
        .map(|m| csv_row(&m))
        .collect();
    render(&rows, Format::Csv)
}

fn figures_row(campaign_id: &Value, store_id: &str, f: &Figures) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("campaign_id".into(), campaign_id.clone());
    m.insert("store_id".into(), Value::from(store_id));
    if let Value::Object(o) = rounded(f) {
        m.extend(o);
    }
    m
}

/// Renders campaign reports for people: the totals, then one row per store.
pub fn campaigns_table(reports: &[CampaignReport]) -> String {
    let reports: Vec<Value> = reports.iter().map(rounded).collect();
    let mut out = String::new();
    let keys = [
        "visits",
        "baseline_visits",
        "baseline_weeks_used",
        "lift",
        "incremental_visits",
        "did_lift",
        "entries_est",
        "baseline_entries_est",
        "entries_lift",
        "entries_did_lift",
        "visitors",
        "passersby",
        "capture_rate",
        "unique_visitors_est",
    ];
    for r in &reports {
        out += &format!(
            "campaign {} ({}, {}): {} .. {}; impressions {}, reach {}, spend {}\n",
            r["campaign_id"].as_str().unwrap_or(""),
            r["name"].as_str().unwrap_or(""),
            r["channel"].as_str().unwrap_or(""),
            r["start"].as_str().unwrap_or(""),
            r["end"].as_str().unwrap_or(""),
            r["impressions"],
            r["reach"],
            r["spend"]
        );
        out += &format!(
            "  visits_per_1k_impressions {}, cost_per_incremental_visit {}, control_stores {}\n",
            r["visits_per_1k_impressions"], r["cost_per_incremental_visit"], r["control_stores"]
        );
        let mut rows: Vec<Vec<String>> = vec![std::iter::once("store".to_string())
            .chain(keys.iter().map(|k| k.to_string()))
            .collect()];
        let cell = |v: &Value| {
            if v.is_null() {
                "-".to_string()
            } else {
                v.to_string()
            }
        };
        rows.push(
            std::iter::once("ALL".to_string())
                .chain(keys.iter().map(|k| cell(&r[*k])))
                .collect(),
        );
        for s in r["stores"].as_array().into_iter().flatten() {
            rows.push(
                std::iter::once(s["store_id"].as_str().unwrap_or("").to_string())
                    .chain(keys.iter().map(|k| cell(&s[*k])))
                    .collect(),
            );
        }
        out += &aligned(&rows, "  ");
        for w in r["warnings"].as_array().into_iter().flatten() {
            out += &format!("  note: {}\n", w.as_str().unwrap_or(""));
        }
        out.push('\n');
    }
    out
}
