//! The hot path alone: parse → detect (keyed id) → count, over frames
//! already in memory, with device histories in memory. No file or sled I/O,
//! so `scripts/bench` can count its instructions per frame under callgrind,
//! collecting only inside `run` (loading the frames is not counted).
//!
//!     cargo bench -p footfall-agent --bench hotpath -- FILE [--frames N] [--no-people]
//!
//! `--no-people` counts without SPEC §8's estimate: the difference is what
//! the estimator costs a frame on the counting side (the keyed element
//! fingerprint is taken in `detect` either way).

mod common;

use std::time::Instant;

use footfall_agent::count::MemHistory;

fn main() {
    let mut file = None;
    let mut max = usize::MAX;
    let mut people = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--frames" => {
                max = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--frames N")
            }
            "--no-people" => people = false,
            "--bench" => {} // what `cargo bench` adds
            _ => file = Some(a),
        }
    }
    let Some(file) = file else {
        eprintln!("usage: hotpath FILE [--frames N] [--no-people]");
        std::process::exit(2);
    };
    let frames = common::Frames::load(std::path::Path::new(&file), max);
    let started = Instant::now();
    let (detections, reports) = run(&frames, people);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "frames {} detections {detections} reports {reports} seconds {secs:.3} frames_per_s {:.0}",
        frames.len(),
        frames.len() as f64 / secs
    );
}

#[inline(never)]
fn run(frames: &common::Frames, people: bool) -> (u64, usize) {
    let mut detector = common::detector(frames.link);
    let mut counter = common::counter();
    if !people {
        counter = counter.with_people(None);
    }
    let mut histories = MemHistory::default();
    let mut reports = 0;
    for (t, data) in frames.iter() {
        if let Some(d) = detector.frame(t, data) {
            counter
                .detection(&d, &mut histories)
                .expect("in-memory histories do not fail");
        }
        // As replay does: a report is taken when there is one.
        if counter.pending_reports() > 0 {
            reports += counter.drain_reports().len();
        }
    }
    counter.finish(&mut histories).unwrap();
    reports += counter.drain_reports().len();
    (detector.stats.detections, reports)
}
