//! What the gateway deletes (issue 18): records past `[retention]`, which
//! `serve`'s sweeper purges every hour, and the `purge` command's closed
//! store or date. Both cut at midnight UTC, so that a window and the hour
//! it is summed in go together.

use anyhow::{bail, Result};

use crate::calendar;
use crate::config::Retention;
use crate::store::Purge;

/// What is past `r` at `now_s` (Unix seconds); `None` when `r` keeps
/// everything.
pub fn past(r: &Retention, now_s: i64) -> Option<Purge> {
    let today = now_s.div_euclid(86_400);
    let cut = |days: Option<u32>| days.map(|d| (today - i64::from(d)) * 86_400);
    let p = Purge {
        store_id: None,
        windows_before_s: cut(r.windows_days),
        days_before: cut(r.day_reports_days).and_then(|s| {
            jiff::Timestamp::from_second(s).ok().map(|t| {
                t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .date()
                    .to_string()
            })
        }),
        dead_letters_before_s: cut(r.dead_letters_days),
    };
    (p != Purge::default()).then_some(p)
}

/// `purge --store S` (everything of a store that closed), `--before DATE`
/// (every record before that UTC day: windows, hours, day reports of
/// earlier dates, dead letters received earlier), or both (that store's,
/// before that day).
pub fn purge_of(store: Option<String>, before: Option<&str>) -> Result<Purge> {
    let cut = before
        .map(|d| calendar::day_start(d, "before"))
        .transpose()?;
    if store.is_none() && cut.is_none() {
        bail!("say what to purge: --store STORE_ID, --before YYYY-MM-DD, or both");
    }
    Ok(Purge {
        store_id: store,
        windows_before_s: cut,
        days_before: before.map(str::to_string),
        dead_letters_before_s: cut,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_cuts_at_utc_midnight_so_many_days_back() {
        // 2026-03-10T15:00:00Z.
        let now = 1_773_154_800;
        let r = Retention {
            windows_days: Some(2),
            day_reports_days: Some(5),
            dead_letters_days: None,
        };
        let p = past(&r, now).unwrap();
        // 2026-03-08T00:00:00Z.
        assert_eq!(p.windows_before_s, Some(1_772_928_000));
        assert_eq!(p.days_before.as_deref(), Some("2026-03-05"));
        assert_eq!((p.store_id, p.dead_letters_before_s), (None, None));
        assert_eq!(past(&Retention::default(), now), None, "kept for ever");
    }

    #[test]
    fn retention_and_min_count_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gateway.toml");
        let load = |text: &str| {
            std::fs::write(&p, text).unwrap();
            crate::config::Config::load(&p)
        };
        let err = load("[storage]\npath = \"s\"\n[retention]\nwindows_days = 0\n").unwrap_err();
        assert!(
            err.to_string().contains("[retention] windows_days = 0"),
            "{err}"
        );
        let err = load("[storage]\npath = \"s\"\n[retention]\nwindow_days = 3\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("gateway.toml:4: unknown field `window_days`"),
            "{err}"
        );
        let err = load("[storage]\npath = \"s\"\n[privacy]\nmin_count = 5000\n").unwrap_err();
        assert!(err.to_string().contains("min_count = 5000"), "{err}");
        let c = load("[storage]\npath = \"s\"\n[privacy]\nmin_count = 5\n[retention]\ndead_letters_days = 30\n").unwrap();
        assert_eq!(c.min_count, Some(5));
        assert_eq!(c.retention.dead_letters_days, Some(30));
    }
}
