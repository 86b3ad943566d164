//! The gateway's reads at chain scale: a sled store holding `--stores`
//! stores (in four time zones) × `--days` days of 15-minute windows and
//! day reports (100 × 365 by default: 3.5 M windows), then the time of the
//! campaign report (SPEC §7) with the database restarted and the page
//! cache dropped, from a freshly started gateway, and again; then the chain
//! by day for a year (`/api/v1/footfall?interval=day&store=*`), first and
//! kept; and the bytes on disk per window.
//! The store is kept between runs in `--dir` (default target/bench-chain).
//! `--postgres` keeps it in a PostgreSQL cluster that syncs to disk in that
//! directory instead (1,000 stores × 365 days, 35 M windows, is issue 19's
//! scale).
//!
//!     cargo bench -p footfall-tests --bench query -- [--stores N] [--days N] [--dir D] [--postgres]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use footfall_gateway::campaigns;
use footfall_gateway::query::{self, By};
use footfall_gateway::store::{AgentInfo, Campaign, PgStore, ReportStore, SledStore, When};
use footfall_report::{testing, DayReport, Report};
use footfall_tests::{bench_arg, bench_window};

const DAY0: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

fn window(store: u64, i: u64, rng: &mut u64) -> Report {
    // splitmix64: reproducible traffic without a dependency.
    let mut next = || {
        *rng = rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let hour = (i % 96) / 4;
    let open = (9..21).contains(&hour);
    let visits = if open { next() % 20 } else { 0 };
    let ids: Vec<u128> = (0..visits).map(|_| u128::from(next()) << 64).collect();
    bench_window(format!("store-{store:03}"), i, DAY0, visits, ids)
}

/// Every window and day report of `stores` × `days`, in batches of a
/// store-day as an agent's outbox would send them after an outage.
fn fill(store: &dyn ReportStore, stores: u64, days: u64) {
    let started = Instant::now();
    // Stores in four zones, each known from its agent's status before its
    // first window, as a store box says on connecting.
    let zones = ["Europe/Berlin", "Europe/London", "America/New_York", "UTC"];
    for s in 0..stores {
        let id = format!("store-{s:03}");
        store
            .set_status(&AgentInfo {
                store_id: id.clone(),
                agent_id: "a1".into(),
                last_seen_unix_s: DAY0,
                status: testing::online(&id, "a1", zones[s as usize % zones.len()]),
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for s in 0..stores {
        let mut rng = s;
        for d in 0..days {
            let mut batch: Vec<Report> = (d * 96..(d + 1) * 96)
                .map(|i| window(s, i, &mut rng))
                .collect();
            let visits = 100 + (s * 31 + d * 7) % 50;
            batch.push(Report::Day(DayReport {
                seq: 1_000_000 + d,
                unique_visitors: Some(visits),
                visits: Some(visits),
                visitors_new: Some(visits / 2),
                visitors_returning: Some(visits - visits / 2),
                agent_version: "bench".into(),
                params_hash: "bench".into(),
                ..testing::day(&format!("store-{s:03}"), "a1", &date(d as i64))
            }));
            store.put_many(&batch).unwrap_or_else(|e| panic!("{e}"));
            if d % 30 == 29 || d + 1 == days {
                store.commit().unwrap_or_else(|e| panic!("{e}"));
            }
        }
        if s % 50 == 49 {
            eprintln!(
                "{} of {stores} stores in {:.0} s",
                s + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "filled {} windows in {:.1} s",
        stores * days * 96,
        started.elapsed().as_secs_f64()
    );
}

fn date(d: i64) -> String {
    jiff::Timestamp::from_second(DAY0 + d * 86_400)
        .expect("in range")
        .strftime("%Y-%m-%d")
        .to_string()
}

/// Bytes of a directory's files.
fn du(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => du(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn main() {
    let stores: u64 = bench_arg("--stores").map_or(100, |v| v.parse().expect("--stores N"));
    let days: u64 = bench_arg("--days").map_or(365, |v| v.parse().expect("--days N"));
    let postgres = std::env::args().any(|a| a == "--postgres");
    let dir = bench_arg("--dir").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-chain"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("the bench directory");
    // Named with what the store holds (postcard since JSON, statuses with
    // zones since v2), so a store filled by an older bench is not measured
    // by mistake.
    let name = format!("{stores}x{days}-v2");
    let complete = dir.join(format!(
        "{name}{}-complete",
        if postgres { "-pg" } else { "" }
    ));
    let mut cluster = postgres
        .then(|| footfall_tests::postgres::Postgres::keep_in(&dir.join("pg")).expect("PostgreSQL"));
    let open = |cluster: &Option<footfall_tests::postgres::Postgres>| -> Box<dyn ReportStore> {
        match cluster {
            Some(pg) => {
                let db = format!("chain_{stores}x{days}");
                Box::new(PgStore::open(&pg.kept_database(&db)).unwrap_or_else(|e| panic!("{e}")))
            }
            None => Box::new(
                // Waiting: a store just dropped may hold its lock a moment.
                SledStore::open_waiting(&dir.join(&name), 64 << 20, Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{e}")),
            ),
        }
    };
    if !complete.exists() {
        let store = open(&cluster);
        fill(store.as_ref(), stores, days);
        std::fs::write(&complete, b"").expect("mark the store complete");
    }
    let bytes = match &cluster {
        Some(pg) => pg.database_bytes(&format!("chain_{stores}x{days}")),
        None => du(&dir.join(&name)),
    };
    let last = days as i64 - 1;
    // A two-week campaign in a tenth of the stores, ending a week before the last day.
    let campaign = Campaign {
        campaign_id: "bench".into(),
        name: "bench".into(),
        channel: "social".into(),
        start: When::Date(date(last - 21)),
        end: When::Date(date(last - 7)),
        stores: Some(
            (0..stores.div_ceil(10))
                .map(|s| format!("store-{s:03}"))
                .collect(),
        ),
        impressions: 1_000_000,
        reach: 400_000,
        spend: 20_000.0,
    };
    open(&cluster)
        .put_campaigns(&[campaign])
        .unwrap_or_else(|e| panic!("{e}"));

    // A freshly started gateway on a cold machine: the database restarted
    // and the page cache dropped (when this user may: root can). Then a
    // gateway started on a warm database, and the same report again, as a
    // running gateway answers it.
    if let Some(pg) = &mut cluster {
        pg.stop();
        pg.start_server();
    }
    let dropped = drop_page_cache();
    let report = |store: &dyn ReportStore| {
        let started = Instant::now();
        let reports = campaigns::reports(store, Some("bench")).unwrap_or_else(|e| panic!("{e:#}"));
        (started.elapsed().as_secs_f64(), reports)
    };
    let (campaign_cold_s, _) = report(open(&cluster).as_ref());
    let store = open(&cluster);
    let (campaign_fresh_s, _) = report(store.as_ref());
    let (campaign_s, reports) = report(store.as_ref());
    let lift = reports[0]
        .figures
        .lift
        .map_or("null".to_string(), |l| format!("{l:.4}"));

    // The chain as a whole by day for the year (`store=*`): the first
    // works out and keeps each date's distinct visitors, the second reads
    // them kept.
    let q = query::query(Some(query::CHAIN.into()), Some(&date(0)), Some(&date(last)))
        .expect("a query");
    let chain = || {
        let started = Instant::now();
        let rows =
            query::report_rows(store.as_ref(), By::Day, &q).unwrap_or_else(|e| panic!("{e:#}"));
        (started.elapsed().as_secs_f64(), rows.len())
    };
    let (chain_first_s, _) = chain();
    let (chain_s, rows) = chain();
    // A window of the last date since (an agent new to that store, named
    // anew each run): the query works that date out again, as a running
    // gateway's does for the day in progress.
    let mut rng = 0;
    let Report::Window(mut late) = window(0, last as u64 * 96 + 48, &mut rng) else {
        unreachable!("window makes windows")
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    late.agent_id = format!("late-{run}");
    store
        .put(&Report::Window(late.clone()))
        .and_then(|_| store.commit())
        .unwrap_or_else(|e| panic!("{e}"));
    let (chain_one_date_s, _) = chain();
    // Then the next window of that agent, and the query again: what a
    // running gateway's query of the day in progress pays once what it
    // reads is in the page cache (the first came after the cache was
    // dropped, reading the date's windows from disk).
    late.window_start += 900;
    late.window_end += 900;
    late.seq += 1;
    store
        .put(&Report::Window(late))
        .and_then(|_| store.commit())
        .unwrap_or_else(|e| panic!("{e}"));
    let (chain_one_date_warm_s, _) = chain();
    let windows = stores * days * 96;
    println!(
        "engine {} windows {windows} bytes_per_window {} page_cache_dropped {dropped} campaign_report_cold_s {campaign_cold_s:.3} campaign_report_fresh_gateway_s {campaign_fresh_s:.3} campaign_report_s {campaign_s:.3} lift {lift} chain_by_day_first_s {chain_first_s:.3} chain_by_day_s {chain_s:.3} chain_by_day_one_date_changed_s {chain_one_date_s:.3} chain_by_day_one_date_changed_warm_s {chain_one_date_warm_s:.3} rows {rows}",
        if postgres { "postgres" } else { "sled" },
        bytes / windows,
    );
}

/// Empties the kernel's page cache, so the next reads come from disk;
/// `false` when this user may not.
fn drop_page_cache() -> bool {
    let synced = std::process::Command::new("sync")
        .status()
        .is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", b"3\n").is_ok()
}
