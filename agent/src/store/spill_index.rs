//! The spill's index: where each spilled device's record is.
//!
//! A crowd spills hundreds of thousands of devices. In a hash map their
//! entries (24 bytes) cost 25 bytes a slot at most seven-eighths full,
//! and while the map doubled the old table and the new one were both
//! held: 37.5 of the 112 MB of heap at a 100,000-phone crowd's peak under
//! `loyalty` (issue 20, heaptrack). Here the entries are kept sorted by
//! key, found through `Runs`. Entries put since the last merge wait in a
//! small map; one taken is marked gone in place. Merges go from the back,
//! in place, so no second copy is ever made.
//!
//! An entry is keyed by 64 bits of its id (`key`): 16 bytes with its
//! value, not 24, for the 365,000 a crowd holds (issue 20, heaptrack).
//! The spill keeps the low 64 bits in the record, so an id whose key
//! another device holds is told apart when the record is read, and a
//! device whose key is taken is not spilled (`insert_new`): ids are HMAC
//! outputs, so that is one crowd in billions, and it changes no count.

use crate::privacy::{merge_in, DeviceId, IdBuildHasher, Maybe, Runs};

/// A value with a mark for an entry taken but not yet merged away.
pub(super) trait Slot: Copy {
    const GONE: Self;
    fn is_gone(&self) -> bool;
}

/// Put entries are merged once they are this many or a sixteenth of the
/// sorted ones, whichever is more; gone ones once they are half. Put
/// entries wait in a hash map, which holds twice its entries' bytes
/// while it grows: with an eighth, at a crowd's peak, that was 1.6 MB
/// (issue 20); merges twice as often cost no measurable time.
const MERGE_MIN: usize = if cfg!(test) { 8 } else { 4096 };

/// What an entry is found by (`DeviceId::folded`): the low half alone
/// gives the id back (`id_of`).
pub(super) fn key(id: DeviceId) -> u64 {
    id.folded()
}

/// The id of `key` whose low half is `low`.
pub(super) fn id_of(key: u64, low: u64) -> DeviceId {
    DeviceId(u128::from(key ^ low) << 64 | u128::from(low))
}

/// `key` as an id whose leading bits are its own, for `Runs`.
fn as_id(key: u64) -> DeviceId {
    DeviceId(u128::from(key) << 64)
}

/// Where `Index::place` found an entry.
#[derive(Debug, Clone, Copy)]
pub(super) enum Place {
    Recent,
    Sorted(usize),
}

pub(super) struct Index<V: Slot> {
    /// Ascending by key.
    sorted: Vec<(u64, V)>,
    /// `sorted` entries marked gone.
    gone: usize,
    runs: Runs,
    /// Put since the last merge; none is in `sorted` unless gone there.
    recent: std::collections::HashMap<u64, V, IdBuildHasher>,
    /// Every key of `sorted` and `recent`, and some gone. A crowd asks
    /// for about ten million keys that are not there (every new MAC's
    /// first frame, every device spilled), and each cost a search of the
    /// runs and of the recent map, three cache misses, a tenth of the
    /// counting thread (issue 20, perf). Keys taken stay set until it is
    /// made afresh, which a merge does only once the keys put since it was
    /// made might fill it (`Index::merge`).
    maybe: Maybe,
    /// Keys put in `maybe` since it was made (gone ones too: their bits
    /// stay).
    maybe_keys: usize,
}

impl<V: Slot> Default for Index<V> {
    fn default() -> Self {
        Index {
            sorted: Vec::new(),
            gone: 0,
            runs: Runs::default(),
            recent: Default::default(),
            maybe: Maybe::of(MERGE_MIN, std::iter::empty()),
            maybe_keys: 0,
        }
    }
}

impl<V: Slot> Index<V> {
    pub(super) fn len(&self) -> usize {
        self.sorted.len() - self.gone + self.recent.len()
    }

    /// Where `key` is in `sorted`, gone or not.
    fn find(&self, key: u64) -> Option<usize> {
        let run = self.runs.range(as_id(key));
        let from = run.start;
        self.sorted[run]
            .binary_search_by_key(&key, |e| e.0)
            .ok()
            .map(|i| from + i)
    }

    /// Hints the CPU to load the filter's word of `id`, which `place`
    /// reads first (`IdTable::prefetch`).
    pub(super) fn prefetch(&self, id: DeviceId) {
        self.maybe.prefetch(key(id));
    }

    /// The value of the entry with `id`'s key.
    pub(super) fn get(&self, id: DeviceId) -> Option<V> {
        self.place(id).map(|(_, v)| v)
    }

    /// Where the entry with `id`'s key is, and its value: a `remove_at`
    /// after it finds the entry again without a search (a spilled device
    /// taken back was found twice, a fifth of the index's time in a
    /// crowd; issue 20).
    pub(super) fn place(&self, id: DeviceId) -> Option<(Place, V)> {
        let key = key(id);
        if !self.maybe.may_hold(key) {
            return None;
        }
        if let Some(&v) = self.recent.get(&key) {
            return Some((Place::Recent, v));
        }
        let i = self.find(key)?;
        let v = self.sorted[i].1;
        (!v.is_gone()).then_some((Place::Sorted(i), v))
    }

    /// Removes the entry `place` found for `id`, nothing changed since.
    pub(super) fn remove_at(&mut self, id: DeviceId, place: Place) {
        match place {
            Place::Recent => {
                self.recent.remove(&key(id));
            }
            Place::Sorted(i) => {
                debug_assert!(self.sorted[i].0 == key(id), "a place of another key");
                self.sorted[i].1 = V::GONE;
                self.gone += 1;
                self.merge_if_mostly_gone();
            }
        }
    }

