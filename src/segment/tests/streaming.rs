//! The streaming reader: a file read through a `FileSource` must find exactly what the slice
//! scanner finds in the same bytes, however small its windows, and no length a file claims
//! becomes an allocation.

use super::*;

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
