//! The device budget (issue 20): when more devices are in memory than
//! `[memory] devices` allows, the coldest go to the store (`spill`) and
//! come back when a frame or a window needs them. Counting is the same
//! with or without: only speed pays.
//!
//! What keeps it exact:
//! - Only devices with a detection in a pending window are spilled, so a
//!   window that is made final meets each of them at its entry: it takes
//!   the device out, decides and spills it again with its `Mark` (a
//!   window never brings the spill into memory), and after the window
//!   they are evicted as those in memory are (`evict_spilled`).
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
//! - Most of a crowd's spilled devices are MACs heard in one burst of a
//!   phone that rotates them: an `inert` device, whose counts are known
//!   without its record until a frame takes it back. A window counts its
//!   inert entries from the spill's index alone, and once its last
//!   window is final it is forgotten unread: a read and a write fewer per
//!   window it was in, and a read fewer when it goes (issue 20, perf).
//!   Left unread, its sessions are not pruned as windows pass; taken
//!   back, it is pruned as every eviction since would have pruned it
//!   (`take_spilled`).
//! - An inert device that `spill_over` spills leaves its last window too:
//!   its entries there are taken out and the window counts it
//!   (`WindowAcc::inert`, `Spilled::counted`), and taken back it is
//!   entered there again. Those entries were two thirds of a crowd's
//!   (16 bytes each, 270,000 a window; issue 20, heaptrack). The
//!   checkpoint writes their records in parts of their own, which enter
//!   them in their window again as they load (`put_spilled_part`).

use super::device::{Device, Mark};
use super::history::{Spilled, NO_DAY};
use super::state::State;
use super::{Counter, Eviction, HistoryError, HistoryStore, Keep, Params};
use crate::privacy::{At, DeviceId, IdSet};

/// Windows finalized at once past which `evict_spilled` reads inert
/// devices back rather than trust their last window's 16 bits.
const FAR_WINDOWS: i64 = 1 << 14;
/// A MAC heard over this long is a phone that stays, heard again soon:
/// longer than a burst of probe requests, shorter than the gap between two.
const SUSTAINED_S: u32 = 30;

/// A record starts with the device's `Mark` (attempt u64 LE, detected,
/// visit), which a device keeps while a window is being decided and
/// `Device` does not store.
const MARK_BYTES: usize = 10;

/// A spilled device's record.
fn record(dev: &Device) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARK_BYTES + 64);
    out.extend_from_slice(&dev.mark.attempt.to_le_bytes());
    out.push(u8::from(dev.mark.detected));
    out.push(u8::from(dev.mark.visit));
    postcard::to_extend(dev, out).expect("in-memory structs serialize")
}

fn decode(bytes: &[u8]) -> Result<Device, HistoryError> {
    let damaged =
        |e: String| HistoryError(format!("a spilled device does not decode ({e}): damaged"));
    if bytes.len() < MARK_BYTES {
        return Err(damaged("shorter than its mark".into()));
    }
    let mut dev: Device =
        postcard::from_bytes(&bytes[MARK_BYTES..]).map_err(|e| damaged(e.to_string()))?;
    dev.mark = Mark {
        attempt: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
        detected: bytes[8] != 0,
        visit: bytes[9] != 0,
    };
    Ok(dev)
}

/// Whether, spilled, `dev`'s counts are known without its record: a
/// randomized MAC (never a resident, SPEC §3) that is no day's
/// visitor, none of whose sessions is a visit or, open, can become one
/// without a frame, which would take it back first. Each window with its
/// entry counts it in `detected` and `passersby`, and it goes once its
/// last window is final (`Eviction::keeps`, read with that in mind).
/// `min_dwell_us`: `None` marks none inert.
fn inert(dev: &Device, min_dwell_us: Option<i64>) -> bool {
    let Some(min_dwell_us) = min_dwell_us else {
        return false;
    };
    let h = &dev.hist;
    let no_visit = dev.sessions.iter().all(|s| {
        if s.open {
            s.last_us - s.first_us < min_dwell_us
        } else {
            !s.visit
        }
    });
    h.randomized && h.visitor_day == NO_DAY && no_visit
}

