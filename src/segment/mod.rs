//! The recording format: MCAP segment files, encoded and decoded as pure code on byte slices.
//!
//! Encoding does no I/O: the writer hands this module frame buffers and file offsets and gets
//! back the byte spans to write. Decoding reads through a [`Source`]: a byte slice (tests,
//! fuzzing) or a [`FileSource`] that `verify`, `info`, `export`, `recover` and the resume point
//! read a record at a time, so a recording of any size is read in bounded memory (one chunk
//! plus constant windows).
//!
//! # On-disk layout of one segment (`{segment_id:016}.mcap`)
//!
//! ```text
//! Segment {
//!     magic:      b"\x89MCAP0\r\n",
//!     header:     Header { profile: "" ("ros2" in the ros2 profile, see [`ros2`]),
//!                          library: "framerec <version>" },
//!     schemas:    Schema { 1: "foxglove.RawImage" (protobuf), 2: "framerec.Drop" (jsonschema,
//!                          O_DIRECT: spaces after its JSON make the head ALIGN-sized),
//!                          [3: "framerec.Accelerometer" (protobuf), with an accel stream] },
//!     channels:   Channel { i + 1: stream i of the stream table (protobuf), for each stream;
//!                           N + 1: "/framerec/drops" (json), N = number of streams },
//!     metadata:   Metadata { "framerec": recording and segment ids, library version },
//!     data: [
//!         Chunk { Message* } MessageIndex*       // one per write (O_DIRECT: per frame)
//!     ]*,
//!     tail_meta:  Metadata*,                  // written at close ([`TailMetadata`]): the
//!                                             // ros2 profile's "rosbag2" record, ...
//!     data_end:   DataEnd { data_section_crc: 0 },
//!     summary:    Schema* Channel* Statistics ChunkIndex* MetadataIndex+ // head's, tail's
//!     offsets:    SummaryOffset*,
//!     footer:     Footer { summary_start, summary_offset_start, summary_crc },
//!     magic:      b"\x89MCAP0\r\n",
//! }
//! ```
//!
//! With O_DIRECT every write is ALIGN-aligned in the file and in memory and a whole number of
//! ALIGN blocks; the slack that takes is inside records the spec defines, so readers do not warn:
//!
//! ```text
//! DirectFrameChunk {                        // starts at the frame buffer's aligned headroom
//!     Chunk { Message { header, data: ProtoFields {
//!         slack: field 15 (length-delimited),     // fills the headroom
//!         fields before the payload,
//!         payload field (key, length, the frame buffer's payload written in place),
//!         slack: field 15,                        // its message index ends aligned
//!     } } },
//!     MessageIndex,
//! }
//! DirectDropChunk { Chunk { Message* }, MessageIndex }  // spaces after the last JSON
//! Tail { DataEnd .. magic }, zero-filled to ALIGN when written, then the file is cut back
//! ```
//!
//! # Invariants
//! - Channels are assigned from the recording's stream table when it starts: stream `i` is
//!   channel `i + 1` (a depth-only recording has v1's ids: depth 1, drops 2). Each stream
//!   channel's metadata names its `stream` and `frame_id` (images also `encoding`, `width`,
//!   `height`); readers learn a channel's role from its schema name, not its id.
//! - Chunks are uncompressed and carry the CRC-32 of their records; a chunk holds either frames
//!   (of any streams, in receive order, one message index per channel after it) or drop
//!   notices, never both.
//! - A frame message's MCAP `sequence` is the frame's [`FrameSeq`](crate::frame::FrameSeq) in its
//!   stream (low 32 bits), `log_time` its host realtime capture stamp, `publish_time` its device
//!   time anchored to host realtime at the stream's first frame of the run; each segment's tail
//!   records the anchoring offsets (see [`clock`]), so the raw device time can be taken back.
//! - Its data is a `foxglove.RawImage` (or, for the accelerometer, a `framerec.Accelerometer`,
//!   see [`accel`]) whose last field is the payload (followed only by slack with O_DIRECT), so
//!   the payload is written straight from the frame buffer.
//! - Every frame the receiver accepted and did not write is named, by stream (its topic),
//!   sequence range and reason, in a message on the drop channel of some segment of the
//!   recording.
//! - Slack fields (protobuf field 15, no schema declares it) hold zero bytes and mean nothing;
//!   the chunk's CRC and lengths cover them. Files written before carry private padding records
//!   (opcode [`OP_PADDING`]) between top-level records instead; decoding still skips them.
//! - A segment without footer and trailing magic is unfinished (the recorder crashed or is
//!   still writing it).
//! - The ros2 profile ([`ros2`]) keeps every id, chunk and index of this layout; only the
//!   schemas (`ros2msg`), the message encoding (`cdr`) and the header's profile differ, and it
//!   is never written with O_DIRECT.

