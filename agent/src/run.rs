//! The live agent: capture (a monitor-mode interface, or a capture file
//! read as if live), counting, and delivery over MQTT with the outbox of
//! SPEC §6. `run(config, shutdown)` is the whole agent; `main` passes the
//! signals, tests pass their own future.
//!
//! This module owns the loop that drives the stages and the order they
//! stop in; the connection itself is `transport::mqtt`.
//!
//! Delivery: a report is committed to the outbox before it is published
//! and leaves it only when the gateway's `ack` names its `seq`. After every
//! (re)connect, and every `resend_s` while connected, what is still in the
//! outbox is published again in `seq` order.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use footfall_report::Live;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::capture::{self, Source};
use crate::config::Config;
use crate::pipeline::Agent;
use crate::transport::mqtt::{Health, Link, Transport};

fn unix_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Runs until `shutdown` resolves, or capture fails.
///
/// Stops in this order, so that nothing counted is lost and nothing is
/// sent that is not saved:
/// 1. capture is told to stop (its thread sees the flag within 250 ms);
/// 2. the detections it already sent are counted;
/// 3. a checkpoint commits the state and any new final reports to the
///    outbox, and sled is flushed;
/// 4. the retained `offline` status is published;
/// 5. the client disconnects (unacked reports stay in the outbox and are
///    sent again after the next start).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mqtt = config
        .mqtt
        .clone()
        .context("run needs [mqtt] url: the broker the reports go to")?;
    let (mut agent, detector) = Agent::open(&config)?;
    let (store_id, agent_id) = (config.store_id.clone(), config.agent_id.clone());

    // Capture.
    let (source, file_idx, live_clock) = match (&config.interface, &config.capture_file) {
        (Some(name), _) => (
            Source::Interface {
                name: name.clone(),
                snaplen: config.snaplen,
            },
            None,
            true,
        ),
        (None, Some(path)) => {
            let idx = agent.file_progress(path)?;
            let skip = agent.files[idx].frames;
            (
                Source::File {
                    path: path.clone(),
                    skip: if agent.files[idx].done {
                        u64::MAX
                    } else {
                        skip
                    },
                },
                Some((idx, path.clone())),
                false,
            )
        }
        (None, None) => bail!(
            "{}: [capture] needs interface or file",
            config.path.display()
        ),
    };
    if live_clock && agent.counter.skip_gap(unix_now_us(), &mut agent.store)? {
        warn!("the agent was down: the windows it missed are not reported (not zeros), so HQ sees the gap");
        commit(&mut agent, &mut VecDeque::new())?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (cap_tx, mut cap_rx) = mpsc::channel(16);
    let capture_thread = capture::spawn(source, detector, cap_tx, stop.clone());
    if let Some(iface) = &config.interface {
        capture::spawn_hopper(
            iface.clone(),
            config.channels.clone(),
            Duration::from_millis(u64::from(config.channel_dwell_ms)),
            stop.clone(),
        );
    }

    // MQTT.
    let (mut transport, mut link_rx) = Transport::connect(&mqtt, &store_id, &agent_id)?;

    let metrics: crate::metrics::Shared = Default::default();
    if let Some(addr) = config.metrics_listen {
        crate::metrics::serve(addr, metrics.clone()).await?;
        info!(%addr, "metrics on /metrics");
    }
    let mut acked_total = 0u64;
    let mut last_metrics = Instant::now();
    let mut health = Health::new(file_idx.as_ref().is_some_and(|(i, _)| agent.files[*i].done));
    let mut connected = false;
    let mut last_resend = Instant::now();
    let mut last_live = Instant::now();
    let mut last_checkpoint = Instant::now();
    let window = Duration::from_secs(u64::from(config.counting.window_s));
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut capture_open = true;
    let mut failure: Option<String> = None;
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = cap_rx.recv(), if capture_open => match ev {
                Some(capture::Event::Batch { detections, position, stats }) => {
                    agent.counter.detections(&detections, &mut agent.store)?;
                    health.stats = stats;
                    if let Some((idx, _)) = &file_idx {
                        agent.files[*idx].frames = position;
                    }
                    if agent.counter.pending_reports() > 0 || agent.checkpoint_due() {
                        commit(&mut agent, &mut transport.queue)?;
                        last_checkpoint = Instant::now();
                    }
                }
                Some(capture::Event::End { position }) => {
                    if let Some((idx, path)) = &file_idx {
                        agent.files[*idx].frames = position;
                        agent.files[*idx].done = true;
                        info!(file = %path.display(), frames = position, "capture file read to its end; every session closed");
                    }
                    agent.counter.finish(&mut agent.store)?;
                    commit(&mut agent, &mut transport.queue)?;
                    health.capture_finished = true;
                }
                Some(capture::Event::Failed(message)) => {
                    error!(%message, "capture stopped");
                    health.capture_errors += 1;
                    if connected {
                        transport.publish_status(&config.timezone_name, &agent, &mut health, &mqtt);
                    }
                    failure = Some(message);
                    break;
                }
                None => capture_open = false,
            },
            ev = link_rx.recv() => match ev {
                Some(Link::Connected) => {
                    info!("connected to the broker; sending what the gateway has not acked");
                    connected = true;
                    transport.connected(&agent).await;
                    transport.publish_status(&config.timezone_name, &agent, &mut health, &mqtt);
                    last_resend = Instant::now();
                }
                Some(Link::Disconnected(why)) => {
                    if connected {
                        warn!(reason = %why, "lost the broker; reports stay in the outbox");
                    }
                    connected = false;
                }
                Some(Link::Acked(seqs)) => {
                    acked_total += seqs.len() as u64;
                    agent.store.remove_delivered(seqs.iter().copied())?;
                    health.last_ack_unix_s = Some((unix_now_us() / 1_000_000) as u64);
                }
                Some(Link::Refused(reason)) => {
                    health.publish_refused += 1;
                    error!(%reason, "the broker refused a publish; it stays in the outbox (check the broker's ACL for this store)");
                }
                None => bail!("the MQTT task ended"),
            },
            _ = tick.tick() => {
                if live_clock {
                    agent.counter.advance(unix_now_us(), &mut agent.store)?;
                }
                // Checkpoint what became final, and at least once a window
                // so open sessions survive a crash.
                if agent.counter.pending_reports() > 0 || last_checkpoint.elapsed() >= window {
                    commit(&mut agent, &mut transport.queue)?;
                    last_checkpoint = Instant::now();
                }
                if connected && transport.queue.is_empty() && last_resend.elapsed() >= Duration::from_secs(u64::from(mqtt.resend_s)) {
                    transport.queue = agent.store.outbox_seqs().into();
                    last_resend = Instant::now();
                }
                if connected && last_live.elapsed() >= Duration::from_secs(u64::from(mqtt.live_interval_s)) {
                    let live = Live {
                        store_id: store_id.clone(),
                        agent_id: agent_id.clone(),
                        ts: unix_now_us() / 1_000_000,
                        devices_present: agent.counter.present_devices() as u64,
                        visits_today: agent.counter.visits_today(),
                    };
                    transport.publish_live(&live);
                    last_live = Instant::now();
                }
                if last_metrics.elapsed() >= Duration::from_secs(1) {
                    last_metrics = Instant::now();
                    let Ok(mut m) = metrics.lock() else { continue };
                    let (pending, bytes) = agent.store.outbox_size();
                    *m = crate::metrics::Snapshot {
                        frames: health.stats.clone(),
                        late_frames: agent.counter.state.late_frames,
                        outbox_pending: pending as u64,
                        outbox_bytes: bytes,
                        outbox_full: bytes > mqtt.max_outbox_bytes,
                        reports_acked: acked_total,
                        publish_refused: health.publish_refused,
                        memory: agent.memory(),
                        connected,
                        // Read at each scrape.
                        heap_bytes: None,
                    };
                }
                if connected && health.last_status.elapsed() >= Duration::from_secs(u64::from(mqtt.status_interval_s)) {
                    transport.publish_status(&config.timezone_name, &agent, &mut health, &mqtt);
                }
            }
        }
        if connected {
            transport.pump(&agent)?;
        }
    }

    // Shutdown: stop capture, drain, commit, flush, say offline, disconnect.
    stop.store(true, Ordering::Relaxed);
    while let Some(ev) = cap_rx.recv().await {
        if let capture::Event::Batch {
            detections,
            position,
            ..
        } = ev
        {
            agent.counter.detections(&detections, &mut agent.store)?;
            if let Some((idx, _)) = &file_idx {
                agent.files[*idx].frames = position;
            }
        }
    }
    let _ = capture_thread.join();
    commit(&mut agent, &mut transport.queue)?;
    agent.store.flush()?;
    transport.close(connected).await;
    let (pending, _) = agent.store.outbox_size();
    info!(outbox_pending = pending, "stopped; state saved");
    match failure {
        Some(m) => bail!(m),
        None => Ok(()),
    }
}

/// Commits what became final and queues it for sending.
fn commit(agent: &mut Agent, queue: &mut VecDeque<u64>) -> Result<()> {
    for r in agent.checkpoint()? {
        queue.push_back(r.seq());
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
    }
}

/// For the `run` command: the config's capture file, if any, as a path.
pub fn describe_source(config: &Config) -> String {
    match (&config.interface, &config.capture_file) {
        (Some(i), _) => format!("interface {i}"),
        (None, Some(p)) => format!("file {}", PathBuf::from(p).display()),
        _ => "nothing".into(),
    }
}
