//! Zero lost, zero duplicated: the happy path with junk, a burst from a
//! chain, and each fault of issue #4 (broker, gateway, agent down).

use super::*;

/// The happy path, with duplicates and junk mixed in; then no MAC in
/// anything the agent, broker or gateway stored or logged.
#[test]
fn delivers_exactly_once_through_duplicates_and_junk() {
    let mut c = Case::new("21");
    c.broker.start();
    let mut gateway = c.gateway();
    let mut agent = c.agent();
    c.wait_delivered();

    // The same reports again, straight to the broker: stored once.
    let first: Vec<&str> = c.reference.lines().take(5).collect();
    for line in &first {
        let r: Report = serde_json::from_str(line).unwrap();
        c.broker
            .publish(&format!("footfall/v1/s1/a1/{}", r.kind()), line.as_bytes());
    }
    // Junk, wrong schema, wrong type, oversized, topic/payload mismatch.
    let mut wrong_schema: serde_json::Value = serde_json::from_str(first[0]).unwrap();
    wrong_schema["schema"] = "footfall.window.v9".into();
    let mut wrong_type: serde_json::Value = serde_json::from_str(first[0]).unwrap();
    wrong_type["visits"] = "many".into();
    let mut other_store: serde_json::Value = serde_json::from_str(first[0]).unwrap();
    other_store["store_id"] = "s2".into();
    c.broker
        .publish("footfall/v1/s1/a1/window", b"\x00\xffnot json at all");
    c.broker.publish(
        "footfall/v1/s1/a1/window",
        wrong_schema.to_string().as_bytes(),
    );
    c.broker.publish(
        "footfall/v1/s1/a1/window",
        wrong_type.to_string().as_bytes(),
    );
    c.broker
        .publish("footfall/v1/s1/a1/day", &vec![b' '; 100_000]);
    c.broker.publish(
        "footfall/v1/s1/a1/window",
        other_store.to_string().as_bytes(),
    );
    // A conflict: a stored key with other counts.
    let mut conflict: serde_json::Value = serde_json::from_str(first[0]).unwrap();
    conflict["frames"] = (conflict["frames"].as_u64().unwrap() + 1).into();
    c.broker
        .publish("footfall/v1/s1/a1/window", conflict.to_string().as_bytes());
    std::thread::sleep(Duration::from_millis(1500));

    agent.term();
    gateway.term();
    c.broker.stop();
    c.assert_gateway_matches_reference("delivers_exactly_once_through_duplicates_and_junk");
    let dead = c.dead_letters();
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(dead.len(), 6, "{reasons:#?}");
    for want in [
        "not JSON",
        "schema",
        "invalid type",
        "larger than max_payload_bytes",
        "topic says s1/a1/window, payload says s2/a1/window",
        "conflict",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(want)),
            "no dead letter for {want:?}: {reasons:#?}"
        );
    }
    assert!(c.log("agent").contains("SIGTERM: stopping"));
    assert!(
        c.broker.retained("footfall/v1/s1/a1/status").is_none(),
        "broker stopped"
    );

    // Privacy: every MAC of the capture, searched in everything written.
    let macs = transmitters(&c.d().join("store.pcap")).unwrap();
    assert!(macs.len() > 500);
    let mut files = Vec::new();
    files_under(c.d(), &mut files);
    let mut searched = 0;
    for p in files
        .iter()
        .filter(|p| !p.ends_with("store.pcap") && !p.ends_with("payload.bin"))
    {
        let bytes = std::fs::read(p).unwrap();
        assert_eq!(
            find_mac(&bytes, &macs),
            None,
            "a fed MAC is in {}",
            p.display()
        );
        searched += 1;
    }
    assert!(searched > 10, "{searched} files searched");
    assert!(files.iter().any(|p| p.ends_with("mosquitto.log")));
}

