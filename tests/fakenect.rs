//! The Kinect paths, end to end without a Kinect, through Debian's real libfreenect and its
//! fakenect replay library: a `framerec export --format fakenect` dump replays into a small C
//! client (tests/c/fakenect_probe.c) and into framerec's own `--source freenect` (libfreenect
//! loaded at run time), and `--source fakenect:DIR` (framerec's reader) gives the same frames,
//! device timestamps and bytes. Needs `cc`, libfreenect-dev and libfreenect-bin (tests/run
//! installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn fakenect_export_replays_through_libfreenect() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let dump = tmp.path().join("dump");
    let (frames, seed) = (24u64, 21u64);
    let bin = env!("CARGO_BIN_EXE_framerec");
    let out = Command::new(bin)
        .args([
            "record",
            "--out",
            rec.to_str().unwrap(),
            "--fps",
            "30",
            "--seed",
            &seed.to_string(),
        ])
        .args(["--frames", &frames.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin)
        .args([
            "export",
            rec.to_str().unwrap(),
            "--format",
            "fakenect",
            "--out",
            dump.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let probe = tmp.path().join("probe");
    let cc = Command::new("cc")
        .args(["-O2", "-o", probe.to_str().unwrap()])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/c/fakenect_probe.c"
        ))
        .arg("-lfreenect")
        .output()
        .expect("cc runs");
    assert!(
        cc.status.success(),
        "building the probe needs libfreenect-dev: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let replay = Command::new("timeout")
        .args([
            "60",
            "fakenect",
            dump.to_str().unwrap(),
            probe.to_str().unwrap(),
            &frames.to_string(),
        ])
        .output()
        .expect("fakenect (libfreenect-bin) runs");
    assert!(
        replay.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&replay.stderr)
    );

    let lines: Vec<String> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len() as u64, frames, "every frame replays");
    for (seq, line) in lines.iter().enumerate() {
        let seq = seq as u64;
        let device_ns = seq * 1_000_000_000 / 30;
        let ticks = framerec::source::kinect_ns_to_ticks(device_ns) as u32;
        let bytes = framerec::source::synthetic::expected_frame(seed, seq, 640, 480);
        assert_eq!(
            line,
            &format!("{ticks} {:016x}", fnv1a(&bytes)),
            "frame {seq}"
        );
    }
}

/// `(device timestamp, bytes)` of every depth frame of a fakenect dump, in INDEX.txt order.
fn dump_frames(dump: &Path) -> Vec<(u32, Vec<u8>)> {
    std::fs::read_to_string(dump.join("INDEX.txt"))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("d-"))
        .map(|l| {
            let ts = l.rsplit('-').next().unwrap().trim_end_matches(".pgm");
            (ts.parse().unwrap(), std::fs::read(dump.join(l)).unwrap())
        })
        .collect()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.env("RUST_LOG", "warn").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {text}");
    text
}

/// Exports recording `rec` as a fakenect dump and returns its frames.
fn exported(rec: &Path) -> Vec<(u32, Vec<u8>)> {
    let dump = rec.with_extension("dump");
    run_ok(Command::new(env!("CARGO_BIN_EXE_framerec")).args([
        "export",
        rec.to_str().unwrap(),
        "--format",
        "fakenect",
        "--out",
        dump.to_str().unwrap(),
    ]));
    dump_frames(&dump)
}

#[test]
fn a_dump_records_identically_through_libfreenect_and_the_rust_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_framerec");
    let rec = tmp.path().join("rec");
    run_ok(Command::new(bin).args([
        "record",
        "--out",
        rec.to_str().unwrap(),
        "--fps",
        "30",
        "--frames",
        "40",
        "--seed",
        "5",
    ]));
    let original = exported(&rec);
    assert_eq!(original.len(), 40);

    // The real libfreenect API, the dump replayed by Debian's fakenect library.
    let via_lib = tmp.path().join("via-libfreenect");
    run_ok(Command::new("timeout").args([
        "60",
        "fakenect",
        rec.with_extension("dump").to_str().unwrap(),
        bin,
        "record",
        "--source",
        "freenect",
        "--out",
        via_lib.to_str().unwrap(),
        "--stats-socket",
        "off",
    ]));
    // framerec's own reader of the same dump.
    let via_rust = tmp.path().join("via-reader");
    run_ok(Command::new(bin).args([
        "record",
        "--source",
        &format!("fakenect:{}", rec.with_extension("dump").display()),
        "--out",
        via_rust.to_str().unwrap(),
        "--stats-socket",
        "off",
        "--io-mode",
        "buffered",
    ]));
    for got in [&via_lib, &via_rust] {
        run_ok(Command::new(bin).args(["verify", got.to_str().unwrap()]));
        let frames = exported(got);
        assert_eq!(
            frames.len(),
            original.len(),
            "{}: every frame",
            got.display()
        );
        for (i, (a, b)) in original.iter().zip(&frames).enumerate() {
            assert_eq!(a.0, b.0, "{}: device timestamp of frame {i}", got.display());
            assert!(a.1 == b.1, "{}: bytes of frame {i}", got.display());
        }
    }
}

