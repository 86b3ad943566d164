//! The `state` tree: the checkpoint, everything that is restored
//! together, and the one transaction that commits it with the outbox and
//! the histories saved since the last one.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use footfall_report::Report;
use serde::{Deserialize, Serialize};

use super::{
    encode, framed, Store, StoreError, CHECKPOINT_KEY, CHECKPOINT_V3_KEY, CHECKPOINT_V4_KEY,
    PARTS_KEY,
};
use crate::count::{self, BulkPart};

/// A part is 4,096 items of at most a few hundred bytes: a length beyond
/// this is damage, not a part to allocate for.
const MAX_PART_BYTES: usize = 64 << 20;

/// A part's length as its first four bytes give it; beyond
/// `MAX_PART_BYTES`, an error that says so.
fn part_len(len: [u8; 4]) -> std::io::Result<usize> {
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_PART_BYTES {
        return Err(std::io::Error::other(format!(
            "it says it is {len} bytes, more than a part can be"
        )));
    }
    Ok(len)
}

/// Which parts hold the bulk of the checkpoint beside it (`count::Bulk`):
/// the file `bulk/{generation}.parts`, `parts` of them.
#[derive(Debug, Serialize, Deserialize)]
struct PartsHead {
    generation: u64,
    parts: u32,
}

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
    ///
    /// Devices beyond `device_budget` are spilled as they load (issue 20).
    pub fn load_checkpoint(
        &mut self,
        device_budget: usize,
    ) -> Result<Option<Checkpoint>, StoreError> {
        let get = |key| self.state.get(key).map_err(|e| self.sled_err(e));
        if let Some(v) = get(CHECKPOINT_KEY)? {
            let mut cp: Checkpoint = self.decode("state", "checkpoint-5", &v)?;
            let head = match get(PARTS_KEY)? {
                Some(h) => Some(self.decode::<PartsHead>("state", "checkpoint-parts", &h)?),
                None => None,
            };
            self.generation = head.as_ref().map_or(0, |h| h.generation);
            if let Some(head) = head {
                self.load_parts(&head, &mut cp.counter, device_budget)?;
            }
            self.drop_parts_but(self.generation);
            return Ok(Some(cp));
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

    fn parts_file(&self, generation: u64) -> PathBuf {
        self.bulk_dir.join(format!("{generation}.parts"))
    }

    /// Adds the parts `head` names to `state`; a file missing, short or
    /// with a part that does not fit is an error naming it.
    fn load_parts(
        &mut self,
        head: &PartsHead,
        state: &mut count::State,
        device_budget: usize,
    ) -> Result<(), StoreError> {
        if head.parts == 0 {
            return Ok(());
        }
        let path = self.parts_file(head.generation);
        let corrupt = |what: String| StoreError::CorruptFile {
            path: path.clone(),
            what,
        };
        let mut file = std::fs::File::open(&path)
            .map(BufReader::new)
            .map_err(|e| corrupt(format!("cannot read the checkpoint's parts: {e}")))?;
        let mut at = 0u64;
        for n in 0..head.parts {
            let mut len = [0u8; 4];
            let mut value = Vec::new();
            file.read_exact(&mut len)
                .and_then(|()| {
                    value.resize(part_len(len)?, 0);
                    file.read_exact(&mut value)
                })
                .map_err(|e| {
                    corrupt(format!(
                        "part {n} of the {} the checkpoint names: {e}",
                        head.parts
                    ))
                })?;
            let part: BulkPart = self
                .decode("bulk", &format!("part {n}"), &value)
                .map_err(|e| corrupt(e.to_string()))?;
            state
                .put_part(part, at, device_budget, self)
                .map_err(|w| corrupt(format!("part {n}: {w}")))?;
            at += 4 + value.len() as u64;
        }
        if file.fill_buf().map_or(true, |rest| !rest.is_empty()) {
            return Err(corrupt(format!(
                "more than the {} parts the checkpoint names",
                head.parts
            )));
        }
        Ok(())
    }

    /// Bytes of spilled devices' records (a metric).
    pub fn spill_bytes(&self) -> u64 {
        self.spill.bytes()
    }

    /// Bytes of the parts the last commit wrote (a metric).
    pub fn bulk_bytes(&self) -> u64 {
        self.bulk_bytes
    }

    /// Writes `bulk` as the parts of `generation`, synced; returns how many.
    /// No file for no parts: `ephemeral` has none, and a checkpoint a
    /// second should not cost it two syncs.
    fn write_parts(&mut self, generation: u64, bulk: &mut count::Bulk) -> Result<u32, StoreError> {
        self.bulk_bytes = 0;
        if bulk.is_empty() && self.spill.len() == 0 && self.overlay.is_empty() {
            return Ok(0);
        }
        let path = self.parts_file(generation);
        let err = |source| StoreError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.bulk_dir).map_err(err)?;
        let mut file = BufWriter::new(std::fs::File::create(&path).map_err(err)?);
        let (mut parts, mut bytes) = (0u32, 0u64);
        let mut put = |payload| {
            let value = self.sealed(framed(payload));
            let at = bytes;
            parts += 1;
            bytes += 4 + value.len() as u64;
            file.write_all(&(value.len() as u32).to_le_bytes())?;
            file.write_all(&value)?;
            Ok(at)
        };
        // The randomized visitors in the last generation's parts are
        // copied from there.
        let mut last = None;
        let mut read = |at| {
            let file = match &mut last {
                Some(file) => file,
                None => last.insert(std::fs::File::open(self.parts_file(self.generation))?),
            };
            self.randomized_part(file, self.generation, at)
                .map_err(std::io::Error::other)
        };
        bulk.write_parts(&mut put, &mut read).map_err(err)?;
        // The spilled devices, copied from the scratch a part at a time;
        // those their window counts in place of entries
        // (`count::Spilled::counted`) in parts of their own, which enter
        // them there again when they load.
        let mut records = [const { Vec::new() }; 2];
        let mut counted = 0u64;
        for record in self.spill.records() {
            let (id, record, is_counted) = record.map_err(err)?;
            counted += u64::from(is_counted);
            let part = &mut records[usize::from(is_counted)];
            part.push((id, record));
            if part.len() == count::Bulk::PART_ITEMS {
                put(bulk.spilled_part(part, is_counted)).map_err(err)?;
                part.clear();
            }
        }
        for (is_counted, part) in records.iter().enumerate() {
            if !part.is_empty() {
                put(bulk.spilled_part(part, is_counted == 1)).map_err(err)?;
            }
        }
        if counted != bulk.counted() {
            return Err(err(std::io::Error::other(format!(
                "the windows count {} spilled devices, the spill holds {counted}",
                bulk.counted()
            ))));
        }
        let saved = self.overlay.iter().map(|(&id, &h)| (id, h));
        let histories = self.in_flight().chain(saved);
        count::in_parts(histories, count::Bulk::histories_part, &mut put).map_err(err)?;
        let file = file.into_inner().map_err(|e| err(e.into_error()))?;
        file.sync_all().map_err(err)?;
        // The new name too, before the head that names it is committed.
        std::fs::File::open(&self.bulk_dir)
            .and_then(|d| d.sync_all())
            .map_err(err)?;
        self.bulk_bytes = bytes;
        Ok(parts)
    }

    /// The day and ids of the part of randomized visitors at `at` in
    /// `file`, of `generation`; an error names the file and what is wrong.
    fn randomized_part(
        &self,
        file: &std::fs::File,
        generation: u64,
        at: u64,
    ) -> Result<(i32, Vec<crate::privacy::DeviceId>), StoreError> {
        let path = self.parts_file(generation);
        let corrupt = |what: String| StoreError::CorruptFile {
            path: path.clone(),
            what: format!("the part at byte {at}: {what}"),
        };
        let mut len = [0u8; 4];
        let mut value = Vec::new();
        file.read_exact_at(&mut len, at)
            .and_then(|()| {
                value.resize(part_len(len)?, 0);
                file.read_exact_at(&mut value, at + 4)
            })
            .map_err(|e| corrupt(format!("cannot read it: {e}")))?;
        let part: BulkPart = self
            .decode("bulk", &format!("part at {at}"), &value)
            .map_err(|e| corrupt(e.to_string()))?;
        count::Bulk::read_randomized(part).map_err(corrupt)
    }

    /// `randomized_part` of the committed checkpoint's file, kept open.
    pub(super) fn committed_randomized_part(
        &mut self,
        at: u64,
    ) -> Result<(i32, Vec<crate::privacy::DeviceId>), StoreError> {
        let generation = self.generation;
        let file = match self.parts_reader.take() {
            Some((g, file)) if g == generation => file,
            _ => {
                let path = self.parts_file(generation);
                std::fs::File::open(&path).map_err(|e| StoreError::CorruptFile {
                    path,
                    what: format!("cannot read the checkpoint's parts: {e}"),
                })?
            }
        };
        let part = self.randomized_part(&file, generation, at);
        self.parts_reader = Some((generation, file));
        part
    }

    /// Removes the parts of every generation but `keep`: those the last
    /// commit replaced, and those of a commit a crash interrupted. Only
    /// tidying (no head names them, and a file is truncated before it is
    /// written again), so a failure is logged, never an error.
    fn drop_parts_but(&self, keep: u64) {
        let kept = self.parts_file(keep);
        let entries = match std::fs::read_dir(&self.bulk_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(dir = %self.bulk_dir.display(), "cannot list the checkpoint's old parts: {e}");
                return;
            }
        };
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if path != kept {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(file = %path.display(), "cannot remove old checkpoint parts: {e}");
                }
            }
        }
    }

    /// Where the checkpoint's parts are, for tests that damage them.
    #[cfg(test)]
    pub(crate) fn bulk_dir(&self) -> &std::path::Path {
        &self.bulk_dir
    }

    /// Commits a checkpoint and its new reports, then flushes: after this
    /// returns, a crash loses none of it.
    ///
    /// The histories saved since they were last written to the tree are
    /// committed with the parts, and written to the tree after the
    /// commit once there are `WRITE_HISTORIES_AT`, in batches outside any
    /// transaction, by a thread (`launch`): a history goes to the tree
    /// only once a committed state holds it, and every commit holds it
    /// until one finds it written before its own flush, so a crash at any
    /// point restarts from a state whose parts hold it again or whose
    /// flushed tree does (writing a history twice changes nothing). In
    /// the transaction, a commit per 1,024 histories was a third of the
    /// counting thread on 1 M devices a day under `loyalty`, serializing
    /// the devices in memory each time (issue 20, perf).
    ///
    /// The counter's bulk (devices, entries, observations: nearly all of a
    /// crowd's state) is written first, in parts to a file of a new
    /// generation, synced, one part in memory at a time; the transaction
    /// then commits the rest with the head that names that generation
    /// and the outbox. A crash before the transaction
    /// leaves the last commit and its file as they were (the new file is
    /// removed at the next load); the old file goes once the new head is
    /// flushed. One value for all of it made three copies of a crowd's
    /// state at every checkpoint, and parts in a sled tree still left
    /// sled's nodes holding them (issue 20, massif).
    pub fn commit(&mut self, cp: &mut Checkpoint, reports: &[Report]) -> Result<(), StoreError> {
        let generation = self.generation + 1;
        // Histories written already are flushed with this commit: its
        // parts need not hold them.
        self.land_if_done()?;
        // What a crash or a failed commit left beside the committed parts.
        self.drop_parts_but(self.generation);
        let mut bulk = cp.counter.take_bulk();
        let written = self.write_parts(generation, &mut bulk);
        // Made the value sled stores before the transaction, so that the
        // encoded bytes are not held twice while it runs.
        let cp_value = sled::IVec::from(self.sealed(encode(cp)));
        cp.counter.put_bulk(bulk);
        let parts = written?;
        let head = self.sealed(encode(&PartsHead { generation, parts }));
        let report_values: Vec<([u8; 8], Vec<u8>)> = reports
            .iter()
            .map(|r| {
                let json = serde_json::to_vec(r).expect("reports serialize");
                (r.seq().to_be_bytes(), encode(&json))
            })
            .collect();
        self.transact(Some((&cp_value, Some(&head))), &report_values)?;
        // From here the head may name this generation (even if the flush
        // fails): its file is never removed before a later one is named.
        self.generation = generation;
        cp.counter.committed();
        self.db.flush().map_err(|e| self.sled_err(e))?;
        self.drop_parts_but(generation);
        if !self.overlay.is_empty() && self.overlay.len() >= self.write_at {
            // A commit for reports can come while the last histories are
            // still being written (one for histories waits for them:
            // `writing_histories`); it waits too, rarely and briefly, so
            // that after any commit at most `WRITE_HISTORIES_AT` wait.
            self.land()?;
            self.launch();
        }
        Ok(())
    }
}
