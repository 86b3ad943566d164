//! Where the gateway keeps reports: the `ReportStore` trait and what it
//! stores (this file), and its engines: `sled` for a single gateway serving
//! a chain of hundreds of stores, `pg` (PostgreSQL) when several gateways
//! share one database.
//!
//! Invariants of every engine: a report key (store, agent, window_start |
//! date) is stored at most once; the same key with other counts keeps the
//! first and the second goes to dead letters as a conflict (a report is
//! never revised, SPEC §6). Nothing is acked before `commit` returns.

mod hours;
mod keys;
mod legacy;
pub mod pg;
mod sled;
pub mod time;

use std::collections::BTreeMap;
use std::path::PathBuf;

use footfall_report::{Counts, DayCounts, DayReport, Report, Sketch, Status, WindowReport};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

pub use self::pg::PgStore;
pub use self::sled::SledStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot open the gateway's store (is another footfall-gateway using it?)")]
    Open {
        path: PathBuf,
        source: ::sled::Error,
    },
    #[error("{path}: the gateway's store failed")]
    Sled {
        path: PathBuf,
        source: ::sled::Error,
    },
    /// PostgreSQL refused or is unreachable: `what` says what was asked.
    #[error("{what}: {}", pg_detail(source))]
    Postgres {
        what: String,
        source: postgres::Error,
    },
    #[error("{what}")]
    Schema { what: String },
    /// Writes that had returned `Ok` were lost with their connection
    /// before their commit: the batch has to be stored again.
    #[error("{what}")]
    Lost { what: String },
    #[error("{path}: tree `{tree}`, key {key}: {what}; restore the store from a backup")]
    Corrupt {
        path: PathBuf,
        tree: &'static str,
        key: String,
        what: String,
    },
}

/// What storing one report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Inserted,
    /// Same key, same counts: already stored.
    Duplicate,
    /// Same key, other counts: the first is kept.
    Conflict,
}

/// A payload the gateway would not store, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub received_unix_s: i64,
    /// MQTT topic, or `file:line` for `ingest`.
    pub source: String,
    pub reason: String,
    /// The first 4 KiB, as text.
    pub payload: String,
}

/// An agent as the gateway last heard of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub store_id: String,
    pub agent_id: String,
    pub last_seen_unix_s: i64,
    /// The last `status` payload (online with health figures, or offline).
    pub status: Status,
}

/// A marketing campaign (SPEC §7), as imported from CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub campaign_id: String,
    pub name: String,
    pub channel: String,
    pub start: When,
    pub end: When,
    /// `None`: every store (`*`).
    pub stores: Option<Vec<String>>,
    pub impressions: u64,
    pub reach: u64,
    pub spend: f64,
}

/// A campaign bound: an instant, or a local date in each store's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum When {
    /// Unix seconds.
    At(i64),
    /// `YYYY-MM-DD`, midnight in the store's time zone.
    Date(String),
}

/// One agent's windows that start in one UTC hour, summed at ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct Hour {
    pub store_id: String,
    pub agent_id: String,
    pub hour_start: i64,
    pub counts: Counts,
}

/// The chain's distinct visitors of one local date, worked out from every
/// store's sketches, kept so that a year by day does not merge millions of
/// sketches again: used while the date's windows (`date_windows`) and the
/// stores' zones are still what they were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainDay {
    pub date: String,
    pub windows: u64,
    /// `calendar::zones_hash` of the zones it was cut in.
    pub zones: u64,
    /// The merged sketch, or why distinct visitors are not known.
    pub distinct: Result<Sketch, String>,
}

/// A store and a time range of it (Unix seconds, from inclusive, to
/// exclusive): what `sketches_of` reads.
pub type StoreRange = (String, i64, i64);

/// Visitor sketches of windows that start in one UTC hour (`sketches`).
#[derive(Debug, Clone, PartialEq)]
pub struct SketchPiece {
    pub store_id: String,
    pub agent_id: String,
    pub start: i64,
    pub sketch: Sketch,
}

