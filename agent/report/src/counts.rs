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
    /// SPEC §8: windows that carried estimates, and the sums of their
    /// `present_est`, `present_lo`, `present_hi` and `entries_est`.
    pub people_windows: u64,
    pub present_sum: f64,
    pub present_lo_sum: f64,
    pub present_hi_sum: f64,
    pub entries_sum: f64,
    /// Issue 18: windows whose privacy mode counted visits, and those
    /// that counted across days (see `PrivacyMode`). A figure of either
    /// kind is known for the sum only when every window carried it: the
    /// device fields above hold 0 for a window that did not.
    pub visit_windows: u64,
    pub across_day_windows: u64,
    /// Windows whose sketches hold ids that change every day (`daily`):
    /// their merge is distinct visitors only within one local day.
    pub day_scoped_windows: u64,
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
            people_windows: 0,
            present_sum: 0.0,
            present_lo_sum: 0.0,
            present_hi_sum: 0.0,
            entries_sum: 0.0,
            visit_windows: 0,
            across_day_windows: 0,
            day_scoped_windows: 0,
        }
    }

    pub fn of_window(w: &WindowReport) -> Counts {
        let mut dwell_counts = [0; DWELL_EDGES_S.len()];
        for (a, b) in dwell_counts.iter_mut().zip(w.dwell_counts.iter().flatten()) {
            *a = *b;
        }
        let mode = w.privacy_mode;
        Counts {
            windows: 1,
            window_s: w.window_end - w.window_start,
            frames: w.frames,
            frames_no_signal: w.frames_no_signal,
            detected: w.detected.unwrap_or(0),
            visits: w.visits.unwrap_or(0),
            visitors: w.visitors.unwrap_or(0),
            visitors_new: w.visitors_new.unwrap_or(0),
            visitors_returning: w.visitors_returning.unwrap_or(0),
            visitors_randomized: w.visitors_randomized.unwrap_or(0),
            passersby: w.passersby.unwrap_or(0),
            residents: w.residents.unwrap_or(0),
            dwell_counts,
            dwell_sum_s: w.dwell_sum_s.unwrap_or(0),
            visitor_sketch: w.visitor_sketch.clone().unwrap_or_default(),
            people_windows: u64::from(w.present_est.is_some()),
            present_sum: w.present_est.unwrap_or(0.0),
            present_lo_sum: w.present_lo.unwrap_or(0.0),
            present_hi_sum: w.present_hi.unwrap_or(0.0),
            entries_sum: w.entries_est.unwrap_or(0.0),
            visit_windows: u64::from(w.visits.is_some()),
            across_day_windows: u64::from(w.residents.is_some()),
            day_scoped_windows: u64::from(mode.sketches_day_scoped()),
        }
    }

    /// Whether every window added counted visits (`detected`, `visits`,
    /// `visitors`, `visitors_randomized`, `passersby`, dwell, sketch).
    pub fn has_visits(&self) -> bool {
        self.visit_windows == self.windows
    }

    /// Whether every window added counted across days (`residents`,
    /// `visitors_new`, `visitors_returning`).
    pub fn has_across_days(&self) -> bool {
        self.across_day_windows == self.windows
    }

    /// The merged sketch as distinct visitors over windows of at most
    /// `days` local days: `None` when some window counted no visits, or
    /// when the windows span several days and some sketch is day-scoped.
    pub fn visitor_sketch_over(&self, days: usize) -> Option<&Sketch> {
        let merges = self.day_scoped_windows == 0 || days <= 1;
        (self.has_visits() && merges).then_some(&self.visitor_sketch)
    }

    /// SPEC §8 over these windows, `None` unless every one carried it: a
    /// sum over some of them would read as fewer people.
    pub fn people(&self) -> Option<People> {
        if self.windows == 0 || self.people_windows != self.windows {
            return None;
        }
        let n = self.windows as f64;
        Some(People {
            present_est: round2(self.present_sum / n),
            present_lo: round2(self.present_lo_sum / n),
            present_hi: round2(self.present_hi_sum / n),
            person_hours_est: round2(self.present_sum * self.window_s as f64 / 3600.0),
            entries_est: round2(self.entries_sum),
        })
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
        self.people_windows += o.people_windows;
        self.present_sum += o.present_sum;
        self.present_lo_sum += o.present_lo_sum;
        self.present_hi_sum += o.present_hi_sum;
        self.entries_sum += o.entries_sum;
        self.visit_windows += o.visit_windows;
        self.across_day_windows += o.across_day_windows;
        self.day_scoped_windows += o.day_scoped_windows;
    }
}

