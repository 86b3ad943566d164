//! `footfall-agent replay`: capture files, read in the order given as one
//! timeline, through the same detect → count → store path as live capture.
//!
//! Position: each file is known by a fingerprint of its first 64 KiB and
//! the checkpoint records how many of its frames are counted, so a second
//! run over the same files, or a run after kill -9, counts each frame once.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use footfall_report::Report;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::config::Config;
use crate::count::{Counter, ReportMeta};
use crate::detect::{Detection, Detector};
use crate::privacy::{load_opt_out, load_or_create_key, Keyer};
use crate::store::{Checkpoint, FileProgress, Identity, Store};
use crate::wire::linktype::LinkType;
use crate::wire::pcapfile::{CaptureError, CaptureFile};

/// Checkpoint when this long has passed with reports waiting, or when this
/// many reports wait, whichever comes first. Never per frame; a crash
/// re-reads at most what came after the last checkpoint.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
const CHECKPOINT_REPORTS: usize = 96;
/// Device histories handed to the store before a checkpoint is taken even
/// with no report waiting. A sled transaction holds its whole write set and
/// copies of the nodes it splits: replay reads a store's day in about a
/// second, and one checkpoint with a day's histories made the peak memory
/// several times the steady state (massif).
const CHECKPOINT_HISTORIES: usize = 1024;

/// Where final reports go: one JSON line each.
pub struct Emit {
    out: Box<dyn Write>,
    /// A regular file, synced after each write; `None` for stdout, a pipe
    /// or a device such as /dev/null, which cannot be synced.
    file: Option<File>,
    name: String,
}

impl Emit {
    /// `-` is stdout; a path is appended to. A last line cut short by a
    /// crash is trimmed first, so the file stays one report per line.
    pub fn open(path: &Path) -> Result<Emit> {
        let name = path.display().to_string();
        if path == Path::new("-") {
            return Ok(Emit {
                out: Box::new(io::stdout()),
                file: None,
                name,
            });
        }
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("{name}: cannot open the emit file"))?;
        let writer = f.try_clone()?;
        let regular = f.metadata()?.file_type().is_file();
        if regular {
            trim_torn_line(&mut f)
                .with_context(|| format!("{name}: cannot repair the emit file"))?;
        }
        Ok(Emit {
            out: Box::new(BufWriter::new(writer)),
            file: regular.then_some(f),
            name,
        })
    }

    pub fn write(&mut self, reports: &[Report]) -> Result<()> {
        let written = (|| -> io::Result<()> {
            for r in reports {
                serde_json::to_writer(&mut self.out, r)?;
                self.out.write_all(b"\n")?;
            }
            self.out.flush()?;
            if let Some(f) = &self.file {
                f.sync_data()?;
            }
            Ok(())
        })();
        written.with_context(|| format!("{}: cannot write reports", self.name))
    }
}

fn trim_torn_line(f: &mut File) -> io::Result<()> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline; everything after it is a torn write.
    let mut pos = len;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let n = (pos - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            f.set_len(start + i as u64 + 1)?;
            return Ok(());
        }
        pos = start;
    }
    f.set_len(0)
}

/// Identifies an input file by its first 64 KiB: the same capture is found
/// again under another name, and a capture that grew keeps its identity.
pub fn fingerprint(path: &Path) -> Result<[u8; 32]> {
    let mut head = Vec::with_capacity(64 * 1024);
    File::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .take(64 * 1024)
        .read_to_end(&mut head)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(Sha256::digest(&head).into())
}

/// The agent's state, opened from a config: shared by `replay` and `run`.
pub struct Agent {
    pub store: Store,
    pub counter: Counter,
    pub files: Vec<FileProgress>,
    pub next_seq: u64,
}

impl Agent {
    /// Opens the state and makes the detector (key and opt-out loaded).
    pub fn open(config: &Config) -> Result<(Agent, Detector)> {
        let key = load_or_create_key(&config.key_file)?;
        let keyer = Keyer::new(&key);
        let opt_out = match &config.opt_out_file {
            Some(p) => load_opt_out(p, &keyer)?,
            None => Default::default(),
        };
        let params_hash = config.params_hash();
        let identity = Identity::new(&config.store_id, &config.agent_id, &params_hash);
        let store = Store::open(&config.storage_path, config.cache_bytes, &identity)?;
        let cp = store.load_checkpoint()?.unwrap_or_default();
        let meta = ReportMeta {
            store_id: config.store_id.clone(),
            agent_id: config.agent_id.clone(),
            agent_version: crate::VERSION.to_string(),
            params_hash,
        };
        let counter = Counter::new(&config.counting, config.timezone.clone(), meta, cp.counter);
        let c = &config.counting;
        let detector = Detector::new(
            LinkType::Radiotap,
            keyer,
            opt_out,
            c.rssi_floor_dbm as i8,
            c.visit_rssi_dbm as i8,
        );
        let agent = Agent {
            store,
            counter,
            files: cp.files,
            next_seq: cp.next_seq,
        };
        Ok((agent, detector))
    }

