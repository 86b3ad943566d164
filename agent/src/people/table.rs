//! A window's observations by device, in two plain lists found through a
//! table of positions (issue 20).
//!
//! As a hash map of (id, observation) pairs, a slot was 57 bytes and the
//! table doubled to 131,072 slots once a crowd's window passed 57,344
//! devices: 7.5 MB a window, two or three windows pending. Here a slot is
//! a 4-byte position, and each device costs its 16-byte id and 32-byte
//! observation once, in lists that grow as devices come: 3.8 MB at
//! 65,536 devices.

use std::fmt;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use serde::de::{MapAccess, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Deserializer, Serialize};

use super::estimate::Obs;
use crate::privacy::{DeviceId, IdBuildHasher};

/// As the counter's maps hash an id (`privacy::IdHasher`).
fn hash(id: DeviceId) -> u64 {
    IdBuildHasher::default().hash_one(id)
}

#[derive(Clone, Default)]
pub struct ObsTable {
    /// Positions in `ids` and `obs`, by the id's hash.
    slots: HashTable<u32>,
    ids: Vec<DeviceId>,
    obs: Vec<Obs>,
}

impl ObsTable {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn position(&self, id: DeviceId) -> Option<usize> {
        let ids = &self.ids;
        self.slots
            .find(hash(id), |&i| ids[i as usize] == id)
            .map(|&i| i as usize)
    }

    pub(super) fn contains(&self, id: DeviceId) -> bool {
        self.position(id).is_some()
    }

    /// `id`'s observation, put as `new()` makes it if there was none.
    pub(super) fn entry(&mut self, id: DeviceId, new: impl FnOnce() -> Obs) -> &mut Obs {
        let ids = &self.ids;
        let entry = self.slots.entry(
            hash(id),
            |&i| ids[i as usize] == id,
            |&i| hash(ids[i as usize]),
        );
        let i = match entry {
            hashbrown::hash_table::Entry::Occupied(e) => *e.get() as usize,
            hashbrown::hash_table::Entry::Vacant(e) => {
                let i = self.ids.len();
                e.insert(u32::try_from(i).expect("a window observes under 2^32 devices"));
                self.ids.push(id);
                self.obs.push(new());
                i
            }
        };
        &mut self.obs[i]
    }

    /// Puts `o` for `id`, over any it had.
    pub(super) fn insert(&mut self, id: DeviceId, o: Obs) {
        *self.entry(id, || o) = o;
    }

    /// Keeps the observations `keep` says, then gives memory back.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Obs) -> bool) {
        let mut kept = 0;
        for i in 0..self.ids.len() {
            if keep(&self.obs[i]) {
                self.ids.swap(kept, i);
                self.obs.swap(kept, i);
                kept += 1;
            }
        }
        self.ids.truncate(kept);
        self.obs.truncate(kept);
        self.ids.shrink_to_fit();
        self.obs.shrink_to_fit();
        self.reindex();
    }

    pub(super) fn clear(&mut self) {
        *self = ObsTable::default();
    }

    /// The slots again, for the lists as they are, as small as they fit.
    fn reindex(&mut self) {
        let ids = &self.ids;
        self.slots = HashTable::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            self.slots
                .insert_unique(hash(id), i as u32, |&j| hash(ids[j as usize]));
        }
    }

    /// The observations of the devices `keep` says, by their first frame,
    /// ties by id: the same input always links the same way. Ordered
    /// through (time, position) pairs: a quarter of the bytes of copies
    /// of (id, observation), 4.2 MB when a crowd's window was made final.
    pub(super) fn in_time_order(
        &self,
        keep: impl Fn(DeviceId) -> bool,
    ) -> impl ExactSizeIterator<Item = &Obs> {
        let (ids, obs) = (&self.ids, &self.obs);
        let mut order: Vec<(i64, u32)> = (0..ids.len())
            .filter(|&i| keep(ids[i]))
            .map(|i| (obs[i].first_us(), i as u32))
            .collect();
        order.sort_unstable_by(|a, b| {
            (a.0.cmp(&b.0)).then_with(|| ids[a.1 as usize].cmp(&ids[b.1 as usize]))
        });
        order.into_iter().map(move |(_, i)| &obs[i as usize])
    }

    /// Every device and its observation, in the order they came.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&DeviceId, &Obs)> + Clone {
        self.ids.iter().zip(&self.obs)
    }
}

impl Extend<(DeviceId, Obs)> for ObsTable {
    fn extend<I: IntoIterator<Item = (DeviceId, Obs)>>(&mut self, items: I) {
        for (id, o) in items {
            self.insert(id, o);
        }
    }
}

impl fmt::Debug for ObsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Stored as the map it was: a length, then (id, observation) pairs.
impl Serialize for ObsTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for ObsTable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ObsTable, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = ObsTable;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of devices to observations")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObsTable, A::Error> {
                let mut table = ObsTable::default();
                while let Some((id, o)) = map.next_entry::<DeviceId, Obs>()? {
                    table.insert(id, o);
                }
                Ok(table)
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::IdMap;
    use proptest::prelude::*;

    proptest! {
        /// Against the hash map it replaced, through puts, changes and
        /// halvings; stored, it reads back as it was, and as that map.
        #[test]
        fn behaves_as_the_map(ops in proptest::collection::vec((0u8..8, 0u16..3000, 0i64..1000), 1..3000)) {
            let mut table = ObsTable::default();
            let mut model: IdMap<Obs> = IdMap::default();
            for (op, id, t) in ops {
                let id = DeviceId(u128::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                match op {
                    0 => {
                        table.retain(|o| o.first_us() % 2 == 0);
                        model.retain(|_, o| o.first_us() % 2 == 0);
                    }
                    1 => {
                        table.insert(id, Obs::at(t));
                        model.insert(id, Obs::at(t));
                    }
                    _ => {
                        table.entry(id, || Obs::at(t)).bump();
                        model.entry(id).or_insert_with(|| Obs::at(t)).bump();
                    }
                }
                prop_assert_eq!(table.len(), model.len());
                prop_assert_eq!(table.contains(id), model.contains_key(&id));
            }
            let in_order: Vec<(DeviceId, Obs)> = table.iter().map(|(i, o)| (*i, *o)).collect();
            let mut all = in_order.clone();
            all.sort_unstable_by_key(|e| e.0);
            let mut want: Vec<(DeviceId, Obs)> = model.iter().map(|(i, o)| (*i, *o)).collect();
            want.sort_unstable_by_key(|e| e.0);
            prop_assert_eq!(&all, &want);
            let stored = postcard::to_stdvec(&table).unwrap();
            let back: ObsTable = postcard::from_bytes(&stored).unwrap();
            let back: Vec<(DeviceId, Obs)> = back.iter().map(|(i, o)| (*i, *o)).collect();
            prop_assert_eq!(back, in_order);
            let as_map: IdMap<Obs> = postcard::from_bytes(&stored).unwrap();
            prop_assert_eq!(as_map, model);
        }
    }
}
