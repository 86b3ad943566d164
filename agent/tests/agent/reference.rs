//! The counter against an independent reference (issue #3): a plain model
//! of SPEC §3-§5 written from the SPEC text, all in memory, over a sorted
//! `Vec`, with no streaming and no shortcuts. It shares nothing with
//! `footfall_agent::count` but the report types.
//!
//! Compared on proptest-generated streams with non-default parameters and
//! several time zones, and on multi-day `simulate` output with staff
//! (residents) and regulars (returning visitors).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use footfall_agent::config::{Counting, Privacy, Rotation};
use footfall_agent::count::{Counter, MemHistory, ReportMeta, State};
use footfall_agent::detect::Detection;
use footfall_agent::privacy::DeviceId;
use footfall_report::{PrivacyMode, Report, DWELL_EDGES_S};
use proptest::prelude::*;

const S: i64 = 1_000_000;

/// The counts of one window, as the model computes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct W {
    start: i64,
    frames: u64,
    frames_no_signal: u64,
    detected: u64,
    visits: u64,
    visitors: u64,
    new: u64,
    returning: u64,
    randomized: u64,
    passersby: u64,
    residents: u64,
    dwell_counts: Vec<u64>,
    dwell_sum_s: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct D {
    date: String,
    visits: u64,
    unique: u64,
    new: u64,
    returning: u64,
    randomized: u64,
    residents: u64,
}

struct Model {
    c: Counting,
    tz: jiff::tz::TimeZone,
}

impl Model {
    /// SPEC §3: local day of an instant, as days since 1970-01-01.
    fn day(&self, t_us: i64) -> i64 {
        let ts = jiff::Timestamp::from_microsecond(t_us).unwrap();
        let date = ts.to_zoned_datetime(self.tz.clone()).date();
        date.since(jiff::civil::Date::constant(1970, 1, 1))
            .unwrap()
            .get_days() as i64
    }

    fn date(&self, day: i64) -> String {
        jiff::civil::Date::constant(1970, 1, 1)
            .checked_add(jiff::Span::new().days(day))
            .unwrap()
            .to_string()
    }

