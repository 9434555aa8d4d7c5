//! End-to-end tests of the recording pipeline through the library's `record`.

mod common;

use std::time::Duration;

use common::*;
use framerec::frame::DropReason;
use framerec::pipeline::queue::OverflowPolicy;
use framerec::sink::{Backend, BackendChoice};
use framerec::source::synthetic::expected_frame;

/// Records `frames` frames and checks, with the `mcap` crate and an independent protobuf
/// decoder, that every frame is present once, in order, byte-identical to its definition.
fn assert_all_frames_exact(dir: &std::path::Path, cfg: &framerec::config::Config, frames: u64) {
    let s = synthetic(cfg);
    let msgs = read_with_mcap_crate(dir);
    assert_eq!(msgs.len() as u64, frames);
    let mut last_time = 0;
    for (i, (seq, log_time, publish, _device, img)) in msgs.iter().enumerate() {
        assert_eq!(*seq as usize, i, "frames in sequence order, none missing");
        assert!(*log_time >= last_time, "log_time is monotonic");
        last_time = *log_time;
        assert_eq!(
            (img.width, img.height, img.step),
            (s.width, s.height, s.width * 2)
        );
        assert_eq!(img.encoding, "16UC1");
        assert_eq!(img.frame_id, s.frame_id);
        // The image's timestamp is its publish time: the device clock anchored to host
        // realtime at the first frame (so frame 0's is its log time).
        let ts = img.timestamp.unwrap();
        assert_eq!(
            ts.seconds as u64 * 1_000_000_000 + ts.nanos as u64,
            *publish
        );
        if i == 0 {
            assert_eq!(
                *publish, *log_time,
                "the first frame anchors the device clock"
            );
        }
        assert!(
            img.data == expected_frame(s.seed, *seq as u64, s.width, s.height),
            "frame {seq} differs"
        );
    }
}

#[test]
fn records_300_frames_that_the_mcap_crate_reads_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let cfg = config(&dir, 640, 480);
    let report = run(&cfg, 300);
    assert_eq!(report.totals.received_frames, 300);
    assert_eq!(report.totals.written_frames, 300);
    assert_eq!(report.totals.dropped_total(), 0);
    assert_eq!(
        report.totals.durable_seq,
        Some(299),
        "everything is durable after a clean stop"
    );
    assert_eq!(
        report.overflow,
        OverflowPolicy::Block,
        "auto: an unpaced source can wait"
    );
    let v = verify_dir(&dir);
    assert!(v.ok, "{:#?}", v.problems);
    assert_eq!(v.frames, 300);
    assert_all_frames_exact(&dir, &cfg, 300);
}

#[test]
fn direct_io_recording_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut cfg = config(&dir, 640, 480);
    cfg.writer.io_mode = framerec::sink::IoMode::Direct;
    let report = run(&cfg, 120);
    eprintln!("direct I/O in effect: {}", report.direct_io);
    assert!(verify_dir(&dir).ok);
    assert_all_frames_exact(&dir, &cfg, 120);
    if report.direct_io {
        // Every chunk of an O_DIRECT segment starts on a page (the tail is cut back after its
        // page-sized write, so the file need not be whole pages).
        let bytes = std::fs::read(&segments(&dir)[0]).unwrap();
        let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
        assert!(!summary.chunk_indexes.is_empty());
        for c in &summary.chunk_indexes {
            assert_eq!(
                c.chunk_start_offset % 4096,
                0,
                "O_DIRECT chunks start on pages"
            );
        }
    }
}

#[test]
fn pwrite_backend_records_the_same_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut cfg = config(&dir, 320, 240);
    cfg.writer.backend = BackendChoice::Pwrite;
    let report = run(&cfg, 200);
    assert_eq!(report.backend, Backend::Pwrite);
    assert!(verify_dir(&dir).ok);
    assert_all_frames_exact(&dir, &cfg, 200);
}

