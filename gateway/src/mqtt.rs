//! The MQTT side of `serve`: subscribes to every store's window, day and
//! status topics, accepts each message (`accept`), commits, and only then
//! acks: the MQTT
//! PUBACK (manual acks) and SPEC §6's `ack` topic naming the committed
//! `seq`s. Messages are handled in batches (up to 500, or what arrived in
//! 20 ms) so one flush covers many reports.
//!
//! Bad input never stops the gateway: `accept` dead-letters it, and it is
//! acked so that it is not sent forever. Nor does a store that fails (the
//! database down, refusing the password, read-only or full): nothing of
//! the batch is acked, so the agents keep those reports, the failure is
//! logged once per reason and shown on `/metrics` (`footfall_gateway_store_up 0`),
//! and the batch is tried again, backing off, until the store takes it.
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
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

use tracing::{debug, error, info, warn};

use crate::accept::{accept_read, read, Read, Tally};
use crate::config::Config;
use crate::metrics::Counters;
use crate::store::ReportStore;

const BATCH_MAX: usize = 500;
const BATCH_WAIT: Duration = Duration::from_millis(20);
/// Unacked reports the broker may send us: two batches' worth, so one can
/// arrive while the other is committed.
const RECEIVE_MAXIMUM: u16 = 2 * BATCH_MAX as u16;
/// A batch the store refused is tried again after this long, doubling.
const STORE_RETRY_MIN: Duration = Duration::from_millis(500);
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);

enum Incoming {
    Connected,
    /// A message and what it reads as: read on the event task, so that
    /// the next batch is read and validated while the store takes this one.
    Publish(Box<Publish>, Read),
}

/// What the ingest loop asks of the MQTT client, in order.
enum Outgoing {
    Subscribe(String),
    Ack { topic: String, body: Vec<u8> },
    PubAck(Box<Publish>),
}

/// What the gateway subscribes to. With a share group (several gateways)
/// each report goes to one of them (`$share/<group>/…`, MQTT v5); statuses
/// go to every one, retained ones included (a shared subscription gets no
/// retained message), and every gateway stores the same latest status.
fn filters(share_group: Option<&str>) -> Vec<String> {
    let reports = ["window", "day"].map(|kind| {
        let f = format!("{}/+/+/{kind}", topic::PREFIX);
        match share_group {
            Some(g) => format!("$share/{g}/{f}"),
            None => f,
        }
    });
    let mut all = reports.to_vec();
    all.push(format!("{}/+/+/status", topic::PREFIX));
    all
}

/// Runs until `shutdown` resolves.
///
/// Stops in this order: the batch in hand is accepted and committed, its
/// acks go out, then the client disconnects.
pub async fn run(
    config: &Config,
    store: Arc<dyn ReportStore>,
    counters: Arc<Counters>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
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
    let max_payload = config.max_payload_bytes;
    let events = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(500);
        loop {
            let msg = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(500);
                    Some(Incoming::Connected)
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let r = read(&String::from_utf8_lossy(&p.topic), &p.payload, max_payload);
                    Some(Incoming::Publish(Box::new(p), r))
                }
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
    let mut batch: Vec<(Publish, Read)> = Vec::new();
    let mut tick = tokio::time::interval(BATCH_WAIT);
    let mut total = Tally::default();
    // While the store fails, the batch is tried again after this long
    // (doubling to STORE_RETRY_MAX), not on every tick.
    let mut retry: Option<(tokio::time::Instant, Duration)> = None;
    let try_batch = |batch: &mut Vec<(Publish, Read)>,
                     retry: &mut Option<(tokio::time::Instant, Duration)>,
                     total: &mut Tally|
     -> Result<()> {
        if retry.is_some_and(|(at, _)| tokio::time::Instant::now() < at) {
            return Ok(());
        }
        if process(&outbox, store.as_ref(), batch, total, &counters)? {
            *retry = None;
        } else {
            let wait = retry.map_or(STORE_RETRY_MIN, |(_, w)| (w * 2).min(STORE_RETRY_MAX));
            *retry = Some((tokio::time::Instant::now() + wait, wait));
        }
        Ok(())
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            m = rx.recv() => match m {
                Some(Incoming::Connected) => {
                    info!(url = %config.mqtt.url, share_group = ?config.share_group, "connected; subscribing to every store's reports");
                    for filter in filters(config.share_group.as_deref()) {
                        outbox.send(Outgoing::Subscribe(filter))?;
                    }
                }
                Some(Incoming::Publish(p, r)) => {
                    batch.push((*p, r));
                    if batch.len() >= BATCH_MAX {
                        try_batch(&mut batch, &mut retry, &mut total)?;
                    }
                }
                None => anyhow::bail!("the MQTT task ended"),
            },
            _ = tick.tick() => {
                if !batch.is_empty() {
                    try_batch(&mut batch, &mut retry, &mut total)?;
                }
            }
        }
    }
    if !batch.is_empty() {
        retry = None;
        try_batch(&mut batch, &mut retry, &mut total)?;
        if !batch.is_empty() {
            warn!(
                reports = batch.len(),
                "stopping with reports the store did not take; their agents send them again"
            );
        }
    }
    let _ = store.commit();
    // The last acks out before the goodbye.
    drop(outbox);
    let _ = tokio::time::timeout(Duration::from_secs(2), outbox_task).await;
    client.disconnect().await.ok();
    let _ = tokio::time::timeout(Duration::from_secs(2), events).await;
    info!(?total, "stopped");
    Ok(())
}

