//! Faults: disk full, I/O errors, failed fsyncs, slow disks, overload. Each test checks the
//! accounting invariant: every frame the receiver accepted is written and found intact by
//! `verify`, or counted once in `dropped{reason}` and named by a drop notice in the files.

#[path = "../common/mod.rs"]
mod common;
mod faultfs;

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use common::*;
use faultfs::FaultFs;
use framerec::config::{Config, SourceConfig};
use framerec::recorder::{RunFailure, RunReport};
use framerec::segment::RecordingReport;

/// `frames` synthetic `width`x`height` frames at `fps` into `dir`.
fn paced(dir: &Path, width: u32, height: u32, fps: u32) -> Config {
    let mut cfg = config(dir, width, height);
    if let SourceConfig::Synthetic(s) = &mut cfg.source {
        s.fps = fps;
    }
    cfg
}

fn start(cfg: &Config, frames: u64) -> JoinHandle<RunReport> {
    let cfg = cfg.clone();
    std::thread::spawn(move || record_frames(&cfg, frames))
}

fn dropped(r: &RunReport, reason: &str) -> u64 {
    r.totals.dropped.get(reason).copied().unwrap_or(0)
}

/// Tests take turns: the latency tests run alone, the others side by side. (The two cores are
/// shared with every running test's FUSE server and writers; a latency measured beside them
/// measures them.)
static TURNS: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn turn() -> std::sync::RwLockReadGuard<'static, ()> {
    TURNS.read().unwrap_or_else(|p| p.into_inner())
}

fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    TURNS.write().unwrap_or_else(|p| p.into_inner())
}

/// The accounting invariant, against the run's totals and `verify`: every received frame is
/// written or dropped once; verify finds exactly the written frames intact, and drop notices
/// naming exactly the dropped ones, reason by reason.
fn assert_accounted(r: &RunReport, dir: &Path) -> RecordingReport {
    let t = &r.totals;
    let dropped: u64 = t.dropped.values().sum();
    assert_eq!(t.received_frames, t.written_frames + dropped, "{t:?}");
    let v = verify_dir(dir);
    let problems: Vec<_> = v.segments.iter().flat_map(|s| &s.problems).collect();
    assert!(v.ok, "{:?} {problems:?}", v.problems);
    assert_eq!(v.frames, t.written_frames, "verify's frames = written");
    for (reason, n) in &t.dropped {
        assert_eq!(
            v.dropped.get(*reason).copied().unwrap_or(0),
            *n,
            "{reason}: the files name every dropped frame ({:?} vs {:?})",
            v.dropped,
            t.dropped
        );
    }
    if dropped == 0 {
        assert_eq!(t.durable_seq, v.last_seq, "durable through the last frame");
    }
    v
}

/// A fault filesystem over a fresh temporary directory, and the recording directory `name` in
/// it. Keep the `TempDir` until the end of the test (it outlives the mount).
fn mounted(name: &str) -> (tempfile::TempDir, FaultFs, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let fs = FaultFs::mount(&tmp.path().join("backing"), &tmp.path().join("mnt"));
    let dir = fs.mountpoint.join(name);
    (tmp, fs, dir)
}

#[test]
fn a_recording_through_the_fault_filesystem_without_faults_is_intact() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    let cfg = config(&dir, 320, 240);
    let report = run(&cfg, 200);
    assert_eq!(report.totals.written_frames, 200);
    assert_accounted(&report, &dir);
    assert!(
        fs.seen().writes > 0 && fs.seen().fsyncs > 0,
        "{:?}",
        fs.seen()
    );
}

/// Small frames (one FUSE request per write) at 100 fps, so one failed request is one failed
/// write of the recorder.
fn small(dir: &Path) -> Config {
    paced(dir, 64, 64, 100)
}