/// A chain catching up at once: 10,000 windows from 40 stores over four
/// connections, more than the gateway's MQTT queues hold, while the broker
/// lets the gateway have only 20 acks of its own in flight. Every window
/// is stored once with its counts, and acked.
#[test]
fn a_burst_from_forty_stores_is_stored_and_acked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut broker = Broker::for_bursts(d);
    broker.start();
    let (storage, _pg) = footfall_tests::gateway_storage();
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            "{storage}[mqtt]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            broker.url(),
            footfall_tests::free_port()
        ),
    )
    .unwrap();
    let g = bin("footfall-gateway");
    let mut gateway = Proc::spawn(d, "gateway", &g, &["serve", "--config", "gateway.toml"]);
    wait_until(Duration::from_secs(20), "the gateway subscribes", || {
        footfall_tests::read_log(d, "gateway").contains("subscribing")
    });
    let reports: Vec<Report> = (0..40u64)
        .flat_map(|s| {
            (0..250u64).map(move |i| {
                let visits = (s * 7 + i) % 13;
                let ids = (0..u128::from(visits)).map(move |v| u128::from(s << 32 | i) << 64 | v);
                bench_window(format!("store-{s:02}"), i, 1_767_225_600, visits, ids)
            })
        })
        .collect();
    let secs = burst(broker.port, &reports, 10, Duration::from_secs(30)).unwrap();
    gateway.term();
    eprintln!("burst: {} reports acked in {secs:.1} s", reports.len());
    let sent: String = reports
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    let stored = counts_by_key(&gateway_report(d, "window"), true);
    assert_eq!(stored.len(), reports.len(), "windows stored vs sent");
    assert_eq!(stored, counts_by_key(&sent, true));
}

#[test]
fn broker_restarted_mid_stream() {
    // Eight days: the agent is still counting and publishing when the
    // broker goes away, right after the gateway's first committed batch.
    let mut c = Case::with_days("22", "8");
    c.broker.start();
    let mut gateway = c.gateway();
    let mut agent = c.agent();
    wait_until(Duration::from_secs(30), "a first batch", || {
        c.log("gateway").contains("batch committed")
    });
    c.broker.stop();
    assert!(
        !c.log("agent").contains("capture file read to its end"),
        "the agent finished before the restart"
    );
    std::thread::sleep(Duration::from_millis(1500));
    c.broker.start();
    c.wait_delivered();
    agent.term();
    gateway.term();
    c.assert_gateway_matches_reference("broker_restarted_mid_stream");
    assert!(c.dead_letters().is_empty());
}

#[test]
fn broker_down_for_the_whole_run_then_up() {
    let mut c = Case::new("23");
    let mut gateway = c.gateway();
    let mut agent = c.agent();
    wait_until(
        Duration::from_secs(30),
        "the agent to count its file",
        || c.log("agent").contains("capture file read to its end"),
    );
    std::thread::sleep(Duration::from_millis(500));
    c.broker.start();
    c.wait_delivered();
    agent.term();
    gateway.term();
    c.assert_gateway_matches_reference("broker_down_for_the_whole_run_then_up");
}

#[test]
fn gateway_down_then_up() {
    let mut c = Case::new("24");
    c.broker.start();
    let mut agent = c.agent();
    wait_until(
        Duration::from_secs(30),
        "the agent to count its file",
        || c.log("agent").contains("capture file read to its end"),
    );
    // Published with nobody subscribed: the broker drops them; the agent
    // keeps them until a gateway acks.
    std::thread::sleep(Duration::from_millis(1500));
    let status = c.broker.retained("footfall/v1/s1/a1/status").unwrap();
    assert!(status["outbox_pending"].as_u64().unwrap() > 100, "{status}");
    // The same, as a Prometheus metric on the agent's loopback port.
    let conf = std::fs::read_to_string(c.d().join("agent.toml")).unwrap();
    let listen = conf
        .split("listen = \"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let metrics = ureq::get(&format!("http://{listen}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let pending: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("footfall_outbox_pending "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(pending > 100, "{metrics}");
    assert!(metrics.contains("footfall_broker_connected 1"), "{metrics}");
    let mut gateway = c.gateway();
    c.wait_delivered();
    agent.term();
    gateway.term();
    c.assert_gateway_matches_reference("gateway_down_then_up");
}

#[test]
fn agent_killed_while_publishing_then_restarted() {
    let mut c = Case::new("25");
    c.broker.start();
    let mut gateway = c.gateway();
    for delay_ms in [150, 400] {
        let mut agent = c.agent();
        std::thread::sleep(Duration::from_millis(delay_ms));
        agent.kill9();
    }
    let mut agent = c.agent();
    c.wait_delivered();
    agent.term();
    gateway.term();
    c.assert_gateway_matches_reference("agent_killed_while_publishing_then_restarted");
    assert!(
        c.dead_letters().is_empty(),
        "a resent report conflicted: {:?}",
        c.dead_letters()
    );
}
