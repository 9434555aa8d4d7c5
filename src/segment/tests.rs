//! Round trips through the encoder and the scanner, and damage the scanner must pinpoint.

use proptest::prelude::*;

use super::*;
use crate::frame::{DropReason, Frame, FrameBuf, FrameFormat, FrameMeta, FrameSeq, StreamInfo};

fn stream(width: u32, height: u32) -> StreamInfo {
    StreamInfo {
        name: "depth".into(),
        topic: "/camera/depth".into(),
        frame_id: "cam".into(),
        width,
        height,
        format: FrameFormat::Depth16,
    }
}

fn frame(seq: u64, len: usize) -> Frame {
    let mut buf = FrameBuf::new(len);
    for (i, b) in buf.fill(len).unwrap().iter_mut().enumerate() {
        *b = (seq as usize * 31 + i) as u8;
    }
    Frame {
        meta: FrameMeta {
            seq: FrameSeq(seq),
            order: seq,
            len: len as u64,
            device_ns: seq * 1000,
            host_mono_ns: seq,
            host_real_ns: 1_700_000_000_000_000_000 + seq * 33_333_333,
            ..FrameMeta::default()
        },
        buf,
        span: (0, 0),
    }
}

/// Encodes a whole segment from batches of frame sequence numbers, with optional drops before
/// each batch, exactly as the writer lays it out.
fn build(stream: &StreamInfo, batches: &[(Vec<u64>, Vec<DropRange>)], direct: bool) -> Vec<u8> {
    let meta = SegmentMeta {
        recording_id: "test".into(),
        segment_id: 0,
        streams: vec![stream.clone()],
    };
    let (mut file, head) = encode_segment_head(&meta, direct);
    let mut chunks = Vec::new();
    for (seqs, drops) in batches {
        if !drops.is_empty() {
            let (buf, span, entry) = encode_drop_chunk(
                drops,
                std::slice::from_ref(stream),
                file.len() as u64,
                direct,
            );
            file.extend_from_slice(&buf.region()[span.0..span.1]);
            chunks.push(entry);
        }
        if seqs.is_empty() {
            continue;
        }
        let mut frames: Vec<Frame> = seqs
            .iter()
            .map(|s| frame(*s, stream.frame_bytes()))
            .collect();
        let layout = encode_frame_batch(
            &mut frames,
            file.len() as u64,
            std::slice::from_ref(stream),
            direct,
        );
        let before = file.len();
        for f in &frames {
            file.extend_from_slice(&f.buf.region()[f.span.0..f.span.1]);
        }
        assert_eq!((file.len() - before) as u64, layout.len);
        if direct {
            assert_eq!(
                file.len() % crate::frame::ALIGN,
                0,
                "direct writes end aligned"
            );
        }
        chunks.extend(layout.chunks);
    }
    let tail = encode_segment_tail(
        file.len() as u64,
        &chunks,
        std::slice::from_ref(stream),
        &head,
        direct,
    );
    file.extend_from_slice(&tail);
    file
}

fn drop_range(first: u64, last: u64) -> DropRange {
    DropRange {
        stream: Default::default(),
        first: FrameSeq(first),
        last: FrameSeq(last),
        reason: DropReason::QueueFull,
        time_ns: 5,
    }
}

#[test]
fn a_segment_round_trips_through_the_scanner_and_the_mcap_crate() {
    let s = stream(64, 48);
    for direct in [false, true] {
        let bytes = build(
            &s,
            &[(vec![0, 1, 2], vec![]), (vec![5], vec![drop_range(3, 4)])],
            direct,
        );
        let report = verify_segment("t", &bytes);
        assert!(report.ok(), "direct={direct}: {:?}", report.problems);
        assert!(report.finalized);
        let seqs: Vec<u32> = segment_messages(&bytes)
            .iter()
            .map(|m| m.sequence)
            .collect();
        assert_eq!(seqs, vec![0, 1, 2, 5]);
        assert_eq!(report.dropped.get("queue_full"), Some(&2));
        for m in &segment_messages(&bytes) {
            let img = decode_raw_image(&bytes[m.data.clone()]).unwrap();
            assert_eq!(
                img.data,
                frame(m.sequence as u64, s.frame_bytes()).buf.payload()
            );
            assert_eq!(m.publish_time, m.sequence as u64 * 1000);
        }
        // The official Rust reader agrees, summary included.
        let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
        assert_eq!(summary.stats.unwrap().message_count, 5);
        assert_eq!(summary.chunk_indexes.len(), if direct { 5 } else { 3 });
        let read: Vec<u32> = mcap::MessageStream::new(&bytes)
            .unwrap()
            .map(|m| m.unwrap())
            .filter(|m| m.channel.id == DEPTH_CHANNEL_ID)
            .map(|m| m.sequence)
            .collect();
        assert_eq!(read, vec![0, 1, 2, 5]);
        let recording = verify_recording(vec![report], true);
        assert!(recording.ok, "{:?}", recording.problems);
    }
}

