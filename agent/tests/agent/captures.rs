//! Real captures from ../shared/data (issue #3): `inspect` agrees with
//! tshark's counts in expected.tsv on every file, and each supported capture
//! replays through the counter with every detection in some window.

use crate::require::shared_data;
use footfall_agent::config::Counting;
use footfall_agent::count::{Counter, MemHistory, ReportMeta, State};
use footfall_agent::detect::Detector;
use footfall_agent::inspect::inspect_file;
use footfall_agent::privacy::Keys;
use footfall_agent::wire::linktype::LinkType;
use footfall_agent::wire::pcapfile::CaptureFile;
use footfall_report::Report;

fn expected_rows(dir: &std::path::Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(
        header[..9],
        [
            "path",
            "link_type",
            "format",
            "frames",
            "probe_requests",
            "detections",
            "distinct_devices",
            "randomized_devices",
            "no_signal_detections"
        ]
    );
    lines
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

#[test]
fn inspect_agrees_with_tshark_on_every_shared_capture() {
    let Some(dir) = shared_data() else { return };
    let rows = expected_rows(&dir);
    assert!(rows.len() >= 30, "expected.tsv lists {} files", rows.len());
    let mut disagreements = Vec::new();
    for row in &rows {
        let path = dir.join(&row[0]);
        let i = inspect_file(&path, -90, -70);
        let j = i.to_json();
        let got = [
            j["link_type"].to_string(),
            j["format"].as_str().unwrap_or("?").to_string(),
            j["frames"].to_string(),
            j["probe_requests"].to_string(),
            j["detections"].to_string(),
            j["devices"].to_string(),
            j["randomized_devices"].to_string(),
            j["detections_no_signal"].to_string(),
        ];
        if got[..] != row[1..9] {
            disagreements.push(format!(
                "{}: footfall {:?}, tshark {:?}",
                row[0],
                got,
                &row[1..9]
            ));
        }
        // The cut-short files are read up to the cut, with the error said.
        if row[9].contains("cut short") {
            assert!(
                i.error.as_deref().is_some_and(|e| e.contains("truncated")),
                "{}: {:?}",
                row[0],
                i.error
            );
        }
        if row[9].contains("is not 802.11") {
            assert!(
                i.error.as_deref().is_some_and(
                    |e| e.contains("is not 802.11") && e.contains("capture in monitor mode")
                ),
                "{}",
                row[0]
            );
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn every_supported_capture_replays_with_all_detections_counted() {
    let Some(dir) = shared_data() else { return };
    let mut replayed = 0;
    let rows = expected_rows(&dir);
    for row in &rows {
        let path = dir.join(&row[0]);
        let Ok(mut cap) = CaptureFile::open(&path) else {
            continue;
        };
        let Ok(link) = LinkType::from_dlt(cap.dlt()) else {
            continue;
        };
        replayed += 1;
        let mut det = Detector::new(link, Keys::fixed(&[9; 32]), Default::default(), -90, -70);
        let meta = ReportMeta {
            store_id: "s".into(),
            agent_id: "a".into(),
            agent_version: "t".into(),
            params_hash: "p".into(),
        };
        let mut counter = Counter::new(
            &Counting::default(),
            jiff::tz::TimeZone::UTC,
            meta,
            State::default(),
        );
        let mut store = MemHistory::default();
        while let Some(Ok(rec)) = cap.next_record() {
            if let Some(d) = det.frame(rec.ts_us, rec.data) {
                counter.detection(&d, &mut store).unwrap();
            }
        }
        counter.finish(&mut store).unwrap();
        let reports = counter.drain_reports();
        let (mut frames, mut no_signal) = (0, 0);
        for r in &reports {
            if let Report::Window(w) = r {
                frames += w.frames;
                no_signal += w.frames_no_signal;
                let n = |x: Option<u64>| x.expect("loyalty counts every figure");
                assert_eq!(
                    n(w.visitors_new) + n(w.visitors_returning) + n(w.visitors_randomized),
                    n(w.visitors)
                );
            }
        }
        // Timestamp regressions in these captures are milliseconds, far
        // inside the settle time, so nothing is late.
        assert_eq!(counter.state.late_frames, 0, "{}", row[0]);
        assert_eq!(
            frames.to_string(),
            row[5],
            "{}: window frames vs tshark detections",
            row[0]
        );
        assert_eq!(no_signal.to_string(), row[8], "{}", row[0]);
    }
    // Every file of an 802.11 link type is read and checked.
    let supported = rows
        .iter()
        .filter(|r| ["105", "119", "127", "163", "192"].contains(&r[1].as_str()))
        .count();
    assert!(
        supported >= 28,
        "expected.tsv lists {supported} 802.11 files"
    );
    assert_eq!(replayed, supported, "802.11 captures replayed");
}

/// radiotap-library's own parser check files: bare headers with extended
/// bitmaps, repeated and vendor namespaces, and a malformed vendor namespace.
/// Upstream's parse (`*.out`) gives the Flags value where there is one.
#[test]
fn radiotap_library_check_files() {
    use footfall_agent::wire::radiotap::Header;
    let Some(dir) = shared_data() else { return };
    let dir = dir.join("captures/radiotap-library");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let out = std::fs::read_to_string(path.with_extension("out")).unwrap();
        let parsed = Header::new_checked(&bytes);
        if out.contains("malformed radiotap data") {
            assert!(
                parsed.is_err(),
                "{}: upstream finds it malformed",
                path.display()
            );
        } else {
            let h = parsed.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let flags = out
                .lines()
                .find_map(|l| l.trim().strip_prefix("flags: "))
                .map(|f| u8::from_str_radix(f, 16).unwrap());
            assert_eq!(h.flags(), flags, "{}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} files");
}
