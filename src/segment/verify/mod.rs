//! Verification of segments and whole recordings: intact chunks, a summary that matches the
//! data, well-formed images, and sequence continuity where every missing frame is explained by a
//! drop notice.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::decode::{
    Bounded, DecodeError, MAX_LISTED, MessageRef, NoticeReason, SegmentContents, SeqRun, SeqRuns,
    decode_raw_image, parse_source,
};
use super::source::{FileSource, Source};

mod continuity;
mod recording;
#[cfg(test)]
mod tests;

pub use recording::{RecordingBudget, verify_recording};

/// One thing wrong with a segment or recording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    Damage(DecodeError),
    #[error("summary disagrees with the data: {0}")]
    SummaryMismatch(String),
    #[error("frame {seq} is written {count} times")]
    Duplicate { seq: u64, count: usize },
    #[error("frames {first}..={last} are written {count} times each")]
    DuplicateRange { first: u64, last: u64, count: usize },
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
    #[error(
        "sequence continuity not checked past {runs} runs and {notices} drop notices: the recording is fragmented into more pieces than verify tracks"
    )]
    Fragmented { runs: usize, notices: usize },
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
    /// The first [`MAX_LISTED`] problems.
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub problems_not_listed: u64,
    #[serde(skip)]
    pub contents: SegmentContents,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SegmentReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.problems_not_listed == 0
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
    /// Problems across segments (continuity), the first [`MAX_LISTED`]; each segment lists
    /// its own.
    pub problems: Vec<Problem>,
    /// Problems across segments beyond those listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub problems_not_listed: u64,
    /// Every range of frames missing with no drop notice to explain it (each is also a
    /// [`Problem::Missing`], listed or counted): what a repair names as lost.
    #[serde(skip)]
    pub missing: Vec<(u64, u64)>,
}

/// Problems as they are found: the first `cap` kept, the rest counted.
#[derive(Debug)]
pub(super) struct Problems {
    pub(super) list: Vec<Problem>,
    pub(super) more: u64,
    cap: usize,
}

impl Problems {
    pub(super) fn new(cap: usize) -> Self {
        Problems {
            list: Vec::new(),
            more: 0,
            cap,
        }
    }
    pub(super) fn push(&mut self, p: Problem) {
        if self.list.len() < self.cap {
            self.list.push(p);
        } else {
            self.more += 1;
        }
    }
    /// Adds what another list kept and counted.
    pub(super) fn extend(&mut self, items: impl IntoIterator<Item = Problem>, more: u64) {
        for p in items {
            self.push(p);
        }
        self.more += more;
    }
}

/// Verifies one segment's bytes on their own.
pub fn verify_segment(name: &str, bytes: &[u8]) -> SegmentReport {
    let mut images = Bounded::default();
    // Reads from a slice never fail.
    let contents = parse_source(bytes, &mut |m, data| {
        if let Some(p) = image_problem(m, data) {
            images.push(p);
        }
    })
    .unwrap_or_default();
    report(name, bytes.len() as u64, contents, images)
}

/// Verifies one segment read from `src` (a file: one chunk in memory at a time); finds what
/// [`verify_segment`] finds on the same bytes. `Err` is a failed read.
pub fn verify_source<S: Source + ?Sized>(name: &str, src: &S) -> io::Result<SegmentReport> {
    let mut images = Bounded::default();
    let contents = parse_source(src, &mut |m, data| {
        if let Some(p) = image_problem(m, data) {
            images.push(p);
        }
    })?;
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
fn report(
    name: &str,
    len: u64,
    contents: SegmentContents,
    images: Bounded<Problem>,
) -> SegmentReport {
    let mut problems = Problems::new(MAX_LISTED);
    problems.extend(
        contents.damage.iter().cloned().map(Problem::Damage),
        contents.damage.more(),
    );
    problems.extend(
        contents
            .damaged_chunks
            .iter()
            .map(|c| Problem::DamagedFrames {
                offset: c.offset,
                first: c.first,
                last: c.last,
                count: c.count,
            }),
        contents.damaged_chunks.more(),
    );
    problems.extend(
        contents.skipped.iter().map(|r| Problem::Skipped {
            start: r.start,
            end: r.end,
        }),
        contents.skipped.more(),
    );

    if let Some(summary) = &contents.summary {
        let (indexed, found) = (summary.chunk_indexes, contents.chunks);
        if found != indexed {
            problems.push(Problem::SummaryMismatch(format!(
                "{} chunk index records for {} chunks found{}",
                indexed.count,
                found.count,
                if indexed.count == found.count {
                    " (they name different chunks)"
                } else {
                    ""
                }
            )));
        }
        let messages = contents.messages() + contents.drop_messages();
        if summary.message_count != Some(messages) {
            problems.push(Problem::SummaryMismatch(format!(
                "statistics count {:?} messages, {} found",
                summary.message_count, messages
            )));
        }
        if summary.chunk_count.map(u64::from) != Some(contents.chunks.count) {
            problems.push(Problem::SummaryMismatch(format!(
                "statistics count {:?} chunks, {} found",
                summary.chunk_count, contents.chunks.count
            )));
        }
    }

    problems.extend(images.iter().cloned(), images.more());

    let mut dropped = BTreeMap::new();
    for d in &contents.drops {
        *dropped.entry(d.reason.as_str().to_string()).or_insert(0) +=
            (d.last.0 - d.first.0).saturating_add(1);
    }
    for (reason, n) in &contents.dropped_not_kept {
        *dropped.entry(reason.clone()).or_insert(0) += n;
    }
    SegmentReport {
        name: name.to_string(),
        bytes: len,
        finalized: contents.finalized,
        chunks: contents.chunks.count as usize,
        frames: contents.messages(),
        first_seq: contents.frames.min(),
        last_seq: contents.frames.max(),
        start_time_ns: contents.start_time_ns,
        end_time_ns: contents.end_time_ns,
        dropped,
        problems: problems.list,
        problems_not_listed: problems.more,
        contents,
    }
}
