//! Stored layouts of older gateways, read and turned into today's types.
//!
//! Values are postcard, which is positional: a struct that gains a field
//! cannot read what was written before it. Version 2 of the sealed value
//! (see `sled`'s module doc) is the layout before SPEC §8's people
//! estimates; version 3 is today's. A report stored as version 2 reads as
//! one that carried no estimates (`null`), as it did.

use footfall_report::{Counts, DayReport, Sketch, WindowReport, DWELL_EDGES_S};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::hours::StoredHour;

/// A type stored as postcard, and how a version-2 payload of it reads.
pub(super) trait Stored: Serialize + DeserializeOwned {
    /// Today's value from a version-2 payload; for a type whose layout has
    /// not changed since, the payload as it is.
    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes(body)
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct WindowReportV2 {
    schema: String,
    store_id: String,
    agent_id: String,
    seq: u64,
    window_start: i64,
    window_end: i64,
    frames: u64,
    frames_no_signal: u64,
    detected: u64,
    visits: u64,
    visitors: u64,
    visitors_new: u64,
    visitors_returning: u64,
    visitors_randomized: u64,
    passersby: u64,
    residents: u64,
    dwell_edges_s: Vec<u32>,
    dwell_counts: Vec<u64>,
    dwell_sum_s: u64,
    visitor_sketch: Sketch,
    agent_version: String,
    params_hash: String,
}

impl Stored for WindowReport {
    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        let o: WindowReportV2 = postcard::from_bytes(body)?;
        Ok(WindowReport {
            schema: o.schema,
            store_id: o.store_id,
            agent_id: o.agent_id,
            seq: o.seq,
            window_start: o.window_start,
            window_end: o.window_end,
            frames: o.frames,
            frames_no_signal: o.frames_no_signal,
            detected: o.detected,
            visits: o.visits,
            visitors: o.visitors,
            visitors_new: o.visitors_new,
            visitors_returning: o.visitors_returning,
            visitors_randomized: o.visitors_randomized,
            passersby: o.passersby,
            residents: o.residents,
            dwell_edges_s: o.dwell_edges_s,
            dwell_counts: o.dwell_counts,
            dwell_sum_s: o.dwell_sum_s,
            visitor_sketch: o.visitor_sketch,
            present_est: None,
            present_lo: None,
            present_hi: None,
            entries_est: None,
            agent_version: o.agent_version,
            params_hash: o.params_hash,
        })
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct DayReportV2 {
    schema: String,
    store_id: String,
    agent_id: String,
    seq: u64,
    date: String,
    visits: u64,
    unique_visitors: u64,
    visitors_new: u64,
    visitors_returning: u64,
    visitors_randomized: u64,
    residents: u64,
    agent_version: String,
    params_hash: String,
}

impl Stored for DayReport {
    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        let o: DayReportV2 = postcard::from_bytes(body)?;
        Ok(DayReport {
            schema: o.schema,
            store_id: o.store_id,
            agent_id: o.agent_id,
            seq: o.seq,
            date: o.date,
            visits: o.visits,
            unique_visitors: o.unique_visitors,
            visitors_new: o.visitors_new,
            visitors_returning: o.visitors_returning,
            visitors_randomized: o.visitors_randomized,
            residents: o.residents,
            person_hours_est: None,
            entries_est: None,
            agent_version: o.agent_version,
            params_hash: o.params_hash,
        })
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct CountsV2 {
    windows: u64,
    window_s: i64,
    frames: u64,
    frames_no_signal: u64,
    detected: u64,
    visits: u64,
    visitors: u64,
    visitors_new: u64,
    visitors_returning: u64,
    visitors_randomized: u64,
    passersby: u64,
    residents: u64,
    dwell_counts: [u64; DWELL_EDGES_S.len()],
    dwell_sum_s: u64,
    visitor_sketch: Sketch,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StoredHourV2 {
    starts: Vec<u16>,
    counts: CountsV2,
}

impl Stored for StoredHour {
    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        let o: StoredHourV2 = postcard::from_bytes(body)?;
        let c = o.counts;
        Ok(StoredHour {
            starts: o.starts,
            counts: Counts {
                windows: c.windows,
                window_s: c.window_s,
                frames: c.frames,
                frames_no_signal: c.frames_no_signal,
                detected: c.detected,
                visits: c.visits,
                visitors: c.visitors,
                visitors_new: c.visitors_new,
                visitors_returning: c.visitors_returning,
                visitors_randomized: c.visitors_randomized,
                passersby: c.passersby,
                residents: c.residents,
                dwell_counts: c.dwell_counts,
                dwell_sum_s: c.dwell_sum_s,
                visitor_sketch: c.visitor_sketch,
                ..Counts::default()
            },
        })
    }
}

// Stored as JSON only: no layout to upgrade.
impl Stored for super::AgentInfo {}
impl Stored for super::DeadLetter {}
impl Stored for super::Campaign {}

/// Payloads as a gateway before SPEC §8 wrote them, for tests.
#[cfg(test)]
pub(super) mod write_v2 {
    use super::*;

    pub fn window(w: &WindowReport) -> Vec<u8> {
        let o = WindowReportV2 {
            schema: w.schema.clone(),
            store_id: w.store_id.clone(),
            agent_id: w.agent_id.clone(),
            seq: w.seq,
            window_start: w.window_start,
            window_end: w.window_end,
            frames: w.frames,
            frames_no_signal: w.frames_no_signal,
            detected: w.detected,
            visits: w.visits,
            visitors: w.visitors,
            visitors_new: w.visitors_new,
            visitors_returning: w.visitors_returning,
            visitors_randomized: w.visitors_randomized,
            passersby: w.passersby,
            residents: w.residents,
            dwell_edges_s: w.dwell_edges_s.clone(),
            dwell_counts: w.dwell_counts.clone(),
            dwell_sum_s: w.dwell_sum_s,
            visitor_sketch: w.visitor_sketch.clone(),
            agent_version: w.agent_version.clone(),
            params_hash: w.params_hash.clone(),
        };
        postcard::to_stdvec(&o).unwrap()
    }

    pub fn hour(h: &StoredHour) -> Vec<u8> {
        let c = &h.counts;
        let o = StoredHourV2 {
            starts: h.starts.clone(),
            counts: CountsV2 {
                windows: c.windows,
                window_s: c.window_s,
                frames: c.frames,
                frames_no_signal: c.frames_no_signal,
                detected: c.detected,
                visits: c.visits,
                visitors: c.visitors,
                visitors_new: c.visitors_new,
                visitors_returning: c.visitors_returning,
                visitors_randomized: c.visitors_randomized,
                passersby: c.passersby,
                residents: c.residents,
                dwell_counts: c.dwell_counts,
                dwell_sum_s: c.dwell_sum_s,
                visitor_sketch: c.visitor_sketch.clone(),
            },
        };
        postcard::to_stdvec(&o).unwrap()
    }

    pub fn day(d: &DayReport) -> Vec<u8> {
        let o = DayReportV2 {
            schema: d.schema.clone(),
            store_id: d.store_id.clone(),
            agent_id: d.agent_id.clone(),
            seq: d.seq,
            date: d.date.clone(),
            visits: d.visits,
            unique_visitors: d.unique_visitors,
            visitors_new: d.visitors_new,
            visitors_returning: d.visitors_returning,
            visitors_randomized: d.visitors_randomized,
            residents: d.residents,
            agent_version: d.agent_version.clone(),
            params_hash: d.params_hash.clone(),
        };
        postcard::to_stdvec(&o).unwrap()
    }
}