#[test]
fn a_flipped_payload_bit_names_the_chunk_and_both_crcs() {
    let s = stream(32, 8);
    let good = build(
        &s,
        &[
            (vec![0, 1], vec![]),
            (vec![2, 3], vec![]),
            (vec![4], vec![]),
        ],
        false,
    );
    let clean = segment_chunks(&good);
    let second = clean[1].offset as usize;
    let mut bad = good.clone();
    bad[second + 200] ^= 0x01;
    let report = verify_segment("t", &bad);
    let crc = report.problems.iter().find_map(|p| match p {
        Problem::Damage(DecodeError::BadChunkCrc {
            offset,
            saved,
            calculated,
        }) => Some((*offset, *saved, *calculated)),
        _ => None,
    });
    let (offset, saved, calculated) = crc.expect("a CRC problem is reported");
    assert_eq!(offset, second as u64);
    assert_ne!(saved, calculated);
    // The other chunks are still read; the recording is missing frames 2 and 3, unexplained.
    assert_eq!(report.frames, 3);
    let recording = verify_recording(vec![report], true);
    assert!(
        recording
            .problems
            .contains(&Problem::Missing { first: 2, last: 3 }),
        "{:?}",
        recording.problems
    );
}

#[test]
fn truncation_at_every_offset_is_reported_and_never_panics() {
    let s = stream(16, 4);
    let good = build(
        &s,
        &[(vec![0, 1], vec![drop_range(2, 2)]), (vec![3], vec![])],
        false,
    );
    for cut in 0..good.len() {
        let report = verify_segment("t", &good[..cut]);
        assert!(!report.ok(), "cut at {cut} went unnoticed");
        assert!(!report.finalized);
    }
}

