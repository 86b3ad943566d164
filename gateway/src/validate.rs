//! Validation of incoming reports: the gateway's door. Every payload is
//! checked for size, JSON, schema, field types and ranges, internal sums,
//! and (from MQTT) that the topic's store and agent are the payload's. What
//! fails is rejected with a reason; `accept` puts it in dead letters.
//! Nothing here panics on any input, and nothing here touches the store.

use footfall_report::topic::{self, Kind};
use footfall_report::{
    DayReport, PrivacyMode, Report, WindowReport, DAY_SCHEMA, DWELL_EDGES_S, WINDOW_SCHEMA,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("payload of {got} bytes is larger than max_payload_bytes = {max}")]
    TooLarge { got: usize, max: usize },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("schema {0:?} is not footfall.window.v1 or footfall.day.v1")]
    Schema(String),
    #[error("does not match its schema: {0}")]
    Fields(String),
    #[error("topic says {topic}, payload says {payload}")]
    TopicMismatch { topic: String, payload: String },
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Validates one payload; `from_topic` is (store, agent, kind) when it came
/// over MQTT.
pub fn validate(
    payload: &[u8],
    from_topic: Option<(&str, &str, Kind)>,
    max: usize,
) -> Result<Report, Reject> {
    if payload.len() > max {
        return Err(Reject::TooLarge {
            got: payload.len(),
            max,
        });
    }
    let report = match typed(payload, from_topic.map(|(_, _, kind)| kind)) {
        Some(r) => r,
        None => read_value(payload)?,
    };
    let (store_id, agent_id) = match &report {
        Report::Window(w) => (&w.store_id, &w.agent_id),
        Report::Day(d) => (&d.store_id, &d.agent_id),
    };
    for (what, id) in [("store_id", store_id), ("agent_id", agent_id)] {
        if let Some(p) = topic::id_problem(id) {
            return Err(Reject::Invalid(format!("{what} {id:?} {p}")));
        }
    }
    if let Some((t_store, t_agent, kind)) = from_topic {
        if (t_store, t_agent, kind) != (store_id.as_str(), agent_id.as_str(), report.kind()) {
            return Err(Reject::TopicMismatch {
                topic: format!("{t_store}/{t_agent}/{kind}"),
                payload: format!("{store_id}/{agent_id}/{}", report.kind()),
            });
        }
    }
    match &report {
        Report::Window(w) => check_window(w)?,
        Report::Day(d) => check_day(d)?,
    }
    Ok(report)
}

/// The report of the kind its topic names, read straight into its type,
/// when it is one with that kind's schema; `None` sends the payload the
/// long way (`read_value`), which names what is wrong. Reading through a
/// `serde_json::Value` first was a fifth of a gateway's time at 20 k
/// reports/s.
fn typed(payload: &[u8], kind: Option<Kind>) -> Option<Report> {
    match kind? {
        Kind::Window => serde_json::from_slice::<WindowReport>(payload)
            .ok()
            .filter(|w| w.schema == WINDOW_SCHEMA)
            .map(Report::Window),
        Kind::Day => serde_json::from_slice::<DayReport>(payload)
            .ok()
            .filter(|d| d.schema == DAY_SCHEMA)
            .map(Report::Day),
        _ => None,
    }
}

/// A report read through its schema field, each failure named.
fn read_value(payload: &[u8]) -> Result<Report, Reject> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| Reject::NotJson(e.to_string()))?;
    let schema = value
        .get("schema")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    let report = match schema.as_str() {
        WINDOW_SCHEMA => Report::Window(
            serde_json::from_value(value).map_err(|e| Reject::Fields(e.to_string()))?,
        ),
        DAY_SCHEMA => {
            Report::Day(serde_json::from_value(value).map_err(|e| Reject::Fields(e.to_string()))?)
        }
        _ => return Err(Reject::Schema(schema)),
    };
    Ok(report)
}

fn invalid(ok: bool, what: &str) -> Result<(), Reject> {
    if ok {
        Ok(())
    } else {
        Err(Reject::Invalid(what.to_string()))
    }
}

