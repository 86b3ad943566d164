//! The MQTT transport of the live agent (SPEC §6): one connection to the
//! broker, the gateway's acks coming back, and the reports of the outbox
//! going out in `seq` order.
//!
//! Invariants:
//! - rumqttc's own queue is never trusted with a report, since it drops
//!   unacked QoS 1 messages when a session is lost: the outbox is the
//!   queue, and after every (re)connect what it holds is published again.
//! - A report leaves the outbox only when an ack names its `seq`; this
//!   module only reports acks (`Link::Acked`), the caller removes them.
//! - The last will is the retained `offline` status, so HQ tells a box
//!   that died from one that is quiet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use footfall_report::status::{Health as StatusHealth, State};
use footfall_report::topic::{self, Kind};
use footfall_report::{Ack, Live, Report, Status};
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, PubAckReason};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event as MqttEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{error, warn};

use crate::config::Mqtt;
use crate::detect::FrameStats;
use crate::pipeline::Agent;

/// What the connection tells the agent's loop.
pub enum Link {
    Connected,
    Disconnected(String),
    /// The gateway committed these `seq`s.
    Acked(Vec<u64>),
    /// The broker refused a publish (an ACL, a quota).
    Refused(String),
}

/// The health figures the retained status carries, kept between statuses.
pub struct Health {
    pub started: Instant,
    pub stats: FrameStats,
    pub frames_at_last_status: u64,
    pub last_status: Instant,
    pub last_ack_unix_s: Option<u64>,
    pub capture_errors: u64,
    pub publish_refused: u64,
    pub outbox_full: bool,
    /// A capture file was read to its end (file mode only).
    pub capture_finished: bool,
}

impl Health {
    pub fn new(capture_finished: bool) -> Health {
        Health {
            started: Instant::now(),
            stats: FrameStats::default(),
            frames_at_last_status: 0,
            last_status: Instant::now(),
            last_ack_unix_s: None,
            capture_errors: 0,
            publish_refused: 0,
            outbox_full: false,
            capture_finished,
        }
    }
}

/// One agent's connection: its client, the task polling it, and the seqs
/// waiting for room in the client's queue.
pub struct Transport {
    client: AsyncClient,
    task: JoinHandle<()>,
    store_id: String,
    agent_id: String,
    offline: String,
    /// Outbox seqs to publish, in order; refilled from the outbox after a
    /// (re)connect and every `resend_s`.
    pub queue: VecDeque<u64>,
}

impl Transport {
    /// Starts connecting (in the background, with backoff); events arrive
    /// on the returned receiver.
    pub fn connect(
        mqtt: &Mqtt,
        store_id: &str,
        agent_id: &str,
    ) -> Result<(Transport, mpsc::Receiver<Link>)> {
        let mut options = mqtt.settings.options()?;
        let offline = serde_json::to_string(&Status::offline(store_id, agent_id))
            .expect("statuses serialize");
        options.set_last_will(LastWill::new(
            topic::topic(store_id, agent_id, Kind::Status),
            offline.clone(),
            QoS::AtLeastOnce,
            true,
            None,
        ));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let (link_tx, link_rx) = mpsc::channel(256);
        let ack_topic = topic::topic(store_id, agent_id, Kind::Ack);
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let ev = match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(500);
                        Some(Link::Connected)
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p)))
                        if p.topic == ack_topic.as_bytes() =>
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
        let transport = Transport {
            client,
            task,
            store_id: store_id.to_string(),
            agent_id: agent_id.to_string(),
            offline,
            queue: VecDeque::new(),
        };
        Ok((transport, link_rx))
    }

    fn topic(&self, kind: Kind) -> String {
        topic::topic(&self.store_id, &self.agent_id, kind)
    }

    /// After a (re)connect: listen for acks and queue the whole outbox.
    pub async fn connected(&mut self, agent: &Agent) {
        self.client
            .subscribe(self.topic(Kind::Ack), QoS::AtLeastOnce)
            .await
            .ok();
        self.queue = agent.store.outbox_seqs().into();
    }

    /// Hands queued reports to the client while its queue has room.
    pub fn pump(&mut self, agent: &Agent) -> Result<()> {
        while let Some(&seq) = self.queue.front() {
            let Some(payload) = agent.store.outbox_payload(seq)? else {
                self.queue.pop_front(); // acked meanwhile
                continue;
            };
            let kind = match serde_json::from_slice::<Report>(&payload) {
                Ok(r) => r.kind(),
                Err(e) => bail!("outbox seq {seq} is not a report: {e}"),
            };
            match self
                .client
                .try_publish(self.topic(kind), QoS::AtLeastOnce, false, payload)
            {
                Ok(()) => {
                    self.queue.pop_front();
                }
                Err(_) => break, // the client's queue is full: the rest waits
            }
        }
        Ok(())
    }

    /// The retained `online` status with the health figures (SPEC §6).
    pub fn publish_status(&self, timezone: &str, agent: &Agent, h: &mut Health, mqtt: &Mqtt) {
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
            store_id: self.store_id.clone(),
            agent_id: self.agent_id.clone(),
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
                privacy_mode: Some(agent.counter.privacy_mode()),
                params_hash: Some(agent.counter.params_hash().to_string()),
                memory: Some(agent.memory()),
            }),
        };
        let payload = serde_json::to_string(&status).expect("statuses serialize");
        self.client
            .try_publish(self.topic(Kind::Status), QoS::AtLeastOnce, true, payload)
            .ok();
    }

    /// The retained QoS 0 `live` message; lost ones are simply replaced.
    pub fn publish_live(&self, live: &Live) {
        let payload = serde_json::to_string(live).expect("live messages serialize");
        self.client
            .try_publish(self.topic(Kind::Live), QoS::AtMostOnce, true, payload)
            .ok();
    }

    /// Says `offline` (when connected) and disconnects; what is unacked
    /// stays in the outbox for the next start.
    pub async fn close(self, connected: bool) {
        if connected {
            self.client
                .publish(
                    self.topic(Kind::Status),
                    QoS::AtLeastOnce,
                    true,
                    self.offline,
                )
                .await
                .ok();
            self.client.disconnect().await.ok();
            let _ = tokio::time::timeout(Duration::from_secs(2), self.task).await;
        } else {
            self.task.abort();
        }
    }
}