#[test]
fn small_segments_rotate_without_losing_or_duplicating_a_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut cfg = config(&dir, 160, 120);
    cfg.segment.max_bytes = 1 << 20;
    cfg.writer.max_write_bytes = 128 << 10;
    let report = run(&cfg, 400);
    let files = segments(&dir);
    assert!(
        files.len() >= 8,
        "400 x 38 KB frames in 1 MiB segments: got {} segments",
        files.len()
    );
    assert_eq!(
        report.segments.len(),
        files.len(),
        "no empty segment left behind"
    );
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let s = framerec::segment::verify_segment(&f.display().to_string(), &bytes);
        assert!(
            s.ok() && s.finalized,
            "{} alone: {:?}",
            f.display(),
            s.problems
        );
        assert!(s.frames > 0);
    }
    let v = verify_dir(&dir);
    assert!(v.ok, "{:#?}", v.problems);
    assert_all_frames_exact(&dir, &cfg, 400);
}

/// A tiny queue, an unpaced source and a slowed writer: frames must drop, and every drop must
/// be counted once and named in the file.
fn overflow_run(
    policy: OverflowPolicy,
) -> (
    framerec::recorder::RunReport,
    framerec::segment::RecordingReport,
) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut cfg = config(&dir, 160, 120);
    cfg.queue.max_frames = 4;
    cfg.queue.max_bytes = 6 * (40 << 10);
    cfg.queue.overflow = Some(policy);
    cfg.writer.writers = 1;
    cfg.writer.max_write_bytes = 80 << 10;
    cfg.writer.write_delay = Duration::from_millis(5);
    let report = run(&cfg, 600);
    let v = verify_dir(&dir);
    drop(tmp);
    (report, v)
}

fn assert_exact_accounting(
    report: &framerec::recorder::RunReport,
    v: &framerec::segment::RecordingReport,
) {
    let t = &report.totals;
    assert_eq!(t.received_frames, 600);
    assert_eq!(
        t.received_frames,
        t.written_frames + t.dropped_total(),
        "{t:?}"
    );
    assert!(v.ok, "verify: {:#?}", v.problems);
    assert_eq!(v.frames, t.written_frames, "frames in the file");
    let in_file: u64 = v.dropped.values().sum();
    assert_eq!(
        in_file,
        t.dropped_total(),
        "every drop is named in the file exactly once"
    );
    for (reason, n) in &t.dropped {
        assert_eq!(
            v.dropped.get(*reason).copied().unwrap_or(0),
            *n,
            "reason {reason}"
        );
    }
    assert_eq!(v.first_seq, Some(0));
    assert_eq!(
        v.last_seq,
        Some(599),
        "the file accounts for every sequence number"
    );
}

#[test]
fn overflow_drop_newest_counts_and_records_every_drop() {
    let (report, v) = overflow_run(OverflowPolicy::DropNewest);
    assert!(
        report.totals.dropped["queue_full"] > 100,
        "{:?}",
        report.totals
    );
    assert_exact_accounting(&report, &v);
}

#[test]
fn overflow_drop_oldest_counts_and_records_every_drop() {
    let (report, v) = overflow_run(OverflowPolicy::DropOldest);
    assert!(
        report.totals.dropped[DropReason::QueueEvicted.as_str()] > 100,
        "{:?}",
        report.totals
    );
    assert_exact_accounting(&report, &v);
}

#[test]
fn overflow_block_waits_and_loses_nothing() {
    let (report, v) = overflow_run(OverflowPolicy::Block);
    assert_eq!(report.totals.dropped_total(), 0);
    assert_eq!(report.totals.written_frames, 600);
    assert_exact_accounting(&report, &v);
}

