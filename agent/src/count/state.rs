//! What the counter remembers across a restart, and the older layouts the
//! store upgrades from. postcard is positional: never reorder a field here,
//! add a new layout and an upgrade instead.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::device::Device;
use super::history::{History, NO_DAY};
use crate::people::{Features, Observations};
use crate::privacy::{DeviceId, IdMap, IdSet};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct WindowAcc {
    pub(super) frames: u64,
    pub(super) frames_no_signal: u64,
    /// (device, local day of the detection), with repeats.
    pub(super) entries: Vec<(DeviceId, i32)>,
    /// SPEC §8: the window's strong devices, for the people estimate.
    pub(super) people: Observations,
    /// `ephemeral`: the people features of the window's ended key epochs
    /// (sums; see `epoch`), in place of `people`, which stays empty.
    pub(super) epochs: Features,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct DayAcc {
    pub(super) visits: u64,
    pub(super) unique_visitors: u64,
    pub(super) new: u64,
    pub(super) returning: u64,
    pub(super) randomized: u64,
    pub(super) residents: u64,
    /// SPEC §8 sums over the day's windows, and how many carried them.
    pub(super) person_hours: f64,
    pub(super) entries: f64,
    pub(super) people_windows: u64,
    /// A window of the day had no estimate: the day's sums would be
    /// partial, so the day reports none (`null`).
    pub(super) people_missing: bool,
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
    /// The last final window and its `present_est`: entries are the rise
    /// from it (SPEC §8).
    pub(super) people_before: Option<(i64, f64)>,
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
            people_before: None,
        }
    }
}

/// `State` as state format 3 wrote it (the key `checkpoint`), before the
/// people estimates of SPEC §8: the store upgrades it through this.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateV3 {
    clock_us: Option<i64>,
    next_window: Option<i64>,
    windows: VecDeque<WindowAccV3>,
    next_day: Option<i32>,
    days: BTreeMap<i32, DayAccV3>,
    devices: IdMap<Device>,
    randomized_visitors: BTreeMap<i32, IdSet>,
    late_frames: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct WindowAccV3 {
    frames: u64,
    frames_no_signal: u64,
    entries: Vec<(DeviceId, i32)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DayAccV3 {
    visits: u64,
    unique_visitors: u64,
    new: u64,
    returning: u64,
    randomized: u64,
    residents: u64,
}

impl StateV3 {
    /// The current state. Windows pending at the upgrade have no people
    /// observations, so they and their days report no estimate (`null`)
    /// rather than a low one.
    pub fn upgrade(self) -> State {
        State {
            clock_us: self.clock_us,
            next_window: self.next_window,
            windows: self
                .windows
                .into_iter()
                .map(|w| WindowAcc {
                    frames: w.frames,
                    frames_no_signal: w.frames_no_signal,
                    entries: w.entries,
                    people: Observations::unavailable(),
                    epochs: Features::default(),
                })
                .collect(),
            next_day: self.next_day,
            days: self
                .days
                .into_iter()
                .map(|(d, a)| {
                    let acc = DayAcc {
                        visits: a.visits,
                        unique_visitors: a.unique_visitors,
                        new: a.new,
                        returning: a.returning,
                        randomized: a.randomized,
                        residents: a.residents,
                        people_missing: true,
                        ..DayAcc::default()
                    };
                    (d, acc)
                })
                .collect(),
            devices: self.devices,
            randomized_visitors: self.randomized_visitors,
            late_frames: self.late_frames,
            people_before: None,
        }
    }
}

/// `State` as state format 4 wrote it (the key `checkpoint-4`), before
/// privacy modes gave windows their `epochs`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateV4 {
    clock_us: Option<i64>,
    next_window: Option<i64>,
    windows: VecDeque<WindowAccV4>,
    next_day: Option<i32>,
    days: BTreeMap<i32, DayAcc>,
    devices: IdMap<Device>,
    randomized_visitors: BTreeMap<i32, IdSet>,
    late_frames: u64,
    people_before: Option<(i64, f64)>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct WindowAccV4 {
    frames: u64,
    frames_no_signal: u64,
    entries: Vec<(DeviceId, i32)>,
    people: Observations,
}

impl StateV4 {
    /// The current state: format 4 counted as `loyalty` does, so no
    /// window has ephemeral epochs.
    pub fn upgrade(self) -> State {
        State {
            clock_us: self.clock_us,
            next_window: self.next_window,
            windows: self
                .windows
                .into_iter()
                .map(|w| WindowAcc {
                    frames: w.frames,
                    frames_no_signal: w.frames_no_signal,
                    entries: w.entries,
                    people: w.people,
                    epochs: Features::default(),
                })
                .collect(),
            next_day: self.next_day,
            days: self.days,
            devices: self.devices,
            randomized_visitors: self.randomized_visitors,
            late_frames: self.late_frames,
            people_before: self.people_before,
        }
    }
}

impl State {
    /// How many device ids and element fingerprints this state holds (in
    /// devices, pending windows and randomized visitors): what a
    /// checkpoint writes that could follow a phone. Always 0 under
    /// `ephemeral` (issue 18), which the tests check on disk.
    pub fn device_ids(&self) -> usize {
        self.devices.len()
            + self.randomized_visitors()
            + self
                .windows
                .iter()
                .map(|w| w.entries.len() + w.people.devices())
                .sum::<usize>()
    }

    /// Randomized devices out of memory still counted in an unreported day.
    pub fn randomized_visitors(&self) -> usize {
        self.randomized_visitors.values().map(|s| s.len()).sum()
    }
}
