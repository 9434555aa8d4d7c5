//! Encoding: segment head, chunks of frames written in place around their payloads, drop
//! notices, and the summary and footer that finalize a segment.

use crate::frame::{
    ALIGN, DropReason, Frame, FrameBuf, FrameFormat, FrameSeq, HEADROOM, StreamId, StreamInfo,
};

use super::*;

/// Most frames one buffered chunk may hold: its message index must fit the last frame's tailroom.
pub const MAX_FRAMES_PER_CHUNK: usize = 240;

/// What the head and metadata of a segment say about it.
#[derive(Debug, Clone)]
pub struct SegmentMeta {
    pub recording_id: String,
    pub segment_id: u64,
    /// The recording's streams: stream `i` is channel `i + 1`.
    pub streams: Vec<StreamInfo>,
}

/// Most streams a recording may have: a buffered chunk's message indexes (one per channel in
/// it) must fit the last frame's tailroom.
pub const MAX_STREAMS: usize = 16;

/// The MCAP channel id of `stream`.
pub fn stream_channel_id(stream: StreamId) -> u16 {
    stream.0 + 1
}

/// The MCAP channel id of the drop notices of a recording with `streams` streams.
pub fn drop_channel_id(streams: usize) -> u16 {
    streams as u16 + 1
}

/// A run of consecutive frames dropped for one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRange {
    /// The stream the frames belong to.
    pub stream: StreamId,
    pub first: FrameSeq,
    pub last: FrameSeq,
    pub reason: DropReason,
    /// Host realtime of the drop, nanoseconds; the drop message's `log_time`.
    pub time_ns: u64,
}

/// Where one chunk landed in a segment; the summary's chunk index is built from these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkIndexEntry {
    pub start_time: u64,
    pub end_time: u64,
    pub chunk_start_offset: u64,
    pub chunk_length: u64,
    /// (channel id, messages of it in the chunk, offset of its message index), by channel id.
    pub channels: Vec<(u16, u64, u64)>,
    /// Bytes of all the chunk's message indexes.
    pub message_index_length: u64,
    pub uncompressed_size: u64,
}

impl ChunkIndexEntry {
    pub fn message_count(&self) -> u64 {
        self.channels.iter().map(|c| c.1).sum()
    }
}

/// The result of laying out a batch of frames at a file offset.
#[derive(Debug, Clone, Default)]
pub struct BatchLayout {
    pub chunks: Vec<ChunkIndexEntry>,
    /// Bytes the batch occupies in the file, padding included.
    pub len: u64,
}

/// Counts the summary's statistics record reports.
#[derive(Debug, Clone, Default)]
pub struct TailStats {
    pub metadata_offset: u64,
    pub metadata_length: u64,
}

/// A little-endian writer into a fixed scratch array (record headers are small and bounded).
struct Scratch {
    buf: [u8; 512],
    len: usize,
}

trait Put {
    fn put(&mut self, bytes: &[u8]);
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.put(s.as_bytes());
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.u8(v as u8);
    }
}

impl Put for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Put for Scratch {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            buf: [0; 512],
            len: 0,
        }
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Appends a whole record: opcode, length, body.
fn record(out: &mut Vec<u8>, opcode: u8, body: &[u8]) {
    out.u8(opcode);
    out.u64(body.len() as u64);
    out.put(body);
}

/// A padding record filling exactly `len` bytes (`len >= RECORD_PREFIX`).
fn write_padding(dst: &mut [u8]) {
    debug_assert!(dst.len() >= RECORD_PREFIX);
    dst[0] = OP_PADDING;
    let content = (dst.len() - RECORD_PREFIX) as u64;
    dst[1..9].copy_from_slice(&content.to_le_bytes());
    dst[9..].fill(0);
}

/// Length of a padding record that brings `len` to a multiple of ALIGN (0 if already there).
fn padding_to_align(len: usize) -> usize {
    let rem = len % ALIGN;
    if rem == 0 {
        return 0;
    }
    let mut pad = ALIGN - rem;
    if pad < RECORD_PREFIX {
        pad += ALIGN;
    }
    pad
}

fn append_padding(out: &mut Vec<u8>) {
    let pad = padding_to_align(out.len());
    if pad > 0 {
        let at = out.len();
        out.resize(at + pad, 0);
        write_padding(&mut out[at..]);
    }
}

