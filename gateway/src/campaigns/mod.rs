//! Campaigns (SPEC §7): import (the CSV itself is `csv`'s), and the
//! campaign report that answers "did the campaign bring more people in".
//!
//! A campaign's period is [start, end); a date means midnight in each
//! store's own time zone (from its agents' status). Its windows are those
//! that *start* in the period. The baseline is the same period shifted back
//! by 7·k local days, k = 1..`BASELINE_WEEKS`, keeping only weeks in which
//! every window was reported; control stores are the stores outside the
//! campaign with every window reported in the period and those weeks.
//! A figure that cannot be computed is `null`, never 0.

use std::collections::BTreeSet;

use anyhow::Result;
use footfall_report::campaign::CampaignReport;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::calendar::resolve;
use crate::store::{Campaign, Query, ReportStore, When};

mod csv;
mod data;
mod report;

pub use csv::parse_csv;
pub use data::Data;

/// SPEC §7 `baseline_weeks`.
pub const BASELINE_WEEKS: i64 = 4;

fn when_text(w: &When) -> String {
    match w {
        When::At(t) => Timestamp::from_second(*t)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        When::Date(d) => d.clone(),
    }
}

/// Imports a campaigns CSV: validates every row against the stores the
/// gateway knows, then stores all of it at once (by id: a second import
/// updates). Returns how many campaigns were stored.
pub fn import(store: &dyn ReportStore, text: &str, file: &str) -> Result<usize> {
    let known: BTreeSet<String> = store
        .reporting_agents()?
        .into_iter()
        .map(|(s, _, _)| s)
        .collect();
    let campaigns =
        parse_csv(text, file, &known).map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))?;
    store.put_campaigns(&campaigns)?;
    Ok(campaigns.len())
}

/// `[privacy] min_count` on campaign reports: each count below `min`, of
/// the campaign, of each store and of each day, is withheld as in report
/// rows (`query::suppress`); twice is the same as once.
pub fn suppress(reports: &mut [CampaignReport], min: Option<u64>) {
    let Some(m) = min else {
        return;
    };
    let figures = |f: &mut footfall_report::campaign::Figures| {
        let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&*f) else {
            return;
        };
        let mut rows = [map];
        crate::query::suppress(&mut rows, min);
        let [map] = rows;
        if let Ok(g) = serde_json::from_value(serde_json::Value::Object(map)) {
            *f = g;
        }
    };
    for r in reports {
        figures(&mut r.figures);
        for s in &mut r.stores {
            figures(&mut s.figures);
        }
        for d in &mut r.daily {
            d.visits = d.visits.filter(|v| *v >= m);
        }
    }
}

/// Keeps every campaign's report, its small counts withheld, where SQL
/// tools read it (`footfall_campaign_*` views), on an engine that has them;
/// how many it kept.
pub fn publish(store: &dyn ReportStore, min_count: Option<u64>) -> Result<usize> {
    if !store.keeps_campaign_reports() {
        return Ok(0);
    }
    let mut all = reports(store, None)?;
    suppress(&mut all, min_count);
    store.put_campaign_reports(&all)?;
    Ok(all.len())
}

/// Campaign reports, one per campaign (or the one asked for).
pub fn reports(store: &dyn ReportStore, only: Option<&str>) -> Result<Vec<CampaignReport>> {
    let campaigns: Vec<Campaign> = store
        .campaigns()?
        .into_iter()
        .filter(|c| only.is_none_or(|id| c.campaign_id == id))
        .collect();
    if let Some(id) = only {
        if campaigns.is_empty() {
            anyhow::bail!("no campaign {id:?}; `campaigns list` shows the imported ones");
        }
    }
    if campaigns.is_empty() {
        return Ok(Vec::new());
    }
    let data = Data::load(store, &campaigns)?;
    Ok(campaigns.iter().map(|c| data.campaign_report(c)).collect())
}

/// The windows some campaign reports can read: from the first baseline
/// week to the last end. Dates are read as UTC with two days to spare
/// either side, enough for any time zone.
fn span(campaigns: &[Campaign]) -> Query {
    let utc = |w: &When| resolve(w, &TimeZone::UTC);
    let from = campaigns.iter().filter_map(|c| utc(&c.start)).min();
    let to = campaigns.iter().filter_map(|c| utc(&c.end)).max();
    const DAY: i64 = 86_400;
    Query {
        store_id: None,
        from_s: from.map(|f| f - (BASELINE_WEEKS * 7 + 2) * DAY),
        to_s: to.map(|t| t + 2 * DAY),
    }
}

