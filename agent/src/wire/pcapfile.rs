//! Capture files: pcap in either byte order with micro- or nanosecond
//! stamps, and pcapng. Timestamps are in microseconds (SPEC §1: all
//! comparisons are on microseconds); nanosecond stamps are scaled down as
//! libpcap does, truncating.
//!
//! libpcap (the `pcap` crate) opens every file and reads pcapng. The
//! records of a pcap file are read here, a megabyte at a time, each
//! handed out as a slice of that buffer: libpcap reads each record with
//! two `fread`s through a 4 KiB stdio buffer, a copy and a read(2) per 4
//! KiB, which were a third of the reader thread on a crowd's 6.5 GB
//! (issue 20, perf). The header is libpcap's to judge (and its link type
//! to map), and a record is refused as libpcap refuses it.
//!
//! `sniff` reads the first bytes to say what the file is, for `inspect` and
//! for clear errors: libpcap's own messages do not name the format.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Little,
    Big,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Micro,
    Nano,
    /// pcapng: each interface says its own; libpcap converts.
    PerInterface,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    pub format: Format,
    pub byte_order: ByteOrder,
    pub resolution: Resolution,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = match self.format {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        };
        let order = match self.byte_order {
            ByteOrder::Little => "little-endian",
            ByteOrder::Big => "big-endian",
        };
        let res = match self.resolution {
            Resolution::Micro => ", microsecond",
            Resolution::Nano => ", nanosecond",
            Resolution::PerInterface => "",
        };
        write!(f, "{format}, {order}{res}")
    }
}

impl FileKind {
    pub fn format_name(&self) -> &'static str {
        match self.format {
            Format::Pcap => "pcap",
            Format::PcapNg => "pcapng",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file (starts with {magic:02x?})")]
    NotACapture { path: PathBuf, magic: Vec<u8> },
    #[error("{path}: {message}")]
    Pcap { path: PathBuf, message: String },
    #[error("{path}: after {frames} frames: {message}")]
    Read {
        path: PathBuf,
        frames: u64,
        message: String,
    },
}

/// Says what a capture file is from its first 12 bytes.
pub fn sniff(path: &Path) -> Result<FileKind, CaptureError> {
    let io = |source| CaptureError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(12);
    File::open(path)
        .map_err(io)?
        .take(12)
        .read_to_end(&mut head)
        .map_err(io)?;
    let kind = |format, byte_order, resolution| FileKind {
        format,
        byte_order,
        resolution,
    };
    let magic = head.get(..4);
    Ok(match magic {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => kind(Format::Pcap, ByteOrder::Little, Resolution::Micro),
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => kind(Format::Pcap, ByteOrder::Big, Resolution::Micro),
        Some([0x4d, 0x3c, 0xb2, 0xa1]) => kind(Format::Pcap, ByteOrder::Little, Resolution::Nano),
        Some([0xa1, 0xb2, 0x3c, 0x4d]) => kind(Format::Pcap, ByteOrder::Big, Resolution::Nano),
        Some([0x0a, 0x0d, 0x0d, 0x0a]) if head.len() >= 12 => {
            let order = if head[8..12] == [0x4d, 0x3c, 0x2b, 0x1a] {
                ByteOrder::Little
            } else {
                ByteOrder::Big
            };
            kind(Format::PcapNg, order, Resolution::PerInterface)
        }
        _ => {
            return Err(CaptureError::NotACapture {
                path: path.to_path_buf(),
                magic: head.iter().take(4).copied().collect(),
            })
        }
    })
}

/// One record: capture timestamp in µs, the captured bytes and the
/// original length on the air.
pub struct Record<'a> {
    pub ts_us: i64,
    pub data: &'a [u8],
    pub orig_len: u32,
}

/// An open capture file.
pub struct CaptureFile {
    path: PathBuf,
    kind: FileKind,
    /// libpcap's, which reads a pcapng file's records.
    cap: pcap::Capture<pcap::Offline>,
    /// A pcap file's records, read here.
    records: Option<PcapRecords>,
    frames: u64,
}

/// Bytes of a pcap file read at a time (more when a record is larger).
/// The buffer is resident all run: a megabyte read no faster than a
/// quarter, and was 0.75 MB more of a crowd's peak RSS (issue 20).
const READ_BYTES: usize = 256 << 10;
/// Records `CaptureFile::upcoming` looks ahead: enough for a cache miss
/// each to be done by the time its record is read.
const UPCOMING: usize = 4;
/// The largest record libpcap reads (`MAXIMUM_SNAPLEN`).
const MAX_RECORD: usize = 262_144;

