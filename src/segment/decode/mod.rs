//! Decoding: a scan of a segment's bytes into its messages, drop notices, chunks and summary,
//! noting every damage it meets with its offset. Never panics, never allocates more than the
//! input justifies.
//!
//! The scan reads through a [`Source`]: front to back, one record at a time (only the bodies
//! of the records it parses, each into one reused buffer, at most [`MAX_RECORD_BYTES`]), and
//! over damage in windows of [`Source::window`] bytes, with one
//! [`RangeCrc`](super::crc_range::RangeCrc) pass for the candidate chunks' CRCs. The same code
//! serves a slice (zero-copy) and a file, so both find exactly the same.
//!
//! A scan learns each channel's role from the name of its schema (`framerec.Drop`: the drop
//! notices; `foxglove.RawImage`: an image stream; `framerec.Accelerometer`: an accelerometer
//! stream) and a stream's name from the channel's `stream` metadata (`depth` when absent, as in
//! format v1), never from channel ids. It keeps runs of frames and drop notices per stream
//! ([`StreamContents`]), a notice going to the stream whose topic it names, within
//! [`MAX_RUNS`] runs and [`MAX_DROPS`] notices over all streams.
//!
//! Any valid MCAP file is read, not only framerec's: schema and channel records inside chunks
//! as well as outside, messages outside chunks (unchunked files), attachments, zstd and lz4
//! chunks (decompressed by the `mcap` crate's sans-IO linear reader once their declared
//! `uncompressed_size` is checked against [`MAX_RECORD_BYTES`]). A channel whose schema is none
//! of framerec's is another writer's: its messages are counted per channel
//! ([`SegmentContents::channel_messages`], [`SegmentContents::channel_times`]) and not read.
//! The header's library tells framerec's files from others ([`SegmentContents::is_framerec`]).
//! Message index records are checked against the chunk before them, and a nonzero data section
//! CRC against the data section.
//!
//! Layout: `fields` reads records and messages, `runs` holds the bounded lists and runs,
//! `streams` the per-stream bookkeeping, `resync` finds intact chunks after damage, `scan`
//! walks a segment, `chunk` reads each chunk it meets and `compressed` decompresses it.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::frame::{DropReason, FrameSeq};

use super::source::Source;
use super::*;

mod chunk;
mod compressed;
mod fields;
mod resync;
mod ros2;
mod runs;
mod scan;
mod streams;
mod tail;

pub use fields::{AccelRef, RawImageRef, decode_accel, decode_raw_image};
pub(crate) use fields::{
    Cur, R, Rec, attachment, channel, parse_drop, read_record, schema, string_map,
};
pub(crate) use resync::Resync;
pub use runs::{Bounded, MAX_DROPS, MAX_LISTED, MAX_RUNS, SeqRun, SeqRuns};
pub(crate) use scan::{CHUNK_FIXED, clean_chunk_contents};
pub use scan::{
    MAX_RECORD_BYTES, has_intact_chunk, parse_segment, parse_source, scan_head, scan_source,
    segment_chunks, segment_messages, source_has_intact_chunk,
};
pub use streams::{StreamContents, StreamKind, V1_STREAM_NAME};
pub use tail::indexed_metadata;

