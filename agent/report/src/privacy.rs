//! The privacy mode a report was counted under (issue 18, docs/privacy.md):
//! how long the agent may link one phone's probes, and so which figures a
//! report can carry at all. A figure the mode cannot know is `null` on the
//! wire, never 0, and the gateway never sums it into one that can.

use serde::{Deserialize, Serialize};

/// How long one device id lives on the agent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyMode {
    /// Keys in memory only, replaced every few minutes: nothing that needs
    /// a device followed for longer (visits, dwell, distinct devices in a
    /// window, sketches, residents, returning visitors) is counted.
    Ephemeral,
    /// One key per local day, destroyed at midnight with every device
    /// state of that day: visits and distinct visitors within a day, no
    /// residents (they need a week) and no returning visitors.
    Daily,
    /// The key is kept (or rotated every `rotate_days`): everything SPEC
    /// §3-§5 counts. Reports from agents before issue 18 are this.
    #[default]
    Loyalty,
}

impl PrivacyMode {
    pub const ALL: [PrivacyMode; 3] = [
        PrivacyMode::Ephemeral,
        PrivacyMode::Daily,
        PrivacyMode::Loyalty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyMode::Ephemeral => "ephemeral",
            PrivacyMode::Daily => "daily",
            PrivacyMode::Loyalty => "loyalty",
        }
    }

    /// Figures that follow a device through a window and a visit:
    /// `detected`, `passersby`, `visits`, `visitors`,
    /// `visitors_randomized`, the dwell histogram and the visitor sketch.
    pub fn counts_visits(self) -> bool {
        self != PrivacyMode::Ephemeral
    }

    /// Figures that follow a device across days: `residents`,
    /// `visitors_new` and `visitors_returning`.
    pub fn counts_across_days(self) -> bool {
        self == PrivacyMode::Loyalty
    }

    /// Whether visitor sketches of different local days can be merged
    /// into distinct visitors (under `daily` the same phone has unrelated
    /// ids on two days, so a merge would count it twice).
    pub fn sketches_merge_across_days(self) -> bool {
        self == PrivacyMode::Loyalty
    }

    /// Whether the mode's windows carry a sketch that holds for its own
    /// local day only: a distinct count over several days is unknown.
    pub fn sketches_day_scoped(self) -> bool {
        self.counts_visits() && !self.sketches_merge_across_days()
    }

    /// `value` when the mode counts visits, else `None` (`null`).
    pub fn visit_figure<T>(self, value: T) -> Option<T> {
        self.counts_visits().then_some(value)
    }

    /// `value` when the mode counts across days, else `None` (`null`).
    pub fn across_days_figure<T>(self, value: T) -> Option<T> {
        self.counts_across_days().then_some(value)
    }
}

impl std::fmt::Display for PrivacyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PrivacyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<PrivacyMode, String> {
        PrivacyMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown privacy mode `{s}` (expected ephemeral, daily or loyalty)")
            })
    }
}