#[test]
fn a_gap_explained_by_a_drop_notice_is_not_a_problem_but_an_unexplained_one_is() {
    let s = stream(16, 4);
    let explained = build(
        &s,
        &[(vec![0], vec![]), (vec![3], vec![drop_range(1, 2)])],
        false,
    );
    assert!(verify_recording(vec![verify_segment("t", &explained)], true).ok);
    let lost = build(
        &s,
        &[(vec![0], vec![]), (vec![3], vec![drop_range(1, 1)])],
        false,
    );
    let r = verify_recording(vec![verify_segment("t", &lost)], true);
    assert_eq!(r.problems, vec![Problem::Missing { first: 2, last: 2 }]);
    let twice = build(
        &s,
        &[(vec![0, 1], vec![]), (vec![2], vec![drop_range(1, 1)])],
        false,
    );
    let r = verify_recording(vec![verify_segment("t", &twice)], true);
    assert!(
        matches!(r.problems[..], [Problem::WrittenAndDropped { seq: 1, .. }]),
        "{:?}",
        r.problems
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any batching of frames of any size, buffered or direct, reads back exactly.
    #[test]
    fn any_batching_round_trips(
        width in 1u32..200,
        height in 1u32..20,
        batch_sizes in proptest::collection::vec(1usize..12, 1..8),
        direct in any::<bool>(),
    ) {
        let s = stream(width, height);
        let mut next = 0u64;
        let batches: Vec<(Vec<u64>, Vec<DropRange>)> = batch_sizes
            .iter()
            .map(|n| {
                let seqs: Vec<u64> = (next..next + *n as u64).collect();
                next += *n as u64;
                (seqs, vec![])
            })
            .collect();
        let bytes = build(&s, &batches, direct);
        let report = verify_segment("t", &bytes);
        prop_assert!(report.ok(), "{:?}", report.problems);
        prop_assert_eq!(report.frames, next);
        for m in &segment_messages(&bytes) {
            let img = decode_raw_image(&bytes[m.data.clone()]).unwrap();
            let expected = frame(m.sequence as u64, s.frame_bytes());
            prop_assert_eq!(img.data, expected.buf.payload());
        }
    }

    /// Damaged input never panics: random bytes, and valid segments with bytes overwritten.
    #[test]
    fn damaged_input_never_panics(
        noise in proptest::collection::vec(any::<u8>(), 0..512),
        at in any::<proptest::sample::Index>(),
        patch in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let _ = verify_recording(vec![verify_segment("noise", &noise)], true);
        let mut prefixed = MAGIC.to_vec();
        prefixed.extend_from_slice(&noise);
        let _ = verify_segment("prefixed", &prefixed);
        let s = stream(8, 4);
        let mut bytes = build(&s, &[(vec![0, 1], vec![drop_range(2, 3)]), (vec![4], vec![])], false);
        let start = at.index(bytes.len());
        let end = (start + patch.len()).min(bytes.len());
        bytes[start..end].copy_from_slice(&patch[..end - start]);
        let _ = verify_recording(vec![verify_segment("patched", &bytes)], true);
    }
}

/// Frames (sequence numbers) whose chunk lies entirely in `range` of the original file.
fn frames_in_untouched_chunks(bytes: &[u8], untouched: impl Fn(u64, u64) -> bool) -> Vec<u64> {
    let mut out: Vec<u64> = segment_chunks(bytes)
        .iter()
        .filter(|ch| untouched(ch.offset, ch.offset + ch.length))
        .flat_map(|ch| ch.sequences.iter().map(|s| *s as u64))
        .collect();
    out.sort_unstable();
    out
}

fn kept(recovered: &[u8]) -> Vec<u64> {
    let r = verify_segment("recovered", recovered);
    assert!(r.ok(), "a recovered segment verifies: {:?}", r.problems);
    assert!(r.finalized);
    let mut seqs: Vec<u64> = segment_messages(recovered)
        .iter()
        .map(|m| m.sequence as u64)
        .collect();
    seqs.sort_unstable();
    seqs
}

#[test]
fn recover_after_truncation_at_every_offset_keeps_exactly_the_whole_chunks() {
    let s = stream(16, 4);
    let good = build(
        &s,
        &[
            (vec![0, 1], vec![]),
            (vec![2], vec![drop_range(3, 3)]),
            (vec![4, 5], vec![]),
        ],
        false,
    );
    let head_end = parse_segment(&good).head_end as usize;
    for cut in 0..good.len() {
        let torn = &good[..cut];
        match recover_segment(torn, &[]) {
            Ok(rec) => {
                // A cut inside the head recovers once the depth channel record is whole (the
                // head is regenerated); it then holds no frames.
                let expected = frames_in_untouched_chunks(&good, |_, end| end <= cut as u64);
                assert_eq!(kept(&rec.bytes), expected, "cut at {cut}");
                // Interior gaps are named, so the recovered segment stands as a recording.
                let recording = verify_recording(vec![verify_segment("r", &rec.bytes)], true);
                assert!(recording.ok, "cut at {cut}: {:?}", recording.problems);
            }
            Err(_) => assert!(cut < head_end, "cut {cut} past the head must recover"),
        }
    }
}

#[test]
fn recover_skips_a_zeroed_range_and_a_garbage_tail() {
    let s = stream(32, 8);
    let good = build(
        &s,
        &[
            (vec![0, 1], vec![]),
            (vec![2, 3], vec![]),
            (vec![4], vec![]),
        ],
        false,
    );
    let chunks = segment_chunks(&good);
    // Zero the middle chunk and part of its neighbour's message index, as a lost write would.
    let mut holed = good.clone();
    let (a, b) = (chunks[1].offset as usize, (chunks[2].offset - 1) as usize);
    holed[a..b].fill(0);
    let rec = recover_segment(&holed, &[]).unwrap();
    assert_eq!(kept(&rec.bytes), vec![0, 1, 4]);
    assert_eq!(rec.lost_ranges, vec![(2, 3)], "the hole is named as lost");
    assert!(rec.skipped_bytes > 0);

    let mut tail = good[..chunks[2].offset as usize].to_vec();
    tail.extend(std::iter::repeat_n(0xA5u8, 1000));
    let rec = recover_segment(&tail, &[]).unwrap();
    assert_eq!(kept(&rec.bytes), vec![0, 1, 2, 3]);
}

#[test]
fn recovering_a_recovered_segment_changes_nothing() {
    let s = stream(16, 4);
    let good = build(&s, &[(vec![0], vec![]), (vec![1, 2], vec![])], true);
    let torn = &good[..good.len() - 700];
    let once = recover_segment(torn, &[]).unwrap();
    assert!(verify_segment("once", &once.bytes).ok());
    let twice = recover_segment(&once.bytes, &[]).unwrap();
    assert_eq!(kept(&twice.bytes), kept(&once.bytes));
    assert!(twice.lost_ranges.is_empty() && twice.skipped_bytes == 0);
}

#[test]
fn ranges_missing_from_the_recording_are_named_once() {
    let s = stream(16, 4);
    let bytes = build(
        &s,
        &[(vec![0, 1], vec![]), (vec![5], vec![drop_range(6, 7)])],
        false,
    );
    // 2..=4 is an interior gap; 3..=9 is also said missing by the caller: 8..=9 is new, and the
    // frames and notices the segment holds are not named again.
    let rec = recover_segment(&bytes, &[(3, 9)]).unwrap();
    assert_eq!(rec.lost_ranges, vec![(2, 4), (8, 9)]);
    let recording = verify_recording(vec![verify_segment("r", &rec.bytes)], true);
    assert!(recording.ok, "{:?}", recording.problems);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever the damage, a recovered segment verifies, keeps only original frames, and keeps
    /// every frame whose chunk the damage did not touch.
    #[test]
    fn recovery_keeps_every_untouched_chunk(
        batch_sizes in proptest::collection::vec(1usize..5, 1..6),
        direct in any::<bool>(),
        damage_at in any::<proptest::sample::Index>(),
        damage_len in 1usize..3000,
        kind in 0u8..3,
    ) {
        let s = stream(24, 6);
        let mut next = 0u64;
        let batches: Vec<(Vec<u64>, Vec<DropRange>)> = batch_sizes
            .iter()
            .map(|n| {
                let seqs: Vec<u64> = (next..next + *n as u64).collect();
                next += *n as u64;
                (seqs, vec![])
            })
            .collect();
        let good = build(&s, &batches, direct);
        let head_end = parse_segment(&good).head_end as usize;
        let at = head_end + damage_at.index(good.len() - head_end);
        let end = (at + damage_len).min(good.len());
        let damaged: Vec<u8> = match kind {
            0 => good[..at].to_vec(),
            1 => {
                let mut d = good.clone();
                d[at..end].fill(0);
                d
            }
            _ => {
                let mut d = good.clone();
                for (i, b) in d[at..end].iter_mut().enumerate() {
                    *b ^= (i as u8).wrapping_mul(37) | 1;
                }
                d
            }
        };
        let damaged_end = if kind == 0 { good.len() as u64 } else { end as u64 };
        let rec = recover_segment(&damaged, &[]).unwrap();
        let kept_seqs = kept(&rec.bytes);
        prop_assert!(kept_seqs.iter().all(|s| *s < next));
        let untouched = frames_in_untouched_chunks(&good, |a, b| b <= at as u64 || a >= damaged_end);
        for f in &untouched {
            prop_assert!(kept_seqs.contains(f), "frame {} was untouched but lost", f);
        }
    }
}

/// Inputs the fuzzer found; each must recover into a structurally valid segment.
#[test]
fn fuzz_regressions_recover_into_valid_segments() {
    let cases: [&[u8]; 2] = [
        include_bytes!("../../fuzz/regressions/segment/recover-damaged-channel-in-head.bin"),
        include_bytes!("../../fuzz/regressions/segment/recover-zero-crc-chunk-with-bad-json.bin"),
    ];
    for input in cases {
        let _ = verify_segment("regression", input);
        if let Ok(rec) = recover_segment(input, &[(0, 3)]) {
            let again = parse_segment(&rec.bytes);
            assert!(
                again.finalized && again.damage.is_empty(),
                "{:?}",
                again.damage
            );
        }
    }
}

/// Damage made of fake chunk headers whose lengths are consistent and claim the rest of the file
/// (the worst case for a resyncing scanner) hides no intact chunk after it: the scan still finds
/// the real chunks, whose CRCs are checked through range CRCs far from any checkpoint.
#[test]
fn fake_chunk_headers_claiming_the_rest_of_the_file_hide_no_real_chunk() {
    let s = stream(64, 48);
    let batches: Vec<(Vec<u64>, Vec<DropRange>)> = (0..40).map(|i| (vec![i], vec![])).collect();
    let good = build(&s, &batches, false);
    let chunks = segment_chunks(&good);
    let mut bad = good.clone();
    let (a, b) = (chunks[1].offset as usize, chunks[30].offset as usize);
    const FIXED: usize = 8 + 8 + 8 + 4 + 4 + 8;
    let mut at = a;
    while at + 64 <= b {
        let records = (good.len() - at - RECORD_PREFIX - FIXED) as u64;
        let mut h = vec![OP_CHUNK];
        h.extend_from_slice(&(FIXED as u64 + records).to_le_bytes());
        h.extend_from_slice(&[0; 16]);
        h.extend_from_slice(&records.to_le_bytes());
        h.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&records.to_le_bytes());
        bad[at..at + h.len()].copy_from_slice(&h);
        bad[at + h.len()..at + 64].fill(0x55);
        at += 64;
    }
    bad[at..b].fill(0);
    let rec = recover_segment(&bad, &[]).unwrap();
    let mut want = vec![0];
    want.extend(30..40);
    assert_eq!(kept(&rec.bytes), want);
    assert_eq!(rec.lost_ranges, vec![(1, 29)]);
}

