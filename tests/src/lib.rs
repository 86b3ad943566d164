//! Helpers for the end-to-end tests in `tests.rs` and the agent's own
//! integration tests: a real Mosquitto on a free loopback port, the built
//! binaries as child processes with their logs in files, polling on
//! retained MQTT status, the privacy audit (`audit`), and `require`, which
//! turns a skip into a failure when `FOOTFALL_REQUIRE` asks for the part.

pub mod audit;
pub mod postgres;
pub mod require;

pub use require::{required, shared_data, skip};

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A binary of the workspace, built by `cargo build --workspace --bins`
/// (scripts/test does that before the tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `[storage]` table of a test gateway: sled in its directory, or,
/// when `FOOTFALL_E2E_STORAGE=postgres`, a database of a throwaway
/// PostgreSQL server (issue 19: `scripts/test` runs the end-to-end suite
/// once on each engine). Keep the server (the second value) as long as
/// the gateway runs; `None` with sled. A machine without PostgreSQL falls
/// back to sled after saying so, unless `FOOTFALL_REQUIRE` names postgres.
pub fn gateway_storage() -> (String, Option<postgres::Postgres>) {
    if std::env::var("FOOTFALL_E2E_STORAGE").as_deref() == Ok("postgres") {
        if let Some(pg) = postgres::Postgres::start() {
            let url = pg.database("footfall");
            return (format!("[storage]\nurl = \"{url}\"\n"), Some(pg));
        }
    }
    ("[storage]\npath = \"gateway-state\"\n".into(), None)
}

/// A child process whose output goes to `<dir>/<name>.log`.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
}

impl Proc {
    /// Logs at debug level, for a test that fails to show why.
    pub fn spawn(dir: &Path, name: &str, program: &Path, args: &[&str]) -> Proc {
        Proc::spawn_logging(dir, name, program, args, "debug")
    }

