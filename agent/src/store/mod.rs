//! The agent's state in sled: the counter, device histories, the replay
//! position and the outbox of reports not yet delivered. This file opens
//! the state and holds what every part shares; `checkpoint`, `histories`,
//! `outbox` and `migrate` each own their trees' contents.
//!
//! Trees, keys and values:
//! - `meta`: `identity` → which store, agent and counting parameters this
//!   state belongs to; a state of another agent or other rules is refused.
//! - `state`: `checkpoint-5` → the counter's in-memory state, the replay
//!   position and the next report `seq` (`checkpoint`: the same before
//!   SPEC §8's people estimates, `checkpoint-4` before privacy modes;
//!   both upgraded on load).
//! - `histories`: 2-byte bucket (the id's first 16 bits) → the `History`
//!   of every device of that bucket not in memory, as (id, history) pairs
//!   sorted by id. Format 3 kept one key per device in `devices`; see
//!   `Bucket` for why no more, and `bucket_devices` for the move.
//! - `outbox`: 8-byte big-endian `seq` → one report, JSON.
//! - `state`: `checkpoint-parts` → the generation and number of the parts
//!   that hold the checkpoint's bulk (devices, window entries, people
//!   observations), in the file `bulk/{generation}.parts` beside sled's:
//!   each part a little-endian u32 length, then a value as below. Written
//!   and synced before the transaction that names it (`checkpoint`).
//! - `spill/{n}.spill` beside them: devices over the counter's memory
//!   budget, scratch of this process only (`spill`); the checkpoint copies
//!   them into its parts, and each start removes what was left.
//!
//! Every value is `[format version][postcard or JSON payload][CRC-32 LE]`;
//! a value that fails its checksum or version is an error naming its tree
//! and key, never a default. Do not reorder fields of stored structs: the
//! payload is positional (postcard); change `VALUE_VERSION` instead.
//!
//! Invariants: one checkpoint is one sled transaction over `state` and
//! `outbox`, flushed before any report of it leaves the process. A device
//! history reaches `histories` only after a commit whose parts hold it, and
//! every later commit holds it too until one finds it written before its
//! own flush (`histories::Flight`: a thread writes them after a commit). A
//! report leaves the outbox only once delivered (the emit file written and
//! synced; over MQTT, the gateway's ack, SPEC §6).
//!
//! After kill -9: sled recovers to its last flushed transaction, so the
//! state is the last checkpoint, whole (its parts were synced before it,
//! and are removed only after the next one is flushed). The counter resumes there and the
//! replay re-reads the frames after the recorded position; counting is a
//! function of the frames, so the reports it makes again are the same
//! reports, with the same `seq`. Reports still in the outbox are sent again.

mod checkpoint;
mod histories;
mod migrate;
mod outbox;
mod seal;
mod spill;
mod spill_index;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use footfall_report::codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::count::History;
use crate::privacy::IdMap;

pub use checkpoint::{Checkpoint, FileProgress};
pub use histories::Pruned;
pub use seal::Sealer;

pub(super) const VALUE_VERSION: u8 = 3;
/// The format before randomized visitors moved from `devices` into the
/// checkpoint; `Store::open` upgrades it in place.
pub(super) const V2: u8 = 2;
pub(super) const IDENTITY_KEY: &[u8] = b"identity";
/// The checkpoint; `checkpoint` held it in the layout before SPEC §8,
/// `checkpoint-4` before privacy modes.
pub(super) const CHECKPOINT_KEY: &[u8] = b"checkpoint-5";
pub(super) const CHECKPOINT_V4_KEY: &[u8] = b"checkpoint-4";
pub(super) const CHECKPOINT_V3_KEY: &[u8] = b"checkpoint";
/// Which file of parts in `bulk/` holds the checkpoint's bulk.
pub(super) const PARTS_KEY: &[u8] = b"checkpoint-parts";
const FORMAT: &str = "footfall-agent-state";
/// Histories written in one sled batch or transaction at most (migrations),
/// or held as bucket values at once while `prune` rewrites them.
pub(super) const PART: usize = 1024;
/// Device histories the store holds before they are written to its tree
/// (`HistoryStore::full`); the counter keeps the devices beyond until a
/// commit has made room. About 100 bytes each in memory and in the parts
/// of every commit until then.
const MAX_PENDING_HISTORIES: usize = 2 * WRITE_HISTORIES_AT;
/// Histories held at a commit that it writes to the tree after it
/// (`commit`); the pipeline takes a checkpoint once there are as many.
pub const WRITE_HISTORIES_AT: usize = 16_384;

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
    #[error("{path}: {what}; the state is damaged: restore it from a backup or move it away to start over")]
    CorruptFile { path: PathBuf, what: String },
    #[error("{path}: cannot write the checkpoint's parts")]
    Write {
        path: PathBuf,
        source: std::io::Error,
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

    pub(super) fn describe(&self) -> String {
        format!(
            "store {:?} agent {:?} counting with params_hash {}",
            self.store_id, self.agent_id, self.params_hash
        )
    }
}

