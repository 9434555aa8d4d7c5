//! Decoding: a scan of a segment's bytes into its messages, drop notices, chunks and summary,
//! noting every damage it meets with its offset. Never panics, never allocates more than the
//! input justifies.
//!
//! The scan reads through a [`Source`]: front to back, one record at a time (only the bodies
//! of the records it parses, each into one reused buffer, at most [`MAX_RECORD_BYTES`]), and
//! over damage in windows of [`Source::window`] bytes, with one [`RangeCrc`] pass for the
//! candidate chunks' CRCs. The same code serves a slice (zero-copy) and a file, so both find
//! exactly the same.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;

use bytes::BytesMut;

use crate::frame::{DropReason, FrameSeq};

use super::crc_range::RangeCrc;
use super::source::{Source, hash_range};
use super::*;

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
    /// Sequence numbers of the depth messages the chunk holds (read even when its CRC fails,
    /// so a report can name what the damage took).
    pub sequences: Vec<u32>,
    /// (channel, log_time, offset in the chunk's records) of every message, when intact: what
    /// a message index record holds.
    pub index: Vec<(u16, u64, u64)>,
}

/// How many entries a bounded list keeps; the rest are only counted.
pub const MAX_LISTED: usize = 100;

/// The first [`MAX_LISTED`] items pushed, and a count of the others: what a scan of a crafted
/// file with a million damaged chunks keeps of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded<T> {
    items: Vec<T>,
    more: u64,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            items: Vec::new(),
            more: 0,
        }
    }
}

impl<T> Bounded<T> {
    pub fn push(&mut self, item: T) {
        if self.items.len() < MAX_LISTED {
            self.items.push(item);
        } else {
            self.more += 1;
        }
    }
    /// The items kept, in the order pushed.
    pub fn items(&self) -> &[T] {
        &self.items
    }
    /// How many items were pushed but not kept.
    pub fn more(&self) -> u64 {
        self.more
    }
    /// How many items were pushed.
    pub fn total(&self) -> u64 {
        self.items.len() as u64 + self.more
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<T: PartialEq> Bounded<T> {
    /// Whether `item` is among the items kept.
    pub fn contains(&self, item: &T) -> bool {
        self.items.contains(item)
    }
}

impl<'a, T> IntoIterator for &'a Bounded<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// Frames written one after another (in file order) with consecutive sequence numbers and log
/// times that never go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRun {
    pub first: u64,
    pub last: u64,
    /// Log time of the first frame.
    pub first_time: u64,
    /// Log time of the last frame.
    pub last_time: u64,
}

impl SeqRun {
    pub fn frames(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// How many runs of frames a scan of one segment keeps ([`SeqRuns`]), and how many drop
/// notices ([`SegmentContents::drops`]): past them it only counts (guarantee 6: a crafted file
/// whose sequence numbers alternate makes one run per frame). 2^18 runs (32 bytes each) and
/// 2^18 notices keep a segment's scan under ~30 MiB.
pub const MAX_RUNS: usize = 1 << 18;
/// See [`MAX_RUNS`].
pub const MAX_DROPS: usize = 1 << 18;

/// The sequence numbers of written frames as runs, merged as they come: a frame extends the
/// last run when its number is one above the run's last and its log time is not before the
/// run's last; anything else (a gap, a number not above the last: a duplicate or a frame out
/// of order, a time going back) starts a new run. A recording is one run per segment but for
/// its gaps, so memory follows the gaps, not the frames; at most [`MAX_RUNS`] runs are kept,
/// the frames after them only counted ([`SeqRuns::not_kept`]), their lowest and highest number
/// still exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRuns {
    runs: Vec<SeqRun>,
    frames: u64,
    min: Option<u64>,
    max: Option<u64>,
    not_kept: u64,
}

impl SeqRuns {
    pub fn push(&mut self, seq: u64, log_time: u64) {
        self.frames += 1;
        self.min = Some(self.min.map_or(seq, |m| m.min(seq)));
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        if self.not_kept > 0 {
            self.not_kept += 1;
            return;
        }
        if let Some(r) = self.runs.last_mut()
            && r.last.checked_add(1) == Some(seq)
            && log_time >= r.last_time
        {
            r.last = seq;
            r.last_time = log_time;
            return;
        }
        if self.runs.len() >= MAX_RUNS {
            self.not_kept = 1;
            return;
        }
        self.runs.push(SeqRun {
            first: seq,
            last: seq,
            first_time: log_time,
            last_time: log_time,
        });
    }
    /// The runs kept: all of them unless [`SeqRuns::not_kept`] is above 0.
    pub fn runs(&self) -> &[SeqRun] {
        &self.runs
    }
    pub fn into_runs(self) -> Vec<SeqRun> {
        self.runs
    }
    /// Frames pushed (a duplicate counts each time).
    pub fn frames(&self) -> u64 {
        self.frames
    }
    /// Frames pushed after [`MAX_RUNS`] runs were kept (or after [`SeqRuns::forget`]): in
    /// no run.
    pub fn not_kept(&self) -> u64 {
        self.not_kept
    }
    /// Keeps the counts, frees the runs: every frame is then one not kept.
    pub fn forget(&mut self) {
        self.not_kept = self.frames;
        self.runs = Vec::new();
    }
    pub fn min(&self) -> Option<u64> {
        self.min
    }
    pub fn max(&self) -> Option<u64> {
        self.max
    }
    /// Whether no frame was pushed.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }
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
    /// Sequence numbers of the messages on channels other than the drop channel.
    pub frames: SeqRuns,
    /// Messages per channel (the drop channel: drop notices).
    pub channel_messages: BTreeMap<u16, u64>,
    /// The first message other than a drop notice.
    pub first_message: Option<MessageRef>,
    /// Earliest and latest log time of those messages.
    pub start_time_ns: Option<u64>,
    pub end_time_ns: Option<u64>,
    /// Drop notices, a notice that continues the last one (same reason, next frame) merged
    /// into it; at most [`MAX_DROPS`] of them.
    pub drops: Vec<DropNotice>,
    /// Drop notices read after [`MAX_DROPS`] were kept: only counted, here.
    pub drops_not_kept: u64,
    /// Frames those notices name, by reason (at most [`MAX_REASONS`] reasons; others counted
    /// under [`OTHER_REASONS`]).
    pub dropped_not_kept: BTreeMap<String, u64>,
    /// The highest frame a drop notice names, kept or not.
    pub max_dropped: Option<u64>,
    /// The lowest frame a drop notice names, kept or not.
    pub min_dropped: Option<u64>,
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
    pub damage: Bounded<DecodeError>,
}

impl SegmentContents {
    /// Messages other than drop notices.
    pub fn messages(&self) -> u64 {
        self.channel_messages
            .iter()
            .filter(|(id, _)| **id != DROP_CHANNEL_ID)
            .map(|(_, n)| n)
            .sum()
    }

