//! The MQTT side of `serve`: subscribes to every store's window, day and
//! status topics, accepts each message (`accept`), commits, and only then
//! acks: the MQTT
//! PUBACK (manual acks) and SPEC §6's `ack` topic naming the committed
//! `seq`s. Messages are handled in batches (up to 500, or what arrived in
//! 20 ms) so one flush covers many reports.
//!
//! Bad input never stops the gateway: `accept` dead-letters it, and it is
//! acked so that it is not sent forever. A store error stops the loop
//! before anything of its batch is acked.
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

use crate::accept::{accept, Tally};
use crate::config::Config;
use crate::metrics::Counters;
use crate::store::ReportStore;

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
                    info!(url = %config.mqtt.url, share_group = ?config.share_group, "connected; subscribing to every store's reports");
                    for filter in filters(config.share_group.as_deref()) {
                        outbox.send(Outgoing::Subscribe(filter))?;
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
    counters: &Counters,
) -> Result<()> {
    let mut tally = Tally::default();
    let mut acks: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for p in batch.iter() {
        let topic_name = String::from_utf8_lossy(&p.topic);
        if let Some((s, a, seq)) = accept(store, &topic_name, &p.payload, max_payload, &mut tally)?
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
    total.add(&tally);
    Ok(())
}
