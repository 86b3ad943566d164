//! Devices spilled out of memory (issue 20): a scratch file beside the
//! state, where the counter puts the devices over its memory budget until
//! a window or a frame needs them again.
//!
//! Scratch, not state: the checkpoint copies every spilled device into
//! its parts, so a restart never reads this file; each process removes
//! what an earlier one left and seals its records under a key of its own,
//! drawn at start and never written anywhere. What a crash leaves here is
//! ciphertext nobody can open, whatever the privacy mode.
//!
//! Records are appended to segments of `SEGMENT_BYTES`. Every record is
//! read back exactly once (the counter takes a spilled device back to
//! count or drop it, or a key rotation clears them all), so a segment
//! whose records were all taken is deleted: the file follows the devices
//! spilled now, not all those ever spilled. In memory each spilled device
//! costs its index entry (64 bits of its id and its place, 16 bytes:
//! `spill_index`) instead of the device (about 125).
//!
//! A record: a little-endian u32 length, the low half of the id, the
//! device's bytes, then a 32-bit check of the id and those bytes
//! (`Spill::check`: a record of another id of the same key is told
//! apart; a damaged one is refused).
//! Segments are encrypted with ChaCha8 under the process's key, the
//! keystream's position being the byte's offset, as blocks are written;
//! a record is decrypted alone by seeking there. The nonce is the
//! segment's serial, never reused in a process (numbers, which name the
//! files, wrap). Sealing each record with
//! ChaCha20-Poly1305 was a third of the counting thread in a crowd under
//! `loyalty` (issue 20, perf): a key set up and a tag per 60 bytes.
//! Confidentiality is what scratch needs; the check catches damage. Eight
//! rounds, not twenty: the best known attack reaches seven, the key is
//! drawn at start and never leaves the process, and ChaCha20's keystream
//! was 5.5 % of the counting thread in a crowd under `loyalty` (issue 20,
//! perf).

use std::collections::BTreeMap;
use std::fs::File;
use std::hash::BuildHasher;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha8;

use super::spill_index::{self, Index, Slot};
use crate::count::Spilled;
use crate::privacy::DeviceId;

/// Segments are closed at this size; a segment is deleted once all its
/// records are taken.
const SEGMENT_BYTES: u64 = if cfg!(test) { 64 << 10 } else { 8 << 20 };
/// Appended records are written to the file in blocks of this size; the
/// block being filled is read from memory.
const BLOCK_BYTES: usize = if cfg!(test) { 4 << 10 } else { 256 << 10 };

/// Bytes a record's first read asks for: its length and, for a device of
/// a session or two, the rest; a longer record takes a second read.
const FIRST_READ: usize = 256;

/// Where a record is, and what the counter reads without it (`put`).
/// Eight bytes, as before inert records: a crowd spills hundreds of
/// thousands.
#[derive(Debug, Clone, Copy)]
struct Loc {
    /// The segment's number (its file); numbers wrap, skipping live ones.
    segment: u16,
    /// The device's last window, modulo 2^16 (`Spilled::last_window`).
    last_window: u16,
    /// Offset in the segment (below 2^23), and `INERT` and `COUNTED`.
    offset: u32,
}

const INERT: u32 = 1 << 31;
/// An inert device its last window counts (`Spilled::counted`).
const COUNTED: u32 = 1 << 30;
const FLAGS: u32 = INERT | COUNTED;
/// Records start below `SEGMENT_BYTES` (`put`): clear of the flags.
const _: () = assert!(SEGMENT_BYTES <= COUNTED as u64);
/// `Spill::check`'s seed: any, fixed.
const CHECK_SEED: u64 = 0x5350_494c_4c5f_4348;

impl Loc {
    /// The device's last window, read as the one within 2^15 windows of
    /// `near`.
    fn last_window_near(&self, near: i64) -> i64 {
        near + i64::from(self.last_window.wrapping_sub(near as u16) as i16)
    }
}

/// Offsets are below `SEGMENT_BYTES` plus a record: never all ones.
impl Slot for Loc {
    const GONE: Loc = Loc {
        segment: 0,
        last_window: 0,
        offset: u32::MAX,
    };
    fn is_gone(&self) -> bool {
        self.offset == u32::MAX
    }
}

#[derive(Debug)]
struct Segment {
    file: File,
    /// Records not yet taken.
    live: u32,
    /// The segment's keystream (nonce): unlike its number, never reused.
    serial: u64,
}

