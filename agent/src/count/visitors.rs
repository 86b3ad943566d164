//! Randomized devices gone from memory that were counted in a day not yet
//! reported, by that day (`State::randomized_visitors`).
//!
//! A crowd of rotating MACs leaves hundreds of thousands of them a day,
//! each looked up once, when a new MAC arrives, and almost never found.
//! Held in memory, sorted, at 16 bytes each, they were the one part of a
//! crowd's state with no budget: 296,000 ids, 4.7 MB, and the reason its
//! RSS climbed all day (issue 20, RSS sampled by event). So the ids live
//! in the checkpoint's parts, which it writes anyway: each part's first
//! id and place stay in memory with a Bloom filter of its ids (about 10
//! bits an id, 1 % false positives), and a lookup reads a part only when
//! its filter says the id may be there. In memory besides are only the
//! ids added since the last commit and those taken back from the parts;
//! each commit merges them into the next generation's parts as it copies
//! the last one's, one part in memory at a time.
//!
//! Most lookups are of ids in none of these. A filter of one word per id
//! (`privacy::Maybe`) for each day's recent ids, and one for its parts,
//! turn those away at one cache line that the counter loads ahead of
//! time (`prefetch`); the recent set, a part's own filter and its ids are
//! read only for the few they let through. Without them each of a crowd's
//! new MACs cost a line of the set, a search of the parts and lines of a
//! part's filter, all cache misses: about 5 % of the crowd's replay
//! (issue 20, perf).

use std::collections::BTreeMap;

use fastbloom::BloomFilter;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::history::HistoryError;
use crate::privacy::{DeviceId, IdBuildHasher, IdSet, Maybe};

/// Where a part is in the committed checkpoint's file (the store's
/// business: an offset there).
pub type PartAt = u64;

/// Reads the part at a place of the committed checkpoint: its day and ids.
pub type ReadPart<'a, E> = dyn FnMut(PartAt) -> Result<(i32, Vec<DeviceId>), E> + 'a;

/// False positives a part's filter lets through: each costs a part read
/// (2 KB, unsealed and decoded). Only ids that the day's filter lets
/// through reach it (about one in twenty of those not there), so a crowd
/// reads fewer parts for nothing than it did at 1 % and 10 bits an id,
/// for 6 bits.
const FALSE_POSITIVES: f64 = 0.05;

/// The randomized visitors of each unreported day. Stored as it always
/// was: a map of days to sets of ids (the checkpoint's value holds those
/// not in parts; `Bulk` writes the rest).
#[derive(Debug, Clone, Default)]
pub(crate) struct RandomizedVisitors {
    days: BTreeMap<i32, DaySet>,
    /// Each day's parts as the commit under way writes them: theirs once
    /// it is committed (`committed`).
    written: Option<BTreeMap<i32, Stored>>,
}

#[derive(Debug, Clone, Default)]
struct DaySet {
    /// In the committed checkpoint's parts; an id also in `removed` is not
    /// there any more.
    stored: Stored,
    /// Ids of `stored` taken back since the last commit.
    removed: IdSet,
    /// Ids added since the last commit, in none of the others.
    recent: IdSet,
    /// Every id of `recent` (and some taken since).
    recent_maybe: Maybe,
}

/// A day's ids in the committed checkpoint's parts.
#[derive(Debug, Clone, Default)]
struct Stored {
    /// Ascending by first id.
    parts: Vec<StoredPart>,
    len: usize,
    /// Every id of the parts, when they were written here (`write`);
    /// `None` for parts loaded from a checkpoint, whose number was not
    /// known ahead (until the next commit writes them again).
    maybe: Option<Maybe>,
}

#[derive(Debug, Clone)]
struct StoredPart {
    first: DeviceId,
    at: PartAt,
    filter: BloomFilter<IdBuildHasher>,
}

