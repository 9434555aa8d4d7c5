//! Compressed chunks read back by the scanner and the mcap crate; chunks that would not shrink
//! are left raw.

use super::*;

/// A segment of one compressed chunk per batch, as the writer lays one out.
fn build_compressed(stream: &StreamInfo, batches: &[Vec<u64>], codec: Codec) -> Vec<u8> {
    let meta = SegmentMeta {
        recording_id: "test".into(),
        segment_id: 0,
        streams: vec![stream.clone()],
    };
    let (mut file, head) = encode_segment_head(&meta, false);
    let mut chunks = Vec::new();
    for seqs in batches {
        let mut frames: Vec<Frame> = seqs
            .iter()
            .map(|s| frame(*s, stream.frame_bytes()))
            .collect();
        frames.iter_mut().for_each(|f| f.buf.seal_crc());
        let c = compress_chunk(
            &mut frames,
            std::slice::from_ref(stream),
            crate::segment::ros2::Profile::Foxglove,
            codec,
            0.02,
        )
        .expect("the test frames compress");
        chunks.push(c.entry.moved_by(file.len() as u64));
        file.extend_from_slice(&c.bytes);
    }
    let tail = encode_segment_tail(
        file.len() as u64,
        &chunks,
        std::slice::from_ref(stream),
        &head,
        false,
    );
    file.extend_from_slice(&tail);
    file
}

#[test]
fn compressed_chunks_read_back_byte_exact_in_the_scanner_and_the_mcap_crate() {
    let s = stream(64, 48);
    for codec in [Codec::Zstd { level: 1 }, Codec::Lz4] {
        let bytes = build_compressed(&s, &[vec![0, 1, 2], vec![3], vec![4, 5]], codec);
        assert!(
            bytes.len() < 6 * s.frame_bytes() / 4,
            "{codec:?} compresses"
        );
        let report = verify_segment("t", &bytes);
        assert!(report.ok(), "{codec:?}: {:?}", report.problems);
        assert!(report.finalized);
        let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
        assert_eq!(summary.stats.as_ref().unwrap().message_count, 6);
        assert_eq!(summary.chunk_indexes.len(), 3);
        assert!(
            summary
                .chunk_indexes
                .iter()
                .all(|c| c.compression == codec.name())
        );
        let read: Vec<(u32, Vec<u8>)> = mcap::MessageStream::new(&bytes)
            .unwrap()
            .map(|m| m.unwrap())
            .filter(|m| m.channel.id == DEPTH_CHANNEL_ID)
            .map(|m| (m.sequence, m.data.to_vec()))
            .collect();
        assert_eq!(read.len(), 6, "{codec:?}");
        for (seq, data) in read {
            let img = decode_raw_image(&data).unwrap();
            assert_eq!(img.data, frame(seq as u64, s.frame_bytes()).buf.payload());
        }
        // Through the chunk indexes and message indexes too (the indexed reader).
        let indexed: usize = summary
            .chunk_indexes
            .iter()
            .map(|c| {
                summary
                    .read_message_indexes(&bytes, c)
                    .unwrap()
                    .values()
                    .map(Vec::len)
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(indexed, 6);
    }
}

#[test]
fn a_chunk_that_would_not_shrink_is_left_for_a_raw_write() {
    let s = stream(64, 48);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = frame(0, s.frame_bytes());
    for b in noise.buf.fill(s.frame_bytes()).unwrap() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for codec in [Codec::Zstd { level: 1 }, Codec::Lz4] {
        let streams = std::slice::from_ref(&s);
        let out = compress_chunk(
            std::slice::from_mut(&mut noise),
            streams,
            crate::segment::ros2::Profile::Foxglove,
            codec,
            0.02,
        );
        assert!(out.is_none(), "{codec:?}");
        // The frame is still fine to write raw.
        let layout = encode_frame_batch(std::slice::from_mut(&mut noise), 0, streams, false);
        assert_eq!(layout.chunks.len(), 1);
    }
}

#[test]
fn recover_keeps_every_whole_compressed_chunk_as_it_was() {
    let s = stream(64, 48);
    for codec in [Codec::Zstd { level: 3 }, Codec::Lz4] {
        let good = build_compressed(&s, &[vec![0, 1], vec![2], vec![3, 4, 5]], codec);
        let chunks = segment_chunks(&good);
        assert_eq!(chunks.len(), 3);
        for cut in (0..good.len()).step_by(7) {
            let Ok(rec) = recover_segment(&good[..cut], &[]) else {
                continue;
            };
            let expected: Vec<u32> = chunks
                .iter()
                .filter(|c| c.offset + c.length <= cut as u64)
                .flat_map(|c| c.sequences.clone())
                .collect();
            let report = verify_segment("r", &rec.bytes);
            assert!(report.ok(), "{codec:?} cut {cut}: {:?}", report.problems);
            let seqs: Vec<u32> = segment_messages(&rec.bytes)
                .iter()
                .map(|m| m.sequence)
                .collect();
            assert_eq!(seqs, expected, "{codec:?} cut {cut}");
            // Kept compressed, and indexed so that the official reader agrees.
            let summary = mcap::Summary::read(&rec.bytes).unwrap().unwrap();
            assert!(
                summary
                    .chunk_indexes
                    .iter()
                    .all(|c| c.compression == codec.name())
            );
            let indexed: usize = summary
                .chunk_indexes
                .iter()
                .map(|c| {
                    let idx = summary.read_message_indexes(&rec.bytes, c).unwrap();
                    idx.values().map(Vec::len).sum::<usize>()
                })
                .sum();
            assert_eq!(indexed, expected.len(), "{codec:?} cut {cut}");
        }
    }
}