    /// The progress entry of an input file, added if new.
    pub fn file_progress(&mut self, path: &Path) -> Result<usize> {
        let fp = fingerprint(path)?;
        Ok(match self.files.iter().position(|f| f.fingerprint == fp) {
            Some(i) => i,
            None => {
                self.files.push(FileProgress {
                    fingerprint: fp,
                    frames: 0,
                    done: false,
                });
                self.files.len() - 1
            }
        })
    }

    /// Whether enough device histories wait for a checkpoint to take one
    /// now, reports or not.
    pub fn checkpoint_due(&self) -> bool {
        self.store.pending_histories() >= CHECKPOINT_HISTORIES
    }

    /// Numbers the reports that became final and commits them with the
    /// counter's state; returns them for delivery.
    pub fn checkpoint(&mut self) -> Result<Vec<Report>> {
        let mut reports = self.counter.drain_reports();
        // Once a day: a new day report means a day left the horizon.
        if reports.iter().any(|r| matches!(r, Report::Day(_))) {
            if let Some(h) = self.counter.history_horizon() {
                let pruned = self.store.prune(h)?;
                tracing::debug!(
                    pruned = pruned.removed,
                    kept = pruned.kept,
                    "pruned device histories"
                );
            }
        }
        for r in &mut reports {
            r.set_seq(self.next_seq);
            self.next_seq += 1;
        }
        let cp = Checkpoint {
            counter: std::mem::take(&mut self.counter.state),
            files: self.files.clone(),
            next_seq: self.next_seq,
        };
        let result = self.store.commit(&cp, &reports);
        self.counter.state = cp.counter;
        result?;
        Ok(reports)
    }
}

pub fn replay(config: &Config, inputs: &[PathBuf], emit_path: &Path) -> Result<()> {
    let (mut agent, mut detector) = Agent::open(config)?;
    let mut emit = Emit::open(emit_path)?;

    // Reports committed by an earlier run that may not have reached the file.
    let leftover = agent.store.outbox()?;
    if !leftover.is_empty() {
        info!(
            reports = leftover.len(),
            "emitting reports left in the outbox"
        );
        emit.write(&leftover)?;
        agent
            .store
            .remove_delivered(leftover.iter().map(Report::seq))?;
    }

    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} {human_pos} frames ({per_sec})")
            .expect("valid template"),
    );
    let started = Instant::now();
    let mut frames_read = 0u64;
    let mut failure = None;
    for path in inputs {
        if let Err(e) = replay_file(
            &mut agent,
            &mut detector,
            &mut emit,
            path,
            &progress,
            &mut frames_read,
        ) {
            failure = Some(e);
            break;
        }
    }
    progress.finish_and_clear();
    if failure.is_none() {
        agent.counter.finish(&mut agent.store);
    }
    let reports = agent.checkpoint()?;
    deliver(&mut agent, &mut emit, &reports)?;
    let secs = started.elapsed().as_secs_f64();
    info!(
        frames = frames_read,
        detections = detector.stats.detections,
        late_frames = agent.counter.state.late_frames,
        seconds = format!("{secs:.2}"),
        frames_per_s = format!("{:.0}", frames_read as f64 / secs.max(1e-9)),
        "replay done"
    );
    match failure {
        Some(e) => {
            Err(e.context("replay stopped; everything before this point is counted and saved"))
        }
        None => Ok(()),
    }
}