impl StoredPart {
    fn new(ids: &[DeviceId], at: PartAt) -> StoredPart {
        StoredPart {
            first: ids[0],
            at,
            filter: BloomFilter::with_false_pos(FALSE_POSITIVES)
                .hasher(IdBuildHasher::default())
                .items(ids.iter()),
        }
    }

    /// Its ids, read with `read`; an error if the part there is not this
    /// one of `day`.
    fn read<E: From<HistoryError>>(
        &self,
        day: i32,
        read: &mut ReadPart<'_, E>,
    ) -> Result<Vec<DeviceId>, E> {
        let (of, ids) = read(self.at)?;
        if of != day || ids.first() != Some(&self.first) {
            return Err(HistoryError(format!(
                "the checkpoint's part of randomized visitors of day {day} at {} \
                 holds another (damaged)",
                self.at
            ))
            .into());
        }
        Ok(ids)
    }
}

/// A day's ids, ascending, cut into parts as they come (`write`).
struct Parts<'a, E, P> {
    day: i32,
    items: usize,
    chunk: Vec<DeviceId>,
    stored: Stored,
    part: &'a P,
    put: &'a mut dyn FnMut(Vec<u8>) -> Result<PartAt, E>,
}

impl<E, P: Fn(i32, &[DeviceId]) -> Vec<u8>> Parts<'_, E, P> {
    fn push(&mut self, id: DeviceId) -> Result<(), E> {
        self.chunk.push(id);
        if self.chunk.len() == self.items {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), E> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let at = (self.put)((self.part)(self.day, &self.chunk))?;
        self.stored.append(&self.chunk, at);
        self.chunk.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<Stored, E> {
        self.flush()?;
        Ok(self.stored)
    }
}

impl Stored {
    /// The part `id` would be in, if the filters say it may be.
    fn may_hold(&self, id: DeviceId) -> Option<&StoredPart> {
        if self
            .maybe
            .as_ref()
            .is_some_and(|m| !m.may_hold(id.folded()))
        {
            return None;
        }
        let i = self.parts.partition_point(|p| p.first <= id);
        let part = &self.parts[i.checked_sub(1)?];
        part.filter.contains(&id).then_some(part)
    }

    /// Adds a part after the others, checking the order.
    fn push(&mut self, day: i32, ids: &[DeviceId], at: PartAt) -> Result<(), String> {
        let after = self.parts.last().map(|p| p.first);
        let ascending = after.iter().chain(ids).copied();
        if ids.is_empty()
            || ascending
                .clone()
                .zip(ascending.skip(1))
                .any(|(a, b)| a >= b)
        {
            return Err(format!(
                "randomized visitors of day {day} out of order (damaged)"
            ));
        }
        self.append(ids, at);
        Ok(())
    }

    /// Adds a part after the others (ascending, not empty: `write` cuts
    /// them so, `push` checks a stored one).
    fn append(&mut self, ids: &[DeviceId], at: PartAt) {
        self.parts.push(StoredPart::new(ids, at));
        self.len += ids.len();
        if let Some(m) = &mut self.maybe {
            ids.iter().for_each(|id| m.insert(id.folded()));
        }
    }
}

impl DaySet {
    fn len(&self) -> usize {
        self.stored.len - self.removed.len() + self.recent.len()
    }

    fn take<E: From<HistoryError>>(
        &mut self,
        day: i32,
        id: DeviceId,
        read: &mut ReadPart<'_, E>,
    ) -> Result<bool, E> {
        if self.recent_maybe.may_hold(id.folded()) && self.recent.remove(&id) {
            return Ok(true);
        }
        let Some(part) = self.stored.may_hold(id) else {
            return Ok(false);
        };
        if self.removed.contains(&id) {
            return Ok(false);
        }
        let ids = part.read(day, read)?;
        Ok(ids.binary_search(&id).is_ok() && self.removed.insert(id))
    }

    /// How many ids it holds in memory: those added since the last commit
    /// and those taken back from its parts.
    fn in_memory(&self) -> usize {
        self.recent.len() + self.removed.len()
    }

