//! `calibrate`: the two factors of SPEC §8's estimate fitted by least
//! squares (no intercept: no phones, no people), and the 90 % interval from
//! the errors each file's windows get from a fit that did not see that
//! file, so the interval speaks for a box the fit never saw.

use anyhow::{bail, Result};

use super::FileScore;
use crate::people::calibration::{Calibration, ESTIMATOR, VERSION};
use crate::people::Features;

/// Fewer windows with anyone present than this cannot pin two factors.
const MIN_BUSY_WINDOWS: usize = 8;

/// Non-negative least squares over two features (by the active set: with
/// two, trying each single feature when the joint fit goes negative is
/// exact).
fn solve(rows: &[([f64; 2], f64)]) -> [f64; 2] {
    let (mut a, mut b, mut c, mut d, mut e) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (x, y) in rows {
        a += x[0] * x[0];
        b += x[0] * x[1];
        c += x[1] * x[1];
        d += x[0] * y;
        e += x[1] * y;
    }
    let det = a * c - b * b;
    if det.abs() > 1e-12 {
        let k = [(d * c - b * e) / det, (a * e - b * d) / det];
        if k[0] >= 0.0 && k[1] >= 0.0 {
            return k;
        }
    }
    let one = |num: f64, den: f64| if den > 0.0 { (num / den).max(0.0) } else { 0.0 };
    let only0 = [one(d, a), 0.0];
    let only1 = [0.0, one(e, c)];
    let sse = |k: [f64; 2]| -> f64 {
        rows.iter()
            .map(|(x, y)| (k[0] * x[0] + k[1] * x[1] - y).powi(2))
            .sum()
    };
    if sse(only0) <= sse(only1) {
        only0
    } else {
        only1
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    let next = sorted[(i + 1).min(sorted.len() - 1)];
    sorted[i] + frac * (next - sorted[i])
}

/// Fits a calibration on every scored window of `files`.
pub fn calibrate(files: &[FileScore]) -> Result<Calibration> {
    let rows = |skip: Option<usize>| -> Vec<([f64; 2], f64)> {
        files
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .flat_map(|(_, f)| f.windows.iter().map(|w| (w.features.regressors(), w.truth)))
            .collect()
    };
    let all = rows(None);
    let busy = all.iter().filter(|(_, y)| *y > 0.0).count();
    if busy < MIN_BUSY_WINDOWS {
        bail!(
            "only {busy} scored windows with anyone present; calibrating needs {MIN_BUSY_WINDOWS} or more (longer captures, or a truth that covers them)"
        );
    }
    let k = solve(&all);
    // Each file's windows judged by a fit without that file; with one
    // file there is nothing to leave out, and the fit judges itself.
    let mut residuals = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let ki = if files.len() > 1 {
            solve(&rows(Some(i)))
        } else {
            k
        };
        for w in &f.windows {
            let x = w.features.regressors();
            let p = (ki[0] * x[0] + ki[1] * x[1]).max(0.0);
            // An empty room estimated empty is inside any interval; its
            // hours of zeros would only make the interval look surer.
            if w.truth > 0.0 || p > 0.0 {
                residuals.push(((w.truth + 1.0) / (p + 1.0)).ln());
            }
        }
    }
    residuals.sort_by(f64::total_cmp);
    let present = |f: &Features| {
        let x = f.regressors();
        (k[0] * x[0] + k[1] * x[1]).max(0.0)
    };
    let rises: Vec<(f64, f64)> = files
        .iter()
        .flat_map(|f| &f.windows)
        .filter_map(|w| {
            Some((
                present(&w.features) - present(w.before.as_ref()?),
                w.truth_entries,
            ))
        })
        .collect();
    Ok(Calibration {
        estimator: ESTIMATOR.into(),
        version: VERSION,
        per_persistent: round4(k[0]),
        per_fingerprint: round4(k[1]),
        interval_log_lo: round4(quantile(&residuals, 0.05).min(0.0)),
        interval_log_hi: round4(quantile(&residuals, 0.95).max(0.0)),
        entries_deadband: round4(deadband(&rises)),
        windows: all.len() as u64,
        fitted_on: files.iter().map(|f| f.name.clone()).collect(),
    })
}

/// The dead band δ for which Σ max(0, rise − δ) equals the true entries
/// (the sum falls as δ grows, so bisection finds it); 0 when even δ = 0
/// gives too few.
fn deadband(rises: &[(f64, f64)]) -> f64 {
    let truth: f64 = rises.iter().map(|r| r.1).sum();
    let entries = |d: f64| -> f64 { rises.iter().map(|r| (r.0 - d).max(0.0)).sum() };
    if entries(0.0) <= truth {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0, 10.0);
    for _ in 0..50 {
        let mid = (lo + hi) / 2.0;
        if entries(mid) > truth {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::Window;

    fn window(persistent: f64, fingerprints: f64, truth: f64) -> Window {
        Window {
            start_s: 0,
            truth,
            truth_entries: 0.0,
            present: 0.0,
            lo: 0.0,
            hi: 0.0,
            entries: 0.0,
            features: Features {
                persistent,
                fingerprints,
                ..Features::default()
            },
            before: None,
        }
    }

    #[test]
    fn recovers_known_factors_and_refuses_too_little_truth() {
        // truth = 2·persistent + 0.5·fingerprints^γ exactly.
        let file = |name: &str, shift: f64| FileScore {
            name: name.into(),
            window_s: 900,
            windows: (0..10)
                .map(|i| {
                    let (p, f) = (f64::from(i) + shift, f64::from(10 - i));
                    let x = window(p, f, 0.0).features.regressors();
                    window(p, f, 2.0 * x[0] + 0.5 * x[1])
                })
                .collect(),
        };
        let c = calibrate(&[file("a", 0.0), file("b", 0.5)]).unwrap();
        assert!((c.per_persistent - 2.0).abs() < 1e-3, "{c:?}");
        assert!((c.per_fingerprint - 0.5).abs() < 1e-3, "{c:?}");
        assert!(c.interval_log_lo.abs() < 1e-3 && c.interval_log_hi.abs() < 1e-3);
        assert_eq!(c.fitted_on, ["a", "b"]);
        let empty = FileScore {
            name: "night".into(),
            window_s: 900,
            windows: vec![window(0.0, 1.0, 0.0); 20],
        };
        let e = calibrate(&[empty]).unwrap_err().to_string();
        assert!(e.contains("only 0 scored windows"), "{e}");
    }

    #[test]
    fn the_dead_band_makes_entries_add_up() {
        // Rises of 3, 1 and 0.5 with 2 true entries: δ = 0.75 leaves
        // 2.25 + 0.25 = 2.5; δ = 1 leaves 2. So δ = 1.
        let d = deadband(&[(3.0, 2.0), (1.0, 0.0), (0.5, 0.0), (-2.0, 0.0)]);
        assert!((d - 1.0).abs() < 1e-6, "{d}");
        assert_eq!(deadband(&[(1.0, 5.0)]), 0.0);
    }

    #[test]
    fn a_factor_never_goes_negative() {
        // The joint fit would weigh fingerprints -0.3: it is 0 instead.
        let rows: Vec<([f64; 2], f64)> = (0..20)
            .map(|i| {
                let i = f64::from(i);
                ([i, 20.0 - i], 2.0 * i - 0.3 * (20.0 - i))
            })
            .collect();
        let k = solve(&rows);
        assert!(k[0] > 0.0 && k[1] == 0.0, "{k:?}");
    }
}