fn check_window(w: &WindowReport) -> Result<(), Reject> {
    let len = w.window_end - w.window_start;
    invalid(
        (60..=86_400).contains(&len),
        "window length must be 60..86400 s",
    )?;
    invalid(
        w.window_start.rem_euclid(len) == 0,
        "window_start is not aligned to its length",
    )?;
    invalid(
        w.dwell_edges_s == DWELL_EDGES_S,
        "dwell_edges_s is not SPEC's",
    )?;
    check_mode_window(w)?;
    invalid(
        w.dwell_counts
            .as_ref()
            .is_none_or(|c| c.len() == DWELL_EDGES_S.len()),
        "dwell_counts needs one count per edge",
    )?;
    if let (Some(new), Some(returning), Some(randomized), Some(visitors)) = (
        w.visitors_new,
        w.visitors_returning,
        w.visitors_randomized,
        w.visitors,
    ) {
        invalid(
            new.checked_add(returning)
                .and_then(|s| s.checked_add(randomized))
                == Some(visitors),
            "visitors_new + visitors_returning + visitors_randomized must equal visitors",
        )?;
    }
    let le = |a: Option<u64>, b: Option<u64>| a.zip(b).is_none_or(|(a, b)| a <= b);
    invalid(le(w.visitors, w.visits), "visitors exceeds visits")?;
    invalid(le(w.passersby, w.detected), "passersby exceeds detected")?;
    invalid(
        w.frames_no_signal <= w.frames,
        "frames_no_signal exceeds frames",
    )?;
    invalid(
        w.detected
            .unwrap_or(0)
            .saturating_add(w.residents.unwrap_or(0))
            <= w.frames.saturating_mul(2),
        "more devices than frames",
    )?;
    invalid(
        !w.params_hash.is_empty() && !w.agent_version.is_empty(),
        "params_hash and agent_version are required",
    )?;
    check_people_window(w)
}

/// Issue 18: the figures `privacy_mode` counts are numbers, the others
/// `null`: a 0 where the mode cannot know would read as "nobody".
fn check_mode_window(w: &WindowReport) -> Result<(), Reject> {
    let visits = [
        w.detected,
        w.visits,
        w.visitors,
        w.visitors_randomized,
        w.passersby,
        w.dwell_sum_s,
    ]
    .map(|f| f.is_some())
    .into_iter()
    .chain([w.dwell_counts.is_some(), w.visitor_sketch.is_some()]);
    let across = [w.visitors_new, w.visitors_returning, w.residents].map(|f| f.is_some());
    mode_figures(
        w.privacy_mode,
        visits.collect(),
        &across,
        "detected, visits, visitors, visitors_randomized, passersby, dwell_counts, dwell_sum_s and visitor_sketch",
        "visitors_new, visitors_returning and residents",
    )
}

fn mode_figures(
    mode: PrivacyMode,
    visits: Vec<bool>,
    across: &[bool],
    visit_names: &str,
    across_names: &str,
) -> Result<(), Reject> {
    let want = |allowed: bool, present: &[bool], names: &str| {
        let (all, none) = (present.iter().all(|p| *p), present.iter().all(|p| !p));
        match (allowed, all, none) {
            (true, true, _) | (false, _, true) => Ok(()),
            (true, _, _) => Err(Reject::Invalid(format!(
                "privacy_mode {mode} counts {names}: they must be numbers"
            ))),
            (false, _, _) => Err(Reject::Invalid(format!(
                "privacy_mode {mode} cannot count {names}: they must be null"
            ))),
        }
    };
    want(mode.counts_visits(), &visits, visit_names)?;
    want(mode.counts_across_days(), across, across_names)
}

/// SPEC §8: all four estimates or none (`null`), 0 ≤ lo ≤ est ≤ hi, and
/// entries a finite number ≥ 0. JSON has no NaN, but a huge number is
/// not a number of people either.
fn check_people_window(w: &WindowReport) -> Result<(), Reject> {
    let figures = [w.present_est, w.present_lo, w.present_hi, w.entries_est];
    if figures.iter().all(Option::is_none) {
        return Ok(());
    }
    let [Some(est), Some(lo), Some(hi), Some(entries)] = figures else {
        return Err(Reject::Invalid(
            "present_est, present_lo, present_hi and entries_est are all numbers or all null"
                .into(),
        ));
    };
    invalid(
        figures.iter().flatten().all(|v| v.is_finite() && *v <= 1e9),
        "a people estimate is out of range",
    )?;
    invalid(
        0.0 <= lo && lo <= est && est <= hi,
        "people estimates need 0 ≤ present_lo ≤ present_est ≤ present_hi",
    )?;
    invalid(entries >= 0.0, "entries_est is negative")?;
    Ok(())
}

