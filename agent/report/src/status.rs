//! The retained `status` and `live` messages of SPEC §6: what an agent says
//! about itself, and what the gateway reads back (`stores`, time zones).
//!
//! Unlike reports, these are read tolerantly: a field the gateway does not
//! know is ignored, so an older gateway still lists a newer agent.

use serde::{Deserialize, Serialize};

/// `online` while the agent runs; `offline` is its last will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Online,
    Offline,
}

/// `footfall/v1/{store}/{agent}/status`, retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub store_id: String,
    pub agent_id: String,
    /// Present while online; the last will carries none.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// An online agent's health figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub agent_version: String,
    /// The store's IANA time zone: the gateway cuts local days in it.
    pub timezone: String,
    pub uptime_s: u64,
    pub frames_total: u64,
    pub detections_total: u64,
    /// Since the previous status, one decimal.
    pub frames_per_s: f64,
    pub outbox_pending: u64,
    pub outbox_bytes: u64,
    pub outbox_full: bool,
    pub last_ack_unix_s: Option<u64>,
    pub late_frames: u64,
    pub capture_errors: u64,
    pub publish_refused: u64,
    /// A capture file was read to its end (file mode only).
    pub capture_finished: bool,
    /// What the agent may link (issue 18), and its reports' `params_hash`:
    /// the gateway lists both. Absent from agents before privacy modes.
    #[serde(default)]
    pub privacy_mode: Option<crate::PrivacyMode>,
    #[serde(default)]
    pub params_hash: Option<String>,
    /// What the agent holds per device against its budgets (issue 20).
    /// Absent from agents before them.
    #[serde(default)]
    pub memory: Option<Memory>,
}

/// How close an agent is to its memory budgets: each figure beside the
/// budget it is held to, where it has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Devices the counter holds in memory, and at most (`[memory] devices`).
    pub devices_in_memory: u64,
    pub device_budget: u64,
    /// Devices over the budget, spilled to a scratch file, and its bytes.
    pub devices_spilled: u64,
    pub spill_bytes: u64,
    /// Entries and people observations of the pending windows, and the
    /// observations a window holds at most (`[memory] people_observations`).
    pub window_entries: u64,
    pub people_observations: u64,
    pub people_budget: u64,
    /// Bytes of the last checkpoint's parts (written one part at a time).
    pub checkpoint_bulk_bytes: u64,
    /// Randomized devices gone from memory that an unreported day counted
    /// (the same day they come back they are not counted again); of them,
    /// those held in memory until the next checkpoint, and the bytes that
    /// find the rest in the checkpoint's parts. Absent from agents before
    /// them.
    #[serde(default)]
    pub randomized_visitors: u64,
    #[serde(default)]
    pub randomized_in_memory: u64,
    #[serde(default)]
    pub randomized_filter_bytes: u64,
}

impl Status {
    pub fn offline(store_id: &str, agent_id: &str) -> Status {
        Status {
            state: State::Offline,
            store_id: store_id.to_string(),
            agent_id: agent_id.to_string(),
            health: None,
        }
    }
}

/// `footfall/v1/{store}/{agent}/live`, QoS 0, retained: the current
/// occupancy and today's visits so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    pub store_id: String,
    pub agent_id: String,
    /// Unix seconds.
    pub ts: i64,
    pub devices_present: u64,
    pub visits_today: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_and_online_statuses_round_trip_and_keep_their_json_shape() {
        let off = Status::offline("s1", "a1");
        let text = serde_json::to_string(&off).unwrap();
        assert_eq!(
            text,
            r#"{"state":"offline","store_id":"s1","agent_id":"a1"}"#
        );
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), off);
        let on = crate::testing::online("s1", "a1", "Europe/Prague");
        let v = serde_json::to_value(&on).unwrap();
        assert_eq!(v["timezone"], "Europe/Prague");
        assert_eq!(v["last_ack_unix_s"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Status>(v).unwrap(), on);
    }

    #[test]
    fn a_status_with_fields_this_gateway_does_not_know_is_still_read() {
        let s: Status = serde_json::from_str(
            r#"{"state":"offline","store_id":"s1","agent_id":"a1","battery":3}"#,
        )
        .unwrap();
        assert_eq!(s, Status::offline("s1", "a1"));
    }
}
