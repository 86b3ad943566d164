//! HQ for a chain (issue 19): two gateways on one PostgreSQL database take
//! the stores' reports in turn through an MQTT v5 shared subscription on
//! Mosquitto. One is killed with -9 mid-stream, or the broker is restarted;
//! every store's reports are stored once and equal its agent's `replay`,
//! and either gateway answers the API alike. Then the database's own
//! faults: restarted, read-only, refusing the gateway's password, or out
//! of disk, for a while.

use super::*;
use footfall_tests::postgres::Postgres;

const STORES: [&str; 3] = ["n1", "n2", "n3"];

fn gateway_toml(d: &Path, name: &str, url: &str, broker: &Broker) -> u16 {
    let http = footfall_tests::free_port();
    std::fs::write(
        d.join(format!("{name}.toml")),
        format!(
            "[storage]\nurl = \"{url}\"\n[mqtt]\nurl = \"{}\"\nclient_id = \"{name}\"\n\
             share_group = \"hq\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n",
            broker.url()
        ),
    )
    .unwrap();
    http
}

fn api(port: u16, path: &str) -> String {
    ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// A `Case` (capture, reference, agent config) whose gateway keeps its
/// reports in the database at `url`, its broker started; and the
/// gateway's HTTP port.
fn case_on_postgres(url: &str, seed: &str) -> (Case, u16) {
    let c = Case::with_days(seed, "3");
    let http = footfall_tests::free_port();
    std::fs::write(
        c.d().join("gateway.toml"),
        format!(
            "[storage]\nurl = \"{url}\"\n[mqtt]\nurl = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n",
            c.broker.url()
        ),
    )
    .unwrap();
    let mut broker = c.broker;
    broker.start();
    (Case { broker, ..c }, http)
}

/// The gateway's `/metrics` on `port`.
fn metrics(port: u16) -> String {
    api(port, "/metrics")
}

/// What goes wrong mid-stream under two gateways.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Fault {
    /// One gateway killed with -9 (started again at the end, to compare
    /// the two APIs).
    KillAGateway,
    /// The broker killed and started again: both gateways reconnect and
    /// subscribe again, the agents send again what was not acked.
    RestartTheBroker,
}

#[test]
fn two_gateways_share_the_stores_and_one_killed_loses_nothing() {
    two_gateways_through(Fault::KillAGateway);
}

#[test]
fn two_gateways_share_the_stores_through_a_broker_restart() {
    two_gateways_through(Fault::RestartTheBroker);
}

fn two_gateways_through(fault: Fault) {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let url = pg.database("chain");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agent = bin("footfall-agent");
    let mut reference = String::new();
    for (i, store) in STORES.iter().enumerate() {
        let seed = (31 + i).to_string();
        run(
            d,
            &agent,
            &[
                "simulate",
                "--out",
                &format!("{store}.pcap"),
                "--days",
                "2",
                "--seed",
                &seed,
            ],
        );
        std::fs::write(
            d.join(format!("{store}-ref.toml")),
            format!(
                "[store]\nstore_id = \"{store}\"\nagent_id = \"a1\"\n[storage]\npath = \"{store}-ref\"\n\
                 [privacy]\nmode = \"loyalty\"\nkey_file = \"{store}-ref.key\"\n"
            ),
        )
        .unwrap();
        reference += &run(
            d,
            &agent,
            &[
                "replay",
                "--config",
                &format!("{store}-ref.toml"),
                "--emit",
                "-",
                &format!("{store}.pcap"),
            ],
        );
    }
    let mut broker = Broker::new(d);
    broker.start();
    let http1 = gateway_toml(d, "gw1", &url, &broker);
    let http2 = gateway_toml(d, "gw2", &url, &broker);
    let g = bin("footfall-gateway");
    let mut gw1 = Proc::spawn(d, "gw1", &g, &["serve", "--config", "gw1.toml"]);
    let mut gw2 = Proc::spawn(d, "gw2", &g, &["serve", "--config", "gw2.toml"]);
    let log = |name: &str| footfall_tests::read_log(d, name);
    wait_until(Duration::from_secs(30), "both gateways subscribe", || {
        log("gw1").contains("subscribing") && log("gw2").contains("subscribing")
    });
    let mut agents = Vec::new();
    for store in STORES {
        std::fs::write(
            d.join(format!("{store}.toml")),
            format!(
                "[store]\nstore_id = \"{store}\"\nagent_id = \"a1\"\n[capture]\nfile = \"{store}.pcap\"\n\
                 [storage]\npath = \"{store}-state\"\n[privacy]\nmode = \"loyalty\"\nkey_file = \"{store}.key\"\n\
                 [mqtt]\nurl = \"{}\"\nresend_s = 1\nstatus_interval_s = 1\n",
                broker.url()
            ),
        )
        .unwrap();
        agents.push(Proc::spawn(
            d,
            store,
            &agent,
            &["run", "--config", &format!("{store}.toml")],
        ));
    }
    // Both take a share of the stream; then one dies mid-stream.
    wait_until(
        Duration::from_secs(60),
        "both gateways commit reports",
        || log("gw1").contains("batch committed") && log("gw2").contains("batch committed"),
    );
    match fault {
        Fault::KillAGateway => gw1.kill9(),
        Fault::RestartTheBroker => {
            broker.stop();
            std::thread::sleep(Duration::from_secs(1));
            broker.start();
        }
    }
    wait_until(
        Duration::from_secs(120),
        "every store's reports acked",
        || {
            STORES.iter().all(|s| {
                broker
                    .retained(&format!("footfall/v1/{s}/a1/status"))
                    .is_some_and(|v| v["capture_finished"] == true && v["outbox_pending"] == 0)
            })
        },
    );
    if fault == Fault::KillAGateway {
        gw1 = Proc::spawn(d, "gw1", &g, &["serve", "--config", "gw1.toml"]);
    }
    wait_until(Duration::from_secs(30), "gw1 serves", || {
        std::net::TcpStream::connect(("127.0.0.1", http1)).is_ok()
    });
    // Any gateway answers the API, the same (read with the agents
    // stopped: their statuses move `last_seen` every second).
    for a in &mut agents {
        a.term();
    }
    std::thread::sleep(Duration::from_secs(2));
    for path in ["/api/v1/footfall?interval=day", "/api/v1/stores"] {
        let (a, b) = (api(http1, path), api(http2, path));
        assert_eq!(a, b, "{path} differs between the gateways");
        assert!(STORES.iter().all(|s| a.contains(s)), "{path}: {a}");
    }
    gw1.term();
    gw2.term();
    let windows = run(
        d,
        &g,
        &[
            "report", "--config", "gw2.toml", "--by", "window", "--format", "json",
        ],
    );
    let days = run(
        d,
        &g,
        &[
            "report", "--config", "gw2.toml", "--by", "day", "--format", "json",
        ],
    );
    let (ref_w, ref_d) = (
        counts_by_key(&reference, true),
        counts_by_key(&reference, false),
    );
    assert!(ref_w.len() > 3 * 100);
    assert_eq!(counts_by_key(&windows, true), ref_w, "windows of the chain");
    assert_eq!(counts_by_key(&days, false), ref_d, "days of the chain");
    println!(
        "two gateways, {fault:?}: {} windows and {} days of {} stores stored once",
        ref_w.len(),
        ref_d.len(),
        STORES.len()
    );
}