    /// Puts `v` for `id`, unless an entry holds its key (then nothing
    /// changes, and it returns false).
    pub(super) fn insert_new(&mut self, id: DeviceId, v: V) -> bool {
        let key = key(id);
        let found = if self.maybe.may_hold(key) {
            self.find(key)
        } else {
            None
        };
        if let Some(i) = found {
            if !self.sorted[i].1.is_gone() {
                return false;
            }
            self.sorted[i].1 = v;
            self.gone -= 1;
            return true;
        }
        match self.recent.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => return false,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(v);
            }
        }
        self.maybe.insert(key);
        self.maybe_keys += 1;
        if self.recent.len() >= self.recent_max() {
            self.merge();
        }
        true
    }

    /// Keeps the entries `keep` says to keep.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        for e in &mut self.sorted {
            if !e.1.is_gone() && !keep(&e.1) {
                e.1 = V::GONE;
                self.gone += 1;
            }
        }
        self.recent.retain(|_, v| keep(v));
        self.merge_if_mostly_gone();
    }

    /// How many put entries wait for a merge at most.
    fn recent_max(&self) -> usize {
        MERGE_MIN.max(self.sorted.len() / 16)
    }

    /// The keys of every entry, gone ones too.
    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.sorted
            .iter()
            .map(|e| e.0)
            .chain(self.recent.keys().copied())
    }

    fn merge_if_mostly_gone(&mut self) {
        if self.gone >= MERGE_MIN.max(self.sorted.len() / 2) {
            self.merge();
        }
    }

    /// Every entry, as (key, value), in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, V)> + '_ {
        self.sorted
            .iter()
            .filter(|e| !e.1.is_gone())
            .copied()
            .chain(self.recent.iter().map(|(&k, &v)| (k, v)))
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
        merge_in(&mut self.sorted, self.recent.drain().collect(), |e| {
            as_id(e.0)
        });
        if self.sorted.capacity() > 2 * self.sorted.len() + MERGE_MIN {
            self.sorted.shrink_to_fit();
        }
        self.runs = Runs::of(self.sorted.iter().map(|e| as_id(e.0)));
        // Afresh, without the keys gone, once the puts until the next
        // merge might fill it (or it is four times too large). Sized for
        // twice the keys: made at every merge, it was a fifth of the
        // merges' time under a crowd (issue 20, perf), for its 8 bits a
        // key. The old one goes first: no two are held.
        let needed = self.sorted.len() + self.recent_max();
        let room = self.maybe.room();
        if self.maybe_keys + self.recent_max() > room || room > 4 * needed + MERGE_MIN {
            self.maybe = Maybe::default();
            self.maybe = Maybe::of(2 * needed, self.keys());
            self.maybe_keys = self.sorted.len();
        }
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

    /// The filter lets through every key put, and few others.
    #[test]
    fn the_filter_passes_keys_put_and_few_others() {
        let mut index: Index<u32> = Index::default();
        let id = |n: u64| id_of(n.wrapping_mul(0x9e37_79b9_7f4a_7c15), n);
        for n in 0..20_000 {
            assert!(index.insert_new(id(n), n as u32));
        }
        for n in 0..20_000 {
            assert!(index.maybe.may_hold(key(id(n))), "key {n} put, refused");
        }
        let passed = (20_000..40_000)
            .filter(|&n| index.maybe.may_hold(key(id(n))))
            .count();
        assert!(passed < 2_000, "{passed} of 20,000 keys not put passed");
    }

    proptest! {
        /// Against a hash map of keys, through merges of puts and of
        /// takes by the place found; ids of one key share it.
        #[test]
        fn behaves_as_a_map_of_keys(ops in proptest::collection::vec((0u8..4, 0u16..2000, 0u32..1000), 1..5000)) {
            let mut index: Index<u32> = Index::default();
            let mut model: HashMap<u64, u32> = HashMap::new();
            for (op, n, v) in ops {
                // Ids 2m and 2m + 1 share their key (and are one id when
                // m is even).
                let k = u64::from(n / 2).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let dev = id_of(k, u64::from(n % 2 + u16::from(n % 4 == 0)));
                prop_assert_eq!(key(dev), k);
                match op {
                    0 => {
                        let fresh = !model.contains_key(&k);
                        prop_assert_eq!(index.insert_new(dev, v), fresh);
                        model.entry(k).or_insert(v);
                    }
                    1 => {
                        let found = index.place(dev);
                        prop_assert_eq!(found.map(|f| f.1), model.remove(&k));
                        if let Some((place, _)) = found {
                            index.remove_at(dev, place);
                        }
                    }
                    2 if v % 64 == 0 => {
                        // Drops the values of one residue.
                        let r = v / 64 % 4;
                        index.retain(|&x| x % 4 != r);
                        model.retain(|_, x| *x % 4 != r);
                    }
                    _ => prop_assert_eq!(index.get(dev), model.get(&k).copied()),
                }
                prop_assert_eq!(index.len(), model.len());
            }
            let mut all: Vec<(u64, u32)> = index.iter().collect();
            all.sort_unstable();
            let mut want: Vec<(u64, u32)> = model.into_iter().collect();
            want.sort_unstable();
            prop_assert_eq!(all, want);
        }
    }
}
