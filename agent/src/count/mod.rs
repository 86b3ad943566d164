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
mod day;
mod device;
mod epoch;
mod history;
mod spill;
mod state;
mod visitors;
mod window;

use footfall_report::Report;

use footfall_report::PrivacyMode;

use crate::config::{Counting, Privacy, Rotation};
use crate::days::LocalDays;
use crate::detect::Detection;
use crate::people::{Calibration, Features, Observations};
use crate::privacy::DeviceId;
use device::Device;
use epoch::EpochObs;
use history::NO_DAY;
pub use history::{History, HistoryError, HistoryStore, Horizon, MemHistory, Spilled};
pub(crate) use state::in_parts;
use state::WindowAcc;
pub use state::{Bulk, BulkPart, State, StateV2, StateV3, StateV4};
use visitors::RandomizedVisitors;
pub use visitors::{PartAt, ReadPart};

const US_PER_S: i64 = 1_000_000;
/// SPEC §3: residents are judged on the seven days before.
const RESIDENT_LOOKBACK_DAYS: i32 = 7;
/// Live, the clock follows wall time; it ends a key epoch only this long
/// after the epoch's end, so that frames still on their way from the
/// capture thread (flushed every 500 ms) are not cut off as late.
const ROTATION_LAG_US: i64 = 2 * US_PER_S;

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

