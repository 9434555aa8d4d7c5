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
    /// `""` (raw), `"zstd"` or `"lz4"`.
    pub compression: &'static str,
    /// Bytes of the records as stored (compressed).
    pub compressed_size: u64,
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

/// What the tail repeats or points to of the segment's head.
#[derive(Debug, Clone, Default)]
pub struct TailStats {
    pub metadata_offset: u64,
    pub metadata_length: u64,
    /// Spaces after the drop notices' JSON schema: with direct I/O they make the head a
    /// multiple of ALIGN. The summary repeats the schema byte for byte.
    pub drop_schema_pad: usize,
    /// The profile the head was written in; the summary repeats its schemas and channels.
    pub profile: Profile,
}

/// A Metadata record the tail carries before DataEnd (indexed in the summary beside the
/// head's): rosbag2's `rosbag2` record, framerec's own records written at close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailMetadata {
    pub name: String,
    /// Its key-value pairs, written in this order.
    pub entries: Vec<(String, String)>,
}

mod chunk;
mod compressed;
mod put;

pub use chunk::{encode_drop_chunk, encode_drops, encode_frame_batch, encode_frames};
#[cfg(test)]
use chunk::{message_index_len, message_indexes_len};
pub use compressed::{Codec, CompressedChunk, compress_chunk};
use put::{Put, record};

use super::ros2::{self, Profile};

