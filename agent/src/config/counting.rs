//! `[counting]`: SPEC's parameters under SPEC's names, their defaults and
//! ranges, and the hash that names them (`params_hash` before SPEC §8, and
//! still what the state on disk belongs to).

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// SPEC parameters, under their SPEC names. Field docs give the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Counting {
    /// SPEC §1.5: frames weaker than this are not detections. Default -90.
    pub rssi_floor_dbm: i32,
    /// SPEC §1: detections at least this strong can make visits. Default -70.
    pub visit_rssi_dbm: i32,
    /// SPEC §3: largest gap inside a session. Default 600.
    pub session_gap_s: u32,
    /// SPEC §3: shortest session that is a visit. Default 300.
    pub min_dwell_s: u32,
    /// SPEC §4: report window length, aligned to Unix time. Default 900.
    pub window_s: u32,
    /// SPEC §3: qualifying days of the last seven that make a resident. Default 3.
    pub resident_days: u32,
    /// SPEC §3: daily presence that qualifies a day. Default 14400.
    pub resident_presence_s: u32,
    /// SPEC §3: days looked back for a returning visitor. Default 30.
    pub loyalty_days: u32,
}

impl Default for Counting {
    fn default() -> Self {
        Counting {
            rssi_floor_dbm: -90,
            visit_rssi_dbm: -70,
            session_gap_s: 600,
            min_dwell_s: 300,
            window_s: 900,
            resident_days: 3,
            resident_presence_s: 14400,
            loyalty_days: 30,
        }
    }
}

impl Counting {
    /// SPEC §4: how long after a window's end it becomes final.
    pub fn settle_s(&self) -> u32 {
        self.min_dwell_s + self.session_gap_s
    }

    pub(super) fn problems(&self, out: &mut Vec<(&'static str, String, String)>) {
        let mut check = |key: &'static str, value: i64, ok: bool, want: &str| {
            if !ok {
                out.push((key, value.to_string(), want.to_string()));
            }
        };
        let c = self;
        check(
            "rssi_floor_dbm",
            c.rssi_floor_dbm.into(),
            (-120..=0).contains(&c.rssi_floor_dbm),
            "must be -120..0",
        );
        check(
            "visit_rssi_dbm",
            c.visit_rssi_dbm.into(),
            (-120..=0).contains(&c.visit_rssi_dbm),
            "must be -120..0",
        );
        if (-120..=0).contains(&c.visit_rssi_dbm)
            && (-120..=0).contains(&c.rssi_floor_dbm)
            && c.visit_rssi_dbm < c.rssi_floor_dbm
        {
            check(
                "visit_rssi_dbm",
                c.visit_rssi_dbm.into(),
                false,
                "must not be below rssi_floor_dbm",
            );
        }
        check(
            "session_gap_s",
            c.session_gap_s.into(),
            (1..=86_400).contains(&c.session_gap_s),
            "must be 1..86400",
        );
        check(
            "min_dwell_s",
            c.min_dwell_s.into(),
            c.min_dwell_s <= 86_400,
            "must be 0..86400",
        );
        check(
            "window_s",
            c.window_s.into(),
            (60..=86_400).contains(&c.window_s),
            "must be 60..86400",
        );
        check(
            "resident_days",
            c.resident_days.into(),
            (1..=7).contains(&c.resident_days),
            "must be 1..7 (of the last seven days)",
        );
        check(
            "resident_presence_s",
            c.resident_presence_s.into(),
            (1..=86_400).contains(&c.resident_presence_s),
            "must be 1..86400",
        );
        check(
            "loyalty_days",
            c.loyalty_days.into(),
            (1..=60).contains(&c.loyalty_days),
            "must be 1..60",
        );
    }
}

/// The device-counting parameters' hash (before SPEC §8 this was all of
/// `params_hash`, and it still names the state on disk).
pub fn params_hash(c: &Counting, timezone: &str) -> String {
    short_hash(&counting_canonical(c, timezone))
}

pub(super) fn short_hash(canonical: &str) -> String {
    let digest = Sha256::digest(canonical.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn counting_canonical(c: &Counting, timezone: &str) -> String {
    format!(
        "rssi_floor_dbm={};visit_rssi_dbm={};session_gap_s={};min_dwell_s={};window_s={};resident_days={};resident_presence_s={};loyalty_days={};timezone={}",
        c.rssi_floor_dbm,
        c.visit_rssi_dbm,
        c.session_gap_s,
        c.min_dwell_s,
        c.window_s,
        c.resident_days,
        c.resident_presence_s,
        c.loyalty_days,
        timezone
    )
}
