//! `framerec tune` on tmpfs, ext4 on a loop device and the work disk, its `--write`, its
//! errors, and `record --io-mode` (these tests mount, so they run as root).

#[path = "common/mod.rs"]
mod common;

use std::path::Path;

use common::*;

/// Tuning runs one at a time: each measures the disk, and two at once would measure each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn tune(dir: &Path, extra: &[&str]) -> std::process::Output {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = vec!["tune", dir.to_str().unwrap(), "--seconds", "4"];
    args.extend_from_slice(extra);
    framerec(&args)
}

/// The table's line of `candidate` (e.g. "direct 4 MiB x2").
fn row<'a>(stdout: &'a str, candidate: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(&format!("{candidate} ")))
        .unwrap_or_else(|| panic!("no row {candidate}:\n{stdout}"))
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A 1 GiB ext4 image (sparse) mounted on `at`.
fn loop_ext4(tmp: &Path, at: &Path) -> Mounted {
    let img = tmp.join("ext4.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.ext4: {}", text(&out));
    Mounted::new(&["-o", "loop", img.to_str().unwrap()], at)
}

#[test]
fn tune_on_tmpfs_recommends_buffered_and_shows_direct_not_applicable() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    let _m = Mounted::new(&["-t", "tmpfs", "-o", "size=800m", "tmpfs"], &m);
    let out = tune(&m, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.contains("recommended: [writer] io-mode = \"buffered\""),
        "{stdout}"
    );
    let direct = row(&stdout, "direct 4 MiB x2");
    assert!(
        direct.contains("n/a") && direct.contains("tmpfs"),
        "{direct}"
    );
    let buffered = row(&stdout, "buffered 4 MiB x2");
    assert!(!buffered.contains("n/a"), "{buffered}");
    assert!(entries(&m).is_empty(), "left behind: {:?}", entries(&m));
}

#[test]
fn tune_on_a_loop_mounted_ext4_measures_both_modes_and_leaves_it_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    let _m = loop_ext4(tmp.path(), &m);
    let out = tune(&m, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.contains("recommended: [writer] io-mode = "),
        "{stdout}"
    );
    for candidate in ["direct 1 MiB x1", "direct 4 MiB x8", "buffered 4 MiB x2"] {
        let line = row(&stdout, candidate);
        let mb: f64 = line
            .split_whitespace()
            .nth(4)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("not measured: {line}"));
        assert!(mb > 0.0, "{line}");
    }
    assert_eq!(entries(&m), vec!["lost+found".to_string()]);
}

