//! Gateway ingest through the real path: agents publish window reports
//! (QoS 1) to a real Mosquitto, the gateway validates, stores, commits and
//! acks them (SPEC §6); timed from the first publish to the last ack.
//! Needs the gateway built in the same profile (`scripts/bench` does it).
//!
//!     cargo bench -p footfall-tests --bench ingest -- [--stores N] [--windows N]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use footfall_report::Report;
use footfall_tests::{bench_arg, bench_window, bin, free_port, wait_until, Broker, Proc};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn arg(name: &str, default: u64) -> u64 {
    bench_arg(name).map_or(default, |v| v.parse().expect("a number"))
}

/// A window as a busy store sends it: twelve visitors in its sketch.
fn window(store: usize, i: u64) -> Report {
    let ids = (0..12u128).map(|v| (store as u128) << 100 ^ u128::from(i) << 72 ^ v << 64);
    bench_window(format!("store-{store:03}"), i, 1_767_225_600, 12, ids)
}

fn main() {
    let stores = arg("--stores", 100) as usize;
    let windows = arg("--windows", 500);
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut broker = Broker::new(dir.path());
    // Queues as gateway/deploy/mosquitto.conf sets them (the default of
    // 1000 queued messages drops QoS 1 reports under a burst), and no
    // per-message log.
    std::fs::write(
        dir.path().join("mosquitto.conf"),
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nlog_dest stdout\nlog_type error\n",
            broker.port
        ),
    )
    .expect("write mosquitto.conf");
    broker.start();
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            "[storage]\npath = \"gateway-state\"\n[mqtt]\nurl = \"{}\"\nclient_id = \"bench-gateway\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            broker.url(),
            free_port()
        ),
    )
    .expect("write gateway.toml");
    let gateway_bin = bin("footfall-gateway");
    let mut gateway = Proc::spawn(
        dir.path(),
        "gateway",
        &gateway_bin,
        &["serve", "--config", "gateway.toml"],
    );
    let port = broker
        .url()
        .rsplit(':')
        .next()
        .expect("a port")
        .parse::<u16>()
        .expect("a port");
    wait_until(Duration::from_secs(20), "the gateway subscribes", || {
        std::fs::read_to_string(dir.path().join("gateway.log"))
            .is_ok_and(|l| l.contains("subscribing"))
    });

    let payloads: Vec<(String, Vec<u8>)> = (0..stores)
        .flat_map(|s| (0..windows).map(move |i| window(s, i)))
        .map(|r| {
            let Report::Window(w) = &r else {
                unreachable!("windows only")
            };
            let topic = footfall_report::topic::topic(
                &w.store_id,
                &w.agent_id,
                footfall_report::topic::Kind::Window,
            );
            (topic, serde_json::to_vec(&r).expect("serializes"))
        })
        .collect();
    let total = payloads.len();
    let bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();

    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let secs = rt.block_on(async move {
        // Acks first, so none is missed.
        let mut opts = MqttOptions::new("bench-acks", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (acks, mut ack_loop) = AsyncClient::new(opts, 1024);
        acks.subscribe("footfall/v1/+/+/ack", QoS::AtLeastOnce)
            .await
            .expect("subscribe");
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = ack_loop.poll().await.expect("ack client") {
                break;
            }
        }
        let started = Instant::now();
        // One connection per ten stores, as many store boxes would be.
        let per = payloads.len().div_ceil(stores.div_ceil(10).max(1));
        for (n, chunk) in payloads.chunks(per).enumerate() {
            let chunk = chunk.to_vec();
            let mut opts = MqttOptions::new(format!("bench-agent-{n}"), "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(30))
                .set_inflight(100);
            let (client, mut events) = AsyncClient::new(opts, 1024);
            tokio::spawn(async move { while events.poll().await.is_ok() {} });
            tokio::spawn(async move {
                for (topic, p) in chunk {
                    client
                        .publish(topic, QoS::AtLeastOnce, false, p)
                        .await
                        .expect("publish");
                }
            });
        }
        let mut acked: HashSet<(String, u64)> = HashSet::new();
        while acked.len() < total {
            match tokio::time::timeout(Duration::from_secs(60), ack_loop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let store = p.topic.split('/').nth(2).unwrap_or_default().to_string();
                    let ack: footfall_report::Ack =
                        serde_json::from_slice(&p.payload).expect("an ack");
                    acked.extend(ack.seqs.into_iter().map(|s| (store.clone(), s)));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("ack client: {e}"),
                Err(_) => panic!("no ack for 60 s; {} of {total} acked", acked.len()),
            }
        }
        started.elapsed().as_secs_f64()
    });
    gateway.term();
    broker.stop();
    println!(
        "reports {total} bytes {bytes} seconds {secs:.3} reports_per_s {:.0}",
        total as f64 / secs
    );
}