fn schema_records(out: &mut Vec<u8>, streams: &[StreamInfo]) {
    let mut body = Vec::new();
    body.u16(DEPTH_SCHEMA_ID);
    body.str(DEPTH_SCHEMA_NAME);
    body.str("protobuf");
    let desc = raw_image_descriptor_set();
    body.u32(desc.len() as u32);
    body.put(&desc);
    record(out, OP_SCHEMA, &body);

    let mut body = Vec::new();
    body.u16(DROP_SCHEMA_ID);
    body.str(DROP_SCHEMA_NAME);
    body.str("jsonschema");
    let schema = br#"{"title":"framerec.Drop","description":"Frames the recorder accepted and did not write","type":"object","properties":{"stream":{"type":"string"},"reason":{"type":"string"},"first_seq":{"type":"integer"},"last_seq":{"type":"integer"},"count":{"type":"integer"}}}"#;
    body.u32(schema.len() as u32);
    body.put(schema);
    record(out, OP_SCHEMA, &body);

    if has_accel(streams) {
        let mut body = Vec::new();
        body.u16(ACCEL_SCHEMA_ID);
        body.str(accel::SCHEMA_NAME);
        body.str("protobuf");
        let desc = accelerometer_descriptor_set();
        body.u32(desc.len() as u32);
        body.put(&desc);
        record(out, OP_SCHEMA, &body);
    }
}

fn has_accel(streams: &[StreamInfo]) -> bool {
    streams.iter().any(|s| s.format == FrameFormat::Accel)
}

fn string_map(out: &mut Vec<u8>, entries: &[(&str, String)]) {
    let len: usize = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    out.u32(len as u32);
    for (k, v) in entries {
        out.str(k);
        out.str(v);
    }
}

fn channel_records(out: &mut Vec<u8>, streams: &[StreamInfo]) {
    for (i, stream) in streams.iter().enumerate() {
        let mut body = Vec::new();
        body.u16(stream_channel_id(StreamId(i as u16)));
        let mut meta = vec![
            ("frame_id", stream.frame_id.clone()),
            ("stream", stream.name.clone()),
        ];
        if stream.format.is_image() {
            body.u16(DEPTH_SCHEMA_ID);
            meta.extend([
                ("encoding", stream.format.encoding().to_string()),
                ("height", stream.height.to_string()),
                ("width", stream.width.to_string()),
            ]);
        } else {
            body.u16(ACCEL_SCHEMA_ID);
        }
        meta.sort();
        body.str(&stream.topic);
        body.str("protobuf");
        string_map(&mut body, &meta);
        record(out, OP_CHANNEL, &body);
    }

    let mut body = Vec::new();
    body.u16(drop_channel_id(streams.len()));
    body.u16(DROP_SCHEMA_ID);
    body.str(DROP_TOPIC);
    body.str("json");
    string_map(&mut body, &[]);
    record(out, OP_CHANNEL, &body);
}

/// The segment head: magic, header, schemas, channels and framerec's metadata record, padded to
/// ALIGN when `direct`. Returns the bytes and where the metadata record sits.
pub fn encode_segment_head(meta: &SegmentMeta, direct: bool) -> (Vec<u8>, TailStats) {
    let mut out = Vec::with_capacity(ALIGN);
    out.put(&MAGIC);
    let mut body = Vec::new();
    body.str("");
    body.str(concat!("framerec ", env!("CARGO_PKG_VERSION")));
    record(&mut out, OP_HEADER, &body);
    schema_records(&mut out, &meta.streams);
    channel_records(&mut out, &meta.streams);

    let metadata_offset = out.len() as u64;
    let mut body = Vec::new();
    body.str(METADATA_NAME);
    string_map(
        &mut body,
        &[
            ("recording_id", meta.recording_id.clone()),
            ("segment_id", meta.segment_id.to_string()),
            ("library_version", env!("CARGO_PKG_VERSION").to_string()),
        ],
    );
    record(&mut out, OP_METADATA, &body);
    let metadata_length = out.len() as u64 - metadata_offset;
    if direct {
        append_padding(&mut out);
    }
    (
        out,
        TailStats {
            metadata_offset,
            metadata_length,
        },
    )
}

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
    timestamp_field(proto, frame.meta.host_real_ns);
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
    timestamp_field(proto, frame.meta.host_real_ns);
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

