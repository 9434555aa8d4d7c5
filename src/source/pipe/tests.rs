//! The pipe source over a file: which losses it reports before each frame, per stream, and
//! that `next_stream` names the stream whose payload `next_frame` then delivers.

use super::*;
use crate::frame::FrameFormat;
use DropReason::{Rejected, SenderGap};

/// A frame of `shape`, version 1 (`v2: false`) or version 2 under the shape's id, whose
/// payload bytes all are `fill`.
fn frame(shape: Shape, seq: u64, v2: bool, fill: u8) -> Vec<u8> {
    let h = Header {
        header_len: HEADER_LEN,
        sequence: seq,
        device_ns: seq.wrapping_mul(1000),
        width: shape.width,
        height: shape.height,
        format: shape.format,
        payload_len: shape.payload_len,
    };
    let mut out = if v2 {
        h.encode_v2(shape.id).to_vec()
    } else {
        h.encode().to_vec()
    };
    out.extend(std::iter::repeat_n(fill, shape.payload_len));
    out
}

fn depth_4x2() -> PipeStream {
    PipeStream {
        id: 0,
        info: StreamInfo::depth("/d", "d", 4, 2),
    }
}

/// Depth 4x2 (id 0), colour 2x2 (id 5), accel (id 9).
fn three_streams() -> Vec<PipeStream> {
    vec![
        depth_4x2(),
        PipeStream {
            id: 5,
            info: StreamInfo::image("color", "/c", "c", 2, 2, FrameFormat::Rgb8),
        },
        PipeStream {
            id: 9,
            info: StreamInfo::accel("accel", "/a", "a"),
        },
    ]
}

fn shape(streams: &[PipeStream], i: usize) -> Shape {
    Shape::of(streams[i].id, &streams[i].info)
}

type Lost = Vec<(StreamId, DropReason, u64)>;

/// Per frame delivered from a file of `bytes`: its stream, first payload byte, and the losses
/// reported before it; then the losses reported at the end.
fn deliveries(bytes: &[u8], streams: Vec<PipeStream>) -> (Vec<(u16, u8, Lost)>, Lost) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("frames");
    std::fs::write(&path, bytes).unwrap();
    let cfg = PipeConfig {
        endpoint: PipeEndpoint::Fifo(path),
        width: 4,
        height: 2,
        topic: "/t".into(),
        frame_id: "f".into(),
        streams,
        access: SocketAccess::OWNER_ONLY,
    };
    let mut src = PipeSource::open(cfg, Arc::default()).unwrap();
    let stop = AtomicBool::new(false);
    let mut out = Vec::new();
    loop {
        let s = src.next_stream(&stop).unwrap();
        let mut buf = FrameBuf::new(src.streams()[s.index()].frame_bytes());
        if src.next_frame(&mut buf, &stop).unwrap().is_none() {
            break;
        }
        assert_eq!(buf.payload_len(), src.streams()[s.index()].frame_bytes());
        out.push((s.0, buf.payload()[0], src.take_lost()));
    }
    src.close();
    (out, src.take_lost())
}

/// The losses of the one stream a v1 pipe has, before each frame and at the end.
fn losses(bytes: &[u8]) -> Vec<Vec<(DropReason, u64)>> {
    let (frames, end) = deliveries(bytes, Vec::new());
    let depth_only = |lost: Lost| {
        assert!(lost.iter().all(|l| l.0 == StreamId(0)));
        lost.into_iter().map(|(_, r, n)| (r, n)).collect()
    };
    let mut out: Vec<Vec<_>> = frames.into_iter().map(|f| depth_only(f.2)).collect();
    out.push(depth_only(end));
    out
}

