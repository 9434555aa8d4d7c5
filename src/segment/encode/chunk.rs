//! Chunks: frame messages laid out in place around their payloads (RawImage and
//! Accelerometer fields, message indexes per channel), and chunks of drop notices.

use super::put::{Scratch, slack_len, write_slack};
use super::*;
use crate::segment::ros2::cdr;

/// The `google.protobuf.Timestamp` field (number 1) of host realtime `ns`.
fn timestamp_field(proto: &mut Scratch, ns: u64) {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let mut ts = Scratch::new();
    if secs != 0 {
        ts.u8(0x08);
        ts.varint(secs);
    }
    if nanos != 0 {
        ts.u8(0x10);
        ts.varint(nanos);
    }
    proto.u8(0x0a); // timestamp, field 1, length-delimited
    proto.varint(ts.len as u64);
    proto.put(ts.bytes());
}

/// The `RawImage` fields before the payload (its `data`, field 6).
fn raw_image_fields(proto: &mut Scratch, frame: &Frame, stream: &StreamInfo) {
    timestamp_field(proto, frame.meta.publish_ns);
    proto.u8(0x15); // width, field 2, fixed32
    proto.u32(stream.width);
    proto.u8(0x1d); // height, field 3, fixed32
    proto.u32(stream.height);
    proto.u8(0x22); // encoding, field 4
    proto.varint(stream.format.encoding().len() as u64);
    proto.put(stream.format.encoding().as_bytes());
    proto.u8(0x2d); // step, field 5, fixed32
    proto.u32(stream.step_bytes());
    proto.u8(0x3a); // frame_id, field 7
    proto.varint(stream.frame_id.len() as u64);
    proto.put(stream.frame_id.as_bytes());
    proto.u8(0x32); // data, field 6: the payload follows
    proto.varint(frame.payload_len() as u64);
}

/// The `framerec.Accelerometer` fields before the payload (its `raw`, field 8), computed from
/// the raw reading (see [`accel`]); a payload that is no reading gets zeros.
fn accelerometer_fields(proto: &mut Scratch, frame: &Frame, stream: &StreamInfo) {
    let raw = accel::RawTilt::from_bytes(frame.buf.payload()).unwrap_or_default();
    timestamp_field(proto, frame.meta.publish_ns);
    proto.u8(0x12); // frame_id, field 2
    proto.varint(stream.frame_id.len() as u64);
    proto.put(stream.frame_id.as_bytes());
    let [x, y, z] = raw.mks();
    for (tag, v) in [(0x19, x), (0x21, y), (0x29, z), (0x31, raw.tilt_degrees())] {
        proto.u8(tag); // x, y, z, tilt_degrees: fields 3-6, fixed64
        proto.put(&v.to_le_bytes());
    }
    proto.u8(0x38); // tilt_status, field 7, varint
    proto.varint(raw.tilt_status as u64);
    proto.u8(0x42); // raw, field 8: the payload follows
    proto.varint(frame.payload_len() as u64);
}

/// The message's protobuf fields before the payload, ending with the payload field's key and
/// length: the payload, written in place, is the field's content.
fn proto_fields(proto: &mut Scratch, frame: &Frame, stream: &StreamInfo) {
    if stream.format.is_image() {
        raw_image_fields(proto, frame, stream);
    } else {
        accelerometer_fields(proto, frame, stream);
    }
}

/// The CDR bytes of `frame`'s ros2 message before its payload, and how many payload bytes
/// follow them in the message: an Image's pixels are its `data`, written in place; an Imu
/// message is whole without the raw reading (see [`crate::segment::ros2`]).
fn ros2_fields(out: &mut cdr::Scratch, frame: &Frame, stream: &StreamInfo) -> usize {
    if stream.format.is_image() {
        let f = cdr::ImageFields {
            stamp_ns: frame.meta.publish_ns,
            frame_id: &stream.frame_id,
            height: stream.height,
            width: stream.width,
            encoding: stream.format.encoding(),
            step: stream.step_bytes(),
        };
        cdr::image_prefix(out, &f, frame.payload_len());
        frame.payload_len()
    } else {
        let raw = accel::RawTilt::from_bytes(frame.buf.payload()).unwrap_or_default();
        cdr::imu(out, frame.meta.publish_ns, &stream.frame_id, raw.mks());
        0
    }
}

