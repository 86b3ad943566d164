//! `footfall-agent inspect`: what is in a capture, without counting visits.
//! Devices are counted under a throw-away key; no MAC is ever printed.

use std::collections::HashSet;
use std::path::Path;

use serde_json::json;

use crate::detect::{Detector, DropReason, FrameStats};
use crate::privacy::{DeviceId, Keys};
use crate::wire::linktype::LinkType;
use crate::wire::pcapfile::{CaptureFile, FileKind};

/// What `inspect` found in one file.
pub struct Inspection {
    pub file: String,
    pub kind: Option<FileKind>,
    pub link_type: Option<i32>,
    pub stats: FrameStats,
    pub devices: usize,
    pub randomized_devices: usize,
    /// Why reading stopped early, if it did (counts cover what was read).
    pub error: Option<String>,
}

pub fn inspect_file(path: &Path, rssi_floor_dbm: i8, visit_rssi_dbm: i8) -> Inspection {
    let mut out = Inspection {
        file: path.display().to_string(),
        kind: None,
        link_type: None,
        stats: FrameStats::default(),
        devices: 0,
        randomized_devices: 0,
        error: None,
    };
    let mut cap = match CaptureFile::open(path) {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.kind = Some(cap.kind());
    out.link_type = Some(cap.dlt());
    let link = match LinkType::from_dlt(cap.dlt()) {
        Ok(l) => Some(l),
        Err(e) => {
            out.error = Some(format!("{}: {e}", path.display()));
            None
        }
    };
    let mut detector = Detector::new(
        link.unwrap_or(LinkType::Radiotap),
        Keys::throwaway(),
        Default::default(),
        rssi_floor_dbm,
        visit_rssi_dbm,
    );
    let (mut devices, mut randomized) = (HashSet::<DeviceId>::new(), HashSet::<DeviceId>::new());
    while let Some(rec) = cap.next_record() {
        match rec {
            Ok(rec) => {
                if link.is_none() {
                    detector.stats.frames += 1;
                    continue;
                }
                if let Some(d) = detector.frame(rec.ts_us, rec.data) {
                    devices.insert(d.device);
                    if d.randomized {
                        randomized.insert(d.device);
                    }
                }
            }
            Err(e) => {
                out.error = Some(e.to_string());
                break;
            }
        }
    }
    out.stats = detector.stats;
    out.devices = devices.len();
    out.randomized_devices = randomized.len();
    out
}

impl Inspection {
    pub fn to_json(&self) -> serde_json::Value {
        let s = &self.stats;
        let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .filter(|r| **r != DropReason::OptedOut)
            .map(|r| (r.as_str().to_string(), json!(s.dropped(*r))))
            .collect();
        json!({
            "file": self.file,
            "format": self.kind.map(|k| k.format_name()),
            "byte_order": self.kind.map(|k| match k.byte_order {
                crate::wire::pcapfile::ByteOrder::Little => "little",
                crate::wire::pcapfile::ByteOrder::Big => "big",
            }),
            "resolution": self.kind.map(|k| match k.resolution {
                crate::wire::pcapfile::Resolution::Micro => "us",
                crate::wire::pcapfile::Resolution::Nano => "ns",
                crate::wire::pcapfile::Resolution::PerInterface => "per-interface",
            }),
            "link_type": self.link_type,
            "frames": s.frames,
            "probe_requests": s.probe_requests,
            "detections": s.detections,
            "devices": self.devices,
            "randomized_devices": self.randomized_devices,
            "detections_no_signal": s.detections_no_signal,
            "dropped": dropped,
            "error": self.error,
        })
    }

    pub fn to_text(&self) -> String {
        let s = &self.stats;
        let mut t = format!("{}:", self.file);
        if let Some(k) = self.kind {
            t += &format!(" {k}");
        }
        if let Some(lt) = self.link_type {
            t += &format!("; link type {lt}");
        }
        t += &format!(
            "\n  frames {}, probe requests {}, detections {} ({} without a signal field)\n  devices {} ({} randomized)\n",
            s.frames, s.probe_requests, s.detections, s.detections_no_signal, self.devices, self.randomized_devices
        );
        let dropped: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| s.dropped(**r) > 0)
            .map(|r| format!("{} {}", r.as_str(), s.dropped(*r)))
            .collect();
        if !dropped.is_empty() {
            t += &format!("  dropped: {}\n", dropped.join(", "));
        }
        if let Some(e) = &self.error {
            t += &format!("  error: {e}\n");
        }
        t
    }
}
