//! What the counter remembers across a restart, and the older layouts the
//! store upgrades from. postcard is positional: never reorder a field here,
//! add a new layout and an upgrade instead.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::device::Device;
use super::history::{History, NO_DAY};
use crate::privacy::{DeviceId, IdMap, IdSet};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct WindowAcc {
    pub(super) frames: u64,
    pub(super) frames_no_signal: u64,
    /// (device, local day of the detection), with repeats.
    pub(super) entries: Vec<(DeviceId, i32)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct DayAcc {
    pub(super) visits: u64,
    pub(super) unique_visitors: u64,
    pub(super) new: u64,
    pub(super) returning: u64,
    pub(super) randomized: u64,
    pub(super) residents: u64,
}

/// Everything the counter must remember across a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub(super) clock_us: Option<i64>,
    /// Index of the oldest window that is not final.
    pub(super) next_window: Option<i64>,
    /// Windows `next_window ..`, not yet final.
    pub(super) windows: VecDeque<WindowAcc>,
    /// The oldest local day not yet reported.
    pub(super) next_day: Option<i32>,
    pub(super) days: BTreeMap<i32, DayAcc>,
    pub(super) devices: IdMap<Device>,
    /// Randomized devices gone from memory that were counted in a day not
    /// yet reported, by that day: all a randomized device's past can
    /// change (SPEC §3: never returning nor resident), so it stays here
    /// and not in the store. Most devices are randomized and never come
    /// back; storing each and deleting it a day later was most of the
    /// store's writes, and so of a replay's time and memory.
    pub(super) randomized_visitors: BTreeMap<i32, IdSet>,
    pub late_frames: u64,
}

/// `State` as state format v2 wrote it, before `randomized_visitors`: the
/// store upgrades a v2 state through it (postcard is positional, so the
/// old layout must be spelled out).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateV2 {
    pub(super) clock_us: Option<i64>,
    pub(super) next_window: Option<i64>,
    pub(super) windows: VecDeque<WindowAcc>,
    pub(super) next_day: Option<i32>,
    pub(super) days: BTreeMap<i32, DayAcc>,
    pub(super) devices: IdMap<Device>,
    pub(super) late_frames: u64,
}

impl StateV2 {
    /// The v3 state, with the randomized visitors v2 kept in the store.
    pub fn upgrade(self, randomized: impl IntoIterator<Item = (DeviceId, History)>) -> State {
        let mut randomized_visitors: BTreeMap<i32, IdSet> = BTreeMap::new();
        for (id, h) in randomized {
            if h.visitor_day != NO_DAY {
                randomized_visitors
                    .entry(h.visitor_day)
                    .or_default()
                    .insert(id);
            }
        }
        State {
            clock_us: self.clock_us,
            next_window: self.next_window,
            windows: self.windows,
            next_day: self.next_day,
            days: self.days,
            devices: self.devices,
            randomized_visitors,
            late_frames: self.late_frames,
        }
    }
}

impl State {
    /// Randomized devices out of memory still counted in an unreported day.
    pub fn randomized_visitors(&self) -> usize {
        self.randomized_visitors.values().map(|s| s.len()).sum()
    }
}
