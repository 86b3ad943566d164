//! Hand-worked cases of SPEC §3-§5. The randomized comparison against an
//! independent model lives in `agent/tests/agent/reference.rs`.

use super::*;
use crate::config::Counting;
use crate::privacy::DeviceId;
use footfall_report::{Report, WindowReport};

const S: i64 = 1_000_000;
/// 2026-03-02T00:00:00Z, a Monday, window-aligned.
const T0: i64 = 1_772_409_600 * S;

fn counter(c: Counting) -> Counter {
    let meta = ReportMeta {
        store_id: "s".into(),
        agent_id: "a".into(),
        agent_version: "test".into(),
        params_hash: "p".into(),
    };
    Counter::new(&c, jiff::tz::TimeZone::UTC, meta, State::default())
}

fn det(t_s: i64, dev: u128, strong: bool) -> Detection {
    Detection {
        t_us: T0 + t_s * S,
        device: DeviceId(dev << 64 | dev),
        randomized: false,
        strong,
        no_signal: false,
        seq: 0,
        fingerprint: 0,
        rssi_dbm: None,
        epoch: 0,
    }
}

fn run(c: Counting, dets: &[Detection]) -> Vec<Report> {
    let mut k = counter(c);
    let mut store = MemHistory::default();
    for d in dets {
        k.detection(d, &mut store).unwrap();
    }
    k.finish(&mut store).unwrap();
    k.drain_reports()
}

fn windows(reports: &[Report]) -> Vec<&WindowReport> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Window(w) => Some(w),
            _ => None,
        })
        .collect()
}

#[test]
fn one_visit_and_one_passerby() {
    // Device 1: strong every 60 s for 10 minutes: a 600 s visit.
    // Device 2: weak only: detected, a passer-by.
    let mut dets: Vec<_> = (0..=10).map(|i| det(i * 60, 1, true)).collect();
    dets.push(det(30, 2, false));
    dets.sort_by_key(|d| d.t_us);
    let r = run(Counting::default(), &dets);
    let w = windows(&r);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].window_start, T0 / S);
    assert_eq!(
        (w[0].frames, w[0].detected, w[0].visits, w[0].visitors),
        (12, Some(2), Some(1), Some(1))
    );
    assert_eq!((w[0].passersby, w[0].visitors_new), (Some(1), Some(1)));
    assert_eq!(w[0].dwell_counts, Some(vec![0, 1, 0, 0, 0, 0]));
    assert_eq!(w[0].dwell_sum_s, Some(600));
    let days: Vec<_> = r.iter().filter(|r| matches!(r, Report::Day(_))).collect();
    assert_eq!(days.len(), 1);
}

#[test]
fn gap_splits_sessions_and_short_ones_are_not_visits() {
    // 0..299 s: 299 s of dwell, not a visit. Then a gap of 601 s.
    let dets = [
        det(0, 1, true),
        det(299, 1, true),
        det(900, 1, true),
        det(1200, 1, true),
    ];
    let r = run(Counting::default(), &dets);
    let w = windows(&r);
    assert_eq!(w.len(), 2);
    assert_eq!((w[0].visits, w[0].passersby), (Some(0), Some(1)));
    // Second session: 900..1200 = 300 s: exactly min_dwell, a visit.
    assert_eq!(
        (
            w[1].visits,
            w[1].passersby,
            w[1].dwell_counts.as_ref().unwrap()[0]
        ),
        (Some(1), Some(0), 1)
    );
}

#[test]
fn weak_detections_never_extend_a_visit() {
    let dets = [det(0, 1, true), det(200, 1, false), det(400, 1, false)];
    let w = run(Counting::default(), &dets);
    assert_eq!(windows(&w)[0].visits, Some(0));
}

#[test]
fn windows_are_final_only_after_settling_and_empty_ones_are_reported() {
    let mut k = counter(Counting::default());
    let mut store = MemHistory::default();
    k.detection(&det(0, 1, true), &mut store).unwrap();
    // Window 0 ends at 900 s; final at 900 + 900.
    k.advance(T0 + 1799 * S, &mut store).unwrap();
    assert!(k.drain_reports().is_empty());
    k.advance(T0 + 1800 * S, &mut store).unwrap();
    assert_eq!(windows(&k.drain_reports()).len(), 1);
    // Far later: every window between is reported, with zeros.
    k.detection(&det(4 * 3600, 2, true), &mut store).unwrap();
    let r = k.drain_reports();
    let w = windows(&r);
    assert_eq!(w.len(), 16 - 1 - 1 + 1 - 1);
    assert!(w.iter().all(|w| w.frames == 0));
    // A detection in a final window is late.
    k.detection(&det(10, 3, true), &mut store).unwrap();
    assert_eq!(k.state.late_frames, 1);
}

