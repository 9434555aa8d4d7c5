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
    assert!(s.capture_to_durable_ns.count > 0, "{s:?}");
    assert!(s.inter_arrival_ns.count > 0, "{s:?}");
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
        "framerec_capture_to_durable_seconds",
        "framerec_inter_arrival_seconds",
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

/// `framerec stats DIR --json`, parsed.
fn offline_report(dir: &std::path::Path) -> serde_json::Value {
    let out = framerec(&["stats", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn interval_logs_read_alike_by_python_hdrhistogram_and_framerec_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = framerec(&[
        "record",
        "--out",
        dir.to_str().unwrap(),
        "--frames",
        "150",
        "--fps",
        "30",
        "--interval-log-s",
        "1",
        "--stats-socket",
        "off",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let ours = offline_report(&dir);
    let runs = ours["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{ours}");
    assert_eq!(runs[0]["ended"], "frame-limit", "{ours}");
    let intervals = ours["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 4, "5 s at 1 s per interval: {ours}");
    let sum = |k: &str| -> u64 { intervals.iter().map(|i| i[k].as_u64().unwrap()).sum() };
    assert_eq!(sum("received"), 150, "{ours}");
    assert_eq!(sum("written"), 150, "{ours}");
    assert_eq!(sum("dropped"), 0, "{ours}");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_hlog.py");
    let py = Command::new("python3")
        .args([script, dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(py.status.success(), "hdrhistogram reader: {}", text(&py));
    let theirs: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    for tag in [
        "write",
        "capture-to-written",
        "capture-to-durable",
        "queue-wait",
        "inter-arrival",
        "fsync",
        "frames-per-write",
    ] {
        let (o, t) = (&ours["overall"][tag], &theirs[tag]);
        for k in ["count", "p50", "p99", "max"] {
            assert_eq!(o[k], t[k], "{tag} {k}: framerec {o}, python {t}");
        }
        assert_eq!(
            t["intervals"].as_u64().unwrap(),
            intervals.len() as u64,
            "{tag}"
        );
    }
    assert_eq!(ours["overall"]["capture-to-written"]["count"], 150);
    assert_eq!(ours["overall"]["capture-to-durable"]["count"], 150);
    // Paced at 30 fps: frames arrive a frame period apart (33.3 ms, within a bucket).
    let p50 = ours["overall"]["inter-arrival"]["p50"].as_u64().unwrap();
    assert!((33_000_000..33_700_000).contains(&p50), "{p50}");

    let table = framerec(&["stats", dir.to_str().unwrap()]);
    assert!(table.status.success(), "{}", text(&table));
    assert!(
        text(&table).contains("ended: frame-limit") && text(&table).contains("c->written99"),
        "{}",
        text(&table)
    );

    for name in ["plot.svg", "plot.png"] {
        let plot = tmp.path().join(name);
        let out = framerec(&[
            "stats",
            dir.to_str().unwrap(),
            "--plot",
            plot.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let bytes = std::fs::read(&plot).unwrap();
        if name.ends_with(".svg") {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
            assert!(svg.contains("latency by percentile"));
            assert!(svg.contains("capture to written (n=150"), "legend");
            assert!(
                svg.matches("<polyline").count() >= 6,
                "the series are drawn"
            );
        } else {
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let reader = decoder.read_info().unwrap();
            assert_eq!((reader.info().width, reader.info().height), (1100, 800));
        }
    }
    let bad = framerec(&["stats", dir.to_str().unwrap(), "--plot", "/tmp/x.gif"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains(".svg or .png"), "{}", text(&bad));
}

#[test]
fn a_killed_recording_keeps_its_finished_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut child = spawn_framerec(
        &[&[
            "record",
            "--out",
            dir.to_str().unwrap(),
            "--fps",
            "30",
            "--interval-log-s",
            "1",
            "--stats-socket",
            "off",
        ][..]],
        "warn",
        Stdio::null(),
        Stdio::null(),
    );
    std::thread::sleep(Duration::from_millis(3500));
    child.kill().unwrap();
    child.wait().unwrap();

    let report = offline_report(&dir);
    assert_eq!(
        report["runs"][0]["ended"],
        serde_json::Value::Null,
        "{report}"
    );
    let intervals = report["intervals"].as_array().unwrap();
    assert!((2..=4).contains(&intervals.len()), "{report}");
    assert!(
        report["overall"]["write"]["count"].as_u64().unwrap() >= 45,
        "{report}"
    );
    let table = framerec(&["stats", dir.to_str().unwrap()]);
    assert!(
        text(&table).contains("did not end cleanly"),
        "{}",
        text(&table)
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let none = framerec(&["stats", empty.to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(2));
    assert!(text(&none).contains("no interval logs"), "{}", text(&none));
}

/// Whatever listens on the statistics socket (a stale path reused by another program, a
/// hostile local process) cannot make `framerec stats` read without bound: past 1 MiB the reply
/// is refused with a sentence, not buffered.
#[test]
fn an_endless_statistics_reply_is_refused_not_buffered() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("stats.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        // Spaces are JSON whitespace: a reader that buffers all of it only fails at the end.
        let block = vec![b' '; 1 << 16];
        let mut sent = 0usize;
        for _ in 0..1024 {
            if conn.write_all(&block).is_err() {
                break;
            }
            sent += block.len();
        }
        sent
    });
    let out = framerec(&["stats", "--socket", socket.to_str().unwrap()]);
    let sent = server.join().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    // The client hung up after 1 MiB (plus what the socket buffers), not after all 64 MiB.
    assert!(sent < 8 << 20, "the client read {sent} bytes");
    assert!(
        text(&out).contains("longer than 1048576 bytes"),
        "{}",
        text(&out)
    );
}