#[test]
fn paced_source_keeps_its_rate_with_no_drops() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut cfg = config(&dir, 640, 480);
    let framerec::config::SourceConfig::Synthetic(s) = &mut cfg.source else {
        panic!("a synthetic config")
    };
    s.fps = 30;
    let report = run(&cfg, 45);
    assert_eq!(report.totals.dropped_total(), 0);
    assert_eq!(
        report.overflow,
        OverflowPolicy::DropNewest,
        "auto: a paced source is live"
    );
    // 45 frames at 30 fps: the last is due at 1.467 s.
    assert!(
        report.elapsed >= Duration::from_millis(1450),
        "{:?}",
        report.elapsed
    );
    let msgs = read_with_mcap_crate(&dir);
    let span_ns = msgs.last().unwrap().3 - msgs.first().unwrap().3;
    assert_eq!(
        span_ns,
        44 * 1_000_000_000 / 30,
        "device times follow the absolute schedule"
    );
}

#[test]
fn a_second_run_continues_the_recording_in_the_same_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let cfg = config(&dir, 64, 48);
    let first = run(&cfg, 30);
    let second = run(&cfg, 20);
    assert_eq!(second.totals.received_frames, 20);
    assert_eq!(second.segments.len(), 1);
    assert_ne!(
        first.segments[0], second.segments[0],
        "a new segment, nothing overwritten"
    );
    let v = verify_dir(&dir);
    assert!(v.ok, "{:#?}", v.problems);
    assert_eq!((v.frames, v.first_seq, v.last_seq), (50, Some(0), Some(49)));
    assert_all_frames_exact(&dir, &cfg, 50);
    let ids: std::collections::BTreeSet<String> = segments(&dir)
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            framerec::segment::parse_segment(&bytes).metadata["recording_id"].clone()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one recording id across runs");
}

/// Records what a listener was told, and keeps segment 0 from retention.
#[derive(Default)]
struct Watcher {
    events: std::sync::Mutex<Vec<(&'static str, u64)>>,
}

impl framerec::sink::SegmentListener for Watcher {
    fn opened(&self, id: u64, _: &std::path::Path) {
        self.events.lock().unwrap().push(("opened", id));
    }
    fn finalized(&self, id: u64, path: &std::path::Path) {
        assert!(path.exists(), "finalized: {}", path.display());
        self.events.lock().unwrap().push(("finalized", id));
    }
    fn may_delete(&self, id: u64, _: &std::path::Path) -> bool {
        id != 0
    }
}

#[test]
fn listeners_see_every_segment_and_retention_keeps_what_they_still_need() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut cfg = config(&dir, 160, 120);
    if let framerec::config::SourceConfig::Synthetic(s) = &mut cfg.source {
        s.fps = 100;
    }
    // About 6 frames a segment; retention keeps under 1 MiB of them.
    cfg.segment.max_bytes = 256 << 10;
    cfg.writer.preallocate_bytes = 0;
    cfg.writer.retain_bytes = Some(1 << 20);
    let watcher = std::sync::Arc::new(Watcher::default());
    let report = framerec::recorder::record_with(
        &cfg,
        framerec::pipeline::receiver::Limits {
            frames: Some(250),
            duration: None,
        },
        framerec::recorder::Controls {
            stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            reload: None,
            listeners: vec![watcher.clone()],
            on_start: None,
        },
    )
    .unwrap();
    assert!(report.failure.is_none(), "{:?}", report.failure);
    let events = watcher.events.lock().unwrap().clone();
    let ids = |kind: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| *id)
            .collect()
    };
    let (opened, mut finalized) = (ids("opened"), ids("finalized"));
    assert!(opened.len() >= 10, "{events:?}");
    assert!(opened.windows(2).all(|w| w[0] < w[1]), "{opened:?}");
    finalized.sort_unstable();
    assert_eq!(opened, finalized, "every opened segment was finalized");
    // Each opened before it finalized.
    for id in &opened {
        let at = |k: &str| events.iter().position(|e| *e == (k, *id)).unwrap();
        let (o, f) = (at("opened"), at("finalized"));
        assert!(o < f, "{id}: {events:?}");
    }
    let kept: Vec<u64> = framerec::sink::existing_segments(&dir)
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        kept.first(),
        Some(&0),
        "segment 0 is still needed: {kept:?}"
    );
    assert!(
        kept.len() < opened.len() && !kept.contains(&1),
        "retention deleted the others it could: {kept:?} of {opened:?}"
    );
}
