//! The `histories` tree: each device's `History` of strong sessions and
//! visit days, in 65,536 buckets by the id's first 16 bits, and pruning of
//! what left the counter's horizon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use super::{decode_sealed, encode, sealed_by, Sealer, Store, StoreError, PART};
use crate::count::{History, HistoryError, HistoryStore, Horizon, Spilled};
use crate::privacy::{DeviceId, IdMap};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub removed: usize,
    pub kept: usize,
}

/// Histories whose buckets a thread reads, then writes, together. Small:
/// the part's bucket values are held until they are written, beside
/// everything the counting thread holds at the time (at 1,024 a part,
/// 4.8 MB of bucket values at the peak of 1 M devices a day under
/// `loyalty`, heaptrack).
const WRITE_PART: usize = 128;

/// A bucket's key and its new value (`None`: the bucket is now empty).
pub(super) type BucketValue = ([u8; 2], Option<Vec<u8>>);

/// The device histories whose ids share their first 16 bits, sorted by id.
///
/// Why buckets: sled splits a leaf past 16 keys and keeps memory for every
/// page, paged out or not, so with one key per device an agent's memory
/// grew with the devices it remembers, about 5 MiB a day at 100 k devices
/// a day (issue 7). 65,536 buckets bound the pages whatever the number of
/// devices, while a checkpoint still rewrites only the few histories that
/// share a bucket with each one it saves.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Bucket(Vec<([u8; 16], History)>);

/// Writes bucket values inside a transaction; `None` deletes the bucket.
pub(super) fn put_buckets(
    hist: &sled::transaction::TransactionalTree,
    buckets: &[BucketValue],
) -> sled::transaction::ConflictableTransactionResult<(), ()> {
    for (k, v) in buckets {
        match v {
            Some(v) => hist.insert(k, v.as_slice())?,
            None => hist.remove(k)?,
        };
    }
    Ok(())
}

pub(super) fn bucket_key(id: DeviceId) -> [u8; 2] {
    ((id.0 >> 112) as u16).to_be_bytes()
}

/// Which ids may have a history in the tree: for each bucket, 128 bits
/// with two set per id it may hold (a Bloom filter per bucket, 1 MiB in
/// all). Most new devices are passers-by with no history: reading their
/// bucket from sled to find nothing was a sixth of the counting thread
/// on a fortnight under `loyalty` (issue 20, perf).
///
/// Invariant: every id whose history the tree holds has its bits set.
/// Bits are only added (each `save`) until `prune` rebuilds the filter
/// from the buckets it has just read, so a write that fails or a commit
/// that never comes leaves a superset, which costs a read and no count.
pub(crate) struct Present(Box<[[u64; 2]]>);

impl Present {
    fn empty() -> Present {
        Present(vec![[0; 2]; 1 << 16].into_boxed_slice())
    }

    /// The bucket and its two bits, from id bits the bucket key does not
    /// use (the ids are HMAC outputs: evenly spread).
    fn slot(id: DeviceId) -> (usize, [u32; 2]) {
        let low = id.0 as u32;
        ((id.0 >> 112) as usize, [low & 127, (low >> 7) & 127])
    }