pub struct Store {
    pub(super) path: PathBuf,
    pub(super) db: sled::Db,
    pub(super) state: sled::Tree,
    /// Format 3's one-key-per-device histories; empty once moved.
    pub(super) devices: sled::Tree,
    pub(super) histories: sled::Tree,
    pub(super) outbox: sled::Tree,
    /// Where the checkpoint's bulk is written, in parts (`checkpoint`).
    pub(super) bulk_dir: PathBuf,
    /// The generation of the parts the committed checkpoint names.
    pub(super) generation: u64,
    /// Bytes of the parts the last commit wrote.
    pub(super) bulk_bytes: u64,
    /// The committed generation's parts, open for the randomized visitors
    /// read from there (`count::State::randomized_visitors`).
    pub(super) parts_reader: Option<(u64, std::fs::File)>,
    /// Device histories saved or removed and not yet written to the tree
    /// (each commit writes them in its parts until then).
    pub(super) overlay: IdMap<Option<History>>,
    /// Histories a thread is writing to the tree (`histories::Flight`).
    flight: Option<histories::Flight>,
    /// What the next such thread waits for (tests).
    #[cfg(test)]
    gate: Option<std::sync::mpsc::Receiver<histories::Gate>>,
    /// `overlay` at which the store is `full` (`MAX_PENDING_HISTORIES`).
    pub(super) max_pending: usize,
    /// `overlay` at which a commit writes it to the tree
    /// (`WRITE_HISTORIES_AT`; at every commit in unit tests, which look
    /// in the tree, but for those that set it).
    pub(super) write_at: usize,
    /// Devices over the counter's memory budget (scratch, `spill`).
    spill: spill::Spill,
    /// Day-rotating privacy modes: the checkpoint and histories are sealed
    /// under the counter's key epoch (`seal`). Shared with the thread that
    /// writes histories.
    pub(super) sealer: Option<Arc<Sealer>>,
    /// Which ids may have a history in the tree; built on first use
    /// (`histories::Present`).
    pub(super) present: Option<histories::Present>,
}

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    framed(postcard::to_stdvec(v).expect("in-memory structs serialize"))
}

/// `codec::seal`'s bytes, made in the payload's own buffer.
pub(super) fn framed(payload: Vec<u8>) -> Vec<u8> {
    let mut out = payload;
    out.reserve_exact(5);
    out.insert(0, VALUE_VERSION);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A stored value of `tree`, opened with `sealer` and decoded; damage is an
/// error naming the state at `path`, the tree and the key. A function of
/// its own so that the thread writing histories, which holds no `Store`,
/// reads as the store does.
pub(super) fn decode_sealed<T: DeserializeOwned>(
    path: &Path,
    sealer: Option<&Sealer>,
    tree: &'static str,
    key: impl Fn() -> String,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        tree,
        key: key(),
        what,
    };
    let opened = seal::open(sealer, bytes).map_err(corrupt)?;
    let value = match &opened {
        seal::Opened::Plain(v) => v,
        seal::Opened::Unsealed(v) => v.as_slice(),
        seal::Opened::OtherEpoch(e) => {
            return Err(corrupt(format!(
                "sealed under key epoch {e}, whose key the key file no longer holds; \
                 was the key file replaced? Move the state away to start over"
            )))
        }
    };
    let body = decode_raw(value).map_err(corrupt)?;
    postcard::from_bytes(body).map_err(|e| corrupt(format!("cannot decode: {e}")))
}

