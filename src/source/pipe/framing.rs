//! The pipe framing as pure code: headers, the stream shapes a frame is checked against, and
//! [`parse`], which finds the next frame at the front of a byte slice (no I/O, so the fuzz
//! target drives it directly). The layout is in the parent module's doc.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::frame::{FrameFormat, StreamId, StreamInfo};

pub const MAGIC: [u8; 4] = *b"FRF1";
/// Version 1: no stream id; every frame is stream 0.
pub const VERSION: u16 = 1;
/// Version 2: the stream id at offset 40.
pub const VERSION_2: u16 = 2;
pub const HEADER_LEN: usize = 48;
pub(super) const MAX_HEADER_LEN: usize = 4096;
pub const FORMAT_DEPTH16: u32 = 1;
pub const FORMAT_RGB8: u32 = 2;
pub const FORMAT_ACCEL: u32 = 3;
/// Offset of the stream id (u16) in a version-2 header.
pub const STREAM_ID_AT: usize = 40;

/// Why bytes from a client were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes skipped looking for the magic (counted per resynchronisation).
    BadMagic,
    BadVersion,
    BadHeader,
    /// Width or height other than the configured stream's.
    WrongSize,
    BadFormat,
    /// Payload length other than the stream's frame size.
    BadLength,
    /// The stream ended in the middle of a frame.
    Truncated,
    /// A stream id the configuration has no `[[source.stream]]` for.
    UnknownStream,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::BadMagic,
        Reject::BadVersion,
        Reject::BadHeader,
        Reject::WrongSize,
        Reject::BadFormat,
        Reject::BadLength,
        Reject::Truncated,
        Reject::UnknownStream,
    ];

    /// True when the reject is a whole frame (a header with the magic, or a torn tail); bad
    /// magic is bytes between frames.
    pub fn is_frame(self) -> bool {
        self != Reject::BadMagic
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::BadMagic => "bad_magic",
            Reject::BadVersion => "bad_version",
            Reject::BadHeader => "bad_header",
            Reject::WrongSize => "wrong_size",
            Reject::BadFormat => "bad_format",
            Reject::BadLength => "bad_length",
            Reject::Truncated => "truncated",
            Reject::UnknownStream => "unknown_stream",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Rejects by reason, shared with the statistics.
#[derive(Debug, Default)]
pub struct Rejects([AtomicU64; Reject::ALL.len()]);

impl Rejects {
    pub(super) fn add(&self, r: Reject) {
        self.0[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, r: Reject) -> u64 {
        self.0[r.index()].load(Ordering::Relaxed)
    }
}

/// What every frame of one stream must look like on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The framing's stream id (version-1 frames are id 0).
    pub id: u16,
    pub width: u32,
    pub height: u32,
    /// `FORMAT_*`.
    pub format: u32,
    pub payload_len: usize,
}

impl Shape {
    /// The shape of `stream`'s frames under framing id `id`: an image's own width, height and
    /// format; an accelerometer reading is 1 x 1, format 3, of the raw reading's 12 bytes.
    pub fn of(id: u16, stream: &StreamInfo) -> Shape {
        Shape {
            id,
            width: stream.width,
            height: stream.height,
            format: match stream.format {
                FrameFormat::Depth16 => FORMAT_DEPTH16,
                FrameFormat::Rgb8 => FORMAT_RGB8,
                FrameFormat::Accel => FORMAT_ACCEL,
            },
            payload_len: stream.frame_bytes(),
        }
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub header_len: usize,
    pub sequence: u64,
    pub device_ns: u64,
    pub width: u32,
    pub height: u32,
    pub format: u32,
    pub payload_len: usize,
}

impl Header {
    /// The bytes of a version-1 header (for senders and tests).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&VERSION.to_le_bytes());
        h[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        h[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        h[16..24].copy_from_slice(&self.device_ns.to_le_bytes());
        h[24..28].copy_from_slice(&self.width.to_le_bytes());
        h[28..32].copy_from_slice(&self.height.to_le_bytes());
        h[32..36].copy_from_slice(&self.format.to_le_bytes());
        h[36..40].copy_from_slice(&(self.payload_len as u32).to_le_bytes());
        h
    }

    /// The bytes of a version-2 header of stream `stream_id` (for senders and tests).
    pub fn encode_v2(&self, stream_id: u16) -> [u8; HEADER_LEN] {
        let mut h = self.encode();
        h[4..6].copy_from_slice(&VERSION_2.to_le_bytes());
        h[STREAM_ID_AT..STREAM_ID_AT + 2].copy_from_slice(&stream_id.to_le_bytes());
        h
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(std::array::from_fn(|i| b[at + i]))
}

/// What the framer found at the front of its buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame of the stream at this index of the shape table: its header; the payload
    /// is `buf[header_len..header_len + payload_len]`.
    Frame(Header, StreamId),
    /// Not enough bytes yet.
    NeedMore,
    /// Bytes to drop from the front, why, and the stream the rejected frame belongs to when
    /// its header names a configured one (see [`stream_of`]).
    Skip(usize, Reject, Option<StreamId>),
}

/// The stream a frame header at the front of `buf` belongs to, as far as it can be told: the
/// configured stream its id names (a version-1 header names id 0), or, when the id cannot be
/// read, the only stream of a one-stream table. `None` when nothing names a configured stream.
pub fn stream_of(buf: &[u8], shapes: &[Shape]) -> Option<StreamId> {
    let id = match (buf.len() >= 6).then(|| u16_at(buf, 4)) {
        Some(VERSION) => Some(0),
        Some(VERSION_2) if buf.len() >= STREAM_ID_AT + 2 => Some(u16_at(buf, STREAM_ID_AT)),
        _ => None,
    };
    match id {
        Some(id) => index_of(id, shapes),
        None if shapes.len() == 1 => Some(StreamId(0)),
        None => None,
    }
}

fn index_of(id: u16, shapes: &[Shape]) -> Option<StreamId> {
    shapes
        .iter()
        .position(|s| s.id == id)
        .map(|i| StreamId(i as u16))
}

/// Looks at the front of `buf` for a frame of one of the streams in `shapes`.
pub fn parse(buf: &[u8], shapes: &[Shape]) -> Parsed {
    if buf.len() < 8 {
        if !MAGIC.starts_with(&buf[..buf.len().min(4)]) {
            return Parsed::Skip(resync(buf), Reject::BadMagic, None);
        }
        return Parsed::NeedMore;
    }
    if buf[..4] != MAGIC {
        return Parsed::Skip(resync(buf), Reject::BadMagic, None);
    }
    // A bad field drops the magic and resynchronises on the next one: the lengths of a header
    // that fails a check are not trusted.
    let version = u16_at(buf, 4);
    if version != VERSION && version != VERSION_2 {
        return Parsed::Skip(1, Reject::BadVersion, stream_of(buf, shapes));
    }
    let header_len = u16_at(buf, 6) as usize;
    if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
        return Parsed::Skip(1, Reject::BadHeader, stream_of(buf, shapes));
    }
    if buf.len() < HEADER_LEN {
        return Parsed::NeedMore;
    }
    let id = if version == VERSION {
        0
    } else {
        u16_at(buf, STREAM_ID_AT)
    };
    let Some(stream) = index_of(id, shapes) else {
        return Parsed::Skip(1, Reject::UnknownStream, None);
    };
    let shape = &shapes[stream.index()];
    let h = Header {
        header_len,
        sequence: u64_at(buf, 8),
        device_ns: u64_at(buf, 16),
        width: u32_at(buf, 24),
        height: u32_at(buf, 28),
        format: u32_at(buf, 32),
        payload_len: u32_at(buf, 36) as usize,
    };
    let reject = if (h.width, h.height) != (shape.width, shape.height) {
        Some(Reject::WrongSize)
    } else if h.format != shape.format {
        Some(Reject::BadFormat)
    } else if h.payload_len != shape.payload_len {
        Some(Reject::BadLength)
    } else {
        None
    };
    if let Some(why) = reject {
        return Parsed::Skip(1, why, Some(stream));
    }
    if buf.len() < header_len + h.payload_len {
        return Parsed::NeedMore;
    }
    Parsed::Frame(h, stream)
}

/// Bytes before the next possible magic (at least 1).
fn resync(buf: &[u8]) -> usize {
    (1..buf.len())
        .find(|&i| MAGIC.starts_with(&buf[i..buf.len().min(i + 4)]))
        .unwrap_or(buf.len())
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPTH: Shape = Shape {
        id: 0,
        width: 4,
        height: 2,
        format: FORMAT_DEPTH16,
        payload_len: 16,
    };
    const COLOR: Shape = Shape {
        id: 7,
        width: 2,
        height: 2,
        format: FORMAT_RGB8,
        payload_len: 12,
    };
    const ACCEL: Shape = Shape {
        id: 300,
        width: 1,
        height: 1,
        format: FORMAT_ACCEL,
        payload_len: 12,
    };

    /// A frame of `shape` in version 1 (`v2: None`) or version 2 under that id.
    pub(crate) fn frame_of(shape: Shape, seq: u64, v2: Option<u16>, fill: u8) -> Vec<u8> {
        let h = Header {
            header_len: HEADER_LEN,
            sequence: seq,
            device_ns: seq.wrapping_mul(1000),
            width: shape.width,
            height: shape.height,
            format: shape.format,
            payload_len: shape.payload_len,
        };
        let mut out = match v2 {
            None => h.encode().to_vec(),
            Some(id) => h.encode_v2(id).to_vec(),
        };
        out.extend(std::iter::repeat_n(fill, shape.payload_len));
        out
    }

    fn frame(seq: u64, w: u32, h: u32, fill: u8) -> Vec<u8> {
        let shape = Shape {
            width: w,
            height: h,
            payload_len: (w * h * 2) as usize,
            ..DEPTH
        };
        frame_of(shape, seq, None, fill)
    }

    /// Frames found (stream index, sequence), and rejects with the stream each is counted under.
    type Found = (Vec<(u16, u64)>, Vec<(Reject, Option<StreamId>)>);

    /// Every frame `parse` finds in `bytes` (stream index, sequence), and the rejects on the
    /// way with the stream each is counted under.
    pub(crate) fn frames_in(mut bytes: &[u8], shapes: &[Shape]) -> Found {
        let (mut frames, mut rejects) = (Vec::new(), Vec::new());
        loop {
            match parse(bytes, shapes) {
                Parsed::Frame(hd, s) => {
                    frames.push((s.0, hd.sequence));
                    bytes = &bytes[hd.header_len + hd.payload_len..];
                }
                Parsed::Skip(n, r, s) => {
                    assert!(n >= 1 && n <= bytes.len());
                    rejects.push((r, s));
                    bytes = &bytes[n..];
                }
                Parsed::NeedMore => return (frames, rejects),
            }
        }
    }

    /// The rejects of whole frames (not the resynchronisations after them).
    fn frame_rejects(rejects: Vec<(Reject, Option<StreamId>)>) -> Vec<(Reject, Option<StreamId>)> {
        rejects.into_iter().filter(|r| r.0.is_frame()).collect()
    }

    #[test]
    fn frames_between_garbage_are_found() {
        let mut s = b"hello".to_vec();
        s.extend(frame(0, 4, 2, 1));
        s.extend(b"FRF1xx");
        s.extend(frame(1, 4, 2, 2));
        s.extend(frame(2, 8, 2, 3));
        s.extend(frame(3, 4, 2, 4));
        let (frames, rejects) = frames_in(&s, &[DEPTH]);
        assert_eq!(frames, [(0, 0), (0, 1), (0, 3)]);
        assert!(rejects.contains(&(Reject::BadMagic, None)));
        assert!(rejects.contains(&(Reject::WrongSize, Some(StreamId(0)))));
    }

    #[test]
    fn a_huge_length_is_rejected_before_anything_is_allocated() {
        let mut f = frame(0, 4, 2, 0);
        f[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            parse(&f, &[DEPTH]),
            Parsed::Skip(1, Reject::BadLength, Some(StreamId(0)))
        );
        let mut f = frame(0, 4, 2, 0);
        f[6..8].copy_from_slice(&60_000u16.to_le_bytes());
        assert_eq!(
            parse(&f, &[DEPTH]),
            Parsed::Skip(1, Reject::BadHeader, Some(StreamId(0)))
        );
    }

    /// Version 2 frames of three streams interleave; version 1 frames are stream id 0; each
    /// frame of an unknown id or of another stream's size is rejected under the right stream
    /// (none for an unknown id) and the frames after it are still found.
    #[test]
    fn v2_frames_of_several_streams_and_v1_frames_as_stream_0() {
        let shapes = [DEPTH, COLOR, ACCEL];
        let mut s = frame_of(DEPTH, 0, Some(0), 1);
        s.extend(frame_of(COLOR, 0, Some(7), 2));
        s.extend(frame_of(ACCEL, 0, Some(300), 3));
        s.extend(frame_of(DEPTH, 1, None, 4));
        // Id 9 is not configured; a colour-sized frame under the accel id; depth's format
        // under the colour id.
        s.extend(frame_of(COLOR, 1, Some(9), 5));
        s.extend(frame_of(COLOR, 1, Some(300), 6));
        s.extend(frame_of(Shape { id: 7, ..DEPTH }, 1, Some(7), 7));
        s.extend(frame_of(ACCEL, 1, Some(300), 8));
        s.extend(frame_of(COLOR, 2, Some(7), 9));
        let (frames, rejects) = frames_in(&s, &shapes);
        assert_eq!(frames, [(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (1, 2)]);
        assert_eq!(
            frame_rejects(rejects),
            [
                (Reject::UnknownStream, None),
                (Reject::WrongSize, Some(StreamId(2))),
                (Reject::WrongSize, Some(StreamId(1))),
            ]
        );
        // A one-stream table without id 0 takes no version-1 frame.
        let (frames, rejects) = frames_in(&frame_of(COLOR, 0, None, 1), &[COLOR]);
        assert!(frames.is_empty());
        assert_eq!(frame_rejects(rejects), [(Reject::UnknownStream, None)]);
    }

    #[test]
    fn a_reject_is_counted_under_the_stream_its_header_names() {
        let shapes = [DEPTH, COLOR];
        let mut bad = frame_of(COLOR, 0, Some(7), 0);
        bad[4] = 9;
        // An unknown version: the id is not read; with two streams it is nobody's.
        assert_eq!(
            parse(&bad, &shapes),
            Parsed::Skip(1, Reject::BadVersion, None)
        );
        assert_eq!(
            parse(&bad, &[COLOR]),
            Parsed::Skip(1, Reject::BadVersion, Some(StreamId(0)))
        );
        let mut bad = frame_of(COLOR, 0, Some(7), 0);
        bad[6..8].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(
            parse(&bad, &shapes),
            Parsed::Skip(1, Reject::BadHeader, Some(StreamId(1)))
        );
        let mut bad = frame_of(COLOR, 0, Some(7), 0);
        bad[36..40].copy_from_slice(&13u32.to_le_bytes());
        assert_eq!(
            parse(&bad, &shapes),
            Parsed::Skip(1, Reject::BadLength, Some(StreamId(1)))
        );
        assert_eq!(stream_of(&bad[..30], &shapes), None, "id not received yet");
        assert_eq!(stream_of(&bad[..42], &shapes), Some(StreamId(1)));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panicking_and_valid_frames_survive(
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..300,
            v2 in proptest::bool::ANY,
        ) {
            let shapes = [DEPTH, COLOR, ACCEL];
            let mut s = garbage.clone();
            s.extend(frame_of(ACCEL, 7, Some(300), 9));
            let at = cut.min(garbage.len());
            let mut t = s[..at].to_vec();
            t.extend(frame_of(DEPTH, 8, v2.then_some(0), 9));
            t.extend(&s[at..]);
            let (frames, _) = frames_in(&t, &shapes);
            // Frame 7 is always found (it follows the garbage); 8 unless the garbage before
            // it ends in a prefix of a header that swallows it.
            proptest::prop_assert!(frames.contains(&(2, 7)));
        }
    }
}
