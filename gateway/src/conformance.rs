//! What every `ReportStore` engine must do alike (issue 19), run against
//! sled always and PostgreSQL when the machine has it: storing each key
//! once, reading by store and time in key order, hours as the windows
//! summed, statuses, dead letters, campaigns, and purges that delete
//! exactly what they name.

use footfall_report::{testing, Report};

use crate::query::{report_rows, By};
use crate::store::{AgentInfo, DeadLetter, PgStore, Purged, Put, Query, ReportStore, SledStore};

#[allow(dead_code)]
#[path = "../../tests/src/require.rs"]
mod require;
#[allow(dead_code)]
#[path = "../../tests/src/postgres.rs"]
mod testpg;

/// 2026-03-02T00:00:00Z.
const T: i64 = 1_772_409_600;
const DAY: i64 = 86_400;

/// Every check, each on a fresh store from `fresh`.
fn all(fresh: &mut dyn FnMut() -> Box<dyn ReportStore>) {
    each_key_once(fresh().as_ref());
    many_at_once(fresh().as_ref());
    sums_are_the_windows_summed(fresh().as_ref());
    the_chain_by_day_is_every_store_summed(fresh().as_ref());
    reads_by_store_and_time(fresh().as_ref());
    let s = fresh();
    four_days(s.as_ref());
    purge_before_a_date(s.as_ref());
    let s = fresh();
    four_days(s.as_ref());
    purge_a_store(s.as_ref());
}

fn each_key_once(s: &dyn ReportStore) {
    let w = Report::Window(testing::window_of_visitors("s1", "a", 900, 3));
    assert_eq!(s.put(&w).unwrap(), Put::Inserted);
    let mut again = w.clone();
    again.set_seq(7);
    assert_eq!(
        s.put(&again).unwrap(),
        Put::Duplicate,
        "a recount's seq differs"
    );
    let Report::Window(mut other) = w.clone() else {
        unreachable!()
    };
    other.visits = Some(4);
    assert_eq!(s.put(&Report::Window(other)).unwrap(), Put::Conflict);
    assert_eq!(
        s.windows(&Query::default()).unwrap(),
        vec![match w {
            Report::Window(w) => w,
            _ => unreachable!(),
        }]
    );
    let d = Report::Day(testing::day("s1", "a", "2026-03-02"));
    assert_eq!(s.put(&d).unwrap(), Put::Inserted);
    assert_eq!(s.put(&d).unwrap(), Put::Duplicate);
    // Junk is kept as a dead letter, NUL bytes and all (as U+FFFD).
    s.dead_letter(&DeadLetter {
        received_unix_s: 5,
        source: "footfall/v1/s1/a/window".into(),
        reason: "not JSON".into(),
        payload: "\0\u{fffd}junk".into(),
    })
    .unwrap();
    assert!(s.dead_letters().unwrap()[0].payload.ends_with("junk"));
    // A mode's nulls come back as nulls.
    let e = testing::under(
        testing::window_of_visitors("s1", "a", 1800, 2),
        footfall_report::PrivacyMode::Ephemeral,
    );
    assert_eq!(s.put(&Report::Window(e.clone())).unwrap(), Put::Inserted);
    let got = s
        .windows(&Query {
            from_s: Some(1800),
            ..Query::default()
        })
        .unwrap();
    assert_eq!(got, vec![e]);
    s.commit().unwrap();
}

/// `put_many` answers as `put` would for each, in order, with a key sent
/// twice in the same batch and one already stored with other counts.
fn many_at_once(s: &dyn ReportStore) {
    let w = |start: i64, n: u64| Report::Window(testing::window_of_visitors("s1", "a", start, n));
    s.put(&w(0, 1)).unwrap();
    let batch = [
        w(900, 2),
        w(0, 5),
        w(1800, 3),
        w(900, 2),
        Report::Day(testing::day("s1", "a", "1970-01-01")),
        w(0, 1),
    ];
    let got = s.put_many(&batch).unwrap();
    assert_eq!(
        got,
        [
            Put::Inserted,
            Put::Conflict,
            Put::Inserted,
            Put::Duplicate,
            Put::Inserted,
            Put::Duplicate
        ]
    );
    s.commit().unwrap();
    let stored: Vec<Option<u64>> = s
        .windows(&Query::default())
        .unwrap()
        .iter()
        .map(|w| w.visits)
        .collect();
    assert_eq!(
        stored,
        [Some(1), Some(2), Some(3)],
        "the first of each key is kept"
    );
    // And summed once, a resend in the same batch included.
    let zones = [("s1".to_string(), jiff::tz::TimeZone::UTC)].into();
    let day = Query {
        store_id: None,
        from_s: Some(0),
        to_s: Some(86_400),
    };
    let days = s.day_sums(&day, &zones).unwrap();
    assert_eq!(
        days.iter()
            .map(|d| (d.counts.windows, d.counts.visits))
            .collect::<Vec<_>>(),
        [(3, 6)]
    );
}