pub mod accel;
pub mod clock;
mod crc_range;
mod decode;
mod encode;
mod recover;
pub mod ros2;
mod schema;
mod source;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_streams;
mod verify;

pub use decode::{
    AccelRef, Bounded, ChunkDigest, ChunkInfo, DamagedChunk, DecodeError, DropNotice, MAX_DROPS,
    MAX_LISTED, MAX_RECORD_BYTES, MAX_RUNS, MessageRef, RawImageRef, SegmentContents, SeqRun,
    SeqRuns, StreamContents, StreamKind, SummaryInfo, V1_STREAM_NAME, Visit, decode_accel,
    decode_raw_image, has_intact_chunk, parse_segment, parse_source, scan_head, scan_source,
    segment_chunks, segment_messages, source_has_intact_chunk,
};
pub use encode::{
    BatchLayout, ChunkIndexEntry, Codec, CompressedChunk, DropRange, MAX_FRAMES_PER_CHUNK,
    MAX_STREAMS, SegmentMeta, TailMetadata, TailStats, compress_chunk, drop_channel_id,
    encode_drop_chunk, encode_drops, encode_frame_batch, encode_frames, encode_head,
    encode_segment_head, encode_segment_tail, encode_tail, stream_channel_id,
};
pub use recover::{
    LostRanges, RecoverError, Recovered, RecoveredStream, recover_segment, recover_to, recoverable,
    subtract,
};
pub use schema::{accelerometer_descriptor_set, raw_image_descriptor_set};
pub use source::{FileSource, Source, WINDOW_BYTES};
pub use verify::{
    Problem, RecordingBudget, RecordingReport, SegmentReport, StreamReport, verify_file,
    verify_recording, verify_segment, verify_source,
};

/// Leading and trailing magic of an MCAP file (major version `0`).
pub const MAGIC: [u8; 8] = [0x89, b'M', b'C', b'A', b'P', 0x30, b'\r', b'\n'];

pub const OP_HEADER: u8 = 0x01;
pub const OP_FOOTER: u8 = 0x02;
pub const OP_SCHEMA: u8 = 0x03;
pub const OP_CHANNEL: u8 = 0x04;
pub const OP_MESSAGE: u8 = 0x05;
pub const OP_CHUNK: u8 = 0x06;
pub const OP_MESSAGE_INDEX: u8 = 0x07;
pub const OP_CHUNK_INDEX: u8 = 0x08;
pub const OP_STATISTICS: u8 = 0x0B;
pub const OP_METADATA: u8 = 0x0C;
pub const OP_METADATA_INDEX: u8 = 0x0D;
pub const OP_SUMMARY_OFFSET: u8 = 0x0E;
pub const OP_DATA_END: u8 = 0x0F;
/// The private padding record of files written before O_DIRECT slack moved into spec records:
/// content is zero bytes and means nothing. Never written now; skipped when read.
pub const OP_PADDING: u8 = 0x80;

/// Longest `frame_id` a stream may have: the message fields before a payload, which include
/// it, are built in a fixed scratch (512 bytes for protobuf, 1024 for a whole CDR Imu).
pub const MAX_FRAME_ID_BYTES: usize = 256;

/// Bytes of a record's opcode and length prefix.
pub const RECORD_PREFIX: usize = 9;

pub const DEPTH_SCHEMA_ID: u16 = 1;
pub const DROP_SCHEMA_ID: u16 = 2;
/// Written only when the recording has an accelerometer stream.
pub const ACCEL_SCHEMA_ID: u16 = 3;
pub const DEPTH_CHANNEL_ID: u16 = 1;
pub const DROP_CHANNEL_ID: u16 = 2;
pub const DEPTH_SCHEMA_NAME: &str = "foxglove.RawImage";
pub const DROP_SCHEMA_NAME: &str = "framerec.Drop";
pub const DROP_TOPIC: &str = "/framerec/drops";
/// Name of the metadata record framerec writes at the start of every segment.
pub const METADATA_NAME: &str = "framerec";

/// File name of segment `id` inside a recording directory; names sort in recording order.
pub fn segment_file_name(id: u64) -> String {
    format!("{id:016}.mcap")
}

/// The segment id of a file name made by [`segment_file_name`], if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".mcap")?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}
