//! The freenect source's failure paths through its real FFI, against a stand-in libfreenect
//! (tests/c/mock_freenect.c, built here): no Kinect, a device index out of range, an unplug
//! mid-recording (stop, or retry and record on), and the 32-bit device clock wrapping.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn mock_library(dir: &Path) -> PathBuf {
    let lib = dir.join("libmockfreenect.so");
    let cc = Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o", lib.to_str().unwrap()])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/c/mock_freenect.c"
        ))
        .output()
        .expect("cc runs");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    lib
}

fn record(lib: &Path, out: &Path, extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_framerec"));
    cmd.args(["record", "--source", "freenect", "--stats-socket", "off"])
        .args(["--freenect-library", lib.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .args(extra)
        .env("RUST_LOG", "warn")
        .env_remove("FAKENECT_PATH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// (device time, payload) of every frame, and checks each payload against the mock's content.
fn frames(dir: &Path) -> Vec<u64> {
    let msgs = common::read_with_mcap_crate(dir);
    msgs.iter()
        .map(|(_, _, _, device_ns, img)| {
            let first = u16::from_le_bytes([img.data[0], img.data[1]]) as u64;
            // Frame k starts at (k * 7) & 0x7ff and counts up by one per sample.
            for (i, pair) in img.data.chunks_exact(2).enumerate().step_by(997) {
                let v = u16::from_le_bytes([pair[0], pair[1]]) as u64;
                assert_eq!(v, (first + i as u64) & 0x7ff);
            }
            *device_ns
        })
        .collect()
}

#[test]
fn no_kinect_and_a_bad_index_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = mock_library(tmp.path());
    let none = record(&lib, &tmp.path().join("a"), &[], &[("MOCK_DEVICES", "0")]);
    assert_eq!(none.status.code(), Some(2), "{}", stderr(&none));
    assert!(
        stderr(&none).contains("no Kinect found"),
        "{}",
        stderr(&none)
    );
    let bad = record(&lib, &tmp.path().join("b"), &["--device-index", "3"], &[]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("device index 3 is out of range: 1 Kinect(s) found"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn an_unplug_stops_the_recording_with_an_error_and_keeps_what_was_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = mock_library(tmp.path());
    let out = tmp.path().join("rec");
    let o = record(&lib, &out, &[], &[("MOCK_FAIL_AFTER", "20")]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("unplugged"), "{}", stderr(&o));
    let verify = common::framerec(&["verify", out.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", common::text(&verify));
    assert_eq!(frames(&out).len(), 20);
}

#[test]
fn with_retry_an_unplug_is_survived_and_the_device_clock_unwraps() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = mock_library(tmp.path());
    let out = tmp.path().join("rec");
    // 20 frames, unplug, reopen, 40 more; the 32-bit clock wraps after the 10th frame.
    let start = (u32::MAX - 9 * 2_000_000 - 5).to_string();
    let o = record(
        &lib,
        &out,
        &["--on-device-error", "retry", "--frames", "60"],
        &[
            ("MOCK_FAIL_AFTER", "20"),
            ("MOCK_FAIL_OPENS", "1"),
            ("MOCK_TS_START", &start),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("reopening the Kinect"),
        "{}",
        stderr(&o)
    );
    let times = frames(&out);
    assert_eq!(times.len(), 60);
    let steps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 2,000,000 ticks of the 60 MHz clock = 33.33 ms between frames, across the 32-bit wrap;
    // across the reopen (a new device clock), the host clock's gap: over the 1 s retry wait.
    let (regular, gaps): (Vec<u64>, Vec<u64>) = steps
        .iter()
        .partition(|s| (33_333_332..=33_333_334).contains(*s));
    assert_eq!(regular.len(), 58, "{steps:?}");
    assert!(gaps.len() == 1 && gaps[0] >= 1_000_000_000, "{steps:?}");
    let wrap = framerec::source::kinect_ticks_to_ns(1 << 32);
    assert!(
        times[9] < wrap && times[19] > wrap,
        "unwrapped past 2^32 ticks: {times:?}"
    );
}

#[test]
fn a_live_kinect_never_waits_for_room_and_every_frame_it_delivers_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = mock_library(tmp.path());
    // Waiting in the callback would lose frames inside libfreenect, where nobody counts them.
    let block = record(&lib, &tmp.path().join("a"), &["--overflow", "block"], &[]);
    assert_eq!(block.status.code(), Some(2), "{}", stderr(&block));
    assert!(
        stderr(&block).contains("cannot apply to a live Kinect"),
        "{}",
        stderr(&block)
    );
    assert!(!tmp.path().join("a/0000000000000000.mcap").exists());

    // 200 frames a second into a 2-frame queue whose writes take 20 ms each: most find it full.
    // Each is numbered at delivery, and kept or dropped under its reason.
    let out = tmp.path().join("rec");
    let o = record(
        &lib,
        &out,
        &["--frames", "60", "--queue-frames", "2", "--json"],
        &[("FRAMEREC_TEST_WRITE_DELAY_MS", "20")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::Deserializer::from_slice(&o.stdout)
        .into_iter()
        .next()
        .expect("a JSON summary")
        .expect("valid JSON");
    let totals = &json["totals"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let written = n(&totals["written_frames"]);
    let full = n(&totals["dropped"]["queue_full"]);
    let dropped: u64 = totals["dropped"].as_object().unwrap().values().map(n).sum();
    assert_eq!(n(&totals["received_frames"]), 60, "{totals}");
    assert_eq!(written + dropped, 60, "{totals}");
    assert!(full > 0 && full == dropped, "{totals}");
    let verify = common::framerec(&["verify", "--json", out.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", common::text(&verify));
    let report: serde_json::Value = serde_json::Deserializer::from_slice(&verify.stdout)
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let report = &report[0]["report"];
    assert_eq!(n(&report["frames"]), written, "{report}");
    assert_eq!(n(&report["dropped"]["queue_full"]), full, "{report}");
    assert_eq!((n(&report["first_seq"]), n(&report["last_seq"])), (0, 59));
    assert_eq!(frames(&out).len() as u64, written);
}

#[test]
fn a_library_without_video_or_tilt_functions_refuses_those_streams_and_records_depth() {
    // The stand-in exports the depth functions only, as an old libfreenect might.
    let tmp = tempfile::tempdir().unwrap();
    let lib = mock_library(tmp.path());
    for (streams, symbol, stream) in [
        ("depth,color", "freenect_find_video_mode", "color stream"),
        ("accel", "freenect_update_tilt_state", "accel stream"),
    ] {
        let out = tmp.path().join(streams);
        let o = record(&lib, &out, &["--streams", streams], &[]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(symbol) && stderr(&o).contains(stream),
            "{}",
            stderr(&o)
        );
        assert!(!out.join("0000000000000000.mcap").exists());
    }
    let out = tmp.path().join("depth");
    let o = record(&lib, &out, &["--streams", "depth", "--frames", "10"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(frames(&out).len(), 10);
}