    /// Adds `id` to `recent`; its filter is made anew, twice as large,
    /// once it holds as many ids as it was made for.
    fn insert(&mut self, id: DeviceId) {
        self.recent.insert(id);
        if self.recent.len() > self.recent_maybe.room() {
            let keys = self.recent.iter().map(|id| id.folded());
            self.recent_maybe = Maybe::of(2 * self.recent.len(), keys);
        } else {
            self.recent_maybe.insert(id.folded());
        }
    }

    fn prefetch(&self, id: DeviceId) {
        let key = id.folded();
        self.recent_maybe.prefetch(key);
        if let Some(m) = &self.stored.maybe {
            m.prefetch(key);
        }
    }
}

impl RandomizedVisitors {
    pub(crate) fn len(&self) -> usize {
        self.days.values().map(DaySet::len).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.days.values().all(|s| s.len() == 0)
    }

    /// Ids held in memory (added since the last commit, or taken back
    /// from its parts): the rest cost their part's filter.
    pub(crate) fn in_memory(&self) -> usize {
        self.days.values().map(DaySet::in_memory).sum()
    }

    /// Bytes of the filters and the parts' places (a metric).
    pub(crate) fn filter_bytes(&self) -> usize {
        let part = |p: &StoredPart| std::mem::size_of::<StoredPart>() + p.filter.num_bits() / 8;
        let day = |s: &DaySet| {
            s.stored.parts.iter().map(part).sum::<usize>()
                + s.stored.maybe.as_ref().map_or(0, Maybe::bytes)
                + s.recent_maybe.bytes()
        };
        self.days.values().map(day).sum()
    }

    /// Asks the CPU to load the filters' words that `take` reads first.
    pub(crate) fn prefetch(&self, id: DeviceId) {
        self.days.values().for_each(|s| s.prefetch(id));
    }

    /// Removes `id` and returns its day, the newest if several; `read`
    /// reads a part of the committed checkpoint.
    pub(crate) fn take<E: From<HistoryError>>(
        &mut self,
        id: DeviceId,
        read: &mut ReadPart<'_, E>,
    ) -> Result<Option<i32>, E> {
        for (&day, set) in self.days.iter_mut().rev() {
            if set.take(day, id, read)? {
                return Ok(Some(day));
            }
        }
        Ok(None)
    }

    /// Adds `id`, gone from memory, counted in `day`: not already there.
    pub(crate) fn insert(&mut self, day: i32, id: DeviceId) {
        self.days.entry(day).or_default().insert(id);
    }

    /// Drops the days before `day`: reported.
    pub(crate) fn keep_from(&mut self, day: i32) {
        self.days = self.days.split_off(&day);
    }

    pub(crate) fn clear(&mut self) {
        self.days.clear();
    }

    /// Writes every day's ids, ascending, as parts of `items` ids each:
    /// those of the committed parts (read with `read`) less those taken
    /// back, merged with those added. `part` makes a part's bytes and
    /// `put` writes them, returning where. The parts are the days' own
    /// once the commit is (`committed`).
    pub(crate) fn write<E: From<HistoryError>>(
        &mut self,
        items: usize,
        read: &mut ReadPart<'_, E>,
        part: impl Fn(i32, &[DeviceId]) -> Vec<u8>,
        put: &mut dyn FnMut(Vec<u8>) -> Result<PartAt, E>,
    ) -> Result<(), E> {
        self.written = None;
        let mut written = BTreeMap::new();
        for (&day, set) in &self.days {
            let mut recent: Vec<DeviceId> = set.recent.iter().copied().collect();
            recent.sort_unstable();
            let mut recent = recent.into_iter().peekable();
            let mut out = Parts {
                day,
                items,
                chunk: Vec::with_capacity(items),
                stored: Stored {
                    maybe: Some(Maybe::of(set.len(), std::iter::empty())),
                    ..Stored::default()
                },
                part: &part,
                put: &mut *put,
            };
            for p in &set.stored.parts {
                for id in p.read(day, read)? {
                    if set.removed.contains(&id) {
                        continue;
                    }
                    while let Some(new) = recent.next_if(|&new| new < id) {
                        out.push(new)?;
                    }
                    out.push(id)?;
                }
            }
            for new in recent {
                out.push(new)?;
            }
            written.insert(day, out.finish()?);
        }
        self.written = Some(written);
        Ok(())
    }

