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
    let py = Command::new(common::python())
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
    let py = Command::new(common::python())
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
            assert!(svg.contains("\ncapture to written\n"), "legend");
            assert!(svg.contains("\nn=150, max "), "legend details");
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
    // A plot that cannot be written is a sentence naming the file and why, for either format.
    for ext in ["png", "svg"] {
        let to = dir.join(format!("no/such/dir/x.{ext}"));
        let bad = framerec(&[
            "stats",
            dir.to_str().unwrap(),
            "--plot",
            to.to_str().unwrap(),
        ]);
        assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
        let err = String::from_utf8_lossy(&bad.stderr);
        assert_eq!(
            err.trim_end(),
            format!(
                "framerec: cannot write the plot {}: No such file or directory (os error 2)",
                to.display()
            ),
        );
    }
}

/// A recording of several streams logs each stream's counters; `stats --json` reports what
/// each stream received, wrote and dropped, per interval and in all, adding up to the totals.
#[test]
fn the_interval_log_of_several_streams_has_each_streams_counters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = framerec(&[
        "record",
        "--out",
        dir.to_str().unwrap(),
        "--streams",
        "depth,color,accel",
        "--width",
        "64",
        "--height",
        "48",
        "--frames",
        "90",
        "--fps",
        "0",
        "--stats-socket",
        "off",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let ours = offline_report(&dir);
    let streams = ours["streams"].as_array().expect("per-stream totals");
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["depth", "color", "accel"], "{ours}");
    let intervals = ours["intervals"].as_array().unwrap();
    for k in ["received", "written", "dropped"] {
        let total: u64 = intervals.iter().map(|i| i[k].as_u64().unwrap()).sum();
        let per_stream: u64 = streams.iter().map(|s| s[k].as_u64().unwrap()).sum();
        assert_eq!(per_stream, total, "{k}: {ours}");
    }
    assert_eq!(streams[0]["received"], 90, "{ours}");
    assert!(
        streams.iter().all(|s| s["received"] == s["written"]),
        "{ours}"
    );
    // The table shows a line per stream under the totals.
    let table = framerec(&["stats", dir.to_str().unwrap()]);
    assert!(table.status.success(), "{}", text(&table));
    let table = String::from_utf8_lossy(&table.stdout);
    let lines: Vec<&str> = table.lines().filter(|l| l.starts_with("stream ")).collect();
    assert_eq!(lines.len(), 3, "{table}");
    for (line, name) in lines.iter().zip(["depth", "color", "accel"]) {
        assert!(line.contains(name), "{table}");
    }
    assert!(lines[0].contains("90"), "{table}");
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

/// A V2 histogram header (HdrHistogram's encoding, no counts), deflated behind the compressed
/// cookie, in base64.
fn crafted_histogram(payload: u32, digits: u32, highest: u64) -> String {
    use base64::Engine as _;
    use std::io::Write as _;
    let mut v2 = Vec::new();
    v2.extend_from_slice(&0x1c84_9313u32.to_be_bytes());
    v2.extend_from_slice(&payload.to_be_bytes());
    v2.extend_from_slice(&0u32.to_be_bytes());
    v2.extend_from_slice(&digits.to_be_bytes());
    v2.extend_from_slice(&1u64.to_be_bytes());
    v2.extend_from_slice(&highest.to_be_bytes());
    v2.extend_from_slice(&1.0f64.to_be_bytes());
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&v2).unwrap();
    let z = z.finish().unwrap();
    let mut b = 0x1c84_9314u32.to_be_bytes().to_vec();
    b.extend_from_slice(&u32::try_from(z.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&z);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `framerec stats FILE` with its address space limited to 1 GiB: an allocation taken from
/// what a crafted log claims fails (the process aborts) instead of passing unseen.
fn stats_in_1_gib(file: &std::path::Path) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576; exec "$0" stats "$1""#)
        .arg(env!("CARGO_BIN_EXE_framerec"))
        .arg(file)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn crafted_interval_logs_are_refused_without_allocating_what_they_claim() {
    let tmp = tempfile::tempdir().unwrap();
    // One line whose histogram claims a 4 GB payload (83 bytes in all).
    let huge = tmp.path().join("huge.hlog");
    let line = format!(
        "Tag=write,0.000,1.000,0.0,{}\n",
        crafted_histogram(u32::MAX - 15, 3, 3_600_000_000_000)
    );
    std::fs::write(&huge, &line).unwrap();
    let out = stats_in_1_gib(&huge);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "skipped an unreadable line at {}:1: its histogram is unreadable: the payload claims 4294967280 bytes",
            huge.display()
        )),
        "{t}"
    );

    // Valid headers, each a 270 KB histogram once decoded, under 5000 different tags.
    let tags = tmp.path().join("tags.hlog");
    let h = crafted_histogram(0, 3, 3_600_000_000_000);
    let log: String = (0..5000)
        .map(|i| format!("Tag=t{i},0.000,1.000,0.0,{h}\n"))
        .collect();
    std::fs::write(&tags, &log).unwrap();
    let out = stats_in_1_gib(&tags);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out));
    let t = text(&out);
    assert_eq!(
        t.matches("a tag beyond the 32 different ones a log can have")
            .count(),
        5000 - 32,
        "{t}"
    );

    // 200 lines claiming 5 significant digits over the widest range.
    let fine = tmp.path().join("fine.hlog");
    let mut log = String::new();
    for i in 0..200 {
        log.push_str(&format!(
            "Tag=write,{i}.000,1.000,0.0,{}\n",
            crafted_histogram(0, 5, i64::MAX as u64)
        ));
    }
    std::fs::write(&fine, &log).unwrap();
    let out = stats_in_1_gib(&fine);
    assert!(out.status.success(), "{:?} {}", out.status, text(&out));
    let t = text(&out);
    assert_eq!(
        t.matches("it claims 5 significant digits; framerec keeps 3")
            .count(),
        200,
        "{t}"
    );
}

#[test]
fn a_statistics_socket_that_never_stops_sending_is_cut_off() {
    use std::io::Write as _;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("endless.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let chunk = vec![b' '; 64 * 1024];
        for mut stream in listener.incoming().flatten() {
            while stream.write_all(&chunk).is_ok() {}
        }
    });
    // In 1 GiB of address space: reading all of it would fail there rather than pass unseen.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576; exec "$0" stats --socket "$1""#)
        .arg(env!("CARGO_BIN_EXE_framerec"))
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{:?} {}",
        out.status,
        text(&out)
    );
    assert!(
        text(&out).contains(&format!(
            "cannot read statistics from {} (is a recorder running?): the reply is longer than 1048576 bytes",
            path.display()
        )),
        "{}",
        text(&out)
    );
}
