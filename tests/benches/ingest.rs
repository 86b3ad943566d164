//! Gateway ingest through the real path: agents publish window reports
//! (QoS 1) to a real Mosquitto, the gateway validates, stores, commits and
//! acks them (SPEC §6); timed from the first publish to the last ack.
//! Needs the gateway built in the same profile (`scripts/bench` does it).
//!
//!     cargo bench -p footfall-tests --bench ingest -- [--stores N] [--windows N] [--postgres] [--gateways N]
//!
//! `--postgres` keeps the reports in a PostgreSQL cluster that syncs to
//! disk (kept in target/bench/pg-ingest, a new database each run), and
//! `--gateways N` (with it) runs N gateways on one shared subscription.

use std::time::Duration;

use footfall_report::Report;
use footfall_tests::{bench_arg, bench_window, bin, burst, free_port, wait_until, Broker, Proc};

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
    let postgres = std::env::args().any(|a| a == "--postgres");
    let gateways = arg("--gateways", 1) as usize;
    assert!(
        gateways == 1 || postgres,
        "several gateways share PostgreSQL: add --postgres"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut broker = Broker::for_bursts(dir.path());
    broker.start();
    // A cluster that syncs to disk as a real one does (a test's does not),
    // kept between runs; a new database each run.
    let pg = postgres.then(|| {
        footfall_tests::postgres::Postgres::keep_in(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench/pg-ingest"),
        )
        .expect("PostgreSQL")
    });
    let db = format!("ingest_{}", std::process::id());
    let storage = match &pg {
        Some(pg) => format!("url = \"{}\"", pg.kept_database(&db)),
        None => "path = \"gateway-state\"".into(),
    };
    let share = if gateways > 1 {
        "share_group = \"bench\"\n"
    } else {
        ""
    };
    let mut procs = Vec::new();
    for g in 0..gateways {
        let name = format!("gateway{g}");
        std::fs::write(
            dir.path().join(format!("{name}.toml")),
            format!(
                "[storage]\n{storage}\n[mqtt]\nurl = \"{}\"\nclient_id = \"bench-{name}\"\n{share}[http]\nlisten = \"127.0.0.1:{}\"\n",
                broker.url(),
                free_port()
            ),
        )
        .expect("write the gateway's config");
        // At the level a user runs it.
        procs.push(Proc::spawn_logging(
            dir.path(),
            &name,
            &bin("footfall-gateway"),
            &["serve", "--config", &format!("{name}.toml")],
            "info",
        ));
        wait_until(Duration::from_secs(20), "the gateway subscribes", || {
            footfall_tests::read_log(dir.path(), &name).contains("subscribing")
        });
    }
    let reports: Vec<Report> = (0..stores)
        .flat_map(|s| (0..windows).map(move |i| window(s, i)))
        .collect();
    let bytes: usize = reports
        .iter()
        .map(|r| serde_json::to_vec(r).expect("serializes").len())
        .sum();
    // One connection per ten stores, as many store boxes would be.
    let secs =
        burst(broker.port, &reports, 10, Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"));
    for mut p in procs {
        p.term();
    }
    broker.stop();
    println!(
        "reports {} bytes {bytes} seconds {secs:.3} reports_per_s {:.0} gateways {gateways} storage {}",
        reports.len(),
        reports.len() as f64 / secs,
        if postgres { "postgres" } else { "sled" }
    );
    if let Some(pg) = pg {
        pg.admin()
            .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
            .expect("drop the bench's database");
    }
}
