//! Recovery: a valid, finalized segment rebuilt from the intact chunks of a damaged or
//! unfinished one. Pure code over a [`Source`] and a writer: the original is read a chunk at a
//! time and the rebuilt segment written as it is made, with an exact report.
//!
//! The rebuilt segment is a fresh head (the same streams, channels, schemas, recording and
//! segment ids, rebuilt from the original's channel records), every chunk whose CRC checks (in
//! file order) with regenerated message indexes, drop notices with reason `lost` naming every
//! frame each stream is missing (gaps among its own frames, plus ranges the caller knows are
//! missing from the recording), and a new summary and footer.

use std::collections::BTreeMap;
use std::io::{self, Write};

use bytes::BytesMut;

use crate::frame::{DropReason, FrameFormat, FrameSeq, StreamId, StreamInfo};

use super::decode::{
    CHUNK_FIXED, ChunkInfo, DecodeError, SegmentContents, SeqRun, StreamKind, Visit,
    clean_chunk_contents, decode_accel, decode_raw_image, parse_segment, scan_source,
};
use super::encode::{
    ChunkIndexEntry, DropRange, MAX_STREAMS, SegmentMeta, encode_drops, encode_head, encode_tail,
};
use super::source::Source;
use super::*;

mod foreign;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    #[error("the segment head (magic, stream channels) is damaged: {0}")]
    HeadDamaged(String),
}

/// A rebuilt segment and what recovery kept and lost.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The rebuilt segment, from [`recover_segment`]; empty from [`recover_to`], which wrote it.
    pub bytes: Vec<u8>,
    /// Frames kept, over all streams.
    pub kept_frames: u64,
    /// Runs of consecutive frame sequence numbers kept, of the first stream (depth's in a
    /// format v1 segment); each stream's are in `streams`.
    pub kept_ranges: Vec<(u64, u64)>,
    /// Ranges named as lost in the rebuilt segment, of the first stream.
    pub lost_ranges: Vec<(u64, u64)>,
    /// What was kept and lost of each stream, in the segment's order.
    pub streams: Vec<RecoveredStream>,
    pub kept_chunks: usize,
    pub damaged_chunks: usize,
    /// Bytes of the original that held nothing intact (torn, zeroed or damaged).
    pub skipped_bytes: u64,
    /// The first damage found (at most [`MAX_LISTED`](super::decode::MAX_LISTED)).
    pub damage: Vec<DecodeError>,
    /// Damage found beyond those listed in `damage`.
    pub more_damage: u64,
    /// The kept chunks hold more than [`MAX_RUNS`](super::decode::MAX_RUNS) runs of frames or
    /// [`MAX_DROPS`](super::decode::MAX_DROPS) drop notices: every intact chunk is still kept
    /// (and `kept_frames` exact), but `kept_ranges` lists only the first runs and no frame is
    /// named as lost (`lost_ranges` is empty), since what is missing is not known.
    pub lost_not_named: bool,
    /// The file was another writer's: its intact records were copied as they are, and
    /// `kept_frames` counts the messages kept on every channel (module `foreign`).
    pub foreign: bool,
}

/// What recovery kept and lost of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredStream {
    pub name: String,
    pub kept_frames: u64,
    pub kept_ranges: Vec<(u64, u64)>,
    pub lost_ranges: Vec<(u64, u64)>,
}

/// Ranges of frames known to be missing, by stream name.
pub type LostRanges = BTreeMap<String, Vec<(u64, u64)>>;

