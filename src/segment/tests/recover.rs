//! Recovery of damaged segments: every whole chunk kept, damage skipped, idempotent, and the
//! inputs the fuzzer found.

use super::*;

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
        include_bytes!("../../../fuzz/regressions/segment/recover-damaged-channel-in-head.bin"),
        include_bytes!(
            "../../../fuzz/regressions/segment/recover-zero-crc-chunk-with-bad-json.bin"
        ),
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
