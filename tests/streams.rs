//! Recordings of several streams, in the recorder: depth, colour and accelerometer in one
//! recording, every byte re-derived from the synthetic definitions, and an overloaded stream
//! accounted for on its own in the summary, the JSON report, Prometheus and the file. Read with the official `mcap`
//! crate, independently of framerec's own readers.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{RawImage, segments, text};
use framerec::segment::accel::RawTilt;
use framerec::source::synthetic::{expected_accel, expected_color_frame, expected_frame};
use prost::Message as _;

/// `framerec.Accelerometer`, decoded independently of framerec's encoder.
#[derive(Clone, PartialEq, prost::Message)]
struct Accelerometer {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<prost_types::Timestamp>,
    #[prost(string, tag = "2")]
    frame_id: String,
    #[prost(double, tag = "3")]
    x: f64,
    #[prost(double, tag = "4")]
    y: f64,
    #[prost(double, tag = "5")]
    z: f64,
    #[prost(double, tag = "6")]
    tilt_degrees: f64,
    #[prost(uint32, tag = "7")]
    tilt_status: u32,
    #[prost(bytes = "vec", tag = "8")]
    raw: Vec<u8>,
}

/// What the file holds of one topic.
#[derive(Default, Debug)]
struct Topic {
    /// (sequence, raw device time) in file order.
    frames: Vec<(u64, u64)>,
    /// Frames its drop notices name, by reason.
    dropped: BTreeMap<String, u64>,
}

/// Reads every segment of `dir` with the `mcap` crate; `check(topic, seq, data)` sees each frame
/// message. Checks that log time never goes back in file order.
fn read_recording(dir: &Path, mut check: impl FnMut(&str, u64, &[u8])) -> BTreeMap<String, Topic> {
    let mut topics: BTreeMap<String, Topic> = BTreeMap::new();
    for path in segments(dir) {
        let bytes = std::fs::read(&path).unwrap();
        let device = common::device_clock(&bytes);
        let mut last = 0;
        for m in mcap::MessageStream::new(&bytes).unwrap() {
            let m = m.unwrap();
            assert!(
                m.log_time >= last,
                "log time went back in {}",
                path.display()
            );
            last = m.log_time;
            if m.channel.topic == "/framerec/drops" {
                let n: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
                let topic = topics
                    .entry(n["stream"].as_str().unwrap().into())
                    .or_default();
                *topic
                    .dropped
                    .entry(n["reason"].as_str().unwrap().into())
                    .or_default() += n["count"].as_u64().unwrap();
                continue;
            }
            check(&m.channel.topic, m.sequence as u64, &m.data);
            let topic = topics.entry(m.channel.topic.clone()).or_default();
            topic.frames.push((m.sequence as u64, device(&m)));
        }
    }
    topics
}

/// Runs `framerec record` with `args` (plus `--json`) and returns its JSON report and stderr.
fn record_json(args: &[&str], env: &[(&str, &str)]) -> (serde_json::Value, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .arg("record")
        .args(args)
        .arg("--json")
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The per-stream entries of a JSON report, by name.
fn streams(report: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    report["totals"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s.clone()))
        .collect()
}

fn dropped_total(s: &serde_json::Value) -> u64 {
    s["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

#[test]
fn depth_colour_and_accelerometer_at_30_fps_for_60_s_lose_nothing_and_every_byte_is_rederived() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let (report, _) = record_json(
        &[
            "--out",
            dir.to_str().unwrap(),
            "--streams",
            "depth,color,accel",
            "--fps",
            "30",
            "--duration",
            "60s",
            "--seed",
            "11",
        ],
        &[],
    );
    let by_name = streams(&report);
    assert_eq!(by_name.len(), 3, "{report}");
    for (name, s) in &by_name {
        assert_eq!(dropped_total(s), 0, "{name}: {s}");
        assert_eq!(s["received_frames"], s["written_frames"], "{name}: {s}");
    }
    let mut checked = 0u64;
    let topics = read_recording(&dir, |topic, seq, data| {
        match topic {
            "/camera/depth" => {
                let img = RawImage::decode(data).unwrap();
                assert_eq!(
                    (img.width, img.height, img.encoding.as_str()),
                    (640, 480, "16UC1")
                );
                assert!(img.data == expected_frame(11, seq, 640, 480), "depth {seq}");
            }
            "/camera/color" => {
                let img = RawImage::decode(data).unwrap();
                assert_eq!(
                    (img.width, img.height, img.encoding.as_str()),
                    (640, 480, "rgb8")
                );
                assert_eq!(img.step, 640 * 3);
                assert!(
                    img.data == expected_color_frame(11, seq, 640, 480),
                    "colour {seq}"
                );
            }
            "/camera/accel" => {
                let a = Accelerometer::decode(data).unwrap();
                assert_eq!(a.raw, expected_accel(11, seq), "accel {seq}");
                let raw = RawTilt::from_bytes(&a.raw).unwrap();
                assert_eq!([a.x, a.y, a.z], raw.mks());
                assert_eq!(a.tilt_degrees, raw.tilt_degrees());
                assert_eq!(a.frame_id, "camera_accel");
            }
            other => panic!("unexpected topic {other}"),
        }
        checked += 1;
    });
    let written: u64 = by_name
        .values()
        .map(|s| s["written_frames"].as_u64().unwrap())
        .sum();
    assert_eq!(checked, written);
    for (topic, name, rate) in [
        ("/camera/depth", "depth", 30),
        ("/camera/color", "color", 30),
        ("/camera/accel", "accel", 100),
    ] {
        let t = &topics[topic];
        let n = t.frames.len() as u64;
        assert_eq!(n, by_name[name]["written_frames"].as_u64().unwrap());
        // 60 s of each stream, whole and in order, each at its device time.
        assert!(n >= 59 * rate && n <= 61 * rate, "{topic}: {n} frames");
        let seqs: Vec<u64> = t.frames.iter().map(|f| f.0).collect();
        assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "{topic}");
        for &(seq, device) in &t.frames {
            assert_eq!(device, seq * 1_000_000_000 / rate, "{topic} {seq}");
        }
        assert!(t.dropped.is_empty(), "{topic}: {:?}", t.dropped);
    }
}