#[test]
fn a_write_failing_once_cuts_its_segment_and_recording_goes_on() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    let rec = start(&small(&dir), 300);
    std::thread::sleep(Duration::from_millis(1000));
    fs.plan(|p| p.fail_writes = 1);
    let r = rec.join().unwrap();
    went_on_losing_only_to_the_disk(&r);
    assert_eq!(fs.seen().failed_writes, 1);
    assert_eq!(r.totals.failures, 1);
    let lost = dropped(&r, "io_error");
    assert!(
        lost >= 1,
        "the failed write's frames are dropped: {:?}",
        r.totals
    );
    let v = assert_accounted(&r, &dir);
    assert!(v.segments.len() >= 2, "rolled to a new segment");
    assert!(
        v.last_seq == Some(299) && r.totals.written_frames >= 290,
        "recording went on: {:?}",
        r.totals
    );
}

#[test]
fn short_writes_are_completed_and_nothing_is_lost() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    fs.plan(|p| p.short_every = Some(3));
    let r = run(&config(&dir, 320, 240), 150);
    assert!(fs.seen().short_writes > 10, "{:?}", fs.seen());
    assert_eq!(r.totals.written_frames, 150);
    assert_accounted(&r, &dir);
}

#[test]
fn persistent_write_errors_degrade_then_stop_the_recorder_when_configured() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    let mut cfg = small(&dir);
    cfg.writer.max_consecutive_failures = 3;
    cfg.writer.exit_when_degraded = true;
    let rec = start(&cfg, 100_000);
    std::thread::sleep(Duration::from_millis(800));
    fs.plan(|p| p.fail_writes = u64::MAX);
    let r = rec.join().unwrap();
    let failure = r.failure.as_ref().expect("the recorder stops").to_string();
    assert!(
        failure.contains("failed in a row") && failure.contains("Input/output error"),
        "{failure}"
    );
    assert!(r.totals.failures >= 3, "{:?}", r.totals);
    let t = &r.totals;
    let lost: u64 = t.dropped.values().sum();
    assert!(dropped(&r, "io_error") > 0);
    assert_eq!(t.received_frames, t.written_frames + lost, "{t:?}");
    // The disk refuses everything: no drop notice can be written, and the segment whose
    // summary could not be written is left for `recover`. Every frame it holds is intact.
    fs.plan(|p| p.fail_writes = 0);
    let out = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let v = verify_dir(&dir);
    assert!(v.ok, "{v:?}");
    assert_eq!(v.frames, t.written_frames);
    assert!(
        v.last_seq.unwrap() < t.received_frames - lost,
        "only the frames before the failures are in the files"
    );
}

#[test]
fn persistent_write_errors_keep_the_daemon_recording_once_the_disk_recovers() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    let mut cfg = small(&dir);
    cfg.writer.max_consecutive_failures = 2;
    let rec = start(&cfg, 500);
    std::thread::sleep(Duration::from_millis(1000));
    fs.plan(|p| p.fail_writes = u64::MAX);
    std::thread::sleep(Duration::from_millis(1500));
    fs.plan(|p| p.fail_writes = 0);
    let r = rec.join().unwrap();
    went_on_losing_only_to_the_disk(&r);
    assert!(r.totals.failures >= 2, "{:?}", r.totals);
    assert!(
        dropped(&r, "io_error") >= 100,
        "1.5 s of frames: {:?}",
        r.totals
    );
    let out = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let v = assert_accounted(&r, &dir);
    assert_eq!(v.last_seq, Some(499), "recording resumed when the disk did");
}

#[test]
fn a_failed_fsync_drops_what_it_did_not_make_durable_and_never_counts_it_durable() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    let mut cfg = small(&dir);
    cfg.durability.fsync_interval = Some(Duration::from_millis(500));
    let rec = start(&cfg, 400);
    std::thread::sleep(Duration::from_millis(1200));
    fs.plan(|p| p.fail_fsyncs = 1);
    let r = rec.join().unwrap();
    went_on_losing_only_to_the_disk(&r);
    assert_eq!(fs.seen().failed_fsyncs, 1);
    let lost = dropped(&r, "fsync_error");
    assert!(
        (1..=80).contains(&lost),
        "the frames written since the last good fsync (<= 0.5 s + a write): {:?}",
        r.totals
    );
    let v = assert_accounted(&r, &dir);
    assert_eq!(v.last_seq, Some(399));
    assert_eq!(r.totals.durable_seq, Some(399));
}

