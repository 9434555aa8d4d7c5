//! Live statistics from a running recorder: the JSON snapshot on the stats socket, the table,
//! the periodic log line and the SIGUSR1 dump.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{framerec, spawn_framerec, text};

#[test]
fn a_running_recorder_serves_statistics_that_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let socket = tmp.path().join("stats.sock");
    let cfg = tmp.path().join("stats.toml");
    std::fs::write(
        &cfg,
        format!(
            "[stats]\nsocket = {:?}\nlog-interval-s = 1\n",
            socket.to_str().unwrap()
        ),
    )
    .unwrap();
    let log_path = tmp.path().join("stderr.log");
    let child = spawn_framerec(
        &[&[
            "record",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--fps",
            "30",
        ][..]],
        "info",
        Stdio::null(),
        std::fs::File::create(&log_path).unwrap(),
    );
    std::thread::sleep(Duration::from_millis(2500));

    let out = framerec(&["stats", "--json", "--socket", socket.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let s: framerec::observe::Snapshot = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        ["io-uring", "pwrite"].contains(&s.backend.as_str()),
        "{}",
        s.backend
    );
    assert!(s.received_frames >= 30, "{s:?}");
    assert_eq!(
        s.received_frames,
        s.written_frames + s.dropped_total() + s.queue_depth + s.frames_in_writers,
        "received = written + dropped + queued + in writers: {s:?}"
    );
    assert!(
        s.write_latency_ns.count > 0 && s.write_latency_ns.p99 > 0,
        "{s:?}"
    );
    assert!(
        s.capture_to_written_ns.count > 0 && s.capture_to_written_ns.p50 > 0,
        "{s:?}"
    );
    assert!(s.durable_seq.is_some(), "fsync ran within 2.5 s: {s:?}");
    assert_eq!(s.segments, 1);
    assert!(s.free_bytes.is_some_and(|f| f > 0));

    let table = framerec(&["stats", "--socket", socket.to_str().unwrap()]);
    assert!(
        text(&table).contains("capture to written"),
        "{}",
        text(&table)
    );

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-USR1", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("SIGUSR1") && log.contains("\"write_latency_ns\""),
        "{log}"
    );
    assert!(
        log.contains(" fps, ") && log.contains("MB/s, queue"),
        "periodic line: {log}"
    );
    assert!(!socket.exists(), "the socket is removed on exit");
}

#[test]
fn the_prometheus_endpoint_parses_and_agrees_with_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let socket = tmp.path().join("stats.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = tmp.path().join("prom.toml");
    std::fs::write(
        &cfg,
        format!(
            "[stats]\nsocket = {:?}\nmetrics-addr = \"127.0.0.1:{port}\"\n",
            socket.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut child = spawn_framerec(
        &[&[
            "record",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--fps",
            "30",
        ][..]],
        "warn",
        Stdio::null(),
        Stdio::null(),
    );
    std::thread::sleep(Duration::from_millis(2000));
    let snapshot = || -> framerec::observe::Snapshot {
        let out = framerec(&["stats", "--json", "--socket", socket.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = snapshot();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/scrape_prometheus.py"
    );
    let py = Command::new("python3")
        .args([script, &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let after = snapshot();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        py.status.success(),
        "prometheus_client parser: {}",
        text(&py)
    );
    let r: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(r["families"]["framerec_frames_written"], "counter", "{r}");
    assert_eq!(r["families"]["framerec_queue_depth_frames"], "gauge", "{r}");
    for name in [
        "framerec_write_latency_seconds",
        "framerec_capture_to_written_seconds",
        "framerec_queue_wait_seconds",
        "framerec_fsync_latency_seconds",
        "framerec_frames_per_write",
    ] {
        let h = &r["histograms"][name];
        assert_eq!(h["cumulative"], true, "{name}: {r}");
        assert_eq!(h["inf"], h["count"], "{name}: {r}");
    }
    // Counts only grow: the scrape lies between the two snapshots around it.
    let scraped = r["histograms"]["framerec_write_latency_seconds"]["count"]
        .as_f64()
        .unwrap() as u64;
    assert!(
        before.write_latency_ns.count <= scraped && scraped <= after.write_latency_ns.count,
        "{} <= {scraped} <= {}",
        before.write_latency_ns.count,
        after.write_latency_ns.count
    );
    assert!(scraped > 0);
}
