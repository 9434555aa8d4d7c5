//! Compressed recordings (issue 19): zstd and lz4 chunks written by the compression workers are
//! read byte-exact by framerec, the official Rust and Python readers and `mcap doctor`; a
//! kill -9 during a compressed recording loses no durable frame.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{framerec, last_durable, mcap_doctor, spawn_framerec, text};

const SEED: u64 = 11;
const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;

/// Records 90 frames of each image stream into `dir`; returns the run's JSON summary.
fn record(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let (w, h, seed) = (WIDTH.to_string(), HEIGHT.to_string(), SEED.to_string());
    let mut args = vec!["record", "--out", dir.to_str().unwrap(), "--frames", "90"];
    args.extend(["--fps", "0", "--width", &w, "--height", &h, "--seed", &seed]);
    args.extend(["--streams", "depth,color,accel", "--stats-socket", "off"]);
    args.extend(["--control-socket", "off", "--json"]);
    args.extend(extra);
    let out = framerec(&args);
    assert!(out.status.success(), "record {extra:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("record --json")
}

fn bytes_of(dir: &std::path::Path) -> u64 {
    common::segments(dir)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn compressed_recordings_read_back_byte_exact_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    record(&raw, &["--compression", "none"]);
    for (codec, extra) in [
        (
            "zstd",
            &["--compression", "zstd", "--compression-level", "3"][..],
        ),
        ("lz4", &["--compression", "lz4"][..]),
    ] {
        let dir = tmp.path().join(codec);
        let summary = record(&dir, extra);
        let c = &summary["totals"]["compression"];
        let (compressed, bytes_in, bytes_out) = (
            c["chunks_compressed"].as_u64().unwrap(),
            c["bytes_in"].as_u64().unwrap(),
            c["bytes_out"].as_u64().unwrap(),
        );
        assert!(compressed > 0 && bytes_out < bytes_in, "{codec}: {c}");
        assert!(
            bytes_of(&dir) * 10 < bytes_of(&raw) * 9,
            "{codec}: {} bytes against {} raw",
            bytes_of(&dir),
            bytes_of(&raw)
        );
        let v = framerec(&["verify", dir.to_str().unwrap()]);
        assert!(v.status.success(), "{codec}: verify: {}", text(&v));
        for seg in common::segments(&dir) {
            let d = mcap_doctor(&seg);
            assert!(d.status.success(), "{codec}: doctor: {}", text(&d));
            let said = text(&d).to_lowercase();
            assert!(
                !said.contains("warn") && !said.contains("error"),
                "{codec}: {said}"
            );
            let bytes = std::fs::read(&seg).unwrap();
            let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
            assert!(
                summary.chunk_indexes.iter().any(|c| c.compression == codec),
                "{codec}: no chunk is compressed"
            );
        }
        // The official Rust reader: every depth frame, byte-exact.
        let depth = common::read_with_mcap_crate(&dir);
        assert_eq!(depth.len(), 90, "{codec}");
        for (seq, _, _, _, img) in &depth {
            let want =
                framerec::source::synthetic::expected_frame(SEED, *seq as u64, WIDTH, HEIGHT);
            assert!(img.data == want, "{codec}: depth frame {seq} differs");
        }
        // The official Python reader: depth and colour frames, byte-exact (by CRC-32).
        let seqs = common::python_frames(&dir, SEED, WIDTH, HEIGHT);
        assert_eq!(seqs, (0..90).collect::<Vec<u64>>(), "{codec}");
    }
}

#[test]
fn kill_9_during_a_compressed_recording_keeps_every_durable_frame() {
    for (run, kill_ms) in [(0u64, 700u64), (1, 1300), (2, 2100)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        let cfg = tmp.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[durability]\nfsync-interval-ms = 50\n[segment]\nmax-bytes = 16777216\n[compression]\ncodec = \"zstd\"\n",
        )
        .unwrap();
        let log_path = tmp.path().join("stderr.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let (w, h, seed) = (WIDTH.to_string(), HEIGHT.to_string(), SEED.to_string());
        let mut child = spawn_framerec(
            &[
                &["record", "--config", cfg.to_str().unwrap()][..],
                &["--out", dir.to_str().unwrap(), "--control-socket", "off"][..],
                &["--fps", "0", "--width", &w, "--height", &h, "--seed", &seed][..],
            ],
            "framerec=debug",
            Stdio::null(),
            log,
        );
        std::thread::sleep(Duration::from_millis(kill_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let durable = last_durable(&std::fs::read_to_string(&log_path).unwrap());
        if common::segments(&dir).is_empty() {
            assert_eq!(durable, None, "run {run}: durable frames but no segment");
            continue;
        }
        let r = framerec(&["recover", dir.to_str().unwrap()]);
        assert!(r.status.success(), "run {run}: recover: {}", text(&r));
        let v = framerec(&["verify", dir.to_str().unwrap()]);
        assert!(v.status.success(), "run {run}: verify: {}", text(&v));
        let frames = common::python_frames(&dir, SEED, WIDTH, HEIGHT);
        if let Some(d) = durable {
            let have: std::collections::HashSet<u64> = frames.iter().copied().collect();
            let missing: Vec<u64> = (0..=d).filter(|s| !have.contains(s)).take(5).collect();
            assert!(
                missing.is_empty(),
                "run {run}: durable through {d}, yet {missing:?} are gone"
            );
        }
        eprintln!(
            "run {run}: killed after {kill_ms} ms, durable {durable:?}, {} frames readable",
            frames.len()
        );
    }
}