    /// Drop notices read (before merging).
    pub fn drop_messages(&self) -> u64 {
        self.channel_messages
            .get(&DROP_CHANNEL_ID)
            .copied()
            .unwrap_or(0)
    }

    fn message(&mut self, m: &MessageRef) {
        self.frames.push(m.sequence as u64, m.log_time);
        *self.channel_messages.entry(m.channel).or_insert(0) += 1;
        if self.first_message.is_none() {
            self.first_message = Some(m.clone());
        }
        self.start_time_ns = Some(self.start_time_ns.map_or(m.log_time, |t| t.min(m.log_time)));
        self.end_time_ns = Some(self.end_time_ns.map_or(m.log_time, |t| t.max(m.log_time)));
    }

    /// Whether the scan kept every run of frames and every drop notice: what a continuity
    /// check needs.
    pub fn complete(&self) -> bool {
        self.frames.not_kept() == 0 && self.drops_not_kept == 0
    }

    pub(super) fn drop_notice(&mut self, d: DropNotice) {
        *self.channel_messages.entry(DROP_CHANNEL_ID).or_insert(0) += 1;
        self.max_dropped = Some(self.max_dropped.map_or(d.last.0, |m| m.max(d.last.0)));
        self.min_dropped = Some(self.min_dropped.map_or(d.first.0, |m| m.min(d.first.0)));
        if self.drops_not_kept > 0 || self.drops.len() >= MAX_DROPS {
            self.drops_not_kept += 1;
            let key = if self.dropped_not_kept.contains_key(d.reason.as_str())
                || self.dropped_not_kept.len() < MAX_REASONS
            {
                d.reason.as_str().to_string()
            } else {
                OTHER_REASONS.to_string()
            };
            *self.dropped_not_kept.entry(key).or_insert(0) +=
                d.last.0.saturating_sub(d.first.0).saturating_add(1);
            return;
        }
        if let Some(last) = self.drops.last_mut()
            && last.reason == d.reason
            && last.last.0.checked_add(1) == Some(d.first.0)
        {
            last.last = d.last;
            return;
        }
        self.drops.push(d);
    }

