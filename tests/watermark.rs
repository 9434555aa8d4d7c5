//! The durable watermark never runs ahead of fsync: with fsyncs only when segments finalize, one
//! frame per segment and four writers, segments finish their fsyncs out of order; every
//! watermark the recorder logs must name only frames that a completed fsync (logged before it)
//! covered. `FRAMEREC_WATERMARK_RUNS` sets the number of runs (default 5; the issue's
//! acceptance used 20).

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;

use common::{spawn_framerec, text};

/// Parses `seqs=7-13,20-25` of an `fsynced` line.
fn fsynced(line: &str) -> Vec<(u64, u64)> {
    let Some(rest) = line.split("seqs=").nth(1) else {
        return Vec::new();
    };
    let list = rest.split_whitespace().next().unwrap_or("");
    list.split(',')
        .map(|r| {
            let (a, b) = r.split_once('-').expect("a range");
            (a.parse().unwrap(), b.parse().unwrap())
        })
        .collect()
}

/// Checks every `durable_seq=N` line against the `fsynced` lines before it; returns the number
/// of watermark advances and of fsync events, and the violations.
fn check_log(log: &str) -> (usize, usize, Vec<String>) {
    let mut synced = BTreeSet::new();
    let (mut marks, mut syncs) = (0, 0);
    let mut violations = Vec::new();
    for line in log.lines() {
        if line.contains(" fsynced ") || line.contains(" fsynced:") {
            syncs += 1;
            for (a, b) in fsynced(line) {
                synced.extend(a..=b);
            }
        } else if let Some(rest) = line.split("durable_seq=").nth(1) {
            let n: u64 = rest.split_whitespace().next().unwrap().parse().unwrap();
            marks += 1;
            if let Some(missing) = (0..=n).find(|s| !synced.contains(s)) {
                violations.push(format!(
                    "durable_seq={n} logged before frame {missing} was fsynced"
                ));
            }
        }
    }
    (marks, syncs, violations)
}

#[test]
fn the_watermark_never_names_a_frame_no_fsync_covered() {
    let runs: usize = std::env::var("FRAMEREC_WATERMARK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut total_violations = Vec::new();
    for run in 0..runs {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rec");
        let cfg = tmp.path().join("w.toml");
        std::fs::write(
            &cfg,
            "[durability]\nfsync-interval-ms = 0\n[segment]\nmax-bytes = 1048576\n\
             [writer]\nwriters = 4\npreallocate-bytes = 0\n",
        )
        .unwrap();
        let log_path = tmp.path().join("stderr.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = spawn_framerec(
            &[&[
                "record",
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                dir.to_str().unwrap(),
                "--fps",
                "0",
                "--frames",
                "300",
                "--width",
                "640",
                "--height",
                "480",
            ]],
            "framerec::sink=debug",
            Stdio::null(),
            log,
        );
        let status = child.wait().unwrap();
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(status.success(), "run {run}: record failed:\n{log}");
        let (marks, syncs, violations) = check_log(&log);
        assert!(marks > 10, "run {run}: only {marks} watermark advances");
        assert!(syncs > 10, "run {run}: only {syncs} fsyncs logged");
        total_violations.extend(violations.into_iter().map(|v| format!("run {run}: {v}")));
        let v = common::framerec(&["verify", dir.to_str().unwrap()]);
        assert!(v.status.success(), "run {run}: verify: {}", text(&v));
    }
    assert!(
        total_violations.is_empty(),
        "{} violations, e.g. {:?}",
        total_violations.len(),
        &total_violations[..total_violations.len().min(5)]
    );
}

#[test]
fn the_checker_finds_a_watermark_ahead_of_fsync() {
    let log = "x DEBUG framerec::sink: fsynced segment=0 seqs=0-3\n\
               x DEBUG framerec::sink: durable durable_seq=3\n\
               x DEBUG framerec::sink: fsynced segment=2 seqs=6-9\n\
               x DEBUG framerec::sink: durable durable_seq=9\n\
               x DEBUG framerec::sink: fsynced segment=1 seqs=4-5\n";
    let (marks, syncs, violations) = check_log(log);
    assert_eq!((marks, syncs), (2, 3));
    assert_eq!(
        violations,
        vec!["durable_seq=9 logged before frame 4 was fsynced"]
    );
}