/// The schema records; the drop schema's JSON is followed by `drop_schema_pad` spaces.
fn schema_records(
    out: &mut Vec<u8>,
    streams: &[StreamInfo],
    drop_schema_pad: usize,
    profile: Profile,
) {
    if profile == Profile::Ros2 {
        return ros2_schema_records(out, streams);
    }
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
    body.u32((schema.len() + drop_schema_pad) as u32);
    body.put(schema);
    body.extend(std::iter::repeat_n(b' ', drop_schema_pad));
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

/// The ros2 profile's schemas: the same ids, `ros2msg` definitions.
fn ros2_schema_records(out: &mut Vec<u8>, streams: &[StreamInfo]) {
    let mut schemas = vec![
        (DEPTH_SCHEMA_ID, ros2::IMAGE_TYPE, ros2::image_msgdef()),
        (
            DROP_SCHEMA_ID,
            ros2::DROP_TYPE,
            ros2::drop_msgdef().to_string(),
        ),
    ];
    if has_accel(streams) {
        schemas.push((ACCEL_SCHEMA_ID, ros2::IMU_TYPE, ros2::imu_msgdef()));
    }
    for (id, name, text) in schemas {
        let mut body = Vec::new();
        body.u16(id);
        body.str(name);
        body.str(ros2::SCHEMA_ENCODING);
        body.str(&text);
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

fn channel_records(out: &mut Vec<u8>, streams: &[StreamInfo], profile: Profile) {
    let (encoding, drop_encoding) = match profile {
        Profile::Foxglove => ("protobuf", "json"),
        Profile::Ros2 => (ros2::MESSAGE_ENCODING, ros2::MESSAGE_ENCODING),
    };
    let qos = (profile == Profile::Ros2).then(ros2::offered_qos_profiles);
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
        if let Some(qos) = &qos {
            meta.push(("offered_qos_profiles", qos.clone()));
        }
        meta.sort();
        body.str(&stream.topic);
        body.str(encoding);
        string_map(&mut body, &meta);
        record(out, OP_CHANNEL, &body);
    }

    let mut body = Vec::new();
    body.u16(drop_channel_id(streams.len()));
    body.u16(DROP_SCHEMA_ID);
    body.str(DROP_TOPIC);
    body.str(drop_encoding);
    match qos {
        Some(qos) => string_map(&mut body, &[("offered_qos_profiles", qos)]),
        None => string_map(&mut body, &[]),
    }
    record(out, OP_CHANNEL, &body);
}

/// The segment head: magic, header, schemas, channels and framerec's metadata record; with
/// `direct`, whitespace after the drop schema's JSON makes it a multiple of ALIGN. Returns the
/// bytes and what the tail needs of them.
pub fn encode_segment_head(meta: &SegmentMeta, direct: bool) -> (Vec<u8>, TailStats) {
    encode_head(meta, Profile::Foxglove, direct)
}

/// [`encode_segment_head`] in `profile` (the ros2 profile is never `direct`).
pub fn encode_head(meta: &SegmentMeta, profile: Profile, direct: bool) -> (Vec<u8>, TailStats) {
    debug_assert!(!direct || profile == Profile::Foxglove);
    let (out, stats) = head(meta, 0, profile);
    let pad = (ALIGN - out.len() % ALIGN) % ALIGN;
    if direct && pad > 0 {
        let (out, stats) = head(meta, pad, profile);
        debug_assert_eq!(out.len() % ALIGN, 0);
        return (out, stats);
    }
    (out, stats)
}

fn head(meta: &SegmentMeta, drop_schema_pad: usize, profile: Profile) -> (Vec<u8>, TailStats) {
    let mut out = Vec::with_capacity(ALIGN);
    out.put(&MAGIC);
    let mut body = Vec::new();
    body.str(profile.header());
    body.str(concat!("framerec ", env!("CARGO_PKG_VERSION")));
    record(&mut out, OP_HEADER, &body);
    schema_records(&mut out, &meta.streams, drop_schema_pad, profile);
    channel_records(&mut out, &meta.streams, profile);

    let metadata_offset = out.len() as u64;
    let mut body = Vec::new();
    body.str(METADATA_NAME);
    string_map(
        &mut body,
        &[
            ("recording_id", meta.recording_id.clone()),
            ("segment_id", meta.segment_id.to_string()),
            ("library_version", env!("CARGO_PKG_VERSION").to_string()),
            (
                super::clock::PUBLISH_TIME_KEY,
                super::clock::PUBLISH_TIME_ANCHORED.to_string(),
            ),
        ],
    );
    record(&mut out, OP_METADATA, &body);
    let metadata_length = out.len() as u64 - metadata_offset;
    (
        out,
        TailStats {
            metadata_offset,
            metadata_length,
            drop_schema_pad,
            profile,
        },
    )
}

/// The tail that finalizes a segment whose data ends at `data_end`: DataEnd, summary, summary
/// offsets, footer and magic. `chunks` must be every chunk written, in any order. With `direct`
/// the data ends aligned; the writer writes the tail zero-filled to a multiple of ALIGN and
/// then cuts the file back to the tail's end.
pub fn encode_segment_tail(
    data_end: u64,
    chunks: &[ChunkIndexEntry],
    streams: &[StreamInfo],
    head: &TailStats,
    direct: bool,
) -> Vec<u8> {
    encode_tail(data_end, chunks, streams, head, &[], direct)
}

/// [`encode_segment_tail`] with `extra` Metadata records first (before DataEnd, in the data
/// section), each indexed in the summary's MetadataIndex after the head's.
pub fn encode_tail(
    data_end: u64,
    chunks: &[ChunkIndexEntry],
    streams: &[StreamInfo],
    head: &TailStats,
    extra: &[TailMetadata],
    direct: bool,
) -> Vec<u8> {
    let mut chunks: Vec<&ChunkIndexEntry> = chunks.iter().collect();
    chunks.sort_by_key(|c| c.chunk_start_offset);

    let mut out = Vec::new();
    let indexed = metadata_records(&mut out, data_end, head, extra);
    let mut summary = Vec::new();
    let mut groups: Vec<(u8, u64, u64)> = Vec::new();
    let mut group = |summary: &mut Vec<u8>, opcode: u8, f: &mut dyn FnMut(&mut Vec<u8>)| {
        let start = summary.len() as u64;
        f(summary);
        groups.push((opcode, start, summary.len() as u64 - start));
    };
    group(&mut summary, OP_SCHEMA, &mut |s| {
        schema_records(s, streams, head.drop_schema_pad, head.profile)
    });
    group(&mut summary, OP_CHANNEL, &mut |s| {
        channel_records(s, streams, head.profile)
    });
    group(&mut summary, OP_STATISTICS, &mut |s| {
        statistics_record(s, &chunks, streams, indexed.len())
    });
    if !chunks.is_empty() {
        group(&mut summary, OP_CHUNK_INDEX, &mut |s| {
            for c in &chunks {
                chunk_index_record(s, c);
            }
        });
    }
    group(&mut summary, OP_METADATA_INDEX, &mut |s| {
        for (offset, length, name) in &indexed {
            let mut body = Vec::new();
            body.u64(*offset);
            body.u64(*length);
            body.str(name);
            record(s, OP_METADATA_INDEX, &body);
        }
    });

    debug_assert!(!direct || data_end.is_multiple_of(ALIGN as u64));
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
    out
}

/// Writes the `extra` Metadata records of a tail starting at file offset `data_end`; returns
/// what the MetadataIndex lists: (offset, length, name) of the head's record and of these.
fn metadata_records(
    out: &mut Vec<u8>,
    data_end: u64,
    head: &TailStats,
    extra: &[TailMetadata],
) -> Vec<(u64, u64, String)> {
    let mut indexed = vec![(
        head.metadata_offset,
        head.metadata_length,
        METADATA_NAME.to_string(),
    )];
    for m in extra {
        let at = out.len();
        let mut body = Vec::new();
        body.str(&m.name);
        let entries: Vec<(&str, String)> = m
            .entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        string_map(&mut body, &entries);
        record(out, OP_METADATA, &body);
        indexed.push((
            data_end + at as u64,
            (out.len() - at) as u64,
            m.name.clone(),
        ));
    }
    indexed
}

/// The Statistics record of a segment holding `chunks` (message counts per channel, from
/// the chunks' indexes).
fn statistics_record(
    s: &mut Vec<u8>,
    chunks: &[&ChunkIndexEntry],
    streams: &[StreamInfo],
    metadata: usize,
) {
    // Channel ids run 1..=streams + 1 (the drop channel last).
    let mut counts = vec![0u64; streams.len() + 1];
    let (mut start, mut end) = (u64::MAX, 0u64);
    for c in chunks {
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
    body.u32(metadata as u32);
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
}

/// The Chunk Index record of one chunk.
fn chunk_index_record(s: &mut Vec<u8>, c: &ChunkIndexEntry) {
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
    body.str(c.compression);
    body.u64(c.compressed_size);
    body.u64(c.uncompressed_size);
    record(s, OP_CHUNK_INDEX, &body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_of_any_length_but_one_is_whole_unknown_protobuf_fields() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Nothing {}
        for len in (0..=20_000).filter(|n| *n != 1) {
            let mut buf = vec![0xffu8; len];
            put::write_slack(&mut buf);
            // Our decoder and prost skip it whole as unknown fields.
            let img = decode_raw_image(&buf).unwrap_or_else(|e| panic!("{len}: {e}"));
            assert!(img.data.is_empty(), "{len}");
            <Nothing as prost::Message>::decode(&buf[..]).unwrap();
            // At most two fields, all field 15, content zero.
            let mut c = crate::segment::decode::Cur::new(&buf);
            let mut fields = 0;
            while c.pos < len {
                assert_eq!(c.varint().unwrap(), u64::from(put::SLACK_KEY), "{len}");
                let n = c.varint().unwrap() as usize;
                assert!(c.take(n).unwrap().iter().all(|b| *b == 0), "{len}");
                fields += 1;
            }
            assert!(fields <= 2, "{len}: {fields} fields");
        }
        for len in [0, 1, 4095, 4096, 4097, 8191] {
            let n = put::slack_len(len);
            assert_eq!((len + n) % ALIGN, 0);
            assert_ne!(n, 1);
        }
    }

    #[test]
    fn tail_metadata_records_are_in_the_data_section_and_indexed() {
        let meta = SegmentMeta {
            recording_id: "r".into(),
            segment_id: 0,
            streams: vec![StreamInfo::depth("/d", "cam", 4, 4)],
        };
        for direct in [false, true] {
            let (mut file, head) = encode_head(&meta, Profile::Foxglove, direct);
            let extra = [TailMetadata {
                name: "framerec.clock".into(),
                entries: vec![("anchor_ns".into(), "42".into())],
            }];
            let tail = encode_tail(file.len() as u64, &[], &meta.streams, &head, &extra, direct);
            file.extend_from_slice(&tail);
            let summary = mcap::Summary::read(&file).unwrap().unwrap();
            let names: Vec<&str> = summary
                .metadata_indexes
                .iter()
                .map(|m| m.name.as_str())
                .collect();
            assert_eq!(names, [METADATA_NAME, "framerec.clock"]);
            let clock = mcap::read::metadata(&file, &summary.metadata_indexes[1]).unwrap();
            assert_eq!(clock.metadata["anchor_ns"], "42");
            assert_eq!(summary.stats.unwrap().metadata_count, 2);
            let c = parse_segment(&file);
            assert!(
                c.finalized && c.damage.is_empty(),
                "{direct}: {:?}",
                c.damage
            );
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
