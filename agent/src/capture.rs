//! Capture on its own thread: libpcap blocks, so it never runs on the async
//! runtime. The thread parses, filters and hashes (`detect`), and sends
//! batches of `Detection`s (never a MAC) over a bounded channel; a full
//! channel slows capture down rather than growing memory.
//!
//! Sources: a monitor-mode interface (read timeout 250 ms, so the stop flag
//! is seen promptly), or a capture file read to its end (what `run` does with
//! `[capture] file`, the way to exercise the live path without a Wi-Fi card).
//! `read_file` is the one capture-file reader, used by that source and by
//! `replay`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::detect::{Detection, Detector, FrameStats};
use crate::wire::linktype::LinkType;
use crate::wire::pcapfile::{CaptureError, CaptureFile};

const BATCH: usize = 512;

/// Frames `read_file` hands over at once: checkpoints are considered
/// between batches, so a crash re-reads at most what came after one.
/// About five batches are held at once (being read, two sent, being
/// counted, emptied on their way back), 48 bytes a detection: at 4,096
/// frames they were a megabyte of a crowd's peak RSS, and half as many
/// frames a batch cost no time (issue 20).
pub const BATCH_FRAMES: u64 = 2048;

/// The detections among a file's frames up to `upto` (counted from the
/// file's start), of which `read` were not skipped as already counted.
pub struct Batch {
    pub detections: Vec<Detection>,
    pub read: u64,
    pub upto: u64,
}

/// Reads a capture file in order, past its first `skip` frames (already
/// counted), and hands `sink` the detections of every `BATCH_FRAMES`
/// frames, then of the rest. A batch of nothing but skipped frames is not
/// handed over, so a file's position is never set back. `sink` sees the
/// detector too, for its running totals. `recycled` gives
/// the vector for the next batch (an emptied one, so that memory is not
/// allocated per batch).
///
/// Returns the number of frames in the file when it was read to its end;
/// `None` when `sink` returned false to stop. A read error comes after the
/// batch of the frames before it.
/// Opens a capture file and sets `detector` to its link type: a link
/// type SPEC §1 does not read is an error naming the file.
pub fn open_file(path: &Path, detector: &mut Detector) -> anyhow::Result<CaptureFile> {
    let cap = CaptureFile::open(path)?;
    let link =
        LinkType::from_dlt(cap.dlt()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    detector.set_link(link);
    Ok(cap)
}

pub fn read_file(
    mut cap: CaptureFile,
    detector: &mut Detector,
    skip: u64,
    mut recycled: impl FnMut() -> Vec<Detection>,
    mut sink: impl FnMut(&Detector, Batch) -> bool,
) -> Result<Option<u64>, CaptureError> {
    let mut new_batch = || Batch {
        detections: recycled(),
        read: 0,
        upto: 0,
    };
    let mut batch = new_batch();
    let mut seen = 0u64;
    loop {
        cap.upcoming(|frame| detector.prefetch(frame));
        let rec = match cap.next_record() {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                if batch.read > 0 && !sink(detector, batch) {
                    return Ok(None);
                }
                return Err(e);
            }
        };
        seen += 1;
        if seen > skip {
            batch.read += 1;
            batch.upto = seen;
            if let Some(d) = detector.frame(rec.ts_us, rec.data) {
                batch.detections.push(d);
            }
            if seen.is_multiple_of(BATCH_FRAMES)
                && !sink(detector, std::mem::replace(&mut batch, new_batch()))
            {
                return Ok(None);
            }
        }
    }
    if batch.read > 0 && !sink(detector, batch) {
        return Ok(None);
    }
    Ok(Some(seen))
}

pub enum Source {
    Interface { name: String, snaplen: u32 },
    File { path: PathBuf, skip: u64 },
}

pub enum Event {
    /// Detections, the frames read so far in this source, and the
    /// detector's running totals.
    Batch {
        detections: Vec<Detection>,
        position: u64,
        stats: FrameStats,
    },
    /// The file source reached its end.
    End { position: u64 },
    /// Capture cannot go on; the message says why and what to do.
    Failed(String),
}

