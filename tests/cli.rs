//! Tests that drive the real `framerec` binary as a user would.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{framerec, python_frames, spawn_framerec, text};

fn record(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["record", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    framerec(&args)
}

#[test]
fn record_verify_info_with_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = record(&dir, &["--frames", "30", "--fps", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = text(&out);
    assert!(
        summary.contains("received 30, written 30, dropped 0"),
        "{summary}"
    );
    assert!(summary.contains("write latency"), "{summary}");

    let v = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("OK: 30 frames written"), "{}", text(&v));

    let v = framerec(&["verify", "--json", dir.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(json[0]["report"]["ok"], true);
    assert_eq!(json[0]["report"]["frames"], 30);

    let i = framerec(&["info", dir.to_str().unwrap()]);
    assert!(i.status.success());
    let info = text(&i);
    assert!(
        info.contains("/camera/depth (protobuf), 30 messages"),
        "{info}"
    );
    assert!(info.contains("finalized"), "{info}");
}

#[test]
fn the_python_mcap_reader_reads_every_frame_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = record(&dir, &["--frames", "300", "--fps", "0", "--seed", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    let seqs = python_frames(&dir, 5, 640, 480);
    assert_eq!(seqs, (0..300).collect::<Vec<_>>());
}

#[test]
fn invalid_config_is_rejected_with_every_location() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[writer]\nwriters = 0\nturbo = true\n[queue]\noverflow = 3\n",
    )
    .unwrap();
    let c = framerec(&["check-config", cfg.to_str().unwrap()]);
    // One exit code for one mistake: 2, as `record` below.
    assert_eq!(c.status.code(), Some(2));
    let err = text(&c);
    let name = cfg.display().to_string();
    for at in ["2:11", "3:1", "5:12"] {
        assert!(
            err.contains(&format!("{name}:{at}: ")),
            "missing {at} in:\n{err}"
        );
    }
    let r = framerec(&[
        "record",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        tmp.path().join("r").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r).contains(&format!("{name}:2:11")));
    assert!(
        !tmp.path().join("r").exists(),
        "nothing recorded with a bad config"
    );

    let good = framerec(&[
        "check-config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/framerec.toml"),
    ]);
    assert!(good.status.success(), "{}", text(&good));
}

#[test]
fn verify_reports_a_flipped_bit_and_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    assert!(
        record(
            &dir,
            &[
                "--frames", "20", "--fps", "0", "--width", "64", "--height", "48"
            ]
        )
        .status
        .success()
    );
    let seg = dir.join("0000000000000000.mcap");
    let good = std::fs::read(&seg).unwrap();

    let mut flipped = good.clone();
    let at = good.len() / 2;
    flipped[at] ^= 0x10;
    let f = tmp.path().join("flipped.mcap");
    std::fs::write(&f, &flipped).unwrap();
    let v = framerec(&["verify", f.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    assert!(text(&v).contains("CRC saved"), "{}", text(&v));

    let torn = tmp.path().join("torn.mcap");
    std::fs::write(&torn, &good[..good.len() - 100]).unwrap();
    let v = framerec(&["verify", torn.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    assert!(text(&v).contains("unfinished"), "{}", text(&v));

    let v = framerec(&["verify", dir.to_str().unwrap(), torn.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1), "any bad path fails the whole run");
}

#[test]
fn sigint_drains_and_leaves_a_valid_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let child = spawn_framerec(
        &[&["record", "--out", dir.to_str().unwrap(), "--fps", "30"][..]],
        "warn",
        Stdio::piped(),
        Stdio::piped(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
    let summary = text(&out);
    assert!(summary.contains("dropped 0"), "{summary}");
}

#[test]
fn sigint_while_the_queue_is_full_loses_no_accepted_frame() {
    // Unpaced (overflow auto = block): the queue is full when the signal lands.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let child = spawn_framerec(
        &[&[
            "record",
            "--out",
            dir.to_str().unwrap(),
            "--fps",
            "0",
            "--queue-frames",
            "4",
        ][..]],
        "warn",
        Stdio::piped(),
        Stdio::piped(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("dropped 0"), "{}", text(&out));
    let v = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn export_png_is_read_by_pillow_as_the_recorded_16_bit_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = record(
        &dir,
        &[
            "--frames", "12", "--fps", "0", "--width", "160", "--height", "120", "--seed", "3",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let png = tmp.path().join("png");
    let e = framerec(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "png",
        "--out",
        png.to_str().unwrap(),
        "--from-seq",
        "2",
        "--to-seq",
        "9",
    ]);
    assert!(e.status.success(), "{}", text(&e));
    assert!(text(&e).contains("exported 8 frames"), "{}", text(&e));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_png.py");
    let py = Command::new(common::python())
        .args([script, png.to_str().unwrap(), "160", "120"])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
    let pngs: Vec<(u64, u32)> = serde_json::from_slice(&py.stdout).unwrap();
    assert_eq!(pngs.len(), 8);
    for (seq, crc) in pngs {
        assert_eq!(
            common::synthetic_crc("depth", 3, seq, 160, 120),
            crc,
            "png {seq}"
        );
    }

    let pgm = tmp.path().join("pgm");
    let e = framerec(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "pgm",
        "--out",
        pgm.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{}", text(&e));
    let first = std::fs::read(pgm.join("0000000000.pgm")).unwrap();
    let header = b"P5\n160 120\n65535\n";
    assert_eq!(&first[..header.len()], header);
    assert_eq!(first.len(), header.len() + 160 * 120 * 2);
    let expected = framerec::source::synthetic::expected_frame(3, 0, 160, 120);
    let be: Vec<u8> = expected.chunks(2).flat_map(|s| [s[1], s[0]]).collect();
    assert_eq!(&first[header.len()..], &be[..]);
}

/// Waits (10 s at most) until the recorder `pid` holds the lock of `dir` and has a segment open.
fn wait_for_lock(dir: &Path, pid: u32) {
    for _ in 0..200 {
        let holder = std::fs::read_to_string(dir.join(".framerec.lock")).unwrap_or_default();
        if holder.trim() == pid.to_string()
            && std::fs::read_dir(dir).is_ok_and(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.file_name().to_string_lossy().ends_with(".mcap"))
            })
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("recorder {pid} did not take {}", dir.display());
}

fn side_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".damaged"))
        .collect()
}

#[test]
fn one_writer_per_directory_while_readers_see_a_recording_in_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let d = dir.to_str().unwrap();
    let mut first = spawn_framerec(
        &[&[
            "record",
            "--out",
            d,
            "--fps",
            "30",
            "--frames",
            "300", // 10 s: every check below runs while it records, even on a busy machine
            "--interval-log-s",
            "1",
        ][..]],
        "warn",
        Stdio::piped(),
        Stdio::piped(),
    );
    let pid = format!("PID {}", first.id());
    wait_for_lock(&dir, first.id());

    let second = record(&dir, &["--frames", "10", "--fps", "0"]);
    assert_eq!(second.status.code(), Some(2), "{}", text(&second));
    assert!(text(&second).contains(&pid), "{}", text(&second));
    assert_eq!(
        text(&second).matches("being written").count(),
        1,
        "said once: {}",
        text(&second)
    );

    let r = framerec(&["recover", d]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(text(&r).contains(&pid), "{}", text(&r));

    for force in [false, true] {
        let mut args = vec!["export", d, "--format", "pgm", "--out", d];
        if force {
            args.push("--force");
        }
        let e = framerec(&args);
        assert_eq!(e.status.code(), Some(2), "{}", text(&e));
    }

    let v = framerec(&["verify", d]);
    assert!(first.try_wait().unwrap().is_none(), "still recording");
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("still being written"), "{}", text(&v));
    assert!(!text(&v).contains("DAMAGED"), "{}", text(&v));
    let i = framerec(&["info", d]);
    assert!(i.status.success(), "{}", text(&i));
    assert!(text(&i).contains("still being written"), "{}", text(&i));
    std::thread::sleep(Duration::from_millis(1200)); // an interval in the log
    let s = framerec(&["stats", d]);
    assert!(first.try_wait().unwrap().is_none(), "still recording");
    assert!(s.status.success(), "{}", text(&s));
    assert!(text(&s).contains("still being written"), "{}", text(&s));
    assert!(!text(&s).contains("did not end cleanly"), "{}", text(&s));

    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("written 300, dropped 0"),
        "{}",
        text(&out)
    );
    let v = framerec(&["verify", d]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("OK: 300 frames written"), "{}", text(&v));
    assert!(side_files(&dir).is_empty(), "{:?}", side_files(&dir));
    assert!(
        !dir.join(".framerec.lock").exists(),
        "a recorder that ends removes its lock file"
    );
}

#[test]
fn a_killed_recorder_leaves_no_lock_that_blocks_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let d = dir.to_str().unwrap();
    let mut first = spawn_framerec(
        &[&["record", "--out", d, "--fps", "30"][..]],
        "warn",
        Stdio::null(),
        Stdio::null(),
    );
    wait_for_lock(&dir, first.id());
    std::thread::sleep(Duration::from_millis(500));
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let stale = std::fs::read_to_string(dir.join(".framerec.lock")).unwrap();
    assert_eq!(
        stale.trim(),
        first.id().to_string(),
        "the file names its holder"
    );

    let again = record(&dir, &["--frames", "10", "--fps", "0"]);
    assert!(again.status.success(), "{}", text(&again));
    let v = framerec(&["verify", d]);
    assert!(v.status.success(), "{}", text(&v));
}

