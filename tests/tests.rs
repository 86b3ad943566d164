//! End to end, against a real Mosquitto: a `simulate` capture goes through
//! agent → broker → gateway, and the gateway's windows and days must equal
//! what the agent's `replay` of the same capture emits, under each fault of
//! issue #4. Zero lost, zero duplicated, and no raw MAC anywhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use footfall_report::Report;
use footfall_tests::audit::{find_mac, transmitters};
use footfall_tests::{bench_window, bin, burst, counts_by_key, run, wait_until, Broker, Proc};
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
    /// Asserts the gateway stored exactly the reference's windows and days,
    /// then prints how many and what the gateway counted, under `test`.
    fn assert_gateway_matches_reference(&self, test: &str) {
        let windows = gateway_report(self.d(), "window");
        let days = gateway_report(self.d(), "day");
        let (ref_w, ref_d) = (
            counts_by_key(&self.reference, true),
            counts_by_key(&self.reference, false),
        );
        let (got_w, got_d) = (counts_by_key(&windows, true), counts_by_key(&days, false));
        assert!(ref_w.len() > 100 && ref_d.len() >= 2);
        assert_eq!(got_w.len(), ref_w.len(), "windows stored vs sent");
        assert_eq!(got_w, ref_w);
        assert_eq!(got_d, ref_d);
        println!(
            "{test}: {} windows and days equal to the reference; {}",
            ref_w.len() + ref_d.len(),
            self.tally()
        );
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

/// The gateway's reports in `dir` (`gateway.toml`, the gateway stopped),
/// `--by window|day`, as JSON lines.
fn gateway_report(dir: &Path, by: &str) -> String {
    let args = [
        "report",
        "--config",
        "gateway.toml",
        "--by",
        by,
        "--format",
        "json",
    ];
    run(dir, &bin("footfall-gateway"), &args)
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
    std::fs::write(
        d.join("gateway.toml"),
        format!(
            "[storage]\npath = \"gateway-state\"\n[mqtt]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:{}\"\n",
            broker.url(),
            footfall_tests::free_port()
        ),
    )
    .unwrap();
    let g = bin("footfall-gateway");
    let mut gateway = Proc::spawn(d, "gateway", &g, &["serve", "--config", "gateway.toml"]);
    wait_until(Duration::from_secs(20), "the gateway subscribes", || {
        std::fs::read_to_string(d.join("gateway.log")).is_ok_and(|l| l.contains("subscribing"))
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

/// Chromium (Debian's), headless, with the flags this machine needs.
fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn browse(chrome: &Path, profile: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    Command::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(extra)
        .arg(url)
        .output()
        .unwrap()
}

/// `data-field` → `data-value` of every number a page shows.
fn shown_values(dom: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in dom.split("data-field=\"").skip(1) {
        let field = part.split('"').next().unwrap_or_default().to_string();
        let value = part
            .split("data-value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or_default()
            .to_string();
        out.push((field, value));
    }
    out
}

fn close(shown: &str, api: &serde_json::Value) -> bool {
    match (shown.parse::<f64>(), api.as_f64()) {
        (Ok(a), Some(b)) => (a - b).abs() < 1e-6,
        (Err(_), None) => shown.is_empty() && api.is_null(),
        _ => false,
    }
}

/// The dashboard in a real headless Chromium: each page loads without an
/// error, shows the numbers the API returns for a known data set, and is
/// photographed into target/screenshots/ for a person to look at.
#[test]
fn dashboard_pages_show_the_api_numbers_in_chromium() {
    let Some(chrome) = chromium() else {
        footfall_tests::skip(
            "chromium",
            "Debian's chromium is not installed (scripts/test installs it)",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agent = bin("footfall-agent");
    let g = bin("footfall-gateway");
    // Three stores, five weeks; store A had a campaign week with +50 %.
    for (store, seed, uplift) in [("A", "31", true), ("B", "32", false), ("C", "33", false)] {
        let mut args = vec![
            "simulate",
            "--out",
            "s.pcap",
            "--days",
            "36",
            "--start",
            "2026-09-07",
            "--seed",
            seed,
            "--visitors-per-day",
            "60",
            "--passersby-per-day",
            "80",
        ];
        if uplift {
            args.extend([
                "--uplift",
                "0.5",
                "--uplift-from",
                "2026-10-05",
                "--uplift-to",
                "2026-10-11",
            ]);
        }
        run(d, &agent, &args);
        std::fs::write(d.join("a.toml"), format!("[store]\nstore_id = \"{store}\"\nagent_id = \"door\"\n[storage]\npath = \"{store}-state\"\n")).unwrap();
        run(
            d,
            &agent,
            &[
                "replay",
                "--config",
                "a.toml",
                "--emit",
                &format!("{store}.jsonl"),
                "s.pcap",
            ],
        );
    }
    let http = format!("127.0.0.1:{}", footfall_tests::free_port());
    let mqtt = format!("127.0.0.1:{}", footfall_tests::free_port());
    std::fs::write(
        d.join("gateway.toml"),
        format!("[storage]\npath = \"gateway-state\"\n[broker]\nenabled = true\nlisten = \"{mqtt}\"\n[http]\nlisten = \"{http}\"\n"),
    )
    .unwrap();
    run(
        d,
        &g,
        &[
            "ingest",
            "--config",
            "gateway.toml",
            "A.jsonl",
            "B.jsonl",
            "C.jsonl",
        ],
    );
    std::fs::write(
        d.join("c.csv"),
        "campaign_id,name,channel,start,end,stores,impressions,reach,spend\nfall,Fall promo,social,2026-10-05,2026-10-12,A,200000,80000,3000\n",
    )
    .unwrap();
    run(
        d,
        &g,
        &["campaigns", "import", "--config", "gateway.toml", "c.csv"],
    );
    let mut gateway = Proc::spawn(d, "gateway", &g, &["serve", "--config", "gateway.toml"]);
    wait_until(Duration::from_secs(20), "the gateway's API", || {
        std::net::TcpStream::connect(&http).is_ok()
    });
    let api = |path: &str| -> Vec<serde_json::Value> {
        let text = ureq::get(&format!("http://{http}{path}"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = d.join("chromium-profile");
    let report = &api("/api/v1/campaign-report?campaign=fall")[0];
    let lift = report["lift"].as_f64().unwrap();
    assert!(lift > 0.25, "the +50 % week shows as lift {lift}");
    for (name, hash) in [
        ("overview", "#/"),
        ("store-A", "#/store/A"),
        ("campaign-fall", "#/campaign/fall"),
    ] {
        let url = format!("http://{http}/{hash}");
        let out = browse(&chrome, &profile, &url, &["--dump-dom"]);
        let dom = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            dom.contains("data-ready=\"1\""),
            "{name}: page did not finish: {dom}\n{stderr}"
        );
        assert!(
            dom.contains("<pre id=\"errors\" hidden=\"\"></pre>"),
            "{name}: errors on the page: {dom}"
        );
        assert!(!stderr.contains("Uncaught"), "{name}: {stderr}");
        let values = shown_values(&dom);
        assert!(values.len() >= 4, "{name}: {values:?}");
        match name {
            "campaign-fall" => {
                for (field, shown) in &values {
                    if let Some(f) = field.strip_prefix("funnel_") {
                        let key = if f == "returning" {
                            "visitors_returning"
                        } else {
                            f
                        };
                        assert!(
                            close(shown, &report[key]),
                            "{name}: {field} shows {shown}, API {}",
                            report[key]
                        );
                    }
                }
                // The eight tiles come first, then the per-store rows.
                let tiles: Vec<&(String, String)> = values.iter().take(8).collect();
                for (field, shown) in tiles {
                    assert!(
                        close(shown, &report[field.as_str()]),
                        "{name}: tile {field} shows {shown}, API {}",
                        report[field.as_str()]
                    );
                }
                let store_lift = values.iter().filter(|(f, _)| f == "lift").nth(1).unwrap();
                assert!(close(&store_lift.1, &report["stores"][0]["lift"]));
            }
            "store-A" => {
                let days: Vec<_> = api("/api/v1/footfall?interval=day&store=A")
                    .into_iter()
                    .filter(|r| r["store_id"] == "A")
                    .collect();
                let last = days.last().unwrap();
                let get = |f: &str| values.iter().find(|(k, _)| k == f).unwrap().1.clone();
                assert!(close(&get("visits_last_day"), &last["visits"]));
                assert!(close(&get("unique_last_day"), &last["unique_visitors"]));
                assert!(close(
                    &get("returning_last_day"),
                    &last["visitors_returning"]
                ));
            }
            _ => {
                // Ingested only: known from their reports, state unknown.
                let stores = api("/api/v1/stores");
                assert_eq!(stores.len(), 3, "{stores:?}");
                for s in &stores {
                    let row = values.iter().filter(|(f, _)| f == "visits_7d").count();
                    assert_eq!(row, 3);
                    assert_eq!(s["state"], "unknown");
                }
                let days: Vec<_> = api("/api/v1/footfall?interval=day")
                    .into_iter()
                    .filter(|r| r["store_id"] != "*")
                    .collect();
                let last = days
                    .iter()
                    .filter_map(|r| r["date"].as_str())
                    .max()
                    .unwrap()
                    .to_string();
                let chain_last: u64 = days
                    .iter()
                    .filter(|r| r["date"] == last.as_str())
                    .map(|r| r["visits"].as_u64().unwrap())
                    .sum();
                let get = |f: &str| values.iter().find(|(k, _)| k == f).unwrap().1.clone();
                assert_eq!(get("chain_visits_last_day"), chain_last.to_string());
            }
        }
        let png = shots.join(format!("{name}.png"));
        let _ = std::fs::remove_file(&png);
        let out = browse(
            &chrome,
            &profile,
            &url,
            &[
                &format!("--screenshot={}", png.display()),
                "--window-size=1400,1700",
            ],
        );
        assert!(
            png.is_file(),
            "{name}: no screenshot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("screenshot: {}", png.display());
    }
    gateway.term();
}
