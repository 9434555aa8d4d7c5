//! Micro-benchmarks of the hot path, per frame or per byte: the queue under contention, the
//! coalescing decision, MCAP chunk encoding, the chunk CRC (two crates side by side), the
//! synthetic source making a frame, and compressing the synthetic scene (zstd, lz4, RVL then
//! zstd; the ratios are printed before each group). Histogram recording is
//! `benches/stats.rs`. `cargo bench --bench micro`.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use framerec::frame::{BufferPool, Frame, FrameBuf, FrameFormat, FrameMeta, FrameSeq, StreamInfo};
use framerec::pipeline::queue::FrameQueue;
use framerec::segment::encode_frame_batch;
use framerec::sink::BatchLimits;
use framerec::source::{Source, SyntheticConfig, SyntheticSource};

const KINECT: usize = 614_400;

fn stream(width: u32, height: u32) -> StreamInfo {
    StreamInfo {
        name: "depth".into(),
        topic: "/camera/depth".into(),
        frame_id: "camera_depth".into(),
        width,
        height,
        format: FrameFormat::Depth16,
    }
}

fn frame(seq: u64, mut buf: FrameBuf, len: usize) -> Frame {
    for (i, b) in buf.fill(len).unwrap().iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    Frame {
        meta: FrameMeta {
            seq: FrameSeq(seq),
            device_ns: seq * 33_333_333,
            publish_ns: seq * 33_333_333,
            host_mono_ns: seq,
            host_real_ns: 1_700_000_000_000_000_000 + seq * 33_333_333,
            ..FrameMeta::default()
        },
        buf,
        span: (0, 0),
    }
}

fn frames(n: usize, len: usize) -> Vec<Frame> {
    (0..n as u64)
        .map(|s| frame(s, FrameBuf::new(len), len))
        .collect()
}

/// One producer (the receiver's part: a pool buffer, a push) against `consumers` threads (the
/// writers' part: a pop, the buffer back to the pool), through a 256-frame queue.
fn queue(c: &mut Criterion) {
    let mut g =
        c.benchmark_group("queue: pool get + push + pop + drop (back to the pool), per frame");
    g.throughput(Throughput::Elements(1));
    for consumers in [1usize, 2, 4] {
        g.bench_function(
            BenchmarkId::from_parameter(format!("{consumers} consumers")),
            |b| {
                b.iter_custom(|iters| {
                    let pool = BufferPool::new(512, 64);
                    let q = Arc::new(FrameQueue::new(256));
                    let done = Arc::new(AtomicU64::new(0));
                    let stop = Arc::new(AtomicBool::new(false));
                    let threads: Vec<_> = (0..consumers)
                        .map(|_| {
                            let (q, done, stop) = (q.clone(), done.clone(), stop.clone());
                            std::thread::spawn(move || {
                                while !stop.load(Ordering::Relaxed) {
                                    match q.pop() {
                                        Some(f) => {
                                            // The buffer returns to the pool on drop.
                                            drop(black_box(f));
                                            done.fetch_add(1, Ordering::Relaxed);
                                        }
                                        None => std::hint::spin_loop(),
                                    }
                                }
                            })
                        })
                        .collect();
                    let start = Instant::now();
                    for seq in 0..iters {
                        let buf = loop {
                            match pool.get() {
                                Some(buf) => break buf,
                                None => std::hint::spin_loop(),
                            }
                        };
                        let mut f = frame(seq, buf, 16);
                        while let Err(back) = q.push(f) {
                            f = back;
                            std::hint::spin_loop();
                        }
                    }
                    while done.load(Ordering::Relaxed) < iters {
                        std::hint::spin_loop();
                    }
                    let took = start.elapsed();
                    stop.store(true, Ordering::Relaxed);
                    for t in threads {
                        t.join().unwrap();
                    }
                    took
                })
            },
        );
    }
    g.finish();
}

