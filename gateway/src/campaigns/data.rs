//! What a campaign report reads, loaded once for every campaign asked
//! for: each store's counts in pieces (local days, or hours, where every
//! time the report cuts at allows, else windows), sorted by start so a
//! range is a slice, and visitor sketches only where a report merges them:
//! its own stores over its period. A 1,000-store chain is then some
//! 46,000 day sums, not millions of windows.

use std::collections::BTreeMap;

use anyhow::Result;
use footfall_report::{Counts, Sketch};
use jiff::tz::TimeZone;

use super::span;
use crate::calendar::{local_midnight, resolve};
use crate::store::{Campaign, Query, ReportStore, When};

/// How coarse a store's pieces may be, coarsest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Grain {
    Day,
    Hour,
    Window,
}

/// Whether every time the campaign reports cut at in zone `tz` is a local
/// midnight: date bounds (and instants that are midnights), and the same
/// moved by whole local days and weeks.
fn day_aligned(tz: &TimeZone, campaigns: &[Campaign]) -> bool {
    campaigns
        .iter()
        .flat_map(|c| [&c.start, &c.end])
        .all(|w| resolve(w, tz).is_some_and(|t| local_midnight(t, tz) == t))
}

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

/// One store's counts, in pieces that each start at a time: its local
/// days or hours when every time the report cuts at falls on one, else its
/// windows.
pub(super) struct StoreData {
    pub(super) tz: TimeZone,
    /// All agents' pieces, sorted by start: a range is a slice. Their
    /// sketches are empty, but for pieces that are windows.
    pub(super) pieces: Vec<Piece>,
    /// Visitor sketches by start (a window, an hour, or a local day an
    /// engine keeps the sketch of), sorted, over the periods of the
    /// campaigns the store is in.
    pub(super) sketches: Vec<(i64, Sketch)>,
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

    /// The sketches that start in [a, b), merged into `into`.
    pub(super) fn merge_sketches(&self, (a, b): (i64, i64), into: &mut Sketch) {
        let from = self.sketches.partition_point(|(t, _)| *t < a);
        let to = self.sketches.partition_point(|(t, _)| *t < b).max(from);
        for (_, k) in &self.sketches[from..to] {
            into.merge(k);
        }
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
    /// baseline weeks before, by local day or hour where the store's time
    /// zone allows.
    pub fn load(store: &dyn ReportStore, campaigns: &[Campaign]) -> Result<Data> {
        Data::load_by(store, campaigns, Grain::Day)
    }

    /// `load` with pieces no coarser than `coarsest` (tests compare them).
    pub(super) fn load_by(
        store: &dyn ReportStore,
        campaigns: &[Campaign],
        coarsest: Grain,
    ) -> Result<Data> {
        let q = span(campaigns);
        let tz = crate::calendar::store_timezones(store)?;
        let zone = |s: &str| tz.get(s).cloned().unwrap_or(TimeZone::UTC);
        let mut stores: BTreeMap<String, StoreData> = BTreeMap::new();
        let mut add = |store_id: &str, agent_id: &str, start: i64, counts: Counts| {
            let s = stores
                .entry(store_id.to_string())
                .or_insert_with(|| StoreData {
                    tz: zone(store_id),
                    pieces: Vec::new(),
                    sketches: Vec::new(),
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
        let mut grain: BTreeMap<String, Grain> = BTreeMap::new();
        for (store_id, _, _) in store.reporting_agents()? {
            let z = zone(&store_id);
            let g = if !hour_aligned(&z, campaigns, &q) {
                Grain::Window
            } else if !day_aligned(&z, campaigns) {
                Grain::Hour
            } else {
                Grain::Day
            };
            grain.insert(store_id, g.max(coarsest));
        }
        let of = |g: Grain| -> BTreeMap<String, TimeZone> {
            grain
                .iter()
                .filter(|(_, x)| **x == g)
                .map(|(s, _)| (s.clone(), zone(s)))
                .collect()
        };
        let by_day = of(Grain::Day);
        if !by_day.is_empty() {
            for d in store.day_sums(&q, &by_day)? {
                add(&d.store_id, &d.agent_id, d.hour_start, d.counts);
            }
        }
        let by_hour = of(Grain::Hour);
        if !by_hour.is_empty() {
            for h in store.hour_sums(&q)? {
                if by_hour.contains_key(&h.store_id) {
                    add(&h.store_id, &h.agent_id, h.hour_start, h.counts);
                }
            }
        }
        for store_id in of(Grain::Window).keys() {
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
        // Sketches where a report merges them: its stores, over its
        // period; a store in two campaigns reads the union of their periods.
        let mut periods: BTreeMap<&String, Vec<(i64, i64)>> = BTreeMap::new();
        for c in campaigns {
            let members: Vec<&String> = match &c.stores {
                Some(list) => list.iter().collect(),
                None => grain.keys().collect(),
            };
            for id in members {
                if grain.get(id).is_none_or(|g| *g == Grain::Window) {
                    continue;
                }
                let z = zone(id);
                if let (Some(a), Some(b)) = (resolve(&c.start, &z), resolve(&c.end, &z)) {
                    periods.entry(id).or_default().push((a, b));
                }
            }
        }
        let mut wanted: Vec<crate::store::StoreRange> = Vec::new();
        for (id, mut ranges) in periods {
            ranges.sort();
            let mut merged: Vec<(i64, i64)> = Vec::new();
            for (a, b) in ranges {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(b),
                    _ => merged.push((a, b)),
                }
            }
            wanted.extend(merged.into_iter().map(|(a, b)| (id.clone(), a, b)));
        }
        for k in store.sketches_of(&wanted)? {
            if let Some(s) = stores.get_mut(&k.store_id) {
                s.sketches.push((k.start, k.sketch));
            }
        }
        for s in stores.values_mut() {
            s.pieces.sort_by_key(|p| p.start);
            s.sketches.sort_by_key(|(t, _)| *t);
        }
        Ok(Data { stores })
    }
}
