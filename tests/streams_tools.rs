//! Recordings of several streams (depth, colour, accelerometer) through the tools: verify
//! checks each stream, info describes each, export writes each in its own format (checked
//! against the synthetic source's definition), recover after kill -9 keeps every channel, a
//! second run continues each stream's numbering, and the official readers take them apart.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{framerec, spawn_framerec, text};
use framerec::source::synthetic::{expected_accel, expected_color_frame};

const SEED: u64 = 5;
const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;

/// Records `frames` unpaced frames of depth, colour and accelerometer into `dir`.
fn record3(dir: &Path, frames: u64) {
    let (w, h, seed, n) = (
        WIDTH.to_string(),
        HEIGHT.to_string(),
        SEED.to_string(),
        frames.to_string(),
    );
    let o = framerec(&[
        "record",
        "--streams",
        "depth,color,accel",
        "--fps",
        "0",
        "--frames",
        &n,
        "--width",
        &w,
        "--height",
        &h,
        "--seed",
        &seed,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "record: {}", text(&o));
}

/// `verify --json` of `dir`: its report.
fn verify_json(dir: &Path) -> serde_json::Value {
    let o = framerec(&["verify", "--json", dir.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("verify --json: {e}: {}", text(&o)));
    assert!(o.status.success(), "verify: {}", text(&o));
    v[0]["report"].clone()
}

/// Per stream name: (frames, first_seq, last_seq) from a verify report.
fn streams_of(report: &serde_json::Value) -> BTreeMap<String, (u64, u64, u64)> {
    report["streams"]
        .as_array()
        .expect("a streams array")
        .iter()
        .map(|s| {
            let n = |k: &str| s[k].as_u64().unwrap_or(u64::MAX);
            (
                s["name"].as_str().unwrap().to_string(),
                (n("frames"), n("first_seq"), n("last_seq")),
            )
        })
        .collect()
}

fn export(dir: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "export",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    framerec(&all)
}

#[test]
fn three_streams_verify_per_stream_and_info_describes_each() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    record3(&dir, 300);
    let report = verify_json(&dir);
    assert_eq!(report["ok"], true, "{report}");
    let streams = streams_of(&report);
    assert_eq!(
        streams.keys().cloned().collect::<Vec<_>>(),
        ["accel", "color", "depth"]
    );
    for (name, (frames, first, last)) in &streams {
        assert!(*frames > 0, "{name}: {frames} frames");
        assert_eq!(
            (*first, *last),
            (0, frames - 1),
            "{name}: numbered from 0, no gap"
        );
    }
    // The top-level fields keep their meaning: totals, and the first stream's numbers.
    let total: u64 = streams.values().map(|s| s.0).sum();
    assert_eq!(report["frames"].as_u64(), Some(total));
    assert_eq!(report["first_seq"].as_u64(), Some(0));
    assert_eq!(report["last_seq"].as_u64(), Some(streams["depth"].2));

    let v = framerec(&["verify", dir.to_str().unwrap()]);
    let out = text(&v);
    assert!(v.status.success(), "{out}");
    assert!(out.contains("stream color (/camera/color): "), "{out}");
    assert!(out.contains("stream accel ("), "{out}");

    let i = framerec(&["info", dir.to_str().unwrap()]);
    let out = text(&i);
    assert!(i.status.success(), "{out}");
    assert!(out.contains("stream depth: 16UC1 64x48"), "{out}");
    assert!(out.contains("stream color: rgb8 64x48"), "{out}");
    assert!(out.contains("stream accel: accelerometer"), "{out}");
    // Each stream's rate, span, dates and payload, from its frames' log times.
    assert_eq!(out.matches("frames/s measured, ").count(), 3, "{out}");
    assert_eq!(out.matches("\n  start 20").count(), 3, "{out}");
    assert_eq!(out.matches(" UTC (").count(), 6, "{out}");
    let depth = &report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "depth")
        .unwrap();
    let (a, b) = (
        depth["first_time_ns"].as_u64().unwrap(),
        depth["last_time_ns"].as_u64().unwrap(),
    );
    assert!(a < b, "{depth}");
    let bytes = streams["depth"].0 * WIDTH as u64 * HEIGHT as u64 * 2;
    assert!((1_000_000..1_000_000_000).contains(&bytes), "{bytes}");
    let want = format!(
        "{:.3} s, {:.1} MB of payload",
        (b - a) as f64 / 1e9,
        bytes as f64 / 1e6
    );
    assert!(out.contains(&want), "{want}: {out}");
}