    /// Keeps the counts, frees the runs and the notices (a recording too fragmented to check:
    /// see `verify::RecordingBudget`).
    pub fn forget_runs_and_notices(&mut self) {
        self.frames.forget();
        self.drops_not_kept += self.drops.len() as u64;
        self.drops = Vec::new();
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
}

/// A [`Visit`] that sees messages only.
struct Messages<'a>(&'a mut dyn FnMut(&MessageRef, &[u8]));

impl Visit for Messages<'_> {
    fn message(&mut self, m: &MessageRef, data: &[u8]) {
        (self.0)(m, data)
    }
}

/// A bounds-checked little-endian reader over one record's body.
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

type R<T> = Result<T, &'static str>;

impl<'a> Cur<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cur { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or("field runs past the record")?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or([0; 2]),
        ))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    fn bytes32(&mut self) -> R<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.bytes32()?).map_err(|_| "string is not UTF-8")
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }
    fn varint(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }
}

/// One record: opcode, body, and the offset of its opcode byte.
struct Rec<'a> {
    opcode: u8,
    offset: u64,
    body: &'a [u8],
}

/// Reads the record at `at`; `Err` when its length runs past the end.
fn read_record(bytes: &[u8], at: usize) -> Result<Rec<'_>, DecodeError> {
    let available = (bytes.len() - at) as u64;
    let opcode = bytes[at];
    if available < RECORD_PREFIX as u64 {
        return Err(DecodeError::Truncated {
            offset: at as u64,
            opcode,
            needed: RECORD_PREFIX as u64,
            available,
        });
    }
    let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap_or([0; 8]));
    let needed = len.saturating_add(RECORD_PREFIX as u64);
    if needed > available {
        return Err(DecodeError::Truncated {
            offset: at as u64,
            opcode,
            needed,
            available,
        });
    }
    let start = at + RECORD_PREFIX;
    Ok(Rec {
        opcode,
        offset: at as u64,
        body: &bytes[start..start + len as usize],
    })
}

/// The fields of a `foxglove.RawImage` that verify and export need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawImageRef<'a> {
    pub width: u32,
    pub height: u32,
    pub step: u32,
    pub encoding: &'a str,
    pub frame_id: &'a str,
    pub timestamp_ns: u64,
    pub data: &'a [u8],
}

/// Decodes a `foxglove.RawImage` protobuf message (any field order, unknown fields skipped).
pub fn decode_raw_image(msg: &[u8]) -> Result<RawImageRef<'_>, &'static str> {
    let mut c = Cur::new(msg);
    let mut img = RawImageRef {
        width: 0,
        height: 0,
        step: 0,
        encoding: "",
        frame_id: "",
        timestamp_ns: 0,
        data: &[],
    };
    while c.pos < msg.len() {
        let key = c.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                c.varint()?;
            }
            1 => {
                c.take(8)?;
            }
            5 => {
                let v = c.u32()?;
                match field {
                    2 => img.width = v,
                    3 => img.height = v,
                    5 => img.step = v,
                    _ => {}
                }
            }
            2 => {
                let n = usize::try_from(c.varint()?).map_err(|_| "length too large")?;
                let v = c.take(n)?;
                match field {
                    1 => {
                        let mut t = Cur::new(v);
                        let (mut secs, mut nanos) = (0u64, 0u64);
                        while t.pos < v.len() {
                            let k = t.varint()?;
                            match (k >> 3, k & 7) {
                                (1, 0) => secs = t.varint()?,
                                (2, 0) => nanos = t.varint()?,
                                (_, 0) => {
                                    t.varint()?;
                                }
                                _ => return Err("unexpected wire type in timestamp"),
                            }
                        }
                        img.timestamp_ns = secs.saturating_mul(1_000_000_000).saturating_add(nanos);
                    }
                    4 => img.encoding = std::str::from_utf8(v).map_err(|_| "encoding not UTF-8")?,
                    7 => img.frame_id = std::str::from_utf8(v).map_err(|_| "frame_id not UTF-8")?,
                    6 => img.data = v,
                    _ => {}
                }
            }
            _ => return Err("unsupported protobuf wire type"),
        }
    }
    Ok(img)
}

