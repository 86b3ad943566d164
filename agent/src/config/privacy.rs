//! `[privacy]`: the privacy mode (issue 18, docs/privacy.md), how often its
//! key rotates, and the key and opt-out files of SPEC §2.

use std::path::PathBuf;

use footfall_report::PrivacyMode;

pub use crate::privacy::keys::Rotation;
use serde::Deserialize;

/// Ephemeral keys live at most this long: "anonymised within minutes".
pub const MAX_ROTATE_S: u32 = 300;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// `ephemeral` (default), `daily` or `loyalty`.
    pub mode: Option<String>,
    /// `ephemeral`: seconds a key lives, at most 300. Default 300.
    pub rotate_s: Option<u32>,
    /// `loyalty`: days a key lives; default: for ever.
    pub rotate_days: Option<u32>,
    /// SPEC §2 key file. Default `footfall.key` beside the storage directory.
    pub key_file: Option<PathBuf>,
    /// SPEC §2 opt-out list: one MAC a line.
    pub opt_out_file: Option<PathBuf>,
}

/// `[privacy]` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privacy {
    pub mode: PrivacyMode,
    pub rotation: Rotation,
}

impl Privacy {
    /// `mode` with its default rotation (what a config that names only
    /// the mode gets).
    pub fn of(mode: PrivacyMode) -> Privacy {
        let rotation = match mode {
            PrivacyMode::Ephemeral => Rotation::Seconds(MAX_ROTATE_S),
            PrivacyMode::Daily => Rotation::Days(1),
            PrivacyMode::Loyalty => Rotation::Never,
        };
        Privacy { mode, rotation }
    }

    /// The mode and rotation that `raw` asks for, or each problem as
    /// (key, message).
    pub fn resolve(
        raw: &RawPrivacy,
        window_s: u32,
    ) -> Result<Privacy, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let mode = match raw.mode.as_deref() {
            None => PrivacyMode::Ephemeral,
            Some(m) => m.parse().unwrap_or_else(|e: String| {
                problems.push(("mode", format!("mode = {m:?}: {e}")));
                PrivacyMode::Ephemeral
            }),
        };
        let rotation = match mode {
            PrivacyMode::Ephemeral => {
                let s = raw.rotate_s.unwrap_or(MAX_ROTATE_S);
                if !(10..=MAX_ROTATE_S).contains(&s) {
                    problems.push((
                        "rotate_s",
                        format!("rotate_s = {s}: must be 10..{MAX_ROTATE_S} (ephemeral keys are replaced within five minutes)"),
                    ));
                } else if window_s >= s && !window_s.is_multiple_of(s) {
                    problems.push((
                        "rotate_s",
                        format!("rotate_s = {s}: must divide window_s = {window_s}, so that no key spans two windows"),
                    ));
                }
                Rotation::Seconds(s)
            }
            PrivacyMode::Daily => Rotation::Days(1),
            PrivacyMode::Loyalty => match raw.rotate_days {
                None => Rotation::Never,
                Some(d) if (1..=3650).contains(&d) => Rotation::Days(d),
                Some(d) => {
                    problems.push(("rotate_days", format!("rotate_days = {d}: must be 1..3650")));
                    Rotation::Never
                }
            },
        };
        if raw.rotate_s.is_some() && mode != PrivacyMode::Ephemeral {
            problems.push((
                "rotate_s",
                format!(
                    "rotate_s applies to mode = \"ephemeral\" only, not {mode:?}",
                    mode = mode.as_str()
                ),
            ));
        }
        if raw.rotate_days.is_some() && mode != PrivacyMode::Loyalty {
            problems.push((
                "rotate_days",
                format!("rotate_days applies to mode = \"loyalty\" only (daily keys rotate every day), not {:?}", mode.as_str()),
            ));
        }
        if problems.is_empty() {
            Ok(Privacy { mode, rotation })
        } else {
            Err(problems)
        }
    }

    /// What `check-config` and the logs say about the mode in force.
    pub fn describe(&self) -> String {
        match (self.mode, self.rotation) {
            (PrivacyMode::Ephemeral, Rotation::Seconds(s)) => format!(
                "ephemeral: device keys in memory only, replaced every {s} s; \
                 reports carry frames and people estimates, no visit or device counts"
            ),
            (PrivacyMode::Daily, _) => {
                "daily: one device key per local day, destroyed at midnight \
                 with every device state of that day; no returning visitors or residents"
                    .into()
            }
            (_, Rotation::Days(d)) => format!(
                "loyalty: device key kept {d} days, then replaced (returning visitors start over); \
                 needs notice or consent and a retention period"
            ),
            _ => "loyalty: device key kept for ever, visitors can be returning visitors; \
                  needs notice or consent and a retention period"
                .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::counting::{counting_canonical, short_hash};
    use super::super::Config;
    use super::*;

    const GOOD: &str = "[store]\nstore_id = \"shop-1\"\nagent_id = \"door\"\ntimezone = \"Asia/Shanghai\"\n\n[storage]\npath = \"state\"\n";

    /// Issue 18: the default mode is ephemeral; an unknown mode, a key
    /// that would live past five minutes, or a key for the wrong mode is
    /// an error naming its line. Loyalty without rotation keeps the hash
    /// (and so the state) of agents from before modes.
    #[test]
    fn privacy_modes_and_their_errors() {
        let c = Config::parse(Path::new("a.toml"), GOOD).unwrap();
        assert_eq!(c.privacy.mode, footfall_report::PrivacyMode::Ephemeral);
        assert_eq!(c.privacy.rotation, Rotation::Seconds(300));
        let text = format!("{GOOD}\n[privacy]\nmode = \"forever\"\n");
        let err = Config::parse(Path::new("a.toml"), &text).unwrap_err();
        assert_eq!(
            err.problems,
            ["a.toml:10: mode = \"forever\": unknown privacy mode `forever` (expected ephemeral, daily or loyalty)"]
        );
        let text = format!("{GOOD}\n[privacy]\nmode = \"ephemeral\"\nrotate_s = 600\n");
        let err = Config::parse(Path::new("a.toml"), &text).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0].starts_with("a.toml:11: rotate_s = 600: must be 10..300"),
            "{err}"
        );
        let text = format!("{GOOD}\n[privacy]\nmode = \"daily\"\nrotate_days = 2\n");
        let err = Config::parse(Path::new("a.toml"), &text).unwrap_err();
        assert!(
            err.problems[0]
                .starts_with("a.toml:11: rotate_days applies to mode = \"loyalty\" only"),
            "{err}"
        );
        let loyal = Config::parse(
            Path::new("a.toml"),
            &format!("{GOOD}\n[privacy]\nmode = \"loyalty\"\n"),
        )
        .unwrap();
        let before = Config {
            privacy: Privacy {
                mode: footfall_report::PrivacyMode::Loyalty,
                rotation: Rotation::Never,
            },
            ..c.clone()
        };
        assert_eq!(loyal.counting_hash(), before.counting_hash());
        assert_eq!(
            loyal.counting_hash(),
            short_hash(&counting_canonical(&c.counting, &c.timezone_name))
        );
        assert_ne!(
            c.counting_hash(),
            loyal.counting_hash(),
            "a mode change is another state"
        );
    }
}
