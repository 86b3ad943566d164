//! Capture files, read through libpcap (the `pcap` crate): pcap in either
//! byte order with micro- or nanosecond stamps, and pcapng. libpcap hands
//! out each record as a slice of its own buffer, so reading copies nothing.
//! Timestamps are asked for in microseconds (SPEC §1: all comparisons are on
//! microseconds); libpcap scales nanosecond files down.
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
    cap: pcap::Capture<pcap::Offline>,
    frames: u64,
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
        Ok(CaptureFile {
            path: path.to_path_buf(),
            kind,
            cap,
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

    /// The next record; `None` at the end; an error for a damaged file (a
    /// record cut short, a bad block), naming the file and how far it got.
    pub fn next_record(&mut self) -> Option<Result<Record<'_>, CaptureError>> {
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
