//! The control socket (`framerec ctl`): split, pause and resume steer a running recorder without
//! losing or repeating a frame; bad requests are answered (or closed) and counted while the
//! recorder records on; only the recorder's user can connect.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{mcap_doctor, segments, text};
use serde_json::Value;

/// A synthetic 30 fps recorder in a fresh directory, with its control and statistics sockets
/// inside it.
struct Recorder {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ctl: PathBuf,
    stats: PathBuf,
    child: Option<Child>,
}

impl Recorder {
    fn start() -> Recorder {
        Recorder::start_with(&[])
    }

    /// [`Recorder::start`] with `extra` flags.
    fn start_with(extra: &[&str]) -> Recorder {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        let (ctl, stats) = (tmp.path().join("c.ctl"), tmp.path().join("s.sock"));
        let child = Command::new(env!("CARGO_BIN_EXE_framerec"))
            .args([
                "record",
                "--source",
                "synthetic",
                "--fps",
                "30",
                "--width",
                "64",
            ])
            .args([
                "--height",
                "48",
                "--duration",
                "60s",
                "--json",
                "--quiet",
                "--out",
            ])
            .arg(&dir)
            .arg("--control-socket")
            .arg(&ctl)
            .arg("--stats-socket")
            .arg(&stats)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !(ctl.exists() && stats.exists()) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no control socket at {}",
                ctl.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Recorder {
            _tmp: tmp,
            dir,
            ctl,
            stats,
            child: Some(child),
        }
    }

    /// `framerec ctl --json ARGS` against this recorder: its exit code and JSON reply.
    fn ctl(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_framerec"))
            .arg("ctl")
            .arg("--socket")
            .arg(&self.ctl)
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("ctl {args:?}: {e}: {}", text(&out)));
        (out.status.code().unwrap_or(-1), v)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.ctl(args);
        assert_eq!(
            (code, &v["ok"]),
            (0, &Value::Bool(true)),
            "ctl {args:?}: {v}"
        );
        v
    }

    fn snapshot(&self) -> framerec::observe::Snapshot {
        framerec::serve::fetch(&self.stats).unwrap()
    }

    /// Stops the recorder through `ctl stop` and returns its JSON summary.
    fn stop(mut self) -> (Value, PathBuf, tempfile::TempDir) {
        assert_eq!(self.ok(&["stop"])["state"], "stopping");
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let summary = serde_json::from_slice(&out.stdout).unwrap();
        (
            summary,
            self.dir.clone(),
            std::mem::replace(&mut self._tmp, tempfile::tempdir().unwrap()),
        )
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `bytes` to the control socket and reads what comes back (empty: closed unanswered).
fn raw(path: &Path, bytes: &[u8], then_wait: Duration) -> Vec<u8> {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may stop reading (and close) before all of an oversized request is sent.
    let _ = s.write_all(bytes);
    std::thread::sleep(then_wait);
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    reply
}

fn assert_doctor_clean(dir: &Path) {
    for file in segments(dir) {
        let out = mcap_doctor(&file);
        let printed = text(&out);
        assert!(
            out.status.success()
                && !printed
                    .lines()
                    .any(|l| l.contains("Warning") || l.contains("Error")),
            "mcap doctor {}:\n{printed}",
            file.display()
        );
    }
}

fn verify(path: &Path) -> std::process::Output {
    common::framerec(&["verify", path.to_str().unwrap()])
}

#[test]
fn split_closes_the_segment_and_the_numbers_go_on_in_the_next() {
    let rec = Recorder::start();
    std::thread::sleep(Duration::from_millis(1500));
    let v = rec.ok(&["split"]);
    assert_eq!(
        (v["closed"]["id"].as_u64(), v["opened"]["id"].as_u64()),
        (Some(0), Some(1)),
        "{v}"
    );
    std::thread::sleep(Duration::from_millis(1000));
    let (summary, dir, _tmp) = rec.stop();
    let files = segments(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        let out = verify(f);
        assert!(out.status.success(), "{}: {}", f.display(), text(&out));
    }
    let seqs: Vec<u32> = common::read_with_mcap_crate(&dir)
        .iter()
        .map(|m| m.0)
        .collect();
    let want: Vec<u32> = (0..seqs.len() as u32).collect();
    assert_eq!(seqs, want, "no gap, no duplicate across the split");
    assert!(seqs.len() > 60, "{} frames", seqs.len());
    assert_eq!(
        summary["totals"]["written_frames"].as_u64(),
        Some(seqs.len() as u64)
    );
    assert_doctor_clean(&dir);
}

#[test]
fn frames_while_paused_are_counted_and_the_gap_is_explained() {
    let rec = Recorder::start();
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(rec.ok(&["pause"])["state"], "paused");
    let again = rec.ok(&["pause"]);
    assert_eq!(again["note"], "already paused", "{again}");
    std::thread::sleep(Duration::from_secs(2));
    let status = rec.ok(&["status"]);
    assert_eq!(status["state"], "paused");
    let (code, split) = rec.ctl(&["split"]);
    assert_eq!(code, 1, "a split while paused is refused: {split}");
    assert!(
        split["error"].as_str().unwrap().contains("paused"),
        "{split}"
    );
    assert_eq!(rec.ok(&["resume"])["state"], "recording");
    assert_eq!(rec.ok(&["resume"])["note"], "already recording");
    std::thread::sleep(Duration::from_millis(800));
    let snap = rec.snapshot();
    assert_eq!((snap.state.as_str(), snap.pauses), ("recording", 1));
    let (summary, dir, _tmp) = rec.stop();
    let totals = &summary["totals"];
    let paused = totals["paused_frames"].as_u64().unwrap();
    assert!(
        (40..=80).contains(&paused),
        "about 2 s at 30 fps paused: {summary}"
    );
    let dropped: u64 = totals["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(dropped, 0, "a pause is not a drop: {summary}");
    assert_eq!(
        totals["received_frames"].as_u64().unwrap(),
        totals["written_frames"].as_u64().unwrap() + paused
    );
    // The notice is in the file: verify names the gap as paused, and passes.
    let report = common::verify_dir(&dir);
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.dropped.get("paused").copied(),
        Some(paused),
        "{:?}",
        report.dropped
    );
    let out = verify(&dir);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{paused} skipped while paused")),
        "{}",
        text(&out)
    );
    // info says so too, and does not count them as dropped.
    let info = common::framerec(&["info", dir.to_str().unwrap()]);
    assert!(info.status.success(), "{}", text(&info));
    let said = text(&info);
    assert!(
        said.contains(&format!("skipped {paused} frames while paused")),
        "{said}"
    );
    let total = said.lines().find(|l| l.starts_with("total:")).unwrap();
    assert!(
        total.contains(" 0 dropped") && total.contains(&format!("{paused} skipped while paused")),
        "{total}"
    );
    assert_doctor_clean(&dir);
}

