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