#[test]
fn tune_on_the_work_disk_writes_a_config_that_check_config_accepts() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let dir = tmp.path().join("disk");
    std::fs::create_dir(&dir).unwrap();
    let cfg = tmp.path().join("framerec.toml");
    let shipped = include_str!("../config/framerec.toml");
    std::fs::write(&cfg, shipped).unwrap();
    let out = tune(&dir, &["--write", cfg.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(entries(&dir).is_empty(), "left behind: {:?}", entries(&dir));
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert_ne!(written, shipped, "nothing was stored");
    // The comments are kept: every comment line of the shipped file is still there.
    for comment in shipped.lines().filter(|l| l.starts_with('#')) {
        assert!(written.contains(comment), "lost: {comment}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let recommended = stdout
        .lines()
        .find_map(|l| l.strip_prefix("recommended: [writer] "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let parsed = framerec::config::load(&cfg).unwrap();
    let mode = parsed.writer.io_mode.as_str();
    assert!(
        recommended.contains(&format!("io-mode = \"{mode}\""))
            && recommended.contains(&format!("writers = {}", parsed.writer.writers))
            && recommended.contains(&format!(
                "max-write-bytes = {}",
                parsed.writer.max_write_bytes
            )),
        "{recommended} vs {:?}",
        parsed.writer
    );
    let check = framerec(&["check-config", cfg.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn tune_refuses_a_missing_directory_a_bad_budget_and_a_missing_config() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let out = tune(&missing, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("does not exist"), "{}", text(&out));
    assert!(!missing.exists());

    for bad in ["0", "3", "many"] {
        let out = framerec(&["tune", tmp.path().to_str().unwrap(), "--seconds", bad]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("--seconds"), "{bad}: {}", text(&out));
    }

    let cfg = tmp.path().join("none.toml");
    let out = tune(tmp.path(), &["--write", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("none.toml"), "{}", text(&out));
    assert!(entries(tmp.path()).is_empty());
}

/// `record --json`'s `io_mode`, and what the log says of it.
fn record_io_mode(dir: &Path, extra: &[&str]) -> (String, String) {
    let mut args = vec!["record", "--out", dir.to_str().unwrap(), "--frames", "10"];
    args.extend_from_slice(&["--json", "--stats-socket", "off"]);
    args.extend_from_slice(extra);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(&args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (json["io_mode"].as_str().unwrap_or("?").to_string(), log)
}

#[test]
fn record_chooses_the_io_mode_by_the_filesystem_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, e) = (tmp.path().join("t"), tmp.path().join("e"));
    let _t = Mounted::new(&["-t", "tmpfs", "-o", "size=64m", "tmpfs"], &t);
    let _e = loop_ext4(tmp.path(), &e);

    let (mode, log) = record_io_mode(&t.join("rec"), &[]);
    assert_eq!(mode, "buffered", "{log}");
    assert!(
        log.contains("io mode buffered (auto: tmpfs is memory"),
        "{log}"
    );

    let (mode, log) = record_io_mode(&e.join("rec"), &[]);
    assert_eq!(mode, "direct", "{log}");
    assert!(
        log.contains("io mode direct (auto: ext4 accepts O_DIRECT)"),
        "{log}"
    );
    assert!(
        !entries(&e.join("rec")).iter().any(|n| n.contains("probe")),
        "the probe file was left"
    );

    let (mode, _) = record_io_mode(&e.join("rec2"), &["--io-mode", "buffered"]);
    assert_eq!(mode, "buffered");
    let (mode, _) = record_io_mode(&e.join("rec3"), &["--direct-io"]);
    assert_eq!(mode, "direct");
    let (mode, log) = record_io_mode(&e.join("rec4"), &["--profile", "ros2"]);
    assert_eq!(mode, "buffered", "{log}");
    assert!(log.contains("ros2 profile refuses O_DIRECT"), "{log}");

    let both = framerec(&["record", "--io-mode", "buffered", "--direct-io"]);
    assert_eq!(both.status.code(), Some(2), "{}", text(&both));
}

#[test]
fn tune_refuses_a_directory_without_room_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    let _m = Mounted::new(&["-t", "tmpfs", "-o", "size=64m", "tmpfs"], &m);
    let out = tune(&m, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("free some space"), "{}", text(&out));
    assert!(entries(&m).is_empty(), "left behind: {:?}", entries(&m));
}

#[test]
fn tune_interrupted_by_ctrl_c_removes_its_scratch_directory() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["tune", tmp.path().to_str().unwrap(), "--seconds", "60"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Until a run is under way: the scratch directory holds a recording.
    let started = std::time::Instant::now();
    while entries(tmp.path()).is_empty() && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!entries(tmp.path()).is_empty(), "tuning never started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    assert!(
        entries(tmp.path()).is_empty(),
        "left behind: {:?}",
        entries(tmp.path())
    );
}

#[test]
fn a_run_past_its_stop_timeout_reports_the_io_mode_auto_resolved_to() {
    let tmp = tempfile::tempdir().unwrap();
    let e = tmp.path().join("e");
    let _e = loop_ext4(tmp.path(), &e);
    let mut cfg = config(&e.join("rec"), 64, 48);
    cfg.stats.socket = framerec::config::StatsSocket::Off;
    cfg.writer.write_delay = std::time::Duration::from_millis(1500);
    cfg.writer.stop_timeout = std::time::Duration::from_secs(1);
    let report = record_frames(&cfg, 5);
    assert!(
        matches!(
            report.failure,
            Some(framerec::recorder::RunFailure::StopTimeout { .. })
        ),
        "{:?}",
        report.failure
    );
    assert!(report.direct_io, "auto chose direct on ext4: {report:?}");
    // The abandoned writers finish their delayed writes before the filesystem is unmounted.
    std::thread::sleep(std::time::Duration::from_secs(4));
}
