//! Segments read back by the scanner and the mcap crate: whole, with a flipped bit, truncated
//! anywhere, with gaps explained or not, and any batching.

use super::*;

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

/// With O_DIRECT every write is whole pages, yet the file holds only records the MCAP spec
/// defines (no private padding): payload lengths that need no slack, one byte of it (impossible
/// alone), or a slack length whose varint width jumps; drop notices; the tail cut back.
#[test]
fn a_direct_segment_holds_only_records_the_spec_defines() {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Data {
        #[prost(bytes = "vec", tag = "6")]
        data: Vec<u8>,
    }
    let s = stream(64, 48);
    let streams = std::slice::from_ref(&s);
    let meta = SegmentMeta {
        recording_id: "direct".into(),
        segment_id: 3,
        streams: streams.to_vec(),
    };
    let (mut file, head) = encode_segment_head(&meta, true);
    assert_eq!(file.len() % crate::frame::ALIGN, 0, "the head");
    let mut chunks = Vec::new();
    // The slack after a payload of 3935 bytes is 130 (the content length's varint would need 2
    // bytes for 128), of 4063 bytes 2, of 4064 bytes 1 (so ALIGN more), of 4065 bytes none.
    let lens = [1, 12, 3935, 4063, 4064, 4065, 4096, 8191];
    for (seq, len) in lens.iter().enumerate() {
        let mut f = [frame(seq as u64, *len)];
        let layout = encode_frame_batch(&mut f, file.len() as u64, streams, true);
        file.extend_from_slice(&f[0].buf.region()[f[0].span.0..f[0].span.1]);
        assert_eq!(file.len() % crate::frame::ALIGN, 0, "frame of {len} bytes");
        chunks.extend(layout.chunks);
    }
    let (buf, span, entry) =
        encode_drop_chunk(&[drop_range(9, 11)], streams, file.len() as u64, true);
    file.extend_from_slice(&buf.region()[span.0..span.1]);
    assert_eq!(file.len() % crate::frame::ALIGN, 0, "the drop chunk");
    chunks.push(entry);
    let tail = encode_segment_tail(file.len() as u64, &chunks, streams, &head, true);
    file.extend_from_slice(&tail);

    // Top-level records: only the spec's opcodes.
    let mut at = MAGIC.len();
    while at < file.len() - MAGIC.len() {
        let opcode = file[at];
        assert!(
            (OP_HEADER..=OP_DATA_END).contains(&opcode),
            "opcode {opcode:#x} at {at}"
        );
        at += RECORD_PREFIX + u64::from_le_bytes(file[at + 1..at + 9].try_into().unwrap()) as usize;
    }
    assert_eq!(&file[at..], MAGIC);

    // The official reader reads every frame whole (an independent protobuf decoder skipping the
    // slack) and the notice; our decoder agrees.
    let summary = mcap::Summary::read(&file).unwrap().unwrap();
    assert!(
        summary
            .chunk_indexes
            .iter()
            .all(|c| c.chunk_start_offset % 4096 == 0)
    );
    let mut frames = 0;
    for m in mcap::MessageStream::new(&file).unwrap() {
        let m = m.unwrap();
        if m.channel.id == DEPTH_CHANNEL_ID {
            let expected = frame(m.sequence as u64, lens[m.sequence as usize]);
            let img = <Data as prost::Message>::decode(&m.data[..]).unwrap();
            assert_eq!(img.data, expected.buf.payload(), "frame {}", m.sequence);
            frames += 1;
        } else {
            let notice: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
            assert_eq!(notice["count"], 3);
        }
    }
    assert_eq!(frames, lens.len());
    for m in &segment_messages(&file) {
        let img = decode_raw_image(&file[m.data.clone()]).unwrap();
        assert_eq!(
            img.data,
            frame(m.sequence as u64, lens[m.sequence as usize])
                .buf
                .payload()
        );
    }
    let parsed = parse_segment(&file);
    assert_eq!(parsed.channel_messages.get(&DROP_CHANNEL_ID), Some(&1));
    assert_eq!(parsed.bad_crc_chunks, 0);
}

/// With O_DIRECT the tail is written zero-filled to a page and the file cut back after: a crash
/// between the two leaves zeros after the closing magic. Such a segment reads as unfinished
/// and recovers with every frame.
#[test]
fn a_direct_tail_not_yet_cut_back_recovers_every_frame() {
    let s = stream(64, 48);
    let mut bytes = build(
        &s,
        &[(vec![0, 1], vec![]), (vec![4], vec![drop_range(2, 3)])],
        true,
    );
    bytes.resize(bytes.len().next_multiple_of(crate::frame::ALIGN), 0);
    let report = verify_segment("uncut", &bytes);
    assert!(!report.finalized);
    let rec = recover_segment(&bytes, &[]).unwrap();
    let again = verify_segment("recovered", &rec.bytes);
    assert!(again.ok(), "{:?}", again.problems);
    assert!(again.finalized);
    assert_eq!(again.frames, 3);
    assert_eq!(again.dropped.get("queue_full"), Some(&2));
}

/// The receiver seals each payload's CRC while it is in its cache and the encoder combines it
/// in: the chunk CRC must still be that of the bytes written, in every layout.
#[test]
fn a_payload_crc_sealed_by_the_receiver_gives_the_chunk_crc_of_the_bytes_written() {
    use crate::segment::ros2::Profile;
    let s = stream(64, 48);
    for (profile, direct) in [
        (Profile::Foxglove, false),
        (Profile::Foxglove, true),
        (Profile::Ros2, false),
    ] {
        let encode = |seal: bool| {
            let mut frames: Vec<Frame> = (0..4).map(|q| frame(q, s.frame_bytes())).collect();
            if seal {
                frames.iter_mut().for_each(|f| f.buf.seal_crc());
            }
            let layout = encode_frames(&mut frames, 0, std::slice::from_ref(&s), profile, direct);
            let bytes: Vec<u8> = frames
                .iter()
                .flat_map(|f| f.buf.region()[f.span.0..f.span.1].to_vec())
                .collect();
            (bytes, layout.chunks)
        };
        let (sealed, chunks) = encode(true);
        assert_eq!(sealed, encode(false).0, "{profile:?} direct={direct}");
        for c in &chunks {
            let at = c.chunk_start_offset as usize;
            let crc = u32::from_le_bytes(sealed[at + 33..at + 37].try_into().unwrap());
            let records = &sealed[at + 49..at + 49 + c.uncompressed_size as usize];
            assert_eq!(crc, crc32fast::hash(records), "{profile:?} direct={direct}");
        }
    }
}
