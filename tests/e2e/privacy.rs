//! Issue 18 across agent and gateway, through the commands: what each
//! privacy mode counts arrives as numbers, what it cannot count as `null`
//! (never 0); small counts are withheld where `[privacy] min_count` says;
//! `purge` deletes a closed store and what is older than a date, and says
//! what it deleted.

use super::*;

fn replay(d: &Path, store: &str, mode: &str) -> String {
    std::fs::write(
        d.join(format!("{store}.toml")),
        format!(
            "[store]\nstore_id = \"{store}\"\nagent_id = \"a1\"\ntimezone = \"Europe/Prague\"\n\
             [storage]\npath = \"{store}-state\"\n[privacy]\nmode = \"{mode}\"\nkey_file = \"{store}.key\"\n"
        ),
    )
    .unwrap();
    let emit = format!("{store}.jsonl");
    let cfg = format!("{store}.toml");
    run(
        d,
        &bin("footfall-agent"),
        &["replay", "--config", &cfg, "--emit", &emit, "s.pcap"],
    );
    emit
}

fn rows(d: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["report", "--config", "gateway.toml", "--format", "json"];
    all.extend_from_slice(args);
    run(d, &bin("footfall-gateway"), &all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn each_mode_reaches_hq_with_its_nulls_and_purge_says_what_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agent = bin("footfall-agent");
    run(
        d,
        &agent,
        &[
            "simulate",
            "--out",
            "s.pcap",
            "--days",
            "3",
            "--seed",
            "4",
            "--start",
            "2026-03-02",
            "--timezone",
            "Europe/Prague",
            "--visitors-per-day",
            "150",
        ],
    );
    let files: Vec<String> = [("eph", "ephemeral"), ("day", "daily"), ("loy", "loyalty")]
        .iter()
        .map(|(s, m)| replay(d, s, m))
        .collect();
    let (storage, _pg) = footfall_tests::gateway_storage();
    std::fs::write(
        d.join("gateway.toml"),
        format!("{storage}[privacy]\nmin_count = 3\n"),
    )
    .unwrap();
    let g = bin("footfall-gateway");
    let mut args = vec!["ingest", "--config", "gateway.toml"];
    args.extend(files.iter().map(String::as_str));
    let out = run(d, &g, &args);
    assert!(out.contains("0 conflicts, 0 rejected"), "{out}");

    let days = rows(d, &["--by", "day"]);
    let get = |store: &str| -> Vec<&serde_json::Value> {
        days.iter().filter(|r| r["store_id"] == store).collect()
    };
    assert_eq!(get("eph").len(), 3);
    for r in get("eph") {
        assert!(
            r["visits"].is_null() && r["unique_visitors_est"].is_null(),
            "{r}"
        );
        assert!(
            r["person_hours_est"].as_f64().unwrap() > 1.0,
            "people still counted: {r}"
        );
    }
    for r in get("day") {
        assert!(r["visits"].as_u64().unwrap() > 50, "{r}");
        assert!(
            r["visitors_returning"].is_null() && r["residents"].is_null(),
            "{r}"
        );
    }
    // Loyalty counts returning visitors: a number from the second day on
    // (the first day's 0 is below min_count, withheld with a note).
    let loy = get("loy");
    assert!(loy[0]["suppressed"]
        .as_str()
        .unwrap()
        .contains("visitors_returning"));
    assert!(
        loy[1..]
            .iter()
            .all(|r| r["visitors_returning"].as_u64().unwrap() >= 3),
        "{loy:?}"
    );
    // A week of daily keys has no distinct visitors; the loyalty one has.
    let weeks = rows(d, &["--by", "week"]);
    let week = |store: &str| {
        weeks
            .iter()
            .find(|r| r["store_id"] == store)
            .unwrap()
            .clone()
    };
    assert!(week("day")["unique_visitors_est"].is_null());
    assert!(week("day")["unique_visitors_note"]
        .as_str()
        .unwrap()
        .contains("daily keys"));
    assert!(week("loy")["unique_visitors_est"].as_u64().unwrap() > 100);

    // min_count = 3: a window of 1 or 2 visits is withheld, with why.
    let windows = rows(d, &["--by", "window", "--store", "loy"]);
    let small = windows
        .iter()
        .find(|r| r["frames"].as_u64().unwrap() > 0 && r["suppressed"].is_string())
        .expect("some window has small counts");
    assert!(
        small["suppressed"].as_str().unwrap().contains("min_count"),
        "{small}"
    );
    assert!(windows
        .iter()
        .all(|r| r["visits"].as_u64().is_none_or(|v| v >= 3)));

    // Purge: the closed store, then everything before the last day.
    let out = run(
        d,
        &g,
        &["purge", "--config", "gateway.toml", "--store", "eph"],
    );
    assert!(out.starts_with("purge: deleted "), "{out}");
    assert!(out.contains(" 3 day reports"), "{out}");
    assert!(rows(d, &["--by", "day"])
        .iter()
        .all(|r| r["store_id"] != "eph"));
    let out = run(
        d,
        &g,
        &[
            "purge",
            "--config",
            "gateway.toml",
            "--before",
            "2026-03-04",
        ],
    );
    assert!(
        out.contains(" 4 day reports"),
        "two days of two stores: {out}"
    );
    let dates: Vec<String> = rows(d, &["--by", "day"])
        .iter()
        .filter(|r| r["store_id"] != "*")
        .map(|r| r["date"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(dates, ["2026-03-04", "2026-03-04"]);
}
