//! SPEC §8's estimates against truth: the lab days of ../shared/data
//! (the accuracy targets of issue 17, on the days the built-in calibration
//! did not see), the single-phone captures, and simulated phones whose
//! truth is known.

use std::path::PathBuf;

use footfall_agent::config::Privacy;
use footfall_agent::evaluate::{self, Evaluation};
use footfall_agent::people::Calibration;
use footfall_agent::simulate::{simulate, SimulateArgs};
use footfall_report::PrivacyMode;

use crate::require::shared_data;

fn lab_config(data: &std::path::Path) -> footfall_agent::config::Config {
    let mut c = evaluate::default_config();
    c.opt_out_file = Some(data.join("occupancy/fixed-devices.txt"));
    c
}

/// Issue 17's targets, scored as SPEC §8 says, each file from a fresh
/// state, the lab's computers opted out, on the 13 captures the built-in
/// calibration was not fitted on (2023-09-01..07 and 2024).
#[test]
fn held_out_lab_days_meet_the_accuracy_targets() {
    let Some(data) = shared_data() else { return };
    let mut captures: Vec<PathBuf> = std::fs::read_dir(data.join("occupancy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    captures.sort();
    assert_eq!(captures.len(), 30, "the 30 lab captures");
    // Every privacy mode, each with its built-in calibration: ephemeral
    // keys link a phone for five minutes only, and must still count.
    for privacy in PrivacyMode::ALL.map(Privacy::of) {
        let mut config = lab_config(&data);
        config.privacy = privacy;
        meets_targets(&config, &captures);
    }
}

fn meets_targets(config: &footfall_agent::config::Config, captures: &[PathBuf]) {
    let mode = config.privacy.mode;
    let calibration = Calibration::builtin_for(mode);
    let scores = evaluate::score_all(config, &calibration, None, captures, true).unwrap();
    assert_eq!(scores.len(), 13, "held-out captures scored");
    let e = Evaluation::of(&scores);
    let o = &e.overall;
    println!("{mode}:\n{}", evaluate::render(&e));
    assert!(o.present_mae <= 1.5, "{mode}: MAE {:.2}", o.present_mae);
    let within = |est: f64, truth: f64, by: f64| (est / truth - 1.0).abs() <= by;
    assert!(
        within(o.person_hours_est, o.person_hours_truth, 0.20),
        "{mode}: person-hours {:.1} of {:.1}",
        o.person_hours_est,
        o.person_hours_truth
    );
    assert!(
        within(o.entries_est, o.entries_truth, 0.30),
        "{mode}: entries {:.1} of {:.1}",
        o.entries_est,
        o.entries_truth
    );
    let empty_mean = e.empty.person_hours_est / (e.empty.windows as f64 * 0.25);
    assert!(
        e.empty.windows >= 4 * 95,
        "{} empty windows",
        e.empty.windows
    );
    assert!(empty_mean <= 0.5, "empty rooms average {empty_mean:.2}");
    // Busy days: better than the README's naive yardstick there (3.44 on
    // the 2024 files, 2.92 over every busy file).
    assert!(
        e.busy.present_mae < 2.92,
        "busy MAE {:.2}",
        e.busy.present_mae
    );
}

/// One phone alone in a capture is about one person.
#[test]
fn single_phone_captures_estimate_about_one_person() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("captures/ProbingPatternsDataset");
    let mut checked = 0;
    for name in [
        "S21Ultra-M_anonymized.pcap",
        "iPhone11-C_anonymized.pcap",
        "iPhone11-F_anonymized.pcap",
    ] {
        let present = present_per_window(&dir.join(name));
        assert!(!present.is_empty(), "{name}: no window with frames");
        let mean = present.iter().sum::<f64>() / present.len() as f64;
        assert!(
            (0.7..=2.0).contains(&mean),
            "{name}: {mean:.2} people on average"
        );
        checked += 1;
    }
    assert_eq!(checked, 3);
}

/// `present_est` of each window with frames, replayed from a fresh state.
fn present_per_window(capture: &std::path::Path) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[store]\nstore_id = \"p\"\nagent_id = \"a\"\n[storage]\npath = \"{}\"\n",
        dir.path().join("state").display()
    );
    let config = footfall_agent::config::Config::parse(&dir.path().join("a.toml"), &text).unwrap();
    let emit = dir.path().join("r.jsonl");
    footfall_agent::replay::replay(&config, &[capture.to_path_buf()], &emit).unwrap();
    std::fs::read_to_string(&emit)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<footfall_report::Report>(l).ok())
        .filter_map(|r| match r {
            footfall_report::Report::Window(w) if w.frames > 0 => w.present_est,
            _ => None,
        })
        .collect()
}

fn simulated(dir: &std::path::Path, name: &str, seed: u64) -> PathBuf {
    let out = dir.join(format!("{name}.pcap"));
    simulate(&SimulateArgs {
        out: out.clone(),
        days: 2,
        seed,
        start: "2026-03-02".into(),
        timezone: "UTC".into(),
        visitors_per_day: 300,
        passersby_per_day: 600,
        staff: 0,
        fixed: 2,
        randomized_share: 0.7,
        returning_share: 0.3,
        uplift: 0.0,
        uplift_from: None,
        uplift_to: None,
        beacon_interval_s: 10.0,
        crowd: 0,
        crowd_hours: 6.0,
        truth: Some(dir.join(format!("{name}.occupancy.tsv"))),
    })
    .unwrap();
    out
}

/// Simulated phones that rotate their MACs, with known truth: a
/// calibration fitted on one simulated store estimates another within
/// issue 17's per-window and person-hour targets, and its tools read the
/// simulator's truth beside the capture.
#[test]
fn a_calibration_fitted_on_simulated_phones_holds_on_others() {
    let dir = tempfile::tempdir().unwrap();
    let fit_on = simulated(dir.path(), "fit", 1);
    let check = simulated(dir.path(), "check", 2);
    let config = evaluate::default_config();
    let builtin = Calibration::builtin();
    let fit_scores = evaluate::score_all(&config, &builtin, None, &[fit_on], false).unwrap();
    let fitted = evaluate::fit::calibrate(&fit_scores).unwrap();
    assert_eq!(fitted.fitted_on, ["fit.pcap"]);
    let scores = evaluate::score_all(&config, &fitted, None, &[check], false).unwrap();
    let e = Evaluation::of(&scores).overall;
    println!("{e:?}\n{fitted:?}");
    assert!(e.windows >= 150, "{} windows scored", e.windows);
    assert!(e.truth_mean > 1.0, "a busy store: {:.2}", e.truth_mean);
    assert!(e.present_mae <= 1.5, "MAE {:.2}", e.present_mae);
    assert!(
        (e.person_hours_est / e.person_hours_truth - 1.0).abs() <= 0.2,
        "person-hours {:.1} of {:.1}",
        e.person_hours_est,
        e.person_hours_truth
    );
    // Far better than counting devices, which the rotation inflates.
    let devices: f64 = scores[0]
        .windows
        .iter()
        .map(|w| w.features.phones as f64)
        .sum::<f64>()
        / scores[0].windows.len() as f64;
    assert!(devices > 2.0 * e.truth_mean, "{devices:.1} phones a window");
}
