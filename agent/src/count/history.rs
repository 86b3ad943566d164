//! A device's past, as bit sets over recent local days, and where it lives
//! while the device is out of memory (`HistoryStore`).
//!
//! Invariant: a history holds only what SPEC §3 can still ask of it
//! (resident days, loyalty days, the days it was counted in); `is_useful`
//! says when it can be deleted, so the store stays bounded.

use serde::{Deserialize, Serialize};

use super::visitors::PartAt;
use crate::privacy::{DeviceId, IdMap};

pub(super) const NO_DAY: i32 = i32::MIN;

/// Where device histories live when the device is not in memory.
pub trait HistoryStore {
    fn load(&mut self, id: DeviceId) -> Result<Option<History>, HistoryError>;
    fn save(&mut self, id: DeviceId, history: &History);
    fn remove(&mut self, id: DeviceId);
    /// Whether the store takes no more histories until its next commit;
    /// the counter then keeps the devices it would have handed over.
    fn full(&self) -> bool {
        false
    }
    /// The key was replaced (issue 18): no history saved so far will be
    /// asked for again. What is not yet written is dropped, so that none
    /// of it is written after the rotation; what is written falls out of
    /// the horizon and is pruned.
    fn key_rotated(&mut self);
    /// Keeps a device the counter has no room for (issue 20) until
    /// `unspill` takes it back; `record` is the device's bytes, opaque here,
    /// and `how` what the counter asks of it without the record. False:
    /// the store has no room for this one (another spilled device holds
    /// its key), which stays in memory.
    fn spill(&mut self, id: DeviceId, record: &[u8], how: Spilled) -> Result<bool, HistoryError>;
    /// Takes back a spilled device's record, if `id` is spilled, and
    /// whether it was spilled `Spilled::counted`.
    fn unspill(&mut self, id: DeviceId) -> Result<Option<(Vec<u8>, bool)>, HistoryError>;
    /// A spilled device's last window (the one nearest `near`), and
    /// whether it is inert (`Spilled`).
    fn spilled_window(&self, id: DeviceId, near: i64) -> Option<(i64, bool)>;
    /// A spilled inert device's last window (the one nearest `near`).
    fn inert(&self, id: DeviceId, near: i64) -> Option<i64> {
        self.spilled_window(id, near)
            .and_then(|(w, inert)| inert.then_some(w))
    }
    /// Drops, unread, every spilled inert device whose last window is
    /// before `nw` (the one nearest `nw`): no window needs it any more.
    fn forget_inert_before(&mut self, nw: i64) -> Result<(), HistoryError>;
    /// Hints the CPU to load what `unspill(id)` reads first, without
    /// waiting for it (`Counter::prefetch`): a crowd's new MACs ask the
    /// spill millions of times, each a cache miss.
    fn prefetch_spilled(&self, _id: DeviceId) {}
    /// How many devices are spilled.
    fn spilled(&self) -> usize;
    /// The ids of the spilled devices.
    fn spilled_ids(&self) -> Result<Vec<DeviceId>, HistoryError>;
    /// A part of randomized visitors of the committed checkpoint, at `at`
    /// in its file: their day and ids (`State::randomized_visitors`).
    fn read_randomized(&mut self, at: PartAt) -> Result<(i32, Vec<DeviceId>), HistoryError>;
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HistoryError(pub String);

/// The store writes the checkpoint's parts, which copy some of the last
/// ones (`Bulk::write_parts`), through `std::io`.
impl From<HistoryError> for std::io::Error {
    fn from(e: HistoryError) -> Self {
        std::io::Error::other(e.0)
    }
}

/// What the counter reads of a spilled device without its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spilled {
    /// The newest window with a detection of it, which stays so until a
    /// frame takes it back: a pending window when it is spilled, and an
    /// eviction need not read it back before that window is final.
    pub last_window: i64,
    /// Its counts are known without its record (`spill::inert`).
    pub inert: bool,
    /// Inert, and its entries were taken out of its last window, which
    /// counts it instead (`WindowAcc::inert`): taken back, it is entered
    /// there again.
    pub counted: bool,
}

/// What a device's past says about it, as bit sets over recent local days:
/// bit k of a set is day `day - k`. Enough for residents (7 days) and
/// loyalty (up to 60 days) without keeping sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub day: i32,
    /// Days whose strong sessions added up to `resident_presence_s`.
    pub qualified: u64,
    /// Days on which a visit started.
    pub visited: u64,
    /// Presence so far of the newest day that has any; saturating (only
    /// its comparison with `resident_presence_s`, a day at most, matters),
    /// 32 bits for `Device`'s size (stored as a varint all the same).
    pub presence_day: i32,
    pub presence_s: u32,
    /// The last day this device was counted in a day's `unique_visitors`.
    pub visitor_day: i32,
    /// The last day this device was counted in a day's `residents`.
    pub resident_day: i32,
    /// Randomized devices are never residents nor returning (SPEC §3): their
    /// history matters only until their day is reported.
    pub randomized: bool,
}