#[test]
fn frames_in_flight_when_an_fsync_fails_are_written_again_to_the_next_segment() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    // Every write takes 30 ms: writes are always in flight behind the fsync that fails.
    fs.plan(|p| p.delay = Some((Duration::from_millis(30), 1)));
    let mut cfg = small(&dir);
    cfg.durability.fsync_interval = Some(Duration::from_millis(500));
    let rec = start(&cfg, 400);
    std::thread::sleep(Duration::from_millis(1200));
    fs.plan(|p| p.fail_fsyncs = 1);
    let r = rec.join().unwrap();
    went_on_losing_only_to_the_disk(&r);
    assert_eq!(fs.seen().failed_fsyncs, 1);
    eprintln!(
        "fsync failed with writes in flight: {} frames written again, {} dropped as fsync_error",
        r.totals.frames_rewritten,
        dropped(&r, "fsync_error")
    );
    assert!(r.totals.frames_rewritten > 0, "{:?}", r.totals);
    let v = assert_accounted(&r, &dir);
    assert_eq!(v.last_seq, Some(399));
}

#[test]
fn disk_full_without_preallocation_cuts_the_segment_and_counts_disk_full() {
    let _turn = turn();
    // FUSE cannot fallocate: the full disk is found by a failing write.
    let (_tmp, fs, dir) = mounted("rec");
    fs.plan(|p| p.capacity = Some(3 << 20));
    let mut cfg = paced(&dir, 160, 120, 200);
    cfg.stats.interval_log = None;
    let rec = start(&cfg, 600);
    std::thread::sleep(Duration::from_millis(2000));
    assert!(fs.seen().enospc > 0, "{:?}", fs.seen());
    fs.plan(|p| p.capacity = Some(64 << 20));
    let r = rec.join().unwrap();
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert!(dropped(&r, "disk_full") > 0, "{:?}", r.totals);
    let v = assert_accounted(&r, &dir);
    assert_eq!(
        v.last_seq,
        Some(599),
        "recording resumed once space came back"
    );
}

#[test]
fn under_the_free_space_floor_frames_are_refused_until_space_returns() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    fs.plan(|p| p.capacity = Some(12 << 20));
    let mut cfg = paced(&dir, 160, 120, 200);
    cfg.writer.min_free_bytes = 8 << 20;
    // A short queue: what is queued when the floor is reached still gets written.
    cfg.queue.max_frames = 16;
    cfg.stats.interval_log = None;
    let rec = start(&cfg, 1000);
    std::thread::sleep(Duration::from_millis(2500));
    let used = fs.used();
    assert!(
        (4 << 20..9 << 20).contains(&used),
        "writing stopped near the floor, not at the end of the disk: {used} bytes used"
    );
    assert_eq!(fs.seen().enospc, 0, "the disk itself never filled");
    fs.plan(|p| p.capacity = Some(256 << 20));
    let r = rec.join().unwrap();
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert!(dropped(&r, "disk_full") > 100, "{:?}", r.totals);
    let v = assert_accounted(&r, &dir);
    assert_eq!(v.last_seq, Some(999), "admission resumed");
}