#[test]
fn gaps_and_rejects_are_reported_before_the_next_frame_and_a_crafted_jump_is_not_a_gap() {
    let d = Shape::of(0, &depth_4x2().info);
    let mut s = frame(d, 0, false, 0);
    let mut wrong = frame(d, 1, false, 0);
    wrong[24..28].copy_from_slice(&8u32.to_le_bytes());
    s.extend(wrong);
    s.extend(frame(d, 4, false, 0));
    s.extend(frame(d, u64::MAX - 1, false, 0));
    s.extend(frame(d, 3, false, 0));
    s.extend(&frame(d, 4, false, 0)[..20]);
    assert_eq!(
        losses(&s),
        [
            vec![],
            vec![(Rejected, 1), (SenderGap, 2)],
            vec![],
            vec![],
            vec![(Rejected, 1)],
        ]
    );
}

/// Version-1 frames are stream 0 of a configured table, beside version-2 frames.
#[test]
fn v1_and_v2_frames_of_stream_0_share_one_numbering() {
    let streams = three_streams();
    let d = shape(&streams, 0);
    let mut s = frame(d, 0, false, 1);
    s.extend(frame(d, 1, true, 2));
    s.extend(frame(d, 2, false, 3));
    let (frames, end) = deliveries(&s, streams);
    let got: Vec<(u16, u8)> = frames.iter().map(|f| (f.0, f.1)).collect();
    assert_eq!(got, [(0, 1), (0, 2), (0, 3)]);
    assert!(frames.iter().all(|f| f.2.is_empty()) && end.is_empty());
}

/// Each stream numbers its frames on its own: a gap in one is that stream's, rejects are
/// counted under the stream their header names, an unknown id is nobody's loss, and no bad
/// frame holds up another stream's frames.
#[test]
fn rejects_and_sender_gaps_are_counted_per_stream() {
    let streams = three_streams();
    let (d, c, a) = (shape(&streams, 0), shape(&streams, 1), shape(&streams, 2));
    let mut s = Vec::new();
    s.extend(frame(d, 0, true, 10));
    s.extend(frame(c, 0, true, 20));
    s.extend(frame(a, 0, true, 30));
    // Colour frame 1 with depth's size: rejected, colour's.
    s.extend(frame(Shape { id: 5, ..d }, 1, true, 21));
    // An id nobody configured.
    s.extend(frame(Shape { id: 77, ..c }, 0, true, 99));
    s.extend(frame(d, 1, true, 11));
    // Accel skips 1..=3; colour's next frame is 2 (1 was rejected).
    s.extend(frame(a, 4, true, 34));
    s.extend(frame(c, 2, true, 22));
    // Depth frame 2 with a bad length, then a torn accel frame at the end.
    let mut bad = frame(d, 2, true, 12);
    bad[36..40].copy_from_slice(&15u32.to_le_bytes());
    s.extend(bad);
    s.extend(&frame(a, 5, true, 35)[..50]);
    let (frames, end) = deliveries(&s, streams);
    let (depth, color, accel) = (StreamId(0), StreamId(1), StreamId(2));
    assert_eq!(
        frames,
        [
            (0, 10, vec![]),
            (1, 20, vec![]),
            (2, 30, vec![]),
            (0, 11, vec![]),
            (2, 34, vec![(accel, SenderGap, 3)]),
            (1, 22, vec![(color, Rejected, 1)]),
        ]
    );
    assert_eq!(end, [(depth, Rejected, 1), (accel, Rejected, 1)]);
}

/// `next_stream` blocks for the next header as `next_frame` does, and so also gives up once
/// `stop` is set: a socket with no sender must not hold the receiver.
#[test]
fn next_stream_waiting_for_a_sender_honours_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = PipeConfig {
        endpoint: PipeEndpoint::Unix(tmp.path().join("frames.sock")),
        width: 4,
        height: 2,
        topic: "/t".into(),
        frame_id: "f".into(),
        streams: three_streams(),
        access: SocketAccess::OWNER_ONLY,
    };
    let mut src = PipeSource::open(cfg, Arc::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let setter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            stop.store(true, Ordering::Relaxed);
        })
    };
    let started = std::time::Instant::now();
    assert_eq!(src.next_stream(&stop).unwrap(), StreamId(0));
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(150)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
    let mut buf = FrameBuf::new(16);
    assert!(src.next_frame(&mut buf, &stop).unwrap().is_none());
    setter.join().unwrap();
    assert_eq!(src.streams().len(), 3);
}
