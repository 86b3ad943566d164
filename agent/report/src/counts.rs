//! The window counts that add up (SPEC §4), over one window or many: what
//! the gateway keeps per hour, what a report by hour or week sums, and what
//! a campaign report sums. One type, so a new summable field is added here
//! and nowhere else.
//!
//! `detected`, `visitors` and `residents` add up per window: a device counts
//! once in each window it is in. Distinct people over many windows come from
//! the merged `visitor_sketch`, never from these sums.
//!
//! Postcard is positional and the gateway stores this type: do not reorder
//! its fields; add new ones at the end with a new stored version.

use serde::{Deserialize, Serialize};

use crate::{Sketch, WindowReport, DWELL_EDGES_S};

/// Sums of window reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// How many windows were added: "every window reported" counts them.
    pub windows: u64,
    /// The length of the first window added (`window_s`).
    pub window_s: i64,
    pub frames: u64,
    pub frames_no_signal: u64,
    pub detected: u64,
    pub visits: u64,
    pub visitors: u64,
    pub visitors_new: u64,
    pub visitors_returning: u64,
    pub visitors_randomized: u64,
    pub passersby: u64,
    pub residents: u64,
    pub dwell_counts: [u64; DWELL_EDGES_S.len()],
    pub dwell_sum_s: u64,
    pub visitor_sketch: Sketch,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts::with_sketch(Sketch::new())
    }
}

impl Counts {
    /// For summing thousands of windows: merging into a sparse sketch
    /// moves its sorted list on every new register.
    pub fn dense() -> Counts {
        Counts::with_sketch(Sketch::new_dense())
    }

    fn with_sketch(visitor_sketch: Sketch) -> Counts {
        Counts {
            windows: 0,
            window_s: 0,
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
            dwell_counts: [0; DWELL_EDGES_S.len()],
            dwell_sum_s: 0,
            visitor_sketch,
        }
    }

    pub fn of_window(w: &WindowReport) -> Counts {
        let mut dwell_counts = [0; DWELL_EDGES_S.len()];
        for (a, b) in dwell_counts.iter_mut().zip(&w.dwell_counts) {
            *a = *b;
        }
        Counts {
            windows: 1,
            window_s: w.window_end - w.window_start,
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
            dwell_counts,
            dwell_sum_s: w.dwell_sum_s,
            visitor_sketch: w.visitor_sketch.clone(),
        }
    }

    pub fn add(&mut self, o: &Counts) {
        if self.windows == 0 {
            self.window_s = o.window_s;
        }
        self.windows += o.windows;
        self.frames += o.frames;
        self.frames_no_signal += o.frames_no_signal;
        self.detected += o.detected;
        self.visits += o.visits;
        self.visitors += o.visitors;
        self.visitors_new += o.visitors_new;
        self.visitors_returning += o.visitors_returning;
        self.visitors_randomized += o.visitors_randomized;
        self.passersby += o.passersby;
        self.residents += o.residents;
        for (a, b) in self.dwell_counts.iter_mut().zip(&o.dwell_counts) {
            *a += b;
        }
        self.dwell_sum_s += o.dwell_sum_s;
        self.visitor_sketch.merge(&o.visitor_sketch);
    }
}

/// The window sums as a report by window or hour shows them, and as a test
/// compares an agent's reports with the gateway's rows: `Counts` without
/// its bookkeeping (`windows`, `window_s`) and its sketch. Read from a
/// whole report, the other fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSums {
    pub frames: u64,
    pub frames_no_signal: u64,
    pub detected: u64,
    pub visits: u64,
    pub visitors: u64,
    pub visitors_new: u64,
    pub visitors_returning: u64,
    pub visitors_randomized: u64,
    pub passersby: u64,
    pub residents: u64,
    pub dwell_sum_s: u64,
    pub dwell_counts: Vec<u64>,
}

impl From<&Counts> for WindowSums {
    fn from(c: &Counts) -> WindowSums {
        WindowSums {
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
            dwell_sum_s: c.dwell_sum_s,
            dwell_counts: c.dwell_counts.to_vec(),
        }
    }
}

/// The day counts that add up across days (SPEC §5). The distinct ones
/// (`unique_visitors` and its split, `residents`) add up as visitor-days:
/// a person on two days counts twice, which is why a week's row names them
/// `*_daysum`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    pub visits: u64,
    pub unique_visitors: u64,
    pub visitors_new: u64,
    pub visitors_returning: u64,
    pub visitors_randomized: u64,
    pub residents: u64,
}

impl DayCounts {
    pub fn of_day(d: &crate::DayReport) -> DayCounts {
        DayCounts {
            visits: d.visits,
            unique_visitors: d.unique_visitors,
            visitors_new: d.visitors_new,
            visitors_returning: d.visitors_returning,
            visitors_randomized: d.visitors_randomized,
            residents: d.residents,
        }
    }

    pub fn add(&mut self, o: &DayCounts) {
        self.visits += o.visits;
        self.unique_visitors += o.unique_visitors;
        self.visitors_new += o.visitors_new;
        self.visitors_returning += o.visitors_returning;
        self.visitors_randomized += o.visitors_randomized;
        self.residents += o.residents;
    }
}
