//! What the agent's benches share: realistic frames from `simulate`, held
//! in memory so that what is timed is the code, not the disk.

#![allow(dead_code)] // each bench uses its own part

use std::path::{Path, PathBuf};

use footfall_agent::config::Counting;
use footfall_agent::count::{Counter, ReportMeta};
use footfall_agent::detect::Detector;
use footfall_agent::privacy::Keys;
use footfall_agent::simulate::{simulate, SimulateArgs};
use footfall_agent::wire::linktype::LinkType;
use footfall_agent::wire::pcapfile::CaptureFile;

/// Frames of a capture, back to back in one buffer.
pub struct Frames {
    pub link: LinkType,
    pub ts_us: Vec<i64>,
    pub ends: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Frames {
    /// Reads up to `max` frames of `path`.
    pub fn load(path: &Path, max: usize) -> Frames {
        let mut cap = CaptureFile::open(path).unwrap_or_else(|e| panic!("{e}"));
        let link = LinkType::from_dlt(cap.dlt()).unwrap_or_else(|e| panic!("{e}"));
        let mut f = Frames {
            link,
            ts_us: Vec::new(),
            ends: Vec::new(),
            bytes: Vec::new(),
        };
        while f.len() < max {
            match cap.next_record() {
                Some(Ok(r)) => {
                    f.bytes.extend_from_slice(r.data);
                    f.ts_us.push(r.ts_us);
                    f.ends.push(f.bytes.len());
                }
                Some(Err(e)) => panic!("{e}"),
                None => break,
            }
        }
        f
    }

    pub fn len(&self) -> usize {
        self.ts_us.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &[u8])> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.ts_us
            .iter()
            .zip(starts.zip(self.ends.iter().copied()))
            .map(|(&t, (s, e))| (t, &self.bytes[s..e]))
    }
}

/// One simulated store day (UTC) with `visitors` customers and
/// `passersby` passers-by, written under `dir`.
pub fn simulated_day(dir: &Path, days: u32, visitors: u32, passersby: u32) -> PathBuf {
    let out = dir.join(format!("sim-{days}-{visitors}-{passersby}.pcap"));
    simulate(&SimulateArgs {
        out: out.clone(),
        days,
        seed: 42,
        start: "2026-03-02".into(),
        timezone: "UTC".into(),
        visitors_per_day: visitors,
        passersby_per_day: passersby,
        staff: 4,
        fixed: 2,
        randomized_share: 0.6,
        returning_share: 0.35,
        uplift: 0.0,
        uplift_from: None,
        uplift_to: None,
        beacon_interval_s: 10.0,
        crowd: 0,
        crowd_hours: 6.0,
        truth: None,
    })
    .expect("simulate writes the capture");
    out
}

/// The detector a store box would run, under a fixed key.
pub fn detector(link: LinkType) -> Detector {
    let c = Counting::default();
    Detector::new(
        link,
        Keys::fixed(&[7; 32]),
        Default::default(),
        c.rssi_floor_dbm as i8,
        c.visit_rssi_dbm as i8,
    )
}

/// A fresh counter with the SPEC's default parameters, in UTC.
pub fn counter() -> Counter {
    Counter::new(
        &Counting::default(),
        jiff::tz::TimeZone::UTC,
        ReportMeta {
            store_id: "s1".into(),
            agent_id: "a1".into(),
            agent_version: "bench".into(),
            params_hash: "bench".into(),
        },
        Default::default(),
    )
}
