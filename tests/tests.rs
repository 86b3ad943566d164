//! End to end, against a real Mosquitto: a `simulate` capture goes through
//! agent → broker → gateway, and the gateway's windows and days must equal
//! what the agent's `replay` of the same capture emits, under each fault of
//! issue #4. Zero lost, zero duplicated, and no raw MAC anywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use footfall_agent::privacy::{find_mac, transmitters};
use footfall_report::Report;
use footfall_tests::{bin, counts_by_key, run, wait_until, Broker, Proc};
use std::process::Command;

struct Case {
    dir: tempfile::TempDir,
    broker: Broker,
    reference: String,
    /// `[http]` table for a gateway config: a free port of its own.
    http: String,
}

impl Case {
    /// A capture, its reference reports (replay), and configs for an agent
    /// and a gateway on a fresh broker port (the broker is not started).
    fn new(seed: &str) -> Case {
        Case::with_days(seed, "2")
    }

    fn with_days(seed: &str, days: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let agent = bin("footfall-agent");
        run(
            d,
            &agent,
            &[
                "simulate",
                "--out",
                "store.pcap",
                "--days",
                days,
                "--seed",
                seed,
            ],
        );
        std::fs::write(
            d.join("ref.toml"),
            "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[storage]\npath = \"ref-state\"\n",
        )
        .unwrap();
        let reference = run(
            d,
            &agent,
            &[
                "replay",
                "--config",
                "ref.toml",
                "--emit",
                "-",
                "store.pcap",
            ],
        );
        let broker = Broker::new(d);
        std::fs::write(
            d.join("agent.toml"),
            format!(
                "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[capture]\nfile = \"store.pcap\"\n[storage]\npath = \"agent-state\"\n\
                 [mqtt]\nurl = \"{}\"\nresend_s = 1\nstatus_interval_s = 1\nlive_interval_s = 1\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
                broker.url(),
                footfall_tests::free_port()
            ),
        )
        .unwrap();
        let http = format!(
            "[http]\nlisten = \"127.0.0.1:{}\"\n",
            footfall_tests::free_port()
        );
        std::fs::write(
            d.join("gateway.toml"),
            format!(
                "[storage]\npath = \"gateway-state\"\n[mqtt]\nurl = \"{}\"\n{http}",
                broker.url()
            ),
        )
        .unwrap();
        Case {
            dir,
            broker,
            reference,
            http,
        }
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn agent(&self) -> Proc {
        Proc::spawn(
            self.d(),
            "agent",
            &bin("footfall-agent"),
            &["run", "--config", "agent.toml"],
        )
    }

    fn gateway(&self) -> Proc {
        Proc::spawn(
            self.d(),
            "gateway",
            &bin("footfall-gateway"),
            &["serve", "--config", "gateway.toml"],
        )
    }

    /// Waits until the agent says (retained status) its file is counted and
    /// the gateway has acked everything.
    fn wait_delivered(&self) {
        wait_until(Duration::from_secs(90), "every report acked", || {
            self.broker
                .retained("footfall/v1/s1/a1/status")
                .is_some_and(|s| {
                    s["state"] == "online"
                        && s["capture_finished"] == true
                        && s["outbox_pending"] == 0
                })
        });
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.d().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// With the gateway stopped: its windows and days equal the reference.
    fn assert_gateway_matches_reference(&self) {
        let g = bin("footfall-gateway");
        let windows = run(
            self.d(),
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
        let days = run(
            self.d(),
            &g,
            &[
                "report",
                "--config",
                "gateway.toml",
                "--by",
                "day",
                "--format",
                "json",
            ],
        );
        let (ref_w, ref_d) = (
            counts_by_key(&self.reference, true),
            counts_by_key(&self.reference, false),
        );
        let (got_w, got_d) = (counts_by_key(&windows, true), counts_by_key(&days, false));
        assert!(ref_w.len() > 100 && ref_d.len() >= 2);
        assert_eq!(got_w.len(), ref_w.len(), "windows stored vs sent");
        assert_eq!(got_w, ref_w);
        assert_eq!(got_d, ref_d);
    }

    /// What the gateway counted over its runs (logged when it stops), and
    /// the agent's kills and resends, for the fault matrix.
    fn tally(&self) -> String {
        let log = self.log("gateway");
        let totals: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split("stopped total=").nth(1))
            .collect();
        format!("gateway {}", totals.join(" + "))
    }

    fn dead_letters(&self) -> Vec<serde_json::Value> {
        run(
            self.d(),
            &bin("footfall-gateway"),
            &["dead-letters", "--config", "gateway.toml"],
        )
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

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
    c.assert_gateway_matches_reference();
    println!("delivers_exactly_once_through_duplicates_and_junk: {} windows and days equal to the reference; {}", counts_by_key(&c.reference, true).len() + counts_by_key(&c.reference, false).len(), c.tally());
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
    c.assert_gateway_matches_reference();
    println!(
        "broker_restarted_mid_stream: {} windows and days equal to the reference; {}",
        counts_by_key(&c.reference, true).len() + counts_by_key(&c.reference, false).len(),
        c.tally()
    );
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
    c.assert_gateway_matches_reference();
    println!(
        "broker_down_for_the_whole_run_then_up: {} windows and days equal to the reference; {}",
        counts_by_key(&c.reference, true).len() + counts_by_key(&c.reference, false).len(),
        c.tally()
    );
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
    c.assert_gateway_matches_reference();
    println!(
        "gateway_down_then_up: {} windows and days equal to the reference; {}",
        counts_by_key(&c.reference, true).len() + counts_by_key(&c.reference, false).len(),
        c.tally()
    );
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
    c.assert_gateway_matches_reference();
    println!("agent_killed_while_publishing_then_restarted: {} windows and days equal to the reference; {}", counts_by_key(&c.reference, true).len() + counts_by_key(&c.reference, false).len(), c.tally());
    assert!(
        c.dead_letters().is_empty(),
        "a resent report conflicted: {:?}",
        c.dead_letters()
    );
}

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
        "[store]\nstore_id = \"s9\"\nagent_id = \"a1\"\n[storage]\npath = \"s9-state\"\n",
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
    std::fs::write(d.join("gateway.toml"), format!("[storage]\npath = \"gateway-state\"\n[broker]\nenabled = true\nlisten = \"{listen}\"\n{}", c.http)).unwrap();
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
    c.assert_gateway_matches_reference();
    println!("embedded_broker_delivers_with_no_broker_installed: {} windows and days equal to the reference; {}", counts_by_key(&c.reference, true).len() + counts_by_key(&c.reference, false).len(), c.tally());
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
            "[storage]\npath = \"gateway-state\"\n{}[mqtt]\nurl = \"{url}\"\n{}",
            c.http,
            tls("footfall-gateway")
        ),
    )
    .unwrap();
    let agent_toml = |store: &str, state: &str| {
        format!(
            "[store]\nstore_id = \"{store}\"\nagent_id = \"a1\"\n[capture]\nfile = \"store.pcap\"\n[storage]\npath = \"{state}\"\n\
             [privacy]\nkey_file = \"{state}.key\"\n[mqtt]\nurl = \"{url}\"\nclient_id = \"{store}-{state}\"\nresend_s = 1\nstatus_interval_s = 1\n{}",
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
        std::fs::read_to_string(d.join("gateway.log")).is_ok_and(|l| l.contains("batch committed"))
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
        "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[storage]\npath = \"state\"\n",
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
