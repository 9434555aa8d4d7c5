//! Frames from another process: `pipe:-` (stdin) and `unix:SOCKET`, with garbage, wrong
//! sizes, huge lengths and a client that disconnects mid-frame. Every valid frame is recorded
//! byte-exact; everything else is counted as a reject and never stops the recorder.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{framerec, text};
use framerec::source::pipe::{FORMAT_DEPTH16, HEADER_LEN, Header};

const W: u32 = 64;
const H: u32 = 48;

fn frame(seq: u64) -> Vec<u8> {
    let len = (W * H * 2) as usize;
    let mut out = Header {
        header_len: HEADER_LEN,
        sequence: seq,
        device_ns: 1_000_000 + seq * 33_333_333,
        width: W,
        height: H,
        format: FORMAT_DEPTH16,
        payload_len: len,
    }
    .encode()
    .to_vec();
    out.extend((0..len).map(|i| (i as u64 * 31 + seq * 7) as u8));
    out
}

/// The device time (MCAP publish_time) and payload of every frame in a recording.
fn recorded(dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let frames = common::read_with_mcap_crate(dir);
    frames
        .into_iter()
        .map(|(_, _, publish_ns, img)| (publish_ns, img.data))
        .collect()
}

#[test]
fn stdin_frames_are_recorded_and_garbage_is_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record", "--source", "pipe:-", "--width", "64", "--height", "48", "--json",
        ])
        .args(["--out", dir.to_str().unwrap(), "--stats-socket", "off"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stream = Vec::new();
    stream.extend(b"garbage before the first frame");
    for seq in 0..10 {
        stream.extend(frame(seq));
    }
    // A frame of the wrong size, one with a 4 GB length, a bad version: all rejected.
    let mut wrong = frame(10);
    wrong[24..28].copy_from_slice(&32u32.to_le_bytes());
    stream.extend(&wrong);
    let mut huge = frame(10);
    huge[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
    stream.extend(&huge[..HEADER_LEN]);
    let mut version = frame(10);
    version[4] = 9;
    stream.extend(&version[..HEADER_LEN]);
    for seq in 10..20 {
        stream.extend(frame(seq));
    }
    // The stream ends in the middle of a frame.
    stream.extend(&frame(20)[..100]);
    stdin.write_all(&stream).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["totals"]["written_frames"], 20, "{summary}");

    let frames = recorded(&dir);
    assert_eq!(frames.len(), 20);
    for (seq, (device_ns, data)) in frames.iter().enumerate() {
        let want = frame(seq as u64);
        assert!(data[..] == want[HEADER_LEN..], "frame {seq} byte-exact");
        assert_eq!(
            *device_ns,
            1_000_000 + seq as u64 * 33_333_333,
            "device time kept"
        );
    }
    let verify = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn a_unix_socket_takes_one_client_after_another_and_survives_a_bad_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let sock = tmp.path().join("frames.sock");
    let stats = tmp.path().join("stats.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--source", &format!("unix:{}", sock.display())])
        .args(["--width", "64", "--height", "48", "--json"])
        .args([
            "--out",
            dir.to_str().unwrap(),
            "--stats-socket",
            stats.to_str().unwrap(),
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client that sends garbage and half a frame, then disconnects.
    let mut bad = UnixStream::connect(&sock).unwrap();
    bad.write_all(&[0xAB; 5000]).unwrap();
    bad.write_all(&frame(0)[..300]).unwrap();
    drop(bad);
    // A good client, then another.
    for range in [0..15u64, 15..30] {
        let mut c = UnixStream::connect(&sock).unwrap();
        for seq in range {
            c.write_all(&frame(seq)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(c);
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let snapshot = loop {
        let out = framerec(&["stats", "--json", "--socket", stats.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        let s: framerec::observe::Snapshot = serde_json::from_slice(&out.stdout).unwrap();
        if s.written_frames == 30 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(snapshot.written_frames, 30, "{snapshot:?}");
    assert!(snapshot.source_rejects["bad_magic"] >= 1, "{snapshot:?}");
    assert_eq!(snapshot.source_rejects["truncated"], 1, "{snapshot:?}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "a bad client does not stop the recorder"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frames = recorded(&dir);
    assert_eq!(frames.len(), 30);
    for (seq, (_, data)) in frames.iter().enumerate() {
        assert!(data[..] == frame(seq as u64)[HEADER_LEN..], "frame {seq}");
    }
    assert!(!sock.exists(), "the socket is removed on exit");
}

#[test]
fn a_sender_gap_and_rejected_frames_are_counted_and_named_in_the_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record", "--source", "pipe:-", "--width", "64", "--height", "48",
        ])
        .args([
            "--json",
            "--out",
            dir.to_str().unwrap(),
            "--stats-socket",
            "off",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stream = Vec::new();
    for seq in 0..5 {
        stream.extend(frame(seq));
    }
    // Sender frame 5 has the wrong size: rejected.
    let mut wrong = frame(5);
    wrong[24..28].copy_from_slice(&32u32.to_le_bytes());
    stream.extend(&wrong);
    for seq in 6..9 {
        stream.extend(frame(seq));
    }
    // The sender skips 9, 10 and 11.
    for seq in 12..16 {
        stream.extend(frame(seq));
    }
    // Sender frame 16 has a bad version: rejected.
    let mut version = frame(16);
    version[4] = 9;
    stream.extend(&version);
    for seq in 17..21 {
        stream.extend(frame(seq));
    }
    // A torn tail: rejected.
    stream.extend(&frame(21)[..100]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&stream).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &summary["totals"];
    assert_eq!(totals["written_frames"], 16, "{totals}");
    assert_eq!(totals["received_frames"], 22, "{totals}");
    assert_eq!(totals["dropped"]["sender_gap"], 3, "{totals}");
    assert_eq!(totals["dropped"]["rejected"], 3, "{totals}");
    let rejects = &totals["source_rejects"];
    assert_eq!(rejects["wrong_size"], 1, "{totals}");
    assert_eq!(rejects["bad_version"], 1, "{totals}");
    assert_eq!(rejects["truncated"], 1, "{totals}");
    assert!(rejects["bad_magic"].as_u64().unwrap() >= 1, "{totals}");
    assert!(
        err.contains("sender_gap 3") && err.contains("rejected 3"),
        "{err}"
    );
    assert!(
        err.contains("source rejects:") && err.contains("wrong_size 1"),
        "{err}"
    );

    // The gaps are in the file, each where it happened: framerec's numbering follows the
    // sender's here (rejected 5, gap 9..=11, rejected 16, the torn tail 21).
    let verify = framerec(&["verify", "--json", dir.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify));
    let report = &serde_json::from_slice::<serde_json::Value>(&verify.stdout).unwrap()[0]["report"];
    assert_eq!(report["frames"], 16, "{report}");
    assert_eq!(report["dropped"]["sender_gap"], 3, "{report}");
    assert_eq!(report["dropped"]["rejected"], 3, "{report}");
    assert_eq!(
        (&report["first_seq"], &report["last_seq"]),
        (&0.into(), &21.into())
    );
    let frames = recorded(&dir);
    let sent: Vec<u64> = (0..21)
        .filter(|s| ![5, 9, 10, 11, 16].contains(s))
        .collect();
    assert_eq!(frames.len(), sent.len());
    for ((device_ns, data), seq) in frames.iter().zip(&sent) {
        assert!(data[..] == frame(*seq)[HEADER_LEN..], "sender frame {seq}");
        assert_eq!(*device_ns, 1_000_000 + seq * 33_333_333);
    }
    let segment = common::segments(&dir).remove(0);
    let contents = framerec::segment::parse_segment(&std::fs::read(&segment).unwrap());
    let drops: Vec<(u64, u64, String)> = contents.streams[0]
        .drops
        .iter()
        .map(|d| (d.first.0, d.last.0, d.reason.as_str().to_string()))
        .collect();
    assert_eq!(
        drops,
        [
            (5, 5, "rejected".to_string()),
            (9, 11, "sender_gap".to_string()),
            (16, 16, "rejected".to_string()),
            (21, 21, "rejected".to_string()),
        ]
    );
}

/// `pipe:FIFO` with no writer yet says it waits, and a SIGINT stops it at once (it used to sit
/// in `open` until a writer came, deaf to signals: under systemd, `stop` hung to the timeout).
#[test]
fn a_fifo_with_no_writer_waits_visibly_and_stops_on_sigint() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("frames");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--source", &format!("pipe:{}", fifo.display())])
        .args(["--out", tmp.path().join("rec").to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if exited.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(exited.is_some(), "still waiting 10 s after SIGINT: {err}");
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("waiting for a frame sender to open the FIFO"),
        "{err}"
    );
}

/// A `unix:` sender that stalls in the middle of a frame, or sits idle while another sender
/// waits, is disconnected after `SENDER_STALL` (2 s): a real sender behind it gets through (a
/// client sending 8 bytes of a header used to hold the socket forever).
#[test]
fn a_stalled_sender_cannot_hold_the_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let sock = tmp.path().join("frames.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--source", &format!("unix:{}", sock.display())])
        .args([
            "--width", "64", "--height", "48", "--frames", "10", "--json",
        ])
        .args(["--out", dir.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut held = Vec::new();
    for (stall, base) in [("mid-frame", 0u64), ("idle", 5)] {
        let mut first = UnixStream::connect(&sock).unwrap();
        if stall == "mid-frame" {
            first.write_all(&frame(base)[..8]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        // A real sender connects behind it and sends 5 frames, then closes.
        let mut real = UnixStream::connect(&sock).unwrap();
        for seq in base..base + 5 {
            real.write_all(&frame(seq)).unwrap();
        }
        held.push(first);
    }
    // The recorder ends by itself once the 10 frames are in.
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the real senders' frames never got through: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&s[s.find('{').unwrap()..]).unwrap();
    // The stalled half frame counts as one rejected frame (a torn frame); the limit of 10
    // received frames is then reached by 9 of the real senders' frames.
    assert_eq!(v["totals"]["dropped"]["rejected"], 1, "{s}");
    assert_eq!(v["totals"]["source_rejects"]["truncated"], 1, "{s}");
    assert_eq!(v["totals"]["written_frames"], 9, "{s}");
    drop(held);
}
