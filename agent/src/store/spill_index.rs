//! The spill's index: where each spilled device's record is.
//!
//! A crowd spills hundreds of thousands of devices. In a hash map their
//! entries (24 bytes) cost 25 bytes a slot at most seven-eighths full,
//! and while the map doubled the old table and the new one were both
//! held: 37.5 of the 112 MB of heap at a 100,000-phone crowd's peak under
//! `loyalty` (issue 20, heaptrack). Here the entries are kept sorted by
//! id, 24 bytes each and nothing else, found through `Runs`. Entries put
//! since the last merge wait in a small map; one taken is marked gone in
//! place. Merges go from the back, in place, so no second copy is ever
//! made.

use crate::privacy::{merge_in, DeviceId, IdMap, Runs};

/// A value with a mark for an entry taken but not yet merged away.
pub(super) trait Slot: Copy {
    const GONE: Self;
    fn is_gone(&self) -> bool;
}

/// Put entries are merged once they are this many or an eighth of the
/// sorted ones, whichever is more; gone ones once they are half.
const MERGE_MIN: usize = if cfg!(test) { 8 } else { 4096 };

/// Where `Index::place` found an entry.
#[derive(Debug, Clone, Copy)]
pub(super) enum Place {
    Recent,
    Sorted(usize),
}

pub(super) struct Index<V: Slot> {
    /// Ascending by id.
    sorted: Vec<(DeviceId, V)>,
    /// `sorted` entries marked gone.
    gone: usize,
    runs: Runs,
    /// Put since the last merge; none is in `sorted` unless gone there.
    recent: IdMap<V>,
}

impl<V: Slot> Default for Index<V> {
    fn default() -> Self {
        Index {
            sorted: Vec::new(),
            gone: 0,
            runs: Runs::default(),
            recent: IdMap::default(),
        }
    }
}

impl<V: Slot> Index<V> {
    pub(super) fn len(&self) -> usize {
        self.sorted.len() - self.gone + self.recent.len()
    }

    /// Where `id` is in `sorted`, gone or not.
    fn find(&self, id: DeviceId) -> Option<usize> {
        let run = self.runs.range(id);
        let from = run.start;
        self.sorted[run]
            .binary_search_by_key(&id, |e| e.0)
            .ok()
            .map(|i| from + i)
    }

    pub(super) fn get(&self, id: DeviceId) -> Option<V> {
        self.place(id).map(|(_, v)| v)
    }

    /// Where `id`'s entry is, and its value: a `remove_at` after it finds
    /// the entry again without a search (a spilled device taken back was
    /// found twice, a fifth of the index's time in a crowd; issue 20).
    pub(super) fn place(&self, id: DeviceId) -> Option<(Place, V)> {
        if let Some(&v) = self.recent.get(&id) {
            return Some((Place::Recent, v));
        }
        let i = self.find(id)?;
        let v = self.sorted[i].1;
        (!v.is_gone()).then_some((Place::Sorted(i), v))
    }

    /// Removes the entry `place` found for `id`, nothing changed since.
    pub(super) fn remove_at(&mut self, id: DeviceId, place: Place) {
        match place {
            Place::Recent => {
                self.recent.remove(&id);
            }
            Place::Sorted(i) => {
                debug_assert!(self.sorted[i].0 == id, "a place of another id");
                self.sorted[i].1 = V::GONE;
                self.gone += 1;
                if self.gone >= MERGE_MIN.max(self.sorted.len() / 2) {
                    self.merge();
                }
            }
        }
    }

    /// Puts `v` for `id`; returns what it replaces.
    pub(super) fn insert(&mut self, id: DeviceId, v: V) -> Option<V> {
        if let Some(i) = self.find(id) {
            let old = std::mem::replace(&mut self.sorted[i].1, v);
            if old.is_gone() {
                self.gone -= 1;
                return None;
            }
            return Some(old);
        }
        let old = self.recent.insert(id, v);
        if self.recent.len() >= MERGE_MIN.max(self.sorted.len() / 8) {
            self.merge();
        }
        old
    }

    #[cfg(test)]
    pub(super) fn remove(&mut self, id: DeviceId) -> Option<V> {
        let (place, v) = self.place(id)?;
        self.remove_at(id, place);
        Some(v)
    }

    /// Keeps the entries `keep` says to keep.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(DeviceId, &V) -> bool) {
        for e in &mut self.sorted {
            if !e.1.is_gone() && !keep(e.0, &e.1) {
                e.1 = V::GONE;
                self.gone += 1;
            }
        }
        self.recent.retain(|&id, v| keep(id, v));
        if self.gone >= MERGE_MIN.max(self.sorted.len() / 2) {
            self.merge();
        }
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (DeviceId, V)> + '_ {
        self.sorted
            .iter()
            .filter(|e| !e.1.is_gone())
            .copied()
            .chain(self.recent.iter().map(|(&id, &v)| (id, v)))
    }

    pub(super) fn clear(&mut self) {
        *self = Index::default();
    }

    /// Folds `recent` in and drops gone entries; then the runs again.
    fn merge(&mut self) {
        if self.gone > 0 {
            self.sorted.retain(|e| !e.1.is_gone());
            self.gone = 0;
        }
        merge_in(&mut self.sorted, self.recent.drain().collect(), |e| e.0);
        if self.sorted.capacity() > 2 * self.sorted.len() + MERGE_MIN {
            self.sorted.shrink_to_fit();
        }
        self.runs = Runs::of(self.sorted.iter().map(|e| e.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    impl Slot for u32 {
        const GONE: u32 = u32::MAX;
        fn is_gone(&self) -> bool {
            *self == u32::MAX
        }
    }

    proptest! {
        /// Against a hash map, through merges of puts and of takes, by
        /// id or by the place found.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((0u8..4, 0u16..2000, 0u32..1000), 1..5000)) {
            let mut index: Index<u32> = Index::default();
            let mut model: HashMap<u128, u32> = HashMap::new();
            for (op, id, v) in ops {
                let dev = DeviceId(u128::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                match op {
                    0 => prop_assert_eq!(index.insert(dev, v), model.insert(dev.0, v)),
                    1 => prop_assert_eq!(index.remove(dev), model.remove(&{ dev.0 })),
                    2 => {
                        let found = index.place(dev);
                        prop_assert_eq!(found.map(|f| f.1), model.remove(&{ dev.0 }));
                        if let Some((place, _)) = found {
                            index.remove_at(dev, place);
                        }
                    }
                    3 if v % 64 == 0 => {
                        // Drops the values of one residue.
                        let r = v / 64 % 4;
                        index.retain(|_, &x| x % 4 != r);
                        model.retain(|_, x| *x % 4 != r);
                    }
                    _ => prop_assert_eq!(index.get(dev), model.get(&{ dev.0 }).copied()),
                }
                prop_assert_eq!(index.len(), model.len());
            }
            let mut all: Vec<(u128, u32)> = index.iter().map(|(id, v)| (id.0, v)).collect();
            all.sort_unstable();
            let mut want: Vec<(u128, u32)> = model.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }
}
