//! The device budget (issue 20): when more devices are in memory than
//! `[memory] devices` allows, the coldest go to the store (`spill`) and
//! come back when a frame or a window needs them. Counting is the same
//! with or without: only speed pays.
//!
//! What keeps it exact:
//! - Only devices with a detection in a pending window are spilled, so
//!   each comes back when the first window that has its entry is made
//!   final (`finalize_front` takes back every entry's device first) and
//!   is evicted from there as it would have been.
//! - A spilled device's open session is not closed by `close_idle`, which
//!   sees memory only. The counter remembers the clock of the last
//!   `close_idle` (`State::closed_idle_at`) and a device taken back is
//!   closed if that pass would have closed it: a pass closes a session
//!   idle for `session_gap_s`, and the passes' clocks only grow, so the
//!   last pass decides.
//! - Ending everything (end of input, a restart after downtime, a day key
//!   rotation) closes spilled devices one at a time, back to the store.
//! - The checkpoint copies spilled devices into its parts, as records,
//!   with `closed_idle_at` (`Part::Spilled`); loading them spills them
//!   again, so a restart in a crowd does not bring the crowd into memory.

use super::device::{Device, Devices};
use super::state::State;
use super::{Counter, HistoryError, HistoryStore, Params};
use crate::privacy::DeviceId;

/// A spilled device's record.
fn record(dev: &Device) -> Vec<u8> {
    postcard::to_stdvec(dev).expect("in-memory structs serialize")
}

impl State {
    /// Spills the coldest devices while more than `budget` are in memory,
    /// down to three quarters of it (so that a pass, which looks at every
    /// device, comes once per a quarter of the budget of new devices).
    /// Returns how many it spilled.
    pub fn spill_over(
        &mut self,
        budget: usize,
        store: &mut dyn HistoryStore,
    ) -> Result<usize, HistoryError> {
        if self.devices.len() <= budget {
            return Ok(0);
        }
        let Some(nw) = self.next_window else {
            return Ok(0);
        };
        let target = budget - budget / 4;
        // Only devices a pending window will take back; the coldest first:
        // no session (weak detections only), then the oldest last frame.
        let mut cold: Vec<(i64, DeviceId)> = self
            .devices
            .iter()
            .filter(|(_, d)| d.last_window >= nw)
            .map(|(&id, d)| (d.sessions.last().map_or(i64::MIN, |s| s.last_us), id))
            .collect();
        let n = (self.devices.len() - target).min(cold.len());
        if n == 0 {
            return Ok(0);
        }
        if n < cold.len() {
            cold.select_nth_unstable(n);
        }
        for &(_, id) in &cold[..n] {
            let dev = self.devices.remove(&id).expect("listed above");
            store.spill(id, &record(&dev))?;
        }
        shrink(&mut self.devices);
        Ok(n)
    }
}

/// A map that emptied by more than half gives its memory back.
fn shrink(devices: &mut Devices) {
    if devices.capacity() > 2 * devices.len() + 1024 {
        devices.shrink_to(devices.len() + devices.len() / 4);
    }
}

impl Counter {
    /// Limits the devices in memory to `budget` (`usize::MAX`: none).
    pub fn with_device_budget(mut self, budget: usize) -> Counter {
        self.device_budget = budget;
        self.spill_at = budget;
        self
    }

    pub fn device_budget(&self) -> usize {
        self.device_budget
    }

    /// Takes `id` back from the store if it is spilled; whether it was.
    pub(super) fn reload(
        &mut self,
        id: DeviceId,
        store: &mut dyn HistoryStore,
    ) -> Result<bool, HistoryError> {
        let Some(bytes) = store.unspill(id)? else {
            return Ok(false);
        };
        let mut dev: Device = postcard::from_bytes(&bytes).map_err(|e| {
            HistoryError(format!("a spilled device does not decode ({e}): damaged"))
        })?;
        close_if_idle(&mut dev, self.state.closed_idle_at, &self.params);
        self.state.devices.insert(id, Box::new(dev));
        Ok(true)
    }

    /// Takes back the spilled devices of a window's entries, before the
    /// window is decided.
    pub(super) fn reload_entries(
        &mut self,
        ids: impl Iterator<Item = DeviceId>,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        for id in ids {
            if store.spilled() == 0 {
                break;
            }
            if !self.state.devices.contains_key(&id) {
                self.reload(id, store)?;
            }
        }
        Ok(())
    }

    /// Closes every spilled device's session, one device in memory at a
    /// time (what `close_everything_through` does to those in memory).
    pub(super) fn close_spilled(
        &mut self,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        for id in store.spilled_ids() {
            let Some(bytes) = store.unspill(id)? else {
                continue;
            };
            let mut dev: Device = postcard::from_bytes(&bytes).map_err(|e| {
                HistoryError(format!("a spilled device does not decode ({e}): damaged"))
            })?;
            dev.close(&self.params);
            store.spill(id, &record(&dev))?;
        }
        Ok(())
    }

    /// Spills over the budget: called where devices come into memory
    /// (a new device, windows taking spilled ones back). A pass that finds
    /// too few to spill (devices no pending window will take back stay)
    /// is not tried again until a quarter of the budget more came in, so
    /// a pass never runs per frame.
    pub(super) fn keep_budget(&mut self, store: &mut dyn HistoryStore) -> Result<(), HistoryError> {
        let len = self.state.devices.len();
        if len <= self.device_budget {
            self.spill_at = self.device_budget;
            return Ok(());
        }
        if len <= self.spill_at {
            return Ok(());
        }
        self.state.spill_over(self.device_budget, store)?;
        self.spill_at = self.device_budget.max(self.state.devices.len() + self.device_budget / 4);
        Ok(())
    }
}

/// Closes `dev`'s open session if the `close_idle` pass at `closed_idle_at`
/// would have closed it.
fn close_if_idle(dev: &mut Device, closed_idle_at: Option<i64>, p: &Params) {
    if let Some(clock) = closed_idle_at {
        if dev
            .open_session()
            .is_some_and(|s| clock - s.last_us > p.gap_us)
        {
            dev.close(p);
        }
    }
}
