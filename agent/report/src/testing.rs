//! Report builders for tests (feature `test-util`): one place that knows how
//! to make a valid report, so a new field is added to tests here once.
//! Every count starts at 0; a test sets the ones it is about.

use crate::status::{Health, State, Status};
use crate::{DayReport, Sketch, WindowReport, DAY_SCHEMA, DWELL_EDGES_S, WINDOW_SCHEMA};

/// An empty window `[start, start + len_s)` of `store`'s agent `agent`.
pub fn window(store: &str, agent: &str, start: i64, len_s: i64) -> WindowReport {
    WindowReport {
        schema: WINDOW_SCHEMA.into(),
        store_id: store.into(),
        agent_id: agent.into(),
        seq: 0,
        window_start: start,
        window_end: start + len_s,
        frames: 0,
        frames_no_signal: 0,
        detected: 0,
        visits: 0,
        visitors: 0,
        visitors_new: 0,
        visitors_returning: 0,
        visitors_randomized: 0,
        passersby: 0,
        residents: 0,
        dwell_edges_s: DWELL_EDGES_S.to_vec(),
        dwell_counts: vec![0; DWELL_EDGES_S.len()],
        dwell_sum_s: 0,
        visitor_sketch: Sketch::new(),
        present_est: None,
        present_lo: None,
        present_hi: None,
        entries_est: None,
        agent_version: "test".into(),
        params_hash: "test".into(),
    }
}

/// A window of `n` new visitors, each seen once (`frames`, `detected`,
/// `visits`, `visitors`, `visitors_new` and the shortest dwell bucket all n).
pub fn window_of_visitors(store: &str, agent: &str, start: i64, n: u64) -> WindowReport {
    let mut w = window(store, agent, start, 900);
    w.frames = n;
    w.detected = n;
    w.visits = n;
    w.visitors = n;
    w.visitors_new = n;
    w.dwell_counts[0] = n;
    w
}

/// An empty local day of `store`'s agent `agent`.
pub fn day(store: &str, agent: &str, date: &str) -> DayReport {
    DayReport {
        schema: DAY_SCHEMA.into(),
        store_id: store.into(),
        agent_id: agent.into(),
        seq: 0,
        date: date.into(),
        visits: 0,
        unique_visitors: 0,
        visitors_new: 0,
        visitors_returning: 0,
        visitors_randomized: 0,
        residents: 0,
        person_hours_est: None,
        entries_est: None,
        agent_version: "test".into(),
        params_hash: "test".into(),
    }
}

/// An online status naming the store's time zone.
pub fn online(store: &str, agent: &str, timezone: &str) -> Status {
    Status {
        state: State::Online,
        store_id: store.into(),
        agent_id: agent.into(),
        health: Some(Health {
            agent_version: "test".into(),
            timezone: timezone.into(),
            uptime_s: 0,
            frames_total: 0,
            detections_total: 0,
            frames_per_s: 0.0,
            outbox_pending: 0,
            outbox_bytes: 0,
            outbox_full: false,
            last_ack_unix_s: None,
            late_frames: 0,
            capture_errors: 0,
            publish_refused: 0,
            capture_finished: false,
        }),
    }
}