/// The body of `GET /metrics` at `port`.
fn scrape(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// The value of the Prometheus sample `name{labels}`.
fn sample(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{text}"))
        .parse::<f64>()
        .unwrap() as u64
}

#[test]
fn an_overloaded_stream_drops_by_the_rules_and_is_accounted_on_its_own_everywhere() {
    // 1000 accelerometer readings a second and 30 depth frames, a budget of the same few
    // buffers for each, and a disk that takes 50 ms a write: the accelerometer outruns its
    // buffers between writes (queue_full), the depth stream never does.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let args = [
        "record",
        "--out",
        dir.to_str().unwrap(),
        "--streams",
        "depth,accel",
        "--accel-rate",
        "1000",
        "--fps",
        "30",
        "--width",
        "64",
        "--height",
        "48",
        "--queue-bytes",
        "1048576",
        "--metrics-addr",
        &addr,
        "--stats-socket",
        "off",
        "--duration",
        "4s",
        "--json",
    ];
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env("FRAMEREC_TEST_WRITE_DELAY_MS", "50")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Prometheus mid-run: each stream's counts balance at one instant.
    std::thread::sleep(Duration::from_millis(2500));
    let prom = scrape(port);
    for stream in ["depth", "accel"] {
        let l = format!("{{stream=\"{stream}\"}}");
        let received = sample(&prom, &format!("framerec_stream_frames_received_total{l}"));
        let written = sample(&prom, &format!("framerec_stream_frames_written_total{l}"));
        let pending = sample(&prom, &format!("framerec_stream_frames_pending{l}"));
        let dropped: u64 = framerec::frame::DropReason::ALL
            .iter()
            .map(|r| {
                let l = format!("{{stream=\"{stream}\",reason=\"{}\"}}", r.as_str());
                sample(&prom, &format!("framerec_stream_frames_dropped_total{l}"))
            })
            .sum();
        assert!(received > 0, "{stream}");
        assert_eq!(received, written + dropped + pending, "{stream}:\n{prom}");
        if stream == "depth" {
            assert_eq!(
                dropped, 0,
                "depth never waits for the accelerometer's buffers"
            );
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = streams(&report);
    let (depth, accel) = (&by_name["depth"], &by_name["accel"]);
    assert_eq!(dropped_total(depth), 0, "{depth}");
    let accel_dropped = accel["dropped"]["queue_full"].as_u64().unwrap();
    assert!(
        accel_dropped > 0,
        "the accelerometer outran its buffers: {accel}"
    );
    assert_eq!(
        dropped_total(accel),
        accel_dropped,
        "only by the rule: {accel}"
    );
    for s in [depth, accel] {
        let (rx, wr) = (
            s["received_frames"].as_u64().unwrap(),
            s["written_frames"].as_u64().unwrap(),
        );
        assert_eq!(rx, wr + dropped_total(s), "{s}");
    }
    // The totals are the streams' sums.
    let total = &report["totals"];
    assert_eq!(
        total["received_frames"].as_u64().unwrap(),
        depth["received_frames"].as_u64().unwrap() + accel["received_frames"].as_u64().unwrap()
    );
    // The summary names each stream.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let accel_line = format!(
        "accel (/camera/accel): received {}, written {}, dropped {accel_dropped} (queue_full {accel_dropped})",
        accel["received_frames"], accel["written_frames"]
    );
    assert!(stderr.contains(&accel_line), "{stderr}");
    // The file: each stream's frames, and its drops named under its own topic.
    let topics = read_recording(&dir, |_, _, _| {});
    let file_accel = &topics["/camera/accel"];
    assert_eq!(
        file_accel.frames.len() as u64,
        accel["written_frames"].as_u64().unwrap()
    );
    assert_eq!(
        file_accel.dropped,
        BTreeMap::from([("queue_full".to_string(), accel_dropped)])
    );
    let file_depth = &topics["/camera/depth"];
    assert_eq!(
        file_depth.frames.len() as u64,
        depth["written_frames"].as_u64().unwrap()
    );
    assert!(file_depth.dropped.is_empty());
    // Each stream's numbers, written and named, run from 0 with no gap and no repeat.
    let mut accel_seqs: Vec<u64> = file_accel.frames.iter().map(|f| f.0).collect();
    accel_seqs.sort_unstable();
    accel_seqs.dedup();
    assert_eq!(accel_seqs.len(), file_accel.frames.len(), "no frame twice");
    assert_eq!(
        accel_seqs.len() as u64 + accel_dropped,
        accel["received_frames"].as_u64().unwrap()
    );
}