fn check_day(d: &DayReport) -> Result<(), Reject> {
    invalid(
        d.date.parse::<jiff::civil::Date>().is_ok() && d.date.len() == 10,
        "date is not YYYY-MM-DD",
    )?;
    mode_figures(
        d.privacy_mode,
        vec![
            d.visits.is_some(),
            d.unique_visitors.is_some(),
            d.visitors_randomized.is_some(),
        ],
        &[
            d.visitors_new.is_some(),
            d.visitors_returning.is_some(),
            d.residents.is_some(),
        ],
        "visits, unique_visitors and visitors_randomized",
        "visitors_new, visitors_returning and residents",
    )?;
    if let (Some(new), Some(returning), Some(randomized), Some(unique)) = (
        d.visitors_new,
        d.visitors_returning,
        d.visitors_randomized,
        d.unique_visitors,
    ) {
        invalid(
            new.checked_add(returning)
                .and_then(|s| s.checked_add(randomized))
                == Some(unique),
            "visitors_new + visitors_returning + visitors_randomized must equal unique_visitors",
        )?;
    }
    invalid(
        d.unique_visitors.zip(d.visits).is_none_or(|(u, v)| u <= v),
        "unique_visitors exceeds visits",
    )?;
    invalid(
        !d.params_hash.is_empty() && !d.agent_version.is_empty(),
        "params_hash and agent_version are required",
    )?;
    invalid(
        [d.person_hours_est, d.entries_est]
            .iter()
            .flatten()
            .all(|v| v.is_finite() && (0.0..=1e9).contains(v)),
        "person_hours_est and entries_est must be numbers ≥ 0, or null",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> serde_json::Value {
        serde_json::json!({
            "schema": "footfall.window.v1", "store_id": "s1", "agent_id": "a1", "seq": 3,
            "window_start": 900, "window_end": 1800, "frames": 10, "frames_no_signal": 0,
            "detected": 3, "visits": 1, "visitors": 1, "visitors_new": 1, "visitors_returning": 0,
            "visitors_randomized": 0, "passersby": 2, "residents": 0,
            "dwell_edges_s": [300, 600, 1200, 1800, 3600, 7200], "dwell_counts": [0, 0, 0, 0, 0, 0],
            "dwell_sum_s": 0, "visitor_sketch": {"v": 1, "p": 14, "enc": "sparse", "regs": ""},
            "agent_version": "0.1.0", "params_hash": "abc"
        })
    }

    fn check(v: &serde_json::Value) -> Result<Report, Reject> {
        validate(
            v.to_string().as_bytes(),
            Some(("s1", "a1", Kind::Window)),
            65536,
        )
    }

    fn parse(payload: &[u8], topic: Option<(&str, &str, Kind)>) -> Result<Report, Reject> {
        validate(payload, topic, 65536)
    }

    #[test]
    fn a_good_window_passes() {
        assert!(check(&window()).is_ok());
    }

    /// A report read straight into its type is the report read through
    /// its schema field; what the short way does not take goes the long
    /// way and keeps its reason.
    #[test]
    fn the_typed_read_is_the_long_read() {
        use footfall_report::testing;
        for mode in PrivacyMode::ALL {
            let w = testing::under(testing::window_of_visitors("s1", "a1", 900, 3), mode);
            let text = serde_json::to_vec(&w).unwrap();
            let typed_w = typed(&text, Some(Kind::Window));
            assert!(typed_w.is_some(), "{mode}");
            assert_eq!(typed_w, read_value(&text).ok(), "{mode}");
            let d = testing::day_under(testing::day("s1", "a1", "2026-03-02"), mode);
            let text = serde_json::to_vec(&d).unwrap();
            let typed_d = typed(&text, Some(Kind::Day));
            assert!(typed_d.is_some(), "{mode}");
            assert_eq!(typed_d, read_value(&text).ok(), "{mode}");
            // A day on a window topic, a window on a day topic.
            assert_eq!(typed(&text, Some(Kind::Window)), None);
        }
        let mut w = testing::window_of_visitors("s1", "a1", 900, 3);
        w.schema = "footfall.window.v9".into();
        let text = serde_json::to_vec(&w).unwrap();
        assert_eq!(typed(&text, Some(Kind::Window)), None);
        let err = validate(&text, Some(("s1", "a1", Kind::Window)), 1 << 20).unwrap_err();
        assert_eq!(err, Reject::Schema("footfall.window.v9".into()));
    }

    /// Issue 18: each mode's report carries its figures as numbers and
    /// the ones it cannot know as null, and nothing else passes.
    #[test]
    fn a_report_carries_exactly_the_figures_its_privacy_mode_counts() {
        use footfall_report::testing;
        for mode in PrivacyMode::ALL {
            let w = testing::under(testing::window_of_visitors("s1", "a1", 900, 3), mode);
            let text = serde_json::to_string(&w).unwrap();
            assert!(parse(text.as_bytes(), None).is_ok(), "{mode}: {text}");
            let d = testing::day_under(testing::day("s1", "a1", "2026-03-02"), mode);
            let text = serde_json::to_string(&d).unwrap();
            assert!(parse(text.as_bytes(), None).is_ok(), "{mode}: {text}");
        }
        let mut w = testing::under(
            testing::window_of_visitors("s1", "a1", 900, 3),
            PrivacyMode::Ephemeral,
        );
        w.visits = Some(0);
        let err = parse(serde_json::to_string(&w).unwrap().as_bytes(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("privacy_mode ephemeral cannot count detected, visits"),
            "{err}"
        );
        let mut d = testing::day_under(testing::day("s1", "a1", "2026-03-02"), PrivacyMode::Daily);
        d.residents = Some(0);
        let err = parse(serde_json::to_string(&d).unwrap().as_bytes(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("privacy_mode daily cannot count visitors_new"),
            "{err}"
        );
        // A loyalty report (every report before modes) with a null.
        let mut w = testing::window_of_visitors("s1", "a1", 900, 3);
        w.passersby = None;
        let err = parse(serde_json::to_string(&w).unwrap().as_bytes(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("privacy_mode loyalty counts detected"),
            "{err}"
        );
    }

    #[test]
    fn each_kind_of_bad_payload_is_rejected_with_its_reason() {
        assert!(matches!(
            validate(b"{not json", None, 100),
            Err(Reject::NotJson(_))
        ));
        assert!(matches!(
            validate(&[b' '; 200], None, 100),
            Err(Reject::TooLarge { got: 200, max: 100 })
        ));
        let mut v = window();
        v["schema"] = "footfall.window.v9".into();
        assert!(matches!(check(&v), Err(Reject::Schema(_))));
        let mut v = window();
        v["visits"] = "one".into();
        assert!(matches!(check(&v), Err(Reject::Fields(e)) if e.contains("invalid type")));
        let mut v = window();
        v["extra"] = 1.into();
        assert!(matches!(check(&v), Err(Reject::Fields(e)) if e.contains("unknown field")));
        let mut v = window();
        v["visitors_new"] = 0.into();
        assert!(matches!(check(&v), Err(Reject::Invalid(e)) if e.contains("must equal visitors")));
        // SPEC §8: ordered, all or none, never negative.
        let mut v = window();
        v["present_est"] = 2.5.into();
        v["present_lo"] = 1.0.into();
        v["present_hi"] = 4.0.into();
        v["entries_est"] = 0.5.into();
        assert!(check(&v).is_ok());
        v["present_lo"] = 3.0.into();
        assert!(
            matches!(check(&v), Err(Reject::Invalid(e)) if e.contains("present_lo ≤ present_est"))
        );
        v["present_lo"] = serde_json::Value::Null;
        assert!(matches!(check(&v), Err(Reject::Invalid(e)) if e.contains("all null")));
        v["present_lo"] = 1.0.into();
        v["entries_est"] = (-1.0).into();
        assert!(matches!(check(&v), Err(Reject::Invalid(e)) if e.contains("negative")));
        let mut v = window();
        v["window_start"] = 901.into();
        v["window_end"] = 1801.into();
        assert!(matches!(check(&v), Err(Reject::Invalid(e)) if e.contains("aligned")));
        let v = window();
        let err = validate(
            v.to_string().as_bytes(),
            Some(("s2", "a1", Kind::Window)),
            65536,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "topic says s2/a1/window, payload says s1/a1/window"
        );
        let err = validate(
            v.to_string().as_bytes(),
            Some(("s1", "a1", Kind::Day)),
            65536,
        )
        .unwrap_err();
        assert!(matches!(err, Reject::TopicMismatch { .. }));
    }
}