#[test]
fn the_per_frame_layout_holds_the_free_space_floor_too() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("dump");
    fs.plan(|p| p.capacity = Some(12 << 20));
    let mut cfg = paced(&dir, 160, 120, 100);
    cfg.layout = framerec::config::Layout::Fakenect;
    cfg.writer.min_free_bytes = 8 << 20;
    cfg.queue.max_frames = 16;
    cfg.stats.interval_log = None;
    let rec = start(&cfg, 500);
    std::thread::sleep(Duration::from_millis(2500));
    let used = fs.used();
    assert!(
        used < 9 << 20,
        "writing stopped near the floor, not at the end of the disk: {used} bytes used"
    );
    assert_eq!(fs.seen().enospc, 0, "the disk itself never filled");
    fs.plan(|p| p.capacity = Some(256 << 20));
    let r = rec.join().unwrap();
    assert!(r.failure.is_none(), "{:?}", r.failure);
    let full = dropped(&r, "disk_full");
    assert!(full > 0, "{:?}", r.totals);
    let t = &r.totals;
    let all: u64 = t.dropped.values().sum();
    assert_eq!(t.received_frames, 500);
    assert_eq!(t.received_frames, t.written_frames + all, "{t:?}");
    let v = verify_cli(&dir);
    let report = &v[0]["fakenect"];
    assert_eq!(report["ok"], true, "{v}");
    assert_eq!(report["frames"], t.written_frames, "{v}");
    assert_eq!(report["dropped"], all, "DROPS.txt names them: {v}");
}

/// A filesystem mounted for one test, unmounted when dropped.
/// Records unpaced 320x240 frames into `dir` until well past full, then checks that the full
/// disk was met between writes (preallocation): frames dropped as `disk_full`, none as
/// `io_error`, every segment closed and intact, and the recorder ran to its frame limit.
fn fill_up(dir: &Path, fs_bytes: u64) {
    let frames = 3 * fs_bytes / 153_600;
    let mut cfg = config(dir, 320, 240);
    cfg.writer.preallocate_bytes = 4 << 20;
    cfg.stats.interval_log = None;
    let r = run(&cfg, frames);
    assert_eq!(r.totals.received_frames, frames);
    let full = dropped(&r, "disk_full");
    assert!(full > frames / 2, "{:?}", r.totals);
    assert_eq!(dropped(&r, "io_error"), 0, "no write failed mid-frame");
    let v = assert_accounted(&r, dir);
    eprintln!(
        "{}: {} frames received, {} written ({} bytes), {} dropped as disk_full, {} segments, failures {}",
        dir.display(),
        frames,
        r.totals.written_frames,
        r.totals.written_bytes,
        full,
        v.segments.len(),
        r.totals.failures
    );
    assert!(v.segments.iter().all(|s| s.finalized), "{v:?}");
    assert!(
        r.totals.written_bytes > fs_bytes / 2,
        "the disk was used before frames were dropped: {:?}",
        r.totals
    );
}

#[test]
fn disk_full_on_tmpfs_is_met_between_writes_and_counted() {
    let _turn = turn();
    let tmp = tempfile::tempdir().unwrap();
    let _m = Mounted::new(
        &["-t", "tmpfs", "-o", "size=24m", "tmpfs"],
        &tmp.path().join("m"),
    );
    fill_up(&tmp.path().join("m/rec"), 24 << 20);
}