    fn run(&self, dets: &[Detection]) -> (Vec<W>, Vec<D>) {
        let c = &self.c;
        let gap = i64::from(c.session_gap_s) * S;
        let min_dwell = i64::from(c.min_dwell_s) * S;
        let win = i64::from(c.window_s) * S;
        let mut dets = dets.to_vec();
        dets.sort_by_key(|d| d.t_us);
        let devices: BTreeSet<DeviceId> = dets.iter().map(|d| d.device).collect();
        let randomized: HashSet<DeviceId> = dets
            .iter()
            .filter(|d| d.randomized)
            .map(|d| d.device)
            .collect();

        // Strong sessions per device: maximal runs with gaps <= session_gap.
        let mut by_dev: BTreeMap<DeviceId, Vec<&Detection>> = BTreeMap::new();
        for d in &dets {
            by_dev.entry(d.device).or_default().push(d);
        }
        let mut sessions: BTreeMap<DeviceId, Vec<(i64, i64)>> = BTreeMap::new();
        for &dev in &devices {
            let mut list: Vec<(i64, i64)> = Vec::new();
            for d in by_dev[&dev].iter().filter(|d| d.strong) {
                match list.last_mut() {
                    Some(s) if d.t_us - s.1 <= gap => s.1 = d.t_us,
                    _ => list.push((d.t_us, d.t_us)),
                }
            }
            sessions.insert(dev, list);
        }
        let dwell_s = |s: &(i64, i64)| ((s.1 - s.0) / S) as u64;

        // Residents: presence per (device, day of session start).
        let mut presence: BTreeMap<(DeviceId, i64), u64> = BTreeMap::new();
        for (&dev, list) in &sessions {
            for s in list {
                *presence.entry((dev, self.day(s.0))).or_default() += dwell_s(s);
            }
        }
        let resident = |dev: DeviceId, day: i64| -> bool {
            if randomized.contains(&dev) {
                return false;
            }
            let days = (day - 7..day)
                .filter(|&d| {
                    presence.get(&(dev, d)).copied().unwrap_or(0)
                        >= u64::from(c.resident_presence_s)
                })
                .count();
            days as u32 >= c.resident_days
        };

        // Visits, and the days each device had one.
        let mut visits: Vec<(DeviceId, i64, i64)> = Vec::new();
        for (&dev, list) in &sessions {
            for s in list {
                if s.1 - s.0 >= min_dwell && !resident(dev, self.day(s.0)) {
                    visits.push((dev, s.0, s.1));
                }
            }
        }
        let visit_days: BTreeSet<(DeviceId, i64)> =
            visits.iter().map(|v| (v.0, self.day(v.1))).collect();
        // 0 new, 1 returning, 2 randomized
        let class = |dev: DeviceId, day: i64| -> usize {
            if randomized.contains(&dev) {
                2
            } else if (day - i64::from(c.loyalty_days)..day).any(|d| visit_days.contains(&(dev, d)))
            {
                1
            } else {
                0
            }
        };

        let mut visits_of: BTreeMap<DeviceId, Vec<(DeviceId, i64, i64)>> = BTreeMap::new();
        for v in &visits {
            visits_of.entry(v.0).or_default().push(*v);
        }
        let first_w = dets[0].t_us.div_euclid(win);
        let last_w = dets.last().unwrap().t_us.div_euclid(win);
        let mut windows = Vec::new();
        for k in first_w..=last_w {
            let (ws, we) = (k * win, (k + 1) * win);
            let (lo, hi) = (
                dets.partition_point(|d| d.t_us < ws),
                dets.partition_point(|d| d.t_us < we),
            );
            let in_w: Vec<&Detection> = dets[lo..hi].iter().collect();
            let mut w = W {
                start: ws / S,
                frames: in_w.len() as u64,
                frames_no_signal: in_w.iter().filter(|d| d.no_signal).count() as u64,
                dwell_counts: vec![0; DWELL_EDGES_S.len()],
                ..W::default()
            };
            let detected: BTreeSet<DeviceId> = in_w
                .iter()
                .filter(|d| !resident(d.device, self.day(d.t_us)))
                .map(|d| d.device)
                .collect();
            let residents: BTreeSet<DeviceId> = in_w
                .iter()
                .filter(|d| resident(d.device, self.day(d.t_us)))
                .map(|d| d.device)
                .collect();
            w.detected = detected.len() as u64;
            w.residents = residents.len() as u64;
            let starting: Vec<_> = visits.iter().filter(|v| v.1 >= ws && v.1 < we).collect();
            w.visits = starting.len() as u64;
            let mut visitors = BTreeMap::new();
            for v in &starting {
                visitors.entry(v.0).or_insert(class(v.0, self.day(v.1)));
            }
            w.visitors = visitors.len() as u64;
            for cl in visitors.values() {
                match cl {
                    0 => w.new += 1,
                    1 => w.returning += 1,
                    _ => w.randomized += 1,
                }
            }
            w.passersby = detected
                .iter()
                .filter(|&&dev| {
                    !visits_of
                        .get(&dev)
                        .is_some_and(|vs| vs.iter().any(|v| v.1 < we && v.2 >= ws))
                })
                .count() as u64;
            for v in visits.iter().filter(|v| v.2 >= ws && v.2 < we) {
                let dwell = ((v.2 - v.1) / S) as u64;
                let bucket = DWELL_EDGES_S
                    .iter()
                    .rposition(|&e| dwell >= u64::from(e))
                    .unwrap_or(0);
                w.dwell_counts[bucket] += 1;
                w.dwell_sum_s += dwell;
            }
            windows.push(w);
        }

        let mut seen_on_day: BTreeMap<i64, BTreeSet<DeviceId>> = BTreeMap::new();
        for d in &dets {
            seen_on_day
                .entry(self.day(d.t_us))
                .or_default()
                .insert(d.device);
        }
        let first_day = self.day(first_w * win);
        let last_day = self.day(dets.last().unwrap().t_us);
        let mut days = Vec::new();
        for day in first_day..=last_day {
            let on_day: Vec<_> = visits.iter().filter(|v| self.day(v.1) == day).collect();
            let uniq: BTreeSet<DeviceId> = on_day.iter().map(|v| v.0).collect();
            let mut d = D {
                date: self.date(day),
                visits: on_day.len() as u64,
                unique: uniq.len() as u64,
                ..D::default()
            };
            for &dev in &uniq {
                match class(dev, day) {
                    0 => d.new += 1,
                    1 => d.returning += 1,
                    _ => d.randomized += 1,
                }
            }
            d.residents = seen_on_day.get(&day).map_or(0, |devs| {
                devs.iter().filter(|&&dev| resident(dev, day)).count() as u64
            });
            days.push(d);
        }
        (windows, days)
    }
}