    fn add(&mut self, id: DeviceId) {
        let (b, bits) = Present::slot(id);
        for bit in bits {
            self.0[b][(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    fn add_bucket(&mut self, bucket: &Bucket) {
        for (id, _) in &bucket.0 {
            self.add(DeviceId(u128::from_be_bytes(*id)));
        }
    }

    /// Every id of the bucket at `key` may be there: one that cannot be
    /// read is left for `load` to report.
    fn add_all(&mut self, key: &[u8]) {
        if let Ok(k) = <[u8; 2]>::try_from(key) {
            self.0[usize::from(u16::from_be_bytes(k))] = [u64::MAX; 2];
        }
    }

    fn may_hold(&self, id: DeviceId) -> bool {
        let (b, bits) = Present::slot(id);
        bits.iter()
            .all(|&bit| self.0[b][(bit / 64) as usize] >> (bit % 64) & 1 == 1)
    }
}

impl Bucket {
    pub(super) fn get(&self, id: DeviceId) -> Option<History> {
        let k = id.0.to_be_bytes();
        self.0
            .binary_search_by(|(e, _)| e.cmp(&k))
            .ok()
            .map(|i| self.0[i].1)
    }

    pub(super) fn set(&mut self, id: DeviceId, h: Option<History>) {
        let k = id.0.to_be_bytes();
        match (self.0.binary_search_by(|(e, _)| e.cmp(&k)), h) {
            (Ok(i), Some(h)) => self.0[i].1 = h,
            (Ok(i), None) => {
                self.0.remove(i);
            }
            (Err(i), Some(h)) => self.0.insert(i, (k, h)),
            (Err(_), None) => {}
        }
    }

    pub(super) fn value(&self) -> Option<Vec<u8>> {
        (!self.0.is_empty()).then(|| encode(self))
    }
}

impl Store {
    /// Deletes stored histories that can no longer change a count (SPEC §3
    /// looks back at most `loyalty_days`), so the state stays bounded.
    /// Safe outside a checkpoint, and so in parts: a deleted record is one
    /// no count will read again. Parts, because sled copies a leaf for
    /// every write and frees the copies only after the batch (massif).
    pub fn prune(&mut self, horizon: Horizon) -> Result<Pruned, StoreError> {
        // The tree is read and rewritten here: nothing else may write it.
        self.land()?;
        let mut pruned = Pruned::default();
        let mut changed = Vec::new();
        let mut present = Present::empty();
        for item in self.histories.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            if self.stale(&v) {
                // Sealed under an earlier key: ids never seen again.
                changed.push((k, None));
                continue;
            }
            let mut bucket = self.bucket(&k, &v)?;
            let before = bucket.0.len();
            bucket.0.retain(|(_, h)| h.is_useful(horizon));
            pruned.removed += before - bucket.0.len();
            pruned.kept += bucket.0.len();
            present.add_bucket(&bucket);
            if bucket.0.len() != before {
                changed.push((k, bucket.value().map(|v| self.sealed(v))));
            }
        }
        let buckets = self.buckets();
        for part in changed.chunks(PART) {
            buckets.apply(part)?;
        }
        // What is saved but not written yet goes to the tree later.
        for (&id, h) in &self.overlay {
            if h.is_some() {
                present.add(id);
            }
        }
        self.present = Some(present);
        Ok(pruned)
    }

    /// The filter of ids with a history, read from the tree the first time.
    fn present(&mut self) -> &mut Present {
        if self.present.is_none() {
            let mut present = Present::empty();
            for item in self.histories.iter() {
                let Ok((k, v)) = item else {
                    // The tree cannot be read through: every load reads.
                    present.0.fill([u64::MAX; 2]);
                    break;
                };
                match self.bucket(&k, &v) {
                    Ok(bucket) => present.add_bucket(&bucket),
                    Err(_) => present.add_all(&k),
                }
            }
            self.present = Some(present);
        }
        self.present.as_mut().expect("set above")
    }

    /// Writes the histories the store holds to its tree, in batches,
    /// outside a transaction. Only right after a commit, and only those
    /// that commit holds (`commit`), or those of devices the committed
    /// state still holds (in memory or spilled) with no frame since, whose
    /// evictions waited for room (`HistoryStore::full`): a crash before
    /// the next commit restarts from a state that holds them, in its parts
    /// or in a device that hands the same history over again. No other
    /// history can be written this way.
    ///
    /// Here, unlike after a commit (`launch`), they are written before it
    /// returns, after those a thread is writing.
    pub fn write_histories(&mut self) -> Result<(), StoreError> {
        self.land()?;
        let overlay = std::mem::take(&mut self.overlay);
        self.buckets().write(&overlay)
    }

    /// Starts writing the histories the store holds to its tree on a
    /// thread of its own, under the rules of `write_histories`; they stay
    /// readable (`load`) and ride in each commit's parts (`in_flight`)
    /// until a commit finds the thread done (`land_if_done`). In the
    /// counting thread, writing was a quarter to a third of it under
    /// `loyalty` (a bucket read and a bucket write per history; issue 20,
    /// perf), while the reading thread left most of a second core idle.
    ///
    /// Only when no thread writes already: two would race over a bucket.
    pub(super) fn launch(&mut self) {
        debug_assert!(
            self.flight.is_none(),
            "one thread writes histories at a time"
        );
        let histories = Arc::new(std::mem::take(&mut self.overlay));
        let (buckets, theirs) = (self.buckets(), Arc::clone(&histories));
        #[cfg(test)]
        let gate = self.gate.take();
        let thread = std::thread::Builder::new()
            .name("histories".into())
            .spawn(move || {
                #[cfg(test)]
                match gate.map(|g| g.recv().unwrap_or(Gate::Write)) {
                    Some(Gate::Vanish) => return Ok(()),
                    Some(Gate::Fail) => {
                        return Err(StoreError::Write {
                            path: buckets.path.clone(),
                            source: std::io::Error::other("failed on purpose"),
                        })
                    }
                    Some(Gate::Write) | None => {}
                }
                buckets.write(&theirs)
            });
        match thread {
            Ok(thread) => self.flight = Some(Flight { histories, thread }),
            Err(e) => {
                // No thread to be had: the histories wait in the overlay
                // for the next commit, or for `write_histories`.
                tracing::warn!("cannot start a thread to write device histories: {e}");
                self.overlay = Arc::try_unwrap(histories).unwrap_or_else(|h| (*h).clone());
            }
        }
    }

    /// Waits for the thread writing histories, if any. If it failed, the
    /// histories it held go back to the overlay (under any saved since),
    /// so that the next commit still holds them, and its error is
    /// returned.
    pub(super) fn land(&mut self) -> Result<(), StoreError> {
        let Some(flight) = self.flight.take() else {
            return Ok(());
        };
        let result = match flight.thread.join() {
            Ok(result) => result,
            // The thread's panic, where the counting thread would have had it.
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if result.is_err() {
            for (&id, &h) in flight.histories.iter() {
                self.overlay.entry(id).or_insert(h);
            }
        }
        result
    }

    /// `land`, only if the thread is done: what it wrote needs no part.
    pub(super) fn land_if_done(&mut self) -> Result<(), StoreError> {
        match &self.flight {
            Some(f) if f.thread.is_finished() => self.land(),
            _ => Ok(()),
        }
    }

    /// Histories a thread is writing to the tree and a commit must still
    /// hold, those saved again since left out (the overlay holds them).
    pub(super) fn in_flight(&self) -> impl Iterator<Item = (DeviceId, Option<History>)> + '_ {
        self.flight
            .iter()
            .flat_map(|f| f.histories.iter())
            .filter(|(id, _)| !self.overlay.contains_key(*id))
            .map(|(&id, &h)| (id, h))
    }

    /// Device histories saved or removed and not yet written to the tree,
    /// but for those a thread is writing.
    pub fn pending_histories(&self) -> usize {
        self.overlay.len()
    }

    /// Whether a thread is still writing histories to the tree: a commit
    /// now could not write those saved since (`launch`).
    pub fn writing_histories(&self) -> bool {
        self.flight
            .as_ref()
            .is_some_and(|f| !f.thread.is_finished())
    }

    /// Makes the next thread that writes histories wait for the returned
    /// sender's word on what to do.
    #[cfg(test)]
    pub(crate) fn gate_next_flight(&mut self) -> std::sync::mpsc::Sender<Gate> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.gate = Some(rx);
        tx
    }

    /// Sets the histories a commit writes to the tree at (0 in tests).
    #[cfg(test)]
    pub(crate) fn set_write_at(&mut self, n: usize) {
        self.write_at = n;
    }

    /// Lowers the histories taken before a commit, so that tests reach it.
    #[cfg(test)]
    pub(crate) fn set_max_pending(&mut self, n: usize) {
        self.max_pending = n;
    }

    /// Device histories stored on disk (not counting those in memory),
    /// once the thread writing them, if any, is done.
    pub fn device_records(&mut self) -> Result<usize, StoreError> {
        self.land()?;
        let mut n = 0;
        for item in self.histories.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            n += self.bucket(&k, &v)?.0.len();
        }
        Ok(n)
    }

    /// A bucket's histories; a bucket sealed under an earlier key epoch
    /// reads as empty (its ids are never seen again; `prune` deletes it).
    pub(super) fn bucket(&self, key: &[u8], value: &[u8]) -> Result<Bucket, StoreError> {
        read_bucket(&self.path, self.sealer.as_deref(), key, value)
    }

    fn stale(&self, value: &[u8]) -> bool {
        stale(self.sealer.as_deref(), value)
    }

    /// The new values of the buckets that `changes` touch (`None`: a
    /// history to delete), read from the tree: the store is its only writer.
    pub(super) fn updated_buckets(
        &self,
        changes: impl IntoIterator<Item = (DeviceId, Option<History>)>,
    ) -> Result<Vec<BucketValue>, StoreError> {
        self.buckets().updated(changes)
    }

    /// What writing buckets needs, for this thread or another.
    fn buckets(&self) -> Buckets {
        Buckets {
            path: self.path.clone(),
            tree: self.histories.clone(),
            sealer: self.sealer.clone(),
        }
    }
}

/// A bucket's histories; a bucket sealed under an epoch other than
/// `sealer`'s reads as empty (its ids are never seen again; `prune`
/// deletes it).
fn read_bucket(
    path: &Path,
    sealer: Option<&Sealer>,
    key: &[u8],
    value: &[u8],
) -> Result<Bucket, StoreError> {
    if stale(sealer, value) {
        return Ok(Bucket::default());
    }
    let name = || {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        format!("bucket {hex}")
    };
    decode_sealed(path, sealer, "histories", name, value)
}

fn stale(sealer: Option<&Sealer>, value: &[u8]) -> bool {
    super::seal::epoch_of(value).is_some_and(|e| Some(e) != sealer.map(Sealer::epoch))
}

/// What a gated thread that writes histories does (tests).
#[cfg(test)]
pub(crate) enum Gate {
    Write,
    /// Ends without writing, as a thread cut short by a crash does.
    Vanish,
    /// Fails without writing, as when sled cannot write.
    Fail,
}

/// Histories on their way to the tree on a thread of their own
/// (`Store::launch`), readable until it is done.
pub(super) struct Flight {
    histories: Arc<IdMap<Option<History>>>,
    thread: JoinHandle<Result<(), StoreError>>,
}

/// The tree of histories and what reading and writing its buckets needs,
/// owned, so that a thread can write them while the counter goes on.
struct Buckets {
    path: PathBuf,
    tree: sled::Tree,
    sealer: Option<Arc<Sealer>>,
}

impl Buckets {
    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    /// Writes `histories` in parts of `WRITE_PART`, in id order, so that
    /// consecutive buckets are read and written together.
    fn write(&self, histories: &IdMap<Option<History>>) -> Result<(), StoreError> {
        let mut changes: Vec<_> = histories.iter().map(|(&id, &h)| (id, h)).collect();
        changes.sort_unstable_by_key(|&(id, _)| id.0);
        for part in changes.chunks(WRITE_PART) {
            self.apply(&self.updated(part.iter().copied())?)?;
        }
        Ok(())
    }

