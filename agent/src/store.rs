//! The agent's state in sled: the counter, device histories, the replay
//! position and the outbox of reports not yet delivered.
//!
//! Trees, keys and values:
//! - `meta`: `identity` → which store, agent and counting parameters this
//!   state belongs to; a state of another agent or other rules is refused.
//! - `state`: `checkpoint` → the counter's in-memory state, the replay
//!   position and the next report `seq`.
//! - `histories`: 2-byte bucket (the id's first 16 bits) → the `History`
//!   of every device of that bucket not in memory, as (id, history) pairs
//!   sorted by id. Format 3 kept one key per device in `devices`; see
//!   `Bucket` for why no more, and `bucket_devices` for the move.
//! - `outbox`: 8-byte big-endian `seq` → one report, JSON.
//!
//! Every value is `[format version][postcard or JSON payload][CRC-32 LE]`;
//! a value that fails its checksum or version is an error naming its tree
//! and key, never a default. Do not reorder fields of stored structs: the
//! payload is positional (postcard); change `VALUE_VERSION` instead.
//!
//! Invariants: one checkpoint is one sled transaction over `state`,
//! `histories` and `outbox`, flushed before any report of it leaves the
//! process. A report leaves the outbox only once delivered (the emit file
//! written and synced; over MQTT, the gateway's ack, SPEC §6).
//!
//! After kill -9: sled recovers to its last flushed transaction, so the
//! state is the last checkpoint, whole. The counter resumes there and the
//! replay re-reads the frames after the recorded position; counting is a
//! function of the frames, so the reports it makes again are the same
//! reports, with the same `seq`. Reports still in the outbox are sent again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use footfall_report::{codec, Report};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::count::{self, History, HistoryError, HistoryStore, Horizon};
use crate::privacy::{DeviceId, IdMap};

const VALUE_VERSION: u8 = 3;
/// The format before randomized visitors moved from `devices` into the
/// checkpoint; `Store::open` upgrades it in place.
const V2: u8 = 2;
const IDENTITY_KEY: &[u8] = b"identity";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
const FORMAT: &str = "footfall-agent-state";
/// Histories written in one sled batch or transaction at most.
const PART: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: cannot open the state database (is another footfall-agent using it?)")]
    Open { path: PathBuf, source: sled::Error },
    #[error("{path}: the state database failed")]
    Sled { path: PathBuf, source: sled::Error },
    #[error("{path}: tree `{tree}`, key {key}: {what}; the state is damaged: restore it from a backup or move it away to start over")]
    Corrupt {
        path: PathBuf,
        tree: &'static str,
        key: String,
        what: String,
    },
    #[error("{path}: this state belongs to {found}, but the config says {expected}; point [storage] path elsewhere or fix the config")]
    Foreign {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Who a state belongs to. Counting parameters are part of it: mixing
/// counts made under two rule sets would make every later number wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub format: String,
    pub store_id: String,
    pub agent_id: String,
    pub params_hash: String,
}

impl Identity {
    pub fn new(store_id: &str, agent_id: &str, params_hash: &str) -> Identity {
        Identity {
            format: FORMAT.into(),
            store_id: store_id.into(),
            agent_id: agent_id.into(),
            params_hash: params_hash.into(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "store {:?} agent {:?} counting with params_hash {}",
            self.store_id, self.agent_id, self.params_hash
        )
    }
}

/// Progress through one input file, found again by its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    pub fingerprint: [u8; 32],
    pub frames: u64,
    pub done: bool,
}

/// Everything that must be restored together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub counter: count::State,
    pub files: Vec<FileProgress>,
    pub next_seq: u64,
}

/// `Checkpoint` as format v2 wrote it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckpointV2 {
    counter: count::StateV2,
    files: Vec<FileProgress>,
    next_seq: u64,
}