/// A detection as the reference cases need it: SPEC §3-§5 do not read the
/// SPEC §8 cues (sequence number, fingerprint, signal level).
fn detection(
    t_us: i64,
    device: DeviceId,
    randomized: bool,
    strong: bool,
    no_signal: bool,
) -> Detection {
    Detection {
        t_us,
        device,
        randomized,
        strong,
        no_signal,
        seq: 0,
        fingerprint: 0,
        rssi_dbm: None,
        epoch: 0,
    }
}

/// A figure the privacy mode reports as `null`, in `W` and `D`.
const NULL: u64 = u64::MAX;

fn agent_counts(reports: &[Report]) -> (Vec<W>, Vec<D>) {
    let n = |x: Option<u64>| x.unwrap_or(NULL);
    let mut ws = Vec::new();
    let mut ds = Vec::new();
    for r in reports {
        match r {
            Report::Window(w) => ws.push(W {
                start: w.window_start,
                frames: w.frames,
                frames_no_signal: w.frames_no_signal,
                detected: n(w.detected),
                visits: n(w.visits),
                visitors: n(w.visitors),
                new: n(w.visitors_new),
                returning: n(w.visitors_returning),
                randomized: n(w.visitors_randomized),
                passersby: n(w.passersby),
                residents: n(w.residents),
                dwell_counts: w.dwell_counts.clone().unwrap_or_default(),
                dwell_sum_s: n(w.dwell_sum_s),
            }),
            Report::Day(d) => ds.push(D {
                date: d.date.clone(),
                visits: n(d.visits),
                unique: n(d.unique_visitors),
                new: n(d.visitors_new),
                returning: n(d.visitors_returning),
                randomized: n(d.visitors_randomized),
                residents: n(d.residents),
            }),
        }
    }
    (ws, ds)
}

/// What `mode` may report of the model's counts: the rest is `NULL`.
fn mask(mode: PrivacyMode, (mut ws, mut ds): (Vec<W>, Vec<D>)) -> (Vec<W>, Vec<D>) {
    for w in &mut ws {
        if !mode.counts_visits() {
            for f in [
                &mut w.detected,
                &mut w.visits,
                &mut w.visitors,
                &mut w.randomized,
                &mut w.passersby,
                &mut w.dwell_sum_s,
            ] {
                *f = NULL;
            }
            w.dwell_counts.clear();
        }
        if !mode.counts_across_days() {
            w.new = NULL;
            w.returning = NULL;
            w.residents = NULL;
        }
    }
    for d in &mut ds {
        if !mode.counts_visits() {
            d.visits = NULL;
            d.unique = NULL;
            d.randomized = NULL;
        }
        if !mode.counts_across_days() {
            d.new = NULL;
            d.returning = NULL;
            d.residents = NULL;
        }
    }
    (ws, ds)
}

/// The counter's reports, checked to be the same with every device
/// spilled as soon as there are more than two (issue 20: the budget costs
/// speed, never a count).
fn run_counter(c: &Counting, tz: &str, dets: &[Detection]) -> Vec<Report> {
    run_counter_in(c, tz, dets, LOYALTY)
}

