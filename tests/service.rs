//! framerec as a systemd service, without systemd as PID 1: the notify protocol over a real
//! datagram socket, the progress-driven watchdog, reload on SIGHUP, and the directories the
//! unit gives it through the environment.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{framerec, text};

/// A notify socket like systemd's: a bound datagram socket the recorder sends to.
struct NotifySocket {
    sock: UnixDatagram,
    path: PathBuf,
}

impl NotifySocket {
    fn new(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        NotifySocket { sock, path }
    }

    /// The next message, if one arrives within 50 ms.
    fn recv(&self) -> Option<String> {
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// Every message arriving within `d`; `on` sees each as it comes.
    fn collect(&self, d: Duration, mut on: impl FnMut(&str)) -> Vec<String> {
        let end = Instant::now() + d;
        let mut out = Vec::new();
        while Instant::now() < end {
            if let Some(m) = self.recv() {
                on(&m);
                out.push(m);
            }
        }
        out
    }
}

fn recorder(args: &[&str], env: &[(&str, &str)], stderr: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_framerec"));
    cmd.args(args)
        .env("RUST_LOG", "info")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("LOGS_DIRECTORY")
        .env_remove("CONFIGURATION_DIRECTORY")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("framerec starts")
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn mcap_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "mcap"))
            .count()
    })
}

fn position(msgs: &[String], needle: &str) -> usize {
    msgs.iter()
        .position(|m| m.lines().any(|l| l == needle || l.starts_with(needle)))
        .unwrap_or_else(|| panic!("no {needle} in {msgs:?}"))
}

#[test]
fn notify_ready_status_watchdog_stopping_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let notify = NotifySocket::new(tmp.path());
    let log = tmp.path().join("stderr.log");
    let mut child = recorder(
        &[
            "record",
            "--out",
            dir.to_str().unwrap(),
            "--fps",
            "30",
            "--stats-socket",
            "off",
        ],
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
        &log,
    );
    let mut segments_at_ready = None;
    let mut msgs = notify.collect(Duration::from_millis(2500), |m| {
        if m.lines().any(|l| l == "READY=1") && segments_at_ready.is_none() {
            segments_at_ready = Some(mcap_files(&dir));
        }
    });
    signal(&child, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        if let Some(m) = notify.recv() {
            msgs.push(m);
        }
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    assert!(
        segments_at_ready.is_some_and(|n| n >= 1),
        "READY=1 came before the first segment existed: {segments_at_ready:?}"
    );
    let ready = position(&msgs, "READY=1");
    let status_line = position(&msgs, "STATUS=");
    let watchdog = position(&msgs, "WATCHDOG=1");
    let stopping = position(&msgs, "STOPPING=1");
    assert!(
        ready <= status_line && status_line < watchdog && watchdog < stopping,
        "{msgs:?}"
    );
    assert!(
        msgs[..ready].iter().all(|m| !m.contains("WATCHDOG")),
        "{msgs:?}"
    );
    let pings = msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 4,
        "pinged every 200 ms while writing: {pings} in {msgs:?}"
    );
    let status_text = msgs[status_line]
        .lines()
        .find(|l| l.starts_with("STATUS="))
        .unwrap();
    assert!(
        status_text.contains("fps") && status_text.contains("write p99"),
        "{status_text}"
    );
}

