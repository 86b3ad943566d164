//! Stored layouts of older gateways, read and turned into today's types.
//!
//! Values are postcard, which is positional: a struct that gains a field
//! cannot read what was written before it. Version 2 of the sealed value
//! (see `sled`'s module doc) is the layout before SPEC §8's people
//! estimates, version 3 the layout before privacy modes (issue 18) made
//! the device figures nullable; version 4 is today's. A report stored as
//! version 2 reads as one that carried no estimates (`null`), as it did;
//! versions 2 and 3 read as `loyalty` reports, which they were.

use footfall_report::{Counts, DayReport, PrivacyMode, Sketch, WindowReport, DWELL_EDGES_S};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::hours::StoredHour;

/// A type stored as postcard, and how payloads of older versions read.
pub(super) trait Stored: Serialize + DeserializeOwned {
    /// Today's value from a version-2 payload; for a type whose layout has
    /// not changed since, the payload as it is.
    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes(body)
    }

    /// Today's value from a version-3 payload.
    fn from_v3(body: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes(body)
    }
}

/// `WindowReport` before privacy modes.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct WindowReportV3 {
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
    present_est: Option<f64>,
    present_lo: Option<f64>,
    present_hi: Option<f64>,
    entries_est: Option<f64>,
    agent_version: String,
    params_hash: String,
}

impl From<WindowReportV3> for WindowReport {
    fn from(o: WindowReportV3) -> WindowReport {
        WindowReport {
            schema: o.schema,
            store_id: o.store_id,
            agent_id: o.agent_id,
            seq: o.seq,
            window_start: o.window_start,
            window_end: o.window_end,
            frames: o.frames,
            frames_no_signal: o.frames_no_signal,
            detected: Some(o.detected),
            visits: Some(o.visits),
            visitors: Some(o.visitors),
            visitors_new: Some(o.visitors_new),
            visitors_returning: Some(o.visitors_returning),
            visitors_randomized: Some(o.visitors_randomized),
            passersby: Some(o.passersby),
            residents: Some(o.residents),
            dwell_edges_s: o.dwell_edges_s,
            dwell_counts: Some(o.dwell_counts),
            dwell_sum_s: Some(o.dwell_sum_s),
            visitor_sketch: Some(o.visitor_sketch),
            present_est: o.present_est,
            present_lo: o.present_lo,
            present_hi: o.present_hi,
            entries_est: o.entries_est,
            privacy_mode: PrivacyMode::Loyalty,
            agent_version: o.agent_version,
            params_hash: o.params_hash,
        }
    }
}

/// `DayReport` before privacy modes.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct DayReportV3 {
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
    person_hours_est: Option<f64>,
    entries_est: Option<f64>,
    agent_version: String,
    params_hash: String,
}

impl From<DayReportV3> for DayReport {
    fn from(o: DayReportV3) -> DayReport {
        DayReport {
            schema: o.schema,
            store_id: o.store_id,
            agent_id: o.agent_id,
            seq: o.seq,
            date: o.date,
            visits: Some(o.visits),
            unique_visitors: Some(o.unique_visitors),
            visitors_new: Some(o.visitors_new),
            visitors_returning: Some(o.visitors_returning),
            visitors_randomized: Some(o.visitors_randomized),
            residents: Some(o.residents),
            person_hours_est: o.person_hours_est,
            entries_est: o.entries_est,
            privacy_mode: PrivacyMode::Loyalty,
            agent_version: o.agent_version,
            params_hash: o.params_hash,
        }
    }
}

/// `Counts` before privacy modes: every window counted every figure.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct CountsV3 {
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
    people_windows: u64,
    present_sum: f64,
    present_lo_sum: f64,
    present_hi_sum: f64,
    entries_sum: f64,
}

