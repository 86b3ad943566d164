//! The counter: SPEC §3-§5 over a stream of detections, window by window.
//!
//! It never sees a MAC, never reads the wall clock (its clock is the newest
//! timestamp it was given, SPEC §4), and never does I/O itself: device
//! histories older than the devices in memory come through `HistoryStore`,
//! and final reports go out through `drain_reports`.
//!
//! How it stays exact while streaming:
//! - Each device keeps its strong sessions as (first, last) intervals; a
//!   session closes, and its dwell is folded into the device's history,
//!   once the clock is more than `session_gap_s` past its last detection.
//! - A window's counts are computed when it becomes final, from the
//!   sessions of the devices seen in it, so a session that started before
//!   the window or ends after it is judged with everything known.
//! - Whether a device is a resident on day D depends on the dwell of its
//!   sessions that started on D-7..D-1. A session started late on D-1 may
//!   still be open on D; a window of D that needs that device's status waits
//!   until the status is decided (SPEC §3 read literally, never guessed).
//! - Memory holds only devices with an open session or a detection in a
//!   window that is not final; the rest of a device is its `History`, a few
//!   bit sets of recent days, stored outside.
//!
//! Out-of-order input: timestamps older than the last final window are
//! `late_frames` (SPEC §4). Within a device, a detection older than its open
//! session is merged into it when within `session_gap_s` of its start; one
//! that would merge with a session already closed starts nothing. Captures
//! reorder by milliseconds (see ../shared/data), far below those bounds.

pub mod days;

use std::collections::{BTreeMap, VecDeque};

use footfall_report::{
    dwell_bucket, DayReport, Report, Sketch, WindowReport, DAY_SCHEMA, DWELL_EDGES_S, WINDOW_SCHEMA,
};
use serde::{Deserialize, Serialize};

use crate::config::Counting;
use crate::detect::Detection;
use crate::privacy::{DeviceId, IdMap, IdSet};
use days::LocalDays;

const US_PER_S: i64 = 1_000_000;
/// SPEC §3: residents are judged on the seven days before.
const RESIDENT_LOOKBACK_DAYS: i32 = 7;
const NO_DAY: i32 = i32::MIN;

/// Where device histories live when the device is not in memory.
pub trait HistoryStore {
    fn load(&mut self, id: DeviceId) -> Result<Option<History>, HistoryError>;
    fn save(&mut self, id: DeviceId, history: &History);
    fn remove(&mut self, id: DeviceId);
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HistoryError(pub String);

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
    /// Presence so far of the newest day that has any.
    pub presence_day: i32,
    pub presence_s: u64,
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
    fn shift_to(&mut self, day: i32) {
        if self.day == NO_DAY {
            self.day = day;
        } else if day > self.day {
            let by = (day - self.day) as u32;
            self.qualified = self.qualified.checked_shl(by).unwrap_or(0);
            self.visited = self.visited.checked_shl(by).unwrap_or(0);
            self.day = day;
        }
    }

    fn bit(set: u64, base: i32, day: i32) -> bool {
        if base == NO_DAY || day > base || base - day >= 64 {
            return false;
        }
        set >> (base - day) & 1 == 1
    }

    fn qualified_on(&self, day: i32) -> bool {
        History::bit(self.qualified, self.day, day)
    }

    fn visited_on(&self, day: i32) -> bool {
        History::bit(self.visited, self.day, day)
    }

    fn set(&mut self, day: i32, visited: bool) {
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

/// Parameters in the units the counter works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub gap_us: i64,
    pub min_dwell_us: i64,
    pub window_us: i64,
    pub settle_us: i64,
    pub resident_days: u32,
    pub resident_presence_s: u64,
    pub loyalty_days: i32,
}

impl From<&Counting> for Params {
    fn from(c: &Counting) -> Params {
        Params {
            gap_us: i64::from(c.session_gap_s) * US_PER_S,
            min_dwell_us: i64::from(c.min_dwell_s) * US_PER_S,
            window_us: i64::from(c.window_s) * US_PER_S,
            settle_us: i64::from(c.settle_s()) * US_PER_S,
            resident_days: c.resident_days,
            resident_presence_s: u64::from(c.resident_presence_s),
            loyalty_days: c.loyalty_days as i32,
        }
    }
}

/// Fields every report carries besides its counts (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportMeta {
    pub store_id: String,
    pub agent_id: String,
    pub agent_version: String,
    pub params_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    first_us: i64,
    last_us: i64,
    start_day: i32,
    open: bool,
    /// For a closed session: whether it was a visit (decided when it closed).
    visit: bool,
}

