//! The calibration: how many people one unit of each feature stands for,
//! and how wide the 90 % interval is. A box without a file of its own uses
//! `Calibration::builtin()`, fitted by `footfall-agent calibrate` on the
//! shared lab days of 2022 (see docs/people.md), so a new box reports
//! estimates from its first window.
//!
//! The file is TOML, written by `calibrate`; its numbers are part of
//! `params_hash`, so estimates made under two calibrations are never mixed
//! unnoticed. A file for another estimator or version is refused: its
//! numbers would mean something else.

use std::path::Path;

use footfall_report::PrivacyMode;
use serde::{Deserialize, Serialize};

/// The estimator's name and version, in every calibration and in
/// `params_hash`. Bump the version whenever the features change meaning.
pub const ESTIMATOR: &str = "footfall-people";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub estimator: String,
    pub version: u32,
    /// People per persistent device-window (a device seen in two bursts
    /// or more, weighted by the share of the window it spans).
    pub per_persistent: f64,
    /// People per distinct fingerprint among the devices seen once.
    pub per_fingerprint: f64,
    /// The 5 % and 95 % quantiles of log((truth + 1) / (estimate + 1)),
    /// each window's estimate made by a fit that did not see its file.
    pub interval_log_lo: f64,
    pub interval_log_hi: f64,
    /// A rise in `present` smaller than this is noise, not an entry; the
    /// fit picks it so that the entries of its files add up to the truth.
    pub entries_deadband: f64,
    /// Windows the fit saw, and the files they came from (for people).
    #[serde(default)]
    pub windows: u64,
    #[serde(default)]
    pub fitted_on: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{path}: cannot read the calibration: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a calibration file: {what}")]
    Malformed { path: String, what: String },
    #[error("{path}: fitted for estimator {found}, but this agent's is {ESTIMATOR} version {VERSION}; run `footfall-agent calibrate` again")]
    OtherEstimator { path: String, found: String },
}

/// The captures the built-in calibration was fitted on: `evaluate
/// --held-out` leaves them out.
const BUILTIN_FITTED_ON: [&str; 17] = [
    "sc6-61_2022-10-18_p1.pcap",
    "sc6-61_2022-10-19_p1.pcap",
    "sc6-61_2022-10-25_p1.pcap",
    "sc6-61_2022-10-26_p1.pcap",
    "sc6-61_2022-11-01_p1.pcap",
    "sc6-61_2022-11-02_p1.pcap",
    "sc6-61_2022-11-08_p1.pcap",
    "sc6-61_2022-11-09_p1.pcap",
    "sc6-61_2022-11-15_p1.pcap",
    "sc6-61_2022-11-16_p1.pcap",
    "sc6-61_2022-11-22_p1.pcap",
    "sc6-61_2022-11-23_p1.pcap",
    "sc6-61_2022-11-24_p1.pcap",
    "sc6-61_2023-08-28_p1.pcap",
    "sc6-61_2023-08-29_p1.pcap",
    "sc6-61_2023-08-30_p1.pcap",
    "sc6-61_2023-08-31_p1.pcap",
];

impl Calibration {
    /// Fitted with `footfall-agent calibrate` on 17 of the 30 lab captures
    /// in shared/data/occupancy (`fixed-devices.txt` opted out): the 13
    /// days of 2022 and the empty days 2023-08-28 to 08-31, so that the fit
    /// sees both crowds and an empty room. The other 13 (2023-09-01 to
    /// 09-07, and 2024) are the held-out ones the README quotes.
    pub fn builtin() -> Calibration {
        Calibration {
            estimator: ESTIMATOR.into(),
            version: VERSION,
            per_persistent: 1.3302,
            per_fingerprint: 1.0357,
            interval_log_lo: -0.9285,
            interval_log_hi: 0.3537,
            entries_deadband: 0.4204,
            windows: 555,
            fitted_on: BUILTIN_FITTED_ON.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The built-in calibration for what `mode` lets the estimator see.
    /// Under `ephemeral` a phone is linked within one key epoch (five
    /// minutes) only, so its features read lower; its calibration is
    /// fitted the same way, on the same 17 captures, with the features
    /// that mode measures (`calibrate --config` with `mode =
    /// "ephemeral"`). Held out: MAE 0.59 against 0.54 for the other modes.
    pub fn builtin_for(mode: PrivacyMode) -> Calibration {
        match mode {
            PrivacyMode::Ephemeral => Calibration {
                per_persistent: 0.8562,
                per_fingerprint: 2.1392,
                interval_log_lo: -0.9666,
                interval_log_hi: 0.3073,
                entries_deadband: 0.3296,
                ..Calibration::builtin()
            },
            PrivacyMode::Daily | PrivacyMode::Loyalty => Calibration::builtin(),
        }
    }

    pub fn load(path: &Path) -> Result<Calibration, CalibrationError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Io {
            path: name.clone(),
            source,
        })?;
        Calibration::parse(&name, &text)
    }

    pub fn parse(name: &str, text: &str) -> Result<Calibration, CalibrationError> {
        let malformed = |what: String| CalibrationError::Malformed {
            path: name.to_string(),
            what,
        };
        let c: Calibration = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .unwrap_or(1);
            malformed(format!("line {line}: {}", e.message().trim()))
        })?;
        if c.estimator != ESTIMATOR || c.version != VERSION {
            return Err(CalibrationError::OtherEstimator {
                path: name.to_string(),
                found: format!("{} version {}", c.estimator, c.version),
            });
        }
        for (field, v) in [
            ("per_persistent", c.per_persistent),
            ("per_fingerprint", c.per_fingerprint),
            ("entries_deadband", c.entries_deadband),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(malformed(format!("{field} = {v}: must be a number ≥ 0")));
            }
        }
        if !(c.interval_log_lo.is_finite()
            && c.interval_log_hi.is_finite()
            && c.interval_log_lo <= 0.0
            && c.interval_log_hi >= 0.0)
        {
            return Err(malformed(format!(
                "interval_log_lo = {}, interval_log_hi = {}: need lo ≤ 0 ≤ hi",
                c.interval_log_lo, c.interval_log_hi
            )));
        }
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# footfall people calibration, written by `footfall-agent calibrate`.\n{}",
            toml::to_string(self).expect("a calibration serializes")
        )
    }

    /// What `params_hash` covers: the estimator and every number that
    /// changes an estimate (not the names of the files it was fitted on).
    pub fn canonical(&self) -> String {
        format!(
            "estimator={}/{};per_persistent={:?};per_fingerprint={:?};interval=[{:?},{:?}];entries_deadband={:?}",
            self.estimator,
            self.version,
            self.per_persistent,
            self.per_fingerprint,
            self.interval_log_lo,
            self.interval_log_hi,
            self.entries_deadband
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_use() {
        let c = Calibration::builtin();
        assert_eq!(Calibration::parse("c.toml", &c.to_toml()).unwrap(), c);
        let other = c.to_toml().replace("version = 1", "version = 99");
        let e = Calibration::parse("c.toml", &other)
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("version 99"), "{e}");
        let negative = c
            .to_toml()
            .replace("per_fingerprint = 1.0357", "per_fingerprint = -1.0");
        let e = Calibration::parse("c.toml", &negative)
            .unwrap_err()
            .to_string();
        assert!(e.contains("per_fingerprint"), "{e}");
        let e = Calibration::parse("c.toml", "estimator = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml") && e.contains("line 1"), "{e}");
        let e = Calibration::parse("c.toml", "per_persistent = 1.0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field"), "{e}");
    }
}
