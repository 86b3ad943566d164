//! Randomized devices gone from memory that were counted in a day not yet
//! reported, by that day (`State::randomized_visitors`).
//!
//! A crowd of rotating MACs leaves hundreds of thousands of them a day,
//! each looked up once, when a new MAC arrives. In a hash set they cost
//! 17 bytes a slot at most seven-eighths full, and twice that while the
//! set doubled; encoded inside the checkpoint's one value they were a
//! 13 MB value written, and held twice, at every commit (issue 20,
//! heaptrack). So each day keeps its ids sorted, 16 bytes each, with a
//! small set of the ids added since the last merge and of those taken
//! back, and the checkpoint writes them in parts (`Bulk`).

use std::collections::BTreeMap;

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::privacy::{merge_in, DeviceId, IdSet, Runs};

/// Ids added are merged into the sorted ones once they are this many, or
/// a sixteenth of the sorted ones, whichever is more: each id is so moved
/// a bounded number of times on average, and the unsorted set stays
/// small (an eighth was half a megabyte more at a crowd's peak; issue 20).
const MERGE_MIN: usize = if cfg!(test) { 8 } else { 4096 };

/// The randomized visitors of each unreported day. Stored as it always
/// was: a map of days to sets of ids.
#[derive(Debug, Clone, Default)]
pub(crate) struct RandomizedVisitors(BTreeMap<i32, DaySet>);

#[derive(Debug, Clone, Default)]
struct DaySet {
    /// Ascending; an id also in `removed` is not there any more.
    sorted: Vec<DeviceId>,
    /// Ids of `sorted` taken back since the last merge.
    removed: IdSet,
    /// Ids added since the last merge, in none of the others.
    recent: IdSet,
    /// The runs of `sorted` when it had `runs_of` ids: made again before
    /// a lookup after it changed (a restart adds thousands of parts).
    runs: Runs,
    runs_of: usize,
}

impl DaySet {
    fn len(&self) -> usize {
        self.sorted.len() - self.removed.len() + self.recent.len()
    }

    fn take(&mut self, id: DeviceId) -> bool {
        if self.recent.remove(&id) {
            return true;
        }
        if self.runs_of != self.sorted.len() {
            self.runs = Runs::of(self.sorted.iter().copied());
            self.runs_of = self.sorted.len();
        }
        let run = self.runs.range(id);
        self.sorted[run].binary_search(&id).is_ok() && self.removed.insert(id)
    }

    fn insert(&mut self, id: DeviceId) {
        self.recent.insert(id);
        if self.recent.len() >= MERGE_MIN.max(self.sorted.len() / 16) {
            self.merge();
        }
    }

    /// Folds `recent` and `removed` into `sorted`, in place (`merge_in`).
    fn merge(&mut self) {
        if !self.removed.is_empty() {
            let removed = std::mem::take(&mut self.removed);
            self.sorted.retain(|id| !removed.contains(id));
        }
        merge_in(&mut self.sorted, self.recent.drain().collect(), |&id| id);
    }

    /// The ids in no particular order.
    fn iter(&self) -> impl Iterator<Item = DeviceId> + '_ {
        self.sorted
            .iter()
            .filter(|id| !self.removed.contains(id))
            .chain(self.recent.iter())
            .copied()
    }
}

impl RandomizedVisitors {
    pub(crate) fn len(&self) -> usize {
        self.0.values().map(DaySet::len).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.values().all(|s| s.len() == 0)
    }

    /// Removes `id` and returns its day, the newest if several.
    pub(crate) fn take(&mut self, id: DeviceId) -> Option<i32> {
        self.0
            .iter_mut()
            .rev()
            .find_map(|(&day, set)| set.take(id).then_some(day))
    }

    /// Adds `id`, gone from memory, counted in `day`: not already there.
    pub(crate) fn insert(&mut self, day: i32, id: DeviceId) {
        self.0.entry(day).or_default().insert(id);
    }

    /// Drops the days before `day`: reported.
    pub(crate) fn keep_from(&mut self, day: i32) {
        self.0 = self.0.split_off(&day);
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Each day and its ids ascending, merged first: the checkpoint's parts.
    pub(crate) fn sorted(&mut self) -> impl Iterator<Item = (i32, &[DeviceId])> {
        self.0.values_mut().for_each(DaySet::merge);
        self.0
            .iter()
            .map(|(&day, set)| (day, set.sorted.as_slice()))
    }

    /// Adds a part written by `sorted`: ascending, after every id of its
    /// day already added; otherwise an error that says so.
    pub(crate) fn extend_sorted(&mut self, day: i32, ids: Vec<DeviceId>) -> Result<(), String> {
        let set = self.0.entry(day).or_default();
        let last = set.sorted.last().copied();
        let ascending = last.into_iter().chain(ids.iter().copied());
        if ascending
            .clone()
            .zip(ascending.skip(1))
            .any(|(a, b)| a >= b)
        {
            return Err(format!(
                "randomized visitors of day {day} out of order (damaged)"
            ));
        }
        set.sorted.extend(ids);
        Ok(())
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

/// One day's ids, written as the set they were.
struct Ids<'a>(&'a DaySet);

impl Serialize for Ids<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // postcard writes the length first: `collect_seq` cannot tell it
        // through a filter.
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for id in self.0.iter() {
            seq.serialize_element(&id)?;
        }
        seq.end()
    }
}

impl Serialize for RandomizedVisitors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(day, set)| (day, Ids(set))))
    }
}

impl<'de> Deserialize<'de> for RandomizedVisitors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let days = BTreeMap::<i32, Vec<DeviceId>>::deserialize(d)?;
        Ok(RandomizedVisitors(
            days.into_iter()
                .map(|(day, mut sorted)| {
                    sorted.sort_unstable();
                    sorted.dedup();
                    let set = DaySet {
                        sorted,
                        ..DaySet::default()
                    };
                    (day, set)
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a map of hash sets, through merges and a stored copy.
        #[test]
        fn behaves_as_sets_by_day(ops in proptest::collection::vec((0u8..16, 0u16..3000, 0i32..3), 1..4000)) {
            let mut v = RandomizedVisitors::default();
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
                        prop_assert_eq!(v.take(dev), want);
                    }
                    // A stored copy now and then (each is a copy of all).
                    _ if id % 16 == 0 => {
                        let bytes = postcard::to_stdvec(&v).unwrap();
                        v = postcard::from_bytes(&bytes).unwrap();
                    }
                    _ => {}
                }
                prop_assert_eq!(v.len(), model.values().map(|s| s.len()).sum::<usize>());
            }
            // The parts the checkpoint writes hold every id, ascending.
            let mut back = RandomizedVisitors::default();
            for (day, ids) in v.sorted() {
                let (a, b) = ids.split_at(ids.len() / 2);
                back.extend_sorted(day, a.to_vec()).unwrap();
                back.extend_sorted(day, b.to_vec()).unwrap();
            }
            for (day, ids) in &model {
                for &id in ids {
                    prop_assert_eq!(back.take(DeviceId(id)), Some(*day));
                }
            }
            prop_assert!(back.is_empty());
        }
    }

    #[test]
    fn a_part_out_of_order_is_refused() {
        let mut v = RandomizedVisitors::default();
        v.extend_sorted(5, vec![DeviceId(1), DeviceId(7)]).unwrap();
        let e = v.extend_sorted(5, vec![DeviceId(3)]).unwrap_err();
        assert!(e.contains("day 5"), "{e}");
        assert!(v.extend_sorted(6, vec![DeviceId(2), DeviceId(2)]).is_err());
    }
}