/// What `purge` deletes (issue 18): a store that closed, and what is past
/// retention. `None` leaves that kind alone; a store without times
/// deletes everything of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purge {
    /// Only this store's records; with no time below, all of them, its
    /// agents' statuses and the dead letters whose topic names it.
    pub store_id: Option<String>,
    /// Windows (and their hours) that start before this, Unix seconds.
    pub windows_before_s: Option<i64>,
    /// Day reports of local dates before this one, `YYYY-MM-DD`.
    pub days_before: Option<String>,
    /// Dead letters received before this, Unix seconds.
    pub dead_letters_before_s: Option<i64>,
}

impl Purge {
    /// The first date whose cached `ChainDay` the purge leaves: none of a
    /// closed store's chain, the dates a retention cut reaches into.
    pub(crate) fn chain_cut(&self) -> Option<String> {
        if self.store_id.is_some() && self.windows_before_s.is_none() {
            return self.days_before.is_none().then(|| "9999".into());
        }
        let cut = self.windows_before_s?;
        // A date's sketch holds windows up to 14 hours past its UTC end.
        time::local_date(cut + 86_400, &TimeZone::UTC).map(|d| d.to_string())
    }
}

/// What a purge deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    pub windows: u64,
    pub hours: u64,
    pub day_reports: u64,
    pub dead_letters: u64,
    pub agent_statuses: u64,
}

impl std::fmt::Display for Purged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deleted {} windows, {} hours, {} day reports, {} dead letters, {} agent statuses",
            self.windows, self.hours, self.day_reports, self.dead_letters, self.agent_statuses
        )
    }
}

impl Purged {
    pub fn is_empty(&self) -> bool {
        *self == Purged::default()
    }
}

/// Which reports a query wants: a store (or all), and a time range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub store_id: Option<String>,
    /// Unix seconds, inclusive.
    pub from_s: Option<i64>,
    /// Unix seconds, exclusive.
    pub to_s: Option<i64>,
}

impl Query {
    /// Whether `t` (Unix seconds) is in the query's time range.
    pub fn contains(&self, t: i64) -> bool {
        self.from_s.is_none_or(|f| t >= f) && self.to_s.is_none_or(|to| t < to)
    }
}