fn reads_by_store_and_time(s: &dyn ReportStore) {
    for (store, agent) in [("s10", "a"), ("s1", "b"), ("s1", "a")] {
        for q in 0..8 {
            let w = testing::window_of_visitors(store, agent, T + q * 900, q as u64);
            s.put(&Report::Window(w)).unwrap();
        }
    }
    let all = s.windows(&Query::default()).unwrap();
    let keys: Vec<(String, String, i64)> = all
        .iter()
        .map(|w| (w.store_id.clone(), w.agent_id.clone(), w.window_start))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "key order: store, agent, time");
    let q = Query {
        store_id: Some("s1".into()),
        from_s: Some(T + 900),
        to_s: Some(T + 3 * 900),
    };
    let some = s.windows(&q).unwrap();
    assert_eq!(some.len(), 4);
    assert!(some
        .iter()
        .all(|w| w.store_id == "s1" && q.contains(w.window_start)));
    // Hours are the windows summed by agent and UTC hour.
    let hours = s.hours(&Query::default()).unwrap();
    assert_eq!(hours.len(), 3 * 2);
    let first = hours
        .iter()
        .find(|h| h.store_id == "s1" && h.agent_id == "a")
        .unwrap();
    assert_eq!(
        (first.hour_start, first.counts.windows, first.counts.visits),
        (T, 4, 6)
    );
    let mut ends = s.reporting_agents().unwrap();
    ends.sort();
    assert_eq!(
        ends,
        [("s1", "a"), ("s1", "b"), ("s10", "a")].map(|(s, a)| (
            s.to_string(),
            a.to_string(),
            T + 8 * 900
        ))
    );
}

