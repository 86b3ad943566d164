//! `footfall-agent replay`: capture files, read in the order given as one
//! timeline, through the same detect → count → store path as live capture.
//!
//! Position: each file is known by a fingerprint of its first 64 KiB and
//! the checkpoint records how many of its frames are counted, so a second
//! run over the same files, or a run after kill -9, counts each frame once.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Result};
use footfall_report::Report;
use tracing::{debug, info, warn};

use crate::capture::{self, Batch};
use crate::config::Config;
use crate::detect::{Detection, Detector};
use crate::pipeline::{Agent, CHECKPOINT_COST_SHARE, CHECKPOINT_EVERY, CHECKPOINT_REPORTS};
use crate::transport::file::Emit;
use crate::wire::pcapfile::{CaptureError, CaptureFile};

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
        deliver(&mut agent, &mut emit, &leftover)?;
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
        agent.counter.finish(&mut agent.store)?;
    }
    let reports = agent.checkpoint()?;
    deliver(&mut agent, &mut emit, &reports)?;
    detector.retire_committed();
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

/// The reader thread: `capture::read_file`'s batches, then the read error
/// that stopped it, if any. Stops early when the counter hangs up.
fn read_frames(
    cap: CaptureFile,
    detector: &mut Detector,
    skip: u64,
    tx: mpsc::SyncSender<Result<Batch, CaptureError>>,
    emptied: mpsc::Receiver<Vec<Detection>>,
) {
    let read = capture::read_file(
        cap,
        detector,
        skip,
        || emptied.try_recv().unwrap_or_default(),
        |_, batch| tx.send(Ok(batch)).is_ok(),
    );
    if let Err(e) = read {
        let _ = tx.send(Err(e));
    }
}

fn deliver(agent: &mut Agent, emit: &mut Emit, reports: &[Report]) -> Result<()> {
    if tracing::enabled!(tracing::Level::DEBUG) {
        // What `/metrics` shows live: how full each budget got on a capture.
        let m = agent.memory();
        debug!(
            devices = m.devices_in_memory,
            spilled = m.devices_spilled,
            spill_bytes = m.spill_bytes,
            window_entries = m.window_entries,
            people_observations = m.people_observations,
            pending_windows = agent.counter.pending_windows(),
            randomized_visitors = m.randomized_visitors,
            randomized_in_memory = m.randomized_in_memory,
            bulk_bytes = m.checkpoint_bulk_bytes,
            "checkpoint"
        );
    }
    if reports.is_empty() {
        return Ok(());
    }
    emit.write(reports)?;
    agent
        .store
        .remove_delivered(reports.iter().map(Report::seq))?;
    Ok(())
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
    let cap = capture::open_file(path, detector)?;
    let skip = agent.files[idx].frames;
    if skip > 0 {
        info!(file = %path.display(), frames = skip, "resuming after frames already counted");
    }
    progress.set_message(path.display().to_string());
    // Two batches in flight keep both threads busy; more would only hold
    // memory. Emptied batches go back to the reader, which so allocates
    // only its first few instead of one per batch.
    let (tx, rx) = mpsc::sync_channel(2);
    let (back_tx, back_rx) = mpsc::channel();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(move || read_frames(cap, detector, skip, tx, back_rx));
        let mut last_cp = Instant::now();
        // Checkpoints wait at least `CHECKPOINT_EVERY`, and longer when
        // they cost more: a crowd's state (100,000 devices, their spilled
        // records copied) took a quarter of a second to commit, and once a
        // second that was a sixth of the replay (issue 20).
        let mut every = CHECKPOINT_EVERY;
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
            agent
                .counter
                .detections(&batch.detections, &mut agent.store)?;
            let mut empty = batch.detections;
            empty.clear();
            let _ = back_tx.send(empty);
            agent.files[idx].frames = batch.upto;
            *frames_read += batch.read;
            progress.set_position(*frames_read);
            let waiting = agent.counter.pending_reports();
            if waiting >= CHECKPOINT_REPORTS
                || agent.checkpoint_due()
                || (waiting > 0 && last_cp.elapsed() >= every)
            {
                let started = Instant::now();
                let reports = agent.checkpoint()?;
                deliver(agent, emit, &reports)?;
                last_cp = Instant::now();
                every = CHECKPOINT_EVERY.max((last_cp - started) * CHECKPOINT_COST_SHARE);
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