/// A device's rank for spilling (`State::spill_over`), least first:
/// first those heard in one burst so far (a phone that rotates its MAC is
/// not heard under this one again), then those heard over `SUSTAINED_S`
/// or more (a phone that stays); each the least recently heard first.
/// A device a frame takes back soon costs a read and a write: ranked by
/// the last strong frame alone, phones heard only weakly and stable
/// randomized MACs went out with the rotating ones, and 2 M were taken
/// back on the 100 k crowd (issue 20).
fn spill_key(d: &Device) -> u64 {
    u64::from(!fleeting_device(d)) << 32 | u64::from(d.seen_s)
}

fn fleeting_device(d: &Device) -> bool {
    d.seen_s.wrapping_sub(d.first_heard_s) < SUSTAINED_S
}

fn fleeting(key: u64) -> bool {
    key >> 32 == 0
}

/// The least recently heard phones that stay, before the devices' mark,
/// as the last walk over them found them: the pass after takes them from
/// here rather than walk every device again. Memory only.
#[derive(Debug, Clone, Default)]
pub(super) struct Coldest {
    /// The most recently heard last: popped first is the least.
    ids: Vec<DeviceId>,
    /// The latest `Device::seen_s` among them: one heard since is not
    /// cold any more.
    until: u32,
    /// How many it moved behind the mark, for tests.
    #[cfg(test)]
    pub(super) moved: usize,
}

/// A record loaded from a checkpoint: its mark named an attempt of the
/// process that wrote it, and attempts count again from 1 (0 is none).
fn forget_mark(record: &mut [u8]) {
    let n = MARK_BYTES.min(record.len());
    record[..n].fill(0);
}

impl State {
    /// Spills the coldest devices while more than `budget` are in memory,
    /// down to three quarters of it, or to seven eighths where only phones
    /// that stay are left to spill (so that a pass, which looks at every
    /// device that came since the last or at every device, comes once per
    /// an eighth of the budget of new devices at most).
    /// Returns how many it spilled.
    pub(super) fn spill_over(
        &mut self,
        budget: usize,
        params: Option<&Params>,
        store: &mut dyn HistoryStore,
    ) -> Result<usize, HistoryError> {
        let min_dwell_us = params.map(|p| p.min_dwell_us);
        if self.devices.len() <= budget {
            return Ok(0);
        }
        let Some(nw) = self.next_window else {
            return Ok(0);
        };
        let target = budget - budget / 4;
        // Down to `target`, but no phone that stays while a fleeting MAC
        // is left, as long as an eighth of the budget is free after.
        let floor = budget - budget / 8;
        let len = self.devices.len();
        let how_many = |keys: &[u64]| {
            let f = keys.iter().filter(|&&k| fleeting(k)).count();
            let n = (len - target)
                .min(f)
                .max(len.saturating_sub(floor))
                .min(keys.len());
            (n, f)
        };
        // Every fleeting device in memory is at the devices' mark or after
        // it (set below; devices come in at the end, and one heard over
        // `SUSTAINED_S` stays so). A crowd's pass needs those and a few
        // hundred phones that stay, the least recently heard: those are
        // moved behind the mark too, from a list of them made once per
        // many passes (`Coldest`). The pass then looks at the devices from
        // the mark on, and chooses as one over every device would but for
        // phones that went quiet since that list was made (a choice that
        // costs speed, never a count); a pass over every device was 9 %
        // of a crowd's counting thread (issue 20, perf). Ranked by key
        // alone, then taken out in one pass over the list: a list of
        // (rank, id) was 3.2 MB made afresh (and faulted in) at each pass.
        let mut from = self.devices.mark();
        let mut keys = self.spill_keys(from, nw);
        let (mut n, f) = how_many(&keys);
        if n > f && from > 0 {
            let need = len.saturating_sub(floor) - f;
            from = match self.coldest_behind_mark(need, nw, budget) >= need {
                true => self.devices.mark(),
                false => 0,
            };
            keys = self.spill_keys(from, nw);
            n = how_many(&keys).0;
        }
        if n == 0 {
            return Ok(0);
        }
        // Every device ranked below the `n`th, and of those ranked with
        // it as many as make `n`.
        let (below, &mut nth, _) = keys.select_nth_unstable(n - 1);
        let mut ties = n - below.iter().filter(|&&k| k < nth).count();
        drop(keys);
        // A device the store refused stays, as do all after it.
        let mut refused = None;
        // (last window, id) of those their last window counts.
        let mut counted = Vec::new();
        let pending = self.windows.len() as i64;
        // Whether `d` stays in memory.
        let mut stays = |id: DeviceId, d: &mut Device| {
            if refused.is_some() || d.last_window < nw {
                return true;
            }
            let k = spill_key(d);
            let spill = if k == nth && ties > 0 {
                ties -= 1;
                true
            } else {
                k < nth
            };
            if !spill {
                return true;
            }
            // Counted where its entry is known to be, and only within 2^15
            // windows, which the spill tells apart by 16 bits.
            let last_window = d.last_window;
            let inert = inert(d, min_dwell_us);
            let how = Spilled {
                last_window,
                inert,
                counted: inert
                    && d.last_entry().is_some_and(|(w, _)| w == last_window)
                    && last_window - nw < pending.min(1 << 15),
            };
            match store.spill(id, &record(d), how) {
                Ok(false) => true, // its key is another's: it stays
                Ok(true) => {
                    if how.counted {
                        counted.push((last_window, id));
                    }
                    false
                }
                Err(e) => {
                    refused = Some(e);
                    true
                }
            }
        };
        // Devices kept from `from` on, and how many of them before the
        // first fleeting one: the next mark.
        let (mut kept, mut first_fleeting) = (0, None);
        self.devices.retain_from(from, |id, d| {
            let stays = stays(id, d);
            if stays {
                if first_fleeting.is_none() && fleeting_device(d) {
                    first_fleeting = Some(kept);
                }
                kept += 1;
            }
            stays
        });
        self.devices.set_mark(from + first_fleeting.unwrap_or(kept));
        self.count_inert(nw, counted);
        match refused {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }
}

impl State {
    /// The spill keys of the devices a pending window will take back,
    /// from position `from` on.
    fn spill_keys(&self, from: usize, nw: i64) -> Vec<u64> {
        self.devices
            .values_from(from)
            .filter(|d| d.last_window >= nw)
            .map(spill_key)
            .collect()
    }