/// The records of a pcap file, after its 24-byte header.
struct PcapRecords {
    file: File,
    buf: Vec<u8>,
    /// Unread bytes are `buf[at..end]`.
    at: usize,
    end: usize,
    /// `upcoming`'s place: `buf[at..ahead]` holds `ahead_n` whole records.
    ahead: usize,
    ahead_n: usize,
    big_endian: bool,
    nano: bool,
    /// The header's snapshot length: longer records are cut to it, as
    /// libpcap cuts them.
    snaplen: usize,
}

impl PcapRecords {
    fn open(path: &Path, kind: FileKind) -> std::io::Result<PcapRecords> {
        let mut file = File::open(path)?;
        let mut head = [0u8; 24];
        file.read_exact(&mut head)?;
        let big_endian = kind.byte_order == ByteOrder::Big;
        let snaplen = match u32_in(&head, 16, big_endian) as usize {
            0 => MAX_RECORD,
            n => n.min(MAX_RECORD),
        };
        Ok(PcapRecords {
            file,
            buf: vec![0; READ_BYTES],
            at: 0,
            end: 0,
            ahead: 0,
            ahead_n: 0,
            big_endian,
            nano: kind.resolution == Resolution::Nano,
            snaplen,
        })
    }

    fn u32_at(&self, i: usize) -> u32 {
        u32_in(&self.buf, i, self.big_endian)
    }

