//! The live agent: capture (a monitor-mode interface, or a capture file
//! read as if live), counting, and delivery over MQTT with the outbox of
//! SPEC §6. `run(config, shutdown)` is the whole agent; `main` passes the
//! signals, tests pass their own future.
//!
//! Delivery: a report is committed to the outbox before it is published
//! and leaves it only when the gateway's `ack` names its `seq`. After every
//! (re)connect, and every `resend_s` while connected, what is still in the
//! outbox is published again in `seq` order; rumqttc's own queue is never
//! trusted with a report, since it drops unacked QoS 1 messages when a
//! session is lost.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use footfall_report::status::{Health as StatusHealth, State};
use footfall_report::topic::{self, Kind};
use footfall_report::{Ack, Live, Report, Status};
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event as MqttEvent};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::capture::{self, Source};
use crate::config::{Config, Mqtt};
use crate::detect::FrameStats;
use crate::pipeline::Agent;

enum Link {
    Connected,
    Disconnected(String),
    Acked(Vec<u64>),
    Refused(String),
}

struct Health {
    started: Instant,
    stats: FrameStats,
    frames_at_last_status: u64,
    last_status: Instant,
    last_ack_unix_s: Option<u64>,
    capture_errors: u64,
    publish_refused: u64,
    outbox_full: bool,
    /// A capture file was read to its end (file mode only).
    capture_finished: bool,
}

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
    let topic_of = |kind| topic::topic(&store_id, &agent_id, kind);

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
    if live_clock && agent.counter.skip_gap(unix_now_us(), &mut agent.store) {
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
    let mut options = mqtt.settings.options()?;
    let offline =
        serde_json::to_string(&Status::offline(&store_id, &agent_id)).expect("statuses serialize");
    options.set_last_will(LastWill::new(
        topic_of(Kind::Status),
        offline.clone(),
        QoS::AtLeastOnce,
        true,
        None,
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let (link_tx, mut link_rx) = mpsc::channel(256);
    let ack_topic = topic_of(Kind::Ack);
    let loop_ack_topic = ack_topic.clone();
    let mqtt_task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let ev = match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(500);
                    Some(Link::Connected)
                }
                Ok(MqttEvent::Incoming(Packet::Publish(p)))
                    if p.topic == loop_ack_topic.as_bytes() =>
                {
                    match serde_json::from_slice::<Ack>(&p.payload) {
                        Ok(a) => Some(Link::Acked(a.seqs)),
                        Err(e) => {
                            warn!(error = %e, "ignoring an ack that is not {{\"seqs\": [...]}}");
                            None
                        }
                    }
                }
                Ok(MqttEvent::Incoming(Packet::PubAck(a)))
                    if !matches!(
                        a.reason,
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                    ) =>
                {
                    Some(Link::Refused(format!("{:?}", a.reason)))
                }
                Ok(MqttEvent::Incoming(Packet::Disconnect(d))) => {
                    Some(Link::Disconnected(format!("{:?}", d.reason_code)))
                }
                Ok(_) => None,
                Err(e) => {
                    let _ = link_tx.send(Link::Disconnected(e.to_string())).await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    None
                }
            };
            if let Some(ev) = ev {
                if link_tx.send(ev).await.is_err() {
                    break;
                }
            }
        }
    });

    let metrics: crate::metrics::Shared = Default::default();
    if let Some(addr) = config.metrics_listen {
        crate::metrics::serve(addr, metrics.clone()).await?;
        info!(%addr, "metrics on /metrics");
    }
    let mut acked_total = 0u64;
    let mut last_metrics = Instant::now();
    let mut health = Health {
        started: Instant::now(),
        stats: FrameStats::default(),
        frames_at_last_status: 0,
        last_status: Instant::now(),
        last_ack_unix_s: None,
        capture_errors: 0,
        publish_refused: 0,
        outbox_full: false,
        capture_finished: file_idx.as_ref().is_some_and(|(i, _)| agent.files[*i].done),
    };
    let mut connected = false;
    let mut queue: VecDeque<u64> = VecDeque::new();
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
                    for d in &detections {
                        agent.counter.detection(d, &mut agent.store)?;
                    }
                    health.stats = stats;
                    if let Some((idx, _)) = &file_idx {
                        agent.files[*idx].frames = position;
                    }
                    if agent.counter.pending_reports() > 0 || agent.checkpoint_due() {
                        commit(&mut agent, &mut queue)?;
                        last_checkpoint = Instant::now();
                    }
                }
                Some(capture::Event::End { position }) => {
                    if let Some((idx, path)) = &file_idx {
                        agent.files[*idx].frames = position;
                        agent.files[*idx].done = true;
                        info!(file = %path.display(), frames = position, "capture file read to its end; every session closed");
                    }
                    agent.counter.finish(&mut agent.store);
                    commit(&mut agent, &mut queue)?;
                    health.capture_finished = true;
                }
                Some(capture::Event::Failed(message)) => {
                    error!(%message, "capture stopped");
                    health.capture_errors += 1;
                    if connected {
                        publish_status(&config.timezone_name, &client, &topic_of(Kind::Status), &agent, &mut health, &mqtt, &store_id, &agent_id);
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
                    client.subscribe(ack_topic.clone(), QoS::AtLeastOnce).await.ok();
                    publish_status(&config.timezone_name, &client, &topic_of(Kind::Status), &agent, &mut health, &mqtt, &store_id, &agent_id);
                    queue = agent.store.outbox_seqs().into();
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
                    agent.counter.advance(unix_now_us(), &mut agent.store);
                }
                // Checkpoint what became final, and at least once a window
                // so open sessions survive a crash.
                if agent.counter.pending_reports() > 0 || last_checkpoint.elapsed() >= window {
                    commit(&mut agent, &mut queue)?;
                    last_checkpoint = Instant::now();
                }
                if connected && queue.is_empty() && last_resend.elapsed() >= Duration::from_secs(u64::from(mqtt.resend_s)) {
                    queue = agent.store.outbox_seqs().into();
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
                    let payload = serde_json::to_string(&live).expect("live messages serialize");
                    client.try_publish(topic_of(Kind::Live), QoS::AtMostOnce, true, payload).ok();
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
                        devices_in_memory: agent.counter.devices_in_memory() as u64,
                        connected,
                    };
                }
                if connected && health.last_status.elapsed() >= Duration::from_secs(u64::from(mqtt.status_interval_s)) {
                    publish_status(&config.timezone_name, &client, &topic_of(Kind::Status), &agent, &mut health, &mqtt, &store_id, &agent_id);
                }
            }
        }
        if connected {
            pump(&client, &agent, &mut queue, &store_id, &agent_id)?;
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
            for d in &detections {
                agent.counter.detection(d, &mut agent.store)?;
            }
            if let Some((idx, _)) = &file_idx {
                agent.files[*idx].frames = position;
            }
        }
    }
    let _ = capture_thread.join();
    commit(&mut agent, &mut queue)?;
    agent.store.flush()?;
    if connected {
        client
            .publish(topic_of(Kind::Status), QoS::AtLeastOnce, true, offline)
            .await
            .ok();
        client.disconnect().await.ok();
        let _ = tokio::time::timeout(Duration::from_secs(2), mqtt_task).await;
    } else {
        mqtt_task.abort();
    }
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