pub(super) struct Spill {
    dir: PathBuf,
    key: [u8; 32],
    index: Index<Loc>,
    segments: BTreeMap<u16, Segment>,
    /// The segment being appended to: its number and bytes so far.
    current: Option<(u16, u64)>,
    /// Appended bytes of the current segment not yet written to its file
    /// (they start at `current`'s length minus their own).
    block: Vec<u8>,
    next_segment: u16,
    next_serial: u64,
}

impl Spill {
    /// Scratch in `dir`; whatever an earlier process left there goes.
    pub(super) fn new(dir: PathBuf) -> Spill {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            // Only tidying: this process writes segments of its own names
            // over whatever is left (sealed under a key now gone).
            Err(e) => tracing::warn!(dir = %dir.display(), "cannot remove an earlier spill: {e}"),
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source is available");
        Spill {
            dir,
            key,
            index: Index::default(),
            segments: BTreeMap::new(),
            current: None,
            block: Vec::new(),
            next_segment: 0,
            next_serial: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes the segments hold on disk and in the block being filled.
    pub(super) fn bytes(&self) -> u64 {
        let closed: u64 = self
            .segments
            .iter()
            .filter(|(&n, _)| self.current.is_none_or(|(c, _)| c != n))
            .map(|(_, s)| s.file.metadata().map_or(0, |m| m.len()))
            .sum();
        closed + self.current.map_or(0, |(_, len)| len)
    }

    /// Every spilled device's id: the index holds only 64 bits of
    /// each, so the records are read for the rest.
    pub(super) fn ids(&self) -> std::io::Result<Vec<DeviceId>> {
        self.records().map(|r| r.map(|(id, ..)| id)).collect()
    }

    fn path(&self, segment: u16) -> PathBuf {
        self.dir.join(format!("{segment}.spill"))
    }

    /// Encrypts or decrypts `bytes`, which are at `offset` in the segment
    /// of keystream `serial`.
    fn apply_keystream(&self, serial: u64, offset: u64, bytes: &mut [u8]) {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&serial.to_le_bytes());
        let mut cipher = ChaCha8::new(&self.key.into(), &nonce.into());
        cipher.seek(offset);
        cipher.apply_keystream(bytes);
    }

    /// A check of a record and its id, against damage. Only this process
    /// reads the spill back (its key dies with it), so the hash need not
    /// be stable beyond it: foldhash, a few words at a time, where a CRC
    /// went a byte at a time over records too short for its wide path, 3 %
    /// of a crowd's counting thread under `loyalty` (issue 20, perf).
    fn check(id: DeviceId, payload: &[u8]) -> u32 {
        foldhash::quality::FixedState::with_seed(CHECK_SEED).hash_one((id.0, payload)) as u32
    }

    /// Appends `id`'s record, unless a spilled device holds its key
    /// (`spill_index`): then it returns false and nothing changes.
    /// `how`: what is read of it without its record
    /// (`HistoryStore::spill`).
    pub(super) fn put(
        &mut self,
        id: DeviceId,
        payload: &[u8],
        how: Spilled,
    ) -> std::io::Result<bool> {
        let (segment, len) = match self.current {
            Some((n, len)) if len < SEGMENT_BYTES => (n, len),
            _ => self.start_segment()?,
        };
        let flags = match how {
            Spilled { inert: false, .. } => 0,
            Spilled { counted: true, .. } => INERT | COUNTED,
            Spilled { .. } => INERT,
        };
        let loc = Loc {
            segment,
            last_window: how.last_window as u16,
            offset: len as u32 | flags,
        };
        if !self.index.insert_new(id, loc) {
            return Ok(false);
        }
        // The id's low half: with the key, it gives the id back.
        self.block
            .extend_from_slice(&(8 + payload.len() as u32).to_le_bytes());
        self.block.extend_from_slice(&(id.0 as u64).to_le_bytes());
        self.block.extend_from_slice(payload);
        self.block
            .extend_from_slice(&Self::check(id, payload).to_le_bytes());
        self.current = Some((segment, len + 16 + payload.len() as u64));
        self.segments
            .get_mut(&segment)
            .expect("the current segment is open")
            .live += 1;
        if self.block.len() >= BLOCK_BYTES {
            self.write_block()?;
        }
        Ok(true)
    }

    /// Hints the CPU to load what `take` first reads for `id`.
    pub(super) fn prefetch(&self, id: DeviceId) {
        self.index.prefetch(id);
    }

    /// A spilled device's last window, read back as the one within 2^15
    /// windows of `near`, and whether it is inert.
    pub(super) fn last_window(&self, id: DeviceId, near: i64) -> Option<(i64, bool)> {
        let loc = self.index.get(id)?;
        Some((loc.last_window_near(near), loc.offset & INERT != 0))
    }

    /// An inert device's last window, read back as the one within 2^15
    /// windows of `near`.
    #[cfg(test)]
    fn inert(&self, id: DeviceId, near: i64) -> Option<i64> {
        self.last_window(id, near)
            .and_then(|(w, inert)| inert.then_some(w))
    }

    /// Drops unread every inert device whose last window is before `nw`,
    /// in one pass over the index: a crowd forgets 200,000 a window, whose
    /// ids were a list as long (issue 20, heaptrack).
    pub(super) fn forget_inert_before(&mut self, nw: i64) -> std::io::Result<()> {
        let mut freed: BTreeMap<u16, u32> = BTreeMap::new();
        self.index.retain(|loc| {
            let keep = loc.offset & INERT == 0 || loc.last_window_near(nw) >= nw;
            if !keep {
                *freed.entry(loc.segment).or_default() += 1;
            }
            keep
        });
        for (segment, n) in freed {
            self.release(segment, n)?;
        }
        Ok(())
    }

    /// Takes `id`'s record out, if it was spilled, and whether it was
    /// spilled `Inert::counted`.
    pub(super) fn take(&mut self, id: DeviceId) -> std::io::Result<Option<(Vec<u8>, bool)>> {
        let Some((place, loc)) = self.index.place(id) else {
            return Ok(None);
        };
        let (found, payload) = self.read(spill_index::key(id), loc)?;
        if found != id {
            return Ok(None); // another device's, of the same key
        }
        self.index.remove_at(id, place);
        self.release(loc.segment, 1)?;
        Ok(Some((payload, loc.offset & COUNTED != 0)))
    }

    /// Every record, left spilled (the checkpoint copies them), with its
    /// id and whether its window counts it (`Inert::counted`), a segment
    /// at a time in file order: a crowd's checkpoint copies hundreds of
    /// thousands, and two reads and two keystreams each were a fifth of
    /// the counting thread (issue 20, perf). Each segment's records are
    /// read through a window of `COPY_BYTES`, decrypted once.
    pub(super) fn records(
        &self,
    ) -> impl Iterator<Item = std::io::Result<(DeviceId, Vec<u8>, bool)>> + '_ {
        self.segments.keys().flat_map(move |&segment| {
            let mut locs: Vec<(u32, u64)> = self
                .index
                .iter()
                .filter(|(_, l)| l.segment == segment)
                .map(|(key, l)| (l.offset, key))
                .collect();
            locs.sort_unstable_by_key(|&(offset, _)| offset & !FLAGS);
            let mut window = Window::default();
            locs.into_iter().map(move |(offset, key)| {
                let loc = Loc {
                    segment,
                    last_window: 0,
                    offset: offset & !FLAGS,
                };
                let (id, record) = window.read(self, key, loc)?;
                Ok((id, record, offset & COUNTED != 0))
            })
        })
    }