    /// At least `n` unread bytes in `buf`, unless the file ends first
    /// (then as many as are left): the unread ones moved to the front,
    /// and the rest of the buffer read into.
    fn fill(&mut self, n: usize) -> std::io::Result<()> {
        if self.end - self.at >= n {
            return Ok(());
        }
        self.buf.copy_within(self.at..self.end, 0);
        self.end -= self.at;
        self.ahead -= self.at;
        self.at = 0;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.end < n {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => break,
                Ok(got) => self.end += got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Hands `f` the bytes of records not read yet, up to `UPCOMING`
    /// ahead of `next` and as far as the buffer holds them whole, each
    /// once.
    fn upcoming(&mut self, mut f: impl FnMut(&[u8])) {
        while self.ahead_n < UPCOMING && self.end - self.ahead >= 16 {
            let caplen = self.u32_at(self.ahead + 8) as usize;
            let from = self.ahead + 16;
            if caplen > MAX_RECORD || self.end - from < caplen {
                return;
            }
            f(&self.buf[from..from + caplen.min(self.snaplen)]);
            self.ahead = from + caplen;
            self.ahead_n += 1;
        }
    }

    /// The next record, `None` at the end, or what is wrong with it.
    fn next(&mut self) -> Option<Result<Record<'_>, String>> {
        if let Err(e) = self.fill(16) {
            return Some(Err(e.to_string()));
        }
        match self.end - self.at {
            0 => return None,
            n if n < 16 => {
                return Some(Err(format!(
                    "truncated dump file; tried to read 16 header bytes, only got {n}"
                )))
            }
            _ => {}
        }
        let h = self.at;
        let (sec, frac) = (self.u32_at(h), self.u32_at(h + 4));
        let (caplen, orig_len) = (self.u32_at(h + 8) as usize, self.u32_at(h + 12));
        if caplen > MAX_RECORD {
            return Some(Err(format!(
                "invalid packet capture length {caplen}, bigger than maximum of {MAX_RECORD}"
            )));
        }
        if let Err(e) = self.fill(16 + caplen) {
            return Some(Err(e.to_string()));
        }
        let have = self.end - self.at - 16;
        if have < caplen {
            return Some(Err(format!(
                "truncated dump file; tried to read {caplen} captured bytes, only got {have}"
            )));
        }
        let from = self.at + 16;
        self.at = from + caplen;
        match self.ahead_n.checked_sub(1) {
            Some(n) => self.ahead_n = n,
            None => self.ahead = self.at,
        }
        let frac_us = if self.nano { frac / 1000 } else { frac };
        Some(Ok(Record {
            ts_us: i64::from(sec) * 1_000_000 + i64::from(frac_us),
            data: &self.buf[from..from + caplen.min(self.snaplen)],
            orig_len,
        }))
    }
}

/// The u32 at `i` of `bytes`, in the file's byte order.
fn u32_in(bytes: &[u8], i: usize, big_endian: bool) -> u32 {
    let b: [u8; 4] = bytes[i..i + 4].try_into().expect("4 bytes");
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

impl CaptureFile {
    pub fn open(path: &Path) -> Result<CaptureFile, CaptureError> {
        let kind = sniff(path)?;
        let cap =
            pcap::Capture::from_file_with_precision(path, pcap::Precision::Micro).map_err(|e| {
                CaptureError::Pcap {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                }
            })?;
        let records = match kind.format {
            Format::Pcap => {
                Some(
                    PcapRecords::open(path, kind).map_err(|source| CaptureError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?,
                )
            }
            Format::PcapNg => None,
        };
        Ok(CaptureFile {
            path: path.to_path_buf(),
            kind,
            cap,
            records,
            frames: 0,
        })
    }

    pub fn kind(&self) -> FileKind {
        self.kind
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The DLT number of the file (its first interface for pcapng).
    pub fn dlt(&self) -> i32 {
        self.cap.get_datalink().0
    }

    /// Records read so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Hands `f` the captured bytes of the next few records, each once,
    /// before they are read, so that the memory they lead to can be asked
    /// for early (`Detector::prefetch`). Only those of a pcap file, and
    /// only those already in its buffer.
    pub fn upcoming(&mut self, f: impl FnMut(&[u8])) {
        if let Some(records) = &mut self.records {
            records.upcoming(f);
        }
    }

    /// The next record; `None` at the end; an error for a damaged file (a
    /// record cut short, a bad block), naming the file and how far it got.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
        if let Some(records) = &mut self.records {
            return match records.next()? {
                Ok(r) => {
                    self.frames += 1;
                    Some(Ok(r))
                }
                Err(message) => Some(Err(CaptureError::Read {
                    path: self.path.clone(),
                    frames: self.frames,
                    message,
                })),
            };
        }
        match self.cap.next_packet() {
            Ok(p) => {
                self.frames += 1;
                let ts = p.header.ts;
                // time_t and suseconds_t are 32 bits on some ARM targets.
                #[allow(clippy::useless_conversion)]
                Some(Ok(Record {
                    ts_us: i64::from(ts.tv_sec) * 1_000_000 + i64::from(ts.tv_usec),
                    data: p.data,
                    orig_len: p.header.len,
                }))
            }
            Err(pcap::Error::NoMorePackets) => None,
            Err(e) => Some(Err(CaptureError::Read {
                path: self.path.clone(),
                frames: self.frames,
                message: e.to_string(),
            })),
        }
    }
}

/// Writes pcap files through libpcap (for `simulate` and tests).
pub struct PcapWriter {
    file: pcap::Savefile,
    path: PathBuf,
}

impl PcapWriter {
    pub fn create(path: &Path, dlt: i32) -> Result<PcapWriter, CaptureError> {
        let err = |e: pcap::Error| CaptureError::Pcap {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let dead = pcap::Capture::dead_with_precision(pcap::Linktype(dlt), pcap::Precision::Micro)
            .map_err(err)?;
        let file = dead.savefile(path).map_err(err)?;
        Ok(PcapWriter {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes one record; `orig_len` larger than `data` marks it cut by snaplen.
    pub fn write(&mut self, ts_us: i64, data: &[u8], orig_len: u32) {
        let header = pcap::PacketHeader {
            ts: libc_timeval(ts_us),
            caplen: data.len() as u32,
            len: orig_len,
        };
        self.file.write(&pcap::Packet::new(&header, data));
    }

    pub fn finish(mut self) -> Result<(), CaptureError> {
        self.file.flush().map_err(|e| CaptureError::Pcap {
            path: self.path.clone(),
            message: e.to_string(),
        })
    }
}

fn libc_timeval(ts_us: i64) -> libc::timeval {
    libc::timeval {
        tv_sec: ts_us.div_euclid(1_000_000) as _,
        tv_usec: ts_us.rem_euclid(1_000_000) as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record: its stamp in µs, bytes and length on the air.
    type Rec = (i64, Vec<u8>, u32);

    /// Every record as libpcap reads it.
    fn by_libpcap(path: &Path) -> Result<Vec<Rec>, String> {
        let mut cap = pcap::Capture::from_file_with_precision(path, pcap::Precision::Micro)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        loop {
            match cap.next_packet() {
                #[allow(clippy::useless_conversion)]
                Ok(p) => out.push((
                    i64::from(p.header.ts.tv_sec) * 1_000_000 + i64::from(p.header.ts.tv_usec),
                    p.data.to_vec(),
                    p.header.len,
                )),
                Err(pcap::Error::NoMorePackets) => return Ok(out),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Every record as `CaptureFile` reads it, and its error if any.
    fn by_us(path: &Path) -> (Vec<Rec>, Option<String>) {
        let mut cap = CaptureFile::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(r) = cap.next_record() {
            match r {
                Ok(r) => out.push((r.ts_us, r.data.to_vec(), r.orig_len)),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
        (out, None)
    }

    /// `upcoming` hands over the bytes of records still to be read, in
    /// order and each at most once, across reads of the buffer, and
    /// nearly all of them; the records read are the same as without it.
    #[test]
    fn upcoming_records_are_those_read_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pcap");
        let mut w = PcapWriter::create(&path, 127).unwrap();
        let n = 20_000u32;
        for i in 0..n {
            let mut data = i.to_le_bytes().to_vec();
            data.resize(50 + (i % 200) as usize, 0xab);
            w.write(
                1_700_000_000_000_000 + i64::from(i),
                &data,
                data.len() as u32,
            );
        }
        w.finish().unwrap();
        let mut cap = CaptureFile::open(&path).unwrap();
        let (mut handed, mut read, mut early) = (std::collections::VecDeque::new(), Vec::new(), 0);
        loop {
            cap.upcoming(|d| handed.push_back(d.to_vec()));
            let Some(r) = cap.next_record() else { break };
            let r = r.unwrap();
            if handed.front().is_some_and(|h| h == r.data) {
                handed.pop_front();
                early += 1;
            }
            read.push((r.ts_us, r.data.to_vec(), r.orig_len));
        }
        assert!(
            handed.is_empty(),
            "{} handed over and never read",
            handed.len()
        );
        assert_eq!(read, by_libpcap(&path).unwrap());
        assert!(
            read.len() * 100 > 2 * READ_BYTES,
            "records span several reads"
        );
        assert!(
            early > n as usize * 99 / 100,
            "{early} of {n} handed over early"
        );
    }

    /// Records of every length up to well past a read of the buffer, cut
    /// by snaplen or not, read as libpcap reads them; cut short, the file
    /// is an error naming it and how far it got.
    #[test]
    fn pcap_records_are_read_as_libpcap_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pcap");
        let mut w = PcapWriter::create(&path, 127).unwrap();
        let mut total = 0;
        for i in 0..6_000u32 {
            // One as large as libpcap reads, past the buffer's size.
            let len = if i == 3_000 {
                MAX_RECORD
            } else {
                (i * 37 % 1_500) as usize
            };
            let data: Vec<u8> = (0..len).map(|b| (b as u32 ^ i) as u8).collect();
            w.write(
                1_700_000_000_000_000 + i64::from(i) * 1_234_567,
                &data,
                len as u32 + i % 3,
            );
            total += 16 + len;
        }
        w.finish().unwrap();
        assert!(total > 2 * READ_BYTES, "records span several reads");
        let want = by_libpcap(&path).unwrap();
        assert_eq!(want.len(), 6_000);
        assert_eq!(by_us(&path), (want.clone(), None));
        // Cut inside the last record, then inside its header.
        let bytes = std::fs::read(&path).unwrap();
        for cut in [3, 20] {
            let short = dir.path().join(format!("short-{cut}.pcap"));
            std::fs::write(
                &short,
                &bytes[..bytes.len() - want[5_999].1.len() - 16 + cut],
            )
            .unwrap();
            let (got, e) = by_us(&short);
            assert_eq!(got, want[..5_999]);
            let e = e.expect("an error");
            assert!(
                e.contains("short-") && e.contains("after 5999 frames") && e.contains("truncated"),
                "{e}"
            );
            assert!(by_libpcap(&short).is_err());
        }
    }

    /// A big-endian file with nanosecond stamps: scaled down, truncating.
    #[test]
    fn big_endian_nanosecond_pcap_is_read_as_libpcap_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("be.pcap");
        let mut bytes = vec![0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4];
        bytes.extend([0u8; 8]);
        bytes.extend(65_535u32.to_be_bytes());
        bytes.extend(127u32.to_be_bytes());
        for (i, frac) in [0u32, 999, 1_000, 999_999_999].into_iter().enumerate() {
            let data = vec![i as u8; 10 + i];
            bytes.extend((1_700_000_000 + i as u32).to_be_bytes());
            bytes.extend(frac.to_be_bytes());
            bytes.extend((data.len() as u32).to_be_bytes());
            bytes.extend((data.len() as u32 + 5).to_be_bytes());
            bytes.extend(&data);
        }
        std::fs::write(&path, bytes).unwrap();
        let want = by_libpcap(&path).unwrap();
        assert_eq!(want[3].0, 1_700_000_003 * 1_000_000 + 999_999);
        assert_eq!(by_us(&path), (want, None));
    }
}