/// `info` named each stream twice (its heading, then a verify-style line repeating it).
#[test]
fn info_names_each_stream_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    record3(&dir, 30);
    let i = framerec(&["info", dir.to_str().unwrap()]);
    let out = text(&i);
    assert!(i.status.success(), "{out}");
    for (name, heading) in [
        (
            "depth",
            "stream depth: 16UC1 64x48\n  /camera/depth: 30 frames (seq 0..=29), dropped: none\n",
        ),
        ("color", "stream color: rgb8 64x48\n  /camera/color: "),
        ("accel", "stream accel: accelerometer\n  /camera/accel: "),
    ] {
        assert_eq!(
            out.matches(&format!("stream {name}")).count(),
            1,
            "{name}: {out}"
        );
        assert!(out.contains(heading), "{name}: {out}");
    }
}

/// A recording of 30 frames of each stream in `dir` whose one segment looks as a recorder
/// leaves it mid-run (its data, no summary, no footer), with the directory locked as by a
/// recorder at work: the segment's name, the frames it holds, and the lock.
fn being_written(dir: &std::path::Path) -> (String, u64, framerec::store::lock::DirLock) {
    record3(dir, 30);
    let segments = common::segments(dir);
    assert_eq!(segments.len(), 1, "{segments:?}");
    let bytes = std::fs::read(&segments[0]).unwrap();
    let contents = framerec::segment::parse_segment(&bytes);
    let frames = contents.messages();
    assert!(frames > 0);
    std::fs::write(&segments[0], &bytes[..contents.data_end as usize]).unwrap();
    let lock = framerec::store::lock::lock_dir(dir).unwrap();
    (segments[0].display().to_string(), frames, lock)
}

/// `verify` of a recording whose only segment a recorder is still writing said "OK: 0 frames
/// written" although the segment's chunks held frames: it now reads them, says how many it
/// holds so far and that it is unfinished, and exits 0 as before (a segment being written is
/// not damage).
#[test]
fn verify_reads_the_frames_of_a_segment_still_being_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let (name, frames, _lock) = being_written(&dir);

    let v = framerec(&["verify", dir.to_str().unwrap()]);
    let out = text(&v);
    assert!(v.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "{name}  being written  {frames} frames (seq 0..=29)  unfinished"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "OK: 0 frames written, 0 dropped and recorded as gaps; {frames} frames so far in the unfinished segment being written"
        )),
        "{out}"
    );
    assert!(!out.contains("DAMAGED"), "{out}");

    let j = framerec(&["verify", "--json", dir.to_str().unwrap()]);
    assert!(j.status.success(), "{}", text(&j));
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let so_far = &v[0]["being_written_so_far"][0];
    assert_eq!(so_far["frames"].as_u64(), Some(frames), "{v}");
    assert_eq!(so_far["finalized"], false, "{v}");
}

/// `info` on a recording whose only segment a recorder is still writing counts the frames it
/// holds so far (it said "0 frames" and nothing else).
#[test]
fn info_counts_the_frames_of_a_segment_still_being_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let (name, frames, _lock) = being_written(&dir);

    let i = framerec(&["info", dir.to_str().unwrap()]);
    let out = text(&i);
    assert!(i.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "{name}  being written  {frames} frames (seq 0..=29)  unfinished"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "; {frames} frames so far in the unfinished segment being written"
        )),
        "{out}"
    );
}

