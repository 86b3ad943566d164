//! `footfall-gateway serve`: subscribes to every store's window, day and
//! status topics, validates, stores, commits, and only then acks: the MQTT
//! PUBACK (manual acks) and SPEC §6's `ack` topic naming the committed
//! `seq`s. Messages are handled in batches (up to 500, or what arrived in
//! 20 ms) so one flush covers many reports.
//!
//! Bad input never stops the gateway: a payload that fails validation, or
//! a report whose key is already stored with other counts, goes to dead
//! letters with its reason, and is acked so that it is not sent forever.
//!
//! Nothing on the ingest side ever waits for the MQTT client's request
//! queue: acks, PUBACKs and subscriptions go through an unbounded outbox
//! drained by their own task. The broker lets the gateway have only a few
//! of its own QoS 1 acks in flight (Mosquitto: 20), so with many stores
//! per batch the client stops taking requests until PUBACKs come back; had
//! the ingest loop awaited `publish` there while the event task waited for
//! the ingest loop to take a message, neither would move again. The outbox
//! stays small because the broker sends at most `RECEIVE_MAXIMUM` reports
//! the gateway has not PUBACKed.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use footfall_report::topic::{self, Kind};
use footfall_report::Ack;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::ingest::validate;
use crate::store::{now_s, AgentInfo, DeadLetter, Put, ReportStore};

const BATCH_MAX: usize = 500;
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Unacked reports the broker may send us: two batches' worth, so one can
/// arrive while the other is committed.
const RECEIVE_MAXIMUM: u16 = 2 * BATCH_MAX as u16;

enum Incoming {
    Connected,
    Publish(Box<Publish>),
}

/// What the ingest loop asks of the MQTT client, in order.
enum Outgoing {
    Subscribe(String),
    Ack { topic: String, body: Vec<u8> },
    PubAck(Box<Publish>),
}

/// What one batch did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub inserted: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub dead: u64,
    pub statuses: u64,
}

/// Stores one message; returns the (store, agent, seq) to ack, if any.
pub fn handle(
    store: &dyn ReportStore,
    topic_name: &str,
    payload: &[u8],
    max_payload: usize,
    tally: &mut Tally,
) -> Result<Option<(String, String, u64)>> {
    let dead = |store: &dyn ReportStore, reason: String, tally: &mut Tally| -> Result<()> {
        tally.dead += 1;
        warn!(topic = topic_name, %reason, "dead letter");
        store.dead_letter(&DeadLetter {
            received_unix_s: now_s(),
            source: topic_name.to_string(),
            reason,
            payload: String::from_utf8_lossy(&payload[..payload.len().min(4096)]).into_owned(),
        })?;
        Ok(())
    };
    match topic::parse(topic_name) {
        Some((s, a, kind @ (Kind::Window | Kind::Day))) => {
            match validate(payload, Some((s, a, kind)), max_payload) {
                Ok(report) => {
                    match store.put(&report)? {
                        Put::Inserted => tally.inserted += 1,
                        Put::Duplicate => tally.duplicates += 1,
                        Put::Conflict => {
                            tally.conflicts += 1;
                            dead(
                                store,
                                format!(
                                    "conflict: {:?} is stored with other counts; the first is kept",
                                    report.key().period
                                ),
                                tally,
                            )?;
                        }
                    }
                    Ok(Some((s.to_string(), a.to_string(), report.seq())))
                }
                Err(reject) => {
                    dead(store, reject.to_string(), tally)?;
                    Ok(None)
                }
            }
        }
        Some((s, a, Kind::Status)) => {
            match serde_json::from_slice::<serde_json::Value>(payload) {
                Ok(v @ serde_json::Value::Object(_)) if payload.len() <= max_payload => {
                    tally.statuses += 1;
                    store.set_status(&AgentInfo {
                        store_id: s.to_string(),
                        agent_id: a.to_string(),
                        last_seen_unix_s: now_s(),
                        status: v,
                    })?;
                }
                _ => dead(
                    store,
                    "status is not a JSON object within max_payload_bytes".into(),
                    tally,
                )?,
            }
            Ok(None)
        }
        _ => {
            dead(
                store,
                "not a footfall/v1/{store}/{agent}/{window|day|status} topic".into(),
                tally,
            )?;
            Ok(None)
        }
    }
}

