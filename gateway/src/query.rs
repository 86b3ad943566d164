//! Answers for `report`, `stores` and the dashboard's dwell chart: rows
//! under SPEC field names, per store and agent. Rendering them is `render`'s.
//!
//! Invariants: sums are of `footfall_report::Counts` and `DayCounts`, never
//! of field lists; distinct people over more than one window come from
//! merged visitor sketches, never from summing distinct counts.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use footfall_report::{Counts, DayCounts, People, Sketch, State, WindowSums, DWELL_EDGES_S};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::calendar::{self, now_s};
use crate::store::{Query, ReportStore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    Window,
    Hour,
    Day,
    Week,
}

impl By {
    /// `window`, `hour`, `day` or `week`, as the API's `by=` takes it.
    pub fn parse(s: &str) -> Result<By> {
        Ok(match s {
            "window" => By::Window,
            "hour" => By::Hour,
            "day" => By::Day,
            "week" => By::Week,
            other => anyhow::bail!("by={other}: expected window, hour, day or week"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            By::Window => "window",
            By::Hour => "hour",
            By::Day => "day",
            By::Week => "week",
        }
    }
}

/// A serializable value as the fields of a row.
fn fields<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v).expect("rows serialize") {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A query from command-line or URL arguments: `from`/`to` are UTC days,
/// both inclusive.
pub fn query(store_id: Option<String>, from: Option<&str>, to: Option<&str>) -> Result<Query> {
    Ok(Query {
        store_id,
        from_s: from.map(|s| calendar::day_start(s, "from")).transpose()?,
        to_s: to
            .map(|s| calendar::day_start(s, "to").map(|t| t + 86_400))
            .transpose()?,
    })
}

/// Whether `report_rows` can answer: the chain as a whole has days and
/// weeks only.
pub fn check(by: By, q: &Query) -> Result<()> {
    if matches!(by, By::Window | By::Hour) && q.store_id.as_deref() == Some(CHAIN) {
        anyhow::bail!(
            "store {CHAIN} (the chain as a whole) is for days and weeks; leave the store out for every store's {}s",
            by.name()
        );
    }
    Ok(())
}

/// Rows of a report: each a JSON object with `store_id`, `agent_id`, the
/// period, and counts.
pub fn report_rows(store: &dyn ReportStore, by: By, q: &Query) -> Result<Vec<Map<String, Value>>> {
    check(by, q)?;
    match by {
        By::Window | By::Hour => window_rows(store, by, q),
        By::Day | By::Week => day_rows(store, by, q),
    }
}

fn window_rows(store: &dyn ReportStore, by: By, q: &Query) -> Result<Vec<Map<String, Value>>> {
    let mut groups: BTreeMap<(String, String, i64), Counts> = BTreeMap::new();
    for w in store.windows(q)? {
        let start = match by {
            By::Window => w.window_start,
            _ => w.window_start.div_euclid(3600) * 3600,
        };
        groups
            .entry((w.store_id.clone(), w.agent_id.clone(), start))
            .or_default()
            .add(&Counts::of_window(&w));
    }
    let period = if by == By::Window {
        "window_start"
    } else {
        "hour_start"
    };
    Ok(groups
        .into_iter()
        .map(|((s, a, start), counts)| {
            let mut row = Map::new();
            row.insert("store_id".into(), json!(s));
            row.insert("agent_id".into(), json!(a));
            row.insert(period.into(), json!(start));
            row.extend(fields(&WindowSums::from(&counts)));
            row.extend(people_fields(&counts));
            row
        })
        .collect())
}

/// SPEC §8 beside the device counts: `present_*` (mean over the row's
/// windows), `person_hours_est`, `entries_est`; `null` where any of the
/// row's windows came without estimates.
pub fn people_fields(counts: &Counts) -> Map<String, Value> {
    match counts.people() {
        Some(p) => fields(&p),
        // The same columns, each `null`.
        None => fields(&People::default())
            .into_iter()
            .map(|(k, _)| (k, Value::Null))
            .collect(),
    }
}

/// The store id that asks for the chain as a whole: its rows only.
pub const CHAIN: &str = "*";

fn day_rows(store: &dyn ReportStore, by: By, q: &Query) -> Result<Vec<Map<String, Value>>> {
    if q.store_id.as_deref() == Some(CHAIN) {
        if by == By::Day {
            return chain_day_rows(store, q);
        }
        // Weeks of the chain: every store's, of which the chain's rows.
        let all = Query {
            store_id: None,
            ..q.clone()
        };
        let mut rows = day_rows(store, by, &all)?;
        rows.retain(|r| r["store_id"] == CHAIN);
        return Ok(rows);
    }
    let mut groups: BTreeMap<(String, String, String), DayCounts> = BTreeMap::new();
    for d in store.days(q)? {
        if !calendar::date_in_range(&d.date, q) {
            continue;
        }
        let period = match by {
            By::Day => d.date.clone(),
            _ => calendar::iso_week(&d.date),
        };
        groups
            .entry((d.store_id.clone(), d.agent_id.clone(), period))
            .or_default()
            .add(&DayCounts::of_day(&d));
    }
    // Distinct people over the period: merged visitor sketches (SPEC §4),
    // with the chain as a whole as store `*`.
    let sketches = distinct_visitors(store, by, q)?;
    let mut chain: BTreeMap<String, DayCounts> = BTreeMap::new();
    for ((_, _, p), counts) in &groups {
        chain.entry(p.clone()).or_default().add(counts);
    }
    let mut rows = Vec::new();
    let mut push = |s: &str, a: &str, p: &str, counts: Map<String, Value>| {
        let mut row = Map::new();
        row.insert("store_id".into(), json!(s));
        row.insert("agent_id".into(), json!(a));
        row.insert(if by == By::Day { "date" } else { "week" }.into(), json!(p));
        row.extend(counts);
        let distinct = match sketches.get(&(s.to_string(), a.to_string(), p.to_string())) {
            None => None,
            Some(Distinct::Sketch(k)) => Some(Ok(k)),
            Some(Distinct::Unknown(why)) => Some(Err(*why)),
        };
        insert_distinct(&mut row, distinct);
        rows.push(row);
    };
    for ((s, a, p), counts) in groups {
        let mut row = fields(&counts);
        if by == By::Week {
            // Distinct counts do not add up across days: a week sums them
            // as visitor-days (`unique_visitors_est` is the distinct count).
            row = row
                .into_iter()
                .map(|(k, v)| match k.as_str() {
                    // Sums over days; people-hours and entries add up too.
                    "visits" | "person_hours_est" | "entries_est" => (k, v),
                    _ => (format!("{k}_daysum"), v),
                })
                .collect();
        }
        push(&s, &a, &p, row);
    }
    if q.store_id.is_none() {
        for (p, sums) in chain {
            let mut counts = Map::new();
            counts.insert("visits".into(), json!(sums.visits));
            counts.insert("person_hours_est".into(), json!(sums.person_hours_est));
            counts.insert("entries_est".into(), json!(sums.entries_est));
            push("*", "*", &p, counts);
        }
    }
    Ok(rows)
}

/// The dates of a query without bounds, as `day_totals` takes them.
const FIRST_DATE: &str = "0000-01-01";
const LAST_DATE: &str = "9999-12-31";

/// The chain by day (`store=*`): every store's day reports summed by the
/// database, and distinct visitors merged across the chain as last worked
/// out (`ChainDay`), worked out again only for the dates whose windows or
/// zones changed since: a year of a thousand stores is 365 cached sketches,
/// not millions of merges.
fn chain_day_rows(store: &dyn ReportStore, q: &Query) -> Result<Vec<Map<String, Value>>> {
    let utc_date = |t: i64| {
        calendar::local_date(t, &jiff::tz::TimeZone::UTC)
            .map_or_else(String::new, |d| d.to_string())
    };
    let from = q.from_s.map_or_else(|| FIRST_DATE.to_string(), utc_date);
    let to = q
        .to_s
        .map_or_else(|| LAST_DATE.to_string(), |t| utc_date(t - 86_400));
    let (totals, known, _) = chain_days_kept(store, &from, &to)?;
    Ok(totals
        .into_iter()
        .map(|(date, sums)| {
            let mut row = Map::new();
            row.insert("store_id".into(), json!(CHAIN));
            row.insert("agent_id".into(), json!(CHAIN));
            row.insert("date".into(), json!(date));
            row.insert("visits".into(), json!(sums.visits));
            row.insert("person_hours_est".into(), json!(sums.person_hours_est));
            row.insert("entries_est".into(), json!(sums.entries_est));
            let distinct = known
                .get(&date)
                .map(|d| d.distinct.as_ref().map_err(String::as_str));
            insert_distinct(&mut row, distinct);
            row
        })
        .collect())
}

/// Works out the chain's distinct visitors of every date whose windows or
/// zones changed since they were kept, and keeps them: what `serve` does
/// in the background (`keep`), so that the first `store=*` query after a
/// start, a `migrate` or a bulk load reads them instead of working out a
/// year of dates (368 s at 1,000 stores). Returns how many dates it
/// worked out.
pub fn keep_chain_days(store: &dyn ReportStore) -> Result<usize> {
    Ok(chain_days_kept(store, FIRST_DATE, LAST_DATE)?.2)
}

/// The day totals of dates `from` to `to`, the chain's distinct visitors
/// of each (worked out again where stale, and kept), and how many dates
/// were worked out.
#[allow(clippy::type_complexity)]
fn chain_days_kept(
    store: &dyn ReportStore,
    from: &str,
    to: &str,
) -> Result<(
    Vec<(String, DayCounts)>,
    BTreeMap<String, crate::store::ChainDay>,
    usize,
)> {
    let totals = store.day_totals(from, to)?;
    let zones = calendar::store_timezones(store)?;
    let stamp = calendar::zones_hash(&zones);
    let windows = store.date_windows(from, to, &zones)?;
    let mut known: BTreeMap<String, crate::store::ChainDay> = store
        .chain_days(from, to)?
        .into_iter()
        .map(|d| (d.date.clone(), d))
        .collect();
    let stale: Vec<&String> = totals
        .iter()
        .map(|(date, _)| date)
        .filter(|date| {
            let n = windows.get(*date).copied().unwrap_or(0);
            known
                .get(*date)
                .is_none_or(|k| k.windows != n || k.zones != stamp)
        })
        .collect();
    // A week at a time: each run holds every store's sketches of its days.
    let mut fresh = Vec::new();
    for run in consecutive(&stale, 7) {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            continue;
        };
        let merged: BTreeMap<String, Distinct> = match store.date_sketches(first, last, &zones)? {
            Some(dates) => dates
                .into_iter()
                .map(|(date, k)| {
                    (
                        date,
                        k.map_or(Distinct::Unknown(NO_SKETCH), Distinct::Sketch),
                    )
                })
                .collect(),
            None => {
                let within = crate::store::time::dates_query(first, last);
                distinct_visitors(store, By::Day, &within)?
                    .into_iter()
                    .filter(|((s, a, _), _)| s == CHAIN && a == CHAIN)
                    .map(|((_, _, date), d)| (date, d))
                    .collect()
            }
        };
        for date in &run {
            let distinct = match merged.get(date.as_str()) {
                Some(Distinct::Sketch(k)) => Ok(k.clone()),
                Some(Distinct::Unknown(why)) => Err(why.to_string()),
                None => Ok(Sketch::new()),
            };
            fresh.push(crate::store::ChainDay {
                date: date.to_string(),
                windows: windows.get(*date).copied().unwrap_or(0),
                zones: stamp,
                distinct,
            });
        }
    }
    // A cache: a database that takes no writes (read-only, full) still
    // answers, working the dates out again next time.
    if let Err(e) = store.put_chain_days(&fresh) {
        tracing::warn!(error = %e, "the chain's distinct visitors not kept; worked out again next time");
    }
    let worked_out = fresh.len();
    known.extend(fresh.into_iter().map(|d| (d.date.clone(), d)));
    Ok((totals, known, worked_out))
}

/// Sorted `dates` in runs of at most `max` consecutive dates. Each run is
/// read as one range, so two stale dates months apart (the day in
/// progress and a late report's) must not read the months between.
fn consecutive<'a>(dates: &[&'a String], max: usize) -> Vec<Vec<&'a String>> {
    let mut runs: Vec<Vec<&String>> = Vec::new();
    let mut next: Option<jiff::civil::Date> = None;
    for &date in dates {
        let day: Option<jiff::civil::Date> = date.parse().ok();
        match runs.last_mut() {
            Some(run) if run.len() < max && day.is_some() && day == next => run.push(date),
            _ => runs.push(vec![date]),
        }
        next = day.and_then(|d| d.tomorrow().ok());
    }
    runs
}

