//! With io_uring switched off by the kernel (`kernel.io_uring_disabled = 2`), the recorder
//! falls back to blocking `pwrite` and says so, or fails clearly when told to insist. A test
//! binary of its own: the setting is machine-wide and restored when the test ends.

mod common;

use common::*;

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Sets the sysctl and puts the old value back when dropped (also on a failed assertion).
struct IoUringDisabled(String);

impl IoUringDisabled {
    fn set() -> IoUringDisabled {
        let old = std::fs::read_to_string(SYSCTL)
            .expect("the kernel has kernel.io_uring_disabled (Linux 6.6 or later)");
        std::fs::write(SYSCTL, "2").expect("set kernel.io_uring_disabled (the tests run as root)");
        IoUringDisabled(old.trim().to_string())
    }
}

impl Drop for IoUringDisabled {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
fn without_io_uring_the_recorder_falls_back_to_pwrite_or_fails_clearly_if_told_to_insist() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let _off = IoUringDisabled::set();
    let out = framerec(&[
        "record",
        "--frames",
        "60",
        "--no-pacing",
        "--out",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("io_uring is unavailable") && stderr.contains("pwrite"),
        "a clear warning: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["backend"], "pwrite",
        "the active backend is reported"
    );
    assert_eq!(summary["totals"]["written_frames"], 60, "{summary}");
    let v = verify_dir(&dir);
    assert!(v.ok && v.frames == 60, "{v:?}");

    let insist = framerec(&[
        "record",
        "--frames",
        "10",
        "--backend",
        "io-uring",
        "--out",
        tmp.path().join("insist").to_str().unwrap(),
    ]);
    assert_eq!(insist.status.code(), Some(2), "{}", text(&insist));
    assert!(
        text(&insist).contains("io_uring is unavailable") && text(&insist).contains("io-uring"),
        "{}",
        text(&insist)
    );
}