/// Hands queued reports to the MQTT client while its queue has room.
fn pump(
    client: &AsyncClient,
    agent: &Agent,
    queue: &mut VecDeque<u64>,
    store_id: &str,
    agent_id: &str,
) -> Result<()> {
    while let Some(&seq) = queue.front() {
        let Some(payload) = agent.store.outbox_payload(seq)? else {
            queue.pop_front(); // acked meanwhile
            continue;
        };
        let kind = match serde_json::from_slice::<Report>(&payload) {
            Ok(r) => r.kind(),
            Err(e) => bail!("outbox seq {seq} is not a report: {e}"),
        };
        match client.try_publish(
            topic::topic(store_id, agent_id, kind),
            QoS::AtLeastOnce,
            false,
            payload,
        ) {
            Ok(()) => {
                queue.pop_front();
            }
            Err(_) => break, // the client's queue is full: the rest waits
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn publish_status(
    timezone: &str,
    client: &AsyncClient,
    topic: &str,
    agent: &Agent,
    h: &mut Health,
    mqtt: &Mqtt,
    store_id: &str,
    agent_id: &str,
) {
    let (pending, bytes) = agent.store.outbox_size();
    let full = bytes > mqtt.max_outbox_bytes;
    if full && !h.outbox_full {
        error!(outbox_bytes = bytes, max_outbox_bytes = mqtt.max_outbox_bytes, "outbox is full: the gateway has not acked for a long time; reports are kept, not dropped");
    }
    h.outbox_full = full;
    let secs = h.last_status.elapsed().as_secs_f64().max(1e-3);
    let fps = (h.stats.frames.saturating_sub(h.frames_at_last_status)) as f64 / secs;
    h.frames_at_last_status = h.stats.frames;
    h.last_status = Instant::now();
    let status = Status {
        state: State::Online,
        store_id: store_id.to_string(),
        agent_id: agent_id.to_string(),
        health: Some(StatusHealth {
            agent_version: crate::VERSION.to_string(),
            timezone: timezone.to_string(),
            uptime_s: h.started.elapsed().as_secs(),
            frames_total: h.stats.frames,
            detections_total: h.stats.detections,
            frames_per_s: (fps * 10.0).round() / 10.0,
            outbox_pending: pending as u64,
            outbox_bytes: bytes,
            outbox_full: full,
            last_ack_unix_s: h.last_ack_unix_s,
            late_frames: agent.counter.state.late_frames,
            capture_errors: h.capture_errors,
            publish_refused: h.publish_refused,
            capture_finished: h.capture_finished,
        }),
    };
    let payload = serde_json::to_string(&status).expect("statuses serialize");
    client
        .try_publish(topic, QoS::AtLeastOnce, true, payload)
        .ok();
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