/// Runs until `shutdown` resolves.
pub async fn serve(
    config: Config,
    store: Arc<dyn ReportStore>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if config.broker_enabled {
        start_embedded_broker(&config.broker_listen)?;
    }
    let listener = tokio::net::TcpListener::bind(&config.http_listen)
        .await
        .map_err(|e| anyhow::anyhow!("[http] listen = {}: {e}", config.http_listen))?;
    info!(listen = %config.http_listen, "HTTP API listening");
    let counters: Arc<crate::api::Counters> = Default::default();
    let app = crate::api::router(
        store.clone(),
        config.max_payload_bytes,
        counters.clone(),
        config.http_token.clone(),
    );
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.await;
            })
            .await
    });
    let mut options = config.mqtt.options()?;
    options
        .set_manual_acks(true)
        .set_receive_maximum(Some(RECEIVE_MAXIMUM));
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    let (outbox, mut outbox_rx) = mpsc::unbounded_channel::<Outgoing>();
    let sender = client.clone();
    let outbox_task = tokio::spawn(async move {
        while let Some(o) = outbox_rx.recv().await {
            let sent = match o {
                Outgoing::Subscribe(filter) => sender.subscribe(filter, QoS::AtLeastOnce).await,
                Outgoing::Ack { topic, body } => {
                    sender.publish(topic, QoS::AtLeastOnce, false, body).await
                }
                Outgoing::PubAck(p) => sender.ack(&p).await,
            };
            if sent.is_err() {
                break; // the event loop is gone; the gateway is stopping
            }
        }
    });
    let (tx, mut rx) = mpsc::channel(4096);
    let events = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let msg = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(500);
                    Some(Incoming::Connected)
                }
                Ok(Event::Incoming(Packet::Publish(p))) => Some(Incoming::Publish(Box::new(p))),
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "broker connection lost; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    None
                }
            };
            if let Some(m) = msg {
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        }
    });
    tokio::pin!(shutdown);
    let mut batch: Vec<Publish> = Vec::new();
    let mut tick = tokio::time::interval(BATCH_WAIT);
    let mut total = Tally::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            m = rx.recv() => match m {
                Some(Incoming::Connected) => {
                    info!(url = %config.mqtt.url, "connected; subscribing to every store's reports");
                    for kind in ["window", "day", "status"] {
                        outbox.send(Outgoing::Subscribe(format!("{}/+/+/{kind}", topic::PREFIX)))?;
                    }
                }
                Some(Incoming::Publish(p)) => {
                    batch.push(*p);
                    if batch.len() >= BATCH_MAX {
                        process(&outbox, store.as_ref(), &mut batch, config.max_payload_bytes, &mut total, &counters)?;
                    }
                }
                None => anyhow::bail!("the MQTT task ended"),
            },
            _ = tick.tick() => {
                if !batch.is_empty() {
                    process(&outbox, store.as_ref(), &mut batch, config.max_payload_bytes, &mut total, &counters)?;
                }
            }
        }
    }
    if !batch.is_empty() {
        process(
            &outbox,
            store.as_ref(),
            &mut batch,
            config.max_payload_bytes,
            &mut total,
            &counters,
        )?;
    }
    store.commit()?;
    let _ = http_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), http).await;
    // The last acks out before the goodbye.
    drop(outbox);
    let _ = tokio::time::timeout(Duration::from_secs(2), outbox_task).await;
    client.disconnect().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(2), events).await;
    info!(?total, "stopped");
    Ok(())
}

fn process(
    outbox: &mpsc::UnboundedSender<Outgoing>,
    store: &dyn ReportStore,
    batch: &mut Vec<Publish>,
    max_payload: usize,
    total: &mut Tally,
    counters: &crate::api::Counters,
) -> Result<()> {
    let mut tally = Tally::default();
    let mut acks: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for p in batch.iter() {
        let topic_name = String::from_utf8_lossy(&p.topic);
        if let Some((s, a, seq)) = handle(store, &topic_name, &p.payload, max_payload, &mut tally)?
        {
            acks.entry((s, a)).or_default().push(seq);
        }
    }
    // Durable first, then acked: SPEC §6.
    store.commit()?;
    for ((s, a), seqs) in acks {
        let body = serde_json::to_vec(&Ack { seqs }).expect("serializes");
        outbox.send(Outgoing::Ack {
            topic: topic::topic(&s, &a, Kind::Ack),
            body,
        })?;
    }
    for p in batch.drain(..) {
        outbox.send(Outgoing::PubAck(Box::new(p)))?;
    }
    debug!(?tally, "batch committed");
    counters.add(&tally);
    total.inserted += tally.inserted;
    total.duplicates += tally.duplicates;
    total.conflicts += tally.conflicts;
    total.dead += tally.dead;
    total.statuses += tally.statuses;
    Ok(())
}

/// The embedded broker (rumqttd, MQTT v5) for a single box with no broker
/// installed. Production uses Mosquitto with TLS and the ACL in
/// gateway/deploy: the embedded one has no per-store authorization.
fn start_embedded_broker(listen: &str) -> Result<()> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        anyhow::anyhow!("[broker] listen = {listen:?}: expected host:port, e.g. 127.0.0.1:1883")
    })?;
    // Bind once to say clearly when the port is taken (rumqttd would only log it).
    drop(
        std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("[broker] listen = {listen}: {e}"))?,
    );
    let text = format!(
        r#"
id = 0
[router]
max_connections = 10010
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v5.1]
name = "footfall"
listen = "{addr}"
next_connection_delay_ms = 1
[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = 1048576
max_inflight_count = 100
dynamic_filters = true
"#
    );
    let config: rumqttd::Config = toml::from_str(&text)?;
    let mut broker = rumqttd::Broker::new(config);
    std::thread::Builder::new()
        .name("broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })?;
    info!(%addr, "embedded broker listening (MQTT v5, no TLS: for a single box)");
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
