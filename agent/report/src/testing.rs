//! Report builders for tests (feature `test-util`): one place that knows how
//! to make a valid report, so a new field is added to tests here once.
//! Every count starts at 0; a test sets the ones it is about.

use crate::status::{Health, State, Status};
use crate::{
    DayReport, PrivacyMode, Sketch, WindowReport, DAY_SCHEMA, DWELL_EDGES_S, WINDOW_SCHEMA,
};

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
        detected: Some(0),
        visits: Some(0),
        visitors: Some(0),
        visitors_new: Some(0),
        visitors_returning: Some(0),
        visitors_randomized: Some(0),
        passersby: Some(0),
        residents: Some(0),
        dwell_edges_s: DWELL_EDGES_S.to_vec(),
        dwell_counts: Some(vec![0; DWELL_EDGES_S.len()]),
        dwell_sum_s: Some(0),
        visitor_sketch: Some(Sketch::new()),
        present_est: None,
        present_lo: None,
        present_hi: None,
        entries_est: None,
        privacy_mode: PrivacyMode::Loyalty,
        agent_version: "test".into(),
        params_hash: "test".into(),
    }
}

/// A window of `n` new visitors, each seen once (`frames`, `detected`,
/// `visits`, `visitors`, `visitors_new` and the shortest dwell bucket all n).
pub fn window_of_visitors(store: &str, agent: &str, start: i64, n: u64) -> WindowReport {
    let mut w = window(store, agent, start, 900);
    w.frames = n;
    w.detected = Some(n);
    w.visits = Some(n);
    w.visitors = Some(n);
    w.visitors_new = Some(n);
    w.dwell_counts = Some(vec![n, 0, 0, 0, 0, 0]);
    w
}

/// `w` as `mode` reports it: the figures the mode cannot know become
/// `null`.
pub fn under(mut w: WindowReport, mode: PrivacyMode) -> WindowReport {
    w.privacy_mode = mode;
    if !mode.counts_visits() {
        w.detected = None;
        w.visits = None;
        w.visitors = None;
        w.visitors_randomized = None;
        w.passersby = None;
        w.dwell_counts = None;
        w.dwell_sum_s = None;
        w.visitor_sketch = None;
    }
    if !mode.counts_across_days() {
        w.visitors_new = None;
        w.visitors_returning = None;
        w.residents = None;
    }
    w
}

/// `d` as `mode` reports it.
pub fn day_under(mut d: DayReport, mode: PrivacyMode) -> DayReport {
    d.privacy_mode = mode;
    if !mode.counts_visits() {
        d.visits = None;
        d.unique_visitors = None;
        d.visitors_randomized = None;
    }
    if !mode.counts_across_days() {
        d.visitors_new = None;
        d.visitors_returning = None;
        d.residents = None;
    }
    d
}

/// An empty local day of `store`'s agent `agent`.
pub fn day(store: &str, agent: &str, date: &str) -> DayReport {
    DayReport {
        schema: DAY_SCHEMA.into(),
        store_id: store.into(),
        agent_id: agent.into(),
        seq: 0,
        date: date.into(),
        visits: Some(0),
        unique_visitors: Some(0),
        visitors_new: Some(0),
        visitors_returning: Some(0),
        visitors_randomized: Some(0),
        residents: Some(0),
        person_hours_est: None,
        entries_est: None,
        privacy_mode: PrivacyMode::Loyalty,
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
            privacy_mode: Some(PrivacyMode::Loyalty),
            params_hash: Some("test".into()),
            memory: None,
        }),
    }
}