pub struct Store {
    path: PathBuf,
    db: sled::Db,
    state: sled::Tree,
    /// Format 3's one-key-per-device histories; empty once moved.
    devices: sled::Tree,
    histories: sled::Tree,
    outbox: sled::Tree,
    /// Device histories saved or removed since the last commit.
    overlay: IdMap<Option<History>>,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    codec::seal(
        VALUE_VERSION,
        &postcard::to_stdvec(v).expect("in-memory structs serialize"),
    )
}

fn decode_raw(bytes: &[u8]) -> Result<&[u8], String> {
    codec::open(VALUE_VERSION, bytes)
}

impl Store {
    /// Opens (creating if needed) the state at `path`, refusing a state of
    /// another identity.
    pub fn open(path: &Path, cache_bytes: u64, identity: &Identity) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::LowSpace)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let sled_err = |source| StoreError::Sled {
            path: path.to_path_buf(),
            source,
        };
        let open = |name: &str| db.open_tree(name).map_err(sled_err);
        let (meta, state, devices, histories, outbox) = (
            open("meta")?,
            open("state")?,
            open("devices")?,
            open("histories")?,
            open("outbox")?,
        );
        let store = Store {
            path: path.to_path_buf(),
            db: db.clone(),
            state,
            devices,
            histories,
            outbox,
            overlay: IdMap::default(),
        };
        let found = meta.get(IDENTITY_KEY).map_err(sled_err)?;
        if found.as_ref().is_some_and(|v| v.first() == Some(&V2)) {
            store.upgrade_from_v2(&meta)?;
            tracing::info!(path = %path.display(), "state upgraded from format 2 to 3");
        }
        if !store.devices.is_empty() {
            let moved = store.bucket_devices()?;
            tracing::info!(path = %path.display(), moved, "device histories moved into buckets");
        }
        match meta.get(IDENTITY_KEY).map_err(sled_err)? {
            Some(v) => {
                let found: Identity = store.decode("meta", "identity", &v)?;
                if &found != identity {
                    return Err(StoreError::Foreign {
                        path: path.to_path_buf(),
                        found: found.describe(),
                        expected: identity.describe(),
                    });
                }
            }
            None => {
                if !store.state.is_empty()
                    || !store.histories.is_empty()
                    || !store.outbox.is_empty()
                {
                    return Err(StoreError::Corrupt {
                        path: path.to_path_buf(),
                        tree: "meta",
                        key: "identity".into(),
                        what: "missing while other trees hold data".into(),
                    });
                }
                meta.insert(IDENTITY_KEY, encode(identity))
                    .map_err(sled_err)?;
                db.flush().map_err(sled_err)?;
            }
        }
        Ok(store)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        let corrupt = |what: String| StoreError::Corrupt {
            path: self.path.clone(),
            tree,
            key: key.to_string(),
            what,
        };
        let body = decode_raw(bytes).map_err(corrupt)?;
        postcard::from_bytes(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
    }

    /// Format 2 to 3 in place: randomized devices' histories leave
    /// `devices` for the checkpoint, every other value is sealed again as
    /// v3. Safe to run again after a crash part-way: each step skips what
    /// is already v3, the checkpoint and the outbox change in one
    /// transaction, and the identity, sealed again last, is what says v2.
    fn upgrade_from_v2(&self, meta: &sled::Tree) -> Result<(), StoreError> {
        let corrupt = |tree: &'static str, key: String, what: String| StoreError::Corrupt {
            path: self.path.clone(),
            tree,
            key,
            what,
        };
        let mut randomized = Vec::new();
        let mut gone = Vec::new();
        let mut resealed = Vec::new();
        for item in self.devices.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            if v.first() != Some(&V2) {
                continue;
            }
            let body = codec::open(V2, &v).map_err(|w| corrupt("devices", hex(&k), w))?;
            let h: History = postcard::from_bytes(body)
                .map_err(|e| corrupt("devices", hex(&k), format!("cannot decode: {e}")))?;
            if h.randomized {
                let id = <[u8; 16]>::try_from(&k[..])
                    .map_err(|_| corrupt("devices", hex(&k), "key is not 16 bytes".into()))?;
                randomized.push((DeviceId(u128::from_be_bytes(id)), h));
                gone.push(k);
            } else {
                resealed.push((k, codec::seal(VALUE_VERSION, body)));
            }
        }
        let checkpoint = match self
            .state
            .get(CHECKPOINT_KEY)
            .map_err(|e| self.sled_err(e))?
        {
            Some(v) if v.first() == Some(&V2) => {
                let body =
                    codec::open(V2, &v).map_err(|w| corrupt("state", "checkpoint".into(), w))?;
                let old: CheckpointV2 = postcard::from_bytes(body).map_err(|e| {
                    corrupt("state", "checkpoint".into(), format!("cannot decode: {e}"))
                })?;
                Some(encode(&Checkpoint {
                    counter: old.counter.upgrade(randomized),
                    files: old.files,
                    next_seq: old.next_seq,
                }))
            }
            _ => None,
        };
        let mut outbox = Vec::new();
        for item in self.outbox.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            if v.first() == Some(&V2) {
                let body = codec::open(V2, &v)
                    .map_err(|w| corrupt("outbox", format!("seq {}", seq_of(&k)), w))?;
                outbox.push((k, codec::seal(VALUE_VERSION, body)));
            }
        }
        self.transact(checkpoint.as_deref(), &[], &outbox)?;
        self.db.flush().map_err(|e| self.sled_err(e))?;
        for part in resealed.chunks(PART) {
            let mut batch = sled::Batch::default();
            for (k, v) in part {
                batch.insert(k, v.as_slice());
            }
            self.devices
                .apply_batch(batch)
                .map_err(|e| self.sled_err(e))?;
        }
        for part in gone.chunks(PART) {
            let mut batch = sled::Batch::default();
            for k in part {
                batch.remove(k);
            }
            self.devices
                .apply_batch(batch)
                .map_err(|e| self.sled_err(e))?;
        }
        self.db.flush().map_err(|e| self.sled_err(e))?;
        if let Some(v) = meta.get(IDENTITY_KEY).map_err(|e| self.sled_err(e))? {
            let body = codec::open(V2, &v).map_err(|w| corrupt("meta", "identity".into(), w))?;
            meta.insert(IDENTITY_KEY, codec::seal(VALUE_VERSION, body))
                .map_err(|e| self.sled_err(e))?;
        }
        self.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    pub fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        match self
            .state
            .get(CHECKPOINT_KEY)
            .map_err(|e| self.sled_err(e))?
        {
            Some(v) => Ok(Some(self.decode("state", "checkpoint", &v)?)),
            None => Ok(None),
        }
    }

    /// Reports in the outbox, in `seq` order.
    pub fn outbox(&self) -> Result<Vec<Report>, StoreError> {
        let mut out = Vec::new();
        for item in self.outbox.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let key = format!("seq {}", seq_of(&k));
            let json: Vec<u8> = self.decode("outbox", &key, &v)?;
            let report = serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                tree: "outbox",
                key,
                what: format!("not a report: {e}"),
            })?;
            out.push(report);
        }
        Ok(out)
    }

    /// Reports waiting in the outbox and the bytes they take.
    pub fn outbox_size(&self) -> (usize, u64) {
        self.outbox.iter().flatten().fold((0, 0), |(n, b), (k, v)| {
            (n + 1, b + (k.len() + v.len()) as u64)
        })
    }

    /// The `seq`s in the outbox, in order.
    pub fn outbox_seqs(&self) -> Vec<u64> {
        self.outbox
            .iter()
            .keys()
            .flatten()
            .map(|k| seq_of(&k))
            .collect()
    }

    /// One outbox report as its JSON payload; `None` once delivered.
    pub fn outbox_payload(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .outbox
            .get(seq.to_be_bytes())
            .map_err(|e| self.sled_err(e))?
        {
            Some(v) => Ok(Some(self.decode("outbox", &format!("seq {seq}"), &v)?)),
            None => Ok(None),
        }
    }

    /// Commits a checkpoint and its new reports in one transaction, then
    /// flushes: after this returns, a crash loses none of it.
    pub fn commit(&mut self, cp: &Checkpoint, reports: &[Report]) -> Result<(), StoreError> {
        let cp_bytes = encode(cp);
        let report_values: Vec<([u8; 8], Vec<u8>)> = reports
            .iter()
            .map(|r| {
                let json = serde_json::to_vec(r).expect("reports serialize");
                (r.seq().to_be_bytes(), encode(&json))
            })
            .collect();
        let buckets = self.updated_buckets(self.overlay.iter().map(|(&id, &h)| (id, h)))?;
        self.transact(Some(&cp_bytes), &buckets, &report_values)?;
        self.db.flush().map_err(|e| self.sled_err(e))?;
        self.overlay.clear();
        Ok(())
    }

    /// One sled transaction over `state`, `histories` and `outbox` (not
    /// flushed): a bucket value of `None` is a delete.
    fn transact<K: AsRef<[u8]>>(
        &self,
        checkpoint: Option<&[u8]>,
        buckets: &[BucketValue],
        outbox: &[(K, Vec<u8>)],
    ) -> Result<(), StoreError> {
        use sled::transaction::{ConflictableTransactionError, Transactional};
        (&self.state, &self.histories, &self.outbox)
            .transaction(|(state, hist, out)| {
                if let Some(cp) = checkpoint {
                    state.insert(CHECKPOINT_KEY, cp)?;
                }
                put_buckets(hist, buckets)?;
                for (k, v) in outbox {
                    out.insert(k.as_ref(), v.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.transaction_err(e))
    }

    fn transaction_err(&self, e: sled::transaction::TransactionError<()>) -> StoreError {
        match e {
            sled::transaction::TransactionError::Storage(source) => self.sled_err(source),
            sled::transaction::TransactionError::Abort(()) => {
                unreachable!("the transaction never aborts")
            }
        }
    }

    /// Drops delivered reports from the outbox. Not flushed: if the drop is
    /// lost in a crash, the reports are delivered again, which SPEC §6
    /// allows (at least once, stored once).
    pub fn remove_delivered(&self, seqs: impl IntoIterator<Item = u64>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for s in seqs {
            batch.remove(&s.to_be_bytes());
        }
        self.outbox.apply_batch(batch).map_err(|e| self.sled_err(e))
    }

    /// Deletes stored histories that can no longer change a count (SPEC §3
    /// looks back at most `loyalty_days`), so the state stays bounded.
    /// Safe outside a checkpoint, and so in parts: a deleted record is one
    /// no count will read again. Parts, because sled copies a leaf for
    /// every write and frees the copies only after the batch (massif).
    pub fn prune(&self, horizon: Horizon) -> Result<Pruned, StoreError> {
        let mut pruned = Pruned::default();
        let mut changed = Vec::new();
        for item in self.histories.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let mut bucket = self.bucket(&k, &v)?;
            let before = bucket.0.len();
            bucket.0.retain(|(_, h)| h.is_useful(horizon));
            pruned.removed += before - bucket.0.len();
            pruned.kept += bucket.0.len();
            if bucket.0.len() != before {
                changed.push((k, bucket.value()));
            }
        }
        for part in changed.chunks(PART) {
            let mut batch = sled::Batch::default();
            for (k, v) in part {
                match v {
                    Some(v) => batch.insert(k, v.as_slice()),
                    None => batch.remove(k),
                }
            }
            self.histories
                .apply_batch(batch)
                .map_err(|e| self.sled_err(e))?;
        }
        Ok(pruned)
    }

    /// Device histories saved or removed since the last commit.
    pub fn pending_histories(&self) -> usize {
        self.overlay.len()
    }

    /// Device histories stored on disk (not counting those in memory).
    pub fn device_records(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.histories.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            n += self.bucket(&k, &v)?.0.len();
        }
        Ok(n)
    }

    fn bucket(&self, key: &[u8], value: &[u8]) -> Result<Bucket, StoreError> {
        let name: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.decode("histories", &format!("bucket {name}"), value)
    }

    /// The new values of the buckets that `changes` touch (`None`: a
    /// history to delete), read from the tree: the store is its only writer.
    fn updated_buckets(
        &self,
        changes: impl IntoIterator<Item = (DeviceId, Option<History>)>,
    ) -> Result<Vec<BucketValue>, StoreError> {
        let mut by_bucket: BTreeMap<[u8; 2], Vec<(DeviceId, Option<History>)>> = BTreeMap::new();
        for (id, h) in changes {
            by_bucket.entry(bucket_key(id)).or_default().push((id, h));
        }
        let mut out = Vec::with_capacity(by_bucket.len());
        for (key, changes) in by_bucket {
            let mut bucket = match self.histories.get(key).map_err(|e| self.sled_err(e))? {
                Some(v) => self.bucket(&key, &v)?,
                None => Bucket::default(),
            };
            for (id, h) in changes {
                bucket.set(id, h);
            }
            out.push((key, bucket.value()));
        }
        Ok(out)
    }

    /// Histories move from `devices`, one key each as agents before
    /// buckets stored them, into buckets. In parts, each one transaction
    /// over both trees, so a crash part-way leaves every history in exactly
    /// one of them and the next open goes on. Returns how many moved.
    fn bucket_devices(&self) -> Result<usize, StoreError> {
        use sled::transaction::Transactional;
        let mut moved = 0;
        loop {
            let mut keys = Vec::new();
            let mut part = Vec::new();
            for item in self.devices.iter().take(PART) {
                let (k, v) = item.map_err(|e| self.sled_err(e))?;
                let id = <[u8; 16]>::try_from(&k[..]).map_err(|_| StoreError::Corrupt {
                    path: self.path.clone(),
                    tree: "devices",
                    key: hex(&k),
                    what: "key is not 16 bytes".into(),
                })?;
                let h: History = self.decode("devices", &hex(&k), &v)?;
                part.push((DeviceId(u128::from_be_bytes(id)), Some(h)));
                keys.push(k);
            }
            if part.is_empty() {
                break;
            }
            moved += part.len();
            let buckets = self.updated_buckets(part)?;
            (&self.devices, &self.histories)
                .transaction(|(devs, hist)| {
                    for k in &keys {
                        devs.remove(k)?;
                    }
                    put_buckets(hist, &buckets)
                })
                .map_err(|e| self.transaction_err(e))?;
        }
        self.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(moved)
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| self.sled_err(e))
    }
}