/// A row's `unique_visitors_est`, its relative error, and its note: the
/// merged sketch's estimate, or `null` and why not (`Err`); 0 for a period
/// without sketches (`None`).
fn insert_distinct(row: &mut Map<String, Value>, distinct: Option<Result<&Sketch, &str>>) {
    let error = (footfall_report::sketch::standard_error() * 10_000.0).round() / 10_000.0;
    let (est, note) = match distinct {
        None => (json!(0), Value::Null),
        Some(Ok(k)) => (json!(k.estimate().round() as u64), Value::Null),
        Some(Err(why)) => (Value::Null, json!(why)),
    };
    row.insert("unique_visitors_est".into(), est);
    row.insert("unique_visitors_rel_error".into(), json!(error));
    row.insert("unique_visitors_note".into(), note);
}

/// Distinct visitors of a period, or why they are not known.
pub(crate) enum Distinct {
    Sketch(Sketch),
    /// Some window of the period has no sketch its mode lets merge here.
    Unknown(&'static str),
}

/// Under `ephemeral` no window has a sketch; under `daily` a week's
/// sketches hold different ids for one phone on each day (issue 18).
const NO_SKETCH: &str = "not known: the privacy mode keeps no visitor sketches";
const DAY_SCOPED: &str =
    "not known: under daily keys one phone has other ids on other days, so days do not merge";

/// Distinct visitors per (store, agent, period) and per period across the
/// chain (store and agent `*`), from merged sketches: of hours where the
/// store's zone allows, else of windows.
fn distinct_visitors(
    store: &dyn ReportStore,
    by: By,
    q: &Query,
) -> Result<BTreeMap<(String, String, String), Distinct>> {
    let tzs = calendar::store_timezones(store)?;
    let mut out: BTreeMap<(String, String, String), Distinct> = BTreeMap::new();
    let wide = calendar::local_dates_reach(q, tzs.values());
    let zone = |s: &str| tzs.get(s).cloned().unwrap_or(jiff::tz::TimeZone::UTC);
    let days = if by == By::Week { 7 } else { 1 };
    let mut add =
        |store_id: &str, agent_id: &str, start: i64, sketch: Result<&Sketch, &'static str>| {
            let Some(date) = calendar::local_date(start, &zone(store_id)) else {
                return;
            };
            let Some(t) = calendar::date_noon_utc(date) else {
                return;
            };
            if !q.contains(t) {
                return;
            }
            let period = match by {
                By::Week => calendar::iso_week(&date.to_string()),
                _ => date.to_string(),
            };
            let merge = |d: &mut Distinct| match (d, sketch) {
                (Distinct::Sketch(s), Ok(k)) => s.merge(k),
                (d @ Distinct::Sketch(_), Err(why)) => *d = Distinct::Unknown(why),
                (Distinct::Unknown(_), _) => {}
            };
            merge(
                out.entry((store_id.to_string(), agent_id.to_string(), period.clone()))
                    .or_insert_with(|| Distinct::Sketch(Sketch::new())),
            );
            // The chain's day has every store's visitors: dense from the start.
            merge(
                out.entry(("*".into(), "*".into(), period))
                    .or_insert_with(|| Distinct::Sketch(Sketch::new_dense())),
            );
        };
    let by_window: BTreeSet<String> = store
        .reporting_agents()?
        .into_iter()
        .map(|(store_id, _, _)| store_id)
        .filter(|s| wide.store_id.as_ref().is_none_or(|w| w == s))
        .filter(|s| !calendar::whole_hours(&zone(s), wide.from_s, wide.to_s))
        .collect();
    for h in store.hour_visitors(&wide)? {
        if !by_window.contains(&h.store_id) {
            let c = &h.counts;
            let sketch = match c.visitor_sketch_over(days) {
                Some(k) => Ok(k),
                None if !c.has_visits() => Err(NO_SKETCH),
                None => Err(DAY_SCOPED),
            };
            add(&h.store_id, &h.agent_id, h.hour_start, sketch);
        }
    }
    for store_id in by_window {
        let one = Query {
            store_id: Some(store_id),
            ..wide.clone()
        };
        for w in store.windows(&one)? {
            let sketch = match &w.visitor_sketch {
                None => Err(NO_SKETCH),
                Some(_) if days > 1 && !w.privacy_mode.sketches_merge_across_days() => {
                    Err(DAY_SCOPED)
                }
                Some(k) => Ok(k),
            };
            add(&w.store_id, &w.agent_id, w.window_start, sketch);
        }
    }
    Ok(out)
}