    /// Moves up to `need` of the least recently heard devices a pending
    /// window will take back from before the devices' mark to after it,
    /// and says how many it moved. `Coldest` is made again, once, when
    /// it runs out.
    fn coldest_behind_mark(&mut self, need: usize, nw: i64, budget: usize) -> usize {
        let (mut moved, mut made) = (0, false);
        while moved < need {
            let Some(id) = self.coldest.ids.pop() else {
                if made {
                    break;
                }
                self.coldest = self.coldest(nw, budget / 8);
                made = true;
                continue;
            };
            let Some(at) = self.devices.find(id) else {
                continue; // evicted, or spilled
            };
            let d = self.devices.at(at);
            if d.last_window >= nw && d.seen_s <= self.coldest.until {
                moved += usize::from(self.devices.behind_mark(at));
            }
        }
        #[cfg(test)]
        {
            self.coldest.moved += moved;
        }
        moved
    }

    /// The `k` least recently heard devices a pending window will take
    /// back, of those before the devices' mark.
    fn coldest(&self, nw: i64, k: usize) -> Coldest {
        // (seen, position): a list of ids as long would be 16 bytes each.
        let mut keys: Vec<u64> = self
            .devices
            .values()
            .take(self.devices.mark())
            .enumerate()
            .filter(|(_, d)| d.last_window >= nw)
            .map(|(i, d)| u64::from(d.seen_s) << 32 | i as u64)
            .collect();
        let k = k.min(keys.len());
        if k == 0 {
            return Coldest::default();
        }
        keys.select_nth_unstable(k - 1);
        keys.truncate(k);
        keys.sort_unstable_by(|a, b| b.cmp(a));
        Coldest {
            ids: keys
                .iter()
                .map(|&k| self.devices.id_at(k as u32 as usize))
                .collect(),
            until: (keys[0] >> 32) as u32,
            #[cfg(test)]
            moved: self.coldest.moved,
        }
    }