/// Hops `interface` over `channels` with `iw` until `stop` is set; a
/// channel the driver refuses is logged once and skipped.
pub fn spawn_hopper(
    interface: String,
    channels: Vec<u32>,
    dwell: std::time::Duration,
    stop: Arc<AtomicBool>,
) {
    if channels.len() < 2 {
        return;
    }
    let _ = std::thread::Builder::new().name("hopper".into()).spawn(move || {
        let mut refused = std::collections::HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            for &ch in &channels {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let ok = std::process::Command::new("iw")
                    .args(["dev", &interface, "set", "channel", &ch.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok && refused.insert(ch) {
                    tracing::warn!(interface = %interface, channel = ch, "the driver refused a channel of the plan; skipping it");
                }
                std::thread::sleep(dwell);
            }
        }
    });
}

/// Runs capture until the source ends, fails, or `stop` is set.
pub fn spawn(
    source: Source,
    mut detector: Detector,
    tx: mpsc::Sender<Event>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let result = match source {
                Source::File { path, skip } => file_loop(&path, skip, &mut detector, &tx, &stop),
                Source::Interface { name, snaplen } => {
                    live_loop(&name, snaplen, &mut detector, &tx, &stop)
                }
            };
            if let Err(message) = result {
                let _ = tx.blocking_send(Event::Failed(message));
            }
        })
        .expect("spawning the capture thread")
}

fn send(tx: &mpsc::Sender<Event>, event: Event) -> Result<(), String> {
    tx.blocking_send(event)
        .map_err(|_| "the agent stopped listening to capture".to_string())
}

fn flush(
    batch: &mut Vec<Detection>,
    position: u64,
    d: &Detector,
    tx: &mpsc::Sender<Event>,
) -> Result<(), String> {
    let detections = std::mem::take(batch);
    let stats = d.stats.clone();
    send(
        tx,
        Event::Batch {
            detections,
            position,
            stats,
        },
    )
}

fn file_loop(
    path: &std::path::Path,
    skip: u64,
    detector: &mut Detector,
    tx: &mpsc::Sender<Event>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let cap = open_file(path, detector).map_err(|e| e.to_string())?;
    let mut sent = Ok(());
    let end = read_file(
        cap,
        detector,
        skip,
        || Vec::with_capacity(BATCH),
        |d, mut batch| {
            sent = flush(&mut batch.detections, batch.upto, d, tx);
            sent.is_ok() && !stop.load(Ordering::Relaxed)
        },
    )
    .map_err(|e| e.to_string())?;
    sent?;
    match end {
        Some(position) => send(tx, Event::End { position }),
        None => Ok(()),
    }
}

fn live_loop(
    name: &str,
    snaplen: u32,
    detector: &mut Detector,
    tx: &mpsc::Sender<Event>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let cap = pcap::Capture::from_device(name)
        .and_then(|c| c.snaplen(snaplen as i32).timeout(250).immediate_mode(true).open())
        .map_err(|e| {
            format!("{name}: cannot capture: {e}; check the interface exists, is in monitor mode, and the agent has CAP_NET_RAW")
        })?;
    let mut cap = cap;
    let link = LinkType::from_dlt(cap.get_datalink().0).map_err(|e| format!("{name}: {e}"))?;
    detector.set_link(link);
    let mut batch = Vec::with_capacity(BATCH);
    let mut position = 0u64;
    let mut last_flush = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match cap.next_packet() {
            Ok(p) => {
                position += 1;
                let ts = p.header.ts;
                #[allow(clippy::useless_conversion)]
                let ts_us = i64::from(ts.tv_sec) * 1_000_000 + i64::from(ts.tv_usec);
                if let Some(d) = detector.frame(ts_us, p.data) {
                    batch.push(d);
                }
            }
            Err(pcap::Error::TimeoutExpired) => {}
            Err(e) => return Err(format!("{name}: capture failed: {e}")),
        }
        if batch.len() >= BATCH || last_flush.elapsed() >= std::time::Duration::from_millis(500) {
            flush(&mut batch, position, detector, tx)?;
            last_flush = std::time::Instant::now();
        }
    }
    flush(&mut batch, position, detector, tx)
}