fn round2(x: f64) -> f64 {
    crate::round_people(x)
}

/// SPEC §8 over windows (one, an hour's, a campaign's): `present_*` are
/// means over the windows (people present on average, and the mean of
/// the windows' interval bounds, which is wider than a 90 % interval of
/// the mean), `person_hours_est` and `entries_est` sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct People {
    pub present_est: f64,
    pub present_lo: f64,
    pub present_hi: f64,
    pub person_hours_est: f64,
    pub entries_est: f64,
}

/// The window sums as a report by window or hour shows them, and as a test
/// compares an agent's reports with the gateway's rows: `Counts` without
/// its bookkeeping (`windows`, `window_s`) and its sketch, a figure `null`
/// where some window's privacy mode could not count it. Read from a whole
/// report, the other fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSums {
    pub frames: u64,
    pub frames_no_signal: u64,
    pub detected: Option<u64>,
    pub visits: Option<u64>,
    pub visitors: Option<u64>,
    pub visitors_new: Option<u64>,
    pub visitors_returning: Option<u64>,
    pub visitors_randomized: Option<u64>,
    pub passersby: Option<u64>,
    pub residents: Option<u64>,
    pub dwell_sum_s: Option<u64>,
    pub dwell_counts: Option<Vec<u64>>,
}

impl From<&Counts> for WindowSums {
    fn from(c: &Counts) -> WindowSums {
        let v = |x: u64| c.has_visits().then_some(x);
        let a = |x: u64| c.has_across_days().then_some(x);
        WindowSums {
            frames: c.frames,
            frames_no_signal: c.frames_no_signal,
            detected: v(c.detected),
            visits: v(c.visits),
            visitors: v(c.visitors),
            visitors_new: a(c.visitors_new),
            visitors_returning: a(c.visitors_returning),
            visitors_randomized: v(c.visitors_randomized),
            passersby: v(c.passersby),
            residents: a(c.residents),
            dwell_sum_s: v(c.dwell_sum_s),
            dwell_counts: c.has_visits().then(|| c.dwell_counts.to_vec()),
        }
    }
}

/// The day counts that add up across days (SPEC §5). The distinct ones
/// (`unique_visitors` and its split, `residents`) add up as visitor-days:
/// a person on two days counts twice, which is why a week's row names them
/// `*_daysum`.
///
/// The SPEC §8 sums are `null` as soon as one day lacks them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayCounts {
    pub visits: Option<u64>,
    pub unique_visitors: Option<u64>,
    pub visitors_new: Option<u64>,
    pub visitors_returning: Option<u64>,
    pub visitors_randomized: Option<u64>,
    pub residents: Option<u64>,
    pub person_hours_est: Option<f64>,
    pub entries_est: Option<f64>,
}

impl Default for DayCounts {
    /// The sum of no days: 0 everywhere (not `null`, which is what a day
    /// without a figure makes the sum).
    fn default() -> DayCounts {
        DayCounts {
            visits: Some(0),
            unique_visitors: Some(0),
            visitors_new: Some(0),
            visitors_returning: Some(0),
            visitors_randomized: Some(0),
            residents: Some(0),
            person_hours_est: Some(0.0),
            entries_est: Some(0.0),
        }
    }
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
            person_hours_est: d.person_hours_est,
            entries_est: d.entries_est,
        }
    }

    /// Adds a day; a figure is `null` as soon as one day lacks it.
    pub fn add(&mut self, o: &DayCounts) {
        let n = |a: Option<u64>, b: Option<u64>| Some(a? + b?);
        self.visits = n(self.visits, o.visits);
        self.unique_visitors = n(self.unique_visitors, o.unique_visitors);
        self.visitors_new = n(self.visitors_new, o.visitors_new);
        self.visitors_returning = n(self.visitors_returning, o.visitors_returning);
        self.visitors_randomized = n(self.visitors_randomized, o.visitors_randomized);
        self.residents = n(self.residents, o.residents);
        let sum = |a: Option<f64>, b: Option<f64>| Some(round2(a? + b?));
        self.person_hours_est = sum(self.person_hours_est, o.person_hours_est);
        self.entries_est = sum(self.entries_est, o.entries_est);
    }
}
