//! Time zones and calendars: where the gateway turns Unix seconds into the
//! local days, weeks and campaign periods HQ asks about.
//!
//! Invariants: a store's local day is cut in the IANA zone its agents last
//! said in their status (UTC until one has); a date given on the command
//! line or in a URL is a UTC day; a date in a campaign is local midnight in
//! each store's zone. Nothing here reads or writes the store except
//! `store_timezones`.

use std::collections::BTreeMap;

use anyhow::Result;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::store::{Query, ReportStore, When};
// The instant arithmetic the store's engines need too lives with them
// (modules import downward only).
pub use crate::store::time::{back, local_date, local_midnight, timezones_of};

/// Unix seconds now.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The start of a UTC day given as `YYYY-MM-DD`; `what` names the argument
/// in the error.
pub fn day_start(s: &str, what: &str) -> Result<i64> {
    let d: jiff::civil::Date = s
        .parse()
        .map_err(|_| anyhow::anyhow!("{what} {s:?}: expected YYYY-MM-DD"))?;
    Ok(d.to_zoned_datetime(TimeZone::UTC)?.timestamp().as_second())
}

/// Noon UTC of a date: where a local day is placed against a UTC range.
pub fn date_noon_utc(date: jiff::civil::Date) -> Option<i64> {
    date.to_datetime(jiff::civil::Time::constant(12, 0, 0, 0))
        .to_zoned_datetime(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_second())
}

/// Whether a `YYYY-MM-DD` date falls in the query's range (by its noon UTC).
pub fn date_in_range(date: &str, q: &Query) -> bool {
    let Some(t) = date
        .parse::<jiff::civil::Date>()
        .ok()
        .and_then(date_noon_utc)
    else {
        return false;
    };
    q.contains(t)
}

/// `YYYY-Www` of a date; a date that does not parse is kept as it is.
pub fn iso_week(date: &str) -> String {
    match date.parse::<jiff::civil::Date>() {
        Ok(d) => {
            let w = d.iso_week_date();
            format!("{}-W{:02}", w.year(), w.week())
        }
        Err(_) => date.to_string(),
    }
}

/// Each store's IANA time zone, from its agents' last status (UTC when a
/// store has not said): local days and campaign dates are cut in it.
pub fn store_timezones(store: &dyn ReportStore) -> Result<BTreeMap<String, TimeZone>> {
    Ok(timezones_of(&store.agents()?))
}

/// Whether the zone's offset is a whole number of hours at every instant
/// of [from, to) (no bound: 1970 to 2100): then every local midnight is a
/// whole UTC hour, and a store's hours can stand for its windows when a
/// report cuts local days (zones such as Asia/Kolkata cannot).
pub fn whole_hours(tz: &TimeZone, from: Option<i64>, to: Option<i64>) -> bool {
    let at = |t: i64| Timestamp::from_second(t).ok();
    let (Some(from), Some(to)) = (
        at(from.unwrap_or(0)),
        at(to.unwrap_or(4_102_444_800)), // 2100-01-01
    ) else {
        return false;
    };
    let whole = |o: jiff::tz::Offset| o.seconds() % 3_600 == 0;
    whole(tz.to_offset(from))
        && tz
            .following(from)
            .take_while(|t| t.timestamp() < to)
            .all(|t| whole(t.offset()))
}

/// A campaign bound in a store's zone, as Unix seconds.
pub fn resolve(w: &When, tz: &TimeZone) -> Option<i64> {
    match w {
        When::At(t) => Some(*t),
        When::Date(d) => {
            let date: jiff::civil::Date = d.parse().ok()?;
            Some(
                date.to_zoned_datetime(tz.clone())
                    .ok()?
                    .timestamp()
                    .as_second(),
            )
        }
    }
}

/// A hash of every store's zone: a cached figure cut in other zones is
/// out of date.
pub fn zones_hash(zones: &BTreeMap<String, TimeZone>) -> u64 {
    // FNV-1a: the same on every run and build, for a value kept in the
    // store (std's hashers promise neither).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (store, tz) in zones {
        for part in [store.as_str(), tz.iana_name().unwrap_or("")] {
            for b in part.bytes().chain([0]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    h
}
