//! Local days in the store's IANA time zone (SPEC §3). A day is numbered by
//! its civil date as days since 1970-01-01, so day arithmetic (D-7, D-30) is
//! integer arithmetic, whatever DST does to the length of a day.

use std::cell::Cell;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};

const US_PER_S: i64 = 1_000_000;

/// Maps instants to local days, caching the current day's bounds: the hot
/// path asks about one day thousands of times before the next.
#[derive(Debug, Clone)]
pub struct LocalDays {
    tz: TimeZone,
    /// (start_us, end_us, day) of the last day asked about.
    cache: Cell<(i64, i64, i32)>,
}

impl LocalDays {
    pub fn new(tz: TimeZone) -> LocalDays {
        LocalDays {
            tz,
            cache: Cell::new((0, 0, 0)),
        }
    }

    /// The local day that contains `t_us`. Inlined: the counter asks
    /// for every detection, and the cached day answers all but a few.
    #[inline]
    pub fn day_of(&self, t_us: i64) -> i32 {
        let (start, end, day) = self.cache.get();
        if (start..end).contains(&t_us) {
            return day;
        }
        self.day_of_uncached(t_us)
    }

    #[cold]
    fn day_of_uncached(&self, t_us: i64) -> i32 {
        let s = t_us.div_euclid(US_PER_S);
        let ts = Timestamp::from_second(s).unwrap_or(Timestamp::MIN);
        let offset = i64::from(self.tz.to_offset(ts).seconds());
        let day = (s + offset).div_euclid(86_400) as i32;
        let (start, end) = self.bounds(day);
        if (start..end).contains(&t_us) {
            self.cache.set((start, end, day));
        }
        day
    }

    /// [start, end) of local day `day`, in µs.
    pub fn bounds(&self, day: i32) -> (i64, i64) {
        (self.start_of(day), self.start_of(day + 1))
    }

    fn start_of(&self, day: i32) -> i64 {
        let date = date_of(day);
        match date.to_zoned_datetime(self.tz.clone()) {
            Ok(z) => z.timestamp().as_microsecond(),
            Err(_) => i64::from(day) * 86_400 * US_PER_S,
        }
    }

    /// `YYYY-MM-DD` of a day.
    pub fn date_string(&self, day: i32) -> String {
        date_of(day).to_string()
    }
}

fn date_of(day: i32) -> Date {
    Date::constant(1970, 1, 1)
        .checked_add(Span::new().days(i64::from(day)))
        .unwrap_or(Date::constant(1970, 1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_day_starts_at_16_utc() {
        let d = LocalDays::new(TimeZone::get("Asia/Shanghai").unwrap());
        // 2026-03-01T15:59:59Z is 23:59:59 local on 1 March;
        // 16:00:00Z is midnight of 2 March.
        let t = Timestamp::from_second(1_772_380_799).unwrap();
        assert_eq!(t.to_string(), "2026-03-01T15:59:59Z");
        let day = d.day_of(t.as_microsecond());
        assert_eq!(d.date_string(day), "2026-03-01");
        assert_eq!(
            d.date_string(d.day_of(t.as_microsecond() + 1_000_000)),
            "2026-03-02"
        );
        let (start, end) = d.bounds(day);
        assert_eq!(end, t.as_microsecond() + 1_000_000);
        assert_eq!(end - start, 86_400 * US_PER_S);
    }

    #[test]
    fn dst_days_are_23_and_25_hours() {
        let d = LocalDays::new(TimeZone::get("Europe/Prague").unwrap());
        let spring = Date::constant(2026, 3, 29)
            .since(Date::constant(1970, 1, 1))
            .unwrap()
            .get_days();
        let (s, e) = d.bounds(spring);
        assert_eq!(e - s, 23 * 3600 * US_PER_S);
        let autumn = Date::constant(2026, 10, 25)
            .since(Date::constant(1970, 1, 1))
            .unwrap()
            .get_days();
        let (s, e) = d.bounds(autumn);
        assert_eq!(e - s, 25 * 3600 * US_PER_S);
        assert_eq!(d.day_of(s), autumn);
        assert_eq!(d.day_of(e - 1), autumn);
        assert_eq!(d.day_of(e), autumn + 1);
        assert_eq!(d.day_of(s - 1), autumn - 1);
    }
}