#[test]
fn stalled_writers_withhold_the_watchdog() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let notify = NotifySocket::new(tmp.path());
    let log = tmp.path().join("stderr.log");
    let mut child = recorder(
        &[
            "record",
            "--out",
            dir.to_str().unwrap(),
            "--fps",
            "30",
            "--stats-socket",
            "off",
        ],
        &[
            ("NOTIFY_SOCKET", notify.path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
            // Every write takes 30 s: the writers are stuck on their first write.
            ("FRAMEREC_TEST_WRITE_DELAY_MS", "30000"),
        ],
        &log,
    );
    let mut ready_at = None;
    let msgs = notify.collect(Duration::from_millis(3000), |m| {
        if m.contains("READY=1") && ready_at.is_none() {
            ready_at = Some(Instant::now());
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let ready = position(&msgs, "READY=1");
    assert!(
        ready_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)),
        "READY came late: {msgs:?}"
    );
    let pings = msgs[ready..]
        .iter()
        .filter(|m| m.contains("WATCHDOG=1"))
        .count();
    assert_eq!(pings, 0, "no progress, no pings: {msgs:?}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("withholding pings"), "{log}");
}

fn snapshot(socket: &Path) -> framerec::observe::Snapshot {
    let out = framerec(&["stats", "--json", "--socket", socket.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Polls the stats socket until `pred` holds (or 5 s pass) and returns the last snapshot.
fn wait_for(
    socket: &Path,
    pred: impl Fn(&framerec::observe::Snapshot) -> bool,
) -> framerec::observe::Snapshot {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if socket.exists() {
            let s = snapshot(socket);
            if pred(&s) || Instant::now() > deadline {
                return s;
            }
        } else {
            assert!(
                Instant::now() < deadline,
                "no stats socket at {}",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sighup_changes_the_writers_live_and_rejects_a_broken_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let socket = tmp.path().join("stats.sock");
    let cfg = tmp.path().join("framerec.toml");
    let write_cfg = |writers: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[source]\nfps = 60\n[writer]\nwriters = {writers}\n[stats]\nsocket = {:?}\n",
                socket.to_str().unwrap()
            ),
        )
        .unwrap()
    };
    write_cfg("2");
    let notify = NotifySocket::new(tmp.path());
    let log = tmp.path().join("stderr.log");
    let mut child = recorder(
        &[
            "record",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--json",
        ],
        &[("NOTIFY_SOCKET", notify.path.to_str().unwrap())],
        &log,
    );
    let s = wait_for(&socket, |s| s.writers == 2 && s.written_frames > 10);
    assert_eq!(s.writers, 2, "{s:?}");

    write_cfg("5");
    signal(&child, "-HUP");
    let s = wait_for(&socket, |s| s.writers == 5);
    assert_eq!(s.writers, 5, "grown live: {s:?}");

    write_cfg("1");
    signal(&child, "-HUP");
    let s = wait_for(&socket, |s| s.writers == 1);
    assert_eq!(s.writers, 1, "shrunk live: {s:?}");

    // A broken config: rejected with its errors, the recorder keeps running on the old one.
    std::fs::write(&cfg, "[writer]\nwriters = 0\nturbo = true\n").unwrap();
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(600));
    let before = snapshot(&socket);
    std::thread::sleep(Duration::from_millis(500));
    let after = snapshot(&socket);
    assert_eq!(after.writers, 1, "{after:?}");
    assert!(
        after.written_frames > before.written_frames,
        "still recording"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");

    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("changing the number of writers"), "{log}");
    assert!(
        log.contains("the reloaded configuration is invalid") && log.contains("turbo"),
        "the errors are logged: {log}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &summary["totals"];
    assert_eq!(
        totals["received_frames"], totals["written_frames"],
        "{summary}"
    );
    // At 60 fps: more than 10 before the first reload, and 1.1 s of sleeps after the last.
    assert!(totals["written_frames"].as_u64().unwrap() > 60, "{summary}");
    assert_eq!(
        totals["dropped"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        0,
        "{summary}"
    );
    let verify = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify));

    let msgs: Vec<String> = std::iter::from_fn(|| notify.recv()).collect();
    let reloading = position(&msgs, "RELOADING=1");
    assert!(
        msgs[reloading + 1..].iter().any(|m| m.contains("READY=1")),
        "READY=1 after RELOADING=1: {msgs:?}"
    );
}

/// `ExecStart=` of the unit, split into words (the binary first).
fn unit_exec_start() -> (Vec<String>, Duration) {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/framerec.service"
    ))
    .unwrap();
    let value = |key: &str| -> String {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_string()
    };
    let exec: Vec<String> = value("ExecStart")
        .split_whitespace()
        .map(String::from)
        .collect();
    let stop = humantime::parse_duration(&value("TimeoutStopSec")).unwrap();
    (exec, stop)
}

#[test]
fn the_units_command_line_uses_the_directories_systemd_gives_it() {
    let tmp = tempfile::tempdir().unwrap();
    let [state, runtime, logs, conf] =
        ["state", "runtime", "logs", "conf"].map(|d| tmp.path().join(d));
    for d in [&state, &runtime, &logs, &conf] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(
        conf.join("framerec.toml"),
        "[source]\nwidth = 320\nheight = 240\n[stats]\ninterval-log-s = 1\n",
    )
    .unwrap();
    let (exec, timeout_stop) = unit_exec_start();
    assert!(exec[0].ends_with("/framerec"), "{exec:?}");
    let args: Vec<&str> = exec[1..].iter().map(String::as_str).collect();
    let log = tmp.path().join("stderr.log");
    let mut child = recorder(
        &args,
        &[
            ("STATE_DIRECTORY", state.to_str().unwrap()),
            ("RUNTIME_DIRECTORY", runtime.to_str().unwrap()),
            ("LOGS_DIRECTORY", logs.to_str().unwrap()),
            ("CONFIGURATION_DIRECTORY", conf.to_str().unwrap()),
        ],
        &log,
    );
    let socket = runtime.join("framerec.sock");
    let s = wait_for(&socket, |s| s.written_frames >= 45);
    assert_eq!(
        s.written_bytes / s.written_frames,
        320 * 240 * 2,
        "the config from $CONFIGURATION_DIRECTORY applies"
    );
    assert!(mcap_files(&state) >= 1, "segments in $STATE_DIRECTORY");
    let started = Instant::now();
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let took = started.elapsed();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        took < timeout_stop,
        "stopped in {took:?}, TimeoutStopSec={timeout_stop:?}"
    );
    assert!(!socket.exists(), "the socket is removed on exit");
    let hlogs: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "hlog"))
        .collect();
    assert_eq!(hlogs.len(), 1, "interval log in $LOGS_DIRECTORY");
    let verify = framerec(&["verify", state.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn logs_go_to_the_journal_only_when_stderr_is_the_journal_stream() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let log = tmp.path().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let status = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record",
            "--out",
            dir.to_str().unwrap(),
            "--frames",
            "5",
            "--fps",
            "0",
        ])
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", &stream)
        .stderr(file)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    if Path::new("/run/systemd/journal/socket").exists() {
        assert!(
            !text.contains("INFO"),
            "logs went to the journal, not stderr: {text}"
        );
    } else {
        // No journal on this machine: a clear note, then plain logs on stderr.
        assert!(text.contains("cannot log to the journal"), "{text}");
        assert!(
            text.contains("INFO") && text.contains("segment finalized"),
            "{text}"
        );
    }
    // A JOURNAL_STREAM that is not our stderr (inherited from a parent) is ignored.
    let other = tmp.path().join("other.log");
    let status = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record",
            "--out",
            dir.to_str().unwrap(),
            "--frames",
            "5",
            "--fps",
            "0",
        ])
        .env("RUST_LOG", "info")
        .env("JOURNAL_STREAM", "1:1")
        .stderr(std::fs::File::create(&other).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&other).unwrap();
    assert!(!text.contains("journal") && text.contains("INFO"), "{text}");
}