/// The summed dwell histogram of a store (or all) over a period; `null`
/// figures when a window of it was counted by a mode without visits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dwell {
    pub dwell_edges_s: [u32; DWELL_EDGES_S.len()],
    pub dwell_counts: Option<[u64; DWELL_EDGES_S.len()]>,
    pub dwell_sum_s: Option<u64>,
    /// Visits that ended in the period.
    pub visits_ended: Option<u64>,
    /// `None` when no visit ended, or visits were not counted.
    pub mean_dwell_s: Option<u64>,
}

pub fn dwell(store: &dyn ReportStore, q: &Query) -> Result<Dwell> {
    let mut dwell_counts = [0u64; DWELL_EDGES_S.len()];
    let mut dwell_sum_s = 0;
    let mut known = true;
    for w in store.windows(q)? {
        match (&w.dwell_counts, w.dwell_sum_s) {
            (Some(counts), Some(sum)) => {
                for (a, b) in dwell_counts.iter_mut().zip(counts) {
                    *a += b;
                }
                dwell_sum_s += sum;
            }
            _ => known = false,
        }
    }
    let visits_ended: u64 = dwell_counts.iter().sum();
    Ok(Dwell {
        dwell_edges_s: DWELL_EDGES_S,
        dwell_counts: known.then_some(dwell_counts),
        dwell_sum_s: known.then_some(dwell_sum_s),
        visits_ended: known.then_some(visits_ended),
        mean_dwell_s: dwell_sum_s.checked_div(visits_ended).filter(|_| known),
    })
}