/// What is wrong at a place in a segment file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("file does not start with the MCAP magic")]
    BadMagic,
    #[error(
        "record at offset {offset} (opcode {opcode:#04x}) needs {needed} bytes, file has {available}"
    )]
    Truncated {
        offset: u64,
        opcode: u8,
        needed: u64,
        available: u64,
    },
    #[error("chunk at offset {offset}: CRC saved {saved:#010x}, calculated {calculated:#010x}")]
    BadChunkCrc {
        offset: u64,
        saved: u32,
        calculated: u32,
    },
    #[error("record at offset {offset} (opcode {opcode:#04x}) is malformed: {what}")]
    Malformed {
        offset: u64,
        opcode: u8,
        what: &'static str,
    },
    #[error(
        "chunk at offset {offset} uses compression {compression:?}, which framerec does not write"
    )]
    UnsupportedCompression { offset: u64, compression: String },
    #[error("message at offset {offset} is on channel {channel}, which no channel record defines")]
    UnknownChannel { offset: u64, channel: u16 },
    #[error(
        "drop notice at offset {offset} names stream {topic:?}, which no channel of the segment has"
    )]
    NoticeForUnknownStream { offset: u64, topic: String },
    #[error(
        "data end at offset {offset}: data section CRC saved {saved:#010x}, calculated {calculated:#010x}"
    )]
    BadDataCrc {
        offset: u64,
        saved: u32,
        calculated: u32,
    },
    #[error("no footer: the segment is unfinished (recorder crashed or still writing)")]
    Unfinished,
    #[error(
        "footer at offset {offset}: summary CRC saved {saved:#010x}, calculated {calculated:#010x}"
    )]
    BadSummaryCrc {
        offset: u64,
        saved: u32,
        calculated: u32,
    },
}

/// A message found in a chunk. Offsets are into the segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub channel: u16,
    /// Its stream: an index into [`SegmentContents::streams`].
    pub stream: usize,
    pub kind: StreamKind,
    /// MCAP `sequence`: the low 32 bits of the frame sequence number.
    pub sequence: u32,
    pub log_time: u64,
    pub publish_time: u64,
    pub data: Range<usize>,
    pub chunk_offset: u64,
}

/// A drop notice read from the drop channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropNotice {
    pub first: FrameSeq,
    pub last: FrameSeq,
    pub reason: NoticeReason,
    pub log_time: u64,
}

impl DropNotice {
    pub fn reason(&self) -> Option<DropReason> {
        match self.reason {
            NoticeReason::Known(r) => Some(r),
            NoticeReason::Other(_) => None,
        }
    }
}

/// How long a reason framerec does not know (another writer's) may be: longer names are cut
/// at a character boundary.
pub const MAX_REASON_BYTES: usize = 64;

/// A drop notice's reason, small: one of framerec's as its [`DropReason`] (no allocation),
/// another writer's name boxed, at most [`MAX_REASON_BYTES`]. Ordered as its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeReason {
    Known(DropReason),
    Other(Box<str>),
}

impl NoticeReason {
    pub fn from_name(name: &str) -> NoticeReason {
        match DropReason::from_name(name) {
            Some(r) => NoticeReason::Known(r),
            None => {
                let mut end = name.len().min(MAX_REASON_BYTES);
                while !name.is_char_boundary(end) {
                    end -= 1;
                }
                NoticeReason::Other(name[..end].into())
            }
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            NoticeReason::Known(r) => r.as_str(),
            NoticeReason::Other(name) => name,
        }
    }
}

impl AsRef<str> for NoticeReason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Ord for NoticeReason {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for NoticeReason {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A chunk found in the data section, as a scan meets it (handed to [`Visit::chunk`]; a scan
/// keeps only counts and a digest of its chunks, see [`SegmentContents`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkInfo {
    pub offset: u64,
    pub length: u64,
    pub start_time: u64,
    pub end_time: u64,
    pub crc_ok: bool,
    pub messages: usize,
    /// Sequence numbers of the stream messages the chunk holds, of any stream (read even when
    /// its CRC fails, so a report can name what the damage took).
    pub sequences: Vec<u32>,
    /// (channel, log_time, offset in the chunk's records) of every message, when intact: what
    /// a message index record holds.
    pub index: Vec<(u16, u64, u64)>,
    /// The chunk's compression: `""`, `"zstd"` or `"lz4"`.
    pub compression: &'static str,
    /// Bytes of its records, uncompressed.
    pub uncompressed_size: u64,
}

/// How many reasons [`SegmentContents::dropped_not_kept`] names (a crafted file could make
/// one per notice).
pub const MAX_REASONS: usize = 32;
/// The reason the frames of notices past [`MAX_DROPS`] with reasons past [`MAX_REASONS`] are
/// counted under.
pub const OTHER_REASONS: &str = "other reasons";

/// A set of chunks (offset, length) as a count and an order-independent digest: equal sets
/// give equal digests, so the chunks a scan found and those the summary indexes compare in
/// constant memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkDigest {
    pub count: u64,
    sum: u64,
}

impl ChunkDigest {
    pub fn add(&mut self, offset: u64, length: u64) {
        // splitmix64 of each field: a sum of well-mixed values, so a changed pair shows.
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        self.count += 1;
        self.sum = self.sum.wrapping_add(mix(mix(offset) ^ length));
    }
}

/// What a chunk whose CRC fails claims to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedChunk {
    pub offset: u64,
    /// The stream the frames belong to: an index into [`SegmentContents::streams`].
    pub stream: usize,
    pub first: u64,
    pub last: u64,
    pub count: usize,
}