    /// Spills again the records of a checkpoint's part (`Part::Spilled`);
    /// `counted`: their last window counted them in place of their
    /// entries, and they are entered there again. One the store has no
    /// room for comes into memory.
    pub(super) fn put_spilled_part(
        &mut self,
        closed_idle_at: Option<i64>,
        records: Vec<(DeviceId, Vec<u8>)>,
        counted: bool,
        store: &mut dyn HistoryStore,
    ) -> Result<(), String> {
        self.closed_idle_at = self.closed_idle_at.max(closed_idle_at);
        for (id, mut record) in records {
            forget_mark(&mut record);
            let dev = decode(&record).map_err(|e| e.to_string())?;
            // No pending window names it: its eviction waited for a commit
            // (`Keep::Deferred`) when the checkpoint was taken, and no
            // window will hand it to `evict_spilled` again.
            if self.next_window.is_some_and(|nw| dev.last_window < nw) {
                self.unjudged.push(id);
            }
            if counted {
                let (w, day) = dev
                    .last_entry()
                    .ok_or("a spilled device its window counted has no entry")?;
                let at = self
                    .next_window
                    .and_then(|nw| usize::try_from(w - nw).ok())
                    .filter(|&at| at < self.windows.len())
                    .ok_or_else(|| {
                        format!("a spilled device counted in window {w}, not pending")
                    })?;
                self.windows[at].entries.push(id, day);
            }
            let how = Spilled {
                last_window: dev.last_window,
                inert: false,
                counted: false,
            };
            if !store.spill(id, &record, how).map_err(|e| e.to_string())? {
                self.devices.insert(id, dev);
            }
        }
        Ok(())
    }

    /// Takes the entries of `counted` (last window, id) out of those
    /// windows, which count them instead (`Spilled::counted`): a pass over
    /// each window's entries at most.
    fn count_inert(&mut self, nw: i64, mut counted: Vec<(i64, DeviceId)>) {
        counted.sort_unstable_by_key(|c| c.0);
        for group in counted.chunk_by(|a, b| a.0 == b.0) {
            let acc = &mut self.windows[(group[0].0 - nw) as usize];
            let ids: IdSet = group.iter().map(|c| c.1).collect();
            acc.entries.remove_all(&ids);
            acc.inert += ids.len() as u64;
        }
    }
}

impl Counter {
    /// Limits the devices in memory to `budget` (`usize::MAX`: none).
    pub fn with_device_budget(mut self, budget: usize) -> Counter {
        self.device_budget = budget;
        self.spill_at = budget;
        self
    }

    /// Limits the devices each window observes for people (`usize::MAX`:
    /// none).
    pub fn with_people_budget(mut self, budget: usize) -> Counter {
        self.people_budget = budget;
        self
    }

    pub fn people_budget(&self) -> usize {
        self.people_budget
    }

    pub fn device_budget(&self) -> usize {
        self.device_budget
    }

    /// Spilled devices the pending windows count in place of entries.
    #[cfg(test)]
    pub(crate) fn counted_inert(&self) -> u64 {
        self.state.windows.iter().map(|w| w.inert).sum()
    }

    /// Takes `id` back into memory if it is spilled (a frame of it), and
    /// says where it is.
    pub(super) fn reload(
        &mut self,
        id: DeviceId,
        store: &mut dyn HistoryStore,
    ) -> Result<Option<At>, HistoryError> {
        Ok(self
            .take_spilled(id, store)?
            .map(|dev| self.state.devices.insert_new_at(id, dev)))
    }

    /// A spilled device, out of the store, closed as `close_idle` would
    /// have closed it, and entered again in the window that counted it.
    ///
    /// Never called for a counted device while its window is being made
    /// final (and out of `State::windows`): a window has no entry of the
    /// devices it counts, and only those are taken back then.
    pub(super) fn take_spilled(
        &mut self,
        id: DeviceId,
        store: &mut dyn HistoryStore,
    ) -> Result<Option<Device>, HistoryError> {
        let Some((bytes, counted)) = store.unspill(id)? else {
            return Ok(None);
        };
        let mut dev = decode(&bytes)?;
        close_if_idle(&mut dev, self.state.closed_idle_at, &self.params);
        if let Some(nw) = self.state.next_window {
            if let Some((w, day)) = dev.last_entry().filter(|&(w, _)| counted && w >= nw) {
                // A pending window, which counted it when it was spilled.
                let acc = self.state.windows.get_mut((w - nw) as usize);
                debug_assert!(acc.is_some(), "window {w} counted a device, and is gone");
                if let Some(acc) = acc {
                    acc.inert -= 1;
                    acc.entries.push(id, day);
                }
            }
            // What every eviction since would have pruned (an inert device
            // is left unread): a session ending in a final window was
            // closed at the pass before that window was made final.
            let first_pending_us = nw * self.params.window_us;
            dev.sessions
                .retain(|s| s.open || s.last_us >= first_pending_us);
        }
        Ok(Some(dev))
    }