impl Default for History {
    fn default() -> Self {
        History {
            day: NO_DAY,
            qualified: 0,
            visited: 0,
            presence_day: NO_DAY,
            presence_s: 0,
            visitor_day: NO_DAY,
            resident_day: NO_DAY,
            randomized: false,
        }
    }
}

impl History {
    pub(super) fn shift_to(&mut self, day: i32) {
        if self.day == NO_DAY {
            self.day = day;
        } else if day > self.day {
            let by = (day - self.day) as u32;
            self.qualified = self.qualified.checked_shl(by).unwrap_or(0);
            self.visited = self.visited.checked_shl(by).unwrap_or(0);
            self.day = day;
        }
    }

    pub(super) fn bit(set: u64, base: i32, day: i32) -> bool {
        if base == NO_DAY || day > base || base - day >= 64 {
            return false;
        }
        set >> (base - day) & 1 == 1
    }

    pub(super) fn qualified_on(&self, day: i32) -> bool {
        History::bit(self.qualified, self.day, day)
    }

    pub(super) fn visited_on(&self, day: i32) -> bool {
        History::bit(self.visited, self.day, day)
    }

    pub(super) fn set(&mut self, day: i32, visited: bool) {
        self.shift_to(day);
        if self.day - day < 64 {
            if visited {
                self.visited |= 1 << (self.day - day);
            } else {
                self.qualified |= 1 << (self.day - day);
            }
        }
    }

    /// The newest day this history says anything about.
    pub fn newest_day(&self) -> i32 {
        self.day
            .max(self.presence_day)
            .max(self.visitor_day)
            .max(self.resident_day)
    }

    /// Whether this history can still change a count, given the horizon of
    /// `Counter::history_horizon`. One that cannot is deleted, so the state
    /// stays bounded however long the agent runs.
    pub fn is_useful(&self, h: Horizon) -> bool {
        if self.randomized {
            self.visitor_day >= h.next_day || self.resident_day >= h.next_day
        } else {
            self.newest_day() >= h.keep_from
        }
    }
}

/// What histories still matter: days from `keep_from` on (residents look 7
/// days back, loyalty `loyalty_days`), day counts from `next_day` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    pub next_day: i32,
    pub keep_from: i32,
}

/// A `HistoryStore` in memory, for tests and `evaluate`.
#[derive(Debug, Default)]
pub struct MemHistory {
    pub histories: IdMap<History>,
    pub spilled: IdMap<(Vec<u8>, Spilled)>,
}

impl HistoryStore for MemHistory {
    fn load(&mut self, id: DeviceId) -> Result<Option<History>, HistoryError> {
        Ok(self.histories.get(&id).copied())
    }
    fn save(&mut self, id: DeviceId, history: &History) {
        self.histories.insert(id, *history);
    }
    fn remove(&mut self, id: DeviceId) {
        self.histories.remove(&id);
    }
    fn key_rotated(&mut self) {
        self.histories.clear();
        self.spilled.clear();
    }
    fn spill(&mut self, id: DeviceId, record: &[u8], how: Spilled) -> Result<bool, HistoryError> {
        self.spilled.insert(id, (record.to_vec(), how));
        Ok(true)
    }
    fn unspill(&mut self, id: DeviceId) -> Result<Option<(Vec<u8>, bool)>, HistoryError> {
        Ok(self.spilled.remove(&id).map(|(r, how)| (r, how.counted)))
    }
    fn spilled_window(&self, id: DeviceId, _near: i64) -> Option<(i64, bool)> {
        self.spilled
            .get(&id)
            .map(|(_, how)| (how.last_window, how.inert))
    }
    fn forget_inert_before(&mut self, nw: i64) -> Result<(), HistoryError> {
        self.spilled
            .retain(|_, (_, how)| !how.inert || how.last_window >= nw);
        Ok(())
    }
    fn spilled(&self) -> usize {
        self.spilled.len()
    }
    fn spilled_ids(&self) -> Result<Vec<DeviceId>, HistoryError> {
        Ok(self.spilled.keys().copied().collect())
    }
    /// Never asked: only a store's commit writes parts.
    fn read_randomized(&mut self, at: PartAt) -> Result<(i32, Vec<DeviceId>), HistoryError> {
        Err(HistoryError(format!(
            "no checkpoint parts in memory (part at {at} asked for)"
        )))
    }
}