/// Bytes of a message record before its data: opcode, length, channel, sequence, times.
const MESSAGE_HEADER_LEN: usize = RECORD_PREFIX + 2 + 4 + 8 + 8;

fn message_header(out: &mut Scratch, frame: &Frame, data_len: usize) {
    out.u8(OP_MESSAGE);
    out.u64((MESSAGE_HEADER_LEN - RECORD_PREFIX + data_len) as u64);
    out.u16(stream_channel_id(frame.meta.stream));
    out.u32(frame.meta.seq.0 as u32);
    out.u64(frame.meta.host_real_ns);
    out.u64(frame.meta.publish_ns);
}

/// Slack (see [`write_slack`]) before and after the payload of a direct chunk's one message:
/// before, so that the chunk starts at the (aligned) start of the frame's headroom; after, so
/// that its message index ends aligned.
fn direct_slack(fields_len: usize, payload_len: usize) -> (usize, usize) {
    let before = HEADROOM - CHUNK_HEADER_LEN - MESSAGE_HEADER_LEN - fields_len;
    // The fields fit a 512-byte scratch: the rest of the headroom is far more than 1 byte.
    debug_assert!(before >= 2);
    let after = slack_len(HEADROOM + payload_len + message_index_len(1));
    (before, after)
}

/// Writes `frame`'s message record around its payload (with `direct`, slack before and after
/// it) and returns the record's span in the frame's region and how many payload bytes (at
/// [`HEADROOM`]) it holds.
fn place_message(
    frame: &mut Frame,
    streams: &[StreamInfo],
    profile: Profile,
    direct: bool,
) -> (usize, usize, usize) {
    let stream = &streams[frame.meta.stream.index()];
    let mut proto = Scratch::new();
    let mut ros = cdr::Scratch::default();
    let (fields, payload_len) = match profile {
        Profile::Foxglove => {
            proto_fields(&mut proto, frame, stream);
            (proto.bytes(), frame.payload_len())
        }
        Profile::Ros2 => {
            let n = ros2_fields(&mut ros, frame, stream);
            (ros.bytes(), n)
        }
    };
    let (before, after) = if direct {
        direct_slack(fields.len(), payload_len)
    } else {
        (0, 0)
    };
    let mut hdr = Scratch::new();
    message_header(&mut hdr, frame, before + fields.len() + payload_len + after);
    let fields_at = HEADROOM - fields.len();
    let start = fields_at - before - hdr.len;
    let end = HEADROOM + payload_len + after;
    let region = frame.buf.region_mut();
    region[start..start + hdr.len].copy_from_slice(hdr.bytes());
    write_slack(&mut region[start + hdr.len..fields_at]);
    region[fields_at..HEADROOM].copy_from_slice(fields);
    write_slack(&mut region[HEADROOM + payload_len..end]);
    (start, end, payload_len)
}

/// Adds the message record at `span` of `region` to a chunk's CRC. The `payload` bytes at
/// [`HEADROOM`] are not read again: their CRC (`payload_crc`, taken by the receiver while they
/// were in its cache) is combined in.
fn add_message_crc(
    crc: &mut crc32fast::Hasher,
    region: &[u8],
    (start, end): (usize, usize),
    payload: usize,
    payload_crc: u32,
) {
    if payload == 0 {
        crc.update(&region[start..end]);
        return;
    }
    crc.update(&region[start..HEADROOM]);
    crc.combine(&crc32fast::Hasher::new_with_initial_len(
        payload_crc,
        payload as u64,
    ));
    crc.update(&region[HEADROOM + payload..end]);
}

/// Chunk header up to and including the records length: 49 bytes.
pub(super) const CHUNK_HEADER_LEN: usize = RECORD_PREFIX + 8 + 8 + 8 + 4 + 4 + 8;

