//! The counter on realistic detections: a simulated store day's detections
//! (keyed once, outside the timing) counted from a fresh state, windows
//! and day finalized, histories in memory.

mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use footfall_agent::count::MemHistory;

fn count(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let frames = common::Frames::load(
        &common::simulated_day(dir.path(), 1, 3000, 6000),
        usize::MAX,
    );
    let mut d = common::detector(frames.link);
    let detections: Vec<_> = frames.iter().filter_map(|(t, f)| d.frame(t, f)).collect();
    let mut g = c.benchmark_group("count");
    g.throughput(Throughput::Elements(detections.len() as u64));
    g.sample_size(20);
    g.bench_function("day_of_detections", |b| {
        b.iter_batched(
            common::counter,
            |mut counter| {
                let mut h = MemHistory::default();
                for det in &detections {
                    counter.detection(det, &mut h).expect("in memory");
                }
                counter.finish(&mut h).unwrap();
                counter.drain_reports().len()
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, count);
criterion_main!(benches);