/// `hour_sums`, `day_sums` and `sketches` are `windows` summed by hour
/// or local day, as `Counts` sums them: over stores in three privacy
/// modes, with people estimates, one zone a half hour from UTC (its days
/// are left out: hours cannot cut them).
fn sums_are_the_windows_summed(s: &dyn ReportStore) {
    use footfall_report::{Counts, PrivacyMode, Sketch};
    use std::collections::BTreeMap;
    let modes = [
        ("L", PrivacyMode::Loyalty, "Europe/Berlin"),
        ("D", PrivacyMode::Daily, "UTC"),
        ("E", PrivacyMode::Ephemeral, "Asia/Kolkata"),
    ];
    // L's zone is known before its windows come, D's never is (UTC): both
    // are summed by local day at ingest in the zone they are read in.
    s.set_status(&AgentInfo {
        store_id: "L".into(),
        agent_id: "a".into(),
        last_seen_unix_s: T,
        status: testing::online("L", "a", "Europe/Berlin"),
    })
    .unwrap();
    for (store, mode, _) in modes {
        for q in 0..3 * 96 {
            let mut w = testing::window_of_visitors(store, "a", T + q * 900, (q % 5) as u64);
            let mut sketch = Sketch::new();
            for v in 0..q % 5 {
                let id = u128::from((q / 8 * 3 + v) as u64);
                sketch.insert(id.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
            }
            w.visitor_sketch = Some(sketch);
            // Binary fractions: any order of addition gives the same sum.
            w.present_est = Some((q % 9) as f64 * 0.25);
            w.present_lo = Some(0.0);
            w.present_hi = Some((q % 9) as f64 * 0.5);
            w.entries_est = (q % 3 != 0).then_some(0.5);
            s.put(&Report::Window(testing::under(w, mode))).unwrap();
        }
    }
    s.commit().unwrap();
    let q = Query {
        store_id: None,
        from_s: Some(T + 3 * 3600),
        to_s: Some(T + 2 * DAY + 5 * 3600),
    };
    let zones: BTreeMap<String, jiff::tz::TimeZone> = modes
        .iter()
        .map(|(s, _, z)| (s.to_string(), jiff::tz::TimeZone::get(z).unwrap()))
        .collect();
    type Sums = BTreeMap<(String, String, i64), Counts>;
    let (mut by_hour, mut by_day): (Sums, Sums) = Default::default();
    for w in s.windows(&q).unwrap() {
        let hour = w.window_start.div_euclid(3600) * 3600;
        let day = crate::calendar::local_midnight(w.window_start, &zones[&w.store_id]);
        let c = Counts::of_window(&w);
        let key = |t| (w.store_id.clone(), w.agent_id.clone(), t);
        by_hour.entry(key(hour)).or_default().add(&c);
        by_day.entry(key(day)).or_default().add(&c);
    }
    let bare = |mut c: Counts| {
        c.visitor_sketch = Sketch::new();
        c
    };
    let rows = |hours: Vec<crate::store::Hour>| -> Sums {
        hours
            .into_iter()
            .map(|h| ((h.store_id, h.agent_id, h.hour_start), h.counts))
            .collect()
    };
    let want: Sums = by_hour
        .clone()
        .into_iter()
        .map(|(k, c)| (k, bare(c)))
        .collect();
    assert_eq!(rows(s.hour_sums(&q).unwrap()), want, "hour_sums");
    // Local days of the zones whole hours from UTC (`day_sums`' contract).
    let whole: BTreeMap<String, jiff::tz::TimeZone> = zones
        .iter()
        .filter(|(_, z)| crate::calendar::whole_hours(z, q.from_s, q.to_s))
        .map(|(s, z)| (s.clone(), z.clone()))
        .collect();
    assert_eq!(whole.len(), 2);
    let days_of_windows = |zones: &BTreeMap<String, jiff::tz::TimeZone>| -> Sums {
        let mut out = Sums::new();
        for w in s.windows(&crate::store::day_wide(&q)).unwrap() {
            let Some(tz) = zones.get(&w.store_id) else {
                continue;
            };
            let day = crate::calendar::local_midnight(w.window_start, tz);
            if q.contains(day) {
                out.entry((w.store_id.clone(), w.agent_id.clone(), day))
                    .or_default()
                    .add(&bare(Counts::of_window(&w)));
            }
        }
        out
    };
    assert_eq!(
        rows(s.day_sums(&q, &whole).unwrap()),
        days_of_windows(&whole),
        "day_sums"
    );
    // Read in another zone than they were summed in: from the windows.
    let mut moved = whole.clone();
    moved.insert(
        "D".into(),
        jiff::tz::TimeZone::get("America/New_York").unwrap(),
    );
    assert_eq!(
        rows(s.day_sums(&q, &moved).unwrap()),
        days_of_windows(&moved),
        "moved"
    );
    assert_eq!(by_day.len(), 9, "three days of three stores");
    // Hours carry the merged sketches; `sketches` the same, by hour.
    let estimates = |it: Vec<(String, String, i64, &Sketch)>| -> Vec<(String, String, i64, u64)> {
        it.into_iter()
            .filter(|(.., k)| k.estimate() > 0.0)
            .map(|(s, a, t, k)| (s, a, t, k.estimate().round() as u64))
            .collect()
    };
    let want = estimates(
        by_hour
            .iter()
            .map(|((s, a, t), c)| (s.clone(), a.clone(), *t, &c.visitor_sketch))
            .collect(),
    );
    assert!(want.len() > 40, "the check has sketches to compare");
    let hours = s.hours(&q).unwrap();
    assert_eq!(
        estimates(
            hours
                .iter()
                .map(|h| (
                    h.store_id.clone(),
                    h.agent_id.clone(),
                    h.hour_start,
                    &h.counts.visitor_sketch
                ))
                .collect()
        ),
        want,
        "hours' sketches"
    );
    let mut merged: BTreeMap<(String, String, i64), Sketch> = BTreeMap::new();
    for p in s.sketches(&q).unwrap() {
        merged
            .entry((p.store_id, p.agent_id, p.start.div_euclid(3600) * 3600))
            .or_default()
            .merge(&p.sketch);
    }
    assert_eq!(
        estimates(
            merged
                .iter()
                .map(|((s, a, t), k)| (s.clone(), a.clone(), *t, k))
                .collect()
        ),
        want,
        "sketches"
    );
    // `hour_visitors`: what a distinct count reads of each hour, the same
    // as `hours` gives (the ephemeral store's windows have no visits, the
    // daily store's sketches are day-scoped).
    let visitors = |hours: Vec<crate::store::Hour>| {
        hours
            .into_iter()
            .map(|h| {
                let c = &h.counts;
                (
                    (h.store_id.clone(), h.agent_id.clone(), h.hour_start),
                    (
                        c.windows,
                        c.visit_windows,
                        c.day_scoped_windows,
                        c.visitor_sketch.estimate().round() as u64,
                    ),
                )
            })
            .collect::<Vec<_>>()
    };
    let from_hours = visitors(hours);
    assert!(
        from_hours.iter().any(|(_, (w, v, ..))| v < w)
            && from_hours.iter().any(|(_, (_, _, d, _))| *d > 0),
        "the check has hours without visits and day-scoped hours"
    );
    assert_eq!(
        visitors(s.hour_visitors(&q).unwrap()),
        from_hours,
        "hour_visitors"
    );
    // Several ranges at once: each range's sketches, no more.
    let ranges = [
        ("L".to_string(), T + 3 * 3600, T + 9 * 3600),
        ("D".to_string(), T + DAY, T + DAY + 2 * 3600),
    ];
    let one_by_one: Vec<crate::store::SketchPiece> = ranges
        .iter()
        .flat_map(|(st, a, b)| {
            s.sketches(&Query {
                store_id: Some(st.clone()),
                from_s: Some(*a),
                to_s: Some(*b),
            })
            .unwrap()
        })
        .collect();
    let mut at_once = s.sketches_of(&ranges).unwrap();
    at_once.sort_by(|x, y| {
        (&x.store_id, x.start)
            .cmp(&(&y.store_id, y.start))
            .reverse()
    });
    let mut one_by_one = one_by_one;
    one_by_one.sort_by(|x, y| {
        (&x.store_id, x.start)
            .cmp(&(&y.store_id, y.start))
            .reverse()
    });
    assert_eq!(at_once.len(), 6 + 2);
    assert_eq!(at_once, one_by_one, "sketches_of");
    // A range of whole local days (L's zone, Berlin), asked twice (the
    // second may be kept), then again after a late window: each time the
    // merge of the hours' sketches.
    let berlin = &zones["L"];
    let day = crate::calendar::local_midnight(T + DAY + 12 * 3600, berlin);
    let one_day = [("L".to_string(), day, crate::calendar::back(day, -1, berlin))];
    let merged = |pieces: Vec<crate::store::SketchPiece>| {
        let mut k = Sketch::new();
        for p in pieces {
            k.merge(&p.sketch);
        }
        k.estimate().round() as u64
    };
    let by_hours = || {
        merged(
            s.sketches(&Query {
                store_id: Some("L".into()),
                from_s: Some(one_day[0].1),
                to_s: Some(one_day[0].2),
            })
            .unwrap(),
        )
    };
    let before = by_hours();
    assert!(before > 20, "{before}");
    assert_eq!(merged(s.sketches_of(&one_day).unwrap()), before);
    assert_eq!(merged(s.sketches_of(&one_day).unwrap()), before, "kept");
    let mut late = testing::window_of_visitors("L", "a", day + 3600 + 450, 40);
    let mut k = Sketch::new();
    for v in 0..40u128 {
        k.insert((v + 7).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
    }
    late.visitor_sketch = Some(k);
    assert_eq!(s.put(&Report::Window(late)).unwrap(), Put::Inserted);
    s.commit().unwrap();
    let after = by_hours();
    assert!(after > before + 20, "{before} → {after}");
    assert_eq!(
        merged(s.sketches_of(&one_day).unwrap()),
        after,
        "after a late window"
    );
    // A purge that cuts a local day keeps that day's sums of the windows
    // left, in either zone.
    s.purge(&crate::store::Purge {
        windows_before_s: Some(T + DAY + 5 * 3600),
        ..Default::default()
    })
    .unwrap();
    let left = days_of_windows(&whole);
    assert_eq!(rows(s.day_sums(&q, &whole).unwrap()), left, "after a purge");
    assert!(
        left.values().any(|c| c.windows < 96 && c.windows > 40),
        "a cut day"
    );
}

/// `store=*` by day (day totals from the engine, distinct visitors kept
/// per date) gives the chain's rows of the every-store query, before and
/// after a late window changes a date it kept, whether the query or
/// `serve`'s keeper works the date out again.
fn the_chain_by_day_is_every_store_summed(s: &dyn ReportStore) {
    let id = |n: u64| u128::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
    s.set_status(&AgentInfo {
        store_id: "A".into(),
        agent_id: "a".into(),
        last_seen_unix_s: T,
        status: testing::online("A", "a", "Europe/Berlin"),
    })
    .unwrap();
    for (k, store) in ["A", "B"].into_iter().enumerate() {
        for q in 0..3 * 96 {
            let mut w = testing::window_of_visitors(store, "a", T + q * 900, (q % 4) as u64);
            let mut sketch = footfall_report::Sketch::new();
            for v in 0..q % 4 {
                // Some visitors come back later, some go to both stores.
                sketch.insert(id((q as u64 / 16) * 10
                    + v as u64
                    + k as u64 * (q as u64 % 2)));
            }
            w.visitor_sketch = Some(sketch);
            s.put(&Report::Window(w)).unwrap();
        }
        for d in 0..3 {
            let mut day = testing::day(store, "a", &format!("2026-03-0{}", 2 + d));
            day.visits = Some(10 + d as u64);
            day.person_hours_est = Some(1.25);
            s.put(&Report::Day(day)).unwrap();
        }
    }
    s.commit().unwrap();
    let q = crate::query::query(None, Some("2026-03-01"), Some("2026-03-05")).unwrap();
    let chain = Query {
        store_id: Some(crate::query::CHAIN.into()),
        ..q.clone()
    };
    let of_every_store = || {
        let mut rows = report_rows(s, By::Day, &q).unwrap();
        rows.retain(|r| r["store_id"] == crate::query::CHAIN);
        rows
    };
    let want = of_every_store();
    assert_eq!(want.len(), 3);
    assert!(
        want.iter()
            .all(|r| r["unique_visitors_est"].as_u64() > Some(5)),
        "{want:?}"
    );
    assert_eq!(report_rows(s, By::Day, &chain).unwrap(), want);
    assert_eq!(s.chain_days("2026-03-01", "2026-03-05").unwrap().len(), 3);
    assert_eq!(report_rows(s, By::Day, &chain).unwrap(), want, "kept");
    assert_eq!(
        crate::query::keep_chain_days(s).unwrap(),
        0,
        "nothing changed"
    );
    // A late window with new visitors: its date is worked out again.
    let mut late = testing::window_of_visitors("B", "a", T + DAY + 3 * 96 * 900, 30);
    let mut sketch = footfall_report::Sketch::new();
    for v in 0..30 {
        sketch.insert(id(10_000 + v));
    }
    late.window_start = T + DAY + 12 * 3600 + 450;
    late.window_end = late.window_start + 900;
    late.visitor_sketch = Some(sketch);
    assert_eq!(s.put(&Report::Window(late)).unwrap(), Put::Inserted);
    s.commit().unwrap();
    // `serve`'s keeper works out the date the late window changed, and
    // only that one; the query then reads what it kept.
    assert_eq!(crate::query::keep_chain_days(s).unwrap(), 1);
    assert_eq!(crate::query::keep_chain_days(s).unwrap(), 0, "kept");
    let now = of_every_store();
    assert_ne!(
        now[1]["unique_visitors_est"],
        want[1]["unique_visitors_est"]
    );
    assert_eq!(
        report_rows(s, By::Day, &chain).unwrap(),
        now,
        "after a late window"
    );
    // A window after the last of its day with new visitors (what the day
    // in progress gets): merged into what was kept of that day.
    let mut next = testing::window_of_visitors("B", "a", T + 3 * DAY - 450, 20);
    let mut sketch = footfall_report::Sketch::new();
    for v in 0..20 {
        sketch.insert(id(20_000 + v));
    }
    next.visitor_sketch = Some(sketch);
    assert_eq!(s.put(&Report::Window(next)).unwrap(), Put::Inserted);
    s.commit().unwrap();
    assert_eq!(crate::query::keep_chain_days(s).unwrap(), 1);
    let then = of_every_store();
    assert_ne!(
        then[2]["unique_visitors_est"],
        now[2]["unique_visitors_est"]
    );
    assert_eq!(
        report_rows(s, By::Day, &chain).unwrap(),
        then,
        "after the day in progress went on"
    );
    // A window that counted no visits: the date's distinct visitors are
    // not known, and say why.
    let blind = testing::under(
        testing::window_of_visitors("A", "b", T + DAY + 7 * 3600, 4),
        footfall_report::PrivacyMode::Ephemeral,
    );
    assert_eq!(s.put(&Report::Window(blind)).unwrap(), Put::Inserted);
    s.commit().unwrap();
    let last = of_every_store();
    assert!(last[1]["unique_visitors_est"].is_null(), "{last:?}");
    assert_eq!(
        report_rows(s, By::Day, &chain).unwrap(),
        last,
        "after a window without visits"
    );
    // Store B's zone becomes known after its days were cut in UTC: every
    // date is worked out again, B's windows by their dates in its zone.
    s.set_status(&AgentInfo {
        store_id: "B".into(),
        agent_id: "a".into(),
        last_seen_unix_s: T + 3 * DAY,
        status: testing::online("B", "a", "America/New_York"),
    })
    .unwrap();
    s.commit().unwrap();
    let zoned = of_every_store();
    assert_ne!(zoned, last);
    assert_eq!(
        report_rows(s, By::Day, &chain).unwrap(),
        zoned,
        "after a store's zone changed"
    );
}

/// Two stores, four days of windows every 15 minutes, a day report a
/// day, a status each, and a dead letter a day from each.
fn four_days(s: &dyn ReportStore) {
    for store in ["A", "B"] {
        for q in 0..4 * 96 {
            let w = testing::window_of_visitors(store, "a", T + q * 900, (q % 7) as u64);
            s.put(&Report::Window(w)).unwrap();
        }
        for d in 0..4 {
            let date = format!("2026-03-0{}", 2 + d);
            s.put(&Report::Day(testing::day(store, "a", &date)))
                .unwrap();
            s.dead_letter(&DeadLetter {
                received_unix_s: T + d * DAY + 60,
                source: format!("footfall/v1/{store}/a/window"),
                reason: "test".into(),
                payload: String::new(),
            })
            .unwrap();
        }
        s.set_status(&AgentInfo {
            store_id: store.into(),
            agent_id: "a".into(),
            last_seen_unix_s: T,
            status: testing::online(store, "a", "UTC"),
        })
        .unwrap();
    }
    s.commit().unwrap();
}

/// Retention deletes exactly what is before its cut, and says so;
/// every row after the cut reads as before.
fn purge_before_a_date(s: &dyn ReportStore) {
    let after = Query {
        from_s: Some(T + 2 * DAY),
        ..Query::default()
    };
    let rows_before = report_rows(s, By::Hour, &after).unwrap();
    let days_before = report_rows(s, By::Day, &after).unwrap();
    let done = s
        .purge(&crate::retention::purge_of(None, Some("2026-03-04")).unwrap())
        .unwrap();
    assert_eq!(
        done,
        Purged {
            windows: 2 * 2 * 96,
            hours: 2 * 2 * 24,
            day_reports: 2 * 2,
            dead_letters: 2 * 2,
            agent_statuses: 0,
        }
    );
    let left = s.windows(&Query::default()).unwrap();
    assert_eq!(left.len(), 2 * 2 * 96);
    assert!(left.iter().all(|w| w.window_start >= T + 2 * DAY));
    assert_eq!(s.hours(&Query::default()).unwrap().len(), 2 * 2 * 24);
    let dates: Vec<String> = s
        .days(&Query::default())
        .unwrap()
        .into_iter()
        .map(|d| d.date)
        .collect();
    assert_eq!(
        dates,
        ["2026-03-04", "2026-03-05", "2026-03-04", "2026-03-05"]
    );
    assert_eq!(s.dead_letters().unwrap().len(), 4);
    assert_eq!(report_rows(s, By::Hour, &after).unwrap(), rows_before);
    assert_eq!(report_rows(s, By::Day, &after).unwrap(), days_before);
    assert_eq!(s.agents().unwrap().len(), 2, "statuses stay");
    let again = s
        .purge(&crate::retention::purge_of(None, Some("2026-03-04")).unwrap())
        .unwrap();
    assert!(again.is_empty(), "{again}");
}

/// A store that closed: everything of it goes, nothing of the other.
fn purge_a_store(s: &dyn ReportStore) {
    let a = Query {
        store_id: Some("A".into()),
        ..Query::default()
    };
    let a_rows = report_rows(s, By::Day, &a).unwrap();
    let done = s
        .purge(&crate::retention::purge_of(Some("B".into()), None).unwrap())
        .unwrap();
    assert_eq!(
        done,
        Purged {
            windows: 4 * 96,
            hours: 4 * 24,
            day_reports: 4,
            dead_letters: 4,
            agent_statuses: 1,
        }
    );
    let b = Query {
        store_id: Some("B".into()),
        ..Query::default()
    };
    assert!(s.windows(&b).unwrap().is_empty() && s.days(&b).unwrap().is_empty());
    assert!(s
        .reporting_agents()
        .unwrap()
        .iter()
        .all(|(st, _, _)| st == "A"));
    assert!(s.agents().unwrap().iter().all(|a| a.store_id == "A"));
    assert!(s
        .dead_letters()
        .unwrap()
        .iter()
        .all(|d| d.source.contains("/A/")));
    assert_eq!(report_rows(s, By::Day, &a).unwrap(), a_rows);
    assert!(crate::retention::purge_of(None, None).is_err());
    let err = crate::retention::purge_of(None, Some("March")).unwrap_err();
    assert!(
        err.to_string()
            .contains("before \"March\": expected YYYY-MM-DD"),
        "{err}"
    );
}

#[test]
fn sled_does_what_every_engine_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    all(&mut || {
        n += 1;
        Box::new(SledStore::open(&dir.path().join(format!("g{n}")), 1 << 20).unwrap())
    });
}

#[test]
fn postgres_does_what_every_engine_does() {
    let Some(pg) = testpg::Postgres::start() else {
        return;
    };
    let mut n = 0;
    all(&mut || {
        n += 1;
        Box::new(PgStore::open(&pg.database(&format!("t{n}"))).unwrap())
    });
}

/// A connection lost with a batch open (PostgreSQL restarted, its backend
/// killed) fails the commit: committing what came after on a new
/// connection would ack the batch's lost writes too.
#[test]
fn postgres_a_batch_lost_with_its_connection_fails_its_commit() {
    let Some(pg) = testpg::Postgres::start() else {
        return;
    };
    let url = pg.database("lost");
    let s = PgStore::open(&url).unwrap();
    let w = Report::Window(testing::window_of_visitors("s1", "a", 900, 3));
    assert_eq!(s.put(&w).unwrap(), Put::Inserted);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND state = 'idle in transaction'",
            &[],
        )
        .unwrap();
    assert_eq!(killed.len(), 1, "the batch's connection");
    // Whether the next statement finds it closed or connects again first.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let d = Report::Day(testing::day("s1", "a", "2026-03-02"));
    let after = s.put(&d).and_then(|_| s.commit());
    assert!(after.is_err(), "{after:?}");
    assert!(s.windows(&Query::default()).unwrap().is_empty());
    // The batch stored again, as the MQTT loop does.
    assert_eq!(s.put(&w).unwrap(), Put::Inserted);
    assert_eq!(s.put(&d).unwrap(), Put::Inserted);
    s.commit().unwrap();
    assert_eq!(s.windows(&Query::default()).unwrap().len(), 1);
    assert_eq!(s.days(&Query::default()).unwrap().len(), 1);
}