pub trait ReportStore: Send + Sync {
    fn put(&self, report: &Report) -> Result<Put, StoreError>;
    /// `put` for many reports, one result each, in order; an engine may do
    /// it in fewer round trips.
    fn put_many(&self, reports: &[Report]) -> Result<Vec<Put>, StoreError> {
        reports.iter().map(|r| self.put(r)).collect()
    }
    fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError>;
    fn set_status(&self, info: &AgentInfo) -> Result<(), StoreError>;
    /// Makes everything before it durable. Implementations are shared
    /// between the MQTT loop and the HTTP API, so every method takes `&self`.
    fn commit(&self) -> Result<(), StoreError>;
    fn windows(&self, q: &Query) -> Result<Vec<WindowReport>, StoreError>;
    /// The hours that start in the query's range, each the sum of an
    /// agent's windows that start in it: what `windows` would give, summed
    /// by hour, in a quarter of the reads or fewer.
    fn hours(&self, q: &Query) -> Result<Vec<Hour>, StoreError>;
    /// `hours` with only what a count of distinct visitors reads of them:
    /// `windows`, `visit_windows`, `day_scoped_windows` and
    /// `visitor_sketch`; every other count is zero. On an engine that sums
    /// hours in SQL the other sums are most of a chain's date worked out
    /// (PostgreSQL, the day in progress at 1,000 stores: 0.73 of 1.0 s).
    fn hour_visitors(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        self.hours(q)
    }
    /// `hours` with their visitor sketches left empty: what a report that
    /// only adds counts reads (a campaign's weeks, its control stores), in
    /// a fraction of the bytes on an engine that keeps sketches apart.
    fn hour_sums(&self, q: &Query) -> Result<Vec<Hour>, StoreError> {
        let mut hours = self.hours(q)?;
        for h in &mut hours {
            h.counts.visitor_sketch = Sketch::new();
        }
        Ok(hours)
    }
    /// Sums without sketches per store, agent and local day: each local day
    /// of a store in `zones` whose midnight (in the store's zone) is in
    /// `q`, whole, starting at that midnight. Only for zones a whole number
    /// of hours from UTC over the range (`calendar::whole_hours`): this
    /// default adds up `hour_sums`.
    fn day_sums(
        &self,
        q: &Query,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<Vec<Hour>, StoreError> {
        Ok(days_of_hours(self.hour_sums(&day_wide(q))?, q, zones))
    }
    /// The visitor sketches of the windows that start in `q`: what `hours`
    /// holds beyond `hour_sums`. Each piece covers windows that start in
    /// the UTC hour of its `start` (one window, or the whole hour).
    fn sketches(&self, q: &Query) -> Result<Vec<SketchPiece>, StoreError> {
        Ok(self
            .hours(q)?
            .into_iter()
            .map(|h| SketchPiece {
                store_id: h.store_id,
                agent_id: h.agent_id,
                start: h.hour_start,
                sketch: h.counts.visitor_sketch,
            })
            .collect())
    }
    /// `sketches` of several (store, from, to) ranges, in one read where
    /// the engine can; a piece may also cover a whole local day of a
    /// range whose bounds are local midnights.
    fn sketches_of(&self, ranges: &[StoreRange]) -> Result<Vec<SketchPiece>, StoreError> {
        let mut out = Vec::new();
        for (store, from, to) in ranges {
            out.extend(self.sketches(&Query {
                store_id: Some(store.clone()),
                from_s: Some(*from),
                to_s: Some(*to),
            })?);
        }
        Ok(out)
    }
    fn days(&self, q: &Query) -> Result<Vec<DayReport>, StoreError>;
    /// The day reports of every store summed by date, for dates `from` to
    /// `to` (`YYYY-MM-DD`, both included), in date order.
    fn day_totals(&self, from: &str, to: &str) -> Result<Vec<(String, DayCounts)>, StoreError> {
        let mut out: BTreeMap<String, DayCounts> = BTreeMap::new();
        for d in self.days(&Query::default())? {
            if d.date.as_str() >= from && d.date.as_str() <= to {
                out.entry(d.date.clone())
                    .or_default()
                    .add(&DayCounts::of_day(&d));
            }
        }
        Ok(out.into_iter().collect())
    }
    /// How many windows the chain has of each local date from `from` to
    /// `to` (both included), each store's cut in its zone in `zones` (UTC
    /// if absent): what tells a cached `ChainDay` is out of date. A window
    /// whose date is uncertain (summed before its store's zone was known)
    /// may count for the dates either side too.
    fn date_windows(
        &self,
        from: &str,
        to: &str,
        zones: &BTreeMap<String, TimeZone>,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let q = time::dates_query(from, to);
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        let utc = TimeZone::UTC;
        for h in self.hour_sums(&day_wide(&q))? {
            let tz = zones.get(&h.store_id).unwrap_or(&utc);
            count_date(
                &mut out,
                time::local_date(h.hour_start, tz),
                (from, to),
                h.counts.windows,
            );
        }
        Ok(out)
    }
    /// Each local date's visitor sketch from `from` to `to`, every store's
    /// windows merged by their date in `zones` (UTC if absent): `None` for
    /// a date some window of which counted no visits, no entry for a date
    /// without windows. `Ok(None)` when the engine keeps nothing that
    /// answers it better than merging the windows (`query` then does).
    fn date_sketches(
        &self,
        _from: &str,
        _to: &str,
        _zones: &BTreeMap<String, TimeZone>,
    ) -> Result<Option<BTreeMap<String, Option<Sketch>>>, StoreError> {
        Ok(None)
    }
    /// The chain's distinct visitors of dates `from` to `to` as last
    /// worked out (`put_chain_days`); an engine may keep none.
    fn chain_days(&self, _from: &str, _to: &str) -> Result<Vec<ChainDay>, StoreError> {
        Ok(Vec::new())
    }
    fn put_chain_days(&self, _days: &[ChainDay]) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether `put_campaign_reports` keeps anything.
    fn keeps_campaign_reports(&self) -> bool {
        false
    }
    /// A handle of its own for `serve`'s background work (the caches
    /// queries and SQL tools read), so that minutes of it neither wait
    /// behind the API nor hold it up; `None` where one handle serves
    /// every caller at once (sled).
    fn background(&self) -> Result<Option<Box<dyn ReportStore>>, StoreError> {
        Ok(None)
    }
    /// Keeps the campaign reports for SQL tools (the `footfall_campaign_*`
    /// views), replacing the ones kept before; an engine without SQL keeps
    /// none.
    fn put_campaign_reports(
        &self,
        _reports: &[footfall_report::campaign::CampaignReport],
    ) -> Result<(), StoreError> {
        Ok(())
    }
    fn agents(&self) -> Result<Vec<AgentInfo>, StoreError>;
    fn dead_letters(&self) -> Result<Vec<DeadLetter>, StoreError>;
    /// Inserts or replaces campaigns by id, all or none.
    fn put_campaigns(&self, campaigns: &[Campaign]) -> Result<(), StoreError>;
    /// Every (store, agent) that has reported a window, with the end of
    /// its newest window (Unix seconds).
    fn reporting_agents(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
    fn campaigns(&self) -> Result<Vec<Campaign>, StoreError>;
    /// Deletes what `p` names, durably, and says how much.
    fn purge(&self, p: &Purge) -> Result<Purged, StoreError>;
}

/// Adds `n` windows to `date` in `out` (`date_windows`) when the date is
/// from `from` to `to`, both included.
pub(crate) fn count_date(
    out: &mut BTreeMap<String, u64>,
    date: Option<jiff::civil::Date>,
    (from, to): (&str, &str),
    n: u64,
) {
    if let Some(date) = date.map(|d| d.to_string()) {
        if date.as_str() >= from && date.as_str() <= to {
            *out.entry(date).or_default() += n;
        }
    }
}

/// `hours` of `hour_sums` with the `sketches` of the same range: both in
/// key order (store, agent, hour), each sketch put on its hour.
pub(crate) fn with_sketches(mut hours: Vec<Hour>, sketches: Vec<SketchPiece>) -> Vec<Hour> {
    let mut sketches = sketches.into_iter().peekable();
    for h in &mut hours {
        let key = (h.store_id.as_str(), h.agent_id.as_str(), h.hour_start);
        while let Some(p) =
            sketches.next_if(|p| (p.store_id.as_str(), p.agent_id.as_str(), p.start) <= key)
        {
            if (p.store_id.as_str(), p.agent_id.as_str(), p.start) == key {
                h.counts.visitor_sketch = p.sketch;
            }
        }
    }
    hours
}

/// `q` a day wider each side: local days start up to 14 hours either side
/// of UTC midnight.
pub(crate) fn day_wide(q: &Query) -> Query {
    Query {
        store_id: q.store_id.clone(),
        from_s: q.from_s.map(|f| f - 86_400),
        to_s: q.to_s.map(|t| t + 86_400),
    }
}

/// Hours (of `day_wide(q)`) added up by local day in their stores' zones:
/// the days of `zones`' stores whose midnight is in `q`.
pub(crate) fn days_of_hours(
    hours: Vec<Hour>,
    q: &Query,
    zones: &BTreeMap<String, TimeZone>,
) -> Vec<Hour> {
    let mut days: BTreeMap<(String, String, i64), Counts> = BTreeMap::new();
    for h in hours {
        let Some(tz) = zones.get(&h.store_id) else {
            continue;
        };
        let day = time::local_midnight(h.hour_start, tz);
        if q.contains(day) {
            days.entry((h.store_id, h.agent_id, day))
                .or_default()
                .add(&h.counts);
        }
    }
    days.into_iter()
        .map(|((store_id, agent_id, hour_start), counts)| Hour {
            store_id,
            agent_id,
            hour_start,
            counts,
        })
        .collect()
}

/// Equal counts: everything but `seq`, which a recounting agent may change.
pub(crate) fn same_counts(a: &Report, b: &Report) -> bool {
    let mut a = a.clone();
    a.set_seq(b.seq());
    &a == b
}

/// A driver error with its causes ("error connecting to server" says
/// little; "Connection refused" or the server's own message says why).
fn pg_detail(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {}", db.severity(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// Opens the store the config names.
pub fn open(
    storage: &crate::config::Storage,
) -> Result<std::sync::Arc<dyn ReportStore>, StoreError> {
    Ok(match storage {
        crate::config::Storage::Sled { path, cache_bytes } => std::sync::Arc::new(
            SledStore::open_waiting(path, *cache_bytes, std::time::Duration::from_secs(10))?,
        ),
        crate::config::Storage::Postgres { url } => std::sync::Arc::new(PgStore::open(url)?),
    })
}