// The streaming reader: a file read through a `FileSource` must find exactly what the slice
// scanner finds in the same bytes, however small its windows.

/// `bytes` as a file read in windows of `window` bytes.
fn file_source(bytes: &[u8], window: usize) -> FileSource {
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, bytes).unwrap();
    FileSource::new(file).unwrap().with_window(window)
}

/// Fake chunk headers every 64 bytes of `bytes[a..b]`, each claiming the rest of the file and a
/// CRC that fails.
fn plant_fake_chunk_headers(bytes: &mut [u8], a: usize, b: usize) {
    const FIXED: usize = 8 + 8 + 8 + 4 + 4 + 8;
    let len = bytes.len();
    let mut at = a;
    while at + 64 <= b && len - at > RECORD_PREFIX + FIXED {
        let records = (len - at - RECORD_PREFIX - FIXED) as u64;
        let mut h = vec![OP_CHUNK];
        h.extend_from_slice(&(FIXED as u64 + records).to_le_bytes());
        h.extend_from_slice(&[0; 16]);
        h.extend_from_slice(&records.to_le_bytes());
        h.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&records.to_le_bytes());
        bytes[at..at + h.len()].copy_from_slice(&h);
        bytes[at + h.len()..at + 64].fill(0x55);
        at += 64;
    }
}