const LOYALTY: Privacy = Privacy {
    mode: PrivacyMode::Loyalty,
    rotation: Rotation::Never,
};

fn run_counter_in(c: &Counting, tz: &str, dets: &[Detection], privacy: Privacy) -> Vec<Report> {
    let (all, spilled) = counter_reports(c, tz, dets, privacy, 2);
    assert!(
        all == counter_reports(c, tz, dets, privacy, usize::MAX).0,
        "reports differ with a device budget of 2"
    );
    // Ephemeral follows no device; the others spill with more than two.
    let most = dets
        .iter()
        .map(|d| d.device)
        .collect::<std::collections::HashSet<_>>();
    if privacy.mode != PrivacyMode::Ephemeral && most.len() > 20 {
        assert!(spilled > 0, "the budget was never reached");
    }
    all
}

/// Reports with at most `budget` devices in memory, and how many devices
/// were spilled at most.
fn counter_reports(
    c: &Counting,
    tz: &str,
    dets: &[Detection],
    privacy: Privacy,
    budget: usize,
) -> (Vec<Report>, usize) {
    let meta = ReportMeta {
        store_id: "s".into(),
        agent_id: "a".into(),
        agent_version: "t".into(),
        params_hash: "p".into(),
    };
    let mut k = Counter::new(
        c,
        jiff::tz::TimeZone::get(tz).unwrap(),
        meta,
        State::default(),
    )
    .with_privacy(privacy)
    .with_device_budget(budget);
    let mut store = MemHistory::default();
    let mut spilled = 0;
    for d in dets {
        k.detection(d, &mut store).unwrap();
        spilled = spilled.max(store.spilled.len());
    }
    k.finish(&mut store).unwrap();
    assert!(store.spilled.is_empty(), "every spilled device came back");
    (k.drain_reports(), spilled)
}

fn compare(c: Counting, tz: &str, dets: &[Detection]) -> Result<(), TestCaseError> {
    let model = Model {
        c,
        tz: jiff::tz::TimeZone::get(tz).unwrap(),
    };
    let (mw, md) = model.run(dets);
    let (aw, ad) = agent_counts(&run_counter(&c, tz, dets));
    prop_assert_eq!(aw.len(), mw.len(), "number of windows");
    for (a, m) in aw.iter().zip(&mw) {
        prop_assert_eq!(a, m);
    }
    prop_assert_eq!(ad, md);
    Ok(())
}

/// 2026-03-02T00:00:00Z.
const T0: i64 = 1_772_409_600 * S;

prop_compose! {
    fn params()(
        session_gap_s in prop_oneof![Just(600u32), 60u32..1200],
        min_dwell_s in prop_oneof![Just(300u32), 0u32..900],
        window_s in prop_oneof![Just(900u32), Just(3600), 60u32..2000],
        resident_days in 1u32..=3,
        resident_presence_s in prop_oneof![Just(14400u32), 300u32..7200],
        loyalty_days in 1u32..=5,
    ) -> Counting {
        Counting { session_gap_s, min_dwell_s, window_s, resident_days, resident_presence_s, loyalty_days, ..Counting::default() }
    }
}