#[test]
fn disk_full_on_a_loop_mounted_ext4_is_met_between_writes_and_counted() {
    let _turn = turn();
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("ext4.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let out = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .output()
        .unwrap();
    assert!(out.status.success(), "mkfs.ext4: {}", text(&out));
    let _m = Mounted::new(
        &["-o", "loop", img.to_str().unwrap()],
        &tmp.path().join("m"),
    );
    fill_up(&tmp.path().join("m/rec"), 40 << 20);
}

/// 30 fps of 640x480 frames for 6 s while every 50th write request to the disk stalls 500 ms.
fn stalled(queue_frames: usize) -> RunReport {
    let (_tmp, fs, dir) = mounted("rec");
    fs.plan(|p| p.delay = Some((Duration::from_millis(500), 50)));
    let mut cfg = paced(&dir, 640, 480, 30);
    cfg.queue.max_frames = queue_frames;
    let r = run(&cfg, 180);
    assert!(fs.seen().delayed_writes >= 4, "{:?}", fs.seen());
    assert_accounted(&r, &dir);
    eprintln!(
        "queue of {queue_frames} frames, {} stalls of 500 ms: {:?}",
        fs.seen().delayed_writes,
        r.totals
    );
    r
}

/// An enqueue that waited on a 500 ms stall takes at least 500 ms; one that did not takes
/// microseconds, plus whatever the scheduler adds on a loaded machine (5 ms seen with other
/// builds running on both cores). A tenth of the stall tells the two apart without timing the
/// machine; the microsecond figures of a quiet machine are in `benches/results/soak-stats.txt`.
const NOT_HELD_UP_NS: u64 = 50_000_000;

#[test]
fn stalls_the_queue_covers_lose_nothing_and_never_hold_up_the_receiver() {
    // Measures the receiver's latency: no other test's FUSE server or writers on the cores.
    let _turn = alone();
    let r = stalled(256);
    assert_eq!(r.totals.dropped.values().sum::<u64>(), 0, "{:?}", r.totals);
    let enqueue = &r.histograms.enqueue_ns;
    let p999 = enqueue.value_at_quantile(0.999);
    eprintln!(
        "enqueue during 500 ms stalls: n={} p50={} ns p99.9={} ns max={} ns",
        enqueue.len(),
        enqueue.value_at_quantile(0.5),
        p999,
        enqueue.max()
    );
    assert_eq!(enqueue.len(), 180);
    assert!(p999 < NOT_HELD_UP_NS, "enqueue p99.9 {p999} ns");
    let written = &r.histograms.capture_to_written_ns;
    assert!(
        written.max() >= 400_000_000,
        "the stalls really held writes up: max capture to written {} ns",
        written.max()
    );
}

#[test]
fn stalls_longer_than_the_queue_drop_exactly_what_did_not_fit() {
    // Measures the receiver's latency: no other test's FUSE server or writers on the cores.
    let _turn = alone();
    let r = stalled(4);
    let full = dropped(&r, "queue_full");
    assert!(full > 0, "{:?}", r.totals);
    let p999 = r.histograms.enqueue_ns.value_at_quantile(0.999);
    assert!(p999 < NOT_HELD_UP_NS, "enqueue p99.9 {p999} ns");
}

/// Starts the binary recording 64x64 frames at 100 fps into `dir` with `stop-timeout-s`,
/// waits until it has written, stalls every segment write by `stall`, and sends SIGTERM.
fn sigterm_during_a_stall(
    fs: &FaultFs,
    dir: &Path,
    stop_timeout_s: u64,
    stall: Duration,
) -> (std::process::Output, std::time::SystemTime) {
    let conf = dir.with_extension("toml");
    std::fs::write(
        &conf,
        format!(
            "[source]\nwidth = 64\nheight = 64\nfps = 100\n[writer]\nstop-timeout-s = {stop_timeout_s}\n[stats]\nsocket = \"off\"\n"
        ),
    )
    .unwrap();
    let child = spawn_framerec(
        &[&[
            "record",
            "--config",
            conf.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ]],
        "warn",
        std::process::Stdio::piped(),
        std::process::Stdio::piped(),
    );
    std::thread::sleep(Duration::from_millis(800));
    assert!(fs.seen().writes > 10, "recording: {:?}", fs.seen());
    fs.plan(|p| p.delay = Some((stall, 1)));
    std::thread::sleep(Duration::from_millis(300));
    let asked = std::time::SystemTime::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    (out, asked)
}

#[test]
fn sigterm_during_a_stall_longer_than_the_stop_timeout_exits_in_time_and_says_to_recover() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    let (out, asked) = sigterm_during_a_stall(&fs, &dir, 1, Duration::from_secs(4));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let log = text(&out);
    let line = log
        .lines()
        .find(|l| l.contains("stopping took longer than writer.stop-timeout-s"))
        .unwrap_or_else(|| panic!("the recorder says it gave up: {log}"));
    assert!(line.contains("framerec recover"), "{line}");
    // When it said so, by its log's timestamp. (The process itself is gone only once the disk
    // answers the writes the kernel already has: those are in no process's hands.)
    let stamp = humantime::parse_rfc3339(line.split_whitespace().next().unwrap()).unwrap();
    let took = stamp.duration_since(asked).unwrap();
    assert!(
        took < Duration::from_millis(2000),
        "gave up {took:?} after SIGTERM"
    );
    // Let the stalled writes land, then repair and check what is on disk.
    std::thread::sleep(Duration::from_secs(6));
    fs.plan(|p| p.delay = None);
    let rec = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(rec.status.success(), "{}", text(&rec));
    let v = verify_dir(&dir);
    assert!(v.ok && v.frames > 50, "{v:?}");
}

