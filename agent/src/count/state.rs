//! What the counter remembers across a restart, and the older layouts the
//! store upgrades from. postcard is positional: never reorder a field here,
//! add a new layout and an upgrade instead.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::device::{Device, Devices};
use super::history::{History, HistoryError, HistoryStore, NO_DAY};
use super::spill::Coldest;
use super::visitors::{PartAt, RandomizedVisitors, ReadPart};
use crate::people::{Features, Obs, ObsTable, Observations};
use crate::privacy::{DeviceId, IdSet};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct WindowAcc {
    pub(super) frames: u64,
    pub(super) frames_no_signal: u64,
    /// (device, local day of the detection), with repeats.
    pub(super) entries: Entries,
    /// SPEC §8: the window's strong devices, for the people estimate.
    pub(super) people: Observations,
    /// `ephemeral`: the people features of the window's ended key epochs
    /// (sums; see `epoch`), in place of `people`, which stays empty.
    pub(super) epochs: Features,
    /// Spilled inert devices the window counts in place of their entries
    /// (`Spilled::counted`). Memory only: the checkpoint writes their
    /// records in parts of their own (`Part::SpilledCounted`), which load
    /// as entries again.
    #[serde(skip)]
    pub(super) inert: u64,
}

/// A window's entries: (device, local day of the detection), with
/// repeats. A window lies in one local day unless local midnight cuts it
/// (zones whose offset is not whole quarters of an hour), so the ids of
/// its first day are kept without their day: half the bytes of pairs,
/// which a crowd's hundreds of thousands of entries a window made worth it
/// (issue 20). Stored as the list of pairs it always was.
#[derive(Debug, Clone, Default)]
pub(super) struct Entries {
    /// The entries on `day`, in detection order.
    ids: Vec<DeviceId>,
    day: i32,
    /// The entries on any other day, in detection order.
    others: Vec<(DeviceId, i32)>,
}

