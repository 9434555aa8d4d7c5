//! Recovery: a valid, finalized segment rebuilt from the intact chunks of a damaged or
//! unfinished one. Pure code over a [`Source`] and a writer: the original is read a chunk at a
//! time and the rebuilt segment written as it is made, with an exact report.
//!
//! The rebuilt segment is a fresh head (the same stream, recording and segment ids), every chunk whose CRC checks (in file order) with
//! a regenerated message index, a drop notice with reason `lost` naming every frame the segment
//! is missing (gaps among its own frames, plus ranges the caller knows are missing from the
//! recording), and a new summary and footer.

use std::io::{self, Write};

use bytes::BytesMut;

use crate::frame::{DropReason, FrameFormat, FrameSeq, StreamId, StreamInfo};

use super::decode::{
    ChunkInfo, DecodeError, SegmentContents, SeqRun, Visit, clean_chunk_contents, decode_raw_image,
    parse_segment, scan_source,
};
use super::encode::{
    ChunkIndexEntry, DropRange, SegmentMeta, encode_drop_chunk, encode_segment_head,
    encode_segment_tail,
};
use super::source::Source;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverError {
    #[error("the segment head (magic, depth channel) is damaged: {0}")]
    HeadDamaged(String),
}

/// A rebuilt segment and what recovery kept and lost.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The rebuilt segment, from [`recover_segment`]; empty from [`recover_to`], which wrote it.
    pub bytes: Vec<u8>,
    pub kept_frames: u64,
    /// Runs of consecutive frame sequence numbers kept.
    pub kept_ranges: Vec<(u64, u64)>,
    /// Ranges named as lost in the rebuilt segment.
    pub lost_ranges: Vec<(u64, u64)>,
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
}

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

/// Rebuilds `bytes` into a finalized segment. `also_lost` are ranges the caller knows the
/// recording is missing (e.g. between this segment and the next); they are named as lost here
/// unless this segment holds them.
pub fn recover_segment(bytes: &[u8], also_lost: &[(u64, u64)]) -> Result<Recovered, RecoverError> {
    let c = parse_segment(bytes);
    let mut out = Vec::new();
    // Reads from a slice and writes to a Vec never fail.
    let mut rec = recover_to(bytes, &c, also_lost, &mut out)
        .unwrap_or(Err(RecoverError::HeadDamaged("unreadable".into())))?;
    rec.bytes = out;
    Ok(rec)
}

/// Whether a segment with this scan can be rebuilt: it needs its magic and a depth channel.
pub fn recoverable(c: &SegmentContents) -> Result<(), RecoverError> {
    if c.damage.contains(&DecodeError::BadMagic) {
        return Err(RecoverError::HeadDamaged("no MCAP magic".into()));
    }
    if !c.channels.contains_key(&DEPTH_CHANNEL_ID) {
        return Err(RecoverError::HeadDamaged("no depth channel record".into()));
    }
    Ok(())
}

/// Rebuilds the segment read from `src`, whose scan is `c`, writing it to `out` as it goes: one
/// chunk of the original is in memory at a time, never the file. The returned report's `bytes`
/// is empty (the segment went to `out`). `Err` is a failed read or write.
pub fn recover_to<S: Source + ?Sized, W: Write>(
    src: &S,
    c: &SegmentContents,
    also_lost: &[(u64, u64)],
    out: W,
) -> io::Result<Result<Recovered, RecoverError>> {
    if let Err(e) = recoverable(c) {
        return Ok(Err(e));
    }
    let mut out = Counting { out, at: 0 };
    let mut buf = BytesMut::new();
    let topic = c
        .channels
        .get(&DEPTH_CHANNEL_ID)
        .map(|(topic, _)| topic.clone())
        .unwrap_or_default();
    let meta = c
        .channel_metadata
        .get(&DEPTH_CHANNEL_ID)
        .cloned()
        .unwrap_or_default();
    let dim = |k: &str| meta.get(k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
    let frame_id = match &c.first_message {
        Some(m) => decode_raw_image(src.read(m.data.start as u64..m.data.end as u64, &mut buf)?)
            .ok()
            .map(|img| img.frame_id.to_string())
            .unwrap_or_default(),
        None => String::new(),
    };
    let stream = StreamInfo {
        name: "depth".into(),
        topic,
        frame_id,
        width: dim("width"),
        height: dim("height"),
        format: FrameFormat::Depth16,
    };

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
        streams: vec![stream.clone()],
    };
    let (head_bytes, head) = encode_segment_head(&meta, false);
    out.write_all(&head_bytes)?;
    // The intact chunks, copied as a second scan meets them (the same scan that made `c`, so
    // the same chunks in the same order), with what they hold: frames and drop notices.
    let mut copy = Copy {
        out,
        entries: Vec::new(),
        kept_chunks: 0,
        frames: Vec::new(),
        covered: Vec::new(),
        kept_frames: 0,
        not_tracked: false,
        time_ns: 0,
        record: Vec::new(),
        error: None,
    };
    scan_source(src, &mut copy)?;
    if let Some(e) = copy.error {
        return Err(e);
    }
    let Copy {
        mut out,
        mut entries,
        kept_chunks,
        frames,
        mut covered,
        kept_frames,
        not_tracked,
        time_ns,
        ..
    } = copy;

    // Frames this segment holds, frames its notices name, and what is missing between them.
    let kept_ranges = runs(&frames);
    let lost = if not_tracked {
        // Too fragmented to know what is missing: name nothing rather than guess.
        Vec::new()
    } else {
        covered.extend_from_slice(&kept_ranges);
        let covered = merge(covered);
        let mut lost: Vec<(u64, u64)> = covered
            .windows(2)
            .map(|w| (w[0].1 + 1, w[1].0 - 1))
            .collect();
        // Only the parts of `also_lost` no frame or notice of this segment already covers.
        lost.extend(subtract(also_lost, &covered));
        merge(lost)
    };
    if !lost.is_empty() {
        let ranges: Vec<DropRange> = lost
            .iter()
            .map(|&(a, b)| DropRange {
                stream: StreamId(0),
                first: FrameSeq(a),
                last: FrameSeq(b),
                reason: DropReason::Lost,
                time_ns,
            })
            .collect();
        let (drop_buf, span, mut entry) =
            encode_drop_chunk(&ranges, std::slice::from_ref(&stream), out.at, false);
        let at = out.at;
        out.write_all(&drop_buf.region()[span.0..span.1])?;
        entry.chunk_start_offset = at;
        for c in entry.channels.iter_mut() {
            c.2 = at + entry.chunk_length;
        }
        entries.push(entry);
    }
    let tail = encode_segment_tail(
        out.at,
        &entries,
        std::slice::from_ref(&stream),
        &head,
        false,
    );
    out.write_all(&tail)?;
    out.out.flush()?;
    Ok(Ok(Recovered {
        bytes: Vec::new(),
        kept_frames,
        kept_ranges,
        lost_ranges: lost,
        kept_chunks,
        damaged_chunks: c.bad_crc_chunks as usize,
        skipped_bytes: c.skipped_bytes,
        damage: c.damage.items().to_vec(),
        more_damage: c.damage.more(),
        lost_not_named: not_tracked,
    }))
}