    /// Whether `offset` of `segment` is still in the block being filled.
    fn unwritten(&self, segment: u16, offset: u64) -> Option<usize> {
        match self.current {
            Some((n, len)) if n == segment => {
                let from = len - self.block.len() as u64;
                (offset >= from).then(|| (offset - from) as usize)
            }
            _ => None,
        }
    }

    /// Forgets every record (a key rotation: those ids are never asked for
    /// again) and deletes the segments.
    pub(super) fn clear(&mut self) -> std::io::Result<()> {
        self.index.clear();
        self.block.clear();
        self.current = None;
        for n in std::mem::take(&mut self.segments).into_keys() {
            std::fs::remove_file(self.path(n))?;
        }
        Ok(())
    }

    fn damaged(&self, loc: Loc, what: &str) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: the record at offset {} {what}",
                self.path(loc.segment).display(),
                loc.offset & !FLAGS
            ),
        )
    }

    /// The id (of `key`) and payload of the record at `loc`.
    fn read(&self, key: u64, loc: Loc) -> std::io::Result<(DeviceId, Vec<u8>)> {
        let offset = u64::from(loc.offset & !FLAGS);
        let bytes = if let Some(at) = self.unwritten(loc.segment, offset) {
            // Still in the block being filled, in the clear.
            self.in_block(loc, at)?
        } else {
            let segment = self
                .segments
                .get(&loc.segment)
                .ok_or_else(|| self.damaged(loc, "is in a segment already removed"))?;
            let (file, serial) = (&segment.file, segment.serial);
            // Most records fit the first read: one read and one keystream
            // where the length and the rest were two of each (reads and
            // keystreams of records were 9 % of a crowd's counting thread
            // under `loyalty`; issue 20, perf).
            let mut bytes = vec![0; FIRST_READ];
            let mut got = 0;
            while got < FIRST_READ {
                match file.read_at(&mut bytes[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if got < 4 {
                return Err(self.damaged(loc, "is cut short"));
            }
            bytes.truncate(got);
            self.apply_keystream(serial, offset, &mut bytes);
            let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            if len as u64 > SEGMENT_BYTES {
                return Err(self.damaged(loc, "claims more bytes than a segment holds"));
            }
            let end = 4 + len + 4;
            if end > got {
                bytes.resize(end, 0);
                let rest = &mut bytes[got..];
                file.read_exact_at(rest, offset + got as u64)?;
                self.apply_keystream(serial, offset + got as u64, rest);
            }
            bytes.truncate(end);
            bytes.drain(..4);
            bytes
        };
        self.checked(key, loc, bytes)
    }

    /// A record's payload and check, from the block being filled.
    fn in_block(&self, loc: Loc, at: usize) -> std::io::Result<Vec<u8>> {
        let len = self
            .block
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| self.damaged(loc, "is cut short"))?;
        Ok(self
            .block
            .get(at + 4..at + 8 + len)
            .ok_or_else(|| self.damaged(loc, "is cut short"))?
            .to_vec())
    }

    /// The id and payload of `bytes` (the id's low half, payload and
    /// check) found by `key`, if the check holds.
    fn checked(
        &self,
        key: u64,
        loc: Loc,
        mut bytes: Vec<u8>,
    ) -> std::io::Result<(DeviceId, Vec<u8>)> {
        if bytes.len() < 12 {
            return Err(self.damaged(loc, "is cut short"));
        }
        let end = bytes.len() - 4;
        let check = u32::from_le_bytes(bytes[end..].try_into().expect("4 bytes"));
        let low = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let id = spill_index::id_of(key, low);
        bytes.truncate(end);
        bytes.drain(..8);
        if check != Self::check(id, &bytes) {
            return Err(self.damaged(loc, "does not open (damaged)"));
        }
        Ok((id, bytes))
    }

    fn start_segment(&mut self) -> std::io::Result<(u16, u64)> {
        self.write_block()?;
        if self.segments.is_empty() {
            std::fs::create_dir_all(&self.dir)?;
        }
        if self.segments.len() > usize::from(u16::MAX) {
            return Err(std::io::Error::other(
                "every spill segment number is in use (512 GiB spilled)",
            ));
        }
        let mut n = self.next_segment;
        while self.segments.contains_key(&n) {
            n = n.wrapping_add(1);
        }
        self.next_segment = n.wrapping_add(1);
        let file = create(&self.path(n))?;
        let serial = self.next_serial;
        self.next_serial += 1;
        self.segments.insert(
            n,
            Segment {
                file,
                live: 0,
                serial,
            },
        );
        if let Some((old, _)) = self.current.replace((n, 0)) {
            self.remove_if_empty(old)?;
        }
        Ok((n, 0))
    }

    fn write_block(&mut self) -> std::io::Result<()> {
        if let Some((n, len)) = self.current {
            if !self.block.is_empty() {
                let at = len - self.block.len() as u64;
                let mut block = std::mem::take(&mut self.block);
                let segment = &self.segments[&n];
                self.apply_keystream(segment.serial, at, &mut block);
                let written = segment.file.write_all_at(&block, at);
                if written.is_err() {
                    // Kept, in the clear, for the reads that still need it.
                    self.apply_keystream(segment.serial, at, &mut block);
                    self.block = block;
                    return written;
                }
                block.clear();
                self.block = block;
            }
        }
        Ok(())
    }

    /// `n` records of `segment` were taken.
    fn release(&mut self, segment: u16, n: u32) -> std::io::Result<()> {
        if let Some(s) = self.segments.get_mut(&segment) {
            s.live -= n;
        }
        if self.current.is_none_or(|(c, _)| c != segment) {
            self.remove_if_empty(segment)?;
        } else if self.segments.get(&segment).is_some_and(|s| s.live == 0) {
            // The current segment emptied: removed rather than grown, and
            // a new one (a new keystream) starts at the next record.
            self.block.clear();
            self.current = None;
            self.remove_if_empty(segment)?;
        }
        Ok(())
    }

    fn remove_if_empty(&mut self, segment: u16) -> std::io::Result<()> {
        if self.segments.get(&segment).is_some_and(|s| s.live == 0) {
            self.segments.remove(&segment);
            std::fs::remove_file(self.path(segment))?;
        }
        Ok(())
    }
}

/// Bytes `records` reads and decrypts at a time.
const COPY_BYTES: usize = if cfg!(test) { 1 << 10 } else { 1 << 20 };

/// Decrypted bytes of one segment, from `start` (`Spill::records`).
#[derive(Default)]
struct Window {
    start: u64,
    bytes: Vec<u8>,
}

impl Window {
    /// The record at `loc`, read through the window; records come in file
    /// order, so the window moves forward only.
    fn read(&mut self, spill: &Spill, key: u64, loc: Loc) -> std::io::Result<(DeviceId, Vec<u8>)> {
        let offset = u64::from(loc.offset);
        if let Some(at) = spill.unwritten(loc.segment, offset) {
            return spill.checked(key, loc, spill.in_block(loc, at)?);
        }
        let len = self.get(spill, loc, offset, 4)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if len as u64 > SEGMENT_BYTES {
            return Err(spill.damaged(loc, "claims more bytes than a segment holds"));
        }
        let bytes = self.get(spill, loc, offset + 4, len + 4)?;
        spill.checked(key, loc, bytes)
    }

    /// `n` decrypted bytes at `offset`, moving the window there if needed.
    fn get(&mut self, spill: &Spill, loc: Loc, offset: u64, n: usize) -> std::io::Result<Vec<u8>> {
        let end = self.start + self.bytes.len() as u64;
        if offset < self.start || offset + n as u64 > end {
            let segment = spill
                .segments
                .get(&loc.segment)
                .ok_or_else(|| spill.damaged(loc, "is in a segment already removed"))?;
            // Only what is written: the rest is in the block, in the clear.
            let written = match spill.current {
                Some((c, len)) if c == loc.segment => len - spill.block.len() as u64,
                _ => segment.file.metadata()?.len(),
            };
            let want = (n.max(COPY_BYTES) as u64).min(written.saturating_sub(offset));
            if want < n as u64 {
                return Err(spill.damaged(loc, "is cut short"));
            }
            self.bytes.resize(want as usize, 0);
            segment.file.read_exact_at(&mut self.bytes, offset)?;
            spill.apply_keystream(segment.serial, offset, &mut self.bytes);
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        Ok(self.bytes[at..at + n].to_vec())
    }
}

fn create(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device that is not inert, last detected in window 0.
    const PLAIN: Spilled = Spilled {
        last_window: 0,
        inert: false,
        counted: false,
    };

    #[test]
    fn records_come_back_once_and_emptied_segments_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(dir.path().join("spill"));
        let payload = |i: u128| format!("device {i} ").repeat(1 + (i % 50) as usize);
        let n = 5_000u128;
        for i in 0..n {
            spill
                .put(DeviceId(i), payload(i).as_bytes(), PLAIN)
                .unwrap();
        }
        assert_eq!(spill.len(), n as usize);
        let segments = std::fs::read_dir(dir.path().join("spill")).unwrap().count();
        assert!(segments > 3, "{segments} segments");
        // Nothing of a payload is on disk in the clear.
        for e in std::fs::read_dir(dir.path().join("spill")).unwrap() {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            assert!(!bytes.windows(9).any(|w| w == b"device 17"));
        }
        let copied: Vec<_> = spill.records().map(Result::unwrap).collect();
        assert_eq!(copied.len(), n as usize);
        assert!(copied
            .iter()
            .all(|(id, r, counted)| r.as_slice() == payload(id.0).as_bytes() && !counted));
        for i in (0..n).rev() {
            let (record, counted) = spill.take(DeviceId(i)).unwrap().unwrap();
            assert_eq!(record, payload(i).as_bytes(), "device {i}");
            assert!(!counted);
            assert!(spill.take(DeviceId(i)).unwrap().is_none());
        }
        assert_eq!(spill.len(), 0);
        let left = std::fs::read_dir(dir.path().join("spill")).unwrap().count();
        assert!(left <= 1, "{left} segments left");
        // A new process removes what this one left.
        spill.put(DeviceId(1), b"x", PLAIN).unwrap();
        let again = Spill::new(dir.path().join("spill"));
        assert_eq!(again.len(), 0);
        assert!(!dir.path().join("spill").exists());
    }

    /// An inert device's last window comes back from its 16 bits, across
    /// their wrap; once it is before the first pending window, the device
    /// is forgotten unread, whether its window counts it or not.
    #[test]
    fn inert_devices_are_told_apart_and_forgotten_unread() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(dir.path().join("spill"));
        let inert = |last_window, counted| Spilled {
            last_window,
            inert: true,
            counted,
        };
        spill
            .put(DeviceId(1), b"inert", inert(65_538, true))
            .unwrap();
        let not = Spilled {
            last_window: 65_537,
            ..PLAIN
        };
        spill.put(DeviceId(2), b"not", not).unwrap();
        spill
            .put(DeviceId(3), b"inert too", inert(65_530, false))
            .unwrap();
        spill
            .put(DeviceId(5), b"counted", inert(65_530, true))
            .unwrap();
        spill
            .put(DeviceId(6), b"earlier", inert(65_529, false))
            .unwrap();
        assert_eq!(spill.inert(DeviceId(1), 65_536), Some(65_538));
        assert_eq!(spill.inert(DeviceId(1), 65_540), Some(65_538));
        assert_eq!(spill.inert(DeviceId(3), 65_536), Some(65_530));
        assert_eq!(spill.inert(DeviceId(2), 65_536), None);
        assert_eq!(spill.inert(DeviceId(4), 65_536), None);
        // Every spilled device's last window is read without its record.
        assert_eq!(
            spill.last_window(DeviceId(2), 65_536),
            Some((65_537, false))
        );
        assert_eq!(spill.last_window(DeviceId(3), 65_536), Some((65_530, true)));
        assert_eq!(spill.last_window(DeviceId(4), 65_536), None);
        let counted = |spill: &Spill| {
            let mut ids: Vec<u128> = spill
                .records()
                .map(Result::unwrap)
                .filter(|r| r.2)
                .map(|r| r.0 .0)
                .collect();
            ids.sort_unstable();
            ids
        };
        assert_eq!(counted(&spill), vec![1, 5]);
        spill.forget_inert_before(65_530).unwrap();
        assert_eq!(spill.len(), 4, "device 6 is forgotten");
        assert!(spill.take(DeviceId(6)).unwrap().is_none());
        spill.forget_inert_before(65_531).unwrap();
        assert_eq!(spill.len(), 2, "devices 3 and 5 are forgotten");
        assert!(spill.take(DeviceId(3)).unwrap().is_none());
        assert!(spill.take(DeviceId(5)).unwrap().is_none());
        assert_eq!(counted(&spill), vec![1]);
        assert_eq!(
            spill.take(DeviceId(1)).unwrap().unwrap(),
            (b"inert".to_vec(), true)
        );
        // Taken, the record is no longer inert.
        assert_eq!(spill.inert(DeviceId(1), 65_536), None);
        assert_eq!(
            spill.take(DeviceId(2)).unwrap().unwrap(),
            (b"not".to_vec(), false)
        );
        assert_eq!(spill.len(), 0);
    }

    /// The index holds 64 bits of an id: a device whose key another
    /// spilled device holds is not spilled, and asking for it finds
    /// nothing, whatever the other's record says.
    #[test]
    fn ids_sharing_their_key_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(dir.path().join("spill"));
        let (a, b) = (DeviceId(7 << 64 | 1), DeviceId(4 << 64 | 2));
        assert_eq!(spill_index::key(a), spill_index::key(b));
        assert!(spill.put(a, b"first", PLAIN).unwrap());
        assert!(!spill.put(b, b"second", PLAIN).unwrap());
        assert_eq!(spill.len(), 1);
        assert!(spill.take(b).unwrap().is_none());
        assert_eq!(spill.ids().unwrap(), vec![a]);
        assert_eq!(spill.take(a).unwrap().unwrap(), (b"first".to_vec(), false));
        assert!(
            spill.put(b, b"second", PLAIN).unwrap(),
            "its key is free again"
        );
        assert_eq!(spill.take(b).unwrap().unwrap().0, b"second");
    }

    #[test]
    fn a_damaged_record_is_an_error_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::new(dir.path().join("spill"));
        for i in 0..1_000u128 {
            spill.put(DeviceId(i), &[7u8; 100], PLAIN).unwrap();
        }
        let path = dir.path().join("spill/0.spill");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let e = spill.take(DeviceId(0)).unwrap_err().to_string();
        assert!(e.contains("0.spill") && e.contains("does not open"), "{e}");
    }
}