/// Asserts the file reader finds, verifies and rebuilds `bytes` as the slice functions do.
fn assert_streaming_matches(bytes: &[u8], window: usize) {
    let src = file_source(bytes, window);
    let from_slice = parse_segment(bytes);
    let from_file = parse_source(&src, &mut |_, _| {}).unwrap();
    assert_eq!(from_file, from_slice, "window {window}");

    let a = verify_segment("s", bytes);
    let b = verify_source("s", &src).unwrap();
    assert_eq!(b.problems, a.problems, "window {window}");
    assert_eq!(format!("{b:?}"), format!("{a:?}"), "window {window}");

    let mut rebuilt = Vec::new();
    // recover_segment names its ranges in the first stream.
    let lost: LostRanges = from_file
        .streams
        .first()
        .map(|s| (s.name.clone(), vec![(0, 3)]))
        .into_iter()
        .collect();
    let streamed = recover_to(&src, &from_file, &lost, &mut rebuilt).unwrap();
    match (recover_segment(bytes, &[(0, 3)]), streamed) {
        (Ok(want), Ok(got)) => {
            assert_eq!(rebuilt, want.bytes, "window {window}: rebuilt bytes differ");
            assert_eq!(
                format!(
                    "{:?}",
                    Recovered {
                        bytes: want.bytes.clone(),
                        ..got
                    }
                ),
                format!("{want:?}")
            );
        }
        (Err(want), Err(got)) => assert_eq!(got, want),
        (want, got) => panic!("window {window}: slice {want:?}, file {got:?}"),
    }
    assert_eq!(
        source_has_intact_chunk(&src).unwrap(),
        has_intact_chunk(bytes)
    );
}