#[test]
fn sigterm_during_a_stall_shorter_than_the_stop_timeout_drains_everything() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("rec");
    let (out, asked) = sigterm_during_a_stall(&fs, &dir, 30, Duration::from_millis(300));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        asked.elapsed().unwrap() > Duration::from_millis(300),
        "it waited for the disk"
    );
    fs.plan(|p| p.delay = None);
    let v = verify_dir(&dir);
    assert!(v.ok, "{v:?}");
    let summary = text(&out);
    assert!(
        summary.contains(&format!("written {},", v.frames)) && summary.contains("dropped 0"),
        "{summary}"
    );
}

/// Peak resident memory (VmHWM, bytes) of an unpaced recorder writing to a disk that takes
/// 100 ms per write, with a queue budget of `budget` bytes; and its JSON summary.
fn overloaded(budget: u64, dir: &Path) -> (u64, serde_json::Value) {
    let conf = dir.with_extension("toml");
    std::fs::write(
        &conf,
        format!(
            "[queue]\nmax-bytes = {budget}\nmax-frames = 4096\noverflow = \"drop-newest\"\n[stats]\nsocket = \"off\"\n"
        ),
    )
    .unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--config", conf.to_str().unwrap(), "--fps", "0"])
        .args(["--duration", "4s", "--json", "--out", dir.to_str().unwrap()])
        .env("FRAMEREC_TEST_WRITE_DELAY_MS", "100")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    while let Ok(s) = std::fs::read_to_string(&status) {
        if s.contains("State:\tZ") {
            break;
        }
        if let Some(kib) = s
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        {
            peak_kib = kib;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (
        peak_kib << 10,
        serde_json::from_slice(&out.stdout).expect("JSON summary"),
    )
}

#[test]
fn overload_keeps_memory_within_the_queue_budget_and_drops_exactly() {
    let _turn = turn();
    let tmp = tempfile::tempdir().unwrap();
    let mut peaks = Vec::new();
    for budget in [32u64 << 20, 96 << 20] {
        let dir = tmp.path().join(format!("rec-{}", budget >> 20));
        let (peak, summary) = overloaded(budget, &dir);
        eprintln!(
            "queue budget {} MiB: peak RSS {:.1} MiB",
            budget >> 20,
            peak as f64 / (1 << 20) as f64
        );
        let t = &summary["totals"];
        let (received, written) = (
            t["received_frames"].as_u64().unwrap(),
            t["written_frames"].as_u64().unwrap(),
        );
        let full = t["dropped"]["queue_full"].as_u64().unwrap();
        assert!(full > 1000, "overloaded: {t}");
        assert_eq!(received, written + full, "{t}");
        let v = verify_dir(&dir);
        assert!(v.ok, "{v:?}");
        assert_eq!(v.frames, written);
        assert_eq!(v.dropped.get("queue_full").copied(), Some(full));
        assert!(
            peak < budget + (40 << 20),
            "peak RSS {peak} bytes over a {budget}-byte budget plus 40 MiB"
        );
        peaks.push(peak);
    }
    assert!(
        peaks[1] - peaks[0] < (64 + 16) << 20,
        "memory follows the budget (+64 MiB), not the overload: {peaks:?}"
    );
}

fn verify_cli(dir: &Path) -> serde_json::Value {
    let out = framerec(&["verify", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn retention_by_bytes_keeps_a_ring_of_the_newest_segments() {
    let _turn = turn();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    // Unpaced (the receiver waits for the disk): no frame is dropped however busy the machine.
    let mut cfg = config(&dir, 320, 240);
    cfg.segment.max_bytes = 1 << 20;
    cfg.writer.max_write_bytes = 256 << 10;
    cfg.writer.retain_bytes = Some(4 << 20);
    let r = run(&cfg, 1200);
    assert_eq!(r.totals.written_frames, 1200);
    let kept = segments(&dir);
    let total: u64 = kept
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        total <= (5 << 20) + (1 << 20),
        "{total} bytes kept in {} segments",
        kept.len()
    );
    assert!(kept.len() >= 3, "{kept:?}");
    let v = verify_cli(&dir);
    let last = v[0]["report"]["last_seq"].as_u64();
    assert_eq!(last, Some(1199), "the newest frames are kept: {v}");
}

#[test]
fn retention_by_age_deletes_segments_older_than_the_limit() {
    let _turn = turn();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut cfg = paced(&dir, 64, 64, 100);
    cfg.segment.max_duration = Some(Duration::from_secs(1));
    cfg.writer.retain_age = Some(Duration::from_secs(2));
    let r = run(&cfg, 600);
    assert_eq!(r.totals.written_frames, 600);
    let kept = segments(&dir);
    assert!(
        (2..=4).contains(&kept.len()),
        "6 s of 1-s segments, 2 s kept: {kept:?}"
    );
    verify_cli(&dir);
}

#[test]
fn the_per_frame_layout_drops_the_frames_whose_files_fail_and_records_on() {
    let _turn = turn();
    let (_tmp, fs, dir) = mounted("dump");
    let mut cfg = small(&dir);
    cfg.layout = framerec::config::Layout::Fakenect;
    let rec = start(&cfg, 200);
    std::thread::sleep(Duration::from_millis(800));
    fs.plan(|p| p.fail_writes = 3);
    let r = rec.join().unwrap();
    went_on_losing_only_to_the_disk(&r);
    assert_eq!(fs.seen().failed_writes, 3);
    assert_eq!(dropped(&r, "io_error"), 3, "{:?}", r.totals);
    assert_eq!(r.totals.written_frames, 197);
    let v = verify_cli(&dir);
    let report = &v[0]["fakenect"];
    assert_eq!(report["ok"], true, "{v}");
    assert_eq!(report["frames"], 197, "{v}");
    assert_eq!(report["dropped"], 3, "DROPS.txt names them: {v}");
}

/// The run kept recording through the faults; its only failure is the report, at the end, of
/// the frames the disk lost (exit status 1 unless `writer.fail-on-io-loss = false`), and it
/// names exactly the frames counted as io_error, fsync_error and segment_deleted.
fn went_on_losing_only_to_the_disk(r: &RunReport) {
    let lost: u64 = ["io_error", "fsync_error", "segment_deleted"]
        .iter()
        .map(|k| r.totals.dropped.get(k).copied().unwrap_or(0))
        .sum();
    match &r.failure {
        None => assert_eq!(
            lost, 0,
            "frames lost to the disk, yet no failure: {:?}",
            r.totals
        ),
        Some(RunFailure::LostToDisk { frames, .. }) => {
            assert!(lost > 0);
            assert_eq!(*frames, lost, "{:?}", r.totals);
        }
        Some(f) => panic!("the run should have gone on: {f}"),
    }
}