/// PostgreSQL stopped (as by a crash) mid-stream and started again: the
/// gateway stays up, acks nothing while the database is gone, says so in
/// its log and on `/metrics`, and resumes by itself; nothing is lost or
/// stored twice.
#[test]
fn postgres_restarted_mid_stream_withholds_acks_then_resumes() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let url = pg.database("restart");
    through_a_database_fault(
        &url,
        ("41", "postgres_restarted_mid_stream"),
        |down| {
            if down {
                pg.stop()
            } else {
                pg.start_server()
            }
        },
        |_| {},
    );
}

/// A database fault mid-stream, on (`fault(true)`) once the gateway has
/// committed a first batch and off again (`fault(false)`) once it has said
/// the store failed: meanwhile it stays up and shows `store_up 0`, and its
/// log passes `meanwhile`; after, every report arrives, stored once, equal
/// to the agent's replay.
fn through_a_database_fault(
    url: &str,
    case: (&str, &str),
    fault: impl FnMut(bool),
    meanwhile: impl FnOnce(&str),
) {
    through_a_fault_from(When::FirstBatch, url, case, fault, meanwhile);
}

/// When a fault starts.
#[derive(PartialEq)]
enum When {
    /// Once the gateway has committed a first batch.
    FirstBatch,
    /// Once the gateway has subscribed, before the agent starts: for a
    /// fault that only writes needing new room meet (a full disk), which
    /// the statuses' updates in place might not be, had every report
    /// come before it.
    BeforeTheAgent,
}