/// Copies the intact chunks a scan meets to the rebuilt segment, each followed by a
/// regenerated message index, and notes what they hold.
struct Copy<W> {
    out: Counting<W>,
    entries: Vec<ChunkIndexEntry>,
    kept_chunks: usize,
    /// Frames of the kept chunks, as runs (merged as they come).
    frames: Vec<SeqRun>,
    /// Frames the kept chunks' drop notices name.
    covered: Vec<(u64, u64)>,
    /// Frames in the kept chunks (each time written).
    kept_frames: u64,
    /// `frames` or `covered` reached its cap: neither grows any more.
    not_tracked: bool,
    time_ns: u64,
    /// The chunk record being copied (reused).
    record: Vec<u8>,
    error: Option<io::Error>,
}

impl<W: Write> Visit for Copy<W> {
    fn chunk(&mut self, chunk: &ChunkInfo, body: &[u8]) {
        if !chunk.crc_ok || self.error.is_some() {
            return;
        }
        if let Err(e) = self.copy(chunk, body) {
            self.error = Some(e);
        }
    }
}

impl<W: Write> Copy<W> {
    fn copy(&mut self, chunk: &ChunkInfo, body: &[u8]) -> io::Result<()> {
        self.record.clear();
        self.record.push(OP_CHUNK);
        self.record
            .extend_from_slice(&(body.len() as u64).to_le_bytes());
        self.record.extend_from_slice(body);
        let Some(held) = clean_chunk_contents(&self.record) else {
            return Ok(());
        };
        self.kept_frames += held.frames.frames();
        if !held.complete() {
            self.not_tracked = true;
        }
        for r in held.frames.runs() {
            if self.not_tracked {
                break;
            }
            let full = self.frames.len() >= MAX_RUNS;
            match self.frames.last_mut() {
                Some(last) if last.last.checked_add(1) == Some(r.first) => last.last = r.last,
                _ if full => self.not_tracked = true,
                _ => self.frames.push(*r),
            }
        }
        for d in &held.drops {
            if self.covered.len() >= MAX_DROPS {
                self.not_tracked = true;
            }
            if self.not_tracked {
                break;
            }
            self.covered.push((d.first.0, d.last.0));
        }
        self.time_ns = held.end_time_ns.unwrap_or(0).max(self.time_ns);
        self.kept_chunks += 1;
        let out = &mut self.out;
        let start = out.at;
        out.write_all(&self.record)?;
        let records_len = chunk.length - (RECORD_PREFIX + 8 + 8 + 8 + 4 + 4 + 8) as u64;
        // framerec chunks hold one channel: index that channel's messages.
        let channel_id = chunk.index.first().map_or(DEPTH_CHANNEL_ID, |m| m.0);
        let times: Vec<(u64, u64)> = chunk
            .index
            .iter()
            .filter(|m| m.0 == channel_id)
            .map(|m| (m.1, m.2))
            .collect();
        let index_at = out.at;
        let mut index = Vec::with_capacity(RECORD_PREFIX + 6 + 16 * times.len());
        index.push(OP_MESSAGE_INDEX);
        index.extend_from_slice(&((2 + 4 + 16 * times.len()) as u64).to_le_bytes());
        index.extend_from_slice(&channel_id.to_le_bytes());
        index.extend_from_slice(&((16 * times.len()) as u32).to_le_bytes());
        for (t, o) in &times {
            index.extend_from_slice(&t.to_le_bytes());
            index.extend_from_slice(&o.to_le_bytes());
        }
        out.write_all(&index)?;
        self.entries.push(ChunkIndexEntry {
            start_time: chunk.start_time,
            end_time: chunk.end_time,
            chunk_start_offset: start,
            chunk_length: chunk.length,
            channels: vec![(channel_id, times.len() as u64, index_at)],
            message_index_length: out.at - index_at,
            uncompressed_size: records_len,
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