/// A chunk record's header: times, uncompressed size and CRC, then `(compression, records
/// length)` (the records follow it).
pub(super) fn chunk_header(
    out: &mut impl Put,
    (start, end): (u64, u64),
    uncompressed_len: u64,
    crc: u32,
    (compression, records_len): (&str, u64),
) {
    out.u8(OP_CHUNK);
    out.u64((CHUNK_HEADER_LEN - RECORD_PREFIX + compression.len()) as u64 + records_len);
    out.u64(start);
    out.u64(end);
    out.u64(uncompressed_len);
    out.u32(crc);
    out.str(compression);
    out.u64(records_len);
}

pub(super) fn message_index_len(messages: usize) -> usize {
    RECORD_PREFIX + 2 + 4 + 16 * messages
}

/// Bytes of the message indexes of a chunk of `messages` messages on `channels` channels.
pub(super) fn message_indexes_len(messages: usize, channels: usize) -> usize {
    (RECORD_PREFIX + 2 + 4) * channels + 16 * messages
}

/// Lays out `frames` (in log-time order; of any streams of `streams`) as chunks starting at file offset `offset`.
///
/// Record headers are written into each frame's headroom and trailers into the last frame's
/// tailroom; each frame's `span` is set to the bytes of its region to write, in order. Buffered
/// (`direct == false`): one chunk for the batch (at most [`MAX_FRAMES_PER_CHUNK`] frames).
/// Direct: one chunk per frame, each span ALIGN-aligned in memory and length via padding.
pub fn encode_frame_batch(
    frames: &mut [Frame],
    offset: u64,
    streams: &[StreamInfo],
    direct: bool,
) -> BatchLayout {
    encode_frames(frames, offset, streams, Profile::Foxglove, direct)
}

/// [`encode_frame_batch`] in `profile` (the ros2 profile is never `direct`).
pub fn encode_frames(
    frames: &mut [Frame],
    offset: u64,
    streams: &[StreamInfo],
    profile: Profile,
    direct: bool,
) -> BatchLayout {
    debug_assert!(!direct || profile == Profile::Foxglove);
    let mut layout = BatchLayout::default();
    if direct {
        for frame in frames.iter_mut() {
            let one = encode_chunk(
                std::slice::from_mut(frame),
                offset + layout.len,
                streams,
                profile,
                true,
            );
            layout.len += one.len;
            layout.chunks.extend(one.chunks);
        }
    } else if !frames.is_empty() {
        assert!(frames.len() <= MAX_FRAMES_PER_CHUNK);
        layout = encode_chunk(frames, offset, streams, profile, false);
    }
    layout
}

/// A chunk's messages placed in their frames' buffers (headers in the headroom, spans set),
/// before the chunk record around them.
pub(super) struct PlacedRecords {
    pub(super) count: usize,
    /// CRC-32 of the records, uncompressed.
    pub(super) crc: u32,
    /// Bytes of the records, uncompressed.
    pub(super) len: u64,
    pub(super) start_time: u64,
    pub(super) end_time: u64,
    /// Message index entries (log_time, offset in records) and each message's channel.
    index: [u8; 16 * MAX_FRAMES_PER_CHUNK],
    index_channels: [u16; MAX_FRAMES_PER_CHUNK],
}

/// Places `frames`' message records (see [`place_message`]) and sums them up for a chunk.
pub(super) fn place_records(
    frames: &mut [Frame],
    streams: &[StreamInfo],
    profile: Profile,
    direct: bool,
) -> PlacedRecords {
    assert!(frames.len() <= MAX_FRAMES_PER_CHUNK);
    let mut crc = crc32fast::Hasher::new();
    let mut p = PlacedRecords {
        count: frames.len(),
        crc: 0,
        len: 0,
        start_time: u64::MAX,
        end_time: 0,
        index: [0u8; 16 * MAX_FRAMES_PER_CHUNK],
        index_channels: [0u16; MAX_FRAMES_PER_CHUNK],
    };
    // Each message header goes right before its payload; with direct I/O, slack fields fill the
    // headroom before it and the room after it up to the message index's aligned end.
    for (i, frame) in frames.iter_mut().enumerate() {
        let payload_crc = frame.buf.payload_crc();
        let (start, end, payload) = place_message(frame, streams, profile, direct);
        add_message_crc(
            &mut crc,
            frame.buf.region(),
            (start, end),
            payload,
            payload_crc,
        );
        let time = frame.meta.host_real_ns;
        p.index[16 * i..16 * i + 8].copy_from_slice(&time.to_le_bytes());
        p.index[16 * i + 8..16 * i + 16].copy_from_slice(&p.len.to_le_bytes());
        p.index_channels[i] = stream_channel_id(frame.meta.stream);
        p.len += (end - start) as u64;
        frame.span = (start, end);
        p.start_time = p.start_time.min(time);
        p.end_time = p.end_time.max(time);
    }
    p.crc = crc.finalize();
    p
}