#[test]
fn the_file_reader_matches_the_slice_scanner_on_crafted_damage() {
    let s = stream(16, 8);
    let batches: Vec<(Vec<u64>, Vec<DropRange>)> = (0..20).map(|i| (vec![i], vec![])).collect();
    let good = build(&s, &batches, false);
    let chunks = segment_chunks(&good);
    let mut bad = good.clone();
    let (a, b) = (chunks[1].offset as usize, chunks[15].offset as usize);
    plant_fake_chunk_headers(&mut bad, a, b);
    for window in [1, 7, 41, 64, 4096, 1 << 20] {
        assert_streaming_matches(&good, window);
        assert_streaming_matches(&bad, window);
        assert_streaming_matches(&bad[..bad.len() - 100], window);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Intact, truncated, bit-flipped, overwritten and crafted segments, read through windows
    /// of any size (headers and records straddle window boundaries).
    #[test]
    fn the_file_reader_matches_the_slice_scanner(
        batch_sizes in proptest::collection::vec(1usize..4, 1..6),
        drops_first in any::<bool>(),
        direct in any::<bool>(),
        damage in 0u8..5,
        at in any::<proptest::sample::Index>(),
        patch in proptest::collection::vec(any::<u8>(), 1..32),
        bit in 0u8..8,
        window in 1usize..600,
    ) {
        let s = stream(6, 4);
        let mut next = 0u64;
        let batches: Vec<(Vec<u64>, Vec<DropRange>)> = batch_sizes
            .iter()
            .map(|n| {
                let seqs: Vec<u64> = (next + 1..next + 1 + *n as u64).collect();
                let drops = if drops_first { vec![drop_range(next, next)] } else { vec![] };
                next += *n as u64 + 1;
                (seqs, drops)
            })
            .collect();
        let mut bytes = build(&s, &batches, direct);
        let i = at.index(bytes.len());
        match damage {
            0 => {}
            1 => bytes.truncate(i),
            2 => bytes[i] ^= 1 << bit,
            3 => {
                let end = (i + patch.len()).min(bytes.len());
                bytes[i..end].copy_from_slice(&patch[..end - i]);
            }
            _ => {
                let len = bytes.len();
                plant_fake_chunk_headers(&mut bytes, i, (i + 256).min(len));
            }
        }
        assert_streaming_matches(&bytes, window);
    }
}

/// Reads through a source and remembers the longest read it was asked for: every buffer a
/// scan allocates is sized by one of its reads.
struct Watched<'a> {
    inner: &'a FileSource,
    longest: std::cell::Cell<u64>,
}

impl Source for Watched<'_> {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read<'a>(
        &'a self,
        range: std::ops::Range<u64>,
        buf: &'a mut bytes::BytesMut,
    ) -> std::io::Result<&'a [u8]> {
        self.longest
            .set(self.longest.get().max(range.end - range.start));
        self.inner.read(range, buf)
    }
    fn window(&self) -> usize {
        self.inner.window()
    }
}