#[test]
fn bad_requests_are_answered_or_closed_counted_and_the_recording_goes_on() {
    let rec = Recorder::start();
    std::thread::sleep(Duration::from_millis(300));
    let before = rec.snapshot().received_frames;
    let garbage = raw(&rec.ctl, b"\x00\xff\x13 not json at all\n", Duration::ZERO);
    let garbage: Value = serde_json::from_slice(&garbage).unwrap();
    assert_eq!(garbage["ok"], false);
    assert!(
        garbage["error"]
            .as_str()
            .unwrap()
            .contains("not a JSON request"),
        "{garbage}"
    );
    let big = raw(&rec.ctl, &vec![b'{'; 1 << 20], Duration::ZERO);
    if !big.is_empty() {
        let big: Value = serde_json::from_slice(&big).unwrap();
        assert!(
            big["error"].as_str().unwrap().contains("longer than"),
            "{big}"
        );
    }
    let half = raw(&rec.ctl, b"{\"cmd\":", Duration::from_secs(3));
    if !half.is_empty() {
        let half: Value = serde_json::from_slice(&half).unwrap();
        assert!(
            half["error"].as_str().unwrap().contains("not finished"),
            "{half}"
        );
    }
    let unknown: Value =
        serde_json::from_slice(&raw(&rec.ctl, b"{\"cmd\":\"reboot\"}\n", Duration::ZERO)).unwrap();
    assert_eq!(unknown["ok"], false);
    assert!(
        unknown["error"]
            .as_str()
            .unwrap()
            .contains("unknown command \"reboot\""),
        "{unknown}"
    );
    let snap = rec.snapshot();
    assert!(
        snap.received_frames > before + 30,
        "{} then {}",
        before,
        snap.received_frames
    );
    let rejected = |k: &str| snap.control_rejected.get(k).copied().unwrap_or(0);
    assert_eq!(
        (
            rejected("malformed"),
            rejected("oversized"),
            rejected("incomplete")
        ),
        (2, 1, 1),
        "{:?}",
        snap.control_rejected
    );
    // Clients past the bound held at once are closed unanswered, and counted.
    let idle: Vec<UnixStream> = (0..16)
        .map(|_| UnixStream::connect(&rec.ctl).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(raw(&rec.ctl, b"{\"cmd\":\"status\"}\n", Duration::ZERO).is_empty());
    drop(idle);
    assert_eq!(rec.snapshot().control_rejected.get("busy"), Some(&1));
    // The idle clients' threads see them go and end.
    std::thread::sleep(Duration::from_millis(300));
    let status = rec.ok(&["status"]);
    assert_eq!(status["state"], "recording", "{status}");
    let metrics = rec.snapshot();
    assert!(metrics.control_ok >= 1);
    let _ = rec.stop();
}

#[test]
fn only_the_recorders_user_can_connect() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let rec = Recorder::start();
    let mode = std::fs::symlink_metadata(&rec.ctl)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // The directory lets anyone through: only the socket's own mode keeps them out.
    let parent = rec.ctl.parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .arg("ctl")
        .arg("--socket")
        .arg(&rec.ctl)
        .arg("status")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    // The recorder's own user still can.
    rec.ok(&["status"]);
    let _ = rec.stop();
}

#[test]
fn ctl_without_a_recorder_says_which_socket_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("none.ctl");
    let out = common::framerec(&["ctl", "--socket", path.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(path.to_str().unwrap()) && said.contains("no recorder answers"),
        "{said}"
    );
}

#[test]
fn a_split_in_the_fakenect_layout_is_refused_with_the_reason() {
    let rec = Recorder::start_with(&["--layout", "fakenect"]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, v) = rec.ctl(&["split"]);
    assert_eq!((code, &v["ok"]), (1, &Value::Bool(false)), "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("fakenect layout"),
        "{v}"
    );
    assert_eq!(rec.snapshot().control_rejected.get("refused"), Some(&1));
    let _ = rec.stop();
}