impl PlacedRecords {
    /// (channel id, messages of it, 0) for each channel in the chunk, by channel id.
    pub(super) fn channels(&self) -> Vec<(u16, u64, u64)> {
        let mut channels: Vec<(u16, u64, u64)> = Vec::new();
        for id in &self.index_channels[..self.count] {
            match channels.iter_mut().find(|c| c.0 == *id) {
                Some(c) => c.1 += 1,
                None => channels.push((*id, 1, 0)),
            }
        }
        channels.sort_unstable();
        channels
    }

    /// Puts the chunk's message indexes, one per channel, the first at file offset `index_at`,
    /// and sets each channel's index offset.
    pub(super) fn put_message_indexes(
        &self,
        channels: &mut [(u16, u64, u64)],
        mut index_at: u64,
        mut put: impl FnMut(&[u8]),
    ) {
        for c in channels.iter_mut() {
            c.2 = index_at;
            let len = message_index_len(c.1 as usize);
            index_at += len as u64;
            put(&[OP_MESSAGE_INDEX]);
            put(&((len - RECORD_PREFIX) as u64).to_le_bytes());
            put(&c.0.to_le_bytes());
            put(&((16 * c.1) as u32).to_le_bytes());
            for (i, _) in self.index_channels[..self.count]
                .iter()
                .enumerate()
                .filter(|(_, id)| **id == c.0)
            {
                put(&self.index[16 * i..16 * i + 16]);
            }
        }
    }
}

fn encode_chunk(
    frames: &mut [Frame],
    offset: u64,
    streams: &[StreamInfo],
    profile: Profile,
    direct: bool,
) -> BatchLayout {
    let placed = place_records(frames, streams, profile, direct);
    let count = placed.count;
    let records_len = placed.len;

    // The chunk header goes before the first message (with direct I/O: at the start of its
    // headroom, aligned).
    let mut head = Scratch::new();
    chunk_header(
        &mut head,
        (placed.start_time, placed.end_time),
        records_len,
        placed.crc,
        ("", records_len),
    );
    let first = &mut frames[0];
    let chunk_at = first.span.0 - head.len;
    first.buf.region_mut()[chunk_at..first.span.0].copy_from_slice(head.bytes());
    first.span.0 = chunk_at;
    debug_assert!(!direct || chunk_at == 0);
    let chunk_start_offset = offset;
    let chunk_length = CHUNK_HEADER_LEN as u64 + records_len;

    // The message indexes, one per channel in the chunk, in the last frame's tailroom.
    let mut channels = placed.channels();
    let last = &mut frames[count - 1];
    let mut end = last.span.1;
    placed.put_message_indexes(&mut channels, chunk_start_offset + chunk_length, |bytes| {
        last.buf.region_mut()[end..end + bytes.len()].copy_from_slice(bytes);
        end += bytes.len();
    });
    debug_assert!(!direct || end.is_multiple_of(ALIGN));
    last.span.1 = end;

    BatchLayout {
        chunks: vec![ChunkIndexEntry {
            start_time: placed.start_time,
            end_time: placed.end_time,
            chunk_start_offset,
            chunk_length,
            message_index_length: message_indexes_len(count, channels.len()) as u64,
            channels,
            uncompressed_size: records_len,
            compression: "",
            compressed_size: records_len,
        }],
        len: frames.iter().map(|f| (f.span.1 - f.span.0) as u64).sum(),
    }
}

/// A chunk of drop notices at file offset `offset`, in a buffer of its own. Returns the buffer,
/// the span of its region to write, and the chunk's index entry. With direct I/O the last
/// notice's JSON ends in whitespace that makes the span a multiple of ALIGN (so `drops` must
/// not be empty then).
pub fn encode_drop_chunk(
    drops: &[DropRange],
    streams: &[StreamInfo],
    offset: u64,
    direct: bool,
) -> (FrameBuf, (usize, usize), ChunkIndexEntry) {
    encode_drops(drops, streams, Profile::Foxglove, offset, direct)
}

