//! `footfall-agent evaluate` and `calibrate`: SPEC §8's estimates against
//! a truth (`truth`), scored the way SPEC §8 says, drawn (`svg`), and the
//! calibration fitted from them (`fit`).
//!
//! Each capture is counted from a fresh state, in memory, under the
//! store's configuration (counting parameters, opt-out list, calibration)
//! and a throwaway key: what a newly installed box would report. Nothing
//! is written but the picture and the calibration file.

pub mod fit;
pub mod svg;
pub mod truth;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use footfall_report::Report;
use serde::Serialize;

use crate::capture;
use crate::config::Config;
use crate::count::{Counter, MemHistory, ReportMeta, State};
use crate::days::LocalDays;
use crate::people::{Calibration, Features};
use crate::pipeline;
use crate::privacy::Keys;
pub use truth::Truth;

const US_PER_S: i64 = 1_000_000;

/// One scored window.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub start_s: i64,
    pub truth: f64,
    pub truth_entries: f64,
    pub present: f64,
    pub lo: f64,
    pub hi: f64,
    pub entries: f64,
    #[serde(skip)]
    pub features: Features,
    /// The features of the window before, when it was final just before
    /// (entries are the rise from it).
    #[serde(skip)]
    pub before: Option<Features>,
}

/// One capture (or several read as one timeline) against its truth.
#[derive(Debug, Clone, Serialize)]
pub struct FileScore {
    pub name: String,
    pub window_s: i64,
    pub windows: Vec<Window>,
}

/// Errors of a set of windows, as SPEC §8 scores them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    pub windows: usize,
    pub truth_mean: f64,
    pub present_mae: f64,
    pub present_rmse: f64,
    pub person_hours_est: f64,
    pub person_hours_truth: f64,
    pub entries_est: f64,
    pub entries_truth: f64,
    /// Share of windows whose truth is inside [present_lo, present_hi].
    pub interval_coverage: f64,
}

impl Errors {
    pub fn of<'a>(windows: impl IntoIterator<Item = &'a Window>, window_s: i64) -> Errors {
        let mut e = Errors::default();
        let (mut abs, mut sq, mut inside, mut truth) = (0.0, 0.0, 0usize, 0.0);
        let hours = window_s as f64 / 3600.0;
        for w in windows {
            e.windows += 1;
            abs += (w.present - w.truth).abs();
            sq += (w.present - w.truth).powi(2);
            inside += usize::from(w.lo - 1e-9 <= w.truth && w.truth <= w.hi + 1e-9);
            truth += w.truth;
            e.person_hours_est += w.present * hours;
            e.person_hours_truth += w.truth * hours;
            e.entries_est += w.entries;
            e.entries_truth += w.truth_entries;
        }
        if e.windows > 0 {
            let n = e.windows as f64;
            e.truth_mean = truth / n;
            e.present_mae = abs / n;
            e.present_rmse = (sq / n).sqrt();
            e.interval_coverage = inside as f64 / n;
        }
        e
    }
}

/// What `evaluate` prints: each file, all of them, and (SPEC §8 on the lab
/// days: empty rooms make any method look good) the busy and empty ones.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub files: Vec<(String, Errors)>,
    pub overall: Errors,
    /// Files whose mean truth is at least one person.
    pub busy: Errors,
    /// Files where nobody was ever there: the mean estimate is the error.
    pub empty: Errors,
    /// Across files: MAE and RMSE of each file's person-hours and entries.
    pub person_hours_mae: f64,
    pub person_hours_rmse: f64,
    pub entries_mae: f64,
    pub entries_rmse: f64,
}

impl Evaluation {
    pub fn of(scores: &[FileScore]) -> Evaluation {
        let window_s = scores.first().map_or(900, |s| s.window_s);
        let files: Vec<(String, Errors)> = scores
            .iter()
            .map(|s| (s.name.clone(), Errors::of(&s.windows, s.window_s)))
            .collect();
        let pick = |keep: &dyn Fn(&Errors) -> bool| {
            Errors::of(
                scores
                    .iter()
                    .zip(&files)
                    .filter(|(_, (_, e))| keep(e))
                    .flat_map(|(s, _)| &s.windows),
                window_s,
            )
        };
        let spread = |f: &dyn Fn(&Errors) -> f64| {
            let n = files.len().max(1) as f64;
            let mae = files.iter().map(|(_, e)| f(e).abs()).sum::<f64>() / n;
            let rmse = (files.iter().map(|(_, e)| f(e).powi(2)).sum::<f64>() / n).sqrt();
            (mae, rmse)
        };
        let (person_hours_mae, person_hours_rmse) =
            spread(&|e| e.person_hours_est - e.person_hours_truth);
        let (entries_mae, entries_rmse) = spread(&|e| e.entries_est - e.entries_truth);
        Evaluation {
            overall: pick(&|_| true),
            busy: pick(&|e| e.truth_mean >= 1.0),
            empty: pick(&|e| e.person_hours_truth == 0.0),
            files,
            person_hours_mae,
            person_hours_rmse,
            entries_mae,
            entries_rmse,
        }
    }
}

/// The capture beside which a truth is found: `NAME.occupancy.tsv` or
/// `NAME.door.csv` for `NAME.pcap` (or `.cap`, `.pcapng`).
pub fn truth_beside(capture: &Path) -> Result<PathBuf> {
    let stem = capture.with_extension("");
    for ext in ["occupancy.tsv", "door.csv"] {
        let p = stem.with_extension(ext);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "{}: no truth beside it ({} or {}); name one with --truth",
        capture.display(),
        stem.with_extension("occupancy.tsv").display(),
        stem.with_extension("door.csv").display()
    )
}