/// Merges sorted-or-not inclusive ranges into sorted disjoint ones.
fn merge(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The parts of the inclusive ranges `from` that no range in `minus` covers.
pub fn subtract(from: &[(u64, u64)], minus: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(a, b) in from {
        let mut next = a;
        let mut cuts: Vec<(u64, u64)> = minus
            .iter()
            .copied()
            .filter(|(c, d)| *d >= a && *c <= b)
            .collect();
        cuts.sort_unstable();
        for (c, d) in cuts {
            if c > next {
                out.push((next, c - 1));
            }
            next = next.max(d.saturating_add(1));
        }
        if next <= b {
            out.push((next, b));
        }
    }
    out
}

/// The sorted disjoint ranges of frames that `runs` hold.
fn runs(runs: &[SeqRun]) -> Vec<(u64, u64)> {
    merge(runs.iter().map(|r| (r.first, r.last)).collect())
}

/// Rebuilds `bytes` into a finalized segment. `also_lost` are ranges of its first stream
/// (depth, in format v1) the caller knows the recording is missing (e.g. between this segment
/// and the next); they are named as lost here unless this segment holds them.
pub fn recover_segment(bytes: &[u8], also_lost: &[(u64, u64)]) -> Result<Recovered, RecoverError> {
    let c = parse_segment(bytes);
    let mut lost = LostRanges::new();
    if let Some(s) = c.streams.first() {
        lost.insert(s.name.clone(), also_lost.to_vec());
    }
    let mut out = Vec::new();
    // Reads from a slice and writes to a Vec never fail.
    let mut rec = recover_to(bytes, &c, &lost, &mut out)
        .unwrap_or(Err(RecoverError::HeadDamaged("unreadable".into())))?;
    rec.bytes = out;
    Ok(rec)
}

/// Whether a segment with this scan can be rebuilt: it needs its magic and its stream channels
/// in framerec's layout (stream `i` on channel `i + 1`, drops after them), which the rebuilt
/// head defines again so that the copied chunks' messages keep their channels.
pub fn recoverable(c: &SegmentContents) -> Result<(), RecoverError> {
    if c.damage.contains(&DecodeError::BadMagic) {
        return Err(RecoverError::HeadDamaged("no MCAP magic".into()));
    }
    if copies_as_is(c) {
        // Another writer's file: its intact records are copied as they are.
        return Ok(());
    }
    if c.streams.is_empty() {
        return Err(RecoverError::HeadDamaged("no stream channel record".into()));
    }
    let n = c.streams.len();
    let layout = n <= MAX_STREAMS
        && c.streams
            .iter()
            .enumerate()
            .all(|(i, s)| s.channel as usize == i + 1)
        && c.drop_channel.is_none_or(|d| d as usize == n + 1);
    if !layout {
        return Err(RecoverError::HeadDamaged(
            "channel ids are not framerec's (stream i on channel i + 1, then drops)".into(),
        ));
    }
    Ok(())
}

/// Whether the segment scanned as `c` is rebuilt by copying its intact records as they are:
/// another writer's file, or one with a channel framerec never writes (neither a stream nor
/// drops; framerec's rebuild would give its id to a channel of its own).
fn copies_as_is(c: &SegmentContents) -> bool {
    c.is_foreign() || c.has_other_channels()
}

/// The stream table the channel records of `c` describe (what the recorder started with).
fn stream_table<S: Source + ?Sized>(src: &S, c: &SegmentContents) -> io::Result<Vec<StreamInfo>> {
    let mut buf = BytesMut::new();
    let mut table = Vec::with_capacity(c.streams.len());
    for s in &c.streams {
        let empty = BTreeMap::new();
        let meta = c.channel_metadata.get(&s.channel).unwrap_or(&empty);
        let dim = |k: &str| meta.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        // v1 channels carry no frame_id: their messages do.
        let frame_id = match (meta.get("frame_id"), &s.first_message) {
            (Some(f), _) => f.clone(),
            (None, Some(m)) => {
                let data = src.read(m.data.start as u64..m.data.end as u64, &mut buf)?;
                match s.kind {
                    StreamKind::Image => decode_raw_image(data).map(|i| i.frame_id.to_string()),
                    StreamKind::Accel => decode_accel(data).map(|a| a.frame_id.to_string()),
                }
                .unwrap_or_default()
            }
            (None, None) => String::new(),
        };
        table.push(match s.kind {
            StreamKind::Accel => StreamInfo::accel(&s.name, &s.topic, &frame_id),
            StreamKind::Image => StreamInfo::image(
                &s.name,
                &s.topic,
                &frame_id,
                dim("width"),
                dim("height"),
                match meta.get("encoding").map(String::as_str) {
                    Some("rgb8") => FrameFormat::Rgb8,
                    _ => FrameFormat::Depth16,
                },
            ),
        });
    }
    Ok(table)
}

/// Rebuilds the segment read from `src`, whose scan is `c`, writing it to `out` as it goes: one
/// chunk of the original is in memory at a time, never the file. `also_lost` are ranges the
/// caller knows the recording is missing, by stream name. The returned report's `bytes` is
/// empty (the segment went to `out`). `Err` is a failed read or write.
pub fn recover_to<S: Source + ?Sized, W: Write>(
    src: &S,
    c: &SegmentContents,
    also_lost: &LostRanges,
    out: W,
) -> io::Result<Result<Recovered, RecoverError>> {
    if let Err(e) = recoverable(c) {
        return Ok(Err(e));
    }
    if copies_as_is(c) {
        return foreign::recover_foreign(src, c, out);
    }
    let mut out = Counting { out, at: 0 };
    let streams = stream_table(src, c)?;
    // A fresh head, not the original bytes: any record of the old head may be damaged.
    let meta = SegmentMeta {
        recording_id: c
            .metadata
            .get("recording_id")
            .cloned()
            .unwrap_or_else(|| "unknown".into()),
        segment_id: c
            .metadata
            .get("segment_id")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        streams: streams.clone(),
    };
    let profile = ros2::Profile::of_schemas(c.schemas.values().map(String::as_str));
    let (head_bytes, head) = encode_head(&meta, profile, false);
    out.write_all(&head_bytes)?;
    // The intact chunks, copied as a second scan meets them (the same scan that made `c`, so
    // the same chunks in the same order), with what they hold: frames and drop notices.
    let mut copy = Copy::new(c, out, streams.len());
    scan_source(src, &mut copy)?;
    if let Some(e) = copy.error {
        return Err(e);
    }
    let Copy {
        mut out,
        mut entries,
        kept_chunks,
        frames,
        covered,
        kept_frames,
        not_tracked,
        time_ns,
        ..
    } = copy;
    let kept_total = kept_frames.iter().sum();

    let held = Held {
        frames,
        covered,
        kept_frames,
        not_tracked,
        time_ns,
    };
    let (report, ranges) = held.lost(&streams, also_lost);
    if !ranges.is_empty() {
        let (drop_buf, span, mut entry) = encode_drops(&ranges, &streams, profile, out.at, false);
        let at = out.at;
        out.write_all(&drop_buf.region()[span.0..span.1])?;
        entry.chunk_start_offset = at;
        for c in entry.channels.iter_mut() {
            c.2 = at + entry.chunk_length;
        }
        entries.push(entry);
    }
    let extra = profile.tail_metadata(meta.segment_id, &streams, &entries);
    let tail = encode_tail(out.at, &entries, &streams, &head, &extra, false);
    out.write_all(&tail)?;
    out.out.flush()?;
    let first = report.first().cloned();
    Ok(Ok(Recovered {
        bytes: Vec::new(),
        kept_frames: kept_total,
        kept_ranges: first.as_ref().map_or(Vec::new(), |s| s.kept_ranges.clone()),
        lost_ranges: first.map_or(Vec::new(), |s| s.lost_ranges),
        streams: report,
        kept_chunks,
        damaged_chunks: c.bad_crc_chunks as usize,
        skipped_bytes: c.skipped_bytes,
        damage: c.damage.items().to_vec(),
        more_damage: c.damage.more(),
        lost_not_named: not_tracked,
        foreign: false,
    }))
}

/// What the kept chunks hold, per stream (see [`Copy`]).
struct Held {
    frames: Vec<Vec<SeqRun>>,
    covered: Vec<Vec<(u64, u64)>>,
    kept_frames: Vec<u64>,
    not_tracked: bool,
    time_ns: u64,
}

impl Held {
    /// Per stream: what was kept, and what is lost (gaps among the frames and notices kept,
    /// and the parts of `also_lost` they do not cover); and the `lost` notices that name it.
    fn lost(
        &self,
        streams: &[StreamInfo],
        also_lost: &LostRanges,
    ) -> (Vec<RecoveredStream>, Vec<DropRange>) {
        let mut report = Vec::with_capacity(streams.len());
        let mut ranges: Vec<DropRange> = Vec::new();
        for (i, stream) in streams.iter().enumerate() {
            let kept_ranges = runs(&self.frames[i]);
            let lost = if self.not_tracked {
                // Too fragmented to know what is missing: name nothing rather than guess.
                Vec::new()
            } else {
                let mut held = self.covered[i].clone();
                held.extend_from_slice(&kept_ranges);
                let held = merge(held);
                let mut lost: Vec<(u64, u64)> =
                    held.windows(2).map(|w| (w[0].1 + 1, w[1].0 - 1)).collect();
                // Only the parts of `also_lost` no frame or notice of this segment covers.
                if let Some(known) = also_lost.get(&stream.name) {
                    lost.extend(subtract(known, &held));
                }
                merge(lost)
            };
            ranges.extend(lost.iter().map(|&(a, b)| DropRange {
                stream: StreamId(i as u16),
                first: FrameSeq(a),
                last: FrameSeq(b),
                reason: DropReason::Lost,
                time_ns: self.time_ns,
            }));
            report.push(RecoveredStream {
                name: stream.name.clone(),
                kept_frames: self.kept_frames[i],
                kept_ranges,
                lost_ranges: lost,
            });
        }
        (report, ranges)
    }
}

/// Copies the intact chunks a scan meets to the rebuilt segment, each followed by a
/// regenerated message index per channel, and notes what they hold, per stream.
struct Copy<'a, W> {
    /// The original's scan: its channels are the rebuilt segment's.
    like: &'a SegmentContents,
    out: Counting<W>,
    entries: Vec<ChunkIndexEntry>,
    kept_chunks: usize,
    /// Frames of the kept chunks, as runs (merged as they come), by stream.
    frames: Vec<Vec<SeqRun>>,
    /// Frames the kept chunks' drop notices name, by stream.
    covered: Vec<Vec<(u64, u64)>>,
    /// Frames in the kept chunks (each time written), by stream.
    kept_frames: Vec<u64>,
    /// Runs in `frames` and ranges in `covered`, over all streams.
    runs: usize,
    notices: usize,
    /// `frames` or `covered` reached its cap ([`MAX_RUNS`], [`MAX_DROPS`] over all streams):
    /// neither grows any more.
    not_tracked: bool,
    time_ns: u64,
    /// The chunk record being copied (reused).
    record: Vec<u8>,
    error: Option<io::Error>,
}