#[test]
fn export_never_writes_over_files_it_did_not_create() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let d = dir.to_str().unwrap();
    let out = record(
        &dir,
        &["--frames", "3", "--fps", "0", "--interval-log-s", "1"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Every format refuses a directory that holds files, and leaves them as they were.
    let dump = tmp.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    std::fs::write(dump.join("INDEX.txt"), "someone else's dump\n").unwrap();
    for format in ["fakenect", "pgm", "png"] {
        let e = framerec(&[
            "export",
            d,
            "--format",
            format,
            "--out",
            dump.to_str().unwrap(),
        ]);
        assert_eq!(e.status.code(), Some(2), "{format}: {}", text(&e));
        assert!(text(&e).contains("not empty"), "{}", text(&e));
        assert_eq!(
            std::fs::read_to_string(dump.join("INDEX.txt")).unwrap(),
            "someone else's dump\n"
        );
        assert_eq!(std::fs::read_dir(&dump).unwrap().count(), 1, "{format}");
    }
    let e = framerec(&[
        "export",
        d,
        "--format",
        "fakenect",
        "--out",
        dump.to_str().unwrap(),
        "--force",
    ]);
    assert!(e.status.success(), "{}", text(&e));
    assert_eq!(
        std::fs::read_to_string(dump.join("INDEX.txt"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = framerec(&[
        "export",
        d,
        "--format",
        "pgm",
        "--out",
        empty.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{}", text(&e));

    // `stats --plot` does not replace a file either.
    let plot = tmp.path().join("mine.svg");
    std::fs::write(&plot, "not a plot").unwrap();
    let s = framerec(&["stats", d, "--plot", plot.to_str().unwrap()]);
    assert_eq!(s.status.code(), Some(2), "{}", text(&s));
    assert_eq!(std::fs::read_to_string(&plot).unwrap(), "not a plot");
    let s = framerec(&["stats", d, "--plot", plot.to_str().unwrap(), "--force"]);
    assert!(s.status.success(), "{}", text(&s));
    assert!(std::fs::read_to_string(&plot).unwrap().contains("<svg"));
}

#[test]
fn fakenect_export_refuses_a_size_libfreenect_cannot_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = record(
        &dir,
        &[
            "--frames", "3", "--fps", "0", "--width", "64", "--height", "48",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let dump = tmp.path().join("dump");
    let e = framerec(&[
        "export",
        dir.to_str().unwrap(),
        "--format",
        "fakenect",
        "--out",
        dump.to_str().unwrap(),
    ]);
    assert_eq!(e.status.code(), Some(2), "{}", text(&e));
    assert!(
        text(&e).contains("64x48") && text(&e).contains("640x480"),
        "{}",
        text(&e)
    );
    assert!(!dump.exists(), "nothing written");
}

/// Bytes of `dir`'s segments and damaged originals (apparent length or allocated, the larger).
fn recording_bytes(dir: &Path) -> (u64, Vec<String>) {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(".mcap") {
            let m = e.metadata().unwrap();
            total += m.len().max(m.blocks() * 512);
            names.push(format!("{name} {}", m.len()));
        }
    }
    names.sort();
    (total, names)
}

#[test]
fn retention_counts_and_deletes_damaged_originals_across_kill_restart_cycles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let d = dir.to_str().unwrap();
    let cfg = tmp.path().join("ring.toml");
    let limit: u64 = 8 << 20;
    let segment: u64 = 2 << 20;
    std::fs::write(
        &cfg,
        format!("[output]\nmax-total-bytes = {limit}\n[segment]\nmax-bytes = {segment}\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let common = [
        "record", "--config", c, "--out", d, "--width", "320", "--height", "240",
    ];
    for _ in 0..6 {
        let mut child = spawn_framerec(
            &[&common[..], &["--fps", "200"][..]],
            "warn",
            Stdio::null(),
            Stdio::null(),
        );
        wait_for_lock(&dir, child.id());
        std::thread::sleep(Duration::from_millis(1200));
        child.kill().unwrap(); // SIGKILL: the open segments are left for repair
        child.wait().unwrap();
    }
    let last = framerec(&[&common[..], &["--fps", "0", "--frames", "30"][..]].concat());
    assert!(last.status.success(), "{}", text(&last));
    assert!(text(&last).contains("repaired at start"), "{}", text(&last));
    let (total, names) = recording_bytes(&dir);
    // The newest segment always stays, so one segment over the limit is allowed.
    assert!(
        total <= limit + segment,
        "{total} bytes kept, limit {limit}: {names:#?}"
    );
    let v = framerec(&["verify", d]);
    assert!(v.status.success(), "{}", text(&v));
}

/// One 64x48 frame in the `unix:` source's framing.
fn sender_frame(seq: u64) -> Vec<u8> {
    use framerec::source::pipe::{FORMAT_DEPTH16, HEADER_LEN, Header};
    let len = 64 * 48 * 2;
    let mut out = Header {
        header_len: HEADER_LEN,
        sequence: seq,
        device_ns: seq * 1_000,
        width: 64,
        height: 48,
        format: FORMAT_DEPTH16,
        payload_len: len,
    }
    .encode()
    .to_vec();
    out.resize(HEADER_LEN + len, seq as u8);
    out
}

/// The three socket flags, each pointed at `path` (the others off).
fn socket_flags(path: &Path) -> [Vec<String>; 3] {
    let p = path.display().to_string();
    [
        vec!["--stats-socket".into(), p.clone()],
        vec![
            "--stats-socket".into(),
            "off".into(),
            "--metrics-addr".into(),
            format!("unix:{p}"),
        ],
        vec![
            "--stats-socket".into(),
            "off".into(),
            "--source".into(),
            format!("unix:{p}"),
            "--width".into(),
            "64".into(),
            "--height".into(),
            "48".into(),
        ],
    ]
}

#[test]
fn socket_flags_pointed_at_a_file_exit_2_and_leave_it_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let segment = tmp.path().join("0000000000000000.mcap");
    std::fs::write(&segment, b"a finished segment").unwrap();
    for (i, flags) in socket_flags(&segment).iter().enumerate() {
        let dir = tmp.path().join(format!("rec{i}"));
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["--frames", "5"]);
        let out = record(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("{} is a regular file", segment.display())),
            "{flags:?}: {}",
            text(&out)
        );
        assert_eq!(std::fs::read(&segment).unwrap(), b"a finished segment");
        assert!(
            !dir.join("0000000000000000.mcap").exists(),
            "{flags:?}: nothing recorded"
        );
    }
}

#[test]
fn socket_flags_refuse_a_live_socket_and_replace_a_stale_one() {
    use std::io::Write;
    use std::os::unix::net::{UnixListener, UnixStream};
    let tmp = tempfile::tempdir().unwrap();
    // Live: someone answers on it. Each flag refuses, and the socket keeps serving.
    let live = tmp.path().join("live.sock");
    let listener = UnixListener::bind(&live).unwrap();
    for (i, flags) in socket_flags(&live).iter().enumerate() {
        let dir = tmp.path().join(format!("live{i}"));
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["--frames", "5"]);
        let out = record(&dir, &args);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("answers on the socket {}", live.display())),
            "{flags:?}: {}",
            text(&out)
        );
        assert!(UnixStream::connect(&live).is_ok(), "{flags:?}: still live");
    }
    drop(listener);

    // Stale (nobody answers): replaced, and removed on exit since this run created it.
    let stale = |name: &str| {
        let p = tmp.path().join(name);
        drop(UnixListener::bind(&p).unwrap());
        assert!(UnixStream::connect(&p).is_err() && p.exists());
        p
    };
    let (stats, metrics) = (stale("stats.sock"), stale("metrics.sock"));
    let out = record(
        &tmp.path().join("stale"),
        &[
            "--frames",
            "5",
            "--fps",
            "0",
            "--stats-socket",
            stats.to_str().unwrap(),
            "--metrics-addr",
            &format!("unix:{}", metrics.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stats.exists() && !metrics.exists(), "removed on exit");

    let source = stale("frames.sock");
    let dir = tmp.path().join("stale-source");
    let child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--source", &format!("unix:{}", source.display())])
        .args(["--width", "64", "--height", "48", "--stats-socket", "off"])
        // It stops by itself after the three frames: a signal after a sleep raced the reading
        // of frames already sent on a loaded machine (CI once recorded 0 of them).
        .args(["--frames", "3"])
        .args(["--out", dir.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut sender = loop {
        if let Ok(s) = UnixStream::connect(&source) {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(20));
    };
    for seq in 0..3 {
        sender.write_all(&sender_frame(seq)).unwrap();
    }
    drop(sender);
    let mut child = child;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("written 3"), "{}", text(&out));
    assert!(text(&out).contains("frame-limit"), "{}", text(&out));
    assert!(!source.exists(), "removed on exit");
}

/// Runs `framerec args` with its standard output a pipe whose reader has already gone, as in
/// `framerec info DIR | head -c 10` once `head` is done.
fn into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn every_subcommand_ends_quietly_on_a_closed_stdout() {
    use std::os::unix::process::ExitStatusExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let d = dir.to_str().unwrap();
    let pngs = tmp.path().join("png");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/framerec.toml");
    let runs: [&[&str]; 8] = [
        &[
            "record", "--out", d, "--frames", "5", "--fps", "0", "--json",
        ],
        &["verify", d],
        &["verify", "--json", d],
        &["info", d],
        &["recover", d],
        &["stats", d],
        &[
            "export",
            d,
            "--format",
            "png",
            "--out",
            pngs.to_str().unwrap(),
        ],
        &["check-config", config],
    ];
    for args in runs {
        let out = into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // Ended by SIGPIPE's default action, as `cat` or `ls` are: the shell's 141, no message.
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {:?} {stderr}",
            out.status
        );
        // No complaint about the pipe (`record` prints its summary on stderr as always).
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert!(!stderr.contains("standard output"), "{args:?}: {stderr}");
    }
    // The recording whose summary found no reader is whole.
    let v = framerec(&["verify", d]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("OK: 5 frames written"), "{}", text(&v));
}

/// A 3-frame fakenect-layout recording in `dir`.
fn fakenect_dump(dir: &Path) {
    let out = record(
        dir,
        &[
            "--layout", "fakenect", "--frames", "3", "--fps", "0", "--width", "8", "--height", "4",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
}

/// `framerec args` with its address space limited to 1 GiB, so that reading what a crafted input
/// claims fails at once (and spares the machine) instead of passing unseen.
fn in_1_gib(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576; exec "$@""#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_framerec"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_fakenect_index_with_no_newline_fails_clearly_in_bounded_memory() {
    use std::os::unix::process::ExitStatusExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump");
    fakenect_dump(&dump);
    let index = dump.join("INDEX.txt");
    std::fs::remove_file(&index).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
    let out = in_1_gib(&[
        "record",
        "--source",
        &format!("fakenect:{}", dump.display()),
        "--out",
        tmp.path().join("rec").to_str().unwrap(),
    ]);
    assert_eq!(out.status.signal(), None, "{}", text(&out));
    assert!(!out.status.success());
    assert!(
        text(&out).contains("INDEX.txt:1: a line longer than 255 bytes"),
        "{}",
        text(&out)
    );

    // 1.1 GB of zeros with no newline (sparse), verified in 1 GiB of address space.
    std::fs::remove_file(&index).unwrap();
    std::fs::File::create(&index)
        .unwrap()
        .set_len(1_100_000_000)
        .unwrap();
    let out = in_1_gib(&["verify", dump.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("INDEX.txt:1: a line longer than 255 bytes"),
        "{}",
        text(&out)
    );
    assert!(text(&out).len() < 1000, "{}", text(&out));
    assert!(!text(&out).contains("not in INDEX.txt"), "{}", text(&out));
}

#[test]
fn a_drops_range_that_runs_backwards_fails_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump");
    fakenect_dump(&dump);
    let v = framerec(&["verify", dump.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
    std::fs::write(dump.join("DROPS.txt"), "5 3 queue_full\n").unwrap();
    let v = framerec(&["verify", dump.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(
        text(&v).contains("DROPS.txt:1: the range 5..=3 runs backwards"),
        "{}",
        text(&v)
    );
    assert!(!text(&v).contains("18446744073709551615"), "{}", text(&v));
}

#[test]
fn a_surface_that_cannot_be_served_stops_record_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let missing = tmp.path().join("no/such/dir/s.sock");
    let r = record(
        &rec,
        &[
            "--frames",
            "3",
            "--fps",
            "0",
            "--stats-socket",
            missing.to_str().unwrap(),
        ],
    );
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains(&format!(
            "cannot serve statistics: cannot listen on {}: No such file or directory",
            missing.display()
        )),
        "{}",
        text(&r)
    );
    assert!(common::segments(&rec).is_empty(), "nothing recorded");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let r = record(
        &rec,
        &["--frames", "3", "--fps", "0", "--metrics-addr", &addr],
    );
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains(&format!(
            "cannot serve statistics: cannot listen on {addr}: "
        )),
        "{}",
        text(&r)
    );
    assert!(common::segments(&rec).is_empty(), "nothing recorded");
}

/// A second SIGINT exits at once (130) and says what it leaves and how to repair it; `recover`
/// then does.
#[test]
fn a_second_sigint_says_what_it_leaves_and_recover_repairs_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--fps", "0", "--width", "320", "--height", "240"])
        .args(["--out", dir.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        // A slow disk: the drain after the first signal takes a while.
        .env("FRAMEREC_TEST_WRITE_DELAY_MS", "300")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("second SIGINT")
            && err.contains(&format!("framerec recover {}", dir.display())),
        "{err}"
    );
    let r = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(r.status.success(), "{}", text(&r));
    let v = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(v.status.success(), "{}", text(&v));
}