/// Counts `captures` as one timeline from a fresh state and scores every
/// window wholly inside the truth.
pub fn score(
    config: &Config,
    calibration: &Calibration,
    truth: &Truth,
    captures: &[PathBuf],
) -> Result<FileScore> {
    let keys = Keys::in_memory(
        config.privacy.rotation,
        LocalDays::new(config.timezone.clone()),
    );
    let mut detector = pipeline::detector(config, keys)?;
    let c = &config.counting;
    let meta = ReportMeta {
        store_id: config.store_id.clone(),
        agent_id: config.agent_id.clone(),
        agent_version: crate::VERSION.to_string(),
        params_hash: String::new(),
    };
    let mut counter = Counter::new(c, config.timezone.clone(), meta, State::default())
        .with_people(Some(calibration.clone()))
        .with_privacy(config.privacy)
        .record_features();
    let mut histories = MemHistory::default();
    for path in captures {
        let cap = capture::open_file(path, &mut detector)?;
        let mut failed = None;
        capture::read_file(cap, &mut detector, 0, Vec::new, |_, batch| {
            if let Err(e) = counter.detections(&batch.detections, &mut histories) {
                failed = Some(e);
                return false;
            }
            true
        })?;
        if let Some(e) = failed {
            bail!("{}: {e}", path.display());
        }
    }
    counter.finish(&mut histories)?;
    let features: std::collections::HashMap<i64, Features> =
        counter.take_features().into_iter().collect();
    let window_s = i64::from(c.window_s);
    let windows = counter
        .drain_reports()
        .into_iter()
        .filter_map(|r| match r {
            Report::Window(w) => Some(w),
            Report::Day(_) => None,
        })
        .filter_map(|w| {
            let (truth, truth_entries) =
                truth.window(w.window_start * US_PER_S, w.window_end * US_PER_S)?;
            Some(Window {
                start_s: w.window_start,
                truth,
                truth_entries,
                present: w.present_est?,
                lo: w.present_lo?,
                hi: w.present_hi?,
                entries: w.entries_est?,
                features: features.get(&w.window_start).copied().unwrap_or_default(),
                before: features.get(&(w.window_start - window_s)).copied(),
            })
        })
        .collect();
    let name = captures
        .iter()
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect::<Vec<_>>()
        .join("+");
    Ok(FileScore {
        name,
        window_s,
        windows,
    })
}

/// The config `evaluate` uses without one: SPEC's parameters, UTC.
pub fn default_config() -> Config {
    Config::parse(
        Path::new("(built-in defaults)"),
        "[store]\nstore_id = \"evaluate\"\nagent_id = \"evaluate\"\n[storage]\npath = \"unused\"\n",
    )
    .expect("the built-in defaults are a valid config")
}

/// Scores each capture against the truth beside it, or (`truth` given)
/// all of them as one timeline against it; `held_out` keeps only the
/// captures `calibration` was not fitted on.
pub fn score_all(
    config: &Config,
    calibration: &Calibration,
    truth: Option<&Path>,
    captures: &[PathBuf],
    held_out: bool,
) -> Result<Vec<FileScore>> {
    let seen = |p: &PathBuf| {
        held_out
            && p.file_name().is_some_and(|n| {
                calibration
                    .fitted_on
                    .iter()
                    .any(|f| *f == *n.to_string_lossy())
            })
    };
    let captures: Vec<PathBuf> = captures.iter().filter(|p| !seen(p)).cloned().collect();
    if captures.is_empty() {
        bail!("no capture left to score: the calibration was fitted on every one given");
    }
    match truth {
        Some(t) => Ok(vec![score(
            config,
            calibration,
            &Truth::load(t)?,
            &captures,
        )?]),
        None => captures
            .iter()
            .map(|c| {
                let t = Truth::load(&truth_beside(c)?)?;
                score(config, calibration, &t, std::slice::from_ref(c))
            })
            .collect(),
    }
}

/// `evaluate`'s table.
pub fn render(e: &Evaluation) -> String {
    let mut out = String::new();
    let row = |name: &str, x: &Errors| {
        format!(
            "{name:<34} {:>5} {:>6.2} {:>6.2} {:>6.2} {:>8.1} {:>8.1} {:>+6.0}% {:>7.1} {:>6.0} {:>+6.0}% {:>5.0}%\n",
            x.windows,
            x.truth_mean,
            x.present_mae,
            x.present_rmse,
            x.person_hours_est,
            x.person_hours_truth,
            pct(x.person_hours_est, x.person_hours_truth),
            x.entries_est,
            x.entries_truth,
            pct(x.entries_est, x.entries_truth),
            100.0 * x.interval_coverage
        )
    };
    out.push_str(&format!(
        "{:<34} {:>5} {:>6} {:>6} {:>6} {:>8} {:>8} {:>7} {:>7} {:>6} {:>7} {:>6}\n",
        "file",
        "wins",
        "truth",
        "MAE",
        "RMSE",
        "p-h est",
        "p-h true",
        "p-h err",
        "ent est",
        "ent",
        "ent err",
        "in 90%"
    ));
    for (name, x) in &e.files {
        out.push_str(&row(name, x));
    }
    out.push('\n');
    out.push_str(&row("all", &e.overall));
    out.push_str(&row("busy files (truth ≥ 1)", &e.busy));
    out.push_str(&row("empty files", &e.empty));
    out.push_str(&format!(
        "\nper file: person-hours MAE {:.1} RMSE {:.1}; entries MAE {:.1} RMSE {:.1}\n",
        e.person_hours_mae, e.person_hours_rmse, e.entries_mae, e.entries_rmse
    ));
    out
}

fn pct(est: f64, truth: f64) -> f64 {
    if truth > 0.0 {
        100.0 * (est / truth - 1.0)
    } else {
        0.0
    }
}
