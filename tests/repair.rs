//! Repair is crash-safe at every step and never reuses a sequence number: a kill injected at each
//! step of `recover` and of the repair at the start of `record` (failpoints, see
//! `src/failpoint.rs`), then `recover` again, leaves every frame the uninterrupted repair keeps,
//! and a later run continues above every number in the directory, side files included.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use common::{framerec, segments, text};
use framerec::segment::segment_messages;

const STEPS: [&str; 3] = ["repair-written", "repair-linked", "repair-renamed"];

/// Sequence numbers of the frames in the recording's segments (side files not included).
fn seqs(dir: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for p in segments(dir) {
        let bytes = std::fs::read(&p).unwrap();
        out.extend(
            segment_messages(&bytes)
                .iter()
                .map(|m| u64::from(m.sequence)),
        );
    }
    out
}

fn record(dir: &Path, frames: u32, failpoint: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_framerec"));
    c.args(["record", "--fps", "0", "--width", "160", "--height", "120"])
        .args([
            "--frames",
            &frames.to_string(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn");
    if let Some(f) = failpoint {
        c.env("FRAMEREC_FAILPOINT", f);
    }
    c.output().unwrap()
}

/// A recording of 3 finished segments (6 frames each) and a fourth cut in the middle of its data, as a crash
/// leaves it.
fn crashed(dir: &Path) {
    let cfg = dir.with_extension("toml");
    std::fs::write(
        &cfg,
        "[segment]\nmax-bytes = 1048576\n[writer]\nmax-write-bytes = 65536\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--config", cfg.to_str().unwrap()])
        .args([
            "--fps", "0", "--width", "320", "--height", "240", "--frames", "24",
        ])
        .args(["--out", dir.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let segs = segments(dir);
    assert_eq!(segs.len(), 4, "{segs:?}");
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len * 6 / 10).unwrap();
}

/// The failpoint fired: the process died of SIGKILL (9), as in a crash.
fn killed(o: &std::process::Output) -> bool {
    o.status.signal() == Some(9)
}

/// What an uninterrupted `recover` keeps of a crashed recording.
fn reference() -> Vec<u64> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    crashed(&dir);
    let r = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    let kept = seqs(&dir);
    assert!(!kept.is_empty());
    kept
}

/// After any interruption: `recover` finishes, `verify` passes with the reference's frames, and
/// a new run continues above every number, without duplicates.
fn check_after(dir: &Path, kept: &[u64], step: &str) {
    let r = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(r.status.success(), "{step}: recover again: {}", text(&r));
    let v = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(v.status.success(), "{step}: verify: {}", text(&v));
    assert_eq!(seqs(dir), kept, "{step}: frames after recovery");
    let more = record(dir, 5, None);
    assert!(
        more.status.success(),
        "{step}: record again: {}",
        text(&more)
    );
    let all = seqs(dir);
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "{step}: a sequence number repeats");
    let new: Vec<u64> = all[kept.len()..].to_vec();
    let highest = *kept.iter().max().unwrap();
    assert!(
        new.len() == 5 && new.iter().all(|s| *s > highest),
        "{step}: new frames {new:?} must follow {highest}"
    );
    let v = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "{step}: verify at the end: {}",
        text(&v)
    );
}

#[test]
fn a_kill_at_each_step_of_recover_loses_nothing() {
    let kept = reference();
    for step in STEPS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        crashed(&dir);
        let out = Command::new(env!("CARGO_BIN_EXE_framerec"))
            .args(["recover", dir.to_str().unwrap()])
            .env("FRAMEREC_FAILPOINT", step)
            .output()
            .unwrap();
        assert!(killed(&out), "{step}: not killed: {}", text(&out));
        // Whatever the step, the segment is in place under its own name.
        assert_eq!(segments(&dir).len(), 4, "{step}");
        check_after(&dir, &kept, step);
    }
}

#[test]
fn a_kill_at_each_step_of_the_repair_at_start_loses_nothing() {
    let kept = reference();
    for step in STEPS {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        crashed(&dir);
        let out = record(&dir, 5, Some(step));
        assert!(killed(&out), "{step}: not killed: {}", text(&out));
        check_after(&dir, &kept, step);
    }
}

/// The state an earlier version's repair left when killed between its two renames: the original
/// renamed away, the rebuilt segment beside it. The next repair finishes the swap.
#[test]
fn a_repair_finishes_what_an_older_interrupted_repair_left() {
    let kept = reference();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    crashed(&dir);
    let last = segments(&dir).pop().unwrap();
    // Make the rebuilt segment from a copy, then lay the files out as the old repair did.
    let copy = tmp.path().join("copy.mcap");
    std::fs::copy(&last, &copy).unwrap();
    let r = framerec(&["recover", "--discard-damaged", copy.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    let side = |s: &str| std::path::PathBuf::from(format!("{}{s}", last.display()));
    std::fs::rename(&last, side(".damaged")).unwrap();
    std::fs::rename(&copy, side(".recovering")).unwrap();
    // `verify` on this state must not call the recording intact with frames only in side files.
    check_after(&dir, &kept, "old layout");
    assert!(!side(".recovering").exists());
}

/// Frames that are only in a side file (a damaged original) still hold their numbers: a new run
/// continues above them, under the same recording.
#[test]
fn sequence_numbers_in_side_files_are_never_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = record(&dir, 12, None);
    assert!(out.status.success(), "{}", text(&out));
    let only = segments(&dir).pop().unwrap();
    let aside = format!("{}.damaged", only.display());
    std::fs::rename(&only, &aside).unwrap();
    let out = record(&dir, 3, None);
    assert!(out.status.success(), "{}", text(&out));
    let s = seqs(&dir);
    assert_eq!(
        s,
        vec![12, 13, 14],
        "the new run must continue above the side file's frames"
    );
    assert!(Path::new(&aside).exists(), "the side file is kept");
}
