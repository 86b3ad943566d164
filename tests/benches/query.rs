//! The gateway's reads at chain scale: a sled store holding `--stores`
//! stores × `--days` days of 15-minute windows (100 × 365 by default: 3.5 M
//! windows), then the time of the campaign report (SPEC §7), first and
//! again, and of the footfall query behind `/api/v1/footfall` (by day,
//! whole chain, one year).
//! The store is kept between runs in `--dir` (default target/bench-chain).
//!
//!     cargo bench -p footfall-tests --bench query -- [--stores N] [--days N] [--dir D]

use std::path::PathBuf;
use std::time::Instant;

use footfall_gateway::campaigns;
use footfall_gateway::query::{self, By};
use footfall_gateway::store::{Campaign, ReportStore, SledStore, When};
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

fn main() {
    let stores: u64 = bench_arg("--stores").map_or(100, |v| v.parse().expect("--stores N"));
    let days: u64 = bench_arg("--days").map_or(365, |v| v.parse().expect("--days N"));
    let dir = bench_arg("--dir").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-chain"),
        PathBuf::from,
    );
    // Named with the gateway's report format (postcard since JSON), so a
    // store filled by an older gateway is not measured by mistake.
    let path = dir.join(format!("{stores}x{days}-postcard"));
    let complete = path.join("complete");
    let store = SledStore::open(&path, 64 << 20).unwrap_or_else(|e| panic!("{e}"));
    if !complete.exists() {
        let started = Instant::now();
        for s in 0..stores {
            let mut rng = s;
            for i in 0..days * 96 {
                store
                    .put(&window(s, i, &mut rng))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            store.commit().unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&complete, b"").expect("mark the store complete");
        eprintln!(
            "filled {} windows in {:.1} s",
            stores * days * 96,
            started.elapsed().as_secs_f64()
        );
    }
    let last = days as i64 - 1;
    // A two-week campaign in a tenth of the stores, ending a week before the last day.
    let date = |d: i64| {
        jiff::Timestamp::from_second(DAY0 + d * 86_400)
            .expect("in range")
            .strftime("%Y-%m-%d")
            .to_string()
    };
    // Each agent's day reports too, as agents send them (footfall by day
    // reads them); a separate mark, for stores filled before days were.
    let days_complete = path.join("days-complete");
    if !days_complete.exists() {
        for s in 0..stores {
            for d in 0..days {
                let visits = 100 + (s * 31 + d * 7) % 50;
                store
                    .put(&Report::Day(DayReport {
                        seq: 1_000_000 + d,
                        unique_visitors: Some(visits),
                        visits: Some(visits),
                        visitors_new: Some(visits / 2),
                        visitors_returning: Some(visits - visits / 2),
                        agent_version: "bench".into(),
                        params_hash: "bench".into(),
                        ..testing::day(&format!("store-{s:03}"), "a1", &date(d as i64))
                    }))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            store.commit().unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(&days_complete, b"").expect("mark the days complete");
    }
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
    store
        .put_campaigns(&[campaign])
        .unwrap_or_else(|e| panic!("{e}"));

    // Twice: the first report reads what the page cache lacks (a gateway
    // just started, or a store pushed out by other work), the second is
    // what a running gateway answers.
    let report = || {
        let started = Instant::now();
        let reports = campaigns::reports(&store, Some("bench")).unwrap_or_else(|e| panic!("{e:#}"));
        (started.elapsed().as_secs_f64(), reports)
    };
    let (campaign_first_s, _) = report();
    let (campaign_s, reports) = report();
    let lift = reports[0]
        .figures
        .lift
        .map_or("null".to_string(), |l| format!("{l:.4}"));

    let q = query::query(None, Some(&date(0)), Some(&date(days as i64))).expect("a query");
    let started = Instant::now();
    let rows = query::report_rows(&store, By::Day, &q).unwrap_or_else(|e| panic!("{e:#}"));
    let footfall_s = started.elapsed().as_secs_f64();
    println!(
        "windows {} campaign_report_first_s {campaign_first_s:.3} campaign_report_s {campaign_s:.3} lift {lift} footfall_by_day_s {footfall_s:.3} rows {}",
        stores * days * 96,
        rows.len()
    );
}
