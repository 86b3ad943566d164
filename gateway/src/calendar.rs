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
use jiff::{Span, Timestamp};

use crate::store::{Query, ReportStore, When};

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

/// `store_timezones` of these statuses: a store with agents in two zones
/// takes the last agent's (in key order).
pub fn timezones_of(agents: &[crate::store::AgentInfo]) -> BTreeMap<String, TimeZone> {
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
    Query {
        store_id: None,
        from_s: day_start(from, "from").ok(),
        to_s: day_start(to, "to").ok().map(|t| t + 86_400),
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
