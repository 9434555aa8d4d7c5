//! The tools read recordings in bounded memory (issue 15): each runs on a ~300 MB segment
//! under a data limit far below the segment's size (but above one chunk plus the tools' own
//! constant), so a tool that reads a segment whole fails here; and on a million tiny frames
//! under a limit a tool keeping anything per frame exceeds.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{framerec, text};

/// `RLIMIT_DATA` for every tool run here: heap and private mappings, well under the segment.
const LIMIT_BYTES: u64 = 128 << 20;

/// Runs `framerec args` with its data segment limited to [`LIMIT_BYTES`].
fn limited(args: &[&str]) -> Output {
    limited_to(LIMIT_BYTES, args)
}

/// Runs `framerec args` with its data segment limited to `limit` bytes.
fn limited_to(limit: u64, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--data={limit}"))
        .arg(env!("CARGO_BIN_EXE_framerec"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("prlimit runs (util-linux)")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn tools_read_a_large_segment_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    // 500 frames of 640x480 depth in one segment: ~307 MB.
    let out = framerec(&[
        "record",
        "--out",
        path(&rec),
        "--frames",
        "500",
        "--fps",
        "0",
        "--segment-bytes",
        "1000000000",
        "--stats-socket",
        "off",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let segment = rec.join("0000000000000000.mcap");
    let size = std::fs::metadata(&segment).unwrap().len();
    assert!(size > 2 * LIMIT_BYTES, "segment is only {size} bytes");

    let v = limited(&["verify", path(&rec)]);
    assert!(v.status.success(), "verify: {}", text(&v));
    assert!(text(&v).contains("OK: 500 frames written"), "{}", text(&v));

    let i = limited(&["info", path(&rec)]);
    assert!(i.status.success(), "info: {}", text(&i));
    assert!(
        text(&i).contains("500 frames (seq 0..=499)"),
        "{}",
        text(&i)
    );

    let pgm = tmp.path().join("pgm");
    let e = limited(&[
        "export",
        path(&rec),
        "--format",
        "pgm",
        "--out",
        path(&pgm),
        "--from-seq",
        "5",
        "--to-seq",
        "6",
    ]);
    assert!(e.status.success(), "export: {}", text(&e));
    let names: Vec<String> = std::fs::read_dir(&pgm)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".pgm"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(
        std::fs::metadata(pgm.join("0000000005.pgm")).unwrap().len(),
        "P5\n640 480\n65535\n".len() as u64 + 640 * 480 * 2
    );

    let s = limited(&["stats", path(&rec)]);
    assert!(s.status.success(), "stats: {}", text(&s));

    // A crashed copy: the segment's tail (summary, footer, the last chunk's end) torn off.
    let crashed = tmp.path().join("crashed");
    std::fs::create_dir(&crashed).unwrap();
    let torn = crashed.join("0000000000000000.mcap");
    std::fs::copy(&segment, &torn).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&torn)
        .unwrap()
        .set_len(size - 3_000_000)
        .unwrap();
    let v = limited(&["verify", path(&crashed)]);
    assert_eq!(v.status.code(), Some(1), "verify crashed: {}", text(&v));
    assert!(text(&v).contains("no footer"), "{}", text(&v));

    // `record` into it repairs the segment first and resumes after its last frame.
    let copy = tmp.path().join("crashed2");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(&torn, copy.join("0000000000000000.mcap")).unwrap();

    let r = limited(&["recover", path(&crashed)]);
    assert!(r.status.success(), "recover: {}", text(&r));
    assert!(text(&r).contains("recovered: kept"), "{}", text(&r));
    let v = limited(&["verify", path(&crashed)]);
    assert!(v.status.success(), "verify recovered: {}", text(&v));

    let r = limited(&[
        "record",
        "--out",
        path(&copy),
        "--frames",
        "2",
        "--fps",
        "0",
        "--queue-bytes",
        "8000000",
        "--stats-socket",
        "off",
    ]);
    assert!(r.status.success(), "record after a crash: {}", text(&r));
    let v = limited(&["verify", path(&copy)]);
    assert!(v.status.success(), "verify resumed: {}", text(&v));
}

/// `RLIMIT_DATA` for the tools on a million frames: the tools kept ~100 bytes per frame
/// (verify 116 MiB, export 86 MiB, recover 126 MiB at peak on these million frames) and now
/// keep runs of sequence numbers (~7 MiB whatever the count).
const FRAMES_LIMIT_BYTES: u64 = 48 << 20;

#[test]
fn tools_memory_does_not_grow_with_the_number_of_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    // A million 8x8 frames, unpaced: ~230 MB in three segments.
    let out = framerec(&[
        "record",
        "--out",
        path(&rec),
        "--frames",
        "1000000",
        "--fps",
        "0",
        "--width",
        "8",
        "--height",
        "8",
        "--segment-bytes",
        "100000000",
        "--stats-socket",
        "off",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let v = limited_to(FRAMES_LIMIT_BYTES, &["verify", path(&rec)]);
    assert!(v.status.success(), "verify: {}", text(&v));
    assert!(
        text(&v).contains("OK: 1000000 frames written"),
        "{}",
        text(&v)
    );

    let i = limited_to(FRAMES_LIMIT_BYTES, &["info", path(&rec)]);
    assert!(i.status.success(), "info: {}", text(&i));
    assert!(
        text(&i).contains("1000000 frames (seq 0..=999999)"),
        "{}",
        text(&i)
    );

    let pgm = tmp.path().join("pgm");
    let e = limited_to(
        FRAMES_LIMIT_BYTES,
        &[
            "export",
            path(&rec),
            "--format",
            "pgm",
            "--out",
            path(&pgm),
            "--from-seq",
            "999998",
        ],
    );
    assert!(e.status.success(), "export: {}", text(&e));
    assert!(text(&e).contains("exported 2 frames"), "{}", text(&e));
    assert!(pgm.join("0000999999.pgm").is_file());

    // The newest segment torn (a crash): recover rebuilds it, and verify accepts the result.
    let segments = common::segments(&rec);
    let newest = segments.last().unwrap();
    let len = std::fs::metadata(newest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(newest)
        .unwrap()
        .set_len(len - 1_000_000)
        .unwrap();
    let r = limited_to(FRAMES_LIMIT_BYTES, &["recover", path(&rec)]);
    assert!(r.status.success(), "recover: {}", text(&r));
    assert!(text(&r).contains("recovered: kept"), "{}", text(&r));
    let v = limited_to(FRAMES_LIMIT_BYTES, &["verify", path(&rec)]);
    assert!(v.status.success(), "verify recovered: {}", text(&v));
}

#[test]
fn verify_lists_a_bounded_number_of_problems_and_counts_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let out = framerec(&[
        "record",
        "--out",
        path(&rec),
        "--frames",
        "100000",
        "--fps",
        "0",
        "--width",
        "8",
        "--height",
        "8",
        "--stats-socket",
        "off",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Every other chunk damaged (its last byte flipped): each is found after an intact one.
    let segment = rec.join("0000000000000000.mcap");
    let mut bytes = std::fs::read(&segment).unwrap();
    let chunks = framerec::segment::segment_chunks(&bytes);
    assert!(chunks.len() > 400, "{} chunks", chunks.len());
    for c in chunks.iter().step_by(2) {
        bytes[(c.offset + c.length) as usize - 1] ^= 0x01;
    }
    std::fs::write(&segment, &bytes).unwrap();
    let damaged = chunks.len().div_ceil(2);

    let v = framerec(&["verify", path(&rec)]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    let listed = text(&v)
        .lines()
        .filter(|l| l.starts_with("    ") && !l.contains("more problems"))
        .count();
    assert_eq!(listed, framerec::segment::MAX_LISTED, "{}", text(&v));
    // A bad CRC, the frames it held and the bytes skipped, for each damaged chunk (the last
    // one's skip runs to the end of the file, summary included).
    let more: u64 = text(&v)
        .lines()
        .find_map(|l| l.strip_prefix("    ... and "))
        .and_then(|l| l.strip_suffix(" more problems (not listed)"))
        .unwrap_or_else(|| panic!("no count of the problems not listed in {}", text(&v)))
        .parse()
        .unwrap();
    let found = framerec::segment::MAX_LISTED as u64 + more;
    assert!(
        found >= 3 * damaged as u64 - 2,
        "{found} problems for {damaged} damaged chunks"
    );

    let j = framerec(&["verify", "--json", path(&rec)]);
    let json: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let seg = &json[0]["report"]["segments"][0];
    assert_eq!(
        seg["problems"].as_array().unwrap().len(),
        framerec::segment::MAX_LISTED
    );
    assert_eq!(seg["problems_not_listed"], more);
}

/// Frames in [`alternating_segment`]: more than a scan keeps runs of
/// ([`framerec::segment::MAX_RUNS`]), so the tools stop storing and only count.
const ALTERNATING_FRAMES: u64 = 700_000;

/// `RLIMIT_DATA` for the tools on [`alternating_segment`]: verify kept 32 bytes per run,
/// one run per frame, twice over (measured in benches/results/rss.md), and now keeps at
/// most 2^18 runs.
const ALTERNATING_LIMIT_BYTES: u64 = 40 << 20;

/// Writes, with the crate's own encoder, a finalized segment in `dir` of `frames` 2x1 depth
/// frames whose sequence numbers alternate (1, 0, 3, 2, ...; log times rising in file order):
/// a crafted recording in which every frame starts a run of its own.
fn alternating_segment(dir: &Path, frames: u64) -> std::path::PathBuf {
    use std::io::Write;

    use framerec::frame::{Frame, FrameBuf, FrameFormat, FrameMeta, FrameSeq, StreamInfo};
    use framerec::segment::{
        MAX_FRAMES_PER_CHUNK, SegmentMeta, encode_frame_batch, encode_segment_head,
        encode_segment_tail, segment_file_name,
    };

    let stream = StreamInfo {
        name: "depth".into(),
        topic: "/camera/depth".into(),
        frame_id: "crafted".into(),
        width: 2,
        height: 1,
        format: FrameFormat::Depth16,
    };
    let meta = SegmentMeta {
        recording_id: "alternating".into(),
        segment_id: 0,
        streams: vec![stream.clone()],
    };
    let path = dir.join(segment_file_name(0));
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (head_bytes, head) = encode_segment_head(&meta, false);
    file.write_all(&head_bytes).unwrap();
    let mut at = head_bytes.len() as u64;
    let mut chunks = Vec::new();
    let mut batch: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < frames {
        batch.clear();
        while i < frames && batch.len() < MAX_FRAMES_PER_CHUNK {
            let mut buf = FrameBuf::new(stream.frame_bytes());
            buf.fill(stream.frame_bytes())
                .unwrap()
                .copy_from_slice(&(i as u32).to_le_bytes());
            batch.push(Frame {
                meta: FrameMeta {
                    seq: FrameSeq(i ^ 1),
                    device_ns: i,
                    publish_ns: i,
                    host_mono_ns: i,
                    host_real_ns: 1_700_000_000_000_000_000 + i,
                    ..FrameMeta::default()
                },
                buf,
                span: (0, 0),
            });
            i += 1;
        }
        let layout = encode_frame_batch(&mut batch, at, std::slice::from_ref(&stream), false);
        for f in &batch {
            file.write_all(&f.buf.region()[f.span.0..f.span.1]).unwrap();
        }
        at += layout.len;
        chunks.extend(layout.chunks);
    }
    file.write_all(&encode_segment_tail(
        at,
        &chunks,
        std::slice::from_ref(&stream),
        &head,
        false,
    ))
    .unwrap();
    file.into_inner().unwrap().sync_all().unwrap();
    path
}

#[test]
fn tools_memory_is_bounded_on_a_recording_of_alternating_sequence_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    std::fs::create_dir(&rec).unwrap();
    let segment = alternating_segment(&rec, ALTERNATING_FRAMES);
    let n = ALTERNATING_FRAMES;

    let v = limited_to(ALTERNATING_LIMIT_BYTES, &["verify", path(&rec)]);
    assert_eq!(v.status.code(), Some(1), "verify: {}", text(&v));
    assert!(
        text(&v).contains(
            "sequence continuity not checked past 262144 runs and 0 drop notices: the recording is fragmented into more pieces than verify tracks"
        ),
        "{}",
        text(&v)
    );
    assert!(text(&v).contains(&format!("{n} frames")), "{}", text(&v));

    let i = limited_to(ALTERNATING_LIMIT_BYTES, &["info", path(&rec)]);
    assert!(i.status.success(), "info: {}", text(&i));
    assert!(
        text(&i).contains(&format!("{n} frames (seq 0..={})", n - 1)),
        "{}",
        text(&i)
    );

    let pgm = tmp.path().join("pgm");
    let e = limited_to(
        ALTERNATING_LIMIT_BYTES,
        &[
            "export",
            path(&rec),
            "--format",
            "pgm",
            "--out",
            path(&pgm),
            "--from-seq",
            &(n - 2).to_string(),
        ],
    );
    assert!(e.status.success(), "export: {}", text(&e));
    assert!(text(&e).contains("exported 2 frames"), "{}", text(&e));

    // Torn (a crash): recover keeps every intact chunk but cannot name what is missing.
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len - 100_000)
        .unwrap();
    let r = limited_to(ALTERNATING_LIMIT_BYTES, &["recover", path(&rec)]);
    assert!(r.status.success(), "recover: {}", text(&r));
    assert!(text(&r).contains("recovered: kept"), "{}", text(&r));
    assert!(
        text(&r).contains("frames missing from this segment are not named as lost"),
        "{}",
        text(&r)
    );
}