    /// `spawn` with `FOOTFALL_LOG` set to `filter`: a bench runs what a
    /// user runs (`info`), as debug logging was a third of a gateway's
    /// time at 20 k reports/s.
    pub fn spawn_logging(
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[&str],
        filter: &str,
    ) -> Proc {
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("FOOTFALL_LOG", filter)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        Proc {
            name: name.into(),
            child: Some(child),
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn term(&mut self) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(s) = c.try_wait().unwrap() {
                    assert!(s.success(), "{} exited with {s}", self.name);
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not stop on SIGTERM",
                    self.name
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL: no chance to save anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Mosquitto on a free loopback port, anonymous, no persistence (so a
/// restart loses every session and queued message: the worst case).
pub struct Broker {
    pub port: u16,
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Broker {
    pub fn new(dir: &Path) -> Broker {
        Broker::anonymous(dir, "log_type all\n")
    }

    /// An anonymous loopback broker; `extra` is the rest of its config.
    fn anonymous(dir: &Path, extra: &str) -> Broker {
        let port = free_port();
        std::fs::write(
            dir.join("mosquitto.conf"),
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stdout\n{extra}"),
        )
        .unwrap();
        Broker {
            port,
            dir: dir.to_path_buf(),
            proc: None,
        }
    }

    /// Mosquitto with footfall's production config (gateway/deploy): TLS
    /// with client certificates and the per-store ACL, certificates made
    /// by gateway/deploy/make-certs for `clients` in `<dir>/certs`.
    pub fn with_tls(dir: &Path, clients: &[&str]) -> Broker {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/deploy");
        let certs = dir.join("certs");
        let mut args = vec![certs.to_str().unwrap()];
        args.extend_from_slice(clients);
        let ok = Command::new(deploy.join("make-certs"))
            .args(&args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "make-certs failed");
        // The broker may drop root; let it read its own key in this test.
        std::fs::set_permissions(
            certs.join("broker.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        std::fs::copy(deploy.join("acl"), certs.join("acl")).unwrap();
        let port = free_port();
        let conf = std::fs::read_to_string(deploy.join("mosquitto.conf"))
            .unwrap()
            .replace("/etc/mosquitto/footfall", certs.to_str().unwrap())
            .replace("listener 8883", &format!("listener {port} 127.0.0.1"))
            .replace("persistence true", "persistence false");
        std::fs::write(
            dir.join("mosquitto.conf"),
            conf + "log_dest stdout\nlog_type all\n",
        )
        .unwrap();
        Broker {
            port,
            dir: dir.to_path_buf(),
            proc: None,
        }
    }

    /// As `new`, with the queues of gateway/deploy/mosquitto.conf (the
    /// default of 1000 queued messages per client drops QoS 1 reports in a
    /// burst) and no per-message log, for bursts of thousands of reports.
    pub fn for_bursts(dir: &Path) -> Broker {
        Broker::anonymous(dir, "max_queued_messages 100000\nlog_type error\n")
    }

    pub fn start(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        self.proc = Some(Proc::spawn(
            &self.dir,
            "mosquitto",
            Path::new(&mosquitto()),
            &["-c", conf.to_str().unwrap()],
        ));
        wait_until(Duration::from_secs(10), "mosquitto listening", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Publishes one message with mosquitto_pub.
    pub fn publish(&self, topic: &str, payload: &[u8]) {
        let path = self.dir.join("payload.bin");
        std::fs::write(&path, payload).unwrap();
        let ok = Command::new("mosquitto_pub")
            .args([
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
                "-f",
                path.to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// The retained message on `topic`, if any.
    pub fn retained(&self, topic: &str) -> Option<Value> {
        let out = Command::new("mosquitto_sub")
            .args([
                "-p",
                &self.port.to_string(),
                "-t",
                topic,
                "-C",
                "1",
                "-W",
                "1",
                "--retained-only",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }
}

fn mosquitto() -> String {
    for p in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    "mosquitto".into()
}

pub fn wait_until(timeout: Duration, what: &str, ok: impl FnMut() -> bool) {
    wait_until_or(timeout, ok, || format!("timed out waiting for {what}"));
}

/// `wait_until`, failing with what `explain` says then (what a process
/// logged instead, say).
pub fn wait_until_or(
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() >= deadline {
            panic!("{}", explain());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `<dir>/<name>.log` as `Proc` writes it, read lossily: one stray byte
/// must not make the whole log read as empty to a test waiting for a
/// line in it. Empty while the file does not exist yet.
pub fn read_log(dir: &Path, name: &str) -> String {
    let bytes = std::fs::read(dir.join(format!("{name}.log"))).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs a binary to completion; panics with its stderr on failure.
pub fn run(dir: &Path, program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Counts of each report by key, from JSON lines of agent reports (emit
/// files) or of `footfall-gateway report --format json`: the summable
/// counts of `footfall_report` (`WindowSums`, `DayCounts`), so both sides
/// compare whatever fields they gain.
pub fn counts_by_key(jsonl: &str, windows: bool) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let is_window = v.get("window_start").is_some();
        // Store `*` is the gateway's chain-wide aggregate, not a report.
        if is_window != windows || v["store_id"] == "*" {
            continue;
        }
        let period = if windows {
            v["window_start"].to_string()
        } else {
            v["date"].to_string()
        };
        let key = format!("{}/{}/{period}", v["store_id"], v["agent_id"]);
        let counts = if windows {
            let c: footfall_report::WindowSums = serde_json::from_value(v).unwrap();
            serde_json::to_value(c).unwrap()
        } else {
            let c: footfall_report::DayCounts = serde_json::from_value(v).unwrap();
            serde_json::to_value(c).unwrap()
        };
        assert!(out.insert(key.clone(), counts).is_none(), "{key} twice");
    }
    out
}

/// The value after `--name` on the command line (for the benches).
pub fn bench_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// A plausible window report of agent `a1` for the benches: window `i`
/// from `day0_s`, with `visits` visitors whose ids are `visitor_ids`.
pub fn bench_window(
    store_id: String,
    i: u64,
    day0_s: i64,
    visits: u64,
    visitor_ids: impl IntoIterator<Item = u128>,
) -> footfall_report::Report {
    use footfall_report::{testing, Report};
    let mut w = testing::window(&store_id, "a1", day0_s + i as i64 * 900, 900);
    let mut sketch = footfall_report::Sketch::new();
    for id in visitor_ids {
        sketch.insert(id);
    }
    w.visitor_sketch = Some(sketch);
    w.seq = i;
    w.frames = visits * 300;
    w.detected = Some(visits * 3);
    w.visits = Some(visits);
    w.visitors = Some(visits);
    w.visitors_new = Some(visits / 2);
    w.visitors_returning = Some(visits / 4);
    w.visitors_randomized = Some(visits - visits / 2 - visits / 4);
    w.passersby = Some(visits * 2);
    w.dwell_counts = Some(vec![0, visits / 2, visits - visits / 2, 0, 0, 0]);
    w.dwell_sum_s = Some(visits * 900);
    w.agent_version = "bench".into();
    w.params_hash = "bench".into();
    Report::Window(w)
}

/// Publishes `reports` (QoS 1, in order) from one MQTT connection per
/// `stores_per_connection` stores, as that many store boxes would, and
/// waits until SPEC §6 acks name every one. `Ok` is the seconds from the
/// first publish to the last ack; `Err` says how many were acked when no
/// ack came for `patience`.
pub fn burst(
    port: u16,
    reports: &[footfall_report::Report],
    stores_per_connection: usize,
    patience: Duration,
) -> Result<f64, String> {
    use footfall_report::topic::{topic, Kind};
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

    let mut by_connection: BTreeMap<usize, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut stores: BTreeMap<String, usize> = BTreeMap::new();
    let mut want = std::collections::HashSet::new();
    for r in reports {
        let key = r.key();
        let next = stores.len();
        let n = *stores.entry(key.store_id.clone()).or_insert(next) / stores_per_connection.max(1);
        let payload = serde_json::to_vec(r).expect("a report serializes");
        by_connection
            .entry(n)
            .or_default()
            .push((topic(&key.store_id, &key.agent_id, r.kind()), payload));
        want.insert((key.store_id, r.seq()));
    }
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(async move {
        // Subscribed to the acks before anything is sent, so none is missed.
        let mut opts = MqttOptions::new("burst-acks", "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (acks, mut ack_loop) = AsyncClient::new(opts, 1024);
        acks.subscribe(
            format!("{}/+/+/{}", footfall_report::topic::PREFIX, Kind::Ack),
            QoS::AtLeastOnce,
        )
        .await
        .map_err(|e| e.to_string())?;
        loop {
            match ack_loop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("ack client: {e}")),
            }
        }
        let started = Instant::now();
        for (n, messages) in by_connection {
            let mut opts = MqttOptions::new(format!("burst-agent-{n}"), "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(30))
                .set_inflight(100);
            let (client, mut events) = AsyncClient::new(opts, 1024);
            tokio::spawn(async move { while events.poll().await.is_ok() {} });
            tokio::spawn(async move {
                for (topic, payload) in messages {
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        let mut acked = std::collections::HashSet::new();
        // Pings keep the ack client busy, so the patience runs from the
        // last ack, not from the last event.
        let mut last_ack = Instant::now();
        while !want.is_subset(&acked) {
            let left = patience.saturating_sub(last_ack.elapsed());
            match tokio::time::timeout(left, ack_loop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    last_ack = Instant::now();
                    let store = p.topic.split('/').nth(2).unwrap_or_default().to_string();
                    let ack: footfall_report::Ack = serde_json::from_slice(&p.payload)
                        .map_err(|e| format!("an ack that is not one: {e}"))?;
                    acked.extend(ack.seqs.into_iter().map(|s| (store.clone(), s)));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("ack client: {e}")),
                Err(_) => {
                    let got = want.intersection(&acked).count();
                    return Err(format!(
                        "no ack for {patience:?}; {got} of {} acked",
                        want.len()
                    ));
                }
            }
        }
        Ok(started.elapsed().as_secs_f64())
    })
}