impl Entries {
    pub(super) fn push(&mut self, id: DeviceId, day: i32) {
        if self.is_empty() {
            self.day = day;
        }
        if day == self.day {
            self.ids.push(id);
        } else {
            self.others.push((id, day));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len() + self.others.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.others.is_empty()
    }

    /// The `i`th entry, those of the first day first: finalizing a window
    /// counts the same in any order.
    pub(super) fn get(&self, i: usize) -> (DeviceId, i32) {
        match self.ids.get(i) {
            Some(&id) => (id, self.day),
            None => self.others[i - self.ids.len()],
        }
    }

    /// Takes out every entry of `ids`. A spill pass takes a crowd's
    /// fleeting devices out of their window, about 12,000 of its 270,000
    /// entries, 386 times: every entry looked up in the set was 2.7 % of
    /// the counting thread (issue 20, perf). A bit per id, 16 bits per id
    /// of `ids` (32 KB, in the nearest caches), says no to nearly all
    /// the others first.
    pub(super) fn remove_all(&mut self, ids: &IdSet) {
        let bits = (ids.len() * 16).next_power_of_two().max(64);
        let bit = |id: &DeviceId| id.0 as usize & (bits - 1);
        let mut filter = vec![0u64; bits / 64];
        for id in ids {
            filter[bit(id) / 64] |= 1 << (bit(id) % 64);
        }
        let gone =
            |id: &DeviceId| filter[bit(id) / 64] >> (bit(id) % 64) & 1 == 1 && ids.contains(id);
        self.ids.retain(|id| !gone(id));
        self.others.retain(|(id, _)| !gone(id));
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = (DeviceId, i32)> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl Extend<(DeviceId, i32)> for Entries {
    fn extend<I: IntoIterator<Item = (DeviceId, i32)>>(&mut self, pairs: I) {
        for (id, day) in pairs {
            self.push(id, day);
        }
    }
}

impl From<Vec<(DeviceId, i32)>> for Entries {
    fn from(pairs: Vec<(DeviceId, i32)>) -> Entries {
        let mut e = Entries::default();
        e.extend(pairs);
        e
    }
}

impl Serialize for Entries {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
        Vec::<(DeviceId, i32)>::deserialize(d).map(Entries::from)
    }
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
    pub(super) devices: Devices,
    /// Randomized devices gone from memory that were counted in a day not
    /// yet reported, by that day: all a randomized device's past can
    /// change (SPEC §3: never returning nor resident), so it stays here
    /// and not in the store. Most devices are randomized and never come
    /// back; storing each and deleting it a day later was most of the
    /// store's writes, and so of a replay's time and memory.
    pub(super) randomized_visitors: RandomizedVisitors,
    pub late_frames: u64,
    /// The last final window and its `present_est`: entries are the rise
    /// from it (SPEC §8).
    pub(super) people_before: Option<(i64, f64)>,
    /// The clock of the last `close_idle` pass, for the devices it could
    /// not see (`spill`); memory only, stored with spilled devices.
    #[serde(skip)]
    pub(super) closed_idle_at: Option<i64>,
    /// Spilled devices loaded with no pending window (`spill::unneeded`),
    /// for the counter's next `evict`; memory only.
    #[serde(skip)]
    pub(super) unjudged: Vec<DeviceId>,
    /// For the spill's passes; memory only.
    #[serde(skip)]
    pub(super) coldest: Coldest,
}

/// What a state holds per device (the device map, each pending window's
/// entries and people observations): all but a few bytes of a crowd's
/// state. The checkpoint writes it in parts, apart from the rest, so that
/// no copy of it all is ever made (issue 20).
#[derive(Default)]
pub struct Bulk {
    devices: Devices,
    entries: Vec<Entries>,
    people: Vec<ObsTable>,
    /// `State::closed_idle_at`, which spilled devices' parts carry.
    closed_idle_at: Option<i64>,
    /// Each pending window's `Observations::share` (models, sequence
    /// numbers), stored apart.
    shares: Vec<(u8, u8)>,
    randomized: RandomizedVisitors,
    /// The pending windows' `WindowAcc::inert`, summed.
    counted: u64,
}

/// One part of a `Bulk`, as stored.
#[derive(Serialize, Deserialize)]
pub struct BulkPart(Part);

#[derive(Serialize, Deserialize)]
enum Part {
    Devices(Vec<(DeviceId, Device)>),
    /// Of the pending window at this index.
    Entries(u32, Vec<(DeviceId, i32)>),
    People(u32, Vec<(DeviceId, Obs)>),
    /// Devices spilled over the budget (`spill`): their records, and the
    /// clock of the last `close_idle` pass, which did not see them.
    Spilled(Option<i64>, Vec<(DeviceId, Vec<u8>)>),
    /// The share of models the pending window at this index observes
    /// (`Observations::share`), when not all.
    PeopleShare(u32, u8),
    /// The share of sequence numbers it observes new MACs at, when not
    /// all; after `PeopleShare`, which older states end with.
    PeopleSeqShare(u32, u8),
    /// Randomized visitors of this day, ascending after those of the
    /// day's parts before (`State::randomized_visitors`, which states
    /// before these parts hold in the checkpoint's value).
    Randomized(i32, Vec<DeviceId>),
    /// Device histories saved (`None`: removed) that the store has not
    /// written to its tree yet: they are part of the committed state
    /// until it does (`Store::commit`).
    Histories(Vec<(DeviceId, Option<History>)>),
    /// `Spilled` devices whose last window counted them in place of their
    /// entries (`Spilled::counted`): each is entered there again as it
    /// loads (its last entry).
    SpilledCounted(Option<i64>, Vec<(DeviceId, Vec<u8>)>),
}

/// `Part` as written, borrowing from the state (the same bytes).
#[derive(Serialize)]
enum PartRef<'a> {
    Devices(&'a [(&'a DeviceId, &'a Device)]),
    Entries(u32, &'a [(DeviceId, i32)]),
    People(u32, &'a [(&'a DeviceId, &'a Obs)]),
    Spilled(Option<i64>, &'a [(DeviceId, Vec<u8>)]),
    PeopleShare(u32, u8),
    PeopleSeqShare(u32, u8),
    Randomized(i32, &'a [DeviceId]),
    Histories(&'a [(DeviceId, Option<History>)]),
    SpilledCounted(Option<i64>, &'a [(DeviceId, Vec<u8>)]),
}

impl Bulk {
    /// Devices, entries or observations a part holds at most. A part is
    /// made, framed and sealed whole, so a checkpoint holds about three
    /// copies of one at a time, beside the state: at 4,096 items that was
    /// a megabyte or two over a crowd's peak (issue 20, RSS sampled).
    pub const PART_ITEMS: usize = 1024;

    /// Randomized visitors a part holds at most: a lookup that its filter
    /// lets through reads and decodes a whole part, and a crowd makes
    /// 40,000 a day (the phones that come back); at 1,024 ids they took
    /// 55 µs each, 2.4 s of a crowd's 33 (issue 20).
    pub const RANDOMIZED_PART_ITEMS: usize = 128;

    /// Whether it has no part at all (always, under `ephemeral`).
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
            && self.shares.iter().all(|&s| s == (0, 0))
            && self.entries.iter().all(Entries::is_empty)
            && self.people.iter().all(|p| p.is_empty())
            && self.randomized.is_empty()
    }

    /// A part of spilled devices' records (the store holds them; the
    /// checkpoint writes them after `write_parts`); `counted`: of those
    /// their last window counts in place of entries.
    pub fn spilled_part(&self, records: &[(DeviceId, Vec<u8>)], counted: bool) -> Vec<u8> {
        let part = if counted {
            PartRef::SpilledCounted(self.closed_idle_at, records)
        } else {
            PartRef::Spilled(self.closed_idle_at, records)
        };
        postcard::to_stdvec(&part).expect("in-memory structs serialize")
    }

    /// Spilled devices the pending windows count in place of entries
    /// (`Spilled::counted`): the store's parts of them must hold as many.
    pub fn counted(&self) -> u64 {
        self.counted
    }

    /// A part of histories the store has not written to its tree yet.
    pub fn histories_part(histories: &[(DeviceId, Option<History>)]) -> Vec<u8> {
        postcard::to_stdvec(&PartRef::Histories(histories)).expect("in-memory structs serialize")
    }

    /// Hands each part to `put`, in order, as the postcard bytes of a
    /// `BulkPart`; `put` returns where it wrote it. `read` reads a part of
    /// randomized visitors of the committed checkpoint (`read_randomized`),
    /// which are copied from there.
    pub fn write_parts<E: From<HistoryError>>(
        &mut self,
        mut put: impl FnMut(Vec<u8>) -> Result<PartAt, E>,
        read: &mut ReadPart<'_, E>,
    ) -> Result<(), E> {
        let encode =
            |part: &PartRef<'_>| postcard::to_stdvec(part).expect("in-memory structs serialize");
        let devices = self.devices.iter();
        in_parts(devices, |c| encode(&PartRef::Devices(c)), &mut put)?;
        for (w, entries) in self.entries.iter().enumerate() {
            let w = w as u32;
            in_parts(
                entries.iter(),
                |c| encode(&PartRef::Entries(w, c)),
                &mut put,
            )?;
        }
        for (w, people) in self.people.iter().enumerate() {
            let w = w as u32;
            in_parts(people.iter(), |c| encode(&PartRef::People(w, c)), &mut put)?;
        }
        for (w, &(share, seq_share)) in self.shares.iter().enumerate() {
            if share > 0 {
                put(encode(&PartRef::PeopleShare(w as u32, share)))?;
            }
            if seq_share > 0 {
                put(encode(&PartRef::PeopleSeqShare(w as u32, seq_share)))?;
            }
        }
        self.randomized.write(
            Bulk::RANDOMIZED_PART_ITEMS,
            read,
            |day, ids| encode(&PartRef::Randomized(day, ids)),
            &mut put,
        )
    }

    /// The ids of a part of randomized visitors, as `write_parts` wrote
    /// it, and their day; an error names what else it is.
    pub fn read_randomized(part: BulkPart) -> Result<(i32, Vec<DeviceId>), String> {
        match part.0 {
            Part::Randomized(day, ids) => Ok((day, ids)),
            _ => Err("not a part of randomized visitors".into()),
        }
    }
}

/// Hands `items` to `put` in parts of `Bulk::PART_ITEMS`, each made by
/// `part`: one part in memory at a time.
pub(crate) fn in_parts<T, E>(
    items: impl Iterator<Item = T>,
    part: impl Fn(&[T]) -> Vec<u8>,
    put: &mut impl FnMut(Vec<u8>) -> Result<PartAt, E>,
) -> Result<(), E> {
    let mut chunk = Vec::with_capacity(Bulk::PART_ITEMS);
    for item in items {
        chunk.push(item);
        if chunk.len() == Bulk::PART_ITEMS {
            put(part(&chunk))?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        put(part(&chunk))?;
    }
    Ok(())
}

impl State {
    /// Takes the bulk out, leaving the rest (what the checkpoint writes in
    /// one value).
    pub fn take_bulk(&mut self) -> Bulk {
        Bulk {
            devices: std::mem::take(&mut self.devices),
            entries: self
                .windows
                .iter_mut()
                .map(|w| std::mem::take(&mut w.entries))
                .collect(),
            people: self
                .windows
                .iter_mut()
                .map(|w| w.people.take_devices())
                .collect(),
            closed_idle_at: self.closed_idle_at,
            shares: self.windows.iter().map(|w| w.people.share()).collect(),
            randomized: {
                self.randomized_visitors.forget_written();
                std::mem::take(&mut self.randomized_visitors)
            },
            counted: self.windows.iter().map(|w| w.inert).sum(),
        }
    }

    /// The commit that wrote the bulk `take_bulk` took is committed: the
    /// randomized visitors it wrote in parts are read from there now.
    pub fn committed(&mut self) {
        self.randomized_visitors.committed();
    }

    /// Puts back what `take_bulk` took.
    pub fn put_bulk(&mut self, bulk: Bulk) {
        self.devices = bulk.devices;
        self.randomized_visitors = bulk.randomized;
        for ((w, entries), people) in self.windows.iter_mut().zip(bulk.entries).zip(bulk.people) {
            w.entries = entries;
            w.people.put_devices(people);
        }
    }

    /// Adds a stored part, found `at` in the checkpoint's file (spilled
    /// devices go back to `store`, and none beyond `budget` stays in
    /// memory; randomized visitors stay in the file); an error says what
    /// does not fit.
    pub fn put_part(
        &mut self,
        part: BulkPart,
        at: PartAt,
        budget: usize,
        store: &mut dyn HistoryStore,
    ) -> Result<(), String> {
        let pending = self.windows.len();
        let window = |w: u32| {
            let at = w as usize;
            (at < pending)
                .then_some(at)
                .ok_or_else(|| format!("a part of pending window {w}, but {pending} are pending"))
        };
        match part.0 {
            Part::Devices(devices) => {
                self.devices.extend(devices);
                // Spilled whole (not inert): a restart is no hot path.
                self.spill_over(budget, None, store)
                    .map_err(|e| e.to_string())?;
            }
            Part::Entries(w, pairs) => self.windows[window(w)?].entries.extend(pairs),
            Part::People(w, obs) => self.windows[window(w)?].people.extend_devices(obs),
            Part::PeopleShare(w, share) => {
                let people = &mut self.windows[window(w)?].people;
                people.set_share((share, people.share().1));
            }
            Part::PeopleSeqShare(w, seq_share) => {
                let people = &mut self.windows[window(w)?].people;
                people.set_share((people.share().0, seq_share));
            }
            Part::Spilled(closed_idle_at, records) => {
                self.put_spilled_part(closed_idle_at, records, false, store)?;
            }
            Part::SpilledCounted(closed_idle_at, records) => {
                self.put_spilled_part(closed_idle_at, records, true, store)?;
            }
            Part::Randomized(day, ids) => self.randomized_visitors.extend_stored(day, &ids, at)?,
            Part::Histories(histories) => {
                for (id, h) in histories {
                    match h {
                        Some(h) => store.save(id, &h),
                        None => store.remove(id),
                    }
                }
            }
        }
        Ok(())
    }
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
    pub(super) devices: Devices,
    pub(super) late_frames: u64,
}

impl StateV2 {
    /// The v3 state, with the randomized visitors v2 kept in the store.
    pub fn upgrade(self, randomized: impl IntoIterator<Item = (DeviceId, History)>) -> State {
        let randomized_visitors = randomized
            .into_iter()
            .filter(|(_, h)| h.visitor_day != NO_DAY)
            .map(|(id, h)| (h.visitor_day, id))
            .collect();
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
            closed_idle_at: None,
            unjudged: Vec::new(),
            coldest: Coldest::default(),
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
    devices: Devices,
    randomized_visitors: RandomizedVisitors,
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
                    entries: w.entries.into(),
                    people: Observations::unavailable(),
                    epochs: Features::default(),
                    inert: 0,
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
            closed_idle_at: None,
            unjudged: Vec::new(),
            coldest: Coldest::default(),
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
    devices: Devices,
    randomized_visitors: RandomizedVisitors,
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
                    entries: w.entries.into(),
                    people: w.people,
                    epochs: Features::default(),
                    inert: 0,
                })
                .collect(),
            next_day: self.next_day,
            days: self.days,
            devices: self.devices,
            randomized_visitors: self.randomized_visitors,
            late_frames: self.late_frames,
            people_before: self.people_before,
            closed_idle_at: None,
            unjudged: Vec::new(),
            coldest: Coldest::default(),
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
            + self.randomized_visitors.len()
            + self
                .windows
                .iter()
                .map(|w| w.entries.len() + w.people.devices())
                .sum::<usize>()
    }

    /// Randomized devices out of memory still counted in an unreported day.
    pub fn randomized_visitors(&self) -> usize {
        self.randomized_visitors.len()
    }

    /// Of those, how many are held in memory: added or taken back since
    /// the last commit (the rest are in the checkpoint's parts).
    pub fn randomized_held(&self) -> usize {
        self.randomized_visitors.in_memory()
    }

    /// Of those, how many are held in memory (the rest are in the
    /// checkpoint's parts), and the bytes that find the rest there.
    pub fn randomized_in_memory(&self) -> (usize, usize) {
        (
            self.randomized_held(),
            self.randomized_visitors.filter_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter only skips the set's lookups: every entry of the set
    /// goes, repeated ones and those of other days too, and nothing else.
    #[test]
    fn remove_all_takes_out_exactly_the_entries_of_the_set() {
        // Ids that share low bits, so the filter lets some others through.
        let id = |n: u128| DeviceId(n << 64 | (n % 7) << 3);
        let mut entries = Entries::default();
        for n in 0..2_000u128 {
            entries.push(id(n % 900), 20_000 + (n % 3 == 0) as i32);
        }
        let set: IdSet = (0..900).filter(|n| n % 4 == 1).map(id).collect();
        let want: Vec<(DeviceId, i32)> = entries.iter().filter(|e| !set.contains(&e.0)).collect();
        assert!(want.len() < entries.len() && !want.is_empty());
        entries.remove_all(&set);
        // In the order they came, too.
        assert_eq!(entries.iter().collect::<Vec<_>>(), want);
    }
}