impl Session {
    fn dwell_s(&self) -> u64 {
        ((self.last_us - self.first_us) / US_PER_S) as u64
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Device {
    /// Sessions still needed by a window that is not final, oldest first;
    /// only the last can be open.
    sessions: Vec<Session>,
    /// (window, day) of the last entry pushed, to skip the obvious repeats.
    last_entry: (i64, i32),
    /// The newest window with a detection of this device.
    last_window: i64,
    hist: History,
    /// Whether the store holds a history for it: one that never was stored
    /// needs no delete when it goes (most devices are passers-by).
    stored: bool,
    #[serde(skip)]
    mark: Mark,
}

/// What `finalize_front` learnt of a device in the window it is deciding,
/// kept on the device so that a window's entries need not be sorted to be
/// grouped by device (the sort was ~110 of a frame's instructions, issue
/// 7). Valid only for the attempt it names, so a window that waits leaves
/// nothing behind; never stored.
#[derive(Debug, Clone, Copy, Default)]
struct Mark {
    attempt: u64,
    /// Counted in the window's `detected`.
    detected: bool,
    /// A visit of the device overlaps the window.
    visit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    New,
    Returning,
    Randomized,
}

impl Device {
    fn open_session(&self) -> Option<&Session> {
        self.sessions.last().filter(|s| s.open)
    }

    /// SPEC §3 resident status on `day`; `None` while an open session that
    /// started in the seven days before could still tip it.
    fn resident_on(&self, day: i32, p: &Params) -> Option<bool> {
        if self.hist.randomized {
            return Some(false);
        }
        let window = day - RESIDENT_LOOKBACK_DAYS..day;
        let mut count = window
            .clone()
            .filter(|&d| self.hist.qualified_on(d))
            .count() as u32;
        let mut pending = false;
        if let Some(open) = self.open_session() {
            if window.contains(&open.start_day) && !self.hist.qualified_on(open.start_day) {
                let before = if self.hist.presence_day == open.start_day {
                    self.hist.presence_s
                } else {
                    0
                };
                if before + open.dwell_s() >= p.resident_presence_s {
                    count += 1;
                } else {
                    pending = true;
                }
            }
        }
        if count >= p.resident_days {
            Some(true)
        } else if pending && count + 1 >= p.resident_days {
            None
        } else {
            Some(false)
        }
    }

    /// Whether a session is (or, open, already is certain to be) a visit.
    fn is_visit(&self, s: &Session, p: &Params) -> Option<bool> {
        if !s.open {
            return Some(s.visit);
        }
        if s.last_us - s.first_us < p.min_dwell_us {
            return Some(false);
        }
        self.resident_on(s.start_day, p).map(|r| !r)
    }

    fn class(&self, day: i32, p: &Params) -> Class {
        if self.hist.randomized {
            Class::Randomized
        } else if (day - p.loyalty_days..day).any(|d| self.hist.visited_on(d)) {
            Class::Returning
        } else {
            Class::New
        }
    }

    /// Closes the open session and folds it into the history.
    fn close(&mut self, p: &Params) {
        let Some(idx) = self
            .sessions
            .len()
            .checked_sub(1)
            .filter(|&i| self.sessions[i].open)
        else {
            return;
        };
        // Every earlier session is closed, so status on the start day is known.
        let s = self.sessions[idx];
        let resident = self.resident_on(s.start_day, p) == Some(true);
        let visit = s.last_us - s.first_us >= p.min_dwell_us && !resident;
        let h = &mut self.hist;
        if h.presence_day == s.start_day {
            h.presence_s += s.dwell_s();
        } else if s.start_day > h.presence_day {
            h.presence_day = s.start_day;
            h.presence_s = s.dwell_s();
        }
        if h.presence_day == s.start_day && h.presence_s >= p.resident_presence_s {
            h.set(s.start_day, false);
        }
        if visit {
            h.set(s.start_day, true);
        }
        let s = &mut self.sessions[idx];
        s.open = false;
        s.visit = visit;
    }

    fn strong(&mut self, t_us: i64, days: &LocalDays, p: &Params) {
        match self.sessions.last_mut() {
            Some(s) if s.open => {
                if t_us >= s.last_us {
                    if t_us - s.last_us <= p.gap_us {
                        s.last_us = t_us;
                        return;
                    }
                    self.close(p);
                } else if t_us >= s.first_us {
                    return;
                } else {
                    let prev_last = self.sessions.iter().rev().nth(1).map(|q| q.last_us);
                    let s = self.sessions.last_mut().expect("matched above");
                    if s.first_us - t_us <= p.gap_us
                        && prev_last.is_none_or(|l| t_us - l > p.gap_us)
                    {
                        s.first_us = t_us;
                        s.start_day = days.day_of(t_us);
                    }
                    return;
                }
            }
            Some(s) if t_us <= s.last_us => return,
            _ => {}
        }
        self.sessions.push(Session {
            first_us: t_us,
            last_us: t_us,
            start_day: days.day_of(t_us),
            open: true,
            visit: false,
        });
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WindowAcc {
    frames: u64,
    frames_no_signal: u64,
    /// (device, local day of the detection), with repeats.
    entries: Vec<(DeviceId, i32)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct DayAcc {
    visits: u64,
    unique_visitors: u64,
    new: u64,
    returning: u64,
    randomized: u64,
    residents: u64,
}

/// Everything the counter must remember across a restart.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    clock_us: Option<i64>,
    /// Index of the oldest window that is not final.
    next_window: Option<i64>,
    /// Windows `next_window ..`, not yet final.
    windows: VecDeque<WindowAcc>,
    /// The oldest local day not yet reported.
    next_day: Option<i32>,
    days: BTreeMap<i32, DayAcc>,
    devices: IdMap<Device>,
    /// Randomized devices gone from memory that were counted in a day not
    /// yet reported, by that day: all a randomized device's past can
    /// change (SPEC §3: never returning nor resident), so it stays here
    /// and not in the store. Most devices are randomized and never come
    /// back; storing each and deleting it a day later was most of the
    /// store's writes, and so of a replay's time and memory.
    randomized_visitors: BTreeMap<i32, IdSet>,
    pub late_frames: u64,
}

/// `State` as state format v2 wrote it, before `randomized_visitors`: the
/// store upgrades a v2 state through it (postcard is positional, so the
/// old layout must be spelled out).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct StateV2 {
    clock_us: Option<i64>,
    next_window: Option<i64>,
    windows: VecDeque<WindowAcc>,
    next_day: Option<i32>,
    days: BTreeMap<i32, DayAcc>,
    devices: IdMap<Device>,
    late_frames: u64,
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

/// The counter: `State` plus what is derived from the config.
pub struct Counter {
    pub state: State,
    params: Params,
    days: LocalDays,
    meta: ReportMeta,
    out: Vec<Report>,
    /// Numbers `finalize_front`'s attempts, for `Mark`.
    attempt: u64,
}

enum Finalized {
    Done,
    NotYet,
}

impl Counter {
    pub fn new(
        counting: &Counting,
        tz: jiff::tz::TimeZone,
        meta: ReportMeta,
        state: State,
    ) -> Counter {
        Counter {
            state,
            params: Params::from(counting),
            days: LocalDays::new(tz),
            meta,
            out: Vec::new(),
            attempt: 0,
        }
    }

    pub fn clock_us(&self) -> Option<i64> {
        self.state.clock_us
    }

    /// Devices held in memory: those with an open session or a detection
    /// in a window that is not final.
    pub fn devices_in_memory(&self) -> usize {
        self.state.devices.len()
    }

    /// Devices in the store now: those with a strong session still open
    /// (for the `live` topic; not a SPEC count).
    pub fn present_devices(&self) -> usize {
        self.state
            .devices
            .values()
            .filter(|d| d.open_session().is_some())
            .count()
    }

    /// Visits so far today (local day of the clock), from final windows.
    pub fn visits_today(&self) -> u64 {
        self.state
            .clock_us
            .and_then(|c| self.state.days.get(&self.days.day_of(c)))
            .map_or(0, |d| d.visits)
    }

    /// Reports final but not yet drained.
    pub fn pending_reports(&self) -> usize {
        self.out.len()
    }

    /// Reports that became final since the last call, in order (seq 0:
    /// the caller numbers them as it commits them).
    pub fn drain_reports(&mut self) -> Vec<Report> {
        std::mem::take(&mut self.out)
    }

    fn window_of(&self, t_us: i64) -> i64 {
        t_us.div_euclid(self.params.window_us)
    }

    /// One detection (SPEC §1, already keyed).
    pub fn detection(
        &mut self,
        d: &Detection,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        let w = self.window_of(d.t_us);
        let next_window = match self.state.next_window {
            Some(nw) if w < nw => {
                self.state.late_frames += 1;
                return Ok(());
            }
            Some(nw) => nw,
            None => {
                self.state.next_window = Some(w);
                let day = self.days.day_of(w * self.params.window_us);
                self.state.next_day.get_or_insert(day);
                w
            }
        };
        let day = self.days.day_of(d.t_us);
        self.extend_windows(w);
        let acc = &mut self.state.windows[(w - next_window) as usize];
        acc.frames += 1;
        acc.frames_no_signal += u64::from(d.no_signal);

        let dev = match self.state.devices.get_mut(&d.device) {
            Some(dev) => dev,
            None => {
                let (hist, stored) = if d.randomized {
                    let visitor_day = self
                        .state
                        .randomized_visitors
                        .iter_mut()
                        .rev()
                        .find_map(|(&day, ids)| ids.remove(&d.device).then_some(day));
                    let h = History {
                        randomized: true,
                        visitor_day: visitor_day.unwrap_or(NO_DAY),
                        ..History::default()
                    };
                    (h, false)
                } else {
                    match store.load(d.device)? {
                        Some(h) => (h, true),
                        None => (History::default(), false),
                    }
                };
                self.state.devices.entry(d.device).or_insert(Device {
                    sessions: Vec::new(),
                    last_entry: (i64::MIN, NO_DAY),
                    last_window: w,
                    hist,
                    stored,
                    mark: Mark::default(),
                })
            }
        };
        if dev.last_entry != (w, day) {
            acc.entries.push((d.device, day));
            dev.last_entry = (w, day);
        }
        dev.last_window = dev.last_window.max(w);
        if d.strong {
            dev.strong(d.t_us, &self.days, &self.params);
        }
        if self.state.clock_us.is_none_or(|c| d.t_us > c) {
            self.advance(d.t_us, store);
        }
        Ok(())
    }

    fn extend_windows(&mut self, upto: i64) {
        if let Some(nw) = self.state.next_window {
            while nw + (self.state.windows.len() as i64) <= upto {
                self.state.windows.push_back(WindowAcc::default());
            }
        }
    }

    /// Moves the clock (SPEC §4: in replay the newest capture timestamp;
    /// live, also wall time) and reports the windows that became final.
    pub fn advance(&mut self, now_us: i64, store: &mut dyn HistoryStore) {
        let clock = self.state.clock_us.map_or(now_us, |c| c.max(now_us));
        self.state.clock_us = Some(clock);
        let Some(nw) = self.state.next_window else {
            return;
        };
        // Nothing can become final before the oldest window has settled.
        if clock < (nw + 1) * self.params.window_us + self.params.settle_us {
            return;
        }
        self.extend_windows(self.window_of(clock));
        self.close_idle(clock);
        while let Some(nw) = self.state.next_window {
            if clock < (nw + 1) * self.params.window_us + self.params.settle_us {
                break;
            }
            match self.finalize_front() {
                Finalized::Done => {}
                Finalized::NotYet => break,
            }
        }
        self.evict(store);
    }

    /// SPEC §4, end of input: every session closes, every window up to the
    /// clock's is final, and every day up to the clock's is reported.
    pub fn finish(&mut self, store: &mut dyn HistoryStore) {
        let Some(clock) = self.state.clock_us else {
            return;
        };
        self.close_everything_through(clock);
        let last_day = self.days.day_of(clock);
        self.report_days_through(last_day);
        self.evict(store);
    }

    /// Closes every session and makes every window up to `clock`'s final.
    fn close_everything_through(&mut self, clock: i64) {
        for dev in self.state.devices.values_mut() {
            dev.close(&self.params);
        }
        let last = self.window_of(clock);
        self.extend_windows(last);
        while self.state.next_window.is_some_and(|nw| nw <= last) {
            // With every session closed every status is decided, so this
            // never waits; if it did, the windows would stay pending.
            if let Finalized::NotYet = self.finalize_front() {
                break;
            }
        }
    }

    /// Live restart after downtime (SPEC §4: empty windows are reported so
    /// that "nothing happened" and "the agent was down" differ). The windows
    /// the agent observed become final as at the end of input; the windows
    /// and whole days it was down for are not reported at all, and counting
    /// resumes at `now_us`. Returns whether there was a gap to skip.
    pub fn skip_gap(&mut self, now_us: i64, store: &mut dyn HistoryStore) -> bool {
        let Some(clock) = self.state.clock_us else {
            return false;
        };
        if now_us - clock <= self.params.window_us + self.params.settle_us {
            return false;
        }
        self.close_everything_through(clock);
        let resume = self.window_of(now_us);
        let (clock_day, resume_day) = (
            self.days.day_of(clock),
            self.days.day_of(resume * self.params.window_us),
        );
        if resume_day > clock_day {
            // The day the agent went down is over: report what it saw of it.
            self.report_days_through(clock_day);
            self.state.next_day = Some(resume_day);
        }
        self.state.windows.clear();
        self.state.next_window = Some(resume);
        self.state.clock_us = Some(now_us);
        self.evict(store);
        true
    }

    fn close_idle(&mut self, clock: i64) {
        let p = self.params;
        for dev in self.state.devices.values_mut() {
            if dev
                .open_session()
                .is_some_and(|s| clock - s.last_us > p.gap_us)
            {
                dev.close(&p);
            }
        }
    }

    /// Computes the oldest pending window, if every status it needs is known.
    fn finalize_front(&mut self) -> Finalized {
        let p = self.params;
        let nw = self
            .state
            .next_window
            .expect("called with a pending window");
        let (ws, we) = (nw * p.window_us, (nw + 1) * p.window_us);
        let acc = self.state.windows.pop_front().unwrap_or_default();
        self.attempt += 1;
        let attempt = self.attempt;

        // Decide everything first, so that waiting leaves no trace. The
        // entries come in detection order, with repeats; a device's
        // sessions are judged at its first entry, its days at each.
        struct Visit {
            dev: DeviceId,
            day: i32,
            class: Class,
        }
        let mut visits: Vec<Visit> = Vec::new();
        let mut resident_days: Vec<(DeviceId, i32)> = Vec::new();
        let (mut detected, mut passersby) = (0u64, 0u64);
        let mut dwell_counts = vec![0u64; DWELL_EDGES_S.len()];
        let mut dwell_sum_s = 0u64;
        for i in 0..acc.entries.len() {
            let (id, day) = acc.entries[i];
            let dev = self
                .state
                .devices
                .get_mut(&id)
                .expect("a device with an entry in a pending window is in memory");
            if dev.mark.attempt != attempt {
                let mut visit_in_w = false;
                for s in &dev.sessions {
                    if s.last_us < ws || s.first_us >= we {
                        continue;
                    }
                    match dev.is_visit(s, &p) {
                        None => return self.not_yet(acc),
                        Some(false) => continue,
                        Some(true) => {}
                    }
                    visit_in_w = true;
                    if s.first_us >= ws {
                        visits.push(Visit {
                            dev: id,
                            day: s.start_day,
                            class: dev.class(s.start_day, &p),
                        });
                    }
                    if s.last_us < we && !s.open {
                        dwell_counts[dwell_bucket(s.dwell_s())] += 1;
                        dwell_sum_s += s.dwell_s();
                    }
                }
                dev.mark = Mark {
                    attempt,
                    detected: false,
                    visit: visit_in_w,
                };
            }
            match dev.resident_on(day, &p) {
                None => return self.not_yet(acc),
                Some(true) => resident_days.push((id, day)),
                Some(false) if !dev.mark.detected => {
                    dev.mark.detected = true;
                    detected += 1;
                    passersby += u64::from(!dev.mark.visit);
                }
                Some(false) => {}
            }
        }
        // Residents are few: sorting them groups each device's days.
        resident_days.sort_unstable();
        resident_days.dedup();

        // Commit.
        let mut sketch = Sketch::new();
        let (mut visitors, mut new, mut returning, mut randomized) = (0u64, 0u64, 0u64, 0u64);
        let mut last_dev = None;
        let next_day = self.state.next_day.unwrap_or(NO_DAY);
        for v in &visits {
            if last_dev != Some(v.dev) {
                last_dev = Some(v.dev);
                visitors += 1;
                sketch.insert(v.dev.0);
                match v.class {
                    Class::New => new += 1,
                    Class::Returning => returning += 1,
                    Class::Randomized => randomized += 1,
                }
            }
            if v.day < next_day {
                continue;
            }
            let dev = self.state.devices.get_mut(&v.dev).expect("seen above");
            let day = self.state.days.entry(v.day).or_default();
            day.visits += 1;
            if dev.hist.visitor_day != v.day {
                dev.hist.visitor_day = v.day;
                day.unique_visitors += 1;
                match v.class {
                    Class::New => day.new += 1,
                    Class::Returning => day.returning += 1,
                    Class::Randomized => day.randomized += 1,
                }
            }
        }
        let mut residents = 0u64;
        let mut last_dev = None;
        for &(id, day) in &resident_days {
            if last_dev != Some(id) {
                last_dev = Some(id);
                residents += 1;
            }
            if day < next_day {
                continue;
            }
            let dev = self.state.devices.get_mut(&id).expect("seen above");
            if dev.hist.resident_day != day {
                dev.hist.resident_day = day;
                self.state.days.entry(day).or_default().residents += 1;
            }
        }
        self.out.push(Report::Window(WindowReport {
            schema: WINDOW_SCHEMA.into(),
            store_id: self.meta.store_id.clone(),
            agent_id: self.meta.agent_id.clone(),
            seq: 0,
            window_start: ws / US_PER_S,
            window_end: we / US_PER_S,
            frames: acc.frames,
            frames_no_signal: acc.frames_no_signal,
            detected,
            visits: visits.len() as u64,
            visitors,
            visitors_new: new,
            visitors_returning: returning,
            visitors_randomized: randomized,
            passersby,
            residents,
            dwell_edges_s: DWELL_EDGES_S.to_vec(),
            dwell_counts,
            dwell_sum_s,
            visitor_sketch: sketch,
            agent_version: self.meta.agent_version.clone(),
            params_hash: self.meta.params_hash.clone(),
        }));
        self.state.next_window = Some(nw + 1);
        // SPEC §5: a day is final once every window that overlaps it is.
        if let Some(d) = self.state.next_day {
            let mut day = d;
            while self.days.bounds(day).1 <= we {
                day += 1;
            }
            if day > d {
                self.report_days_through(day - 1);
            }
        }
        Finalized::Done
    }

    fn not_yet(&mut self, acc: WindowAcc) -> Finalized {
        self.state.windows.push_front(acc);
        Finalized::NotYet
    }

    fn report_days_through(&mut self, last: i32) {
        let Some(mut day) = self.state.next_day else {
            return;
        };
        while day <= last {
            let acc = self.state.days.remove(&day).unwrap_or_default();
            self.out.push(Report::Day(DayReport {
                schema: DAY_SCHEMA.into(),
                store_id: self.meta.store_id.clone(),
                agent_id: self.meta.agent_id.clone(),
                seq: 0,
                date: self.days.date_string(day),
                visits: acc.visits,
                unique_visitors: acc.unique_visitors,
                visitors_new: acc.new,
                visitors_returning: acc.returning,
                visitors_randomized: acc.randomized,
                residents: acc.residents,
                agent_version: self.meta.agent_version.clone(),
                params_hash: self.meta.params_hash.clone(),
            }));
            day += 1;
        }
        self.state.next_day = Some(day);
        self.state.randomized_visitors = self.state.randomized_visitors.split_off(&day);
    }

    /// Which stored histories still matter; `None` before any detection.
    pub fn history_horizon(&self) -> Option<Horizon> {
        let next_day = self.state.next_day?;
        Some(Horizon {
            next_day,
            keep_from: next_day - self.params.loyalty_days.max(RESIDENT_LOOKBACK_DAYS),
        })
    }

    /// Drops from memory the devices no pending window needs, handing their
    /// history to the store; sessions no pending window needs are dropped.
    fn evict(&mut self, store: &mut dyn HistoryStore) {
        let (Some(nw), Some(horizon)) = (self.state.next_window, self.history_horizon()) else {
            return;
        };
        let first_pending_us = nw * self.params.window_us;
        let randomized = &mut self.state.randomized_visitors;
        self.state.devices.retain(|&id, dev| {
            dev.sessions
                .retain(|s| s.open || s.last_us >= first_pending_us);
            if !dev.sessions.is_empty() || dev.last_window >= nw {
                return true;
            }
            let h = &dev.hist;
            if h.randomized {
                if h.is_useful(horizon) {
                    randomized.entry(h.visitor_day).or_default().insert(id);
                }
            } else if h.is_useful(horizon) {
                store.save(id, h);
            } else if dev.stored {
                store.remove(id);
            }
            false
        });
    }
}

/// A `HistoryStore` in memory, for tests and `inspect`-like uses.
#[derive(Debug, Default)]
pub struct MemHistory(pub IdMap<History>);

impl HistoryStore for MemHistory {
    fn load(&mut self, id: DeviceId) -> Result<Option<History>, HistoryError> {
        Ok(self.0.get(&id).copied())
    }
    fn save(&mut self, id: DeviceId, history: &History) {
        self.0.insert(id, *history);
    }
    fn remove(&mut self, id: DeviceId) {
        self.0.remove(&id);
    }
}

#[cfg(test)]
mod tests;