/// The reader thread: batches of detections in file order, then the read
/// error that stopped it, if any. Frames up to `skip` are read past; a
/// batch of nothing but those is not sent, so a file's position is never
/// set back. Stops early when the counter hangs up.
fn read_frames(
    mut cap: CaptureFile,
    detector: &mut Detector,
    skip: u64,
    tx: mpsc::SyncSender<Result<Batch, CaptureError>>,
    emptied: mpsc::Receiver<Vec<Detection>>,
) {
    let new_batch = || Batch {
        detections: emptied.try_recv().unwrap_or_default(),
        read: 0,
        upto: 0,
    };
    let mut batch = new_batch();
    let mut seen = 0u64;
    loop {
        let rec = match cap.next_record() {
            None => break,
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                if batch.read > 0 && tx.send(Ok(batch)).is_err() {
                    return;
                }
                let _ = tx.send(Err(e));
                return;
            }
        };
        seen += 1;
        if seen > skip {
            batch.read += 1;
            batch.upto = seen;
            if let Some(d) = detector.frame(rec.ts_us, rec.data) {
                batch.detections.push(d);
            }
            if seen % BATCH_FRAMES == 0
                && tx
                    .send(Ok(std::mem::replace(&mut batch, new_batch())))
                    .is_err()
            {
                return;
            }
        }
    }
    if batch.read > 0 {
        let _ = tx.send(Ok(batch));
    }
}

fn deliver(agent: &mut Agent, emit: &mut Emit, reports: &[Report]) -> Result<()> {
    if reports.is_empty() {
        return Ok(());
    }
    emit.write(reports)?;
    agent
        .store
        .remove_delivered(reports.iter().map(Report::seq))?;
    Ok(())
}

/// Frames the reader hands over at once; checkpoints are considered
/// between batches, so a crash re-reads at most what came after one.
const BATCH_FRAMES: u64 = 4096;

/// The detections among a file's frames up to `upto` (counted from the
/// file's start), of which `read` were not skipped as already counted.
struct Batch {
    detections: Vec<Detection>,
    read: u64,
    upto: u64,
}

/// One file on two threads: a reader thread parses and keys frames while
/// this one counts and stores. Counting and the store were 60 % of a
/// replay's time and reading and keying 32 % (perf, issue 7); the counter
/// sees the same detections in the same order, so the reports are the same.
fn replay_file(
    agent: &mut Agent,
    detector: &mut Detector,
    emit: &mut Emit,
    path: &Path,
    progress: &indicatif::ProgressBar,
    frames_read: &mut u64,
) -> Result<()> {
    let idx = agent.file_progress(path)?;
    if agent.files[idx].done {
        info!(file = %path.display(), "already counted; skipped");
        return Ok(());
    }
    let cap = CaptureFile::open(path)?;
    let link =
        LinkType::from_dlt(cap.dlt()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    detector.set_link(link);
    let skip = agent.files[idx].frames;
    if skip > 0 {
        info!(file = %path.display(), frames = skip, "resuming after frames already counted");
    }
    progress.set_message(path.display().to_string());
    // Two batches in flight keep both threads busy; more would only hold
    // memory. Emptied batches go back to the reader, which so allocates
    // only its first few instead of one per 4,096 frames.
    let (tx, rx) = mpsc::sync_channel(2);
    let (back_tx, back_rx) = mpsc::channel();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(move || read_frames(cap, detector, skip, tx, back_rx));
        let mut last_cp = Instant::now();
        // Returning drops `rx`, which stops the reader.
        for msg in rx {
            let batch = match msg {
                Ok(b) => b,
                Err(e) => {
                    let reports = agent.checkpoint()?;
                    deliver(agent, emit, &reports)?;
                    bail!(e);
                }
            };
            for d in &batch.detections {
                agent.counter.detection(d, &mut agent.store)?;
            }
            let mut empty = batch.detections;
            empty.clear();
            let _ = back_tx.send(empty);
            agent.files[idx].frames = batch.upto;
            *frames_read += batch.read;
            progress.set_position(*frames_read);
            let waiting = agent.counter.pending_reports();
            if waiting >= CHECKPOINT_REPORTS
                || agent.checkpoint_due()
                || (waiting > 0 && last_cp.elapsed() >= CHECKPOINT_EVERY)
            {
                let reports = agent.checkpoint()?;
                deliver(agent, emit, &reports)?;
                last_cp = Instant::now();
            }
        }
        Ok(())
    })?;
    agent.files[idx].done = true;
    let reports = agent.checkpoint()?;
    deliver(agent, emit, &reports)?;
    if agent.counter.state.late_frames > 0 {
        warn!(file = %path.display(), late_frames = agent.counter.state.late_frames, "detections older than the last final window were dropped");
    }
    Ok(())
}