/// The BI views (docs/bi.md) read what the store holds: hours are the
/// windows summed, weeks the days summed, and a sum with one `null` (a
/// privacy mode that does not count the figure) is `null`, never partial.
#[test]
fn postgres_views_sum_as_the_reports_do() {
    let Some(pg) = testpg::Postgres::start() else {
        return;
    };
    let url = pg.database("views");
    let s = PgStore::open(&url).unwrap();
    four_days(&s);
    let e = testing::day_under(
        testing::day("E", "a", "2026-03-03"),
        footfall_report::PrivacyMode::Ephemeral,
    );
    s.put(&Report::Day(e)).unwrap();
    s.commit().unwrap();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let hours: i64 = c
        .query_one("SELECT count(*) FROM footfall_hours_v", &[])
        .unwrap()
        .get(0);
    assert_eq!(hours, 2 * 4 * 24);
    let row = c
        .query_one(
            "SELECT visits::bigint, windows FROM footfall_hours_v WHERE store_id = 'A' \
             AND hour_start = to_timestamp($1)",
            &[&(T as f64)],
        )
        .unwrap();
    // Windows 0..3 of the day: visits 0 + 1 + 2 + 3.
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (6, 4));
    let weeks = c
        .query(
            "SELECT store_id, visits::bigint FROM footfall_weeks_v ORDER BY store_id",
            &[],
        )
        .unwrap();
    let got: Vec<(String, Option<i64>)> = weeks.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            ("A".into(), Some(0)),
            ("B".into(), Some(0)),
            ("E".into(), None)
        ]
    );
    let chain: Vec<Option<i64>> = c
        .query(
            "SELECT visits::bigint FROM footfall_chain_days_v ORDER BY date",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        chain,
        [Some(0), None, Some(0), Some(0)],
        "the day with E is null"
    );
}

