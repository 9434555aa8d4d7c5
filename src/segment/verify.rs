//! Verification of segments and whole recordings: intact chunks, a summary that matches the
//! data, well-formed images, and sequence continuity where every missing frame is explained by a
//! drop notice.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::decode::{DecodeError, MessageRef, SegmentContents, decode_raw_image, parse_source};
use super::source::{FileSource, Source};

/// One thing wrong with a segment or recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Damage(DecodeError),
    #[error("summary disagrees with the data: {0}")]
    SummaryMismatch(String),
    #[error("frame {seq} is written {count} times")]
    Duplicate { seq: u64, count: usize },
    #[error("frames {first}..={last} are missing and no drop notice explains them")]
    Missing { first: u64, last: u64 },
    #[error("frame {seq} is both written and named in a drop notice ({reason})")]
    WrittenAndDropped { seq: u64, reason: String },
    #[error("drop notices name frames {first}..={last} more than once")]
    DroppedTwice { first: u64, last: u64 },
    #[error("frame {seq}: log_time {log_time} is before frame {prev_seq}'s {prev_log_time}")]
    TimeGoesBack {
        seq: u64,
        log_time: u64,
        prev_seq: u64,
        prev_log_time: u64,
    },
    #[error("frame {seq}: bad image: {what}")]
    BadImage { seq: u64, what: String },
    #[error("damaged chunk at offset {offset} held {count} frames (seq {first}..={last})")]
    DamagedFrames {
        offset: u64,
        first: u64,
        last: u64,
        count: usize,
    },
    #[error("bytes {start}..{end} are damaged and were skipped")]
    Skipped { start: u64, end: u64 },
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// What verify found in one segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentReport {
    pub name: String,
    pub bytes: u64,
    pub finalized: bool,
    pub chunks: usize,
    pub frames: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub start_time_ns: Option<u64>,
    pub end_time_ns: Option<u64>,
    pub dropped: BTreeMap<String, u64>,
    pub problems: Vec<Problem>,
    #[serde(skip)]
    pub contents: SegmentContents,
}

impl SegmentReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What verify found in a set of segments taken as one recording.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingReport {
    pub ok: bool,
    pub segments: Vec<SegmentReport>,
    pub frames: u64,
    pub dropped: BTreeMap<String, u64>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Problems across segments (continuity); each segment lists its own.
    pub problems: Vec<Problem>,
}

/// Verifies one segment's bytes on their own.
pub fn verify_segment(name: &str, bytes: &[u8]) -> SegmentReport {
    let mut images = Vec::new();
    // Reads from a slice never fail.
    let contents = parse_source(bytes, &mut |m, data| images.extend(image_problem(m, data)))
        .unwrap_or_default();
    report(name, bytes.len() as u64, contents, images)
}

/// Verifies one segment read from `src` (a file: one chunk in memory at a time); finds what
/// [`verify_segment`] finds on the same bytes. `Err` is a failed read.
pub fn verify_source<S: Source + ?Sized>(name: &str, src: &S) -> io::Result<SegmentReport> {
    let mut images = Vec::new();
    let contents = parse_source(src, &mut |m, data| images.extend(image_problem(m, data)))?;
    Ok(report(name, src.len(), contents, images))
}

/// Verifies the segment file at `path`, read in bounded memory.
pub fn verify_file(path: &Path) -> io::Result<SegmentReport> {
    verify_source(&path.display().to_string(), &FileSource::open(path)?)
}

/// What is wrong with a depth message's image, if anything.
fn image_problem(m: &MessageRef, data: &[u8]) -> Option<Problem> {
    let seq = m.sequence as u64;
    match decode_raw_image(data) {
        Ok(img) => {
            let expected = img.step as u64 * img.height as u64;
            (img.data.len() as u64 != expected || img.width == 0 || img.height == 0).then(|| {
                Problem::BadImage {
                    seq,
                    what: format!(
                        "{}x{} step {} needs {} bytes, has {}",
                        img.width,
                        img.height,
                        img.step,
                        expected,
                        img.data.len()
                    ),
                }
            })
        }
        Err(what) => Some(Problem::BadImage {
            seq,
            what: what.to_string(),
        }),
    }
}

