//! Older state formats, moved into the current one on open: format 2's
//! randomized visitors into the checkpoint, format 3's one key per device
//! into buckets. Each move is in parts, one transaction each, and resumes
//! where a crash stopped it.

use serde::{Deserialize, Serialize};

use footfall_report::codec;

use super::checkpoint::{Checkpoint, FileProgress};
use super::histories::put_buckets;
use super::outbox::seq_of;
use super::{
    encode, hex, Store, StoreError, CHECKPOINT_V3_KEY, IDENTITY_KEY, PART, V2, VALUE_VERSION,
};
use crate::count::{self, History};
use crate::privacy::DeviceId;

#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct CheckpointV2 {
    pub(super) counter: count::StateV2,
    pub(super) files: Vec<FileProgress>,
    pub(super) next_seq: u64,
}

impl Store {
    /// Format 2 to 3 in place: randomized devices' histories leave
    /// `devices` for the checkpoint, every other value is sealed again as
    /// v3. Safe to run again after a crash part-way: each step skips what
    /// is already v3, the checkpoint and the outbox change in one
    /// transaction, and the identity, sealed again last, is what says v2.
    pub(super) fn upgrade_from_v2(&self, meta: &sled::Tree) -> Result<(), StoreError> {
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
            .get(CHECKPOINT_V3_KEY)
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
        let checkpoint = checkpoint.map(sled::IVec::from);
        self.transact(checkpoint.as_ref().map(|c| (c, None)), &outbox)?;
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

    /// Histories move from `devices`, one key each as agents before
    /// buckets stored them, into buckets. In parts, each one transaction
    /// over both trees, so a crash part-way leaves every history in exactly
    /// one of them and the next open goes on. Returns how many moved.
    pub(super) fn bucket_devices(&self) -> Result<usize, StoreError> {
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
}
