//! A map keyed by device whose values lie side by side with their ids in
//! one list, found through a table of 4-byte positions (issue 20).
//!
//! The counter looks a device up at every frame. In a hash map of boxed
//! devices that was three dependent cache misses: the control bytes, the
//! (id, box) slot and the box (perf: 8, 25 and 31 % of `detection` on a
//! 100,000-phone crowd). Here the control bytes and the positions (5 bytes
//! a slot, 640 KB at 131,072 slots) mostly stay in the CPU's caches and a
//! lookup misses once, on the (id, value) pair it reads. Values are held in
//! place, so no box is allocated per device, and the list grows as devices
//! come (untouched capacity costs no RSS), never to the table's doubling.
//!
//! Order is that of insertion, kept by `retain`: the same input always
//! walks the devices the same way.

use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;

use hashbrown::HashTable;
use serde::de::{MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Deserializer, Serialize};

use super::{DeviceId, IdBuildHasher};

/// As the counter's maps hash an id (`IdHasher`).
fn hash(id: DeviceId) -> u64 {
    IdBuildHasher::default().hash_one(id)
}

/// A value's place in an `IdTable` (`IdTable::find`).
#[derive(Debug, Clone, Copy)]
pub struct At(u32);

#[derive(Clone)]
pub struct IdTable<V> {
    /// Positions in `entries`, by the id's hash.
    slots: HashTable<u32>,
    entries: Vec<(DeviceId, V)>,
    /// A place in the list that stays in front of the same values as
    /// values go (`retain`), for a caller that walks only what came after
    /// it (`retain_from`). Memory only.
    mark: usize,
    /// The slots' capacity when they last had no tombstones (made anew,
    /// or grown): what `retain_from`'s removals leave is told from it.
    room: usize,
}

impl<V> Default for IdTable<V> {
    fn default() -> Self {
        IdTable {
            slots: HashTable::new(),
            entries: Vec::new(),
            mark: 0,
            room: 0,
        }
    }
}