    /// See `Store::updated_buckets`.
    fn updated(
        &self,
        changes: impl IntoIterator<Item = (DeviceId, Option<History>)>,
    ) -> Result<Vec<BucketValue>, StoreError> {
        let mut by_bucket: BTreeMap<[u8; 2], Vec<(DeviceId, Option<History>)>> = BTreeMap::new();
        for (id, h) in changes {
            by_bucket.entry(bucket_key(id)).or_default().push((id, h));
        }
        let sealer = self.sealer.as_deref();
        let mut out = Vec::with_capacity(by_bucket.len());
        for (key, changes) in by_bucket {
            let mut bucket = match self.tree.get(key).map_err(|e| self.sled_err(e))? {
                Some(v) => read_bucket(&self.path, sealer, &key, &v)?,
                None => Bucket::default(),
            };
            for (id, h) in changes {
                bucket.set(id, h);
            }
            out.push((key, bucket.value().map(|v| sealed_by(sealer, v))));
        }
        Ok(out)
    }

    /// Writes bucket values (sealed already) one by one, outside a
    /// transaction; `None` deletes the bucket.
    ///
    /// Not as one sled batch: sled 0.34 applies a batch under its global
    /// write lock, which every `get` then waits on, and the counting
    /// thread's `load`s waited for this thread's batches (0.57 s of a
    /// 6.2 s replay of 1 M devices a day under `loyalty`, off-CPU
    /// profile; issue 20). An insert takes the lock's shared side. No
    /// reader needs the part whole: each bucket is written whole, and a
    /// crash part-way restarts from a commit that holds every history.
    fn apply<K: AsRef<[u8]>>(&self, buckets: &[(K, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        for (k, v) in buckets {
            match v {
                Some(v) => self.tree.insert(k.as_ref(), v.as_slice()).map(drop),
                None => self.tree.remove(k.as_ref()).map(drop),
            }
            .map_err(|e| self.sled_err(e))?;
        }
        Ok(())
    }
}

impl HistoryStore for Store {
    fn load(&mut self, id: DeviceId) -> Result<Option<History>, HistoryError> {
        if let Some(h) = self.overlay.get(&id) {
            return Ok(*h);
        }
        if let Some(h) = self.flight.as_ref().and_then(|f| f.histories.get(&id)) {
            return Ok(*h);
        }
        if !self.present().may_hold(id) {
            return Ok(None);
        }
        let key = bucket_key(id);
        match self.histories.get(key) {
            Ok(Some(v)) => self
                .bucket(&key, &v)
                .map(|b| b.get(id))
                .map_err(|e| HistoryError(e.to_string())),
            Ok(None) => Ok(None),
            Err(e) => Err(HistoryError(self.sled_err(e).to_string())),
        }
    }

    fn save(&mut self, id: DeviceId, history: &History) {
        self.present().add(id);
        self.overlay.insert(id, Some(*history));
    }

    fn remove(&mut self, id: DeviceId) {
        self.overlay.insert(id, None);
    }

    fn full(&self) -> bool {
        self.overlay.len() >= self.max_pending
    }

    fn key_rotated(&mut self) {
        if let Err(e) = self.land() {
            // Histories of the epoch that ended: no count reads them again.
            tracing::warn!("cannot write the last epoch's device histories: {e}");
        }
        self.overlay.clear();
        if let Err(e) = self.spill.clear() {
            // The records are sealed under this process's key; the files
            // are only tidying now.
            tracing::warn!("cannot remove spilled devices' files: {e}");
        }
    }

    fn spill(&mut self, id: DeviceId, record: &[u8], how: Spilled) -> Result<bool, HistoryError> {
        self.spill
            .put(id, record, how)
            .map_err(|e| self.spill_err(e))
    }

    fn unspill(&mut self, id: DeviceId) -> Result<Option<(Vec<u8>, bool)>, HistoryError> {
        self.spill.take(id).map_err(|e| self.spill_err(e))
    }

    fn spilled_window(&self, id: DeviceId, near: i64) -> Option<(i64, bool)> {
        self.spill.last_window(id, near)
    }

    fn forget_inert_before(&mut self, nw: i64) -> Result<(), HistoryError> {
        self.spill
            .forget_inert_before(nw)
            .map_err(|e| self.spill_err(e))
    }

    fn prefetch_spilled(&self, id: DeviceId) {
        self.spill.prefetch(id);
    }

    fn spilled(&self) -> usize {
        self.spill.len()
    }

    fn spilled_ids(&self) -> Result<Vec<DeviceId>, HistoryError> {
        self.spill.ids().map_err(|e| self.spill_err(e))
    }

    fn read_randomized(&mut self, at: u64) -> Result<(i32, Vec<DeviceId>), HistoryError> {
        self.committed_randomized_part(at)
            .map_err(|e| HistoryError(e.to_string()))
    }
}

impl Store {
    fn spill_err(&self, e: std::io::Error) -> HistoryError {
        HistoryError(format!(
            "{}: spilled devices (issue 20): {e}",
            self.path.join("spill").display()
        ))
    }
}
