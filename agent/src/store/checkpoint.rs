//! The `state` tree: the checkpoint, everything that is restored
//! together, and the one transaction that commits it with the outbox and
//! the histories saved since the last one.

use footfall_report::Report;
use serde::{Deserialize, Serialize};

use super::{encode, Store, StoreError, CHECKPOINT_KEY};
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

impl Store {
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
}