/// `through_a_database_fault` with the fault on from `when`.
fn through_a_fault_from(
    when: When,
    url: &str,
    (seed, name): (&str, &str),
    mut fault: impl FnMut(bool),
    meanwhile: impl FnOnce(&str),
) {
    let (c, http) = case_on_postgres(url, seed);
    let mut gateway = c.gateway();
    if when == When::BeforeTheAgent {
        wait_until(Duration::from_secs(60), "the gateway subscribes", || {
            c.log("gateway").contains("subscribing")
        });
        fault(true);
    }
    let mut agent = c.agent();
    if when == When::FirstBatch {
        wait_until(Duration::from_secs(60), "a first batch committed", || {
            c.log("gateway").contains("batch committed")
        });
        fault(true);
    }
    wait_until(
        Duration::from_secs(60),
        "the gateway says the store failed",
        || c.log("gateway").contains("the store failed"),
    );
    // Still failing seconds later: statuses arrive every second and cannot
    // be stored either.
    std::thread::sleep(Duration::from_secs(3));
    let m = metrics(http);
    assert!(m.contains("footfall_gateway_store_up 0"), "{m}");
    assert_eq!(api(http, "/healthz"), "ok\n", "the gateway is still up");
    meanwhile(&c.log("gateway"));
    fault(false);
    c.wait_delivered();
    // Waited for, not read once: CI twice found the gauge back at 1 and
    // the log without the line (never reproduced here); if it never comes,
    // what the gateway said instead is in the failure.
    footfall_tests::wait_until_or(
        Duration::from_secs(60),
        || c.log("gateway").contains("the store is back"),
        || {
            let log = c.log("gateway");
            let said: Vec<&str> = log.lines().filter(|l| !l.contains("DEBUG")).collect();
            format!(
                "the gateway never said the store is back; it said:\n{}",
                said[said.len().saturating_sub(80)..].join("\n")
            )
        },
    );
    assert!(metrics(http).contains("footfall_gateway_store_up 1"));
    agent.term();
    gateway.term();
    c.assert_gateway_matches_reference(name);
}

/// The database turned read-only mid-stream (a full disk, a failover to a
/// replica), then writable again: the gateway acks nothing meanwhile,
/// says why, and carries on; nothing is lost or stored twice.
#[test]
fn a_read_only_database_withholds_acks_until_it_is_writable() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let url = pg.database("ro");
    // New sessions of `ro` get the setting; the gateway's is ended so that
    // it connects again and gets it too.
    let set_read_only = |on: bool| {
        let mut c = pg.admin();
        c.batch_execute(&format!(
            "ALTER DATABASE ro SET default_transaction_read_only = {}",
            if on { "on" } else { "off" }
        ))
        .unwrap();
        c.batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = 'ro' AND pid <> pg_backend_pid()",
        )
        .unwrap();
    };
    through_a_database_fault(&url, ("43", "a_read_only_database"), set_read_only, |_| {});
}

/// The database refusing the gateway's password mid-stream (its password
/// was changed, the gateway's config not yet), then taking it again: the
/// gateway acks nothing meanwhile, says why without printing the password,
/// and carries on; nothing is lost or stored twice.
#[test]
fn a_refused_password_withholds_acks_until_it_is_taken() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let mut admin = pg.admin();
    admin
        .batch_execute("CREATE ROLE hq LOGIN PASSWORD 'right-one'")
        .unwrap();
    admin.batch_execute("CREATE DATABASE pw OWNER hq").unwrap();
    pg.hba_first("host all hq 127.0.0.1/32 scram-sha-256");
    let url = format!("postgres://hq:right-one@127.0.0.1:{}/pw", pg.port);
    // The password changed, then back; the gateway's sessions ended so
    // that it logs in again.
    let set_password = |changed: bool| {
        let p = if changed { "changed" } else { "right-one" };
        admin
            .batch_execute(&format!(
                "ALTER ROLE hq PASSWORD '{p}'; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'hq'"
            ))
            .unwrap();
    };
    through_a_database_fault(&url, ("44", "a_refused_password"), set_password, |log| {
        assert!(log.contains("password authentication failed"), "{log}");
        assert!(!log.contains("right-one"), "the password is never logged");
    });
}

/// The database's disk full mid-stream (its tablespace on a small tmpfs,
/// filled up by another file), then freed: the gateway acks nothing
/// meanwhile, says why, and carries on; nothing is lost or stored twice.
#[test]
fn a_full_disk_withholds_acks_until_there_is_room() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let disk = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(disk.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // Not `postgres`: a machine with PostgreSQL may still not let its
        // tests mount (a container without CAP_SYS_ADMIN).
        footfall_tests::require::skip(
            "tmpfs",
            "cannot mount a tmpfs for a full disk (needs root and CAP_SYS_ADMIN)",
        );
        return;
    }
    // Unmounted however the test ends.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(disk.path());
    let space = disk.path().join("pg");
    std::fs::create_dir(&space).unwrap();
    let owned = std::process::Command::new("chown")
        .args(["postgres:postgres"])
        .arg(&space)
        .status()
        .is_ok_and(|s| s.success());
    assert!(owned, "chown of the tablespace to postgres");
    let mut admin = pg.admin();
    admin
        .batch_execute(&format!(
            "CREATE TABLESPACE small LOCATION '{}'",
            space.display()
        ))
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE fulldisk TABLESPACE small")
        .unwrap();
    let url = pg.url("fulldisk");
    // Everything left on the tmpfs taken by a file of its own, then freed.
    let filler = disk.path().join("filler");
    let fill = |full: bool| {
        if full {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let block = vec![0u8; 64 << 10];
            while f.write_all(&block).is_ok() {}
        } else {
            std::fs::remove_file(&filler).unwrap();
        }
    };
    through_a_fault_from(
        When::BeforeTheAgent,
        &url,
        ("45", "a_full_disk"),
        fill,
        |log| {
            assert!(log.contains("No space left on device"), "{log}");
        },
    );
}
