//! Instants and local days: what the engines need to cut a store's
//! windows into its local days, and `calendar` re-exports for the rest.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

use super::Query;

/// `t` moved back by `days` local days in `tz` (forward when negative).
pub fn back(t: i64, days: i64, tz: &TimeZone) -> i64 {
    Timestamp::from_second(t)
        .ok()
        .map(|ts| ts.to_zoned_datetime(tz.clone()))
        .and_then(|z| z.checked_sub(Span::new().days(days)).ok())
        .map_or(t - days * 86_400, |z| z.timestamp().as_second())
}

/// The query of dates `from` to `to` (`YYYY-MM-DD`, both included) as
/// `query::query` makes it: UTC midnight of `from` to the one after `to`.
pub fn dates_query(from: &str, to: &str) -> Query {
    let midnight = |d: &str| {
        d.parse::<jiff::civil::Date>()
            .ok()?
            .to_zoned_datetime(TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_second())
    };
    Query {
        store_id: None,
        from_s: midnight(from),
        to_s: midnight(to).map(|t| t + 86_400),
    }
}

/// The start of the local day `t` falls in, in `tz` (UTC's when the zone
/// has no such instant).
pub fn local_midnight(t: i64, tz: &TimeZone) -> i64 {
    Timestamp::from_second(t)
        .ok()
        .and_then(|ts| ts.to_zoned_datetime(tz.clone()).start_of_day().ok())
        .map_or(t.div_euclid(86_400) * 86_400, |z| z.timestamp().as_second())
}

/// The local date of an instant in `tz`, `YYYY-MM-DD`.
pub fn local_date(t: i64, tz: &TimeZone) -> Option<jiff::civil::Date> {
    Timestamp::from_second(t)
        .ok()
        .map(|ts| ts.to_zoned_datetime(tz.clone()).date())
}

/// `calendar::store_timezones` of these statuses: a store with agents in two zones
/// takes the last agent's (in key order).
pub fn timezones_of(agents: &[super::AgentInfo]) -> BTreeMap<String, TimeZone> {
    let mut out = BTreeMap::new();
    for a in agents {
        if let Some(tz) = a
            .status
            .health
            .as_ref()
            .and_then(|h| TimeZone::get(&h.timezone).ok())
        {
            out.insert(a.store_id.clone(), tz);
        }
    }
    out
}