/// The counter: `State` plus what is derived from the config.
pub struct Counter {
    pub state: State,
    params: Params,
    days: LocalDays,
    meta: ReportMeta,
    out: Vec<Report>,
    /// Numbers `finalize_front`'s attempts, for `Mark`.
    attempt: u64,
    /// SPEC §8: how features become people; `None` reports no estimates.
    people: Option<Calibration>,
    /// Each final window's start (s) and people features, when asked for
    /// (`calibrate` fits on them; `evaluate` shows them).
    features: Option<Vec<(i64, Features)>>,
    /// Issue 18: what the mode lets the counter link, and for how long.
    privacy: Privacy,
    /// The key epoch the counter is in (`epoch`); memory only.
    epoch: Option<i64>,
    /// `ephemeral`: the current epoch's observations, never checkpointed.
    epoch_obs: Option<EpochObs>,
    /// Devices in memory at most (`[memory] devices`); beyond, the
    /// coldest are spilled to the store (`spill`).
    device_budget: usize,
    /// Devices in memory past which `keep_budget` next looks for some to
    /// spill.
    spill_at: usize,
    /// Spilled devices of the windows made final since the last `evict`.
    finalized_spilled: Vec<DeviceId>,
    /// The first pending window at the last `evict_spilled`.
    evicted_at: Option<i64>,
    /// The last `evict` kept devices because the store was `full`.
    deferred: bool,
    /// Devices a window (or an ephemeral key epoch) observes for the
    /// people estimate before it observes only a share of the MACs
    /// (`[memory] people_observations`, `Observations::observe`).
    people_budget: usize,
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
        mut state: State,
    ) -> Counter {
        let unjudged = std::mem::take(&mut state.unjudged);
        Counter {
            state,
            params: Params::from(counting),
            days: LocalDays::new(tz),
            meta,
            out: Vec::new(),
            attempt: 0,
            people: Some(Calibration::builtin()),
            features: None,
            privacy: Privacy {
                mode: PrivacyMode::Loyalty,
                rotation: Rotation::Never,
            },
            epoch: None,
            epoch_obs: None,
            device_budget: usize::MAX,
            spill_at: usize::MAX,
            deferred: !unjudged.is_empty(),
            finalized_spilled: unjudged,
            evicted_at: None,
            people_budget: usize::MAX,
        }
    }

    /// Counts as `privacy`'s mode allows (the default is `loyalty` with a
    /// key kept for ever: everything SPEC §3-§5 counts).
    pub fn with_privacy(mut self, privacy: Privacy) -> Counter {
        self.privacy = privacy;
        self
    }

    pub fn privacy_mode(&self) -> PrivacyMode {
        self.privacy.mode
    }

    /// The `params_hash` its reports carry.
    pub fn params_hash(&self) -> &str {
        &self.meta.params_hash
    }

    /// The key epoch the counter is in (`None` before the first detection,
    /// or when the key never rotates).
    pub fn key_epoch(&self) -> Option<i64> {
        self.epoch
    }

    /// Estimates people with `calibration`, or not at all (`None`: every
    /// SPEC §8 field is then `null`).
    pub fn with_people(mut self, calibration: Option<Calibration>) -> Counter {
        self.people = calibration;
        self
    }

    /// Keeps each final window's people features, for `take_features`.
    pub fn record_features(mut self) -> Counter {
        self.features = Some(Vec::new());
        self
    }

    /// The features recorded since the last call, by window start (s).
    pub fn take_features(&mut self) -> Vec<(i64, Features)> {
        self.features
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    pub fn clock_us(&self) -> Option<i64> {
        self.state.clock_us
    }

    /// Devices held in memory: those with an open session or a detection
    /// in a window that is not final.
    pub fn devices_in_memory(&self) -> usize {
        self.state.devices.len()
    }

    /// What the counter holds per device besides the device map, for the
    /// metrics of memory (issue 20): window entries and people
    /// observations of every pending window (and, under `ephemeral`, of
    /// the key epoch in progress).
    pub fn held_per_device(&self) -> (usize, usize) {
        let windows = &self.state.windows;
        let entries = windows.iter().map(|w| w.entries.len()).sum();
        let observed = windows.iter().map(|w| w.people.devices()).sum::<usize>()
            + self.epoch_obs.as_ref().map_or(0, |e| e.obs.devices());
        (entries, observed)
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

    /// Windows not yet final.
    pub fn pending_windows(&self) -> usize {
        self.state.windows.len()
    }

    /// Reports that became final since the last call, in order (seq 0:
    /// the caller numbers them as it commits them).
    pub fn drain_reports(&mut self) -> Vec<Report> {
        std::mem::take(&mut self.out)
    }

    fn window_of(&self, t_us: i64) -> i64 {
        t_us.div_euclid(self.params.window_us)
    }

    /// `detection` for each of `ds`, in order. The memory of the next few
    /// is asked for (`prefetch`) before these few are counted, so that
    /// their cache misses overlap the work and one another: under a crowd
    /// the counting thread waited for a miss on the device table at every
    /// frame, one at a time (perf, issue 20).
    pub fn detections(
        &mut self,
        ds: &[Detection],
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        /// Enough misses in flight to overlap; few enough lines that they
        /// are still cached when their frames are counted.
        const AHEAD: usize = 8;
        let mut chunks = ds.chunks(AHEAD).peekable();
        if let Some(first) = chunks.peek() {
            for d in *first {
                self.prefetch(d, store);
            }
        }
        while let Some(chunk) = chunks.next() {
            if let Some(next) = chunks.peek() {
                for d in *next {
                    self.prefetch(d, store);
                }
            }
            for d in chunk {
                self.detection(d, store)?;
            }
        }
        Ok(())
    }

    /// Hints the CPU to load what `detection` will read for `d`. Only a
    /// hint: it changes nothing, so a table that moves before `d` is
    /// counted costs a wasted prefetch, never a wrong count.
    fn prefetch(&self, d: &Detection, store: &dyn HistoryStore) {
        let observe = d.strong && self.people.is_some();
        if self.privacy.mode == PrivacyMode::Ephemeral {
            if let Some(e) = self.epoch_obs.as_ref().filter(|_| observe) {
                e.obs.prefetch(d);
            }
            return;
        }
        if !self.prefetch_device(d.device, store) && d.randomized {
            self.state.randomized_visitors.prefetch(d.device);
        }
        if observe {
            let at = self
                .state
                .next_window
                .and_then(|nw| usize::try_from(self.window_of(d.t_us) - nw).ok());
            if let Some(acc) = at.and_then(|i| self.state.windows.get(i)) {
                acc.people.prefetch(d);
            }
        }
    }

    /// Hints the CPU to load device `id`, in memory or, only if it is not
    /// there, its word of the spill's filter. False: `id` is surely not in
    /// memory.
    fn prefetch_device(&self, id: DeviceId, store: &dyn HistoryStore) -> bool {
        let there = self.state.devices.prefetch(id);
        if !there && store.spilled() > 0 {
            store.prefetch_spilled(id);
        }
        there
    }

    /// One detection (SPEC §1, already keyed).
    pub fn detection(
        &mut self,
        d: &Detection,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        if self.epoch_is_over(d.epoch) {
            self.state.late_frames += 1;
            return Ok(());
        }
        self.rotate_to(d.epoch, store)?;
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
        let in_window = (w - next_window) as usize;
        let acc = &mut self.state.windows[in_window];
        acc.frames += 1;
        acc.frames_no_signal += u64::from(d.no_signal);
        if self.privacy.mode == PrivacyMode::Ephemeral {
            // No device is followed: the detection only feeds the epoch's
            // people estimate, in memory.
            if d.strong && self.people.is_some() {
                self.epoch_obs
                    .get_or_insert_with(|| EpochObs {
                        epoch: d.epoch,
                        obs: Default::default(),
                    })
                    .obs
                    .observe(d, self.people_budget);
            }
            if self.state.clock_us.is_none_or(|c| d.t_us > c) {
                self.advance(d.t_us, store)?;
            }
            return Ok(());
        }
        // Found once, where the frame's fields are read and written below.
        let mut at = self.state.devices.find(d.device);
        if at.is_none() && store.spilled() > 0 {
            at = self.reload(d.device, store)?;
        }
        // Again: a device taken back is entered in the window that counted it.
        let acc = &mut self.state.windows[in_window];
        if d.strong && self.people.is_some() {
            acc.people.observe(d, self.people_budget);
        }
        // The Unix time's low 32 bits (`Device::seen_s`).
        let t_s = (d.t_us / US_PER_S) as u32;
        let dev = match at {
            Some(at) => self.state.devices.at_mut(at),
            None => {
                let (hist, stored) = if d.randomized {
                    let visitor_day = self
                        .state
                        .randomized_visitors
                        .take(d.device, &mut |at| store.read_randomized(at))?;
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
                let mut dev = Device::new(w, hist, t_s);
                dev.stored = stored;
                self.state.devices.insert_new(d.device, dev)
            }
        };
        if !dev.has_entry(w, day) {
            acc.entries.push(d.device, day);
        }
        dev.note_entry(w, day);
        dev.seen_s = dev.seen_s.max(t_s);
        if d.strong {
            dev.strong(d.t_us, &self.days, &self.params);
        }
        if self.state.clock_us.is_none_or(|c| d.t_us > c) {
            self.advance(d.t_us, store)?;
        }
        self.keep_budget(store)
    }

    fn extend_windows(&mut self, upto: i64) {
        if let Some(nw) = self.state.next_window {
            while nw + (self.state.windows.len() as i64) <= upto {
                // Sized as the last window came to be: windows in a row
                // see about as many devices.
                let room = self.state.windows.back().map_or(0, |w| w.people.devices());
                self.state.windows.push_back(WindowAcc {
                    people: Observations::with_room_for(room),
                    ..WindowAcc::default()
                });
            }
        }
    }

    /// Moves the clock (SPEC §4: in replay the newest capture timestamp;
    /// live, also wall time) and reports the windows that became final.
    pub fn advance(
        &mut self,
        now_us: i64,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        if self.state.clock_us.is_some_and(|c| now_us > c) {
            self.rotate_to(self.epoch_of(now_us - ROTATION_LAG_US), store)?;
        }
        let clock = self.state.clock_us.map_or(now_us, |c| c.max(now_us));
        self.state.clock_us = Some(clock);
        let Some(nw) = self.state.next_window else {
            return Ok(());
        };
        // Nothing can become final before the oldest window has settled.
        if clock < (nw + 1) * self.params.window_us + self.params.settle_us {
            return Ok(());
        }
        self.extend_windows(self.window_of(clock));
        self.close_idle(clock);
        while let Some(nw) = self.state.next_window {
            if clock < (nw + 1) * self.params.window_us + self.params.settle_us {
                break;
            }
            match self.finalize_front(store)? {
                Finalized::Done => {}
                Finalized::NotYet => break,
            }
        }
        self.evict(store)?;
        self.keep_budget(store)
    }

    /// SPEC §4, end of input: every session closes, every window up to the
    /// clock's is final, and every day up to the clock's is reported.
    pub fn finish(&mut self, store: &mut dyn HistoryStore) -> Result<(), HistoryError> {
        let Some(clock) = self.state.clock_us else {
            return Ok(());
        };
        self.end_ephemeral_epoch();
        self.close_everything_through(clock, store)?;
        let last_day = self.days.day_of(clock);
        self.report_days_through(last_day);
        self.evict(store)
    }

    /// Closes every session and makes every window up to `clock`'s final.
    fn close_everything_through(
        &mut self,
        clock: i64,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        for dev in self.state.devices.values_mut() {
            dev.close(&self.params);
        }
        self.close_spilled(store)?;
        let last = self.window_of(clock);
        self.extend_windows(last);
        while self.state.next_window.is_some_and(|nw| nw <= last) {
            // With every session closed every status is decided, so this
            // never waits; if it did, the windows would stay pending.
            if let Finalized::NotYet = self.finalize_front(store)? {
                break;
            }
        }
        Ok(())
    }

    /// Live restart after downtime (SPEC §4: empty windows are reported so
    /// that "nothing happened" and "the agent was down" differ). The windows
    /// the agent observed become final as at the end of input; the windows
    /// and whole days it was down for are not reported at all, and counting
    /// resumes at `now_us`. Returns whether there was a gap to skip.
    pub fn skip_gap(
        &mut self,
        now_us: i64,
        store: &mut dyn HistoryStore,
    ) -> Result<bool, HistoryError> {
        let Some(clock) = self.state.clock_us else {
            return Ok(false);
        };
        if now_us - clock <= self.params.window_us + self.params.settle_us {
            return Ok(false);
        }
        self.end_ephemeral_epoch();
        self.close_everything_through(clock, store)?;
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
        // Before the clock moves: the epoch it was in ends now.
        self.rotate_to(self.epoch_of(now_us), store)?;
        self.state.clock_us = Some(now_us);
        self.evict(store)?;
        Ok(true)
    }

    fn close_idle(&mut self, clock: i64) {
        let p = self.params;
        self.state.closed_idle_at = Some(clock);
        for dev in self.state.devices.values_mut() {
            if dev
                .open_session()
                .is_some_and(|s| clock - s.last_us > p.gap_us)
            {
                dev.close(&p);
            }
        }
    }

    /// Which stored histories still matter; `None` before any detection.
    pub fn history_horizon(&self) -> Option<Horizon> {
        let next_day = self.state.next_day?;
        let mut keep_from = next_day - self.params.loyalty_days.max(RESIDENT_LOOKBACK_DAYS);
        if let Rotation::Days(n) = self.privacy.rotation {
            // Ids of an earlier key are never seen again.
            let n = n as i32;
            keep_from = keep_from.max(next_day.div_euclid(n) * n);
        }
        Some(Horizon {
            next_day,
            keep_from,
        })
    }

    /// Drops from memory the devices no pending window needs, handing their
    /// history to the store; sessions no pending window needs are dropped.
    /// Spilled devices of the windows just made final go the same way.
    ///
    /// A store that is `full` defers the rest to `evict_deferred`, after
    /// its commit; keeping a device longer changes no count, since one in
    /// memory is taken before its stored history.
    fn evict(&mut self, store: &mut dyn HistoryStore) -> Result<(), HistoryError> {
        let Some(mut e) = self.eviction() else {
            return Ok(());
        };
        self.evict_spilled(&mut e, store)?;
        let randomized = &mut self.state.randomized_visitors;
        self.state
            .devices
            .retain(|id, dev| e.keeps(id, dev, randomized, store) != Keep::Gone);
        self.deferred = e.deferred;
        Ok(())
    }

    /// Whether devices wait for `evict_deferred`.
    pub fn has_deferred(&self) -> bool {
        self.deferred
    }

    /// Evicts what the last `evict` kept for want of room in the store:
    /// called after a commit emptied it.
    pub fn evict_deferred(&mut self, store: &mut dyn HistoryStore) -> Result<(), HistoryError> {
        if std::mem::take(&mut self.deferred) {
            self.evict(store)?;
        }
        Ok(())
    }

    /// What `evict` needs to judge a device; `None` before any detection.
    fn eviction(&self) -> Option<Eviction> {
        let (Some(nw), Some(horizon)) = (self.state.next_window, self.history_horizon()) else {
            return None;
        };
        Some(Eviction {
            nw,
            first_pending_us: nw * self.params.window_us,
            horizon,
            deferred: false,
        })
    }
}

/// What `evict` judges a device by, worked out once per eviction.
struct Eviction {
    nw: i64,
    first_pending_us: i64,
    horizon: Horizon,
    /// A device was kept because the store was `full`.
    deferred: bool,
}

/// What `Eviction::keeps` decided for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// A pending window needs it.
    Needed,
    /// Kept until the store has room for its history.
    Deferred,
    /// Its history is handed to the store (or needs none): it goes.
    Gone,
}

impl Eviction {
    /// Whether `dev` stays (in memory or spilled); if it goes, its history
    /// is handed to the store.
    fn keeps(
        &mut self,
        id: DeviceId,
        dev: &mut Device,
        randomized: &mut RandomizedVisitors,
        store: &mut dyn HistoryStore,
    ) -> Keep {
        let first_pending_us = self.first_pending_us;
        dev.sessions
            .retain(|s| s.open || s.last_us >= first_pending_us);
        if !dev.sessions.is_empty() || dev.last_window >= self.nw {
            return Keep::Needed;
        }
        let h = &dev.hist;
        let useful = h.is_useful(self.horizon);
        if h.randomized {
            if useful {
                randomized.insert(h.visitor_day, id);
            }
            return Keep::Gone;
        }
        if (useful || dev.stored) && store.full() {
            self.deferred = true;
            return Keep::Deferred;
        }
        if useful {
            store.save(id, h);
        } else if dev.stored {
            store.remove(id);
        }
        Keep::Gone
    }
}

#[cfg(test)]
mod tests;