#[test]
fn each_stream_exports_in_its_own_format_with_the_bytes_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    record3(&dir, 300);
    let streams = streams_of(&verify_json(&dir));

    // Colour as PPM: the samples exactly.
    let ppm = tmp.path().join("ppm");
    let o = export(&dir, &ppm, &["--stream", "color", "--format", "ppm"]);
    assert!(o.status.success(), "{}", text(&o));
    let colour_frames = streams["color"].0;
    assert_eq!(
        std::fs::read_dir(&ppm).unwrap().count() as u64,
        colour_frames
    );
    for seq in [0, colour_frames / 2, colour_frames - 1] {
        let f = std::fs::read(ppm.join(format!("{seq:010}.ppm"))).unwrap();
        let header = format!("P6\n{WIDTH} {HEIGHT}\n255\n");
        assert_eq!(&f[..header.len()], header.as_bytes());
        assert!(
            f[header.len()..] == expected_color_frame(SEED, seq, WIDTH, HEIGHT),
            "colour frame {seq}"
        );
    }

    // Colour as PNG (RGB, 8 bits): decodes back to the samples.
    let png_dir = tmp.path().join("png");
    let o = export(
        &dir,
        &png_dir,
        &["--stream", "color", "--format", "png", "--to-seq", "3"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let file = std::fs::read(png_dir.join("0000000003.png")).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.width, info.height, info.color_type),
        (WIDTH, HEIGHT, png::ColorType::Rgb)
    );
    assert!(buf[..info.buffer_size()] == expected_color_frame(SEED, 3, WIDTH, HEIGHT));

    // Accelerometer as CSV: a row per reading, in SI units from the raw bytes.
    let csv_dir = tmp.path().join("csv");
    let o = export(&dir, &csv_dir, &["--stream", "accel", "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(csv_dir.join("accel.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("seq,log_time_ns,device_ns,x_m_s2,y_m_s2,z_m_s2,tilt_degrees,tilt_status")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len() as u64, streams["accel"].0);
    for (i, row) in rows.iter().enumerate() {
        let f: Vec<&str> = row.split(',').collect();
        assert_eq!(f[0], i.to_string());
        let want =
            framerec::segment::accel::RawTilt::from_bytes(&expected_accel(SEED, i as u64)).unwrap();
        let mks = want.mks();
        for (k, v) in mks.iter().enumerate() {
            assert_eq!(f[3 + k].parse::<f64>().unwrap(), *v, "row {i}");
        }
        assert_eq!(f[6].parse::<f64>().unwrap(), want.tilt_degrees(), "row {i}");
        assert_eq!(f[7], want.tilt_status.to_string());
    }

    // Depth as before, by default.
    let pgm = tmp.path().join("pgm");
    let o = export(&dir, &pgm, &["--format", "pgm", "--to-seq", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(pgm.join("0000000001.pgm").is_file());

    // A stream the recording does not have, or a format its frames cannot take: exit 2.
    let o = export(
        &dir,
        &tmp.path().join("none"),
        &["--stream", "ir", "--format", "png"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("has no stream ir (it has: depth, color, accel)"),
        "{}",
        text(&o)
    );
    let o = export(
        &dir,
        &tmp.path().join("bad"),
        &["--stream", "accel", "--format", "png"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_second_run_continues_each_streams_numbering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    record3(&dir, 300);
    let first = streams_of(&verify_json(&dir));
    record3(&dir, 300);
    let report = verify_json(&dir);
    assert_eq!(report["ok"], true, "{report}");
    let second = streams_of(&report);
    for (name, (frames, first_seq, last_seq)) in &second {
        let before = first[name].0;
        assert!(*frames > before, "{name}: {frames} frames after {before}");
        assert_eq!((*first_seq, *last_seq), (0, frames - 1), "{name}");
    }
}

#[test]
fn recover_after_kill_keeps_every_channel_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let cfg = tmp.path().join("c.toml");
    std::fs::write(
        &cfg,
        "[durability]\nfsync-interval-ms = 50\n[segment]\nmax-bytes = 4194304\n",
    )
    .unwrap();
    let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
    let mut child = spawn_framerec(
        &[&[
            "record",
            "--config",
            cfg.to_str().unwrap(),
            "--streams",
            "depth,color,accel",
            "--fps",
            "0",
            "--width",
            &w,
            "--height",
            &h,
            "--out",
            dir.to_str().unwrap(),
        ]],
        "framerec=info",
        Stdio::null(),
        Stdio::null(),
    );
    // Long enough for several segments on a loaded machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while common::segments(&dir).len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(common::segments(&dir).len() >= 2, "a few segments written");

    let r = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(r.status.success(), "recover: {}", text(&r));
    if text(&r).contains("recovered:") {
        assert!(text(&r).contains("    stream accel: kept "), "{}", text(&r));
    }
    let report = verify_json(&dir);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        streams_of(&report).keys().cloned().collect::<Vec<_>>(),
        ["accel", "color", "depth"]
    );
    // Every segment, rebuilt or not, reads in the official crate with all four channels.
    for seg in common::segments(&dir) {
        let bytes = std::fs::read(&seg).unwrap();
        let summary = mcap::read::Summary::read(&bytes).unwrap().unwrap();
        let mut topics: Vec<String> = summary.channels.values().map(|c| c.topic.clone()).collect();
        topics.sort();
        assert_eq!(
            topics,
            [
                "/camera/accel",
                "/camera/color",
                "/camera/depth",
                "/framerec/drops"
            ],
            "{}",
            seg.display()
        );
        for m in mcap::MessageStream::new(&bytes).unwrap() {
            m.unwrap();
        }
    }
}

#[test]
fn the_official_python_reader_reads_every_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    record3(&dir, 300);
    let streams = streams_of(&verify_json(&dir));
    let out = std::process::Command::new(common::python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/read_recording.py"
        ))
        .arg(&dir)
        .args([SEED.to_string(), WIDTH.to_string(), HEIGHT.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = common::check_image_crcs(&v["images"], SEED, WIDTH, HEIGHT);
    assert_eq!(images as u64, streams["depth"].0 + streams["color"].0);
    assert_eq!(v["frames"].as_u64(), Some(streams["depth"].0));
    assert_eq!(
        v["channels"]["/camera/color"].as_u64(),
        Some(streams["color"].0)
    );
    assert_eq!(
        v["channels"]["/camera/accel"].as_u64(),
        Some(streams["accel"].0)
    );
}