impl<W: Write> Visit for Copy<'_, W> {
    fn chunk(&mut self, chunk: &ChunkInfo, body: &[u8]) {
        if !chunk.crc_ok || self.error.is_some() {
            return;
        }
        if let Err(e) = self.copy(chunk, body) {
            self.error = Some(e);
        }
    }
}

impl<'a, W: Write> Copy<'a, W> {
    fn new(like: &'a SegmentContents, out: Counting<W>, streams: usize) -> Copy<'a, W> {
        Copy {
            like,
            out,
            entries: Vec::new(),
            kept_chunks: 0,
            frames: vec![Vec::new(); streams],
            covered: vec![Vec::new(); streams],
            kept_frames: vec![0; streams],
            runs: 0,
            notices: 0,
            not_tracked: false,
            time_ns: 0,
            record: Vec::new(),
            error: None,
        }
    }

    /// Notes what a kept chunk holds.
    fn note(&mut self, held: &SegmentContents) {
        if !held.complete() {
            self.not_tracked = true;
        }
        for (i, s) in held.streams.iter().enumerate() {
            self.kept_frames[i] += s.frames.frames();
            for r in s.frames.runs() {
                if self.not_tracked {
                    break;
                }
                let full = self.runs >= MAX_RUNS;
                match self.frames[i].last_mut() {
                    Some(last) if last.last.checked_add(1) == Some(r.first) => last.last = r.last,
                    _ if full => self.not_tracked = true,
                    _ => {
                        self.frames[i].push(*r);
                        self.runs += 1;
                    }
                }
            }
            for d in &s.drops {
                if self.notices >= MAX_DROPS {
                    self.not_tracked = true;
                }
                if self.not_tracked {
                    break;
                }
                self.covered[i].push((d.first.0, d.last.0));
                self.notices += 1;
            }
        }
        self.time_ns = held.end_time_ns.unwrap_or(0).max(self.time_ns);
    }

    fn copy(&mut self, chunk: &ChunkInfo, body: &[u8]) -> io::Result<()> {
        self.record.clear();
        self.record.push(OP_CHUNK);
        self.record
            .extend_from_slice(&(body.len() as u64).to_le_bytes());
        self.record.extend_from_slice(body);
        let Some(held) = clean_chunk_contents(&self.record, self.like) else {
            return Ok(());
        };
        self.note(&held);
        self.kept_chunks += 1;
        let out = &mut self.out;
        let start = out.at;
        out.write_all(&self.record)?;
        // The records as stored: after the fixed fields and the compression's name.
        let records_len = chunk.length - CHUNK_FIXED as u64 - chunk.compression.len() as u64;
        // One message index per channel present, by channel id.
        let mut by_channel: BTreeMap<u16, Vec<(u64, u64)>> = BTreeMap::new();
        for (channel, time, offset) in &chunk.index {
            by_channel
                .entry(*channel)
                .or_default()
                .push((*time, *offset));
        }
        let index_start = out.at;
        let mut channels = Vec::with_capacity(by_channel.len());
        let mut index = Vec::new();
        for (channel_id, times) in &by_channel {
            channels.push((*channel_id, times.len() as u64, out.at));
            index.clear();
            index.push(OP_MESSAGE_INDEX);
            index.extend_from_slice(&((2 + 4 + 16 * times.len()) as u64).to_le_bytes());
            index.extend_from_slice(&channel_id.to_le_bytes());
            index.extend_from_slice(&((16 * times.len()) as u32).to_le_bytes());
            for (t, o) in times {
                index.extend_from_slice(&t.to_le_bytes());
                index.extend_from_slice(&o.to_le_bytes());
            }
            out.write_all(&index)?;
        }
        self.entries.push(ChunkIndexEntry {
            start_time: chunk.start_time,
            end_time: chunk.end_time,
            chunk_start_offset: start,
            chunk_length: chunk.length,
            channels,
            message_index_length: out.at - index_start,
            uncompressed_size: chunk.uncompressed_size,
            compression: chunk.compression,
            compressed_size: records_len,
        });
        Ok(())
    }
}

/// A writer that knows how many bytes went through it: the offset the next record lands at.
struct Counting<W> {
    out: W,
    at: u64,
}

impl<W: Write> Counting<W> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.at += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode::SeqRuns;
    use super::*;

    #[test]
    fn merge_and_runs() {
        assert_eq!(
            merge(vec![(5, 6), (1, 2), (3, 3), (9, 9)]),
            vec![(1, 3), (5, 6), (9, 9)]
        );
        assert_eq!(
            merge(vec![(4, 4), (1, 3)]),
            vec![(1, 4)],
            "adjacent ranges join"
        );
        let mut r = SeqRuns::default();
        for s in [0, 1, 2, 5, 7, 8, 3] {
            r.push(s, 0);
        }
        assert_eq!(runs(r.runs()), vec![(0, 3), (5, 5), (7, 8)]);
        assert_eq!(
            subtract(&[(0, 10)], &[(2, 3), (5, 5)]),
            vec![(0, 1), (4, 4), (6, 10)]
        );
        assert_eq!(subtract(&[(4, 6)], &[(0, 9)]), vec![]);
        assert_eq!(subtract(&[(4, 6)], &[]), vec![(4, 6)]);
    }
}
