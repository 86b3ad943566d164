//! The frame parser and the detector on realistic frames: one simulated
//! store day (radiotap layouts of several phones, beacons, bad FCS, frames
//! cut short, weak signals), parsed from memory.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use footfall_agent::detect::classify;
use std::hint::black_box;

fn parse(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let frames = common::Frames::load(&common::simulated_day(dir.path(), 1, 300, 600), 200_000);
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(frames.len() as u64));
    g.bench_function("classify", |b| {
        b.iter(|| {
            frames
                .iter()
                .filter(|(_, f)| classify(frames.link, black_box(f), -90).is_ok())
                .count()
        })
    });
    g.bench_function("detector", |b| {
        let mut d = common::detector(frames.link);
        b.iter(|| {
            frames
                .iter()
                .filter_map(|(t, f)| d.frame(t, black_box(f)))
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