impl<V> IdTable<V> {
    /// Empty, with slots for `n` values: a table that fills to about
    /// the size of the last one (a window's people observations) skips
    /// the rehash at each doubling, 2.5 % of the counting thread at 1 M
    /// devices a day (issue 20, perf). Slots are 5 bytes each; the list
    /// still grows as values come.
    pub fn with_slots(n: usize) -> Self {
        let slots = HashTable::with_capacity(n);
        IdTable {
            room: slots.capacity(),
            slots,
            entries: Vec::new(),
            mark: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, id: DeviceId) -> Option<usize> {
        let entries = &self.entries;
        self.slots
            .find(hash(id), |&i| entries[i as usize].0 == id)
            .map(|&i| i as usize)
    }

    /// Asks the CPU to bring `id`'s entry into its caches, without waiting
    /// for it. The counter calls it a few detections ahead, and the lookup
    /// then finds the entry in cache: waited for one at a time, that miss
    /// was half of `detection`'s own time under a crowd (perf, issue 20).
    /// False: `id` is surely not there.
    pub fn prefetch(&self, id: DeviceId) -> bool {
        // The slots whose tag matches `id`'s hash: its own if it is there,
        // and now and then another's (a prefetch wasted).
        let mut any = false;
        for &i in self.slots.iter_hash(hash(id)) {
            if let Some(e) = self.entries.get(i as usize) {
                prefetch(e);
                any = true;
            }
        }
        any
    }

    /// Where `id`'s value is, for `at_mut`, until the table next changes:
    /// the counter finds a frame's device once, and then reads it where
    /// it found it (a second lookup was 1.5 % of its thread under a crowd;
    /// issue 20, perf).
    pub fn find(&self, id: DeviceId) -> Option<At> {
        self.position(id).map(|i| At(position(i)))
    }

    /// The value `find` found, the table unchanged since.
    pub fn at_mut(&mut self, at: At) -> &mut V {
        &mut self.entries[at.0 as usize].1
    }

    pub fn contains(&self, id: DeviceId) -> bool {
        self.position(id).is_some()
    }

    pub fn get_mut(&mut self, id: DeviceId) -> Option<&mut V> {
        self.position(id).map(|i| &mut self.entries[i].1)
    }

    /// `id`'s value, put as `new()` makes it if there was none.
    pub fn entry(&mut self, id: DeviceId, new: impl FnOnce() -> V) -> &mut V {
        let entries = &self.entries;
        let entry = self.slots.entry(
            hash(id),
            |&i| entries[i as usize].0 == id,
            |&i| hash(entries[i as usize].0),
        );
        let i = match entry {
            hashbrown::hash_table::Entry::Occupied(e) => *e.get() as usize,
            hashbrown::hash_table::Entry::Vacant(e) => {
                let i = self.entries.len();
                e.insert(position(i));
                self.entries.push((id, new()));
                self.room = self.room.max(self.slots.capacity());
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Puts `v` for `id`; returns the value it replaced.
    pub fn insert(&mut self, id: DeviceId, v: V) -> Option<V> {
        match self.position(id) {
            Some(i) => Some(std::mem::replace(&mut self.entries[i].1, v)),
            None => {
                self.push_new(id, v);
                None
            }
        }
    }

    /// Puts `v` for an `id` the caller knows is not there (one lookup
    /// fewer than `insert`).
    pub fn insert_new(&mut self, id: DeviceId, v: V) -> &mut V {
        let at = self.insert_new_at(id, v);
        self.at_mut(at)
    }

    /// `insert_new`, and where the value is (`find`).
    pub fn insert_new_at(&mut self, id: DeviceId, v: V) -> At {
        debug_assert!(!self.contains(id), "{id} is there already");
        At(position(self.push_new(id, v)))
    }

    fn push_new(&mut self, id: DeviceId, v: V) -> usize {
        let i = self.entries.len();
        let entries = &self.entries;
        self.slots
            .insert_unique(hash(id), position(i), |&j| hash(entries[j as usize].0));
        self.entries.push((id, v));
        // Grown, they were made anew.
        self.room = self.room.max(self.slots.capacity());
        i
    }

    /// Keeps the values `keep` says, in their order; gives memory back
    /// once under half of it is used. (Kept to a quarter, the list raised
    /// a crowd's peak by 1.5–2 MiB: it no longer shrank while other parts
    /// grew; issue 20.)
    pub fn retain(&mut self, mut keep: impl FnMut(DeviceId, &mut V) -> bool) {
        let before = self.entries.len();
        let (mut at, mark) = (0, self.mark);
        self.entries.retain_mut(|(id, v)| {
            let kept = keep(*id, v);
            if !kept && at < mark {
                self.mark -= 1;
            }
            at += 1;
            kept
        });
        if self.entries.len() == before {
            return;
        }
        self.give_back();
        self.reindex();
    }

    /// `retain`, asking only of the values from position `from` on: the
    /// others stay where they are. The slots are mended in one walk over
    /// them, through a list of where each value from `from` went, not
    /// made anew from every id: a crowd's spill passes looked at and
    /// reindexed 100,000 devices to spill the 12,000 that came since the
    /// last pass, and a lookup to take out each one's slot missed the
    /// cache at each (issue 20, perf).
    pub fn retain_from(&mut self, from: usize, mut keep: impl FnMut(DeviceId, &mut V) -> bool) {
        const GONE: u32 = u32::MAX;
        let before = self.entries.len();
        let from = from.min(before);
        // Where each value from `from` on is now, or `GONE`.
        let mut moved = Vec::with_capacity(before - from);
        let (mut at, mut to, mark) = (0, from, self.mark);
        self.entries.retain_mut(|(id, v)| {
            let was = at;
            at += 1;
            if was < from {
                return true;
            }
            let kept = keep(*id, v);
            if kept {
                moved.push(position(to));
                to += 1;
            } else {
                moved.push(GONE);
                if was < mark {
                    self.mark -= 1;
                }
            }
            kept
        });
        if self.entries.len() == before {
            return;
        }
        self.slots
            .retain(|j| match (*j as usize).checked_sub(from) {
                None => true,
                Some(k) => {
                    *j = moved[k];
                    *j != GONE
                }
            });
        // A slot taken out is a tombstone, which only a new value that
        // lands on it takes back: left to pile up, they made the table
        // double at the next insert (a crowd's 131,072 slots went to
        // 262,144, and lookups missed the cache more).
        if self.slots.capacity() + self.room / 8 < self.room {
            self.reindex();
        }
        self.give_back();
    }

    /// Gives memory back once under half of the list is used.
    fn give_back(&mut self) {
        if self.entries.capacity() > 2 * self.entries.len() + 1024 {
            self.entries
                .shrink_to(self.entries.len() + self.entries.len() / 4);
        }
    }

    /// The mark (`mark`): where `set_mark` put it, moved down by the
    /// values before it that went since.
    pub fn mark(&self) -> usize {
        self.mark
    }

    pub fn set_mark(&mut self, at: usize) {
        self.mark = at.min(self.entries.len());
    }

    /// Moves the value at `at` from before the mark to just after it: it
    /// trades places with the last value before the mark, and the mark
    /// steps back over it. A caller of `retain_from(mark)` then sees it,
    /// as it would without a walk over the values before the mark. False
    /// (and nothing moves): it is after the mark already.
    pub fn behind_mark(&mut self, at: At) -> bool {
        let (i, m) = (at.0 as usize, self.mark);
        if i >= m {
            return false;
        }
        let last = m - 1;
        if i != last {
            let (a, b) = (self.entries[i].0, self.entries[last].0);
            self.entries.swap(i, last);
            // Through a value no slot holds, so that no two slots hold
            // the same position while they are mended.
            for (id, from, to) in [
                (a, i, u32::MAX as usize),
                (b, last, i),
                (a, u32::MAX as usize, last),
            ] {
                if let Some(j) = self.slots.find_mut(hash(id), |&j| j as usize == from) {
                    *j = to as u32;
                }
            }
        }
        self.mark = last;
        true
    }

    /// The id at position `i` of the list (`values_from`'s order).
    pub fn id_at(&self, i: usize) -> DeviceId {
        self.entries[i].0
    }

    /// The value `find` found, the table unchanged since.
    pub fn at(&self, at: At) -> &V {
        &self.entries[at.0 as usize].1
    }

    pub fn clear(&mut self) {
        *self = IdTable::default();
    }

    /// The slots again, for the list as it is. The table is kept unless
    /// it is over four times as large as needed: a crowd's spill passes and
    /// evictions reindex 100,000 devices, and a new table each time was
    /// its pages faulted in again. At twice, 1 M devices a day made the
    /// table anew at each window's eviction and grew it again, doubling
    /// by doubling, with the next window's devices: `push_new` went from
    /// 6.2 to 3.1 % of the counting thread (issue 20, perf), and the slots
    /// are 5 bytes a device.
    fn reindex(&mut self) {
        let entries = &self.entries;
        if self.slots.capacity() > 4 * entries.len() + 1024 {
            self.slots = HashTable::with_capacity(entries.len());
        } else {
            self.slots.clear();
        }
        for (i, (id, _)) in entries.iter().enumerate() {
            self.slots
                .insert_unique(hash(*id), i as u32, |&j| hash(entries[j as usize].0));
        }
        self.room = self.slots.capacity();
    }

    /// The values of the devices `keep` says, ordered by `key`, ties by
    /// id: the same input always comes out the same way. Sorted as (key,
    /// position) pairs, not copies of the values.
    pub fn in_order_by<K: Ord + Copy>(
        &self,
        keep: impl Fn(DeviceId) -> bool,
        key: impl Fn(&V) -> K,
    ) -> impl ExactSizeIterator<Item = &V> {
        let entries = &self.entries;
        let mut order: Vec<(K, u32)> = (0..entries.len())
            .filter(|&i| keep(entries[i].0))
            .map(|i| (key(&entries[i].1), i as u32))
            .collect();
        order.sort_unstable_by(|a, b| {
            (a.0.cmp(&b.0)).then_with(|| entries[a.1 as usize].0.cmp(&entries[b.1 as usize].0))
        });
        order.into_iter().map(move |(_, i)| &entries[i as usize].1)
    }

    /// Every device and its value, in the order they came.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&DeviceId, &V)> + Clone {
        self.entries.iter().map(|(id, v)| (id, v))
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> + Clone {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The values from position `from` on (`retain_from`).
    pub fn values_from(&self, from: usize) -> impl ExactSizeIterator<Item = &V> + Clone {
        self.entries[from.min(self.entries.len())..]
            .iter()
            .map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl ExactSizeIterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

/// Hints the CPU to load the cache lines that hold `v`. Only a hint:
/// nothing is read, and a line already cached costs next to nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(v: &T) {
    const LINE: usize = 64;
    let p = (v as *const T).cast::<u8>();
    let size = std::mem::size_of::<T>().max(1);
    for off in (0..size).step_by(LINE) {
        prefetch_line(p.wrapping_add(off));
    }
    // The line of the last byte, when `v` straddles one more.
    prefetch_line(p.wrapping_add(size - 1));
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_line(p: *const u8) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is a hint that never faults, whatever the
    // address, and SSE is in every x86_64.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
}

#[cfg(target_arch = "aarch64")]
#[inline(always)]
fn prefetch_line(p: *const u8) {
    // SAFETY: PRFM is a hint that never faults and writes nothing.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
}

#[cfg(target_arch = "arm")]
#[inline(always)]
fn prefetch_line(p: *const u8) {
    // SAFETY: PLD is a hint that never faults and writes nothing.
    unsafe {
        std::arch::asm!("pld [{0}]", in(reg) p, options(nostack, readonly, preserves_flags));
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")))]
#[inline(always)]
fn prefetch_line(_: *const u8) {}

fn position(i: usize) -> u32 {
    u32::try_from(i).expect("a table holds under 2^32 devices")
}

impl<V> Extend<(DeviceId, V)> for IdTable<V> {
    fn extend<I: IntoIterator<Item = (DeviceId, V)>>(&mut self, items: I) {
        for (id, v) in items {
            self.insert(id, v);
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for IdTable<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Stored as the map it replaced: a length, then (id, value) pairs.
impl<V: Serialize> Serialize for IdTable<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for IdTable<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<IdTable<V>, D::Error> {
        struct Pairs<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Pairs<V> {
            type Value = IdTable<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of devices")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdTable<V>, A::Error> {
                let mut table = IdTable::default();
                while let Some((id, v)) = map.next_entry::<DeviceId, V>()? {
                    table.insert(id, v);
                }
                Ok(table)
            }
        }
        deserializer.deserialize_map(Pairs(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::IdMap;
    use proptest::prelude::*;

    proptest! {
        /// Against the hash map it replaced, through puts, changes and
        /// removals; stored, it reads back as it was, and as that map.
        /// `retain_from` keeps what is before its place, `behind_mark`
        /// moves one value, and the mark stays in front of the same values.
        #[test]
        fn behaves_as_the_map(ops in proptest::collection::vec((0u8..11, 0u16..3000, 0u32..1000), 1..3000)) {
            let mut table: IdTable<u32> = IdTable::default();
            let mut model: IdMap<u32> = IdMap::default();
            for (op, id, v) in ops {
                let id = DeviceId(u128::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                let from_mark = |t: &IdTable<u32>| -> Vec<DeviceId> {
                    t.iter().skip(t.mark()).map(|(i, _)| *i).collect()
                };
                match op {
                    0 | 8 => {
                        let was = from_mark(&table);
                        let from = if op == 0 { 0 } else { id.0 as usize % (table.len() + 1) };
                        let before: Vec<DeviceId> = table.iter().take(from).map(|(i, _)| *i).collect();
                        if op == 0 {
                            table.retain(|_, x| *x % 3 != v % 3);
                        } else {
                            table.retain_from(from, |_, x| *x % 3 != v % 3);
                        }
                        let ids: Vec<DeviceId> = table.iter().map(|(i, _)| *i).collect();
                        prop_assert_eq!(&ids[..from], &before[..]);
                        model.retain(|i, x| before.contains(i) || *x % 3 != v % 3);
                        let kept: Vec<DeviceId> = was.into_iter().filter(|i| model.contains_key(i)).collect();
                        prop_assert_eq!(from_mark(&table), kept);
                    }
                    9 => table.set_mark(v as usize),
                    10 => {
                        if let Some(at) = table.find(id) {
                            let mark = table.mark();
                            let was: Vec<DeviceId> = table.iter().map(|(i, _)| *i).collect();
                            let at_was = was.iter().position(|&i| i == id).unwrap();
                            prop_assert_eq!(table.behind_mark(at), at_was < mark);
                            let now: Vec<DeviceId> = table.iter().map(|(i, _)| *i).collect();
                            if at_was < mark {
                                prop_assert_eq!(table.mark(), mark - 1);
                                prop_assert_eq!(now[mark - 1], id);
                                prop_assert_eq!(&now[mark..], &was[mark..]);
                                prop_assert_eq!(now[at_was], was[mark - 1]);
                            } else {
                                prop_assert_eq!(now, was);
                            }
                            for (i, v) in table.iter().map(|(i, v)| (*i, *v)).collect::<Vec<_>>() {
                                prop_assert_eq!(table.find(i).map(|at| *table.at(at)), Some(v));
                            }
                        }
                    }
                    1 => prop_assert_eq!(table.insert(id, v), model.insert(id, v)),
                    2 if !model.contains_key(&id) => {
                        table.insert_new(id, v);
                        model.insert(id, v);
                    }
                    3 => {
                        if let Some(x) = table.get_mut(id) {
                            *x += 1;
                        }
                        if let Some(x) = model.get_mut(&id) {
                            *x += 1;
                        }
                    }
                    _ => {
                        *table.entry(id, || v) += 1;
                        *model.entry(id).or_insert(v) += 1;
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert_eq!(table.get_mut(id).copied(), model.get(&id).copied());
            }
            let in_order: Vec<(DeviceId, u32)> = table.iter().map(|(i, v)| (*i, *v)).collect();
            let mut all = in_order.clone();
            all.sort_unstable_by_key(|e| e.0);
            let mut want: Vec<(DeviceId, u32)> = model.iter().map(|(i, v)| (*i, *v)).collect();
            want.sort_unstable_by_key(|e| e.0);
            prop_assert_eq!(&all, &want);
            let stored = postcard::to_stdvec(&table).unwrap();
            let back: IdTable<u32> = postcard::from_bytes(&stored).unwrap();
            let back: Vec<(DeviceId, u32)> = back.iter().map(|(i, v)| (*i, *v)).collect();
            prop_assert_eq!(back, in_order);
            let as_map: IdMap<u32> = postcard::from_bytes(&stored).unwrap();
            prop_assert_eq!(as_map, model);
        }
    }

    #[test]
    fn in_order_by_sorts_by_key_then_id() {
        let mut table: IdTable<i64> = IdTable::default();
        table.extend([
            (DeviceId(3), 5),
            (DeviceId(1), 5),
            (DeviceId(2), 1),
            (DeviceId(4), 0),
        ]);
        let got: Vec<i64> = table
            .in_order_by(|id| id != DeviceId(4), |&v| v)
            .copied()
            .collect();
        assert_eq!(got, [1, 5, 5]);
        let ids: Vec<i64> = table.in_order_by(|_| true, |&v| -v).copied().collect();
        assert_eq!(ids, [5, 5, 1, 0]);
    }
}
