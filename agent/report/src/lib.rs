//! The wire contract between `footfall-agent` and `footfall-gateway`, typed
//! once: every message, every report field and every sum of them is a type
//! here, and both sides (and the tests) use these types, never a list of
//! field names or a JSON map. It has no I/O and never sees a MAC address,
//! only keyed device ids.
//!
//! Modules:
//! - this file: `WindowReport` (SPEC §4), `DayReport` (§5), `Report`, `Ack`
//!   and the report key (§6);
//! - `counts`: the summable window and day counts, with `add`;
//! - `privacy`: the privacy mode, and which figures each can carry;
//! - `status`: the retained `status` and `live` messages (§6);
//! - `campaign`: the campaign report (§7), figures absent as `None`;
//! - `sketch`: the HyperLogLog `visitor_sketch`;
//! - `topic`: MQTT topic names and id rules;
//! - `codec`: how a value is sealed in sled (version + CRC-32);
//! - `mqtt` (feature `mqtt`): broker connection settings shared by both;
//! - `testing` (feature `test-util`): report builders for tests.

pub mod campaign;
pub mod codec;
pub mod counts;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod privacy;
pub mod sketch;
pub mod status;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
pub mod topic;

use serde::{Deserialize, Serialize};

pub use campaign::CampaignReport;
pub use counts::{Counts, DayCounts, People, WindowSums};
pub use privacy::PrivacyMode;
pub use sketch::{Sketch, SketchError};
pub use status::{Live, Memory, State, Status};

/// SPEC §6: `schema` of a window report.
pub const WINDOW_SCHEMA: &str = "footfall.window.v1";
/// SPEC §6: `schema` of a day report.
pub const DAY_SCHEMA: &str = "footfall.day.v1";
/// SPEC §4: the fixed dwell histogram edges, in seconds.
pub const DWELL_EDGES_S: [u32; 6] = [300, 600, 1200, 1800, 3600, 7200];

/// One final window (SPEC §4). Field order is the JSON order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowReport {
    pub schema: String,
    pub store_id: String,
    pub agent_id: String,
    pub seq: u64,
    pub window_start: i64,
    pub window_end: i64,
    pub frames: u64,
    pub frames_no_signal: u64,
    /// The device figures are `null` where `privacy_mode` cannot know them
    /// (`PrivacyMode::counts_visits`, `counts_across_days`), never 0.
    pub detected: Option<u64>,
    pub visits: Option<u64>,
    pub visitors: Option<u64>,
    pub visitors_new: Option<u64>,
    pub visitors_returning: Option<u64>,
    pub visitors_randomized: Option<u64>,
    pub passersby: Option<u64>,
    pub residents: Option<u64>,
    pub dwell_edges_s: Vec<u32>,
    pub dwell_counts: Option<Vec<u64>>,
    pub dwell_sum_s: Option<u64>,
    pub visitor_sketch: Option<Sketch>,
    /// SPEC §8: people present during the window (a time average), its
    /// 90 % interval, and people whose stay begins in it. `null` when the
    /// agent could not estimate (an older agent, or a mode without them).
    #[serde(default)]
    pub present_est: Option<f64>,
    #[serde(default)]
    pub present_lo: Option<f64>,
    #[serde(default)]
    pub present_hi: Option<f64>,
    #[serde(default)]
    pub entries_est: Option<f64>,
    /// What the agent could link (issue 18); absent from reports of agents
    /// before privacy modes, which counted as `loyalty` does.
    #[serde(default)]
    pub privacy_mode: PrivacyMode,
    pub agent_version: String,
    pub params_hash: String,
}

/// One final local day (SPEC §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayReport {
    pub schema: String,
    pub store_id: String,
    pub agent_id: String,
    pub seq: u64,
    /// Local date, `YYYY-MM-DD`.
    pub date: String,
    /// `null` where `privacy_mode` cannot know them, as in a window.
    pub visits: Option<u64>,
    pub unique_visitors: Option<u64>,
    pub visitors_new: Option<u64>,
    pub visitors_returning: Option<u64>,
    pub visitors_randomized: Option<u64>,
    pub residents: Option<u64>,
    /// SPEC §8: Σ present_est · window_s / 3600 and Σ entries_est over the
    /// day's windows; `null` when they carried none.
    #[serde(default)]
    pub person_hours_est: Option<f64>,
    #[serde(default)]
    pub entries_est: Option<f64>,
    #[serde(default)]
    pub privacy_mode: PrivacyMode,
    pub agent_version: String,
    pub params_hash: String,
}

