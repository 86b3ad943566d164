//! Prometheus metrics of a running agent, on a loopback port when
//! `[metrics] listen` is set. The run loop publishes a snapshot; the HTTP
//! handler renders it. No lock is held across an `.await`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::detect::{DropReason, FrameStats};

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub frames: FrameStats,
    pub late_frames: u64,
    pub outbox_pending: u64,
    pub outbox_bytes: u64,
    pub outbox_full: bool,
    pub reports_acked: u64,
    pub publish_refused: u64,
    pub memory: footfall_report::Memory,
    pub connected: bool,
    /// `heap_bytes` as of the scrape; `None` where the allocator cannot say.
    pub heap_bytes: Option<u64>,
}

/// Bytes the allocator has handed out and not had back (glibc's
/// `mallinfo2`: in use in its arenas, plus blocks it mapped on their own):
/// the agent's heap. Measurable where RSS is not: under qemu-user, a
/// process's RSS is the emulator's, translated code included.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn heap_bytes() -> Option<u64> {
    // SAFETY: mallinfo2 takes no pointer and reads the allocator's
    // statistics under the allocator's own locks.
    let m = unsafe { libc::mallinfo2() };
    u64::try_from(m.uordblks.saturating_add(m.hblkhd)).ok()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_bytes() -> Option<u64> {
    None
}

pub type Shared = Arc<Mutex<Snapshot>>;

pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in lines {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let f = &s.frames;
    let mut results = vec![("{result=\"detection\"}".to_string(), f.detections)];
    for r in DropReason::ALL {
        results.push((format!("{{result=\"{}\"}}", r.as_str()), f.dropped(r)));
    }
    metric(
        "footfall_frames_total",
        "counter",
        "Captured frames by what became of them (SPEC §1).",
        &results,
    );
    metric(
        "footfall_detections_no_signal_total",
        "counter",
        "Detections without a signal field.",
        &[(String::new(), f.detections_no_signal)],
    );
    metric(
        "footfall_late_frames_total",
        "counter",
        "Detections older than the last final window (SPEC §4).",
        &[(String::new(), s.late_frames)],
    );
    metric(
        "footfall_outbox_pending",
        "gauge",
        "Reports waiting for the gateway's ack.",
        &[(String::new(), s.outbox_pending)],
    );
    metric(
        "footfall_outbox_bytes",
        "gauge",
        "Bytes the outbox takes.",
        &[(String::new(), s.outbox_bytes)],
    );
    metric(
        "footfall_outbox_full",
        "gauge",
        "1 when the outbox is over max_outbox_bytes (reports are kept).",
        &[(String::new(), u64::from(s.outbox_full))],
    );
    metric(
        "footfall_reports_acked_total",
        "counter",
        "Reports the gateway acked.",
        &[(String::new(), s.reports_acked)],
    );
    metric(
        "footfall_publish_refused_total",
        "counter",
        "Publishes the broker refused.",
        &[(String::new(), s.publish_refused)],
    );
    let m = &s.memory;
    for (name, help, v) in [
        ("footfall_devices_in_memory", "Devices the counter holds in memory.", m.devices_in_memory),
        ("footfall_device_budget", "Devices the counter holds in memory at most ([memory] devices); beyond, the coldest are spilled.", m.device_budget),
        ("footfall_devices_spilled", "Devices over the budget, spilled to a scratch file beside the state.", m.devices_spilled),
        ("footfall_spill_bytes", "Bytes of the spilled devices' scratch file.", m.spill_bytes),
        ("footfall_window_entries", "Device entries the pending windows hold (one per device and window).", m.window_entries),
        ("footfall_people_observations", "Devices observed for the people estimate, over the pending windows.", m.people_observations),
        ("footfall_people_budget", "Devices a window observes for the people estimate at most ([memory] people_observations); beyond, the MACs starting in a share of the sequence numbers.", m.people_budget),
        ("footfall_checkpoint_bulk_bytes", "Bytes of the last checkpoint's parts (devices, entries, observations, randomized visitors).", m.checkpoint_bulk_bytes),
        ("footfall_randomized_visitors", "Randomized devices gone from memory that an unreported day counted, kept so that they are not counted twice.", m.randomized_visitors),
        ("footfall_randomized_in_memory", "Of those, the ones held in memory until the next checkpoint writes them to its parts.", m.randomized_in_memory),
        ("footfall_randomized_filter_bytes", "Bytes of the filters and places that find the rest in the checkpoint's parts (about 1.3 per id).", m.randomized_filter_bytes),
    ] {
        metric(name, "gauge", help, &[(String::new(), v)]);
    }
    metric(
        "footfall_broker_connected",
        "gauge",
        "1 while connected to the broker.",
        &[(String::new(), u64::from(s.connected))],
    );
    if let Some(bytes) = s.heap_bytes {
        metric(
            "footfall_heap_bytes",
            "gauge",
            "Bytes of heap in use (glibc's mallinfo2).",
            &[(String::new(), bytes)],
        );
    }
    out
}

/// Serves `/metrics` until the runtime stops.
pub async fn serve(addr: SocketAddr, shared: Shared) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("[metrics] listen = {addr}: {e}"))?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let shared = shared.clone();
            async move {
                let mut snap = shared.lock().map(|s| s.clone()).unwrap_or_default();
                snap.heap_bytes = heap_bytes();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    render(&snap),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut s = Snapshot {
            outbox_pending: 7,
            outbox_full: true,
            memory: footfall_report::Memory {
                window_entries: 290_000,
                devices_spilled: 12,
                randomized_in_memory: 40,
                ..Default::default()
            },
            ..Snapshot::default()
        };
        s.frames.detections = 3;
        let text = render(&s);
        assert!(text.contains("# TYPE footfall_frames_total counter\n"));
        assert!(text.contains("footfall_frames_total{result=\"detection\"} 3\n"));
        assert!(text.contains("footfall_frames_total{result=\"bad_fcs\"} 0\n"));
        assert!(text.contains("footfall_outbox_pending 7\n"));
        assert!(text.contains("footfall_outbox_full 1\n"));
        assert!(
            text.contains("# TYPE footfall_window_entries gauge\nfootfall_window_entries 290000\n")
        );
        assert!(text.contains("footfall_devices_spilled 12\n"));
        assert!(text.contains("footfall_randomized_in_memory 40\n"));
        assert!(!text.contains("footfall_heap_bytes"), "none asked for");
        s.heap_bytes = Some(5 << 20);
        assert!(render(&s).contains("footfall_heap_bytes 5242880\n"));
    }

    /// The heap grows by what is allocated and kept, and the gauge sees it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_heap_gauge_follows_allocations() {
        let before = heap_bytes().unwrap();
        // 32 MiB kept: far more than other tests running meanwhile free.
        let kept: Vec<Vec<u8>> = (0..32).map(|i| vec![i as u8; 1 << 20]).collect();
        let during = heap_bytes().unwrap();
        assert!(during >= before + (24 << 20), "{before} -> {during}");
        drop(kept);
    }
}