#[test]
fn staff_become_residents_after_three_long_days() {
    // Device 7 present 08:00-13:00 (5 h, strong every 5 min) on days 0-2;
    // on day 3 it is a resident: counted in residents, not visits.
    let mut dets = Vec::new();
    for day in 0..4 {
        for m in (0..=300).step_by(5) {
            dets.push(det(day * 86_400 + 8 * 3600 + m * 60, 7, true));
        }
    }
    let r = run(Counting::default(), &dets);
    let days: Vec<_> = r
        .iter()
        .filter_map(|r| match r {
            Report::Day(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(days.len(), 4);
    assert_eq!(
        days.iter().map(|d| d.visits).collect::<Vec<_>>(),
        [1, 1, 1, 0].map(Some)
    );
    assert_eq!(
        days.iter().map(|d| d.residents).collect::<Vec<_>>(),
        [0, 0, 0, 1].map(Some)
    );
    // Day 1 and 2 visits are returning (a visit on an earlier day).
    assert_eq!(
        days.iter()
            .map(|d| d.visitors_returning)
            .collect::<Vec<_>>(),
        [0, 1, 1, 0].map(Some)
    );
    let w = windows(&r);
    let day3: Vec<_> = w
        .iter()
        .filter(|w| w.window_start >= (T0 / S) + 3 * 86_400)
        .collect();
    assert!(day3.iter().all(|w| w.detected == Some(0)));
    assert_eq!(day3.iter().map(|w| w.residents).max(), Some(Some(1)));
}

#[test]
fn randomized_visitors_are_counted_apart() {
    let mut dets: Vec<_> = (0..=6).map(|i| det(i * 60, 1, true)).collect();
    for d in &mut dets {
        d.randomized = true;
    }
    let r = run(Counting::default(), &dets);
    let w = windows(&r);
    assert_eq!(
        (w[0].visitors, w[0].visitors_randomized, w[0].visitors_new),
        (Some(1), Some(1), Some(0))
    );
}

#[test]
fn a_randomized_device_back_the_same_day_is_one_visitor_and_never_stored() {
    let mut k = counter(Counting::default());
    let mut store = MemHistory::default();
    // 09:00-09:10 and 15:00-15:10: two visits, hours apart, one device,
    // gone from memory in between.
    for start in [9 * 3600, 15 * 3600] {
        for m in 0..=10 {
            let mut d = det(start + m * 60, 7, true);
            d.randomized = true;
            k.detection(&d, &mut store).unwrap();
        }
        k.advance(T0 + (start + 3 * 3600) * S, &mut store).unwrap();
        assert_eq!(k.devices_in_memory(), 0, "evicted between visits");
        assert!(
            store.histories.is_empty(),
            "a randomized device is never stored"
        );
    }
    k.finish(&mut store).unwrap();
    let r = k.drain_reports();
    let day = r
        .iter()
        .find_map(|r| match r {
            Report::Day(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        (day.visits, day.unique_visitors, day.visitors_randomized),
        (Some(2), Some(1), Some(1))
    );
    // Reported: nothing of it is kept.
    assert!(k.state.randomized_visitors.is_empty());
}

#[test]
fn memory_holds_only_the_current_devices() {
    // 40 days, 50 new devices a day, each a 10-minute visit: the devices in
    // memory at the end of each day are only those of its last hour.
    let mut k = counter(Counting::default());
    let mut store = MemHistory::default();
    let mut most = 0;
    for day in 0..40i64 {
        for n in 0..50i64 {
            let dev = (day * 1000 + n) as u128;
            for m in 0..=10 {
                let mut d = det(day * 86_400 + 9 * 3600 + n * 600 + m * 60, dev, true);
                d.randomized = n % 2 == 0;
                k.detection(&d, &mut store).unwrap();
            }
        }
        k.advance(T0 + (day + 1) * 86_400 * S - 1, &mut store)
            .unwrap();
        most = most.max(k.devices_in_memory());
        // What `Store::prune` does once a day.
        let horizon = k.history_horizon().unwrap();
        store.histories.retain(|_, h| h.is_useful(horizon));
    }
    assert!(most <= 5, "{most} devices in memory at day end");
    // Stored histories: non-randomized devices of the 31 days of the loyalty
    // horizon, and randomized ones of the day not yet reported.
    assert!(
        store.histories.len() <= 25 * 32,
        "{} histories",
        store.histories.len()
    );
}

/// issue 20: a spill pass looks at the devices that came since the last
/// one and at the least recently heard phones that stay, taken from a list
/// made once per many passes (`spill::Coldest`), not at every device; a
/// phone on that list heard again since stays. Whichever it spills, every
/// report is the one an unbounded run makes.
#[test]
fn spill_passes_past_the_mark_count_the_same() {
    // 190 phones that stay, each heard every 20 s (some only for the first
    // hour, so that the coldest of them go quiet), and 12 new MACs every
    // 10 s, each heard in one burst: a passer-by or a rotating phone.
    let mut dets = Vec::new();
    for t in (0..7200i64).step_by(10) {
        for p in 0..190i64 {
            if (t / 10 + p) % 2 == 0 && (p % 3 != 0 || t < 3600) {
                dets.push(det(t, 1_000_000 + p as u128, true));
            }
        }
        for m in 0..12 {
            let mut d = det(t + m % 7, (t * 100 + m) as u128, m % 3 != 0);
            d.randomized = m % 4 != 0;
            dets.push(d);
        }
    }
    let unbounded = run(Counting::default(), &dets);
    let mut k = counter(Counting::default()).with_device_budget(200);
    let mut store = MemHistory::default();
    let mut most = 0;
    for d in &dets {
        k.detection(d, &mut store).unwrap();
        most = most.max(k.devices_in_memory());
    }
    let moved = k.state.coldest.moved;
    k.finish(&mut store).unwrap();
    assert!(most <= 200, "{most} devices in memory");
    assert!(
        moved > 100,
        "{moved} phones that stay moved behind the mark"
    );
    assert!(store.spilled.is_empty());
    assert_eq!(k.drain_reports(), unbounded);
}

#[test]
fn live_downtime_is_not_reported_as_empty_windows() {
    let mut k = counter(Counting::default());
    let mut store = MemHistory::default();
    for i in 0..=6 {
        k.detection(&det(i * 60, 1, true), &mut store).unwrap();
    }
    // Down from 00:06 until day 2, 10:00.
    assert!(k
        .skip_gap(T0 + (2 * 86_400 + 10 * 3600) * S, &mut store)
        .unwrap());
    let r = k.drain_reports();
    let w = windows(&r);
    assert_eq!(w.len(), 1, "only the observed window");
    assert_eq!(w[0].visits, Some(1));
    let days: Vec<_> = r.iter().filter(|r| matches!(r, Report::Day(_))).collect();
    assert_eq!(days.len(), 1, "the day it went down, not the day it missed");
    // Counting resumes: the next window reported is the one it came back in.
    k.detection(&det(2 * 86_400 + 10 * 3600 + 5, 2, true), &mut store)
        .unwrap();
    k.finish(&mut store).unwrap();
    let r = k.drain_reports();
    let w = windows(&r);
    assert_eq!(w[0].window_start, T0 / S + 2 * 86_400 + 10 * 3600);
    assert!(
        !k.skip_gap(T0 + (2 * 86_400 + 10 * 3600 + 60) * S, &mut store)
            .unwrap(),
        "no gap: nothing to skip"
    );
}

/// SPEC §8 through the counter: two phones there for two windows each
/// (one arriving a window later) give people in each window, the day
/// sums the windows, a weak device adds nobody, and a counter without a
/// calibration reports `null`, never 0.
#[test]
fn people_estimates_per_window_and_their_day_sums() {
    let mut dets: Vec<_> = (0..30).map(|i| det(i * 60, 1, true)).collect();
    dets.extend((15..45).map(|i| det(i * 60, 2, true)));
    dets.extend((0..45).map(|i| det(i * 60 + 7, 3, false)));
    dets.sort_by_key(|d| d.t_us);
    let r = run(Counting::default(), &dets);
    let w = windows(&r);
    let present: Vec<f64> = w.iter().map(|w| w.present_est.unwrap()).collect();
    let entries: Vec<f64> = w.iter().map(|w| w.entries_est.unwrap()).collect();
    let c = crate::people::Calibration::builtin();
    // 0-15 min: phone 1, 15-30: both, 30-45: phone 2; each spans 14-15 min.
    assert!(
        present[1] > present[0] && present[1] > present[2],
        "{present:?}"
    );
    assert!(
        (present[0] - c.per_persistent * 840.0 / 900.0).abs() < 0.01,
        "{present:?}"
    );
    assert_eq!(entries[0], 0.0, "the first window cannot tell arrivals");
    assert!(entries[1] > 0.0 && entries[2] == 0.0, "{entries:?}");
    for w in &w {
        let (lo, est, hi) = (
            w.present_lo.unwrap(),
            w.present_est.unwrap(),
            w.present_hi.unwrap(),
        );
        assert!(0.0 <= lo && lo <= est && est <= hi, "{lo} {est} {hi}");
    }
    let Some(Report::Day(d)) = r.iter().find(|r| matches!(r, Report::Day(_))) else {
        panic!("no day report")
    };
    let ph: f64 = present.iter().map(|p| p * 0.25).sum();
    assert!((d.person_hours_est.unwrap() - ph).abs() < 0.011, "{d:?}");
    assert!((d.entries_est.unwrap() - entries.iter().sum::<f64>()).abs() < 0.011);

    let mut k = counter(Counting::default()).with_people(None);
    let mut store = MemHistory::default();
    for d in &dets {
        k.detection(d, &mut store).unwrap();
    }
    k.finish(&mut store).unwrap();
    for r in k.drain_reports() {
        match r {
            Report::Window(w) => assert_eq!((w.present_est, w.entries_est), (None, None)),
            Report::Day(d) => assert_eq!((d.person_hours_est, d.entries_est), (None, None)),
        }
    }
}