#[cfg(test)]
mod tests {
    use super::data::Grain;
    use super::*;
    use crate::store::{AgentInfo, SledStore};
    use footfall_report::{Report, Sketch};
    use serde_json::{json, Value};

    /// 2026-03-30T00:00:00Z, a Monday.
    const T: i64 = 1_774_828_800;
    const H: i64 = 3600;

    fn window(store: &str, start: i64, visits: u64) -> Report {
        let mut sketch = Sketch::new();
        for i in 0..visits {
            sketch.insert(
                (u128::from(start as u64) << 64 ^ u128::from(i))
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            );
        }
        let mut w = footfall_report::testing::window(store, "a", start, H);
        w.frames = 10;
        w.detected = Some(2);
        w.visits = Some(visits);
        w.visitors = Some(1);
        w.visitors_new = Some(1);
        w.passersby = Some(1);
        w.dwell_counts.as_mut().unwrap()[0] = visits;
        w.dwell_sum_s = Some(300 * visits);
        w.visitor_sketch = Some(sketch);
        Report::Window(w)
    }

    /// Store A: 2 visits an hour before the campaign week, 3 during it;
    /// store B (not in the campaign): 1 an hour throughout. A misses one
    /// hour in the third week back.
    fn chain() -> (tempfile::TempDir, SledStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        for h in 0..(5 * 7 * 24) {
            let start = T - 4 * 7 * 24 * H + h * H;
            let in_campaign = start >= T;
            if start != T - 3 * 7 * 24 * H + 5 * H {
                s.put(&window("A", start, if in_campaign { 3 } else { 2 }))
                    .unwrap();
            }
            s.put(&window("B", start, 1)).unwrap();
        }
        (dir, s)
    }

    fn campaign(stores: Option<Vec<String>>) -> Campaign {
        Campaign {
            campaign_id: "c1".into(),
            name: "Spring".into(),
            channel: "social".into(),
            start: When::At(T),
            end: When::Date("2026-04-06".into()),
            stores,
            impressions: 100_000,
            reach: 40_000,
            spend: 840.0,
        }
    }