/// A writer forming one write from a full queue: `fill` up to the limits, per frame taken.
fn coalescing(c: &mut Criterion) {
    let mut g = c.benchmark_group("coalescing: one batch from a full queue, per frame");
    for (name, len, limits) in [
        (
            "16 KiB frames, buffered (240 frames / 4 MiB)",
            16_384,
            BatchLimits {
                max_frames: 240,
                max_bytes: 4 << 20,
            },
        ),
        (
            "614,400-byte frames, buffered (4 MiB)",
            KINECT,
            BatchLimits {
                max_frames: 240,
                max_bytes: 4 << 20,
            },
        ),
    ] {
        let q = FrameQueue::new(512);
        let mut spare = frames(256, len);
        let mut batch = Vec::with_capacity(256);
        let per_batch = {
            for f in spare.drain(..) {
                assert!(q.push(f).is_ok());
            }
            let mut bytes = 0;
            limits.fill(&q, &mut batch, &mut bytes);
            batch.len()
        };
        g.throughput(Throughput::Elements(per_batch as u64));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut took = Duration::ZERO;
                for _ in 0..iters {
                    // Refill the queue from the last batch (not timed), then time one batch.
                    for f in batch.drain(..) {
                        assert!(q.push(f).is_ok());
                    }
                    let start = Instant::now();
                    let mut bytes = 0;
                    limits.fill(&q, &mut batch, &mut bytes);
                    black_box(limits.full(batch.len(), bytes));
                    took += start.elapsed();
                }
                took
            })
        });
    }
    g.finish();
}

/// MCAP chunk encoding (message and chunk headers into the buffers' headroom, the message
/// index into the tailroom, the CRC of every byte), per frame.
fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("MCAP chunk encoding, per frame");
    for (name, w, h, n, direct) in [
        (
            "614,400-byte frame, buffered, 1 per chunk",
            640,
            480,
            1,
            false,
        ),
        (
            "614,400-byte frames, buffered, 6 per chunk",
            640,
            480,
            6,
            false,
        ),
        (
            "614,400-byte frame, direct (aligned chunk)",
            640,
            480,
            1,
            true,
        ),
        (
            "16 KiB frames, buffered, 240 per chunk",
            128,
            64,
            240,
            false,
        ),
    ] {
        let s = stream(w, h);
        let mut batch = frames(n, s.frame_bytes());
        g.throughput(Throughput::Bytes((n * s.frame_bytes()) as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    encode_frame_batch(&mut batch, 4096, std::slice::from_ref(&s), direct).len,
                )
            })
        });
    }
    g.finish();
}

/// The chunk CRC (CRC-32/ISO-HDLC) per MiB: crc32fast, which the encoder uses, and crc-fast.
fn crc(c: &mut Criterion) {
    let data: Vec<u8> = (0..1usize << 20).map(|i| (i * 131 % 251) as u8).collect();
    assert_eq!(
        crc32fast::hash(&data) as u64,
        crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, &data),
        "the two crates compute the same CRC"
    );
    let mut g = c.benchmark_group("CRC-32 of 1 MiB");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("crc32fast", |b| {
        b.iter(|| black_box(crc32fast::hash(black_box(&data))))
    });
    g.bench_function("crc-fast", |b| {
        b.iter(|| {
            black_box(crc_fast::checksum(
                crc_fast::CrcAlgorithm::Crc32IsoHdlc,
                black_box(&data),
            ))
        })
    });
    g.finish();
}

/// What the synthetic source spends making one 614,400-byte frame (the room's rows, the moving
/// objects and their shadows, per-pixel noise): CPU a real device's driver spends too, and fio
/// does not.
fn source(c: &mut Criterion) {
    let mut src = SyntheticSource::new(SyntheticConfig {
        fps: 0,
        ..SyntheticConfig::default()
    });
    let len = src.streams()[0].frame_bytes();
    let mut buf = FrameBuf::new(len);
    let stop = AtomicBool::new(false);
    let mut g = c.benchmark_group("synthetic source");
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("fill one frame", |b| {
        b.iter(|| black_box(src.next_frame(&mut buf, &stop).unwrap()))
    });
    g.bench_function("fill one frame, thread CPU time", |b| {
        b.iter_custom(|n| {
            let t = thread_cpu();
            for _ in 0..n {
                black_box(src.next_frame(&mut buf, &stop).unwrap());
            }
            thread_cpu() - t
        })
    });
    g.finish();
}