#[test]
fn sighup_changes_the_writers_of_the_per_frame_layout_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dump");
    let socket = tmp.path().join("stats.sock");
    let cfg = tmp.path().join("framerec.toml");
    let write_cfg = |writers: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[output]\nlayout = \"fakenect\"\n[source]\nfps = 30\n[writer]\nwriters = {writers}\n\
                 [stats]\nsocket = {:?}\n",
                socket.to_str().unwrap()
            ),
        )
        .unwrap()
    };
    write_cfg("2");
    let log = tmp.path().join("stderr.log");
    let child = recorder(
        &[
            "record",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--json",
        ],
        &[],
        &log,
    );
    let s = wait_for(&socket, |s| s.writers == 2 && s.written_frames > 5);
    assert_eq!(s.writers, 2, "{s:?}");
    write_cfg("4");
    signal(&child, "-HUP");
    let s = wait_for(&socket, |s| s.writers == 4);
    assert_eq!(s.writers, 4, "grown live: {s:?}");
    write_cfg("1");
    signal(&child, "-HUP");
    let s = wait_for(&socket, |s| s.writers == 1);
    assert_eq!(s.writers, 1, "shrunk live: {s:?}");
    let before = s.written_frames;
    std::thread::sleep(Duration::from_millis(400));
    assert!(snapshot(&socket).written_frames > before, "still recording");
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{log}");
    assert!(log.contains("changing the number of writers"), "{log}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &summary["totals"];
    assert_eq!(
        totals["received_frames"], totals["written_frames"],
        "{summary}"
    );
    let verify = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify));
}