/// `value` as it is written under `sealer` (`None`: as it is).
pub(super) fn sealed_by(sealer: Option<&Sealer>, value: Vec<u8>) -> Vec<u8> {
    match sealer {
        Some(s) => s.seal(&value),
        None => value,
    }
}

pub(super) fn decode_raw(bytes: &[u8]) -> Result<&[u8], String> {
    codec::open(VALUE_VERSION, bytes)
}

pub(super) fn hex(k: &[u8]) -> String {
    k.iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + "…"
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
            bulk_dir: path.join("bulk"),
            generation: 0,
            bulk_bytes: 0,
            parts_reader: None,
            overlay: IdMap::default(),
            flight: None,
            #[cfg(test)]
            gate: None,
            max_pending: MAX_PENDING_HISTORIES,
            write_at: if cfg!(test) { 0 } else { WRITE_HISTORIES_AT },
            spill: spill::Spill::new(path.join("spill")),
            sealer: None,
            present: None,
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

    pub(super) fn decode<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        self.decode_named(tree, || key.to_string(), bytes)
    }

    /// `decode`, naming the key only if the value is damaged: the hot path
    /// reads a history bucket per new device.
    pub(super) fn decode_named<T: DeserializeOwned>(
        &self,
        tree: &'static str,
        key: impl Fn() -> String,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        decode_sealed(&self.path, self.sealer.as_deref(), tree, key, bytes)
    }

    /// Seals what is written from now on under `sealer`'s epoch (`None`:
    /// nothing is sealed).
    pub fn seal_under(&mut self, sealer: Option<Sealer>) {
        self.sealer = sealer.map(Arc::new);
    }

    /// The epoch the sealer seals under, if any.
    pub fn sealed_epoch(&self) -> Option<i64> {
        self.sealer.as_deref().map(Sealer::epoch)
    }

    /// The key epoch the stored checkpoint is sealed under, if it is.
    pub fn checkpoint_epoch(&self) -> Result<Option<i64>, StoreError> {
        let v = self
            .state
            .get(CHECKPOINT_KEY)
            .map_err(|e| self.sled_err(e))?;
        Ok(v.and_then(|v| seal::epoch_of(&v)))
    }

    /// Bytes of the stored checkpoint's value (without its parts).
    #[cfg(test)]
    pub(crate) fn checkpoint_value_bytes(&self) -> Result<usize, StoreError> {
        let v = self
            .state
            .get(CHECKPOINT_KEY)
            .map_err(|e| self.sled_err(e))?;
        Ok(v.map_or(0, |v| v.len()))
    }

    /// `value` as it is written: sealed when a sealer is set.
    pub(super) fn sealed(&self, value: Vec<u8>) -> Vec<u8> {
        sealed_by(self.sealer.as_deref(), value)
    }

    pub(super) fn sled_err(&self, source: sled::Error) -> StoreError {
        StoreError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    /// One sled transaction over `state` and `outbox` (not flushed).
    pub(super) fn transact<K: AsRef<[u8]>>(
        &self,
        checkpoint: Option<(&sled::IVec, Option<&[u8]>)>,
        outbox: &[(K, Vec<u8>)],
    ) -> Result<(), StoreError> {
        use sled::transaction::{ConflictableTransactionError, Transactional};
        (&self.state, &self.outbox)
            .transaction(|(state, out)| {
                if let Some((cp, parts)) = checkpoint {
                    state.insert(CHECKPOINT_KEY, cp.clone())?;
                    match parts {
                        Some(head) => state.insert(PARTS_KEY, head)?,
                        None => state.remove(PARTS_KEY)?,
                    };
                    state.remove(CHECKPOINT_V3_KEY)?;
                    state.remove(CHECKPOINT_V4_KEY)?;
                }
                for (k, v) in outbox {
                    out.insert(k.as_ref(), v.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| self.transaction_err(e))
    }

    pub(super) fn transaction_err(&self, e: sled::transaction::TransactionError<()>) -> StoreError {
        match e {
            sled::transaction::TransactionError::Storage(source) => self.sled_err(source),
            sled::transaction::TransactionError::Abort(()) => {
                unreachable!("the transaction never aborts")
            }
        }
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(|e| self.sled_err(e))
    }
}

/// A thread still writing histories finishes first: what it writes is
/// held by the last commit's parts either way, but a clean stop should
/// not leave the next start to write it again.
impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.land() {
            tracing::warn!("cannot write device histories: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