/// Bytes of the message record header plus the message fields before the payload.
fn message_prefix(out: &mut Scratch, frame: &Frame, streams: &[StreamInfo]) {
    let stream = &streams[frame.meta.stream.index()];
    let mut proto = Scratch::new();
    if stream.format.is_image() {
        raw_image_fields(&mut proto, frame, stream);
    } else {
        accelerometer_fields(&mut proto, frame, stream);
    }
    let payload_len = frame.payload_len() as u64;
    let record_len = 2 + 4 + 8 + 8 + proto.len as u64 + payload_len;
    out.u8(OP_MESSAGE);
    out.u64(record_len);
    out.u16(stream_channel_id(frame.meta.stream));
    out.u32(frame.meta.seq.0 as u32);
    out.u64(frame.meta.host_real_ns);
    out.u64(frame.meta.device_ns);
    out.put(proto.bytes());
}

/// Chunk header up to and including the records length: 49 bytes.
const CHUNK_HEADER_LEN: usize = RECORD_PREFIX + 8 + 8 + 8 + 4 + 4 + 8;

fn chunk_header(out: &mut Scratch, start: u64, end: u64, records_len: u64, crc: u32) {
    out.u8(OP_CHUNK);
    out.u64(CHUNK_HEADER_LEN as u64 - RECORD_PREFIX as u64 + records_len);
    out.u64(start);
    out.u64(end);
    out.u64(records_len);
    out.u32(crc);
    out.str("");
    out.u64(records_len);
}

fn message_index_len(messages: usize) -> usize {
    RECORD_PREFIX + 2 + 4 + 16 * messages
}

/// Bytes of the message indexes of a chunk of `messages` messages on `channels` channels.
fn message_indexes_len(messages: usize, channels: usize) -> usize {
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
    let mut layout = BatchLayout::default();
    if direct {
        for frame in frames.iter_mut() {
            let one = encode_chunk(
                std::slice::from_mut(frame),
                offset + layout.len,
                streams,
                true,
            );
            layout.len += one.len;
            layout.chunks.extend(one.chunks);
        }
    } else if !frames.is_empty() {
        assert!(frames.len() <= MAX_FRAMES_PER_CHUNK);
        layout = encode_chunk(frames, offset, streams, false);
    }
    layout
}

fn encode_chunk(
    frames: &mut [Frame],
    offset: u64,
    streams: &[StreamInfo],
    direct: bool,
) -> BatchLayout {
    let count = frames.len();
    let mut crc = crc32fast::Hasher::new();
    let mut records_len = 0u64;
    let (mut start_time, mut end_time) = (u64::MAX, 0u64);
    // Message index entries (log_time, offset in records), written after the chunk.
    let mut index = [0u8; 16 * MAX_FRAMES_PER_CHUNK];
    let mut index_channels = [0u16; MAX_FRAMES_PER_CHUNK];
    // Each message header goes right before its payload.
    for (i, frame) in frames.iter_mut().enumerate() {
        let mut hdr = Scratch::new();
        message_prefix(&mut hdr, frame, streams);
        frame.buf.region_mut()[HEADROOM - hdr.len..HEADROOM].copy_from_slice(hdr.bytes());
        crc.update(hdr.bytes());
        crc.update(frame.buf.payload());
        let time = frame.meta.host_real_ns;
        index[16 * i..16 * i + 8].copy_from_slice(&time.to_le_bytes());
        index[16 * i + 8..16 * i + 16].copy_from_slice(&records_len.to_le_bytes());
        index_channels[i] = stream_channel_id(frame.meta.stream);
        records_len += (hdr.len + frame.payload_len()) as u64;
        frame.span = (HEADROOM - hdr.len, HEADROOM + frame.payload_len());
        start_time = start_time.min(time);
        end_time = end_time.max(time);
    }

    // The chunk header goes before the first message; in direct mode padding fills the rest of
    // the headroom so the span starts aligned.
    let mut head = Scratch::new();
    chunk_header(&mut head, start_time, end_time, records_len, crc.finalize());
    let first = &mut frames[0];
    let chunk_at = first.span.0 - head.len;
    first.buf.region_mut()[chunk_at..first.span.0].copy_from_slice(head.bytes());
    first.span.0 = chunk_at;
    let mut chunk_start_offset = offset;
    if direct {
        write_padding(&mut first.buf.region_mut()[..chunk_at]);
        first.span.0 = 0;
        chunk_start_offset += chunk_at as u64;
    }
    let chunk_length = CHUNK_HEADER_LEN as u64 + records_len;

    // The message indexes, one per channel in the chunk (and in direct mode, padding to
    // ALIGN), in the last frame's tailroom.
    let mut channels: Vec<(u16, u64, u64)> = Vec::new();
    for f in frames.iter() {
        let id = stream_channel_id(f.meta.stream);
        match channels.iter_mut().find(|c| c.0 == id) {
            Some(c) => c.1 += 1,
            None => channels.push((id, 1, 0)),
        }
    }
    channels.sort_unstable();
    let last = &mut frames[count - 1];
    let mut end = last.span.1;
    let mut put = |bytes: &[u8]| {
        last.buf.region_mut()[end..end + bytes.len()].copy_from_slice(bytes);
        end += bytes.len();
    };
    let mut index_at = chunk_start_offset + chunk_length;
    for c in channels.iter_mut() {
        c.2 = index_at;
        let len = message_index_len(c.1 as usize);
        index_at += len as u64;
        put(&[OP_MESSAGE_INDEX]);
        put(&((len - RECORD_PREFIX) as u64).to_le_bytes());
        put(&c.0.to_le_bytes());
        put(&((16 * c.1) as u32).to_le_bytes());
        for (i, _) in index_channels[..count]
            .iter()
            .enumerate()
            .filter(|(_, id)| **id == c.0)
        {
            put(&index[16 * i..16 * i + 16]);
        }
    }
    if direct {
        let pad = padding_to_align(end);
        write_padding(&mut last.buf.region_mut()[end..end + pad]);
        end += pad;
    }
    last.span.1 = end;

    BatchLayout {
        chunks: vec![ChunkIndexEntry {
            start_time,
            end_time,
            chunk_start_offset,
            chunk_length,
            message_index_length: message_indexes_len(count, channels.len()) as u64,
            channels,
            uncompressed_size: records_len,
        }],
        len: frames.iter().map(|f| (f.span.1 - f.span.0) as u64).sum(),
    }
}