    /// Forgets what a commit that failed wrote: the next one writes its
    /// own, or none if there are no ids.
    pub(crate) fn forget_written(&mut self) {
        self.written = None;
    }

    /// The commit that `write` wrote for is committed: its parts are the
    /// days' (none if it wrote none: there were no ids).
    pub(crate) fn committed(&mut self) {
        let mut written = self.written.take().unwrap_or_default();
        for (day, set) in &mut self.days {
            set.stored = written.remove(day).unwrap_or_default();
            set.removed = IdSet::default();
            set.recent = IdSet::default();
            set.recent_maybe = Maybe::default();
        }
    }

    /// Adds a part of the checkpoint, at `at`, as `write` wrote it:
    /// ascending, after every id of its day already added; otherwise an
    /// error that says so.
    pub(crate) fn extend_stored(
        &mut self,
        day: i32,
        ids: &[DeviceId],
        at: PartAt,
    ) -> Result<(), String> {
        self.days.entry(day).or_default().stored.push(day, ids, at)
    }
}

impl FromIterator<(i32, DeviceId)> for RandomizedVisitors {
    fn from_iter<I: IntoIterator<Item = (i32, DeviceId)>>(pairs: I) -> Self {
        let mut v = RandomizedVisitors::default();
        for (day, id) in pairs {
            v.insert(day, id);
        }
        v
    }
}

/// One day's ids not in parts, written as the set they were.
struct Ids<'a>(&'a IdSet);

impl Serialize for Ids<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for id in self.0 {
            seq.serialize_element(id)?;
        }
        seq.end()
    }
}

/// The ids not in parts: all of them in a state before parts, none in
/// what a commit writes (`State::take_bulk` takes them all to parts).
impl Serialize for RandomizedVisitors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.days.iter().map(|(day, set)| (day, Ids(&set.recent))))
    }
}