/// A key for an error message. Device ids are keyed hashes, not MACs, so
/// naming one is safe; only a prefix is shown, as in logs.
fn hex(k: &[u8]) -> String {
    k.iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
}

fn seq_of(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

/// What `prune` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub removed: usize,
    pub kept: usize,
}

/// A bucket's key and its new value (`None`: the bucket is now empty).
type BucketValue = ([u8; 2], Option<Vec<u8>>);

/// The device histories whose ids share their first 16 bits, sorted by id.
///
/// Why buckets: sled splits a leaf past 16 keys and keeps memory for every
/// page, paged out or not, so with one key per device an agent's memory
/// grew with the devices it remembers, about 5 MiB a day at 100 k devices
/// a day (issue 7). 65,536 buckets bound the pages whatever the number of
/// devices, while a checkpoint still rewrites only the few histories that
/// share a bucket with each one it saves.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Bucket(Vec<([u8; 16], History)>);

/// Writes bucket values inside a transaction; `None` deletes the bucket.
fn put_buckets(
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

fn bucket_key(id: DeviceId) -> [u8; 2] {
    ((id.0 >> 112) as u16).to_be_bytes()
}

impl Bucket {
    fn get(&self, id: DeviceId) -> Option<History> {
        let k = id.0.to_be_bytes();
        self.0
            .binary_search_by(|(e, _)| e.cmp(&k))
            .ok()
            .map(|i| self.0[i].1)
    }

    fn set(&mut self, id: DeviceId, h: Option<History>) {
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

    fn value(&self) -> Option<Vec<u8>> {
        (!self.0.is_empty()).then(|| encode(self))
    }
}

impl HistoryStore for Store {
    fn load(&mut self, id: DeviceId) -> Result<Option<History>, HistoryError> {
        if let Some(h) = self.overlay.get(&id) {
            return Ok(*h);
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
        self.overlay.insert(id, Some(*history));
    }

    fn remove(&mut self, id: DeviceId) {
        self.overlay.insert(id, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> Identity {
        Identity::new("s1", "a1", "p1")
    }

    /// Opens again in the same process. sled's flusher thread can hold the
    /// lock a moment after the previous handle is dropped (a real restart
    /// is a new process), so a held lock is retried for up to 5 s.
    fn reopen(path: &Path, identity: &Identity) -> Result<Store, StoreError> {
        for _ in 0..100 {
            match Store::open(path, 1 << 20, identity) {
                Err(StoreError::Open {
                    source: sled::Error::Io(e),
                    ..
                }) if e.to_string().contains("could not acquire lock") => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
        Store::open(path, 1 << 20, identity)
    }

    #[test]
    fn checkpoint_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        {
            let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
            let cp = Checkpoint {
                next_seq: 42,
                ..Checkpoint::default()
            };
            s.save(DeviceId(7), &History::default());
            s.commit(&cp, &[]).unwrap();
        }
        let mut s = reopen(&path, &ident()).unwrap();
        assert_eq!(s.load_checkpoint().unwrap().unwrap().next_seq, 42);
        assert_eq!(s.load(DeviceId(7)).unwrap(), Some(History::default()));
        assert_eq!(s.load(DeviceId(8)).unwrap(), None);
    }

    #[test]
    fn foreign_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        drop(Store::open(&path, 1 << 20, &ident()).unwrap());
        let err = reopen(&path, &Identity::new("s2", "a1", "p1"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("belongs to store \"s1\""), "{err}");
        let err = reopen(&path, &Identity::new("s1", "a1", "p2"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("params_hash p1"), "{err}");
    }

    #[test]
    fn damaged_value_is_an_error_naming_tree_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        {
            let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
            s.commit(&Checkpoint::default(), &[]).unwrap();
            // Flip one payload byte behind the store's back.
            let mut v = s.state.get(CHECKPOINT_KEY).unwrap().unwrap().to_vec();
            v[1] ^= 0xff;
            s.state.insert(CHECKPOINT_KEY, v).unwrap();
            s.flush().unwrap();
        }
        let s = reopen(&path, &ident()).unwrap();
        let err = s.load_checkpoint().unwrap_err().to_string();
        assert!(
            err.contains("tree `state`, key checkpoint: checksum mismatch"),
            "{err}"
        );
    }

    #[test]
    fn prune_keeps_only_histories_that_can_change_a_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("state"), 1 << 20, &ident()).unwrap();
        let at = |day: i32, randomized: bool| History {
            day,
            visited: 1,
            visitor_day: day,
            randomized,
            ..History::default()
        };
        s.save(DeviceId(1), &at(100, false)); // within loyalty: kept
        s.save(DeviceId(2), &at(60, false)); // older than the horizon: pruned
        s.save(DeviceId(3), &at(99, true)); // randomized, its day reported: pruned
        s.save(DeviceId(4), &at(101, true)); // randomized, its day pending: kept
        s.commit(&Checkpoint::default(), &[]).unwrap();
        let horizon = Horizon {
            next_day: 101,
            keep_from: 71,
        };
        assert_eq!(
            s.prune(horizon).unwrap(),
            Pruned {
                removed: 2,
                kept: 2
            }
        );
        assert_eq!(s.device_records().unwrap(), 2);
        assert!(s.load(DeviceId(1)).unwrap().is_some());
        assert!(s.load(DeviceId(2)).unwrap().is_none());
        assert!(s.load(DeviceId(4)).unwrap().is_some());
    }

    /// A state as format 2 left it (an agent upgraded in the field): it
    /// opens, randomized visitors move into the checkpoint, nothing else
    /// changes, and opening again finds it v3.
    #[test]
    fn a_v2_state_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let v2 = |v: &[u8]| codec::seal(V2, v);
        {
            let db = sled::open(&path).unwrap();
            let tree = |n: &str| db.open_tree(n).unwrap();
            tree("meta")
                .insert(IDENTITY_KEY, v2(&postcard::to_stdvec(&ident()).unwrap()))
                .unwrap();
            let cp = CheckpointV2 {
                next_seq: 7,
                ..CheckpointV2::default()
            };
            tree("state")
                .insert(CHECKPOINT_KEY, v2(&postcard::to_stdvec(&cp).unwrap()))
                .unwrap();
            let history = |randomized| History {
                day: 100,
                visited: 1,
                visitor_day: 100,
                randomized,
                ..History::default()
            };
            for (id, randomized) in [(1u128, false), (2, true)] {
                tree("devices")
                    .insert(
                        id.to_be_bytes(),
                        v2(&postcard::to_stdvec(&history(randomized)).unwrap()),
                    )
                    .unwrap();
            }
            let report = serde_json::to_vec(&serde_json::json!({"x": 1})).unwrap();
            tree("outbox")
                .insert(
                    6u64.to_be_bytes(),
                    v2(&postcard::to_stdvec(&report).unwrap()),
                )
                .unwrap();
            db.flush().unwrap();
        }
        for _ in 0..2 {
            let mut s = reopen(&path, &ident()).unwrap();
            let cp = s.load_checkpoint().unwrap().unwrap();
            assert_eq!(cp.next_seq, 7);
            assert_eq!(cp.counter.randomized_visitors(), 1);
            assert_eq!(
                s.device_records().unwrap(),
                1,
                "the randomized history left the store"
            );
            assert_eq!(s.load(DeviceId(1)).unwrap().unwrap().visitor_day, 100);
            assert_eq!(s.outbox_seqs(), vec![6]);
            assert!(s.outbox_payload(6).unwrap().is_some());
            drop(s);
        }
    }

    /// A format 3 state (one `devices` key per history) opens with its
    /// histories in buckets, also when a crash stopped an earlier open after
    /// it had moved only part of them; removing a history afterwards leaves
    /// the rest of its bucket.
    #[test]
    fn per_device_histories_move_into_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let history = |day| History {
            day,
            visited: 1,
            visitor_day: day,
            ..History::default()
        };
        let devices = [
            (1u128 << 120 | 1, 10),
            (1 << 120 | 2, 11),
            (2 << 120, 12),
            (u128::MAX, 13),
        ];
        {
            let mut s = Store::open(&path, 1 << 20, &ident()).unwrap();
            let (moved, left) = devices.split_at(1);
            s.save(DeviceId(moved[0].0), &history(moved[0].1));
            s.commit(&Checkpoint::default(), &[]).unwrap();
            for &(id, day) in left {
                s.devices
                    .insert(id.to_be_bytes(), encode(&history(day)))
                    .unwrap();
            }
            s.flush().unwrap();
        }
        let mut s = reopen(&path, &ident()).unwrap();
        assert!(s.devices.is_empty());
        assert_eq!(s.device_records().unwrap(), 4);
        assert_eq!(s.histories.len(), 3, "ids 1 and 2 share a bucket");
        for (id, day) in devices {
            assert_eq!(s.load(DeviceId(id)).unwrap(), Some(history(day)));
        }
        s.remove(DeviceId(devices[0].0));
        s.commit(&Checkpoint::default(), &[]).unwrap();
        assert_eq!(s.load(DeviceId(devices[0].0)).unwrap(), None);
        assert_eq!(s.load(DeviceId(devices[1].0)).unwrap(), Some(history(11)));
        assert_eq!(s.device_records().unwrap(), 3);
    }

    #[test]
    fn values_of_another_version_are_refused() {
        let mut v = encode(&5u32);
        assert!(decode_raw(&v).is_ok());
        v[0] = 9;
        let n = v.len();
        let crc = crc32fast::hash(&v[..n - 4]);
        v[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_raw(&v).unwrap_err(),
            format!("value version 9 is not {VALUE_VERSION}")
        );
    }
}
