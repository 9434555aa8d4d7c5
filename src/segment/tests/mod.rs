//! Round trips through the encoder and the scanner, and damage the scanner must pinpoint: the
//! segments the tests build, as the writer lays them out; `roundtrip` reads them back whole and
//! damaged, `recover` rebuilds damaged ones, `streaming` reads them from files in windows.

use proptest::prelude::*;

use super::*;
use crate::frame::{DropReason, Frame, FrameBuf, FrameFormat, FrameMeta, FrameSeq, StreamInfo};

mod compressed;
mod recover;
mod roundtrip;
mod streaming;

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
            publish_ns: seq * 1000,
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

/// A finished segment of three frames whose tail carries a clock record (depth: offset -42),
/// as the writer closes one.
pub(crate) fn segment_with_clock() -> Vec<u8> {
    let stream = stream(8, 2);
    let meta = SegmentMeta {
        recording_id: "test".into(),
        segment_id: 0,
        streams: vec![stream.clone()],
    };
    let (mut file, head) = encode_segment_head(&meta, false);
    let mut frames: Vec<Frame> = (0..3).map(|s| frame(s, stream.frame_bytes())).collect();
    let layout = encode_frame_batch(
        &mut frames,
        file.len() as u64,
        std::slice::from_ref(&stream),
        false,
    );
    for f in &frames {
        file.extend_from_slice(&f.buf.region()[f.span.0..f.span.1]);
    }
    let offsets = std::collections::BTreeMap::from([(0usize, -42i64)]);
    let extra: Vec<TailMetadata> = clock::clock_metadata(&meta.streams, &offsets)
        .into_iter()
        .collect();
    let tail = encode_tail(
        file.len() as u64,
        &layout.chunks,
        &meta.streams,
        &head,
        &extra,
        false,
    );
    file.extend_from_slice(&tail);
    file
}