/// The campaign views give the campaign reports the API gives, figure by
/// figure, for the campaign, its stores and its days, small counts
/// withheld as `[privacy] min_count` says.
#[test]
fn postgres_campaign_views_are_the_campaign_reports() {
    let Some(pg) = testpg::Postgres::start() else {
        return;
    };
    let url = pg.database("campaign_views");
    let s = PgStore::open(&url).unwrap();
    four_days(&s);
    crate::campaigns::import(
        &s,
        "campaign_id,name,channel,start,end,stores,impressions,reach,spend\n\
         spring,Spring,social,2026-03-03,2026-03-05,A,1000,500,99.5\n",
        "test",
    )
    .unwrap();
    assert_eq!(crate::campaigns::publish(&s, None).unwrap(), 1);
    let want = crate::campaigns::reports(&s, None).unwrap().remove(0);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let row = c
        .query_one(
            "SELECT name, visits, lift, did_lift, person_hours_est, unique_visitors_est, \
             baseline_weeks_used FROM footfall_campaign_reports_v WHERE campaign_id = 'spring'",
            &[],
        )
        .unwrap();
    let f = &want.figures;
    assert_eq!(row.get::<_, String>(0), "Spring");
    assert_eq!(row.get::<_, Option<i64>>(1), f.visits.map(|v| v as i64));
    assert!(f.visits.is_some_and(|v| v > 0), "{f:?}");
    assert_eq!(row.get::<_, Option<f64>>(2), f.lift);
    assert_eq!(row.get::<_, Option<f64>>(3), f.did_lift);
    assert_eq!(row.get::<_, Option<f64>>(4), f.person_hours_est);
    assert_eq!(
        row.get::<_, Option<i64>>(5),
        f.unique_visitors_est.map(|v| v as i64)
    );
    assert_eq!(row.get::<_, i64>(6), f.baseline_weeks_used as i64);
    let stores: Vec<(String, Option<i64>)> = c
        .query(
            "SELECT store_id, visits FROM footfall_campaign_store_reports_v ORDER BY store_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(stores, [("A".to_string(), f.visits.map(|v| v as i64))]);
    let days: Vec<Option<i64>> = c
        .query(
            "SELECT visits FROM footfall_campaign_days_v ORDER BY day",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let want_days: Vec<Option<i64>> = want
        .daily
        .iter()
        .map(|d| d.visits.map(|v| v as i64))
        .collect();
    assert_eq!(days, want_days);
    assert_eq!(days.len(), 2);
    // Small counts withheld: what the API would withhold.
    crate::campaigns::publish(&s, Some(1_000_000)).unwrap();
    let withheld: Option<i64> = c
        .query_one("SELECT visits FROM footfall_campaign_reports_v", &[])
        .unwrap()
        .get(0);
    assert_eq!(withheld, None);
}

/// The provisioned Grafana dashboard (gateway/deploy/grafana) reads the
/// views as they are: every query in it runs, with Grafana's macros and
/// variables filled in as Grafana would.
#[test]
fn the_sample_grafana_dashboard_queries_run_on_the_views() {
    let Some(pg) = testpg::Postgres::start() else {
        return;
    };
    let url = pg.database("grafana");
    let s = PgStore::open(&url).unwrap();
    four_days(&s);
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/footfall.json"),
    )
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut queries = vec![dash["templating"]["list"][0]["query"]
        .as_str()
        .unwrap()
        .to_string()];
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            queries.push(t["rawSql"].as_str().unwrap().to_string());
        }
    }
    let mut rows = 0;
    for q in &queries {
        // $__timeFilter(x) → x BETWEEN ..., as Grafana expands it.
        let mut sql = q.replace("$store", "'A','B'");
        while let Some(i) = sql.find("$__timeFilter(") {
            let open = i + "$__timeFilter(".len();
            let mut depth = 1;
            let mut end = open;
            for (j, ch) in sql[open..].char_indices() {
                match ch {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = open + j;
                    break;
                }
            }
            let col = sql[open..end].to_string();
            sql.replace_range(
                i..=end,
                &format!("{col} BETWEEN '2026-03-01T00:00:00Z' AND '2026-04-01T00:00:00Z'"),
            );
        }
        let got = c.query(&sql, &[]).unwrap_or_else(|e| panic!("{q}: {e}"));
        rows += got.len();
    }
    assert_eq!(queries.len(), 6);
    assert!(
        rows > 100,
        "the queries read the stored reports: {rows} rows"
    );
}

