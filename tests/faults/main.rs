//! Faults: disk full, I/O errors, failed fsyncs, slow disks, overload. Each test checks the
//! accounting invariant: every frame the receiver accepted is written and found intact by
//! `verify`, or counted once in `dropped{reason}` and named by a drop notice in the files.

#[path = "../common/mod.rs"]
mod common;
mod faultfs;

use common::*;
use faultfs::FaultFs;

#[test]
fn a_recording_through_the_fault_filesystem_without_faults_is_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FaultFs::mount(&tmp.path().join("backing"), &tmp.path().join("mnt"));
    let dir = fs.mountpoint.join("rec");
    let cfg = config(&dir, 320, 240);
    let report = run(&cfg, 200);
    assert_eq!(report.totals.written_frames, 200);
    let v = verify_dir(&dir);
    assert!(v.ok, "{v:?}");
    assert!(
        fs.seen().writes > 0 && fs.seen().fsyncs > 0,
        "{:?}",
        fs.seen()
    );
}
