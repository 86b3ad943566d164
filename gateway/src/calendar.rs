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

/// The least and the greatest UTC offset, in seconds, that `tz` has
/// between `from` and `to` (Unix seconds).
pub fn offset_range(tz: &TimeZone, from: i64, to: i64) -> Option<(i32, i32)> {
    let from = Timestamp::from_second(from).ok()?;
    let first = tz.to_offset(from).seconds();
    Some(
        tz.following(from)
            .take_while(|t| t.timestamp().as_second() < to)
            .map(|t| t.offset().seconds())
            .fold((first, first), |(lo, hi), o| (lo.min(o), hi.max(o))),
    )
}

/// What to read for the local dates of `q` (those whose UTC noon it
/// contains) in stores of `zones` (and UTC, for a store without one):
/// from the first of those dates' UTC midnight less the most any zone is
/// ahead of UTC, to the midnight after the last plus the most any is
/// behind, to the whole hour. A day either side read about three times
/// what one date of a chain needs.
pub fn local_dates_reach<'a>(q: &Query, zones: impl IntoIterator<Item = &'a TimeZone>) -> Query {
    const DAY: i64 = 86_400;
    // The first midnight whose noon is at or after `t`.
    let midnight_for_noon_from = |t: i64| (t - DAY / 2 + DAY - 1).div_euclid(DAY) * DAY;
    let from = q.from_s.map(midnight_for_noon_from);
    let to = q.to_s.map(midnight_for_noon_from);
    if from.is_none() && to.is_none() {
        // Every date: nothing to reach beyond.
        return q.clone();
    }
    // UTC's offset, 0, to start with.
    let (mut ahead, mut behind) = (0i64, 0i64);
    for tz in zones {
        let span = (
            from.map_or(0, |f| f - DAY),
            to.map_or(4_102_444_800, |t| t + DAY),
        );
        match offset_range(tz, span.0, span.1) {
            Some((lo, hi)) => {
                ahead = ahead.max(i64::from(hi));
                behind = behind.max(-i64::from(lo));
            }
            None => (ahead, behind) = (DAY, DAY),
        }
    }
    let whole_hour = |s: i64| (s + 3_599) / 3_600 * 3_600;
    Query {
        store_id: q.store_id.clone(),
        from_s: from.map(|f| f - whole_hour(ahead)),
        to_s: to.map(|t| t + whole_hour(behind)),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-03-31T00:00:00Z.
    const MIDNIGHT: i64 = 1_774_915_200;

    /// The dates of a query are those whose UTC noon it holds, whatever
    /// the hour its bounds fall on; what is read for them reaches as far
    /// either side as the zones' offsets over those dates, to the hour.
    #[test]
    fn the_reach_of_local_dates_follows_the_zones() {
        let zone = |n: &str| TimeZone::get(n).unwrap();
        let q = |from: i64, to: i64| Query {
            store_id: None,
            from_s: Some(from),
            to_s: Some(to),
        };
        let reach = |q: &Query, zones: &[TimeZone]| {
            let w = local_dates_reach(q, zones);
            (w.from_s.unwrap() - MIDNIGHT, w.to_s.unwrap() - MIDNIGHT)
        };
        const H: i64 = 3_600;
        let one_date = q(MIDNIGHT, MIDNIGHT + 24 * H);
        assert_eq!(reach(&one_date, &[]), (0, 24 * H), "UTC alone");
        // Berlin is on summer time (UTC+2) from 2026-03-29.
        assert_eq!(reach(&one_date, &[zone("Europe/Berlin")]), (-2 * H, 24 * H));
        assert_eq!(
            reach(
                &one_date,
                &[zone("Pacific/Kiritimati"), zone("Pacific/Pago_Pago")]
            ),
            (-14 * H, 35 * H)
        );
        // Kolkata's half hour is read to the whole hour.
        assert_eq!(reach(&one_date, &[zone("Asia/Kolkata")]), (-6 * H, 24 * H));
        // From 10:00 the date's noon is in; from 13:00 it is not.
        assert_eq!(
            reach(&q(MIDNIGHT + 10 * H, MIDNIGHT + 24 * H), &[]),
            (0, 24 * H)
        );
        assert_eq!(
            reach(&q(MIDNIGHT + 13 * H, MIDNIGHT + 37 * H), &[]),
            (24 * H, 48 * H)
        );
        let open = local_dates_reach(&Query::default(), &[zone("Europe/Berlin")]);
        assert_eq!((open.from_s, open.to_s), (None, None));
    }
}