/// `migrate`: a sled store into PostgreSQL, verified per store; after an
/// interruption (part of it already copied) it resumes, and a second run
/// copies nothing again. What the gateway answers is the same on both.
#[test]
fn migrate_copies_a_sled_store_into_postgres_and_resumes() {
    let Some(pg) = testpg::Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let from = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
    four_days(&from);
    let e = testing::under(
        testing::window_of_visitors("E", "a", T, 2),
        footfall_report::PrivacyMode::Ephemeral,
    );
    from.put(&Report::Window(e)).unwrap();
    let to = PgStore::open(&pg.database("migrated")).unwrap();
    // Interrupted earlier: the first 100 of A's windows are there.
    for w in from
        .windows(&Query {
            store_id: Some("A".into()),
            ..Query::default()
        })
        .unwrap()
        .into_iter()
        .take(100)
    {
        to.put(&Report::Window(w)).unwrap();
    }
    let m = crate::migrate::migrate(&from, &to).unwrap();
    assert_eq!((m.windows + m.already, m.days), (2 * 4 * 96 + 1, 2 * 4));
    assert_eq!(
        (m.already, m.conflicts, m.dead_letters, m.statuses),
        (100, 0, 8, 2)
    );
    assert_eq!(m.verified.len(), 3, "{m}");
    assert!(m.verified.iter().all(|v| v.ends_with(": equal")), "{m}");
    let again = crate::migrate::migrate(&from, &to).unwrap();
    assert_eq!((again.windows, again.days, again.dead_letters), (0, 0, 0));
    for by in [By::Window, By::Day, By::Week] {
        assert_eq!(
            report_rows(&to, by, &Query::default()).unwrap(),
            report_rows(&from, by, &Query::default()).unwrap(),
            "{by:?}"
        );
    }
}
