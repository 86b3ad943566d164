//! The campaign report of SPEC §7, as the gateway's API answers it and its
//! `campaign-report` command prints it. Figures are full precision; only
//! the table and CSV renderings round. A figure SPEC §7 says can be absent
//! is an `Option`, `null` in JSON, never 0.

use serde::{Deserialize, Serialize};

/// The figures of SPEC §7, for one store or for the whole campaign. The
/// device figures are `null` where a store's privacy mode does not count
/// them (issue 18), and `unique_visitors_est` also where its sketches do
/// not merge across the campaign's days (`daily` keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub visits: Option<u64>,
    pub visitors: Option<u64>,
    pub passersby: Option<u64>,
    pub baseline_visits: Option<f64>,
    pub baseline_weeks_used: usize,
    pub lift: Option<f64>,
    pub incremental_visits: Option<f64>,
    /// The campaign as a whole only: a store has no impressions of its own.
    pub visits_per_1k_impressions: Option<f64>,
    pub cost_per_incremental_visit: Option<f64>,
    pub capture_rate: Option<f64>,
    pub control_stores: Vec<String>,
    pub did_lift: Option<f64>,
    /// SPEC §8 on people: `entries_est` summed over the period, and the
    /// same baseline, lift and difference-in-differences as for visits;
    /// `null` where a window of the period (or of every baseline week)
    /// came without estimates.
    pub entries_est: Option<f64>,
    pub baseline_entries_est: Option<f64>,
    pub entries_lift: Option<f64>,
    pub incremental_entries_est: Option<f64>,
    pub entries_did_lift: Option<f64>,
    pub person_hours_est: Option<f64>,
    pub detected: Option<u64>,
    pub visitors_new: Option<u64>,
    pub visitors_returning: Option<u64>,
    pub visitors_randomized: Option<u64>,
    pub unique_visitors_est: Option<u64>,
    pub unique_visitors_rel_error: f64,
    pub dwell_edges_s: Vec<u32>,
    pub dwell_counts: Option<Vec<u64>>,
    pub dwell_sum_s: Option<u64>,
    /// Which counts `[privacy] min_count` withheld, and why; absent when
    /// none were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
}

/// One campaign store's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreFigures {
    pub store_id: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Visits on one day of the campaign beside the baseline for that day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Day {
    /// 1 for the campaign's first day.
    pub day: usize,
    /// Local date in the first campaign store's zone.
    pub date: String,
    /// `null` when a store's privacy mode does not count visits.
    pub visits: Option<u64>,
    pub baseline_visits: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub campaign_id: String,
    pub name: String,
    pub channel: String,
    /// As imported: an instant (RFC 3339) or a local date.
    pub start: String,
    pub end: String,
    pub impressions: u64,
    pub reach: u64,
    pub spend: f64,
    #[serde(flatten)]
    pub figures: Figures,
    pub daily: Vec<Day>,
    /// Why a figure is absent or less sure: missing windows, fewer
    /// baseline weeks, no control stores.
    pub warnings: Vec<String>,
    pub stores: Vec<StoreFigures>,
}
