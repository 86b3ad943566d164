//! End-to-end tests across the agent and the report contract the gateway
//! reads. Broker and gateway cases join with issue #4.

use std::process::Command;

use footfall_report::Report;
use footfall_tests::bin;

/// Every line the agent emits is a report the gateway's types accept, with
/// a seq that only grows and new + returning + randomized = visitors.
#[test]
fn agent_reports_parse_as_the_gateway_contract() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let agent = bin("footfall-agent");
    let ok = Command::new(&agent)
        .args(["simulate", "--out", "s.pcap", "--days", "2", "--seed", "9"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        d.join("a.toml"),
        "[store]\nstore_id = \"s1\"\nagent_id = \"a1\"\n[storage]\npath = \"state\"\n",
    )
    .unwrap();
    let out = Command::new(&agent)
        .args(["replay", "--config", "a.toml", "--emit", "-", "s.pcap"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let reports: Vec<Report> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        reports
            .iter()
            .filter(|r| matches!(r, Report::Day(_)))
            .count(),
        2
    );
    // Every window from the first detection's to the last's, none missing.
    let starts: Vec<i64> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Window(w) => Some(w.window_start),
            _ => None,
        })
        .collect();
    assert!(starts.len() > 100, "{} windows", starts.len());
    assert!(starts.windows(2).all(|p| p[1] == p[0] + 900));
    for pair in reports.windows(2) {
        assert!(pair[1].seq() > pair[0].seq());
    }
    for r in &reports {
        if let Report::Window(w) = r {
            assert_eq!(
                w.visitors_new + w.visitors_returning + w.visitors_randomized,
                w.visitors
            );
            assert_eq!(w.window_end - w.window_start, 900);
            assert!(w.visitor_sketch.estimate() >= 0.0);
        }
    }
}
