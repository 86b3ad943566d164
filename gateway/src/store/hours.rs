//! The values of the `hours` and `hour_sketches` trees: one agent's
//! windows that start in one UTC hour, summed at ingest (counts in one,
//! visitor sketches in the other, so that what only adds counts reads no
//! sketch), each with which windows it holds, so that a window sent again
//! is added once to each (see `sled`'s module doc for the crash story).

use footfall_report::{Counts, Sketch, WindowReport};
use serde::{Deserialize, Serialize};

use super::keys::HOUR;

/// Marks the window in `starts` unless it is there; says whether it was not.
fn mark(starts: &mut Vec<u16>, w: &WindowReport) -> bool {
    let at = u16::try_from(w.window_start.rem_euclid(HOUR)).expect("under an hour");
    match starts.binary_search(&at) {
        Ok(_) => false,
        Err(i) => {
            starts.insert(i, at);
            true
        }
    }
}

impl StoredHour {
    /// Adds the window's counts, not its sketch, unless the hour has it;
    /// says whether it did.
    pub(super) fn add(&mut self, w: &WindowReport) -> bool {
        let added = mark(&mut self.starts, w);
        if added {
            let mut c = Counts::of_window(w);
            c.visitor_sketch = Sketch::new();
            self.counts.add(&c);
        }
        added
    }
}

impl StoredHourSketch {
    /// Merges the window's sketch unless the hour has it; says whether it did.
    pub(super) fn add(&mut self, w: &WindowReport) -> bool {
        let added = mark(&mut self.starts, w);
        if added {
            if let Some(k) = &w.visitor_sketch {
                self.sketch.merge(k);
            }
        }
        added
    }
}

/// An hour's counts as stored (its sketch empty): which windows it holds
/// (seconds after the hour they start at, sorted), so a window sent again
/// is added once.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct StoredHour {
    pub(super) starts: Vec<u16>,
    pub(super) counts: Counts,
}

/// An hour's windows' visitor sketches merged, and which windows they are.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct StoredHourSketch {
    pub(super) starts: Vec<u16>,
    pub(super) sketch: Sketch,
}

/// A `day_windows` value: which windows of one agent start in one UTC day
/// (seconds after midnight, sorted), so a window sent again counts once.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct StoredDayWindows {
    pub(super) starts: Vec<u32>,
}

impl StoredDayWindows {
    /// Marks the window unless the day has it; says whether it did.
    pub(super) fn add(&mut self, w: &WindowReport) -> bool {
        let at = u32::try_from(w.window_start.rem_euclid(86_400)).expect("under a day");
        match self.starts.binary_search(&at) {
            Ok(_) => false,
            Err(i) => {
                self.starts.insert(i, at);
                true
            }
        }
    }
}

/// A `local_days` value: one agent's windows that start in one local day
/// of its store's zone, summed (sketch empty), the zone's name they were
/// cut in (empty once a window came cut in another: the store's zone
/// changed, and the day is read from its hours instead), and which
/// windows they are (seconds after the local midnight, sorted), so a
/// window sent again is added once.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct StoredLocalDay {
    pub(super) zone: String,
    pub(super) starts: Vec<u32>,
    pub(super) counts: Counts,
}

impl StoredLocalDay {
    pub(super) fn new(zone: &str) -> StoredLocalDay {
        StoredLocalDay {
            zone: zone.to_string(),
            ..StoredLocalDay::default()
        }
    }

    /// Adds the window's counts, cut at `midnight` in `zone`, unless the
    /// day has it; says whether the value changed.
    pub(super) fn add(&mut self, w: &WindowReport, midnight: i64, zone: &str) -> bool {
        let mixed = self.zone != zone && !self.zone.is_empty();
        if mixed {
            self.zone.clear();
        }
        // A local midnight is never after the instants of its day.
        let at = u32::try_from(w.window_start - midnight).unwrap_or(u32::MAX);
        match self.starts.binary_search(&at) {
            Ok(_) => mixed,
            Err(i) => {
                self.starts.insert(i, at);
                let mut c = Counts::of_window(w);
                c.visitor_sketch = Sketch::new();
                self.counts.add(&c);
                true
            }
        }
    }
}