#[test]
fn without_libfreenect_the_freenect_source_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record",
            "--source",
            "freenect",
            "--freenect-library",
            "/nonexistent/libfreenect.so.0.5",
            "--out",
            tmp.path().join("rec").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot load libfreenect") && err.contains("apt install libfreenect0.5"),
        "{err}"
    );
    assert!(
        !tmp.path()
            .join("rec")
            .join("0000000000000000.mcap")
            .exists()
    );
}

#[test]
fn a_broken_dump_is_refused_with_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    std::fs::write(dump.join("INDEX.txt"), "d-1.0-0.pgm\nd-1.1-2000000.pgm\n").unwrap();
    let mut first = b"P5 640 480 65535\n".to_vec();
    first.resize(first.len() + 640 * 480 * 2, 7);
    std::fs::write(dump.join("d-1.0-0.pgm"), &first).unwrap();
    std::fs::write(dump.join("d-1.1-2000000.pgm"), &first[..1000]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record",
            "--source",
            &format!("fakenect:{}", dump.display()),
            "--out",
            tmp.path().join("rec").to_str().unwrap(),
            "--stats-socket",
            "off",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a failed recording: {err}");
    assert!(
        err.contains("INDEX.txt:2") && err.contains("truncated"),
        "{err}"
    );
    // The frame before the bad one was recorded and verifies.
    let verify = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["verify", tmp.path().join("rec").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn a_fakenect_layout_recording_replays_through_libfreenect_into_framerec() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_framerec");
    let (frames, seed) = (40u64, 9u64);
    let dump = tmp.path().join("dump");
    run_ok(Command::new(bin).args([
        "record",
        "--layout",
        "fakenect",
        "--out",
        dump.to_str().unwrap(),
        "--fps",
        "30",
        "--frames",
        &frames.to_string(),
        "--seed",
        &seed.to_string(),
        "--stats-socket",
        "off",
    ]));
    let verify = run_ok(Command::new(bin).args(["verify", dump.to_str().unwrap()]));
    assert!(verify.contains("OK: 40 frames in INDEX.txt"), "{verify}");
    let written = dump_frames(&dump);
    assert_eq!(written.len() as u64, frames);

    let replayed = tmp.path().join("replayed");
    run_ok(Command::new("timeout").args([
        "60",
        "fakenect",
        dump.to_str().unwrap(),
        bin,
        "record",
        "--source",
        "freenect",
        "--out",
        replayed.to_str().unwrap(),
        "--stats-socket",
        "off",
    ]));
    let back = exported(&replayed);
    assert_eq!(back.len() as u64, frames, "every frame replays");
    for (seq, ((ts_a, file_a), (ts_b, file_b))) in written.iter().zip(&back).enumerate() {
        let expected = framerec::source::synthetic::expected_frame(seed, seq as u64, 640, 480);
        assert!(file_a.ends_with(&expected), "frame {seq} as written");
        assert!(file_a == file_b, "frame {seq} after the round trip");
        assert_eq!(ts_a, ts_b, "device timestamp of frame {seq}");
        let device_ns = seq as u64 * 1_000_000_000 / 30;
        assert_eq!(
            *ts_a as u64,
            framerec::source::kinect_ns_to_ticks(device_ns)
        );
    }
}

#[test]
fn a_killed_fakenect_layout_recording_names_only_complete_files() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_framerec");
    let dump = tmp.path().join("dump");
    let mut child = Command::new(bin)
        .args([
            "record",
            "--layout",
            "fakenect",
            "--fps",
            "60",
            "--stats-socket",
            "off",
        ])
        .args(["--out", dump.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let verify = run_ok(Command::new(bin).args(["verify", dump.to_str().unwrap()]));
    let frames = dump_frames(&dump);
    assert!(frames.len() >= 30, "{verify}");
    for (i, (_, bytes)) in frames.iter().enumerate() {
        assert_eq!(bytes.len(), 17 + 640 * 480 * 2, "frame {i} complete");
    }
}

/// The first JSON document in `bytes` (fakenect's replay library prints a line after it).
fn first_json(bytes: &[u8]) -> serde_json::Value {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<serde_json::Value>()
        .next()
        .expect("a JSON document")
        .expect("valid JSON")
}

/// A dump of 90 frames that all carry the same host time: Debian's fakenect library replays
/// them as fast as it can, far faster than writers held up by a slow disk take them.
fn burst_dump(dir: &Path) -> PathBuf {
    let dump = dir.join("dump");
    std::fs::create_dir(&dump).unwrap();
    let mut index = String::new();
    for i in 0..90u64 {
        let name = format!("d-1.000000-{}.pgm", i * 2_000_000);
        let mut pgm = b"P5 640 480 65535\n".to_vec();
        pgm.extend((0..640 * 480 * 2).map(|b: u64| (b + i * 7) as u8));
        std::fs::write(dump.join(&name), pgm).unwrap();
        index.push_str(&name);
        index.push('\n');
    }
    std::fs::write(dump.join("INDEX.txt"), index).unwrap();
    dump
}

/// Records `dump` through libfreenect's fakenect with a 2-frame queue and 20 ms writes.
fn record_burst(dump: &Path, rec: &Path, extra: &[&str]) -> (std::process::Output, String) {
    let out = Command::new("timeout")
        .args(["60", "fakenect", dump.to_str().unwrap()])
        .arg(env!("CARGO_BIN_EXE_framerec"))
        .args([
            "record",
            "--source",
            "freenect",
            "--stats-socket",
            "off",
            "--json",
        ])
        .args(["--queue-frames", "2"])
        .args(extra)
        .args(["--out", rec.to_str().unwrap()])
        .env("FRAMEREC_TEST_WRITE_DELAY_MS", "20")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, err)
}

#[test]
fn frames_a_device_delivers_faster_than_they_are_taken_are_counted_and_named_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_framerec");
    let dump = burst_dump(tmp.path());
    let rec = tmp.path().join("rec");
    // As a live device: the callback never waits; what finds the queue full is dropped there,
    // numbered at delivery.
    let (out, err) = record_burst(&dump, &rec, &["--overflow", "drop-newest"]);
    assert!(out.status.success(), "{err}");
    let totals = &first_json(&out.stdout)["totals"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let written = n(&totals["written_frames"]);
    let full = n(&totals["dropped"]["queue_full"]);
    let dropped: u64 = totals["dropped"].as_object().unwrap().values().map(n).sum();
    assert_eq!(n(&totals["received_frames"]), 90, "{totals}");
    assert_eq!(
        written + dropped,
        90,
        "delivered = written + dropped: {totals}"
    );
    assert!(full > 0 && full == dropped, "{totals}");
    assert!(
        err.contains(&format!("dropped {dropped} ")) && err.contains("queue_full"),
        "{err}"
    );

    // The file names every lost frame under its own sequence number, and verify agrees.
    let verify = Command::new(bin)
        .args(["verify", "--json", rec.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let report = &first_json(&verify.stdout)[0]["report"];
    assert_eq!(n(&report["frames"]), written, "{report}");
    assert_eq!(n(&report["dropped"]["queue_full"]), full, "{report}");
    assert_eq!((n(&report["first_seq"]), n(&report["last_seq"])), (0, 89));
    // The drops were noticed while earlier frames still queued: in file order every
    // message's log time still follows the one before (what `mcap doctor
    // --strict-message-order` checks).
    let bytes = std::fs::read(rec.join("0000000000000000.mcap")).unwrap();
    let times: Vec<(u64, String)> = mcap::MessageStream::new(&bytes)
        .unwrap()
        .map(|m| {
            let m = m.unwrap();
            (m.log_time, m.channel.topic.clone())
        })
        .collect();
    assert!(
        times.iter().any(|(_, topic)| topic == "/framerec/drops"),
        "{times:?}"
    );
    assert!(
        times.windows(2).all(|w| w[0].0 <= w[1].0),
        "log times out of order: {times:?}"
    );
    let info = Command::new(bin)
        .args(["info", rec.to_str().unwrap()])
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(&format!("dropped {full} frames: queue_full")),
        "{info}"
    );
}

#[test]
fn a_replay_through_libfreenect_waits_for_room_and_loses_nothing() {
    // The callback hands each frame to the queue itself: under `block` (the default for a
    // replay) it waits for the slow writers, and fakenect's replay waits with it. Through a
    // second hand-off in between, frames were lost in it.
    let tmp = tempfile::tempdir().unwrap();
    let dump = burst_dump(tmp.path());
    let rec = tmp.path().join("rec");
    let (out, err) = record_burst(&dump, &rec, &[]);
    assert!(out.status.success(), "{err}");
    let totals = &first_json(&out.stdout)["totals"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let dropped: u64 = totals["dropped"].as_object().unwrap().values().map(n).sum();
    assert_eq!(
        (
            n(&totals["received_frames"]),
            n(&totals["written_frames"]),
            dropped
        ),
        (90, 90, 0),
        "{totals}"
    );
    // Byte for byte, in order.
    let frames = exported(&rec);
    let want = dump_frames(&dump);
    assert_eq!(frames.len(), want.len());
    assert!(frames == want, "the recorded frames differ from the dump's");
}

/// One frame of a dump: its stream (`depth`, `color`, `accel`), device timestamp and bytes
/// (after the image header).
#[derive(Debug, Clone, PartialEq)]
struct DumpFrame {
    stream: &'static str,
    ts: u32,
    payload: Vec<u8>,
}

/// A 640x480 dump of `n` frames of each stream, written as fakenect-record does: per frame an
/// accelerometer line (its timestamp the last image's), a depth and a colour line, 15 ms apart.
fn three_stream_dump(dir: &Path, n: u32) -> (PathBuf, Vec<DumpFrame>) {
    let dump = dir.join("dump3");
    std::fs::create_dir(&dump).unwrap();
    let (mut index, mut frames, mut last_image) = (String::new(), Vec::new(), 0u32);
    for i in 0..n {
        let depth: Vec<u8> = (0..640 * 480 * 2).map(|b: u32| (b + i * 7) as u8).collect();
        let rgb: Vec<u8> = (0..640 * 480 * 3)
            .map(|b: u32| (b / 3 + i * 11) as u8)
            .collect();
        let mut accel = Vec::new();
        for v in [100 + i as i16, -200 - i as i16, 819] {
            accel.extend(v.to_le_bytes());
        }
        accel.extend([(i as i8 - 5) as u8, 0]);
        accel.extend((i % 2 * 4).to_le_bytes());
        let ts = i * 2_000_000;
        for (stream, prefix, ext, head, payload, ts) in [
            ("accel", "a", "dump", "", accel, last_image),
            ("depth", "d", "pgm", "P5 640 480 65535\n", depth, ts),
            ("color", "r", "ppm", "P6 640 480 255\n", rgb, ts + 1000),
        ] {
            let line = frames.len() as f64;
            let name = format!("{prefix}-{:.6}-{ts}.{ext}", 1000.0 + line * 0.015);
            let mut file = head.as_bytes().to_vec();
            file.extend(&payload);
            std::fs::write(dump.join(&name), file).unwrap();
            index.push_str(&name);
            index.push('\n');
            frames.push(DumpFrame {
                stream,
                ts,
                payload,
            });
            if stream != "accel" {
                last_image = ts;
            }
        }
    }
    std::fs::write(dump.join("INDEX.txt"), index).unwrap();
    (dump, frames)
}

/// Every message of the streams' channels in a recording, read with the `mcap` crate, by
/// stream name (the channel's `stream` metadata), in order: (device time, message bytes).
fn mcap_streams(rec: &Path) -> std::collections::BTreeMap<String, Vec<(u64, Vec<u8>)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(u64, Vec<u8>)>> = Default::default();
    let mut segments: Vec<PathBuf> = std::fs::read_dir(rec)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mcap"))
        .collect();
    segments.sort();
    for path in segments {
        let bytes = std::fs::read(&path).unwrap();
        let device = common::device_clock(&bytes);
        for m in mcap::MessageStream::new(&bytes).unwrap() {
            let m = m.unwrap();
            let Some(stream) = m.channel.metadata.get("stream") else {
                continue;
            };
            let seqs = out.entry(stream.clone()).or_default();
            assert_eq!(m.sequence as usize, seqs.len(), "{stream}: gap-free");
            seqs.push((device(&m), m.data.to_vec()));
        }
    }
    out
}

/// Checks that `rec` holds every frame of `want`, per stream, byte for byte (a message ends
/// with its frame's bytes) with the dump's device time. `polled`: the accelerometer was polled
/// (libfreenect), so a reading may repeat (runs of one reading count once) and carries the
/// device time of the latest image at the poll: its line's, or, when a poll came only after a
/// later image line (fakenect catching up on a loaded machine), that image's.
fn assert_holds(rec: &Path, want: &[DumpFrame], polled: bool) {
    let got = mcap_streams(rec);
    for stream in ["depth", "color", "accel"] {
        // Each frame of the stream, and the device timestamps its message may carry.
        let want: Vec<(&DumpFrame, Vec<u32>)> = want
            .iter()
            .enumerate()
            .filter(|(_, f)| f.stream == stream)
            .map(|(i, f)| {
                let mut ts = vec![f.ts];
                if polled && stream == "accel" {
                    let later = want[i + 1..].iter().take_while(|g| g.stream != "accel");
                    ts.extend(later.map(|g| g.ts));
                }
                (f, ts)
            })
            .collect();
        let mut have = got.get(stream).cloned().unwrap_or_default();
        if polled && stream == "accel" {
            // The message's other fields (its host time) differ; the raw reading ends it.
            have.dedup_by(|b, a| a.1[a.1.len() - 12..] == b.1[b.1.len() - 12..]);
        }
        assert_eq!(have.len(), want.len(), "{}: {stream} frames", rec.display());
        for (i, ((w, ts), (device_ns, msg))) in want.iter().zip(&have).enumerate() {
            assert!(
                msg.ends_with(&w.payload),
                "{}: bytes of {stream} frame {i}",
                rec.display()
            );
            let times: Vec<u64> = ts
                .iter()
                .map(|t| framerec::source::kinect_ticks_to_ns(*t as u64))
                .collect();
            assert!(
                times.contains(device_ns),
                "{}: device time {device_ns} of {stream} frame {i}, expected {times:?}",
                rec.display()
            );
        }
    }
}

/// `fakenect DUMP framerec record --source freenect --streams depth,color,accel --out REC`.
fn record_through_libfreenect(dump: &Path, rec: &Path) {
    run_ok(Command::new("timeout").args([
        "60",
        "fakenect",
        dump.to_str().unwrap(),
        env!("CARGO_BIN_EXE_framerec"),
        "record",
        "--source",
        "freenect",
        "--streams",
        "depth,color,accel",
        // A poll after every line fakenect replays (they are 15 ms apart).
        "--accel-rate",
        "1000",
        "--out",
        rec.to_str().unwrap(),
        "--stats-socket",
        "off",
        // `assert_holds` reads a message's last bytes as its frame: O_DIRECT puts slack
        // fields after the payload, which auto chooses on a local disk.
        "--io-mode",
        "buffered",
    ]));
}

#[test]
fn depth_colour_and_accelerometer_record_from_a_dump_through_libfreenect_and_the_rust_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_framerec");
    let (dump, want) = three_stream_dump(tmp.path(), 10);

    let via_lib = tmp.path().join("via-libfreenect");
    record_through_libfreenect(&dump, &via_lib);
    assert_holds(&via_lib, &want, true);

    let via_rust = tmp.path().join("via-reader");
    run_ok(Command::new(bin).args([
        "record",
        "--source",
        &format!("fakenect:{}", dump.display()),
        "--no-pacing",
        "--streams",
        "depth,color,accel",
        "--out",
        via_rust.to_str().unwrap(),
        "--stats-socket",
        "off",
        "--io-mode",
        "buffered",
    ]));
    assert_holds(&via_rust, &want, false);

    // A stream the dump has no line of is refused at the start, by name.
    std::fs::write(
        dump.join("INDEX.txt"),
        std::fs::read_to_string(dump.join("INDEX.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("r-"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = Command::new(bin)
        .args([
            "record",
            "--source",
            &format!("fakenect:{}", dump.display()),
        ])
        .args(["--streams", "depth,color", "--stats-socket", "off", "--out"])
        .arg(tmp.path().join("refused"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no color frames (r-*.ppm)"), "{err}");
}

#[test]
fn a_fakenect_layout_recording_of_three_streams_replays_through_libfreenect() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_framerec");
    let (dump, want) = three_stream_dump(tmp.path(), 10);
    // Paced, so the layout's host times are as far apart as the dump's.
    let layout = tmp.path().join("layout");
    run_ok(Command::new(bin).args([
        "record",
        "--source",
        &format!("fakenect:{}", dump.display()),
        "--streams",
        "depth,color,accel",
        "--layout",
        "fakenect",
        "--out",
        layout.to_str().unwrap(),
        "--stats-socket",
        "off",
    ]));
    let verify = run_ok(Command::new(bin).args(["verify", layout.to_str().unwrap()]));
    assert!(
        verify.contains("OK: 30 frames in INDEX.txt")
            && verify.contains("accel 10 frames, color 10 frames, depth 10 frames"),
        "{verify}"
    );
    let index = std::fs::read_to_string(layout.join("INDEX.txt")).unwrap();
    let kinds: String = index.lines().map(|l| &l[..1]).collect();
    assert_eq!(kinds, "adr".repeat(10), "INDEX.txt in receive order");
    for line in index.lines() {
        let file = std::fs::read(layout.join(line)).unwrap();
        let (_, ts_ext) = line.rsplit_once('-').unwrap();
        let ts: u32 = ts_ext.split('.').next().unwrap().parse().unwrap();
        let stream = match &line[..1] {
            "a" => "accel",
            "d" => "depth",
            _ => "color",
        };
        let frame = want
            .iter()
            .find(|f| f.stream == stream && f.ts == ts && file.ends_with(&f.payload))
            .unwrap_or_else(|| panic!("{line} is a frame of the dump"));
        let header = file.len() - frame.payload.len();
        let expected: &[u8] = match stream {
            "accel" => b"",
            "depth" => b"P5 640 480 65535\n",
            _ => b"P6 640 480 255\n",
        };
        assert_eq!(&file[..header], expected, "{line}");
    }

    let replayed = tmp.path().join("replayed");
    record_through_libfreenect(&layout, &replayed);
    assert_holds(&replayed, &want, true);
}

#[test]
fn drops_of_each_stream_are_named_with_their_stream_in_drops_txt() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_framerec");
    let layout = tmp.path().join("layout");
    // A paced (live) source of three streams into a 2-frame queue whose writes take 20 ms:
    // frames of every stream find it full and are dropped where they arrive.
    let out = Command::new(bin)
        .args(["record", "--layout", "fakenect", "--stats-socket", "off"])
        .args([
            "--streams",
            "depth,color,accel",
            "--fps",
            "200",
            "--accel-rate",
            "200",
        ])
        .args(["--width", "64", "--height", "48", "--frames", "90"])
        .args([
            "--queue-frames",
            "2",
            "--overflow",
            "drop-newest",
            "--json",
            "--out",
        ])
        .arg(&layout)
        .env("FRAMEREC_TEST_WRITE_DELAY_MS", "20")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drops = std::fs::read_to_string(layout.join("DROPS.txt")).unwrap();
    let mut named = std::collections::BTreeSet::new();
    for line in drops.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 4, "{line}");
        assert!(["depth", "color", "accel"].contains(&f[3]), "{line}");
        named.insert(f[3]);
    }
    assert!(named.len() > 1, "drops of several streams: {drops}");

    let v = Command::new(bin)
        .args(["verify", "--json"])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let report = &first_json(&v.stdout)[0]["fakenect"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let streams = report["streams"].as_object().unwrap();
    let per: u64 = streams
        .values()
        .map(|s| n(&s["frames"]) + n(&s["dropped"]))
        .sum();
    // Every frame received is in INDEX.txt or DROPS.txt, under its stream.
    let totals = &first_json(&out.stdout)["totals"];
    assert_eq!(per, n(&totals["received_frames"]), "{report} {totals}");
    assert_eq!(
        n(&report["frames"]),
        n(&totals["written_frames"]),
        "{report}"
    );
    let depth = &streams["depth"];
    assert_eq!(n(&depth["frames"]) + n(&depth["dropped"]), 90, "{report}");
    for name in named {
        assert!(n(&streams[name]["dropped"]) > 0, "{report}");
    }
}
