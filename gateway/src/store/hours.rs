//! The `hours` tree's value: one agent's windows that start in one UTC
//! hour, summed at ingest, and which windows those are, so that a window
//! sent again is added once (see `sled`'s module doc for the crash story).

use footfall_report::{Counts, WindowReport};
use serde::{Deserialize, Serialize};

use super::keys::HOUR;

impl StoredHour {
    /// Adds the window unless the hour has it; says whether it did.
    pub(super) fn add(&mut self, w: &WindowReport) -> bool {
        let at = u16::try_from(w.window_start.rem_euclid(HOUR)).expect("under an hour");
        match self.starts.binary_search(&at) {
            Ok(_) => false,
            Err(i) => {
                self.starts.insert(i, at);
                self.counts.add(&Counts::of_window(w));
                true
            }
        }
    }
}

/// An hour as stored: which windows it holds (seconds after the hour they
/// start at, sorted), so a window sent again is added once.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct StoredHour {
    pub(super) starts: Vec<u16>,
    pub(super) counts: Counts,
}