/// SPEC §8 figures go out with two decimals: finer is noise, and a report
/// must serialize the same on every platform.
pub fn round_people(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Either report, as one line of an agent's `--emit` file or one MQTT payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Report {
    Window(WindowReport),
    Day(DayReport),
}

impl Report {
    pub fn seq(&self) -> u64 {
        match self {
            Report::Window(w) => w.seq,
            Report::Day(d) => d.seq,
        }
    }

    pub fn set_seq(&mut self, seq: u64) {
        match self {
            Report::Window(w) => w.seq = seq,
            Report::Day(d) => d.seq = seq,
        }
    }

    /// The identity of a report (SPEC §6): the gateway stores each key once.
    pub fn key(&self) -> ReportKey {
        match self {
            Report::Window(w) => ReportKey {
                store_id: w.store_id.clone(),
                agent_id: w.agent_id.clone(),
                period: Period::Window(w.window_start),
            },
            Report::Day(d) => ReportKey {
                store_id: d.store_id.clone(),
                agent_id: d.agent_id.clone(),
                period: Period::Day(d.date.clone()),
            },
        }
    }

    /// The MQTT topic kind this report is published under.
    pub fn kind(&self) -> topic::Kind {
        match self {
            Report::Window(_) => topic::Kind::Window,
            Report::Day(_) => topic::Kind::Day,
        }
    }
}

/// SPEC §6 ack: the gateway names the `seq`s it has durably committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub seqs: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Window(i64),
    Day(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportKey {
    pub store_id: String,
    pub agent_id: String,
    pub period: Period,
}

/// SPEC §4: bucket i holds edges[i] <= dwell < edges[i+1]; the first bucket
/// also holds anything shorter, the last is open.
pub fn dwell_bucket(dwell_s: u64) -> usize {
    DWELL_EDGES_S
        .iter()
        .rposition(|&edge| dwell_s >= u64::from(edge))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dwell_buckets_follow_spec_edges() {
        assert_eq!(dwell_bucket(0), 0);
        assert_eq!(dwell_bucket(299), 0);
        assert_eq!(dwell_bucket(300), 0);
        assert_eq!(dwell_bucket(599), 0);
        assert_eq!(dwell_bucket(600), 1);
        assert_eq!(dwell_bucket(1199), 1);
        assert_eq!(dwell_bucket(1200), 2);
        assert_eq!(dwell_bucket(3600), 4);
        assert_eq!(dwell_bucket(7199), 4);
        assert_eq!(dwell_bucket(7200), 5);
        assert_eq!(dwell_bucket(1_000_000), 5);
    }

    #[test]
    fn report_round_trips_through_json() {
        let mut sketch = Sketch::new();
        sketch.insert(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let mut w = testing::window("s1", "a1", 900, 900);
        w.seq = 7;
        w.frames = 10;
        w.frames_no_signal = 1;
        w.detected = Some(3);
        w.visits = Some(1);
        w.visitors = Some(1);
        w.visitors_new = Some(1);
        w.passersby = Some(2);
        w.visitor_sketch = Some(sketch);
        let line = serde_json::to_string(&Report::Window(w.clone())).unwrap();
        let back: Report = serde_json::from_str(&line).unwrap();
        assert_eq!(back, Report::Window(w.clone()));
        // A figure the mode cannot know goes out as null, not 0.
        w.privacy_mode = PrivacyMode::Ephemeral;
        w.visits = None;
        let v = serde_json::to_value(Report::Window(w)).unwrap();
        assert_eq!(v["visits"], serde_json::Value::Null);
        assert_eq!(v["privacy_mode"], "ephemeral");
    }
}