impl<'de> Deserialize<'de> for RandomizedVisitors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let days = BTreeMap::<i32, Vec<DeviceId>>::deserialize(d)?;
        Ok(days
            .into_iter()
            .flat_map(|(day, ids)| ids.into_iter().map(move |id| (day, id)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The checkpoint's file, as `write` sees it: parts by their place.
    #[derive(Default)]
    struct File(Vec<(i32, Vec<DeviceId>)>);

    impl File {
        fn read(&self, at: PartAt) -> Result<(i32, Vec<DeviceId>), HistoryError> {
            self.0
                .get(at as usize)
                .cloned()
                .ok_or_else(|| HistoryError(format!("no part at {at}")))
        }

        /// A commit: a new file of the parts `v` writes; `commits`: whether
        /// it is committed (or fails after writing, keeping the old file).
        fn commit(&mut self, v: &mut RandomizedVisitors, commits: bool) {
            let mut next = File::default();
            let part = |day, ids: &[DeviceId]| postcard::to_stdvec(&(day, ids)).unwrap();
            let mut put = |bytes: Vec<u8>| {
                let (day, ids): (i32, Vec<DeviceId>) = postcard::from_bytes(&bytes).unwrap();
                next.0.push((day, ids));
                Ok::<_, HistoryError>(next.0.len() as u64 - 1)
            };
            v.write(16, &mut |at| self.read(at), part, &mut put)
                .unwrap();
            if commits {
                v.committed();
                *self = next;
            }
        }
    }

    proptest! {
        /// Against a map of hash sets, through commits that land and
        /// commits that fail.
        #[test]
        fn behaves_as_sets_by_day(ops in proptest::collection::vec((0u8..16, 0u16..3000, 0i32..3), 1..4000)) {
            let mut v = RandomizedVisitors::default();
            let mut file = File::default();
            let mut model: BTreeMap<i32, std::collections::HashSet<u128>> = BTreeMap::new();
            for (op, id, day) in ops {
                let dev = DeviceId(u128::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                match op {
                    // Only ids not there are added, as the counter does.
                    0..=9 if model.values().all(|s| !s.contains(&{ dev.0 })) => {
                        v.insert(day, dev);
                        model.entry(day).or_default().insert(dev.0);
                    }
                    0..=9 => {}
                    10..=14 => {
                        let want = model
                            .iter_mut()
                            .rev()
                            .find_map(|(&d, s)| s.remove(&{ dev.0 }).then_some(d));
                        prop_assert_eq!(v.take(dev, &mut |at| file.read(at)).unwrap(), want);
                    }
                    _ if id % 32 == 0 => file.commit(&mut v, id % 64 == 0),
                    _ => {}
                }
                prop_assert_eq!(v.len(), model.values().map(|s| s.len()).sum::<usize>());
            }
            file.commit(&mut v, true);
            prop_assert_eq!(v.in_memory(), 0);
            // A restart reads the parts back in order.
            let mut back = RandomizedVisitors::default();
            for (at, (day, ids)) in file.0.iter().enumerate() {
                back.extend_stored(*day, ids, at as u64).unwrap();
            }
            for (day, ids) in &model {
                for &id in ids {
                    prop_assert_eq!(back.take(DeviceId(id), &mut |at| file.read(at)).unwrap(), Some(*day));
                }
            }
            prop_assert!(back.is_empty());
        }
    }

    /// A crowd's new MACs are nearly all in no day: the day's filters turn
    /// them away, and few reach a part (without them, every one cost a
    /// search of the parts and the parts' own filters let 267 of these
    /// through to a read).
    #[test]
    fn ids_not_there_seldom_cost_a_read() {
        let id = |n: u64| {
            DeviceId(u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
        };
        let (mut v, mut file) = (RandomizedVisitors::default(), File::default());
        (0..2_000).for_each(|n| v.insert(3, id(n)));
        file.commit(&mut v, true);
        (2_000..3_000).for_each(|n| v.insert(3, id(n)));
        let reads = std::cell::Cell::new(0);
        for n in 3_000..23_000 {
            let mut read = |at| {
                reads.set(reads.get() + 1);
                file.read(at)
            };
            assert_eq!(v.take(id(n), &mut read).unwrap(), None);
        }
        assert!(
            reads.get() < 100,
            "{} parts read for 20,000 ids not there",
            reads.get()
        );
        assert_eq!(v.take(id(10), &mut |at| file.read(at)).unwrap(), Some(3));
        assert_eq!(v.take(id(2_500), &mut |at| file.read(at)).unwrap(), Some(3));
    }

    #[test]
    fn a_part_out_of_order_is_refused() {
        let mut v = RandomizedVisitors::default();
        v.extend_stored(5, &[DeviceId(1), DeviceId(7)], 0).unwrap();
        let e = v.extend_stored(5, &[DeviceId(0)], 1).unwrap_err();
        assert!(e.contains("day 5"), "{e}");
        assert!(v.extend_stored(6, &[DeviceId(2), DeviceId(2)], 2).is_err());
        assert!(v.extend_stored(6, &[], 3).is_err());
    }

    #[test]
    fn a_part_of_another_day_is_an_error() {
        let mut v = RandomizedVisitors::default();
        let id = DeviceId(9);
        v.extend_stored(5, &[id], 0).unwrap();
        let e = v
            .take(id, &mut |_| Ok::<_, HistoryError>((6, vec![id])))
            .unwrap_err();
        assert!(e.0.contains("day 5"), "{}", e.0);
    }
}
