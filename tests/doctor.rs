//! Recordings pass the official MCAP validator: `mcap doctor --strict-message-order` (the MCAP
//! CLI, built from contrib/mcap-cli) exits 0 and prints no warning and no error for every
//! segment of recordings with drops, rotation, three streams, O_DIRECT writes, and a recorder
//! killed with SIGKILL and then recovered.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{framerec, mcap_doctor, segments, spawn_framerec, text};

/// Runs doctor on every segment of `dir` (at least `min_segments` of them) and fails, showing
/// what it printed, on a non-zero exit or any warning or error line.
fn assert_doctor_clean(dir: &Path, min_segments: usize, what: &str) {
    let files = segments(dir);
    assert!(
        files.len() >= min_segments,
        "{what}: {} segment(s), want at least {min_segments}",
        files.len()
    );
    for file in files {
        let out = mcap_doctor(&file);
        let printed = text(&out);
        let complaints: Vec<&str> = printed
            .lines()
            .filter(|l| l.contains("Warning") || l.contains("Error"))
            .collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "{what}: mcap doctor --strict-message-order {} ({}):\n{printed}",
            file.display(),
            out.status
        );
    }
}

/// `framerec record ARGS --json` with `FRAMEREC_TEST_WRITE_DELAY_MS=delay_ms` (0: none); the
/// run must succeed. Returns its JSON summary.
fn record(dir: &Path, args: &[&str], delay_ms: u64) -> serde_json::Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"));
    cmd.args(["record", "--out", dir.to_str().unwrap(), "--json"])
        .args(["--stats-socket", "off"])
        .args(args)
        .env("RUST_LOG", "warn");
    if delay_ms > 0 {
        cmd.env("FRAMEREC_TEST_WRITE_DELAY_MS", delay_ms.to_string());
    }
    let out = cmd.output().expect("framerec runs");
    assert!(out.status.success(), "record {args:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("a JSON summary")
}

fn dropped(report: &serde_json::Value) -> u64 {
    report["totals"]["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// A slow disk (50 ms a write), a small queue and drop-oldest: frames are dropped and named in
/// drop notices between the frames.
const DROPPING: [&str; 6] = [
    "--queue-bytes",
    "2000000",
    "--overflow",
    "drop-oldest",
    "--duration",
    "3s",
];

#[test]
fn a_recording_with_drops_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let size = ["--fps", "0", "--width", "320", "--height", "240"];
    let report = record(&dir, &[&size[..], &DROPPING[..]].concat(), 50);
    assert!(dropped(&report) > 0, "frames were dropped: {report}");
    assert_doctor_clean(&dir, 1, "drops");
}

#[test]
fn a_rotated_recording_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    // 400 frames of 38 KB in 1 MiB segments.
    let args = [
        "--fps", "0", "--width", "160", "--height", "120", "--frames", "400",
    ];
    record(
        &dir,
        &[&args[..], &["--segment-bytes", "1048576"][..]].concat(),
        0,
    );
    assert_doctor_clean(&dir, 3, "rotation");
}

#[test]
fn a_three_stream_recording_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let args = [
        "--streams",
        "depth,color,accel",
        "--fps",
        "30",
        "--width",
        "160",
        "--height",
        "120",
        "--duration",
        "2s",
    ];
    record(&dir, &args, 0);
    assert_doctor_clean(&dir, 1, "three streams");
}

/// O_DIRECT keeps every write page-aligned: the slack that takes is inside records the MCAP
/// spec defines, so readers do not warn. Three streams, drops and rotation, all aligned.
#[test]
fn an_o_direct_recording_with_drops_and_rotation_is_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let args = [
        "--direct-io",
        "--streams",
        "depth,color,accel",
        "--fps",
        "0",
        "--width",
        "160",
        "--height",
        "120",
        "--segment-bytes",
        "1048576",
    ];
    let report = record(&dir, &[&args[..], &DROPPING[..]].concat(), 50);
    assert_eq!(report["direct_io"], true, "O_DIRECT in effect: {report}");
    assert!(dropped(&report) > 0, "frames were dropped: {report}");
    assert_doctor_clean(&dir, 2, "O_DIRECT");
}

/// kill -9 of a recorder mid-run (buffered, then O_DIRECT), then `framerec recover`.
#[test]
fn a_killed_and_recovered_recording_is_clean() {
    for direct in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        let what = if direct { "killed, O_DIRECT" } else { "killed" };
        let mut args = vec![
            "record",
            "--out",
            dir.to_str().unwrap(),
            "--stats-socket",
            "off",
            "--fps",
            "200",
            "--width",
            "320",
            "--height",
            "240",
            "--segment-bytes",
            "4194304",
        ];
        if direct {
            args.push("--direct-io");
        }
        let mut child = spawn_framerec(&[&args[..]], "warn", Stdio::null(), Stdio::null());
        // Until it rotated (the first segment and the one opened ahead are there from the
        // start), then a moment more.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while segments(&dir).len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let r = framerec(&["recover", dir.to_str().unwrap()]);
        assert!(r.status.success(), "{what}: recover: {}", text(&r));
        assert_doctor_clean(&dir, 1, what);
    }
}