impl From<CountsV3> for Counts {
    fn from(c: CountsV3) -> Counts {
        Counts {
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
            people_windows: c.people_windows,
            present_sum: c.present_sum,
            present_lo_sum: c.present_lo_sum,
            present_hi_sum: c.present_hi_sum,
            entries_sum: c.entries_sum,
            visit_windows: c.windows,
            across_day_windows: c.windows,
            day_scoped_windows: 0,
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StoredHourV3 {
    starts: Vec<u16>,
    counts: CountsV3,
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
    fn from_v3(body: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<WindowReportV3>(body).map(WindowReport::from)
    }

    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        let o: WindowReportV2 = postcard::from_bytes(body)?;
        Ok(WindowReport::from(WindowReportV3 {
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
        }))
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
    fn from_v3(body: &[u8]) -> postcard::Result<Self> {
        postcard::from_bytes::<DayReportV3>(body).map(DayReport::from)
    }

    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        let o: DayReportV2 = postcard::from_bytes(body)?;
        Ok(DayReport::from(DayReportV3 {
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
        }))
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
    fn from_v3(body: &[u8]) -> postcard::Result<Self> {
        let o: StoredHourV3 = postcard::from_bytes(body)?;
        Ok(StoredHour {
            starts: o.starts,
            counts: o.counts.into(),
        })
    }

    fn from_v2(body: &[u8]) -> postcard::Result<Self> {
        let o: StoredHourV2 = postcard::from_bytes(body)?;
        let c = o.counts;
        Ok(StoredHour {
            starts: o.starts,
            counts: Counts::from(CountsV3 {
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
                people_windows: 0,
                present_sum: 0.0,
                present_lo_sum: 0.0,
                present_hi_sum: 0.0,
                entries_sum: 0.0,
            }),
        })
    }
}

// Postcard since it was first stored: no older layout.
impl Stored for super::hours::StoredHourSketch {}
impl Stored for super::hours::StoredDayWindows {}
impl Stored for super::hours::StoredLocalDay {}
impl Stored for super::ChainDay {}

// Stored as JSON only: no layout to upgrade.
impl Stored for super::AgentInfo {}
impl Stored for super::DeadLetter {}
impl Stored for super::Campaign {}

/// Payloads as a gateway before SPEC §8 wrote them, for tests (a `null`
/// figure, which that gateway never saw, as 0).
#[cfg(test)]
pub(super) mod write_v2 {
    use super::*;

    fn n(x: Option<u64>) -> u64 {
        x.unwrap_or(0)
    }

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
            detected: n(w.detected),
            visits: n(w.visits),
            visitors: n(w.visitors),
            visitors_new: n(w.visitors_new),
            visitors_returning: n(w.visitors_returning),
            visitors_randomized: n(w.visitors_randomized),
            passersby: n(w.passersby),
            residents: n(w.residents),
            dwell_edges_s: w.dwell_edges_s.clone(),
            dwell_counts: w.dwell_counts.clone().unwrap_or_default(),
            dwell_sum_s: n(w.dwell_sum_s),
            visitor_sketch: w.visitor_sketch.clone().unwrap_or_default(),
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
            visits: n(d.visits),
            unique_visitors: n(d.unique_visitors),
            visitors_new: n(d.visitors_new),
            visitors_returning: n(d.visitors_returning),
            visitors_randomized: n(d.visitors_randomized),
            residents: n(d.residents),
            agent_version: d.agent_version.clone(),
            params_hash: d.params_hash.clone(),
        };
        postcard::to_stdvec(&o).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report stored before privacy modes reads as the `loyalty` report
    /// it was, every figure a number.
    #[test]
    fn a_version_3_report_reads_as_loyalty_with_its_figures() {
        let old = WindowReportV3 {
            schema: "footfall.window.v1".into(),
            store_id: "s1".into(),
            agent_id: "a".into(),
            seq: 4,
            window_start: 900,
            window_end: 1800,
            frames: 30,
            frames_no_signal: 1,
            detected: 5,
            visits: 2,
            visitors: 2,
            visitors_new: 1,
            visitors_returning: 1,
            visitors_randomized: 0,
            passersby: 3,
            residents: 1,
            dwell_edges_s: DWELL_EDGES_S.to_vec(),
            dwell_counts: vec![2, 0, 0, 0, 0, 0],
            dwell_sum_s: 700,
            visitor_sketch: Sketch::new(),
            present_est: Some(1.5),
            present_lo: Some(1.0),
            present_hi: Some(2.0),
            entries_est: Some(0.5),
            agent_version: "0.1.0".into(),
            params_hash: "p".into(),
        };
        let w = WindowReport::from_v3(&postcard::to_stdvec(&old).unwrap()).unwrap();
        assert_eq!(w.privacy_mode, PrivacyMode::Loyalty);
        assert_eq!(
            (w.detected, w.residents, w.dwell_sum_s),
            (Some(5), Some(1), Some(700))
        );
        assert_eq!(w.present_est, Some(1.5));
        let counts = Counts::of_window(&w);
        let hour = StoredHourV3 {
            starts: vec![900],
            counts: CountsV3 {
                windows: 1,
                window_s: 900,
                frames: 30,
                frames_no_signal: 1,
                detected: 5,
                visits: 2,
                visitors: 2,
                visitors_new: 1,
                visitors_returning: 1,
                visitors_randomized: 0,
                passersby: 3,
                residents: 1,
                dwell_counts: [2, 0, 0, 0, 0, 0],
                dwell_sum_s: 700,
                visitor_sketch: Sketch::new(),
                people_windows: 1,
                present_sum: 1.5,
                present_lo_sum: 1.0,
                present_hi_sum: 2.0,
                entries_sum: 0.5,
            },
        };
        let h = StoredHour::from_v3(&postcard::to_stdvec(&hour).unwrap()).unwrap();
        assert_eq!(
            h.counts, counts,
            "an old hour sums as the window does today"
        );
        assert!(h.counts.has_visits() && h.counts.has_across_days());
    }
}