/// The report on a scanned segment of `len` bytes; `images` are its messages' image problems,
/// in message order.
fn report(name: &str, len: u64, contents: SegmentContents, images: Vec<Problem>) -> SegmentReport {
    let mut problems: Vec<Problem> = contents
        .damage
        .iter()
        .cloned()
        .map(Problem::Damage)
        .collect();
    for c in contents
        .chunks
        .iter()
        .filter(|c| !c.crc_ok && !c.sequences.is_empty())
    {
        problems.push(Problem::DamagedFrames {
            offset: c.offset,
            first: c.sequences.iter().min().copied().unwrap_or(0) as u64,
            last: c.sequences.iter().max().copied().unwrap_or(0) as u64,
            count: c.sequences.len(),
        });
    }
    problems.extend(contents.skipped.iter().map(|r| Problem::Skipped {
        start: r.start,
        end: r.end,
    }));

    if let Some(summary) = &contents.summary {
        let mut found: Vec<(u64, u64)> = contents
            .chunks
            .iter()
            .map(|c| (c.offset, c.length))
            .collect();
        let mut indexed: Vec<(u64, u64)> =
            summary.chunk_indexes.iter().map(|c| (c.0, c.1)).collect();
        found.sort_unstable();
        indexed.sort_unstable();
        if found != indexed {
            problems.push(Problem::SummaryMismatch(format!(
                "{} chunk index records for {} chunks found (first difference at {:?})",
                indexed.len(),
                found.len(),
                found
                    .iter()
                    .zip(&indexed)
                    .find(|(a, b)| a != b)
                    .map(|(a, _)| a.0)
            )));
        }
        let messages = (contents.messages.len() + contents.drops.len()) as u64;
        if summary.message_count != Some(messages) {
            problems.push(Problem::SummaryMismatch(format!(
                "statistics count {:?} messages, {} found",
                summary.message_count, messages
            )));
        }
        if summary.chunk_count != Some(contents.chunks.len() as u32) {
            problems.push(Problem::SummaryMismatch(format!(
                "statistics count {:?} chunks, {} found",
                summary.chunk_count,
                contents.chunks.len()
            )));
        }
    }

    problems.extend(images);

    let mut dropped = BTreeMap::new();
    for d in &contents.drops {
        *dropped.entry(d.reason.clone()).or_insert(0) += (d.last.0 - d.first.0).saturating_add(1);
    }
    SegmentReport {
        name: name.to_string(),
        bytes: len,
        finalized: contents.finalized,
        chunks: contents.chunks.len(),
        frames: contents.messages.len() as u64,
        first_seq: contents.messages.iter().map(|m| m.sequence as u64).min(),
        last_seq: contents.messages.iter().map(|m| m.sequence as u64).max(),
        start_time_ns: contents.messages.iter().map(|m| m.log_time).min(),
        end_time_ns: contents.messages.iter().map(|m| m.log_time).max(),
        dropped,
        problems,
        contents,
    }
}

/// Verifies segments (in recording order) as one recording: each on its own, then continuity
/// across all of them. `starts_at_zero` says the first segment of the recording is present, so
/// frame 0 must be accounted for.
pub fn verify_recording(segments: Vec<SegmentReport>, starts_at_zero: bool) -> RecordingReport {
    let mut problems = Vec::new();
    // Written frames, with log times, in sequence order.
    let mut written: Vec<(u64, u64)> = segments
        .iter()
        .flat_map(|s| {
            s.contents
                .messages
                .iter()
                .map(|m| (m.sequence as u64, m.log_time))
        })
        .collect();
    written.sort_unstable();
    let mut drops: Vec<(u64, u64, String)> = segments
        .iter()
        .flat_map(|s| {
            s.contents
                .drops
                .iter()
                .map(|d| (d.first.0, d.last.0, d.reason.clone()))
        })
        .collect();
    drops.sort_unstable();

    let mut i = 0;
    while i < written.len() {
        let mut j = i + 1;
        while j < written.len() && written[j].0 == written[i].0 {
            j += 1;
        }
        if j - i > 1 {
            problems.push(Problem::Duplicate {
                seq: written[i].0,
                count: j - i,
            });
        }
        i = j;
    }
    written.dedup_by_key(|w| w.0);
    for pair in written.windows(2) {
        if pair[1].1 < pair[0].1 {
            problems.push(Problem::TimeGoesBack {
                seq: pair[1].0,
                log_time: pair[1].1,
                prev_seq: pair[0].0,
                prev_log_time: pair[0].1,
            });
        }
    }

    // Walk the sequence space: each number is written once or inside exactly one drop range.
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut intervals: Vec<(u64, u64)> = Vec::new(); // covered [first, last]
    for (first, last, reason) in &drops {
        *dropped.entry(reason.clone()).or_insert(0) += (last - first).saturating_add(1);
        let lo = written.partition_point(|w| w.0 < *first);
        if let Some(w) = written.get(lo).filter(|w| w.0 <= *last) {
            problems.push(Problem::WrittenAndDropped {
                seq: w.0,
                reason: reason.clone(),
            });
        }
        intervals.push((*first, *last));
    }
    // Drop notices must not overlap: a frame is dropped once. (`drops` is sorted by first.)
    let mut reach: Option<u64> = None;
    for (first, last, _) in &drops {
        if let Some(r) = reach
            && *first <= r
        {
            problems.push(Problem::DroppedTwice {
                first: *first,
                last: (*last).min(r),
            });
        }
        reach = Some(reach.map_or(*last, |r| r.max(*last)));
    }
    intervals.extend(written.iter().map(|w| (w.0, w.0)));
    intervals.sort_unstable();
    let first_seq = intervals.first().map(|i| i.0);
    let last_seq = intervals.iter().map(|i| i.1).max();
    let mut next = if starts_at_zero { Some(0) } else { first_seq };
    for (a, b) in &intervals {
        if let Some(n) = next
            && *a > n
        {
            problems.push(Problem::Missing {
                first: n,
                last: a - 1,
            });
        }
        let after = b.saturating_add(1);
        next = Some(next.map_or(after, |n| n.max(after)));
    }

    let frames = written.len() as u64;
    let ok = problems.is_empty() && segments.iter().all(SegmentReport::ok);
    RecordingReport {
        ok,
        segments,
        frames,
        dropped,
        first_seq,
        last_seq,
        problems,
    }
}