    pub(super) fn put_spilled(
        &self,
        id: DeviceId,
        dev: &Device,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        let how = Spilled {
            last_window: dev.last_window,
            inert: inert(dev, Some(self.params.min_dwell_us)),
            counted: false,
        };
        // It was taken out just before: nothing was spilled since that
        // could hold its key.
        match store.spill(id, &record(dev), how)? {
            true => Ok(()),
            false => Err(HistoryError(
                "a device taken back could not be spilled again: another holds its key".into(),
            )),
        }
    }

    /// `f` on the device `id`, in memory or spilled (it stays where it is).
    pub(super) fn with_device<R>(
        &mut self,
        id: DeviceId,
        store: &mut dyn HistoryStore,
        f: impl FnOnce(&mut Device) -> R,
    ) -> Result<R, HistoryError> {
        if let Some(dev) = self.state.devices.get_mut(id) {
            return Ok(f(dev));
        }
        let mut dev = self
            .take_spilled(id, store)?
            .expect("a device with an entry in a pending window is in memory or spilled");
        let r = f(&mut dev);
        self.put_spilled(id, &dev, store)?;
        Ok(r)
    }

    /// Evicts the spilled devices of the windows made final since the
    /// last call as `evict` does those in memory: taken out, and spilled
    /// again only if a pending window still needs them.
    /// Those a `full` store has no room for are judged again by the next.
    pub(super) fn evict_spilled(
        &mut self,
        e: &mut Eviction,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        let mut ids = std::mem::take(&mut self.finalized_spilled);
        // Its last window is within 2^15 of `nw` unless windows were
        // finalized by the tens of thousands since (a clock that jumped),
        // or since the counter started, which this process did not see.
        let far = self.evicted_at.is_none_or(|at| e.nw - at > FAR_WINDOWS);
        if far {
            // Read back and judged as the others are.
            let spilled = store.spilled_ids()?;
            ids.extend(
                spilled
                    .into_iter()
                    .filter(|&id| store.inert(id, e.nw).is_some()),
            );
        } else if self.evicted_at != Some(e.nw) {
            // An inert device is gone once its last window is final (no
            // session of it ends in a pending window then, and every one
            // is closed: `close_idle` ran past `session_gap_s` after its
            // last frame); kept unread until then.
            store.forget_inert_before(e.nw)?;
        }
        self.evicted_at = Some(e.nw);
        ids.sort_unstable();
        ids.dedup();
        let mut later = Vec::new();
        let pending = self.state.windows.len() as i64;
        for (i, &id) in ids.iter().enumerate() {
            if self.state.devices.contains(id) {
                continue; // a frame took it back: `evict` sees it
            }
            let spilled = store.spilled_window(id, e.nw).filter(|_| !far);
            if spilled.is_some_and(|(_, inert)| inert) {
                continue; // forgotten above, or kept until its last window
            }
            if store.full() {
                // Not read and written again only to be kept.
                e.deferred = true;
                later.extend_from_slice(&ids[i..]);
                break;
            }
            // Still in a pending window, as `keeps` would find it: left
            // unread until that window is final. A crowd read and wrote
            // back a hundred thousand of those (issue 20).
            if spilled.is_some_and(|(w, _)| (e.nw..e.nw + pending).contains(&w)) {
                continue;
            }
            let Some(mut dev) = self.take_spilled(id, store)? else {
                continue;
            };
            match e.keeps(id, &mut dev, &mut self.state.randomized_visitors, store) {
                Keep::Gone => {}
                Keep::Needed => self.put_spilled(id, &dev, store)?,
                Keep::Deferred => {
                    self.put_spilled(id, &dev, store)?;
                    later.push(id);
                }
            }
        }
        self.finalized_spilled.extend(later);
        Ok(())
    }

    /// Closes every spilled device's session, one device in memory at a
    /// time (what `close_everything_through` does to those in memory).
    pub(super) fn close_spilled(
        &mut self,
        store: &mut dyn HistoryStore,
    ) -> Result<(), HistoryError> {
        for id in store.spilled_ids()? {
            if let Some(mut dev) = self.take_spilled(id, store)? {
                dev.close(&self.params);
                self.put_spilled(id, &dev, store)?;
            }
        }
        Ok(())
    }

    /// Spills over the budget: called where devices come into memory
    /// (a new device, windows taking spilled ones back). A pass that finds
    /// too few to spill (devices no pending window will take back stay)
    /// is not tried again until an eighth of the budget more came in, so
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
        self.state
            .spill_over(self.device_budget, Some(&self.params), store)?;
        self.spill_at = self
            .device_budget
            .max(self.state.devices.len() + self.device_budget / 8);
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
