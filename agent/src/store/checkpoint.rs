//! The `state` tree: the checkpoint, everything that is restored
//! together, and the one transaction that commits it with the outbox and
//! the histories saved since the last one.

use footfall_report::Report;
use serde::{Deserialize, Serialize};

use super::{encode, Store, StoreError, CHECKPOINT_KEY, CHECKPOINT_V3_KEY, CHECKPOINT_V4_KEY};
use crate::count;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileProgress {
    pub fingerprint: [u8; 32],
    pub frames: u64,
    pub done: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub counter: count::State,
    pub files: Vec<FileProgress>,
    pub next_seq: u64,
}

/// `Checkpoint` as format 4 wrote it, under the key `checkpoint-4`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CheckpointV4 {
    pub(super) counter: count::StateV4,
    pub(super) files: Vec<FileProgress>,
    pub(super) next_seq: u64,
}

/// `Checkpoint` as format 3 wrote it, under the key `checkpoint`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CheckpointV3 {
    pub(super) counter: count::StateV3,
    pub(super) files: Vec<FileProgress>,
    pub(super) next_seq: u64,
}

impl Store {
    /// The last checkpoint. One written before SPEC §8 (key `checkpoint`)
    /// or before privacy modes (`checkpoint-4`) is read in its own layout
    /// and upgraded; the next commit writes the
    /// current one and removes the old key in the same transaction.
    pub fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        let get = |key| self.state.get(key).map_err(|e| self.sled_err(e));
        if let Some(v) = get(CHECKPOINT_KEY)? {
            return Ok(Some(self.decode("state", "checkpoint-5", &v)?));
        }
        if let Some(v) = get(CHECKPOINT_V4_KEY)? {
            let old: CheckpointV4 = self.decode("state", "checkpoint-4", &v)?;
            return Ok(Some(Checkpoint {
                counter: old.counter.upgrade(),
                files: old.files,
                next_seq: old.next_seq,
            }));
        }
        match get(CHECKPOINT_V3_KEY)? {
            Some(v) => {
                let old: CheckpointV3 = self.decode("state", "checkpoint", &v)?;
                Ok(Some(Checkpoint {
                    counter: old.counter.upgrade(),
                    files: old.files,
                    next_seq: old.next_seq,
                }))
            }
            None => Ok(None),
        }
    }

    /// Commits a checkpoint and its new reports in one transaction, then
    /// flushes: after this returns, a crash loses none of it.
    pub fn commit(&mut self, cp: &Checkpoint, reports: &[Report]) -> Result<(), StoreError> {
        let cp_bytes = self.sealed(encode(cp));
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
}