/// The parts of the summary section verify compares against the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryInfo {
    /// The chunks the chunk index records name.
    pub chunk_indexes: ChunkDigest,
    pub message_count: Option<u64>,
    pub chunk_count: Option<u32>,
    pub channel_message_counts: BTreeMap<u16, u64>,
}

/// Everything a scan of one segment found, in memory independent of its size: frames as runs
/// of sequence numbers, counts and digests of chunks, bounded lists of damage. What a caller
/// needs frame by frame or chunk by chunk it gets from a [`Visit`] while the scan runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentContents {
    /// The streams, one per channel whose role is a stream (not the drop channel), in the
    /// order their channel records came: what each holds.
    pub streams: Vec<StreamContents>,
    /// The drop channel's id, once its channel record is read.
    pub drop_channel: Option<u16>,
    /// channel id -> index in `streams`.
    by_channel: BTreeMap<u16, usize>,
    /// topic -> index in `streams` (the first stream of that topic).
    by_topic: BTreeMap<String, usize>,
    /// Runs of frames kept over all streams (at most [`MAX_RUNS`]).
    runs_kept: usize,
    /// Drop notices kept over all streams (at most [`MAX_DROPS`]).
    drops_kept: usize,
    /// Messages per channel (the drop channel: drop notices).
    pub channel_messages: BTreeMap<u16, u64>,
    /// Earliest and latest log time of the messages on each channel that is neither a stream
    /// nor the drop channel (another writer's channels): what `info` lists for them.
    pub channel_times: BTreeMap<u16, (u64, u64)>,
    /// Earliest and latest log time of the messages other than drop notices.
    pub start_time_ns: Option<u64>,
    pub end_time_ns: Option<u64>,
    /// schema id -> schema name, from the head's schema records.
    pub schemas: BTreeMap<u16, String>,
    /// Chunks found (CRC checked or not) and their digest.
    pub chunks: ChunkDigest,
    /// Chunks whose CRC fails.
    pub bad_crc_chunks: u64,
    /// Those of them that claim to hold frames, with what they claim.
    pub damaged_chunks: Bounded<DamagedChunk>,
    /// channel id -> (topic, message encoding)
    pub channels: BTreeMap<u16, (String, String)>,
    /// channel id -> the channel's metadata (framerec: width, height, encoding).
    pub channel_metadata: BTreeMap<u16, BTreeMap<String, String>>,
    pub metadata: BTreeMap<String, String>,
    /// Offset and length of framerec's metadata record in the head.
    pub metadata_record: Option<(u64, u64)>,
    /// Offset of the first record after the head (header, schemas, channels, metadata).
    pub head_end: u64,
    /// Byte ranges skipped as damaged while resyncing to the next intact chunk.
    pub skipped: Bounded<Range<u64>>,
    /// Bytes in all the skipped ranges.
    pub skipped_bytes: u64,
    pub summary: Option<SummaryInfo>,
    /// Offset one past the last intact record of the data section.
    pub data_end: u64,
    /// Footer and trailing magic are present and consistent.
    pub finalized: bool,
    /// The header's `library` and `profile` (framerec's library is `framerec <version>`).
    pub library: String,
    pub profile: String,
    pub damage: Bounded<DecodeError>,
}

