//! The `outbox` tree: reports committed but not yet delivered, by `seq`.
//! A report leaves it only once delivered: the emit file written and
//! synced, or over MQTT the gateway's ack (SPEC §6).

use footfall_report::Report;

use super::{Store, StoreError};

pub(super) fn seq_of(k: &[u8]) -> u64 {
    k.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX)
}

impl Store {
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
}
