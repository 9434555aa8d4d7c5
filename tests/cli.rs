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
    assert_eq!(c.status.code(), Some(1));
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
    let py = Command::new("python3")
        .args([script, png.to_str().unwrap(), "3", "160", "120"])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", text(&py));
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "8");

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
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("written 3"), "{}", text(&out));
    assert!(!source.exists(), "removed on exit");
}