impl SegmentContents {
    /// Messages other than drop notices.
    pub fn messages(&self) -> u64 {
        self.channel_messages
            .iter()
            .filter(|(id, _)| Some(**id) != self.drop_channel)
            .map(|(_, n)| n)
            .sum()
    }

    /// Messages on stream channels: frames.
    pub fn stream_messages(&self) -> u64 {
        self.streams
            .iter()
            .filter_map(|s| self.channel_messages.get(&s.channel))
            .sum()
    }

    /// Whether framerec wrote this segment: its header names framerec as the library, or
    /// (the header damaged) it has framerec's metadata record or drop channel. framerec's
    /// own checks (sequence continuity against drop notices) apply only then.
    pub fn is_framerec(&self) -> bool {
        self.library.starts_with("framerec")
            || self.metadata_record.is_some()
            || self.drop_channel.is_some()
    }

    /// Whether another writer made this segment: nothing says it is framerec's, and its
    /// intact header names another library or it defines channels. (A segment with neither,
    /// its head gone, is taken for framerec's.)
    pub fn is_foreign(&self) -> bool {
        !self.is_framerec() && (!self.library.is_empty() || !self.channels.is_empty())
    }

    /// Whether some channel is neither a stream nor the drop channel: another writer's
    /// channel, which framerec never writes.
    pub fn has_other_channels(&self) -> bool {
        self.channels
            .keys()
            .any(|id| self.stream_index(*id).is_none() && Some(*id) != self.drop_channel)
    }

    /// Drop notices read (before merging).
    pub fn drop_messages(&self) -> u64 {
        self.drop_channel
            .and_then(|id| self.channel_messages.get(&id))
            .copied()
            .unwrap_or(0)
    }

    /// Whether the scan kept every run of frames and every drop notice of every stream: what
    /// a continuity check needs.
    pub fn complete(&self) -> bool {
        self.streams.iter().all(StreamContents::complete)
    }

    /// The stream named `name`, if the segment has it.
    pub fn stream(&self, name: &str) -> Option<&StreamContents> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Keeps the counts, frees the runs and the notices of every stream (a recording too
    /// fragmented to check: see `verify::RecordingBudget`).
    pub fn forget_runs_and_notices(&mut self) {
        for s in &mut self.streams {
            s.forget();
        }
        self.runs_kept = 0;
        self.drops_kept = 0;
    }

    fn skip(&mut self, r: Range<u64>) {
        self.skipped_bytes += r.end - r.start;
        self.skipped.push(r);
    }
}

/// What a scan hands its caller as it goes, while the record is in memory. Called on the
/// scanning thread; a visitor that fails keeps its error and returns it after the scan.
pub trait Visit {
    /// A message on a defined channel other than the drop channel, with its data.
    fn message(&mut self, _m: &MessageRef, _data: &[u8]) {}
    /// A chunk whose records were read (its CRC checked or not), with its record's body.
    fn chunk(&mut self, _c: &ChunkInfo, _body: &[u8]) {}
    /// A record outside chunks that the scan read whole and found intact, with its body: a
    /// schema, channel, metadata, message (on a defined channel) or attachment record of the
    /// data section (another writer's recover copies these).
    fn record(&mut self, _offset: u64, _opcode: u8, _body: &[u8]) {}
}

/// A [`Visit`] that sees messages only.
struct Messages<'a>(&'a mut dyn FnMut(&MessageRef, &[u8]));

impl Visit for Messages<'_> {
    fn message(&mut self, m: &MessageRef, data: &[u8]) {
        (self.0)(m, data)
    }
}
