//! Frames from another process: `pipe:-` (stdin), a FIFO and `unix:SOCKET`, with garbage,
//! wrong sizes, huge lengths and a client that disconnects mid-frame, in framing version 1
//! (one depth stream) and 2 (several streams, `[[source.stream]]`). Every valid frame is
//! recorded byte-exact in its stream's channel; everything else is counted as a reject, under
//! its stream, and never stops the recorder.

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

/// The raw device time (publish_time less the recorded clock offset) and payload of every frame
/// in a recording.
fn recorded(dir: &std::path::Path) -> Vec<(u64, Vec<u8>)> {
    let frames = common::read_with_mcap_crate(dir);
    frames
        .into_iter()
        .map(|(_, _, _, device_ns, img)| (device_ns, img.data))
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

/// What a stream's frames look like on the wire, and where the recording puts them.
#[derive(Clone, Copy, Debug)]
struct Wire {
    id: u16,
    width: u32,
    height: u32,
    format: u32,
    len: usize,
    topic: &'static str,
}

const DEPTH: Wire = Wire {
    id: 0,
    width: 64,
    height: 48,
    format: framerec::source::pipe::FORMAT_DEPTH16,
    len: 64 * 48 * 2,
    topic: "/camera/depth",
};
const COLOR: Wire = Wire {
    id: 1,
    width: 32,
    height: 24,
    format: framerec::source::pipe::FORMAT_RGB8,
    len: 32 * 24 * 3,
    topic: "/camera/color",
};
const ACCEL: Wire = Wire {
    id: 2,
    width: 1,
    height: 1,
    format: framerec::source::pipe::FORMAT_ACCEL,
    len: 12,
    topic: "/camera/accel",
};

/// The `[[source.stream]]` tables of DEPTH, COLOR and ACCEL.
const STREAM_TABLES: &str = r#"
[[source.stream]]
id = 0
name = "depth"
format = "depth16"
width = 64
height = 48

[[source.stream]]
id = 1
name = "color"
format = "rgb8"
width = 32
height = 24

[[source.stream]]
id = 2
name = "accel"
format = "accel"
"#;

/// The payload of `stream`'s frame `seq`: a pattern for images; for accel a raw tilt state
/// (i16 x, y, z; i8 tilt; pad; u32 status).
fn payload(stream: Wire, seq: u64) -> Vec<u8> {
    if stream.format != ACCEL.format {
        return (0..stream.len)
            .map(|i| (i as u64 * 13 + seq * 5 + stream.id as u64) as u8)
            .collect();
    }
    let mut raw = Vec::new();
    for v in [seq as i16, -819, 40] {
        raw.extend(v.to_le_bytes());
    }
    raw.extend([(seq % 30) as u8, 0]);
    raw.extend(0u32.to_le_bytes());
    raw
}

/// The sender: frame `seq` of `stream` in framing version 2 (version 1 if `v1`, stream 0 only).
fn wire_frame(stream: Wire, seq: u64, v1: bool) -> Vec<u8> {
    let h = Header {
        header_len: HEADER_LEN,
        sequence: seq,
        device_ns: 5_000 + seq * 1_000_000 + stream.id as u64,
        width: stream.width,
        height: stream.height,
        format: stream.format,
        payload_len: stream.len,
    };
    let mut out = if v1 {
        h.encode().to_vec()
    } else {
        h.encode_v2(stream.id).to_vec()
    };
    out.extend(payload(stream, seq));
    out
}

/// Per topic, the (MCAP sequence, payload) of each message.
type ByTopic = std::collections::BTreeMap<String, Vec<(u32, Vec<u8>)>>;

/// Per topic, every message of a recording read with the `mcap` crate: (MCAP sequence,
/// payload: an image's data, or the last 12 bytes of an accelerometer message, its raw
/// reading); and every drop notice.
fn recorded_streams(dir: &std::path::Path) -> (ByTopic, Vec<serde_json::Value>) {
    use prost::Message as _;
    let (mut frames, mut drops) = (ByTopic::new(), Vec::new());
    for path in common::segments(dir) {
        let bytes = std::fs::read(&path).unwrap();
        for msg in mcap::MessageStream::new(&bytes).unwrap() {
            let msg = msg.unwrap();
            let schema = msg.channel.schema.as_ref().unwrap().name.clone();
            let data = match schema.as_str() {
                "framerec.Drop" => {
                    drops.push(serde_json::from_slice(&msg.data).unwrap());
                    continue;
                }
                "foxglove.RawImage" => common::RawImage::decode(&msg.data[..]).unwrap().data,
                "framerec.Accelerometer" => msg.data[msg.data.len() - 12..].to_vec(),
                other => panic!("schema {other}"),
            };
            frames
                .entry(msg.channel.topic.clone())
                .or_insert_with(Vec::new)
                .push((msg.sequence, data));
        }
    }
    (frames, drops)
}

/// Every frame of `stream` with these sender numbers, as the recording must hold it.
fn expected(stream: Wire, seqs: impl IntoIterator<Item = u64>) -> Vec<(u32, Vec<u8>)> {
    seqs.into_iter()
        .map(|s| (s as u32, payload(stream, s)))
        .collect()
}

/// Depth, colour and accelerometer frames interleaved through a FIFO, some depth frames in
/// version 1: each stream's channel holds every frame byte-identical, numbered in its stream.
#[test]
fn v2_streams_interleaved_through_a_fifo_are_recorded_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let fifo = tmp.path().join("frames");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let cfg = tmp.path().join("framerec.toml");
    let toml_text = format!(
        "[source]\nkind = \"pipe\"\npath = {:?}\n{STREAM_TABLES}",
        fifo.display().to_string()
    );
    std::fs::write(&cfg, toml_text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        // `recorded_streams` reads an accelerometer message's last 12 bytes as its reading:
        // O_DIRECT (auto's choice on a local disk) puts slack fields after it.
        .args(["record", "--config", cfg.to_str().unwrap(), "--json"])
        .args(["--io-mode", "buffered"])
        .args(["--out", dir.to_str().unwrap(), "--stats-socket", "off"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Waits for the recorder to open the FIFO without blocking (a recorder that failed would
    // hang a blocking open), then opens it to write while the first writer still holds it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = loop {
        use std::os::unix::fs::OpenOptionsExt as _;
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&fifo);
        match opened {
            Ok(f) => break f,
            Err(e) => assert!(Instant::now() < deadline, "no reader on the FIFO: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut sender = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    drop(probe);
    let mut bytes = Vec::new();
    for i in 0..30u64 {
        bytes.extend(wire_frame(DEPTH, i, i % 5 == 0));
        if i % 2 == 0 {
            bytes.extend(wire_frame(COLOR, i / 2, false));
        }
        for k in 0..3 {
            bytes.extend(wire_frame(ACCEL, i * 3 + k, false));
        }
    }
    sender.write_all(&bytes).unwrap();
    drop(sender);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["totals"]["written_frames"],
        30 + 15 + 90,
        "{summary}"
    );
    assert_eq!(
        summary["totals"]["received_frames"],
        30 + 15 + 90,
        "{summary}"
    );
    let (frames, drops) = recorded_streams(&dir);
    assert_eq!(frames[DEPTH.topic], expected(DEPTH, 0..30));
    assert_eq!(frames[COLOR.topic], expected(COLOR, 0..15));
    assert_eq!(frames[ACCEL.topic], expected(ACCEL, 0..90));
    assert!(drops.is_empty(), "{drops:?}");
}

/// Over a Unix socket: a frame of an unconfigured id, a colour frame of depth's size, a depth
/// frame of a wrong format and an accelerometer gap. Each is counted under its own stream (the
/// unknown id under none), the recording names each loss in its stream, and every other frame
/// of every stream is recorded byte-identical.
#[test]
fn bad_frames_and_gaps_are_counted_per_stream_and_never_stall_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let sock = tmp.path().join("frames.sock");
    let stats = tmp.path().join("stats.sock");
    let cfg = tmp.path().join("framerec.toml");
    let toml_text = format!(
        "[source]\nkind = \"unix\"\npath = {:?}\n{STREAM_TABLES}",
        sock.display().to_string()
    );
    std::fs::write(&cfg, toml_text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_framerec"))
        // `recorded_streams` reads an accelerometer message's last 12 bytes as its reading:
        // O_DIRECT (auto's choice on a local disk) puts slack fields after it.
        .args(["record", "--config", cfg.to_str().unwrap(), "--json"])
        .args(["--io-mode", "buffered"])
        .args(["--out", dir.to_str().unwrap()])
        .args(["--stats-socket", stats.to_str().unwrap()])
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
    let mut bytes = Vec::new();
    bytes.extend(wire_frame(DEPTH, 0, false));
    bytes.extend(wire_frame(COLOR, 0, false));
    bytes.extend(wire_frame(ACCEL, 0, false));
    bytes.extend(wire_frame(Wire { id: 7, ..COLOR }, 0, false));
    bytes.extend(wire_frame(Wire { id: 1, ..DEPTH }, 1, false));
    bytes.extend(wire_frame(DEPTH, 1, false));
    bytes.extend(wire_frame(ACCEL, 4, false));
    bytes.extend(wire_frame(COLOR, 2, false));
    let mut bad_format = wire_frame(DEPTH, 2, false);
    bad_format[32..36].copy_from_slice(&9u32.to_le_bytes());
    bytes.extend(bad_format);
    bytes.extend(wire_frame(DEPTH, 3, false));
    bytes.extend(wire_frame(ACCEL, 5, false));
    bytes.extend(wire_frame(COLOR, 3, false));
    let mut sender = UnixStream::connect(&sock).unwrap();
    sender.write_all(&bytes).unwrap();
    // Until the 9 good frames are written (the statistics socket may come up after the
    // frames' socket).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = framerec(&["stats", "--json", "--socket", stats.to_str().unwrap()]);
        let written = out.status.success().then(|| {
            serde_json::from_slice::<framerec::observe::Snapshot>(&out.stdout)
                .unwrap()
                .written_frames
        });
        if written == Some(9) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(sender);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let totals = &summary["totals"];
    assert_eq!(totals["written_frames"], 9, "{totals}");
    assert_eq!(totals["dropped"]["rejected"], 2, "{totals}");
    assert_eq!(totals["dropped"]["sender_gap"], 3, "{totals}");
    let rejects = &totals["source_rejects"];
    assert_eq!(rejects["unknown_stream"], 1, "{totals}");
    assert_eq!(rejects["wrong_size"], 1, "{totals}");
    assert_eq!(rejects["bad_format"], 1, "{totals}");

    let (frames, drops) = recorded_streams(&dir);
    assert_eq!(frames[DEPTH.topic], expected(DEPTH, [0, 1, 3]));
    assert_eq!(frames[COLOR.topic], expected(COLOR, [0, 2, 3]));
    assert_eq!(frames[ACCEL.topic], expected(ACCEL, [0, 4, 5]));
    let mut named: Vec<(String, String, u64, u64)> = drops
        .iter()
        .map(|d| {
            (
                d["stream"].as_str().unwrap().to_string(),
                d["reason"].as_str().unwrap().to_string(),
                d["first_seq"].as_u64().unwrap(),
                d["last_seq"].as_u64().unwrap(),
            )
        })
        .collect();
    named.sort();
    let want = |t: &str, r: &str, a, b| (t.to_string(), r.to_string(), a, b);
    assert_eq!(
        named,
        [
            want(ACCEL.topic, "sender_gap", 1, 3),
            want(COLOR.topic, "rejected", 1, 1),
            want(DEPTH.topic, "rejected", 2, 2),
        ]
    );
}

/// A pipe's streams come from `[[source.stream]]`: `source.streams` names Kinect streams and
/// is refused for a pipe, at its line.
#[test]
fn source_streams_is_refused_for_a_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("framerec.toml");
    std::fs::write(
        &cfg,
        "[source]\nkind = \"pipe\"\npath = \"-\"\nstreams = [\"depth\", \"color\"]\n",
    )
    .unwrap();
    let out = framerec(&["check-config", cfg.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("framerec.toml:4:1: source.streams is for synthetic"),
        "{}",
        text(&out)
    );
}

/// `--width` and `--height` size the one depth stream of a pipe without `[[source.stream]]`;
/// with the tables they would be ignored, so they are refused.
#[test]
fn width_and_height_flags_are_refused_beside_stream_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("framerec.toml");
    std::fs::write(
        &cfg,
        format!("[source]\nkind = \"pipe\"\npath = \"-\"\n{STREAM_TABLES}"),
    )
    .unwrap();
    let out = framerec(&[
        "record",
        "--config",
        cfg.to_str().unwrap(),
        "--width",
        "32",
        "--out",
        tmp.path().join("rec").to_str().unwrap(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("[[source.stream]] tables give each stream's size"),
        "{}",
        text(&out)
    );
}