/// [`encode_drop_chunk`] in `profile` (the ros2 profile is never `direct`): ros2 notices are
/// `framerec_msgs/msg/Drop` messages in CDR.
pub fn encode_drops(
    drops: &[DropRange],
    streams: &[StreamInfo],
    profile: Profile,
    offset: u64,
    direct: bool,
) -> (FrameBuf, (usize, usize), ChunkIndexEntry) {
    debug_assert!(!direct || !drops.is_empty(), "no notice to pad");
    debug_assert!(!direct || profile == Profile::Foxglove);
    let (mut out, mut entry) = drop_chunk(drops, streams, offset, 0, profile);
    let pad = (ALIGN - out.len() % ALIGN) % ALIGN;
    if direct && pad > 0 {
        (out, entry) = drop_chunk(drops, streams, offset, pad, profile);
        debug_assert_eq!(out.len() % ALIGN, 0);
    }
    let mut buf = FrameBuf::new(out.len());
    buf.region_mut()[..out.len()].copy_from_slice(&out);
    (buf, (0, out.len()), entry)
}

/// The bytes of a drop chunk and its message indexes, the last notice followed by `pad` spaces.
fn drop_chunk(
    drops: &[DropRange],
    streams: &[StreamInfo],
    offset: u64,
    pad: usize,
    profile: Profile,
) -> (Vec<u8>, ChunkIndexEntry) {
    let mut records = Vec::new();
    let mut index_entries = Vec::new();
    let (mut start_time, mut end_time) = (u64::MAX, 0u64);
    let channel = drop_channel_id(streams.len());
    for (i, d) in drops.iter().enumerate() {
        let topic = streams
            .get(d.stream.index())
            .map_or("", |s| s.topic.as_str());
        let data = match profile {
            Profile::Foxglove => {
                let mut json = serde_json::json!({
                    "stream": topic,
                    "reason": d.reason.as_str(),
                    "first_seq": d.first.0,
                    "last_seq": d.last.0,
                    "count": (d.last.0 - d.first.0).saturating_add(1),
                })
                .to_string();
                if i + 1 == drops.len() {
                    // JSON allows whitespace after the value.
                    json.extend(std::iter::repeat_n(' ', pad));
                }
                json.into_bytes()
            }
            Profile::Ros2 => {
                let mut out = Vec::new();
                cdr::drop_notice(&mut out, topic, d.reason.as_str(), d.first.0, d.last.0);
                out
            }
        };
        index_entries.push((d.time_ns, records.len() as u64));
        let mut body = Vec::new();
        body.u16(channel);
        body.u32(i as u32);
        body.u64(d.time_ns);
        body.u64(d.time_ns);
        body.put(&data);
        record(&mut records, OP_MESSAGE, &body);
        start_time = start_time.min(d.time_ns);
        end_time = end_time.max(d.time_ns);
    }
    let mut out = Vec::new();
    out.u8(OP_CHUNK);
    out.u64((CHUNK_HEADER_LEN - RECORD_PREFIX + records.len()) as u64);
    out.u64(start_time);
    out.u64(end_time);
    out.u64(records.len() as u64);
    out.u32(crc32fast::hash(&records));
    out.str("");
    out.u64(records.len() as u64);
    out.put(&records);
    let chunk_length = out.len() as u64;
    out.u8(OP_MESSAGE_INDEX);
    out.u64((2 + 4 + 16 * index_entries.len()) as u64);
    out.u16(channel);
    out.u32((16 * index_entries.len()) as u32);
    for (t, o) in &index_entries {
        out.u64(*t);
        out.u64(*o);
    }
    let entry = ChunkIndexEntry {
        start_time,
        end_time,
        chunk_start_offset: offset,
        chunk_length,
        channels: vec![(channel, drops.len() as u64, offset + chunk_length)],
        message_index_length: message_index_len(index_entries.len()) as u64,
        uncompressed_size: records.len() as u64,
        compression: "",
        compressed_size: records.len() as u64,
    };
    (out, entry)
}