/// Figures that count people or devices: what `[privacy] min_count`
/// withholds (a week's `*_daysum` of them too).
const COUNTED: [&str; 14] = [
    "detected",
    "visits",
    "visitors",
    "visitors_new",
    "visitors_returning",
    "visitors_randomized",
    "passersby",
    "residents",
    "unique_visitors",
    "unique_visitors_est",
    "present_est",
    "present_lo",
    "present_hi",
    "entries_est",
];

/// `[privacy] min_count` (issue 18): every count below `min` in `rows`
/// becomes `null`, and each row's `suppressed` says which and why (`null`
/// when none). Applying it twice changes nothing, so the commands may
/// apply it to rows a gateway already suppressed.
pub fn suppress(rows: &mut [Map<String, Value>], min: Option<u64>) {
    let Some(min) = min else {
        return;
    };
    for row in rows {
        let mut withheld = Vec::new();
        for (k, v) in row.iter_mut() {
            let base = k.strip_suffix("_daysum").unwrap_or(k);
            if COUNTED.contains(&base) && v.as_f64().is_some_and(|x| x < min as f64) {
                *v = Value::Null;
                withheld.push(k.clone());
            }
        }
        if withheld.is_empty() && row.get("suppressed").is_some_and(|v| !v.is_null()) {
            continue;
        }
        row.insert("suppressed".into(), withheld_note(&withheld, min));
    }
}

