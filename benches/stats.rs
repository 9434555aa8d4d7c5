//! What statistics cost per frame on the hot path: the histogram records and counter updates a
//! writer makes for each frame (queue wait, capture to written, capture to durable, counters)
//! and per write (write latency, frames per write), and the receiver's inter-arrival record.
//! Target: well under 1 µs per frame. `cargo bench --bench stats`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use framerec::frame::StreamId;
use framerec::ledger::Ledger;
use framerec::observe::{Histograms, record};

/// Latencies spread over the range a recorder sees (100 µs to 100 ms), in nanoseconds.
fn latencies() -> Vec<u64> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            100_000 + x % 100_000_000
        })
        .collect()
}

fn per_frame(c: &mut Criterion) {
    let values = latencies();
    let ledger = Ledger::default();
    let mut h = Histograms::default();
    let mut i = 0usize;
    c.bench_function(
        "stats per frame (4 histogram records + ledger: queued, taken, written)",
        |b| {
            b.iter(|| {
                let v = values[i % values.len()];
                i += 1;
                record(&mut h.queue_wait_ns, black_box(v / 3));
                record(&mut h.capture_to_written_ns, black_box(v));
                record(&mut h.capture_to_durable_ns, black_box(v * 5));
                record(&mut h.inter_arrival_ns, black_box(33_333_333));
                ledger.queued(StreamId(0), black_box(614_400));
                ledger.taken(StreamId(0), 1);
                ledger.written(StreamId(0), 1, black_box(614_400));
            })
        },
    );
    c.bench_function("stats per write (2 histogram records)", |b| {
        b.iter(|| {
            let v = values[i % values.len()];
            i += 1;
            record(&mut h.write_latency_ns, black_box(v));
            record(&mut h.frames_per_write, black_box(7));
        })
    });
    let mut a = Histograms::default();
    let mut fresh = Histograms::default();
    c.bench_function(
        "publish: drain 7 histograms into another (every 200 ms)",
        |b| {
            b.iter(|| {
                for v in &values[..64] {
                    record(&mut fresh.write_latency_ns, *v);
                    record(&mut fresh.capture_to_written_ns, *v);
                }
                a.drain_from(&mut fresh);
            })
        },
    );
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