    #[test]
    fn lift_baseline_and_did_by_hand() {
        let (_dir, s) = chain();
        let c = campaign(Some(vec!["A".into()]));
        let data = Data::load(&s, std::slice::from_ref(&c)).unwrap();
        let r = serde_json::to_value(data.campaign_report(&c)).unwrap();
        // 168 hours x 3 = 504 visits; baseline 168 x 2 = 336 over the 3
        // complete weeks (week 3 misses an hour, so it is left out).
        assert_eq!(r["visits"], 504);
        assert_eq!(r["baseline_visits"], 336.0);
        assert_eq!(r["baseline_weeks_used"], 3);
        assert_eq!(r["lift"], 0.5);
        assert_eq!(r["incremental_visits"], 168.0);
        assert_eq!(r["visits_per_1k_impressions"], 5.04);
        assert_eq!(r["cost_per_incremental_visit"], 5.0);
        assert_eq!(r["capture_rate"], 0.5);
        assert_eq!(r["control_stores"], json!(["B"]));
        // A: 504/336 = 1.5; B: 168/168 = 1.0; DiD = 1.5 / 1.0 - 1.
        assert_eq!(r["did_lift"], 0.5);
        let warnings = r["warnings"].as_array().unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| w.as_str().unwrap().contains("baseline over 3 of 4 weeks")),
            "{warnings:?}"
        );
        let a = &r["stores"][0];
        assert_eq!(
            (
                a["store_id"].clone(),
                a["lift"].clone(),
                a["visits_per_1k_impressions"].clone()
            ),
            (json!("A"), json!(0.5), Value::Null)
        );
        // 504 visits over 168 windows, sketches of distinct ids: estimate ~504.
        let est = r["unique_visitors_est"].as_f64().unwrap();
        assert!((est - 504.0).abs() < 504.0 * 0.05, "{est}");
    }

    /// `[privacy] min_count` withholds the campaign's small counts, of the
    /// whole, of each store and of each day, and says so; twice is once.
    #[test]
    fn small_campaign_counts_are_withheld() {
        let (_dir, s) = chain();
        let c = campaign(Some(vec!["A".into()]));
        let data = Data::load(&s, std::slice::from_ref(&c)).unwrap();
        let mut reports = vec![data.campaign_report(&c)];
        suppress(&mut reports, Some(200));
        let once = reports.clone();
        suppress(&mut reports, Some(200));
        assert_eq!(reports, once);
        let f = &reports[0].figures;
        // 504 visits stay; 168 visitors (one an hour) and passers-by go.
        assert_eq!((f.visits, f.visitors, f.passersby), (Some(504), None, None));
        assert!(
            f.suppressed.as_deref().unwrap().contains("visitors"),
            "{f:?}"
        );
        assert!(reports[0].stores[0].figures.suppressed.is_some());
        assert!(
            reports[0].daily.iter().all(|d| d.visits.is_none()),
            "72 a day"
        );
    }

    /// Issue 18: a campaign of a store under daily keys has visits and
    /// their lift, but no distinct visitors over its weeks; one under
    /// ephemeral keys has neither visits nor their lift (null, not 0),
    /// and still its lift on people.
    #[test]
    fn a_campaign_has_only_what_its_stores_modes_count() {
        use footfall_report::{testing, PrivacyMode};
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        for (store, mode) in [("D", PrivacyMode::Daily), ("E", PrivacyMode::Ephemeral)] {
            for h in 0..(5 * 7 * 24) {
                let start = T - 4 * 7 * 24 * H + h * H;
                let Report::Window(mut w) = window(store, start, 2) else {
                    unreachable!()
                };
                let people = if start >= T { 2.0 } else { 1.0 };
                w.present_est = Some(people);
                w.present_lo = Some(people);
                w.present_hi = Some(people);
                w.entries_est = Some(people);
                s.put(&Report::Window(testing::under(w, mode))).unwrap();
            }
        }
        for store in ["D", "E"] {
            let c = campaign(Some(vec![store.into()]));
            let data = Data::load(&s, std::slice::from_ref(&c)).unwrap();
            let r = data.campaign_report(&c);
            let f = &r.figures;
            assert_eq!(f.unique_visitors_est, None, "{store}");
            assert_eq!(f.entries_lift, Some(1.0), "{store}");
            if store == "D" {
                assert_eq!((f.visits, f.lift), (Some(336), Some(0.0)));
            } else {
                assert_eq!((f.visits, f.lift, f.capture_rate), (None, None, None));
                assert!(r.daily.iter().all(|d| d.visits.is_none()));
            }
        }
    }

    /// SPEC §8 on people, computed as visits are: A's windows carry
    /// 1 entry an hour before the campaign and 2 during it, B's 1 always;
    /// a week where one of A's windows came without estimates (an older
    /// agent) is left out of the people baseline only.
    #[test]
    fn the_lift_on_people_is_computed_like_the_lift_on_visits() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 1 << 20).unwrap();
        for h in 0..(5 * 7 * 24) {
            let start = T - 4 * 7 * 24 * H + h * H;
            for (store, entries) in [("A", if start >= T { 2.0 } else { 1.0 }), ("B", 1.0)] {
                let Report::Window(mut w) = window(store, start, 1) else {
                    unreachable!()
                };
                if !(store == "A" && start == T - 2 * 7 * 24 * H + 7 * H) {
                    w.present_est = Some(4.0);
                    w.present_lo = Some(3.0);
                    w.present_hi = Some(6.0);
                    w.entries_est = Some(entries);
                }
                s.put(&Report::Window(w)).unwrap();
            }
        }
        let c = campaign(Some(vec!["A".into()]));
        let data = Data::load(&s, std::slice::from_ref(&c)).unwrap();
        let r = serde_json::to_value(data.campaign_report(&c)).unwrap();
        assert_eq!(r["baseline_weeks_used"], 4, "visits use every week");
        assert_eq!(r["entries_est"], 336.0);
        assert_eq!(
            r["baseline_entries_est"], 168.0,
            "over the 3 weeks with estimates"
        );
        assert_eq!(r["entries_lift"], 1.0);
        assert_eq!(r["incremental_entries_est"], 168.0);
        // A doubled, B stayed: DiD 2 / 1 - 1.
        assert_eq!(r["entries_did_lift"], 1.0);
        assert_eq!(r["person_hours_est"], 4.0 * 168.0);
        assert_eq!(r["stores"][0]["entries_lift"], 1.0);
        assert!(r["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("people: baseline over 3 of the 4 weeks")));
        // The chain of `chain()` has no estimates at all: every people figure is null.
        let (_dir2, old) = chain();
        let data = Data::load(&old, std::slice::from_ref(&c)).unwrap();
        let r = serde_json::to_value(data.campaign_report(&c)).unwrap();
        for k in [
            "entries_est",
            "baseline_entries_est",
            "entries_lift",
            "entries_did_lift",
            "person_hours_est",
        ] {
            assert_eq!(r[k], Value::Null, "{k}");
        }
    }

    #[test]
    fn figures_that_cannot_be_computed_are_null() {
        let (_dir, s) = chain();
        let mut early = campaign(Some(vec!["B".into()]));
        early.start = When::At(T - 30 * 24 * H);
        early.end = When::At(T - 29 * 24 * H);
        let data = Data::load(&s, &[campaign(None), early.clone()]).unwrap();
        // Every store in the campaign: no control stores, so no DiD.
        let r = serde_json::to_value(data.campaign_report(&campaign(None))).unwrap();
        assert_eq!(r["did_lift"], Value::Null);
        assert_eq!(r["control_stores"], json!([]));
        // A campaign before any data: no baseline, no lift, no cost.
        let r = serde_json::to_value(data.campaign_report(&early)).unwrap();
        assert_eq!(r["baseline_weeks_used"], 0);
        assert_eq!(
            (
                r["lift"].clone(),
                r["baseline_visits"].clone(),
                r["cost_per_incremental_visit"].clone()
            ),
            (Value::Null, Value::Null, Value::Null)
        );
    }

    /// Hours stand for windows only where every cut falls on a UTC hour,
    /// local days for hours only where every cut is a local midnight;
    /// either way the report is the one the windows give. Stores in UTC,
    /// in Berlin (its summer time starts 2026-03-29, inside the baseline)
    /// and in Kolkata (UTC+05:30), with 15-minute windows; campaigns on
    /// dates, on whole hours, and on a quarter hour.
    #[test]
    fn reports_from_hours_are_the_reports_from_windows() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(&dir.path().join("g"), 4 << 20).unwrap();
        let zones = [
            ("utc", "UTC"),
            ("berlin", "Europe/Berlin"),
            ("kolkata", "Asia/Kolkata"),
        ];
        for (i, (store, zone)) in zones.iter().enumerate() {
            s.set_status(&AgentInfo {
                store_id: store.to_string(),
                agent_id: "a".into(),
                last_seen_unix_s: T,
                status: footfall_report::testing::online(store, "a", zone),
            })
            .unwrap();
            for q in 0..(5 * 7 * 96) {
                let start = T - 4 * 7 * 86_400 + q * 900;
                let mut r = window(store, start, (q as u64 * 7 + i as u64) % 5);
                if let Report::Window(w) = &mut r {
                    w.window_end = start + 900;
                }
                s.put(&r).unwrap();
            }
        }
        let at = |d: i64, h: i64, m: i64| When::At(T + d * 86_400 + h * H + m * 60);
        let campaigns = [
            (
                When::Date("2026-03-30".into()),
                When::Date("2026-04-04".into()),
            ),
            (at(0, 9, 0), at(3, 21, 0)),
            (at(1, 10, 15), at(2, 0, 0)),
        ]
        .map(|(start, end)| Campaign {
            start,
            end,
            ..campaign(Some(vec!["berlin".into()]))
        });
        let both = &["berlin", "utc"][..];
        for ((c, hours_for), days_for) in
            campaigns
                .iter()
                .zip([both, both, &[][..]])
                .zip([both, &[][..], &[][..]])
        {
            let one = std::slice::from_ref(c);
            let by_day = Data::load_by(&s, one, Grain::Day).unwrap();
            let by_hour = Data::load_by(&s, one, Grain::Hour).unwrap();
            let by_window = Data::load_by(&s, one, Grain::Window).unwrap();
            for (store, data) in &by_hour.stores {
                let windows = by_window.stores[store].pieces.len();
                let pieces = data.pieces.len();
                let hours = hours_for.contains(&store.as_str());
                assert_eq!(pieces * if hours { 4 } else { 1 }, windows, "{store}");
            }
            for (store, data) in &by_day.stores {
                let hourly = &by_hour.stores[store];
                let want = if days_for.contains(&store.as_str()) {
                    let days: BTreeSet<i64> = hourly
                        .pieces
                        .iter()
                        .map(|p| crate::calendar::local_midnight(p.start, &hourly.tz))
                        .collect();
                    days.len()
                } else {
                    hourly.pieces.len()
                };
                assert_eq!(data.pieces.len(), want, "{store}");
            }
            let (a, b) = (by_hour.campaign_report(c), by_window.campaign_report(c));
            assert_eq!(a, b, "{:?}", c.start);
            assert_eq!(by_day.campaign_report(c), a, "{:?}", c.start);
            assert!(a.figures.baseline_weeks_used >= 3, "{a:?}");
            assert!(a.figures.did_lift.is_some(), "{a:?}");
        }
    }

    #[test]
    fn csv_rows_are_validated_with_line_numbers() {
        let known: BTreeSet<String> = ["A".to_string(), "B".to_string()].into();
        let good = "campaign_id,name,channel,start,end,stores,impressions,reach,spend\n\
                    c1,Spring,social,2026-03-30,2026-04-06,A;B,1000,500,99.5\n\
                    c2,All,tv,2026-03-30T00:00:00+02:00,2026-04-01T00:00:00+02:00,*,0,0,0\n";
        let list = parse_csv(good, "c.csv", &known).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].stores, None);
        assert_eq!(list[1].start, When::At(T - 2 * H));
        let bad = "campaign_id,name,channel,start,end,stores,impressions,reach,spend\n\
                   c1,Spring,social,2026-04-06,2026-03-30,A,1000,500,10\n\
                   c2,X,tv,2026-03-30,2026-04-06,Z,1000,500,10\n\
                   c3,X,tv,2026-03-30,2026-04-06,A,-5,500,10\n\
                   c4,X,tv,yesterday,2026-04-06,A,10,5,10\n\
                   c5,X,tv,2026-03-30,2026-04-06,A,10,50,10\n\
                   c6,X,tv,2026-03-30,2026-04-06,A,10,5,-1\n";
        let errors = parse_csv(bad, "c.csv", &known).unwrap_err();
        let want = [
            "c.csv:2: end must be after start",
            "c.csv:3: unknown store(s) [\"Z\"]",
            "c.csv:4: impressions \"-5\"",
            "c.csv:5: start \"yesterday\"",
            "c.csv:6: reach 50 exceeds impressions 10",
            "c.csv:7: spend \"-1\"",
        ];
        assert_eq!(errors.len(), want.len(), "{errors:#?}");
        for (e, w) in errors.iter().zip(want) {
            assert!(e.starts_with(w), "{e} does not start with {w}");
        }
        assert!(parse_csv("id,name\n", "c.csv", &known).unwrap_err()[0]
            .contains("columns must be exactly"));
    }

    #[test]
    fn import_is_atomic_and_updates_by_id() {
        let (_dir, s) = chain();
        let head = "campaign_id,name,channel,start,end,stores,impressions,reach,spend\n";
        assert_eq!(
            import(
                &s,
                &format!("{head}c1,Spring,social,2026-03-30,2026-04-06,A,1000,500,10\n"),
                "a.csv"
            )
            .unwrap(),
            1
        );
        // One bad row: nothing of the file is stored.
        let err = import(&s, &format!("{head}c1,Renamed,social,2026-03-30,2026-04-06,A,1000,500,10\nc2,X,tv,2026-03-30,2026-04-06,Q,1,1,1\n"), "b.csv").unwrap_err();
        assert!(err.to_string().contains("b.csv:3: unknown store"), "{err}");
        assert_eq!(s.campaigns().unwrap()[0].name, "Spring");
        import(
            &s,
            &format!("{head}c1,Renamed,social,2026-03-30,2026-04-06,A,1000,500,10\n"),
            "c.csv",
        )
        .unwrap();
        let list = s.campaigns().unwrap();
        assert_eq!((list.len(), list[0].name.as_str()), (1, "Renamed"));
    }
}