/// The `suppressed` value: which figures were withheld and why, or `null`.
fn withheld_note(withheld: &[String], min: u64) -> Value {
    json!((!withheld.is_empty()).then(|| format!(
        "{} below {min}, withheld ([privacy] min_count)",
        withheld.join(", ")
    )))
}

/// `suppress` for the dwell histogram: a bucket below `min` is `null`,
/// and with fewer visits than `min` every figure is.
pub fn suppress_dwell(d: &Dwell, min: Option<u64>) -> Value {
    let mut v = json!(d);
    let Some(min) = min else {
        return v;
    };
    let mut withheld = Vec::new();
    if let Some(counts) = v["dwell_counts"].as_array_mut() {
        for (i, c) in counts.iter_mut().enumerate() {
            if c.as_u64().is_some_and(|x| x < min) {
                *c = Value::Null;
                withheld.push(format!("dwell_counts[{i}]"));
            }
        }
    }
    if d.visits_ended.is_some_and(|n| n < min) {
        for k in ["dwell_sum_s", "visits_ended", "mean_dwell_s"] {
            v[k] = Value::Null;
            withheld.push(k.to_string());
        }
    }
    v["suppressed"] = withheld_note(&withheld, min);
    v
}

/// `stores`: each agent, when last heard of, online or offline, and how
/// many windows arrived of those expected on each of the last 7 UTC days.
pub fn stores_rows(store: &dyn ReportStore) -> Result<Vec<Map<String, Value>>> {
    let now = now_s();
    let today = now.div_euclid(86_400);
    #[derive(Default)]
    struct Seen {
        state: Option<State>,
        last_seen_unix_s: Option<i64>,
        last_report_unix_s: Option<i64>,
        outbox_pending: Option<u64>,
        capture_finished: Option<bool>,
        timezone: Option<String>,
        privacy_mode: Option<footfall_report::PrivacyMode>,
    }
    let mut seen: BTreeMap<(String, String), Seen> = BTreeMap::new();
    // Every agent that ever reported, even one that never sent a status
    // (its reports came by `ingest`) or went quiet long ago.
    for (s, a, last_end) in store.reporting_agents()? {
        seen.entry((s, a)).or_default().last_report_unix_s = Some(last_end);
    }
    for a in store.agents()? {
        let row = seen.entry((a.store_id, a.agent_id)).or_default();
        row.last_seen_unix_s = Some(a.last_seen_unix_s);
        row.state = Some(a.status.state);
        row.outbox_pending = a.status.health.as_ref().map(|h| h.outbox_pending);
        row.capture_finished = a.status.health.as_ref().map(|h| h.capture_finished);
        row.timezone = a.status.health.as_ref().map(|h| h.timezone.clone());
        row.privacy_mode = a.status.health.as_ref().and_then(|h| h.privacy_mode);
    }
    // Counted from hours, not windows: a chain's week is a million windows.
    let hours = store.hour_sums(&Query {
        from_s: Some((today - 6) * 86_400),
        ..Query::default()
    })?;
    let mut per_day: BTreeMap<(String, String), [u64; 7]> = BTreeMap::new();
    let mut window_len: BTreeMap<(String, String), i64> = BTreeMap::new();
    for h in &hours {
        let key = (h.store_id.clone(), h.agent_id.clone());
        let day = h.hour_start.div_euclid(86_400) - (today - 6);
        if (0..7).contains(&day) {
            per_day.entry(key.clone()).or_default()[day as usize] += h.counts.windows;
        }
        window_len.insert(key.clone(), h.counts.window_s);
        seen.entry(key).or_default();
    }
    let mut rows = Vec::new();
    for ((s, a), info) in seen {
        let mut row = Map::new();
        row.insert("store_id".into(), json!(s));
        row.insert("agent_id".into(), json!(a));
        row.insert(
            "state".into(),
            info.state.map_or(json!("unknown"), |s| json!(s)),
        );
        row.insert("last_seen_unix_s".into(), json!(info.last_seen_unix_s));
        row.insert("last_report_unix_s".into(), json!(info.last_report_unix_s));
        row.insert("outbox_pending".into(), json!(info.outbox_pending));
        row.insert("capture_finished".into(), json!(info.capture_finished));
        // The store's IANA zone from its status: the dashboard draws hours
        // of the day in it (`null` until a status arrives).
        row.insert("timezone".into(), json!(info.timezone));
        // What the agent may count (issue 18): `null` before its status.
        row.insert("privacy_mode".into(), json!(info.privacy_mode));
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
    use footfall_report::Report;

    /// 2026-03-30T00:00:00Z, a Monday.
    const T: i64 = 1_774_828_800;

    #[test]
    fn stale_dates_are_read_in_runs_of_consecutive_dates() {
        let dates: Vec<String> = [
            "2026-02-27",
            "2026-02-28",
            "2026-03-01",
            "2026-03-02",
            "2026-06-30",
            "2026-12-30",
            "2026-12-31",
            "2027-01-01",
        ]
        .map(String::from)
        .to_vec();
        let refs: Vec<&String> = dates.iter().collect();
        let runs = |max| -> Vec<Vec<&str>> {
            consecutive(&refs, max)
                .into_iter()
                .map(|r| r.into_iter().map(String::as_str).collect())
                .collect()
        };
        assert_eq!(
            runs(7),
            vec![
                vec!["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"],
                vec!["2026-06-30"],
                vec!["2026-12-30", "2026-12-31", "2027-01-01"],
            ]
        );
        assert_eq!(
            runs(2)[..2],
            [
                vec!["2026-02-27", "2026-02-28"],
                vec!["2026-03-01", "2026-03-02"]
            ]
        );
    }

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
        let mut w = footfall_report::testing::window_of_visitors(store, "a", start, n);
        w.seq = seq;
        w.visitor_sketch = Some(sketch);
        Report::Window(w)
    }

    /// One agent's day of `n` new visitors.
    fn day_report(store: &str, seq: u64, date: &str, n: u64) -> Report {
        let mut d = footfall_report::testing::day(store, "a", date);
        d.seq = seq;
        d.visits = Some(n);
        d.unique_visitors = Some(n);
        d.visitors_new = Some(n);
        Report::Day(d)
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
    /// hour), and at the ends of the zones (UTC+14 and UTC-11, whose days
    /// start furthest from UTC midnight: what is read for a date reaches
    /// that far and no further): the estimate is that of a sketch of
    /// exactly those visitors, the chain's that of all of them. Every
    /// 15-minute window has 1 to 10 visitors of its own.
    #[test]
    fn local_days_are_cut_at_local_midnight_by_hour_or_by_window() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        let mut want = BTreeMap::new();
        for (si, (store, zone)) in [
            ("K", "Asia/Kolkata"),
            ("B", "Europe/Berlin"),
            ("E", "Pacific/Kiritimati"),
            ("W", "Pacific/Pago_Pago"),
        ]
        .iter()
        .enumerate()
        {
            let tz = jiff::tz::TimeZone::get(zone).unwrap();
            let day: &mut Sketch = want.entry(*store).or_default();
            s.set_status(&crate::store::AgentInfo {
                store_id: store.to_string(),
                agent_id: "a".into(),
                last_seen_unix_s: T,
                status: footfall_report::testing::online(store, "a", zone),
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
        let mut chain = Sketch::new_dense();
        for store in ["K", "B", "E", "W"] {
            let row = rows.iter().find(|r| r["store_id"] == store).unwrap();
            let est = row["unique_visitors_est"].as_u64().unwrap();
            assert_eq!(est, want[store].estimate().round() as u64, "{store}");
            chain.merge(&want[store]);
        }
        let row = rows.iter().find(|r| r["store_id"] == CHAIN).unwrap();
        assert_eq!(
            row["unique_visitors_est"].as_u64().unwrap(),
            chain.estimate().round() as u64
        );
        let chain_rows = report_rows(
            &s,
            By::Day,
            &Query {
                store_id: Some(CHAIN.into()),
                ..q
            },
        )
        .unwrap();
        assert_eq!(chain_rows.len(), 1);
        assert_eq!(
            chain_rows[0]["unique_visitors_est"],
            row["unique_visitors_est"]
        );
    }

    /// Issue 18: under daily keys a week's distinct visitors are not the
    /// merge of its days (one phone has other ids each day): the week says
    /// so and gives no number, a day still has one; an ephemeral agent's
    /// have none, and its dwell is not known either.
    #[test]
    fn what_a_privacy_mode_cannot_merge_is_null_with_a_note() {
        use footfall_report::{testing, PrivacyMode};
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        for (store, mode) in [("D", PrivacyMode::Daily), ("E", PrivacyMode::Ephemeral)] {
            for day in 0..7u64 {
                let mut sketch = Sketch::new();
                for v in 0..100 {
                    sketch.insert(id(1000 * day + v));
                }
                let start = T + day as i64 * 86_400 + 12 * 3600;
                let Report::Window(w) = window_report(store, day, start, 100, sketch) else {
                    unreachable!()
                };
                s.put(&Report::Window(testing::under(w, mode))).unwrap();
                let Report::Day(d) = day_report(store, 100 + day, &calendar_date(start), 100)
                else {
                    unreachable!()
                };
                s.put(&Report::Day(testing::day_under(d, mode))).unwrap();
            }
        }
        let week = report_rows(&s, By::Week, &Query::default()).unwrap();
        let row = |rows: &[Map<String, Value>], store: &str| {
            rows.iter()
                .find(|r| r["store_id"] == store)
                .unwrap()
                .clone()
        };
        let d = row(&week, "D");
        assert_eq!(d["unique_visitors_est"], Value::Null);
        assert!(d["unique_visitors_note"]
            .as_str()
            .unwrap()
            .contains("daily keys"));
        assert_eq!(d["visits"], 700, "visits add up whatever the mode");
        assert_eq!(d["visitors_returning_daysum"], Value::Null);
        let e = row(&week, "E");
        assert_eq!(
            (e["visits"].clone(), e["unique_visitors_est"].clone()),
            (Value::Null, Value::Null)
        );
        assert!(e["unique_visitors_note"]
            .as_str()
            .unwrap()
            .contains("no visitor sketches"));
        // The chain's week has a daily store in it: not known either.
        assert_eq!(row(&week, "*")["unique_visitors_est"], Value::Null);
        let days = report_rows(&s, By::Day, &Query::default()).unwrap();
        let d = row(&days, "D");
        let est = d["unique_visitors_est"].as_f64().unwrap();
        assert!(
            (est - 100.0).abs() <= 3.0,
            "a day of daily keys merges: {est}"
        );
        let dwell_e = dwell(
            &s,
            &Query {
                store_id: Some("E".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!((dwell_e.dwell_counts, dwell_e.mean_dwell_s), (None, None));
        let dwell_d = dwell(
            &s,
            &Query {
                store_id: Some("D".into()),
                ..Query::default()
            },
        )
        .unwrap();
        assert_eq!(dwell_d.visits_ended, Some(700));
    }

    fn calendar_date(start: i64) -> String {
        jiff::Timestamp::from_second(start)
            .unwrap()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date()
            .to_string()
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
        let text = crate::render::render(&rows, crate::render::Format::Table);
        assert_eq!(text.lines().count(), rows.len() + 1, "{text}");
    }
}
