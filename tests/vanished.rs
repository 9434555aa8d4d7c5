//! Success is never reported for frames that are not on disk: the output directory deleted or
//! made unwritable during a recording. The summary, the exit status and `verify` agree on what
//! was lost.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::text;

fn totals(stdout: &[u8]) -> serde_json::Value {
    let s = String::from_utf8_lossy(stdout);
    let start = s.find('{').expect("a JSON summary");
    let v: serde_json::Value = serde_json::from_str(&s[start..]).expect("JSON summary");
    v["totals"].clone()
}

fn dropped(t: &serde_json::Value, reason: &str) -> u64 {
    t["dropped"][reason].as_u64().unwrap_or(0)
}

fn spawn_record(cfg: &Path, dir: &Path, as_nobody: bool) -> std::process::Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_framerec"));
    c.args(["record", "--json", "--config", cfg.to_str().unwrap()])
        .args(["--out", dir.to_str().unwrap()])
        .args([
            "--fps",
            "60",
            "--width",
            "320",
            "--height",
            "240",
            "--duration",
            "3s",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if as_nobody {
        c.uid(65534).gid(65534);
    }
    c.spawn().unwrap()
}

#[test]
fn a_deleted_output_directory_is_a_loss_not_a_success() {
    deleted_directory("", Some(1));
}

/// `writer.fail-on-io-loss = false`: the same losses, counted and named, but exit 0.
#[test]
fn losses_to_the_disk_can_be_accepted_by_configuration() {
    deleted_directory("[writer]\nfail-on-io-loss = false\n", Some(0));
}

/// `rm -rf` of the output directory 1.2 s into a 3 s run, with `extra` configuration; the run
/// must exit with `status`.
fn deleted_directory(extra: &str, status: Option<i32>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[durability]\nfsync-interval-ms = 200\n[segment]\nmax-bytes = 8388608\n{extra}"),
    )
    .unwrap();
    let child = spawn_record(&cfg, &dir, false);
    std::thread::sleep(Duration::from_millis(1200));
    std::fs::remove_dir_all(&dir).unwrap();
    let out = child.wait_with_output().unwrap();
    let t = totals(&out.stdout);
    assert!(!dir.exists());
    assert_eq!(
        t["written_frames"].as_u64(),
        Some(0),
        "nothing is on disk, so nothing is written: {t}"
    );
    assert!(dropped(&t, "segment_deleted") > 0, "{t}");
    let dropped_all: u64 = t["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(t["received_frames"].as_u64().unwrap(), dropped_all, "{t}");
    assert_eq!(out.status.code(), status, "{}", text(&out));
    assert!(
        text(&out).contains("segment_deleted"),
        "the loss is named: {}",
        text(&out)
    );
}

/// Records as `nobody` into `TMP/rec`, with small segments (rotations keep needing new files)
/// and `writer_extra` in the `[writer]` table, and makes the directory read-only a second in.
fn record_into_a_directory_made_read_only(
    tmp: &Path,
    writer_extra: &str,
) -> (std::path::PathBuf, std::process::Output) {
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.join("rec");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let cfg = tmp.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[segment]\nmax-bytes = 1048576\n[writer]\nmax-write-bytes = 65536\n\
             preallocate-bytes = 0\n{writer_extra}"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = spawn_record(&cfg, &dir, true);
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = child.wait_with_output().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, out)
}

#[test]
fn an_unwritable_output_directory_is_named_as_a_gap_and_fails_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = record_into_a_directory_made_read_only(tmp.path(), "");
    let t = totals(&out.stdout);
    let lost = dropped(&t, "io_error");
    assert!(lost > 0, "frames were lost to the read-only directory: {t}");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // verify names every dropped frame as a gap, and counts what the summary counted.
    let v = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["verify", "--json", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(v.status.success(), "verify: {}", text(&v));
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    let r = &report[0]["report"];
    assert_eq!(r["frames"], t["written_frames"], "{r}\n{t}");
    assert_eq!(
        r["dropped"]["io_error"].as_u64(),
        Some(lost),
        "verify finds every lost frame named in the recording: {r}\n{t}"
    );
}

/// A recorder that gives up on a failing disk (`exit-when-degraded`) says the disk stopped it,
/// not a signal.
#[test]
fn a_run_the_disk_stopped_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (_dir, out) = record_into_a_directory_made_read_only(
        tmp.path(),
        "max-consecutive-failures = 2\nexit-when-degraded = true\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&s[s.find('{').unwrap()..]).unwrap();
    assert_eq!(json["stopped"], "disk-failure", "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(stopped: disk-failure)"),
        "{}",
        text(&out)
    );
    // Everything counted: received = written + dropped.
    let t = &json["totals"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let dropped: u64 = t["dropped"].as_object().unwrap().values().map(n).sum();
    assert_eq!(
        n(&t["received_frames"]),
        n(&t["written_frames"]) + dropped,
        "{t}"
    );
}

/// A file that stands where a later segment will be created is someone else's: the segment
/// cannot be created there, and the file is left exactly as it was.
#[test]
fn a_file_in_the_way_of_a_segment_is_never_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    std::fs::create_dir(&dir).unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[segment]\nmax-bytes = 1048576\n[writer]\nmax-write-bytes = 65536\n",
    )
    .unwrap();
    // Segments 0, 1, 2 ... are made as the run goes (about 9 a second); 15 is taken by then.
    let child = spawn_record(&cfg, &dir, false);
    std::thread::sleep(Duration::from_millis(300));
    let theirs = dir.join("0000000000000015.mcap");
    std::fs::write(&theirs, b"not framerec's").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        std::fs::read(&theirs).unwrap(),
        b"not framerec's",
        "{}",
        text(&out)
    );
}