/// Stores a batch and commits it, then acks it; `false` when the store
/// failed: nothing of the batch is acked, it is kept to be tried again,
/// and the agents keep every report of it in their outboxes meanwhile.
fn process(
    outbox: &mpsc::UnboundedSender<Outgoing>,
    store: &dyn ReportStore,
    batch: &mut Vec<(Publish, Read)>,
    total: &mut Tally,
    counters: &Counters,
) -> Result<bool> {
    let mut tally = Tally::default();
    let mut acks: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    let stored = (|| {
        let topics: Vec<String> = batch
            .iter()
            .map(|(p, _)| String::from_utf8_lossy(&p.topic).into_owned())
            .collect();
        let messages: Vec<(&str, &[u8])> = topics
            .iter()
            .zip(batch.iter())
            .map(|(t, (p, _))| (t.as_str(), &p.payload[..]))
            .collect();
        let read: Vec<&Read> = batch.iter().map(|(_, r)| r).collect();
        for (s, a, seq) in accept_read(store, &messages, &read, &mut tally)?
            .into_iter()
            .flatten()
        {
            acks.entry((s, a)).or_default().push(seq);
        }
        // Durable first, then acked: SPEC §6.
        store.commit()?;
        anyhow::Ok(())
    })();
    let mut failure = counters
        .store_failure
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    // The log line before the gauge: who sees the gauge change finds the
    // line that says why (a test read the gauge back at 1 and then a log
    // without "the store is back", written a moment later).
    if let Err(e) = stored {
        // Once per reason: a database restarted and then refusing the
        // gateway's new password says both.
        let why = format!("{e:#}");
        if failure.as_deref() != Some(why.as_str()) {
            if failure.is_none() {
                error!(
                    error = %why,
                    reports = batch.len(),
                    "the store failed: nothing is acked, the agents keep their reports; retrying until it is back"
                );
            } else {
                error!(error = %why, "the store still fails, for another reason now");
            }
            *failure = Some(why);
        }
        counters.store_up.store(0, Ordering::Relaxed);
        return Ok(false);
    }
    if failure.take().is_some() {
        info!("the store is back: acking again");
    }
    counters.store_up.store(1, Ordering::Relaxed);
    drop(failure);
    for ((s, a), seqs) in acks {
        let body = serde_json::to_vec(&Ack { seqs }).expect("serializes");
        outbox.send(Outgoing::Ack {
            topic: topic::topic(&s, &a, Kind::Ack),
            body,
        })?;
    }
    for (p, _) in batch.drain(..) {
        outbox.send(Outgoing::PubAck(Box::new(p)))?;
    }
    debug!(?tally, "batch committed");
    counters.add(&tally);
    total.add(&tally);
    Ok(true)
}
