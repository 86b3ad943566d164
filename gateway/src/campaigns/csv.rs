//! The campaigns CSV of SPEC §7: its columns, and every row checked, with
//! each problem reported by line before anything is stored.

use std::collections::BTreeSet;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::calendar::resolve;
use crate::store::{Campaign, When};

const COLUMNS: [&str; 9] = [
    "campaign_id",
    "name",
    "channel",
    "start",
    "end",
    "stores",
    "impressions",
    "reach",
    "spend",
];

/// Parses a campaigns CSV; every bad row is reported with its line number.
pub fn parse_csv(
    text: &str,
    file: &str,
    known_stores: &BTreeSet<String>,
) -> Result<Vec<Campaign>, Vec<String>> {
    let mut errors = Vec::new();
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = match rdr.headers() {
        Ok(h) => h.iter().map(str::to_string).collect(),
        Err(e) => return Err(vec![format!("{file}:1: {e}")]),
    };
    if headers != COLUMNS {
        return Err(vec![format!(
            "{file}:1: columns must be exactly {}",
            COLUMNS.join(",")
        )]);
    }
    let mut out: Vec<Campaign> = Vec::new();
    let mut seen = BTreeSet::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("{file}:{line}: {e}"));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let mut bad = |what: String| errors.push(format!("{file}:{line}: {what}"));
        let f = |i: usize| rec.get(i).unwrap_or("").to_string();
        let id = f(0);
        if id.is_empty() {
            bad("campaign_id is empty".into());
            continue;
        }
        if !seen.insert(id.clone()) {
            bad(format!("campaign_id {id:?} appears twice in the file"));
            continue;
        }
        let start = parse_when(&f(3)).map_err(|e| bad(format!("start {:?}: {e}", f(3))));
        let end = parse_when(&f(4)).map_err(|e| bad(format!("end {:?}: {e}", f(4))));
        let whole = |col: usize, name: &str, bad: &mut dyn FnMut(String)| -> Option<u64> {
            f(col)
                .parse::<u64>()
                .map_err(|_| {
                    bad(format!(
                        "{name} {:?}: must be a whole number, 0 or more",
                        f(col)
                    ))
                })
                .ok()
        };
        let impressions = whole(6, "impressions", &mut bad);
        let reach = whole(7, "reach", &mut bad);
        let spend = match f(8).parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => Some(s),
            _ => {
                bad(format!("spend {:?}: must be a number, 0 or more", f(8)));
                None
            }
        };
        let stores = if f(5) == "*" {
            Some(None)
        } else {
            let list: Vec<String> = f(5)
                .split(';')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            let unknown: Vec<&String> =
                list.iter().filter(|s| !known_stores.contains(*s)).collect();
            if list.is_empty() {
                bad("stores is empty: list store ids separated by ';', or '*'".into());
                None
            } else if !unknown.is_empty() {
                bad(format!(
                    "unknown store(s) {unknown:?}: no reports from them yet"
                ));
                None
            } else {
                Some(Some(list))
            }
        };
        if let (Ok(s), Ok(e)) = (&start, &end) {
            if rough_seconds(e) <= rough_seconds(s) {
                bad("end must be after start".into());
                continue;
            }
        }
        if let (Some(i), Some(r)) = (impressions, reach) {
            if r > i {
                bad(format!("reach {r} exceeds impressions {i}"));
                continue;
            }
        }
        if let (Ok(start), Ok(end), Some(impressions), Some(reach), Some(spend), Some(stores)) =
            (start, end, impressions, reach, spend, stores)
        {
            out.push(Campaign {
                campaign_id: id,
                name: f(1),
                channel: f(2),
                start,
                end,
                stores,
                impressions,
                reach,
                spend,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_when(s: &str) -> Result<When, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(When::At(t.as_second()));
    }
    if s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok() {
        return Ok(When::Date(s.to_string()));
    }
    Err(
        "expected ISO 8601 with an offset (2026-03-09T09:00:00+01:00) or a date (2026-03-09)"
            .into(),
    )
}

/// For ordering checks only: dates as UTC midnight.
fn rough_seconds(w: &When) -> i64 {
    match w {
        When::At(t) => *t,
        When::Date(_) => resolve(w, &TimeZone::UTC).unwrap_or(0),
    }
}
