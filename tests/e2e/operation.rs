//! The gateway as IT runs it: report and ingest through a running
//! gateway, the embedded broker, TLS with per-store certificates, and
//! the agent's reports against the gateway's contract.

use super::*;

/// `report` and `ingest` while `serve` holds the store: they go through
/// its HTTP API. An agent's emit file (a box that was offline, a recount
/// at HQ) ingested twice is stored once.
#[test]
fn report_and_ingest_while_the_gateway_runs() {
    let mut c = Case::new("28");
    c.broker.start();
    let mut gateway = c.gateway();
    let mut agent = c.agent();
    c.wait_delivered();
    let g = bin("footfall-gateway");
    let live = run(
        c.d(),
        &g,
        &[
            "report",
            "--config",
            "gateway.toml",
            "--by",
            "window",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        counts_by_key(&live, true),
        counts_by_key(&c.reference, true)
    );

    // Another store's box, offline for good: its emit file comes by hand.
    let a = bin("footfall-agent");
    std::fs::write(
        c.d().join("s9.toml"),
        "[store]\nstore_id = \"s9\"\nagent_id = \"a1\"\n[storage]\npath = \"s9-state\"\n[privacy]\nmode = \"loyalty\"\n",
    )
    .unwrap();
    run(
        c.d(),
        &a,
        &[
            "replay",
            "--config",
            "s9.toml",
            "--emit",
            "s9.jsonl",
            "store.pcap",
        ],
    );
    let first = run(
        c.d(),
        &g,
        &["ingest", "--config", "gateway.toml", "s9.jsonl"],
    );
    let n = std::fs::read_to_string(c.d().join("s9.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        first.trim(),
        format!("ingested: {n} new, 0 already stored, 0 conflicts, 0 rejected (see dead-letters)")
    );
    let again = run(
        c.d(),
        &g,
        &["ingest", "--config", "gateway.toml", "s9.jsonl"],
    );
    assert_eq!(
        again.trim(),
        format!("ingested: 0 new, {n} already stored, 0 conflicts, 0 rejected (see dead-letters)")
    );
    let s9 = run(
        c.d(),
        &g,
        &[
            "report",
            "--config",
            "gateway.toml",
            "--by",
            "day",
            "--store",
            "s9",
            "--format",
            "csv",
        ],
    );
    assert_eq!(s9.lines().count(), 3, "{s9}");
    assert!(
        s9.starts_with("store_id,agent_id,date,visits,unique_visitors"),
        "{s9}"
    );
    let stores = run(
        c.d(),
        &g,
        &["stores", "--config", "gateway.toml", "--format", "json"],
    );
    assert!(
        stores.contains("\"store_id\":\"s1\"") && stores.contains("\"state\":\"online\""),
        "{stores}"
    );
    let live = c
        .broker
        .retained("footfall/v1/s1/a1/live")
        .expect("a retained live message");
    assert!(
        live["devices_present"].is_u64() && live["visits_today"].is_u64(),
        "{live}"
    );
    agent.term();
    // A clean stop says so, retained, for HQ to see.
    let status = c.broker.retained("footfall/v1/s1/a1/status").unwrap();
    assert_eq!(status["state"], "offline", "{status}");
    gateway.term();
    // And with the gateway stopped, straight from its store.
    let stopped = run(
        c.d(),
        &g,
        &[
            "report",
            "--config",
            "gateway.toml",
            "--by",
            "window",
            "--store",
            "s9",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        counts_by_key(&stopped, true).len(),
        counts_by_key(&c.reference, true).len()
    );
}

/// The single-box default: the gateway's embedded broker (rumqttd), no
/// Mosquitto at all.
#[test]
fn embedded_broker_delivers_with_no_broker_installed() {
    let c = Case::new("27");
    let d = c.d();
    // The Case's broker port is free and unused: the gateway takes it.
    let listen = format!("127.0.0.1:{}", c.broker.port);
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            "{}[broker]\nenabled = true\nlisten = \"{listen}\"\n{}",
            c.storage, c.http
        ),
    )
    .unwrap();
    let mut gateway = c.gateway();
    wait_until(Duration::from_secs(20), "the embedded broker", || {
        std::net::TcpStream::connect(&listen).is_ok()
    });
    let mut agent = c.agent();
    wait_until(Duration::from_secs(60), "every report acked", || {
        c.log("gateway").contains("batch committed")
            && c.log("agent").contains("capture file read to its end")
    });
    std::thread::sleep(Duration::from_secs(3));
    agent.term();
    gateway.term();
    assert!(
        c.log("agent").contains("outbox_pending=0"),
        "{}",
        c.log("agent")
    );
    c.assert_gateway_matches_reference("embedded_broker_delivers_with_no_broker_installed");
}

/// Production security: TLS with client certificates and the per-store ACL
/// from gateway/deploy. Store s1 delivers with its certificate; an agent
/// using s1's certificate to publish as store s2 is refused by the broker,
/// says so, and nothing of s2 is stored.
#[test]
fn a_store_certificate_cannot_publish_as_another_store() {
    let c = Case::new("26");
    let d = c.d();
    let mut broker = Broker::with_tls(d, &["footfall-gateway", "s1"]);
    broker.start();
    let url = format!("mqtts://localhost:{}", broker.port);
    let tls = |name: &str| {
        format!("ca_file = \"certs/ca.crt\"\ncert_file = \"certs/{name}.crt\"\nkey_file = \"certs/{name}.key\"\n")
    };
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            "{}{}[mqtt]\nurl = \"{url}\"\n{}",
            c.storage,
            c.http,
            tls("footfall-gateway")
        ),
    )
    .unwrap();
    let agent_toml = |store: &str, state: &str| {
        format!(
            "[store]\nstore_id = \"{store}\"\nagent_id = \"a1\"\n[capture]\nfile = \"store.pcap\"\n[storage]\npath = \"{state}\"\n\
             [privacy]\nmode = \"loyalty\"\nkey_file = \"{state}.key\"\n[mqtt]\nurl = \"{url}\"\nclient_id = \"{store}-{state}\"\nresend_s = 1\nstatus_interval_s = 1\n{}",
            tls("s1")
        )
    };
    std::fs::write(d.join("agent.toml"), agent_toml("s1", "agent-state")).unwrap();
    std::fs::write(d.join("impostor.toml"), agent_toml("s2", "impostor-state")).unwrap();
    let mut gateway = c.gateway();
    let mut agent = c.agent();
    let mut impostor = Proc::spawn(
        d,
        "impostor",
        &bin("footfall-agent"),
        &["run", "--config", "impostor.toml"],
    );
    wait_until(Duration::from_secs(60), "s1 delivered over TLS", || {
        footfall_tests::read_log(d, "gateway").contains("batch committed")
            && c.log("agent").contains("capture file read to its end")
    });
    wait_until(
        Duration::from_secs(60),
        "the broker to refuse the impostor",
        || c.log("impostor").contains("the broker refused a publish"),
    );
    std::thread::sleep(Duration::from_secs(3));
    agent.term();
    impostor.term();
    gateway.term();
    broker.stop();
    let g = bin("footfall-gateway");
    let s2 = run(
        d,
        &g,
        &[
            "report",
            "--config",
            "gateway.toml",
            "--by",
            "window",
            "--store",
            "s2",
            "--format",
            "json",
        ],
    );
    assert_eq!(s2.lines().count(), 0, "an impostor's report was stored");
    let s1 = run(
        d,
        &g,
        &[
            "report",
            "--config",
            "gateway.toml",
            "--by",
            "window",
            "--store",
            "s1",
            "--format",
            "json",
        ],
    );
    assert_eq!(counts_by_key(&s1, true), counts_by_key(&c.reference, true));
    assert!(
        c.log("impostor").contains("NotAuthorized"),
        "{}",
        c.log("impostor")
    );
}

/// Every line the agent emits is a report the gateway's types accept, with
/// a seq that only grows, windows without gaps, and sums that hold.
#[test]
fn agent_reports_parse_as_the_gateway_contract() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agent = bin("footfall-agent");
    let ok = Command::new(&agent)
        .args(["simulate", "--out", "s.pcap", "--days", "2", "--seed", "9"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        d.join("a.toml"),
        "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[storage]\npath = \"state\"\n[privacy]\nmode = \"loyalty\"\n",
    )
    .unwrap();
    let text = run(
        d,
        &agent,
        &["replay", "--config", "a.toml", "--emit", "-", "s.pcap"],
    );
    let reports: Vec<Report> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        reports
            .iter()
            .filter(|r| matches!(r, Report::Day(_)))
            .count(),
        2
    );
    let starts: Vec<i64> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Window(w) => Some(w.window_start),
            _ => None,
        })
        .collect();
    assert!(starts.len() > 100, "{} windows", starts.len());
    assert!(starts.windows(2).all(|p| p[1] == p[0] + 900));
    for pair in reports.windows(2) {
        assert!(pair[1].seq() > pair[0].seq());
    }
}