/// Devices that come back day after day, stay a while, and probe with
/// gaps around the session gap, some strong and some weak.
fn stream() -> impl Strategy<Value = Vec<Detection>> {
    let device = (
        0u128..8,
        any::<bool>(),
        prop::collection::vec(
            (0i64..4, 0i64..86_400, 1i64..40, 10i64..900, any::<bool>()),
            1..6,
        ),
    );
    prop::collection::vec(device, 1..8).prop_map(|devs| {
        let mut out = Vec::new();
        for (n, _, stays) in devs {
            let id = DeviceId((n + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
            for (day, start, probes, step, weak_some) in stays {
                let mut t = T0 + (day * 86_400 + start) * S;
                for i in 0..probes {
                    out.push(detection(
                        t,
                        id,
                        n % 3 == 0,
                        !(weak_some && i % 3 == 1),
                        i % 7 == 0,
                    ));
                    t += step * S + i * 1_000;
                }
            }
        }
        out.sort_by_key(|d| (d.t_us, d.device));
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn counter_matches_reference_model(
        c in params(),
        tz in prop::sample::select(vec!["UTC", "Asia/Shanghai", "America/New_York", "Asia/Kathmandu"]),
        dets in stream(),
    ) {
        compare(c, tz, &dets)?;
    }
}

/// Staff every day for ten days: residents from the fourth; the same
/// regular every other day: returning visits.
#[test]
fn residents_and_returning_over_ten_days() {
    let mut dets = Vec::new();
    let staff = DeviceId(1 << 100);
    let regular = DeviceId(2 << 100);
    for day in 0..10i64 {
        for m in (0..9 * 60).step_by(4) {
            dets.push(detection(
                T0 + (day * 86_400 + 8 * 3600 + m * 60) * S,
                staff,
                false,
                true,
                false,
            ));
        }
        if day % 2 == 0 {
            for m in (0..40).step_by(2) {
                dets.push(detection(
                    T0 + (day * 86_400 + 12 * 3600 + m * 60) * S,
                    regular,
                    false,
                    true,
                    false,
                ));
            }
        }
    }
    dets.sort_by_key(|d| d.t_us);
    compare(Counting::default(), "Europe/Prague", &dets).unwrap();
    let (_, days) = agent_counts(&run_counter(&Counting::default(), "Europe/Prague", &dets));
    assert_eq!(
        days.iter().map(|d| d.residents).collect::<Vec<_>>(),
        [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    );
    assert_eq!(
        days.iter().map(|d| d.returning).collect::<Vec<_>>(),
        [0, 1, 2, 0, 1, 0, 1, 0, 1, 0]
    );
}

/// A session that starts on day D-1 and runs past midnight decides whether
/// the device is a resident on D: windows of D wait for it.
#[test]
fn resident_status_waits_for_a_session_across_midnight() {
    let c = Counting {
        resident_days: 1,
        resident_presence_s: 3 * 3600,
        ..Counting::default()
    };
    let dev = DeviceId(3 << 100);
    let mut dets = Vec::new();
    // Day 0: 22:00 to 02:00 next day, strong every 5 minutes: 4 h started on day 0.
    for m in (0..=240).step_by(5) {
        dets.push(detection(
            T0 + (22 * 3600 + m * 60) * S,
            dev,
            false,
            true,
            false,
        ));
    }
    // Day 1 10:00: a short strong detection: a resident on day 1.
    dets.push(detection(
        T0 + (86_400 + 10 * 3600) * S,
        dev,
        false,
        true,
        false,
    ));
    compare(c, "UTC", &dets).unwrap();
}

/// Ten days of `simulate` traffic in Shanghai time, through SPEC §1 and the
/// counter, against the model on the same detections.
#[test]
fn counter_matches_reference_model_on_simulated_store() {
    use footfall_agent::detect::Detector;
    use footfall_agent::privacy::Keys;
    use footfall_agent::simulate::{simulate, SimulateArgs};
    use footfall_agent::wire::linktype::LinkType;
    use footfall_agent::wire::pcapfile::CaptureFile;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("store.pcap");
    let args = SimulateArgs {
        out: out.clone(),
        days: 10,
        seed: 7,
        start: "2026-03-02".into(),
        timezone: "Asia/Shanghai".into(),
        visitors_per_day: 80,
        passersby_per_day: 120,
        staff: 3,
        fixed: 1,
        randomized_share: 0.5,
        returning_share: 0.6,
        uplift: 0.0,
        uplift_from: None,
        uplift_to: None,
        beacon_interval_s: 60.0,
        crowd: 0,
        crowd_hours: 6.0,
        truth: None,
    };
    simulate(&args).unwrap();
    let mut cap = CaptureFile::open(&out).unwrap();
    let mut det = Detector::new(
        LinkType::Radiotap,
        Keys::fixed(&[3; 32]),
        Default::default(),
        -90,
        -70,
    );
    let mut dets = Vec::new();
    while let Some(rec) = cap.next_record() {
        let rec = rec.unwrap();
        if let Some(d) = det.frame(rec.ts_us, rec.data) {
            dets.push(d);
        }
    }
    compare(Counting::default(), "Asia/Shanghai", &dets).unwrap();
    let (windows, days) = agent_counts(&run_counter(&Counting::default(), "Asia/Shanghai", &dets));
    assert_eq!(days.len(), 10);
    // The run exercises every rule: residents, returning, passers-by.
    assert!(days[5..].iter().all(|d| d.residents >= 3), "{days:?}");
    assert!(days.iter().map(|d| d.returning).sum::<u64>() > 20);
    assert!(windows.iter().map(|w| w.passersby).sum::<u64>() > 500);
}

/// Issue 18: in each privacy mode the counter reports exactly what the
/// model counts on the same detections (ids made by that mode's rotating
/// keys), less what the mode may not know. Four days of a simulated store
/// with staff and regulars, in Prague time across midnight rotations.
#[test]
fn counter_matches_reference_model_in_each_privacy_mode() {
    use footfall_agent::days::LocalDays;
    use footfall_agent::detect::Detector;
    use footfall_agent::privacy::Keys;
    use footfall_agent::simulate::{simulate, SimulateArgs};
    use footfall_agent::wire::linktype::LinkType;
    use footfall_agent::wire::pcapfile::CaptureFile;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("store.pcap");
    let tz = "Europe/Prague";
    simulate(&SimulateArgs {
        out: out.clone(),
        days: 4,
        seed: 11,
        start: "2026-03-02".into(),
        timezone: tz.into(),
        visitors_per_day: 60,
        passersby_per_day: 80,
        staff: 2,
        fixed: 1,
        randomized_share: 0.5,
        returning_share: 0.6,
        uplift: 0.0,
        uplift_from: None,
        uplift_to: None,
        beacon_interval_s: 60.0,
        crowd: 0,
        crowd_hours: 6.0,
        truth: None,
    })
    .unwrap();
    let modes = [
        Privacy::of(PrivacyMode::Ephemeral),
        Privacy::of(PrivacyMode::Daily),
        Privacy {
            mode: PrivacyMode::Loyalty,
            rotation: Rotation::Days(2),
        },
    ];
    let zone = jiff::tz::TimeZone::get(tz).unwrap();
    for privacy in modes {
        let mut cap = CaptureFile::open(&out).unwrap();
        let keys = Keys::in_memory(privacy.rotation, LocalDays::new(zone.clone()));
        let mut det = Detector::new(LinkType::Radiotap, keys, Default::default(), -90, -70);
        let mut dets = Vec::new();
        while let Some(rec) = cap.next_record() {
            let rec = rec.unwrap();
            if let Some(d) = det.frame(rec.ts_us, rec.data) {
                dets.push(d);
            }
        }
        let model = Model {
            c: Counting::default(),
            tz: zone.clone(),
        };
        let (mw, md) = mask(privacy.mode, model.run(&dets));
        let (aw, ad) = agent_counts(&run_counter_in(&Counting::default(), tz, &dets, privacy));
        assert_eq!(aw.len(), mw.len(), "{:?}: windows", privacy.mode);
        for (a, m) in aw.iter().zip(&mw) {
            assert_eq!(a, m, "{:?}", privacy.mode);
        }
        assert_eq!(ad, md, "{:?}", privacy.mode);
        // Each mode still counts something beyond frames.
        match privacy.mode {
            PrivacyMode::Ephemeral => assert!(aw.iter().all(|w| w.visits == NULL)),
            PrivacyMode::Daily => {
                assert!(
                    ad.iter().all(|d| d.returning == NULL && d.unique > 20),
                    "{ad:?}"
                );
            }
            PrivacyMode::Loyalty => {
                // Keys of two days: regulars return within each pair only.
                assert!(ad[1].returning > 0 && ad[2].returning == 0, "{ad:?}");
            }
        }
    }
}