fn parse_drop(json: &[u8]) -> Option<DropNotice> {
    #[derive(serde::Deserialize)]
    struct Drop {
        reason: String,
        first_seq: u64,
        last_seq: u64,
    }
    let d: Drop = serde_json::from_slice(json).ok()?;
    if d.last_seq < d.first_seq {
        return None;
    }
    Some(DropNotice {
        first: FrameSeq(d.first_seq),
        last: FrameSeq(d.last_seq),
        reason: NoticeReason::from_name(&d.reason),
        log_time: 0,
    })
}

fn string_map(c: &mut Cur<'_>) -> R<BTreeMap<String, String>> {
    let body = c.bytes32()?;
    let mut m = Cur::new(body);
    let mut out = BTreeMap::new();
    while m.pos < body.len() {
        let k = m.str()?;
        let v = m.str()?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

type ChannelRecord = (u16, String, String, BTreeMap<String, String>);

fn channel(body: &[u8]) -> R<ChannelRecord> {
    let mut c = Cur::new(body);
    let id = c.u16()?;
    let _schema = c.u16()?;
    let topic = c.str()?.to_string();
    let encoding = c.str()?.to_string();
    let metadata = string_map(&mut c)?;
    Ok((id, topic, encoding, metadata))
}

/// Bytes of a chunk record before its records: prefix, times, sizes, CRC, compression, length.
const CHUNK_FIXED: usize = RECORD_PREFIX + 8 + 8 + 8 + 4 + 4 + 8;

/// The largest record body a scan reads into memory (a chunk holds at most one write, and a
/// frame is at most 8192 x 8192 x 2 bytes). A record that claims more is damage, not an
/// allocation.
pub const MAX_RECORD_BYTES: u64 = 256 << 20;

/// Finds intact chunks after damage. Candidates are tested cheapest first (opcode, framing,
/// lengths), and the CRC of a candidate's records comes from a [`RangeCrc`] built on the first
/// candidate that needs one: bounded work per candidate, so a scan over any input (even one
/// crafted to hold a fake chunk header every few bytes, each claiming the rest of the file) is
/// linear in its size. The source is read a window at a time.
struct Resync<'a, S: Source + ?Sized> {
    src: &'a S,
    crc: Option<RangeCrc<'a, S>>,
    window: BytesMut,
    fixed: BytesMut,
}

impl<'a, S: Source + ?Sized> Resync<'a, S> {
    fn new(src: &'a S) -> Resync<'a, S> {
        Resync {
            src,
            crc: None,
            window: BytesMut::new(),
            fixed: BytesMut::new(),
        }
    }

    /// The offset of the next intact chunk at or after `from`, if any.
    fn next(&mut self, from: u64) -> io::Result<Option<u64>> {
        let Resync {
            src,
            crc,
            window,
            fixed,
        } = self;
        let len = src.len();
        let mut at = from;
        while at < len {
            let to = len.min(at.saturating_add(src.window() as u64));
            let w = src.read(at..to, window)?;
            let mut i = 0;
            while let Some(p) = w[i..].iter().position(|b| *b == OP_CHUNK) {
                let candidate = at + (i + p) as u64;
                i += p + 1;
                if len - candidate < CHUNK_FIXED as u64 {
                    continue;
                }
                // A header that runs past the window is read on its own.
                let head = if candidate + CHUNK_FIXED as u64 <= to {
                    &w[i - 1..i - 1 + CHUNK_FIXED]
                } else {
                    src.read(candidate..candidate + CHUNK_FIXED as u64, fixed)?
                };
                if intact_chunk_at(head, candidate, len, |r| {
                    if crc.is_none() {
                        *crc = Some(RangeCrc::new(*src)?);
                    }
                    crc.as_ref().map_or(Ok(0), |c| c.crc(r))
                })? {
                    return Ok(Some(candidate));
                }
            }
            at = to;
        }
        Ok(None)
    }
}

/// True when a chunk record that checks out (framing, no compression, CRC) starts at `at` of a
/// source of `len` bytes; `head` is its first [`CHUNK_FIXED`] bytes, `hash` hashes a range.
fn intact_chunk_at(
    head: &[u8],
    at: u64,
    len: u64,
    hash: impl FnOnce(Range<u64>) -> io::Result<u32>,
) -> io::Result<bool> {
    if head.len() < CHUNK_FIXED || head[0] != OP_CHUNK {
        return Ok(false);
    }
    let le64 = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    let body_len = le64(1);
    if body_len.saturating_add(RECORD_PREFIX as u64) > len - at
        || body_len < (CHUNK_FIXED - RECORD_PREFIX) as u64
    {
        return Ok(false);
    }
    let b = RECORD_PREFIX;
    let crc = u32::from_le_bytes(head[b + 24..b + 28].try_into().unwrap_or([0; 4]));
    let compression_len = u32::from_le_bytes(head[b + 28..b + 32].try_into().unwrap_or([0; 4]));
    let records_len = body_len - (CHUNK_FIXED - RECORD_PREFIX) as u64;
    let start = at + CHUNK_FIXED as u64;
    Ok(compression_len == 0
        && le64(b + 32) == records_len
        && le64(b + 16) == records_len
        && crc != 0
        && hash(start..start + records_len)? == crc)
}

/// What the chunk record `record` holds when it parses cleanly on its own in a segment that
/// defines only framerec's depth and drop channels (what a rebuilt head defines); None when
/// it does not.
pub(super) fn clean_chunk_contents(record: &[u8]) -> Option<SegmentContents> {
    let rec = read_record(record, 0).ok()?;
    if rec.opcode != OP_CHUNK || RECORD_PREFIX + rec.body.len() != record.len() {
        return None;
    }
    let mut scratch = SegmentContents::default();
    scratch
        .channels
        .insert(DEPTH_CHANNEL_ID, (String::new(), String::new()));
    scratch
        .channels
        .insert(DROP_CHANNEL_ID, (String::new(), String::new()));
    let clean = scan_chunk(&rec, &mut scratch, &mut Messages(&mut |_, _| {})).is_ok()
        && scratch
            .channel_messages
            .keys()
            .all(|id| *id == DEPTH_CHANNEL_ID || *id == DROP_CHANNEL_ID);
    clean.then_some(scratch)
}

/// True when any intact chunk is left anywhere in `bytes`.
pub fn has_intact_chunk(bytes: &[u8]) -> bool {
    source_has_intact_chunk(bytes).unwrap_or(false)
}

/// True when any intact chunk is left anywhere in `src` (read a window at a time).
pub fn source_has_intact_chunk<S: Source + ?Sized>(src: &S) -> io::Result<bool> {
    Ok(Resync::new(src).next(0)?.is_some())
}

/// Scans a whole segment held in memory. Damage in the data section (a torn or zeroed record, a
/// chunk whose CRC fails) is noted and skipped: the scan resyncs at the next intact chunk.
pub fn parse_segment(bytes: &[u8]) -> SegmentContents {
    // Reads from a slice never fail: every range is checked against its length first.
    parse_source(bytes, &mut |_, _| {}).unwrap_or_default()
}

/// Every chunk a scan of `bytes` meets, in file order (for tests and tools that hold the
/// segment in memory anyway).
pub fn segment_chunks(bytes: &[u8]) -> Vec<ChunkInfo> {
    struct Chunks(Vec<ChunkInfo>);
    impl Visit for Chunks {
        fn chunk(&mut self, c: &ChunkInfo, _body: &[u8]) {
            self.0.push(c.clone());
        }
    }
    let mut v = Chunks(Vec::new());
    let _ = scan_source(bytes, &mut v);
    v.0
}

/// Every message other than a drop notice a scan of `bytes` meets, in file order.
pub fn segment_messages(bytes: &[u8]) -> Vec<MessageRef> {
    let mut out = Vec::new();
    let _ = parse_source(bytes, &mut |m, _| out.push(m.clone()));
    out
}

/// Scans a whole segment read from `src`, front to back, one record at a time: the body of a
/// record it parses (a chunk, a channel, a summary record) is read into one buffer that is
/// reused, and the bodies of the others are skipped unread, so memory is bounded by the
/// largest record ([`MAX_RECORD_BYTES`]) plus constant windows, whatever the size of the file.
/// `visit` sees each message other than a drop notice (as counted in
/// [`SegmentContents::frames`]) with its data
/// while its chunk is in memory. Finds the same as [`parse_segment`] on the same bytes; an
/// `Err` is a failed read, never damage.
pub fn parse_source<S: Source + ?Sized>(
    src: &S,
    visit: &mut dyn FnMut(&MessageRef, &[u8]),
) -> io::Result<SegmentContents> {
    scan_source(src, &mut Messages(visit))
}

/// [`parse_source`] with a visitor that also sees every chunk as it is read (recover copies
/// the intact ones from there).
pub fn scan_source<S: Source + ?Sized>(
    src: &S,
    visit: &mut dyn Visit,
) -> io::Result<SegmentContents> {
    let len = src.len();
    let mut out = SegmentContents::default();
    let mut body_buf = BytesMut::new();
    let mut small = BytesMut::new();
    if len < MAGIC.len() as u64 || src.read(0..MAGIC.len() as u64, &mut small)? != MAGIC {
        out.damage.push(DecodeError::BadMagic);
        return Ok(out);
    }
    let mut at = MAGIC.len() as u64;
    let mut in_head = true;
    let mut in_summary = false;
    let mut summary = SummaryInfo::default();
    out.data_end = at;
    out.head_end = at;
    let mut scan = Resync::new(src);
    loop {
        if at >= len {
            out.damage.push(DecodeError::Unfinished);
            break;
        }
        let (opcode, body_len) = match record_head(src, at, &mut small)? {
            Ok((opcode, _)) if !in_summary && is_garbage(opcode) => {
                // Zeroed or foreign bytes where a record should start.
                out.damage.push(DecodeError::Malformed {
                    offset: at,
                    opcode,
                    what: "not a record framerec writes in the data section",
                });
                match skip_damage(&mut scan, at, &mut out)? {
                    Some(next) => {
                        at = next;
                        continue;
                    }
                    None => break,
                }
            }
            Ok(head) => head,
            Err(e) => {
                out.damage.push(e);
                if in_summary {
                    break;
                }
                match skip_damage(&mut scan, at, &mut out)? {
                    Some(next) => {
                        at = next;
                        continue;
                    }
                    None => break,
                }
            }
        };
        let next = at + RECORD_PREFIX as u64 + body_len;
        let parsed = match opcode {
            OP_CHANNEL | OP_METADATA => !in_summary,
            OP_CHUNK | OP_CHUNK_INDEX | OP_STATISTICS | OP_FOOTER => true,
            _ => false,
        };
        if parsed && body_len > MAX_RECORD_BYTES {
            out.damage.push(DecodeError::Malformed {
                offset: at,
                opcode,
                what: "record is larger than framerec reads (256 MiB)",
            });
            if in_summary {
                break;
            }
            match skip_damage(&mut scan, at, &mut out)? {
                Some(next) => {
                    at = next;
                    continue;
                }
                None => break,
            }
        }
        let body = if parsed {
            src.read(at + RECORD_PREFIX as u64..next, &mut body_buf)?
        } else {
            &[]
        };
        let rec = Rec {
            opcode,
            offset: at,
            body,
        };
        let malformed = |what| DecodeError::Malformed {
            offset: rec.offset,
            opcode: rec.opcode,
            what,
        };
        if in_head
            && !matches!(
                rec.opcode,
                OP_HEADER | OP_SCHEMA | OP_CHANNEL | OP_METADATA | OP_PADDING
            )
        {
            in_head = false;
            out.head_end = at;
        }
        match rec.opcode {
            OP_CHANNEL if !in_summary => match channel(rec.body) {
                Ok((id, topic, enc, meta)) => {
                    out.channels.insert(id, (topic, enc));
                    out.channel_metadata.insert(id, meta);
                }
                Err(w) => out.damage.push(malformed(w)),
            },
            OP_METADATA if !in_summary => {
                let mut c = Cur::new(rec.body);
                match c.str().and_then(|name| Ok((name, string_map(&mut c)?))) {
                    Ok((METADATA_NAME, map)) => {
                        out.metadata = map;
                        out.metadata_record = Some((rec.offset, next - at));
                    }
                    Ok(_) => {}
                    Err(w) => out.damage.push(malformed(w)),
                }
            }
            OP_CHUNK => {
                if let Err(e) = scan_chunk(&rec, &mut out, visit) {
                    // Its length field may be damaged too: resync rather than trust it.
                    out.damage.push(e);
                    match skip_damage(&mut scan, at, &mut out)? {
                        Some(next) => {
                            at = next;
                            continue;
                        }
                        None => break,
                    }
                }
            }
            OP_DATA_END => {
                in_summary = true;
            }
            OP_CHUNK_INDEX => {
                let mut c = Cur::new(rec.body);
                let r = (|| -> R<(u64, u64, u64, u64)> {
                    c.u64()?;
                    c.u64()?;
                    Ok((c.u64()?, c.u64()?, 0, 0))
                })();
                match r {
                    Ok((offset, length, ..)) => summary.chunk_indexes.add(offset, length),
                    Err(w) => out.damage.push(malformed(w)),
                }
            }
            OP_STATISTICS => {
                let mut c = Cur::new(rec.body);
                let r = (|| -> R<()> {
                    summary.message_count = Some(c.u64()?);
                    c.u16()?;
                    c.u32()?;
                    c.u32()?;
                    c.u32()?;
                    summary.chunk_count = Some(c.u32()?);
                    c.u64()?;
                    c.u64()?;
                    let map = c.bytes32()?;
                    let mut m = Cur::new(map);
                    while m.pos < map.len() {
                        let id = m.u16()?;
                        summary.channel_message_counts.insert(id, m.u64()?);
                    }
                    Ok(())
                })();
                if let Err(w) = r {
                    out.damage.push(malformed(w));
                }
            }
            OP_FOOTER => {
                let mut c = Cur::new(rec.body);
                let r = (|| -> R<(u64, u32)> {
                    let summary_start = c.u64()?;
                    c.u64()?;
                    Ok((summary_start, c.u32()?))
                })();
                match r {
                    Ok((summary_start, saved)) => {
                        let tail_ok = len == next + MAGIC.len() as u64
                            && src.read(next..len, &mut small)? == MAGIC;
                        if !tail_ok {
                            out.damage.push(malformed(
                                "footer is not followed by the magic at end of file",
                            ));
                        } else if summary_start != 0 && saved != 0 {
                            let from = summary_start;
                            let to = rec.offset + RECORD_PREFIX as u64 + 16;
                            if from <= to {
                                let calculated = hash_range(src, from..to)?;
                                if calculated != saved {
                                    out.damage.push(DecodeError::BadSummaryCrc {
                                        offset: rec.offset,
                                        saved,
                                        calculated,
                                    });
                                }
                            } else {
                                out.damage
                                    .push(malformed("summary_start is past the footer"));
                            }
                        }
                        out.finalized = tail_ok;
                    }
                    Err(w) => out.damage.push(malformed(w)),
                }
                break;
            }
            _ => {} // header, schemas, indexes, padding: skipped unread
        }
        at = next;
        if !in_summary {
            out.data_end = at;
        }
    }
    if in_summary {
        out.summary = Some(summary);
    }
    Ok(out)
}

/// The opcode and body length of the record at `at`; `Err` when its length runs past the end.
fn record_head<S: Source + ?Sized>(
    src: &S,
    at: u64,
    buf: &mut BytesMut,
) -> io::Result<Result<(u8, u64), DecodeError>> {
    let available = src.len() - at;
    let head = src.read(at..at + available.min(RECORD_PREFIX as u64), buf)?;
    let opcode = head[0];
    if available < RECORD_PREFIX as u64 {
        return Ok(Err(DecodeError::Truncated {
            offset: at,
            opcode,
            needed: RECORD_PREFIX as u64,
            available,
        }));
    }
    let len = u64::from_le_bytes(head[1..9].try_into().unwrap_or([0; 8]));
    let needed = len.saturating_add(RECORD_PREFIX as u64);
    if needed > available {
        return Ok(Err(DecodeError::Truncated {
            offset: at,
            opcode,
            needed,
            available,
        }));
    }
    Ok(Ok((opcode, len)))
}

/// Opcodes framerec never writes at the top level of a data section (0x00 is zeroed space).
fn is_garbage(opcode: u8) -> bool {
    !matches!(
        opcode,
        OP_HEADER
            | OP_SCHEMA
            | OP_CHANNEL
            | OP_METADATA
            | OP_CHUNK
            | OP_MESSAGE_INDEX
            | OP_DATA_END
            | OP_PADDING
            | OP_FOOTER
            | OP_CHUNK_INDEX
            | OP_STATISTICS
            | OP_METADATA_INDEX
            | OP_SUMMARY_OFFSET
    )
}

/// Skips damage at `at`: notes the skipped range and returns where the next intact chunk
/// starts, or `None` (the rest of the file is unreadable; the segment is unfinished).
fn skip_damage<S: Source + ?Sized>(
    scan: &mut Resync<'_, S>,
    at: u64,
    out: &mut SegmentContents,
) -> io::Result<Option<u64>> {
    Ok(match scan.next(at + 1)? {
        Some(next) => {
            out.skip(at..next);
            Some(next)
        }
        None => {
            out.skip(at..scan.src.len());
            out.damage.push(DecodeError::Unfinished);
            None
        }
    })
}

fn scan_chunk(
    rec: &Rec<'_>,
    out: &mut SegmentContents,
    visit: &mut dyn Visit,
) -> Result<(), DecodeError> {
    let malformed = |what| DecodeError::Malformed {
        offset: rec.offset,
        opcode: OP_CHUNK,
        what,
    };
    let mut c = Cur::new(rec.body);
    let start_time = c.u64().map_err(malformed)?;
    let end_time = c.u64().map_err(malformed)?;
    let _uncompressed_size = c.u64().map_err(malformed)?;
    let saved = c.u32().map_err(malformed)?;
    let compression = c.str().map_err(malformed)?;
    if !compression.is_empty() {
        return Err(DecodeError::UnsupportedCompression {
            offset: rec.offset,
            compression: compression.to_string(),
        });
    }
    let records_len = c.u64().map_err(malformed)?;
    let records_at = RECORD_PREFIX + c.pos;
    let records = c.rest();
    if records.len() as u64 != records_len {
        return Err(malformed("records length disagrees with the record length"));
    }
    let calculated = crc32fast::hash(records);
    let crc_ok = saved == 0 || saved == calculated;
    let mut info = ChunkInfo {
        offset: rec.offset,
        length: (RECORD_PREFIX + rec.body.len()) as u64,
        start_time,
        end_time,
        crc_ok,
        messages: 0,
        sequences: Vec::new(),
        index: Vec::new(),
    };
    if !crc_ok {
        info.sequences = claimed_sequences(records);
        out.chunks.add(info.offset, info.length);
        out.bad_crc_chunks += 1;
        if !info.sequences.is_empty() {
            out.damaged_chunks.push(DamagedChunk {
                offset: info.offset,
                first: info.sequences.iter().min().copied().unwrap_or(0) as u64,
                last: info.sequences.iter().max().copied().unwrap_or(0) as u64,
                count: info.sequences.len(),
            });
        }
        visit.chunk(&info, rec.body);
        return Err(DecodeError::BadChunkCrc {
            offset: rec.offset,
            saved,
            calculated,
        });
    }
    let base = rec.offset as usize + records_at;
    let mut at = 0;
    while at < records.len() {
        let inner = read_record(records, at)
            .map_err(|_| malformed("a record inside runs past the chunk"))?;
        let next = at + RECORD_PREFIX + inner.body.len();
        if inner.opcode == OP_MESSAGE {
            let mut m = Cur::new(inner.body);
            let channel = m.u16().map_err(malformed)?;
            let sequence = m.u32().map_err(malformed)?;
            let log_time = m.u64().map_err(malformed)?;
            let publish_time = m.u64().map_err(malformed)?;
            let data_at = base + at + RECORD_PREFIX + m.pos;
            let data = m.rest();
            match channel {
                DROP_CHANNEL_ID => {
                    if let Some(mut d) = parse_drop(data) {
                        d.log_time = log_time;
                        out.drop_notice(d);
                    } else {
                        return Err(malformed("drop notice is not valid JSON"));
                    }
                }
                _ if !out.channels.contains_key(&channel) => {
                    return Err(DecodeError::UnknownChannel {
                        offset: (base + at) as u64,
                        channel,
                    });
                }
                _ => {
                    info.sequences.push(sequence);
                    let m = MessageRef {
                        channel,
                        sequence,
                        log_time,
                        publish_time,
                        data: data_at..data_at + data.len(),
                        chunk_offset: rec.offset,
                    };
                    visit.message(&m, data);
                    out.message(&m);
                }
            }
            info.messages += 1;
            info.index.push((channel, log_time, at as u64));
        }
        at = next;
    }
    out.chunks.add(info.offset, info.length);
    visit.chunk(&info, rec.body);
    Ok(())
}

/// The depth sequence numbers a damaged chunk's records claim, read without trusting them.
fn claimed_sequences(records: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let Ok(inner) = read_record(records, at) else {
            break;
        };
        if inner.opcode == OP_MESSAGE && inner.body.len() >= 6 {
            let channel = u16::from_le_bytes([inner.body[0], inner.body[1]]);
            if channel == DEPTH_CHANNEL_ID {
                out.push(u32::from_le_bytes(
                    inner.body[2..6].try_into().unwrap_or([0; 4]),
                ));
            }
        }
        at += RECORD_PREFIX + inner.body.len();
    }
    out
}
