//! What a campaign report reads, loaded once for every campaign asked
//! for: each store's counts in pieces (hours where its time zone allows,
//! else windows), sorted by start so a range is a slice.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use footfall_report::Counts;
use jiff::tz::TimeZone;

use super::span;
use crate::store::{Campaign, Query, ReportStore, When};

/// Whether every time a campaign report cuts at in zone `tz` is a whole
/// UTC hour, so that a store's hours can stand for its windows: campaign
/// bounds that are instants, and local midnights (date bounds, the days of
/// `daily`), the same moved back by whole weeks.
fn hour_aligned(tz: &TimeZone, campaigns: &[Campaign], q: &Query) -> bool {
    let bounds = campaigns.iter().flat_map(|c| [&c.start, &c.end]);
    !bounds
        .into_iter()
        .any(|w| matches!(w, When::At(t) if t.rem_euclid(3_600) != 0))
        && crate::calendar::whole_hours(tz, q.from_s, q.to_s)
}

/// One store's counts, in pieces that each start at a time: its hours when
/// every time the report cuts at falls on a UTC hour, else its windows.
pub(super) struct StoreData {
    pub(super) tz: TimeZone,
    /// All agents' pieces, sorted by start: a range is a slice.
    pub(super) pieces: Vec<Piece>,
    pub(super) agents: Vec<String>,
    window_s: i64,
}

pub(super) struct Piece {
    pub(super) start: i64,
    /// Index into the store's `agents`.
    agent: usize,
    pub(super) counts: Counts,
}

impl StoreData {
    pub(super) fn expected(&self, (a, b): (i64, i64)) -> i64 {
        let len = self.window_s;
        (b.div_euclid(len) - a.div_euclid(len) + i64::from(a.rem_euclid(len) == 0)
            - i64::from(b.rem_euclid(len) == 0))
        .max(0)
    }

    /// The pieces that start in [a, b).
    pub(super) fn in_range(&self, (a, b): (i64, i64)) -> &[Piece] {
        let from = self.pieces.partition_point(|p| p.start < a);
        let to = self.pieces.partition_point(|p| p.start < b).max(from);
        &self.pieces[from..to]
    }

    pub(super) fn visits(&self, r: (i64, i64)) -> u64 {
        self.in_range(r).iter().map(|p| p.counts.visits).sum()
    }

    /// SPEC §8 `entries_est` over the range, and whether every window in
    /// it carried one (a range with some windows without is left out, as
    /// a range with a missing window is).
    pub(super) fn entries(&self, r: (i64, i64)) -> (f64, bool) {
        let pieces = self.in_range(r);
        let all = pieces
            .iter()
            .all(|p| p.counts.people_windows == p.counts.windows);
        (pieces.iter().map(|p| p.counts.entries_sum).sum(), all)
    }

    /// Windows missing in the range, over all the store's agents (a key is
    /// stored once, so an agent's windows in range are its count).
    pub(super) fn missing(&self, r: (i64, i64)) -> i64 {
        let per_agent = self.expected(r);
        let mut got = vec![0i64; self.agents.len()];
        for p in self.in_range(r) {
            got[p.agent] += p.counts.windows as i64;
        }
        got.iter().map(|n| (per_agent - n).max(0)).sum()
    }
}

/// Everything the campaign report needs about every store.
pub struct Data {
    pub(super) stores: BTreeMap<String, StoreData>,
}

impl Data {
    /// What the reports of `campaigns` read: their periods and the
    /// baseline weeks before, by hour where the store's time zone allows.
    pub fn load(store: &dyn ReportStore, campaigns: &[Campaign]) -> Result<Data> {
        Data::load_by(store, campaigns, true)
    }

    pub(super) fn load_by(
        store: &dyn ReportStore,
        campaigns: &[Campaign],
        by_hour: bool,
    ) -> Result<Data> {
        let q = span(campaigns);
        let tz = crate::calendar::store_timezones(store)?;
        let mut stores: BTreeMap<String, StoreData> = BTreeMap::new();
        let mut add = |store_id: &str, agent_id: &str, start: i64, counts: Counts| {
            let s = stores
                .entry(store_id.to_string())
                .or_insert_with(|| StoreData {
                    tz: tz.get(store_id).cloned().unwrap_or(TimeZone::UTC),
                    pieces: Vec::new(),
                    agents: Vec::new(),
                    window_s: counts.window_s,
                });
            let agent = match s.agents.iter().position(|a| a == agent_id) {
                Some(i) => i,
                None => {
                    s.agents.push(agent_id.to_string());
                    s.agents.len() - 1
                }
            };
            s.pieces.push(Piece {
                start,
                agent,
                counts,
            });
        };
        let mut by_window = BTreeSet::new();
        for (store_id, _, _) in store.reporting_agents()? {
            let zone = tz.get(&store_id).cloned().unwrap_or(TimeZone::UTC);
            if !(by_hour && hour_aligned(&zone, campaigns, &q)) {
                by_window.insert(store_id);
            }
        }
        for h in store.hours(&q)? {
            if !by_window.contains(&h.store_id) {
                add(&h.store_id, &h.agent_id, h.hour_start, h.counts);
            }
        }
        for store_id in &by_window {
            let one = Query {
                store_id: Some(store_id.clone()),
                ..q.clone()
            };
            for w in store.windows(&one)? {
                add(
                    &w.store_id,
                    &w.agent_id,
                    w.window_start,
                    Counts::of_window(&w),
                );
            }
        }
        for s in stores.values_mut() {
            s.pieces.sort_by_key(|p| p.start);
        }
        Ok(Data { stores })
    }
}