/// A chunk of drop notices at file offset `offset`, in a buffer of its own. Returns the buffer,
/// the span of its region to write, and the chunk's index entry.
pub fn encode_drop_chunk(
    drops: &[DropRange],
    streams: &[StreamInfo],
    offset: u64,
    direct: bool,
) -> (FrameBuf, (usize, usize), ChunkIndexEntry) {
    let mut records = Vec::new();
    let mut index_entries = Vec::new();
    let (mut start_time, mut end_time) = (u64::MAX, 0u64);
    let channel = drop_channel_id(streams.len());
    for (i, d) in drops.iter().enumerate() {
        let topic = streams
            .get(d.stream.index())
            .map_or("", |s| s.topic.as_str());
        let json = serde_json::json!({
            "stream": topic,
            "reason": d.reason.as_str(),
            "first_seq": d.first.0,
            "last_seq": d.last.0,
            "count": (d.last.0 - d.first.0).saturating_add(1),
        })
        .to_string();
        index_entries.push((d.time_ns, records.len() as u64));
        let mut body = Vec::new();
        body.u16(channel);
        body.u32(i as u32);
        body.u64(d.time_ns);
        body.u64(d.time_ns);
        body.put(json.as_bytes());
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
    if direct {
        append_padding(&mut out);
    }
    let mut buf = FrameBuf::new(out.len());
    buf.region_mut()[..out.len()].copy_from_slice(&out);
    let entry = ChunkIndexEntry {
        start_time,
        end_time,
        chunk_start_offset: offset,
        chunk_length,
        channels: vec![(channel, drops.len() as u64, offset + chunk_length)],
        message_index_length: message_index_len(index_entries.len()) as u64,
        uncompressed_size: records.len() as u64,
    };
    (buf, (0, out.len()), entry)
}

/// The tail that finalizes a segment whose data ends at `data_end`: (padding,) DataEnd, summary,
/// summary offsets, footer and magic. `chunks` must be every chunk written, in any order.
pub fn encode_segment_tail(
    data_end: u64,
    chunks: &[ChunkIndexEntry],
    streams: &[StreamInfo],
    head: &TailStats,
    direct: bool,
) -> Vec<u8> {
    let mut chunks: Vec<&ChunkIndexEntry> = chunks.iter().collect();
    chunks.sort_by_key(|c| c.chunk_start_offset);

    let mut out = Vec::new();
    let mut summary = Vec::new();
    let mut groups: Vec<(u8, u64, u64)> = Vec::new();
    let mut group = |summary: &mut Vec<u8>, opcode: u8, f: &mut dyn FnMut(&mut Vec<u8>)| {
        let start = summary.len() as u64;
        f(summary);
        groups.push((opcode, start, summary.len() as u64 - start));
    };
    group(&mut summary, OP_SCHEMA, &mut |s| schema_records(s, streams));
    group(&mut summary, OP_CHANNEL, &mut |s| {
        channel_records(s, streams)
    });
    group(&mut summary, OP_STATISTICS, &mut |s| {
        // Channel ids run 1..=streams + 1 (the drop channel last).
        let mut counts = vec![0u64; streams.len() + 1];
        let (mut start, mut end) = (u64::MAX, 0u64);
        for c in &chunks {
            for (id, n, _) in &c.channels {
                if let Some(slot) = counts.get_mut((*id as usize).wrapping_sub(1)) {
                    *slot += n;
                }
            }
            start = start.min(c.start_time);
            end = end.max(c.end_time);
        }
        if chunks.is_empty() {
            start = 0;
        }
        let mut body = Vec::new();
        body.u64(counts.iter().sum());
        body.u16(if has_accel(streams) { 3 } else { 2 }); // schemas
        body.u32(counts.len() as u32); // channels
        body.u32(0); // attachments
        body.u32(1); // metadata
        body.u32(chunks.len() as u32);
        body.u64(start);
        body.u64(end);
        let nonzero: Vec<(u16, u64)> = (1..=counts.len() as u16)
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect();
        body.u32((nonzero.len() * 10) as u32);
        for (id, n) in nonzero {
            body.u16(id);
            body.u64(n);
        }
        record(s, OP_STATISTICS, &body);
    });
    if !chunks.is_empty() {
        group(&mut summary, OP_CHUNK_INDEX, &mut |s| {
            for c in &chunks {
                let mut body = Vec::new();
                body.u64(c.start_time);
                body.u64(c.end_time);
                body.u64(c.chunk_start_offset);
                body.u64(c.chunk_length);
                body.u32(10 * c.channels.len() as u32);
                for (id, _, at) in &c.channels {
                    body.u16(*id);
                    body.u64(*at);
                }
                body.u64(c.message_index_length);
                body.str("");
                body.u64(c.uncompressed_size);
                body.u64(c.uncompressed_size);
                record(s, OP_CHUNK_INDEX, &body);
            }
        });
    }
    group(&mut summary, OP_METADATA_INDEX, &mut |s| {
        let mut body = Vec::new();
        body.u64(head.metadata_offset);
        body.u64(head.metadata_length);
        body.str(METADATA_NAME);
        record(s, OP_METADATA_INDEX, &body);
    });

    // Fixed-size part after the padding: DataEnd, summary, offsets, footer, magic.
    let offsets_len = groups.len() * (RECORD_PREFIX + 17);
    let fixed = (RECORD_PREFIX + 4) + summary.len() + offsets_len + (RECORD_PREFIX + 20) + 8;
    if direct {
        let pad = padding_to_align(fixed);
        out.resize(pad, 0);
        if pad > 0 {
            write_padding(&mut out[..pad]);
        }
    }
    let mut body = Vec::new();
    body.u32(0);
    record(&mut out, OP_DATA_END, &body);
    let summary_start = data_end + out.len() as u64;
    let crc_from = out.len();
    out.put(&summary);
    let summary_offset_start = data_end + out.len() as u64;
    for (opcode, start, len) in groups {
        let mut body = Vec::new();
        body.u8(opcode);
        body.u64(summary_start + start);
        body.u64(len);
        record(&mut out, OP_SUMMARY_OFFSET, &body);
    }
    out.u8(OP_FOOTER);
    out.u64(20);
    out.u64(summary_start);
    out.u64(summary_offset_start);
    let crc = crc32fast::hash(&out[crc_from..]);
    out.u32(crc);
    out.put(&MAGIC);
    debug_assert!(!direct || out.len() % ALIGN == 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_alignment_with_room_for_a_record() {
        for len in [0, 1, 4087, 4088, 4095, 4096, 5000] {
            let pad = padding_to_align(len);
            assert_eq!((len + pad) % ALIGN, 0, "len {len}");
            assert!(pad == 0 || pad >= RECORD_PREFIX, "len {len} pad {pad}");
        }
    }

    #[test]
    fn max_chunk_index_fits_tailroom() {
        assert!(message_index_len(MAX_FRAMES_PER_CHUNK) <= crate::frame::TAILROOM);
        assert!(
            message_indexes_len(MAX_FRAMES_PER_CHUNK, MAX_STREAMS + 1) <= crate::frame::TAILROOM,
            "a buffered chunk's indexes fit (a direct chunk holds one frame)"
        );
    }
}