#[test]
fn lengths_that_lie_are_damage_not_allocations() {
    // A sparse 300 MiB file: a real head and chunk, then a chunk record whose length fits in
    // the file but exceeds what a scan reads, then a record claiming more than the file holds.
    let s = stream(16, 8);
    let good = build(&s, &[(vec![0], vec![])], false);
    let c = parse_segment(&good);
    let data_end = c.data_end as usize;
    let file_len: u64 = 300 << 20;
    let mut head = good[..data_end].to_vec();
    let huge_at = head.len() as u64;
    let claimed = file_len - huge_at - RECORD_PREFIX as u64 - 64;
    assert!(claimed > MAX_RECORD_BYTES);
    head.push(OP_CHUNK);
    head.extend_from_slice(&claimed.to_le_bytes());
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, &head).unwrap();
    // Near the end: a record claiming u64::MAX bytes.
    let lie_at = file_len - 64;
    let mut lie = vec![OP_CHUNK];
    lie.extend_from_slice(&u64::MAX.to_le_bytes());
    std::os::unix::fs::FileExt::write_all_at(&file, &lie, lie_at).unwrap();
    file.set_len(file_len).unwrap();
    let src = FileSource::new(file).unwrap();
    let watched = Watched {
        inner: &src,
        longest: std::cell::Cell::new(0),
    };
    let got = parse_source(&watched, &mut |_, _| {}).unwrap();
    assert_eq!(got.messages(), 1, "the real frame is still read");
    assert!(
        got.damage.contains(&DecodeError::Malformed {
            offset: huge_at,
            opcode: OP_CHUNK,
            what: "record is larger than framerec reads (256 MiB)",
        }),
        "{:?}",
        got.damage
    );
    assert_eq!(
        got.skipped.items().to_vec(),
        std::iter::once(huge_at..file_len).collect::<Vec<_>>(),
        "{:?}",
        got.skipped
    );
    assert!(
        watched.longest.get() <= WINDOW_BYTES as u64,
        "a read of {} bytes",
        watched.longest.get()
    );
    // The lie past the end is framing damage wherever a record is expected to start there.
    let mut tail = good[..data_end].to_vec();
    tail.extend_from_slice(&lie);
    let c = parse_source(&file_source(&tail, 1 << 20), &mut |_, _| {}).unwrap();
    assert!(
        c.damage.contains(&DecodeError::Truncated {
            offset: data_end as u64,
            opcode: OP_CHUNK,
            needed: u64::MAX,
            available: lie.len() as u64,
        }),
        "{:?}",
        c.damage
    );
}

#[test]
fn a_thousand_damaged_chunks_make_a_bounded_list_of_problems() {
    let s = stream(8, 8);
    let batches: Vec<(Vec<u64>, Vec<DropRange>)> = (0..1000).map(|i| (vec![i], vec![])).collect();
    let good = build(&s, &batches, false);
    let chunks = segment_chunks(&good);
    assert_eq!(chunks.len(), 1000);
    // Every other chunk damaged: each is found (after an intact one), each skipped over.
    let mut bad = good.clone();
    for c in chunks.iter().step_by(2) {
        bad[(c.offset + c.length) as usize - 1] ^= 0x01;
    }
    let c = parse_segment(&bad);
    assert_eq!(c.bad_crc_chunks, 500);
    assert_eq!(c.damaged_chunks.total(), 500);
    assert_eq!(c.damaged_chunks.items().len(), MAX_LISTED);
    assert!(c.damage.total() >= 500 && c.damage.items().len() == MAX_LISTED);
    let report = verify_segment("t", &bad);
    assert!(!report.ok());
    assert_eq!(report.problems.len(), MAX_LISTED);
    // 500 bad CRCs, 500 damaged chunks' frames, 500 skipped ranges, and the summary's counts.
    assert!(
        report.problems.len() as u64 + report.problems_not_listed >= 1500,
        "{} listed, {} more",
        report.problems.len(),
        report.problems_not_listed
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["problems"].as_array().unwrap().len(), MAX_LISTED);
    assert_eq!(json["problems_not_listed"], report.problems_not_listed);
    // The intact half is still read, and recover keeps it.
    assert_eq!(report.frames, 500);
    let rec = recover_segment(&bad, &[]).unwrap();
    assert_eq!(rec.kept_frames, 500);
    assert_eq!(rec.damaged_chunks, 500);
    assert_eq!(rec.damage.len(), MAX_LISTED);
    assert!(rec.more_damage > 0);
}