/// CPU time this thread has used: what a frame costs the receiver thread, apart from time
/// the (shared, 2-core) machine gave other processes.
fn thread_cpu() -> Duration {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap();
    Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
}

/// The synthetic scene's depth frames `first..first + n`, concatenated.
fn scene_frames(first: u64, n: u64) -> Vec<u8> {
    (first..first + n)
        .flat_map(|q| framerec::source::synthetic::expected_frame(1, q, 640, 480))
        .collect()
}

/// RVL (Wilson 2017, "Fast Lossless Depth Image Compression"): runs of pixels without a
/// reading and of pixels with one, each value as the zigzag of its difference from the last
/// valid one, in 3-bit groups with a continuation bit (nibbles). 2047 is "no reading" in the
/// raw 11-bit layout (RVL's 0).
fn rvl(samples_le: &[u8]) -> Vec<u8> {
    struct Nibbles(Vec<u8>, bool);
    impl Nibbles {
        fn put(&mut self, n: u8) {
            if self.1 {
                *self.0.last_mut().unwrap() |= n << 4;
            } else {
                self.0.push(n);
            }
            self.1 = !self.1;
        }
        fn vle(&mut self, mut v: u32) {
            loop {
                let more = v >> 3 != 0;
                self.put((v & 7) as u8 | if more { 8 } else { 0 });
                v >>= 3;
                if !more {
                    break;
                }
            }
        }
    }
    let s: Vec<u16> = samples_le
        .chunks_exact(2)
        .map(|b| match u16::from_le_bytes([b[0], b[1]]) {
            2047 => 0,
            v => v,
        })
        .collect();
    let mut out = Nibbles(Vec::with_capacity(s.len()), false);
    let (mut i, mut prev) = (0, 0i32);
    while i < s.len() {
        let zeros = s[i..].iter().take_while(|&&v| v == 0).count();
        out.vle(zeros as u32);
        i += zeros;
        let valid = s[i..].iter().take_while(|&&v| v != 0).count();
        out.vle(valid as u32);
        for &v in &s[i..i + valid] {
            let d = v as i32 - prev;
            out.vle(((d << 1) ^ (d >> 31)) as u32);
            prev = v as i32;
        }
        i += valid;
    }
    out.0
}

/// Compressing the synthetic scene's 614,400-byte depth frames, one frame and a 4 MiB chunk
/// of consecutive frames, with the codecs issue 19 weighs, in thread CPU time. Ratios print
/// before the timings.
fn compression(c: &mut Criterion) {
    let frame = scene_frames(30, 1);
    let mut chunk = scene_frames(30, 7);
    chunk.truncate(4 << 20);
    type Codec = fn(&[u8]) -> Vec<u8>;
    let codecs: [(&str, Codec); 4] = [
        ("zstd-1", |b| zstd::bulk::compress(b, 1).unwrap()),
        ("zstd-3", |b| zstd::bulk::compress(b, 3).unwrap()),
        ("lz4", lz4_flex::block::compress),
        ("rvl+zstd-1", |b| zstd::bulk::compress(&rvl(b), 1).unwrap()),
    ];
    let mut g = c.benchmark_group("compress synthetic scene");
    for (what, input) in [("frame", &frame), ("4MiB chunk", &chunk)] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        for (name, codec) in codecs {
            let ratio = input.len() as f64 / codec(input).len() as f64;
            println!("ratio {name} {what}: {ratio:.2}x");
            g.bench_function(BenchmarkId::new(name, what), |b| {
                b.iter_custom(|n| {
                    let t = thread_cpu();
                    for _ in 0..n {
                        black_box(codec(black_box(input)));
                    }
                    thread_cpu() - t
                })
            });
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    queue,
    coalescing,
    encoding,
    crc,
    source,
    compression
);
criterion_main!(benches);
