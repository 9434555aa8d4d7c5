//! Verification of segments and whole recordings: intact chunks, a summary that matches the
//! data, well-formed images, and sequence continuity where every missing frame is explained by a
//! drop notice.
//!
//! Another writer's file gets every check that applies to any MCAP file (structure, CRCs,
//! summary, message indexes, images on `foxglove.RawImage` channels); the framerec checks it
//! cannot have are named in [`SegmentReport::not_checked`], and continuity is not checked.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::decode::{
    Bounded, DecodeError, MAX_LISTED, MessageRef, NoticeReason, SegmentContents, SeqRun,
    StreamKind, decode_accel, decode_raw_image, parse_source,
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
    #[error("stream {stream}: {problem}")]
    InStream {
        stream: String,
        problem: Box<Problem>,
    },
    #[error("frame {seq}: bad accelerometer message: {what}")]
    BadAccel { seq: u64, what: String },
}

impl Problem {
    /// This problem, named for stream `stream` when the recording has more than one (a
    /// one-stream recording's problems read as format v1's did).
    pub fn of_stream(self, stream: &str, several: bool) -> Problem {
        if several {
            Problem::InStream {
                stream: stream.to_string(),
                problem: Box::new(self),
            }
        } else {
            self
        }
    }
}

/// What verify found of one stream (in a segment, or over a recording).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamReport {
    pub name: String,
    pub topic: String,
    pub kind: StreamKind,
    /// Frames written (over a recording: distinct frames).
    pub frames: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Frames named in drop notices, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Log times of its first and last frames.
    pub first_time_ns: Option<u64>,
    pub last_time_ns: Option<u64>,
}

/// The earliest first and latest last log time of `runs`.
pub(crate) fn time_span<'a>(
    runs: impl IntoIterator<Item = &'a crate::segment::SeqRun>,
) -> (Option<u64>, Option<u64>) {
    runs.into_iter().fold((None, None), |(a, b), r| {
        (
            Some(a.map_or(r.first_time, |a: u64| a.min(r.first_time))),
            Some(b.map_or(r.last_time, |b: u64| b.max(r.last_time))),
        )
    })
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
    /// Over all streams.
    pub dropped: BTreeMap<String, u64>,
    /// Each stream's frames and drops (the top-level `frames` and `dropped` are their totals,
    /// `first_seq` and `last_seq` the first stream's).
    pub streams: Vec<StreamReport>,
    /// framerec's checks that could not be applied: the segment is another writer's (see
    /// [`not_checked`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_checked: Vec<&'static str>,
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
    /// Distinct frames written, over all streams.
    pub frames: u64,
    /// Frames dropped by reason, over all streams.
    pub dropped: BTreeMap<String, u64>,
    /// The first stream's (depth's, in a format v1 recording).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Each stream, by name, in the order the recording's first segment lists them.
    pub streams: Vec<StreamReport>,
    /// Problems across segments (continuity), the first [`MAX_LISTED`]; each segment lists
    /// its own.
    pub problems: Vec<Problem>,
    /// Problems across segments beyond those listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub problems_not_listed: u64,
    /// Every range of frames missing with no drop notice to explain it (each is also a
    /// [`Problem::Missing`], listed or counted), by stream name: what a repair names as lost.
    #[serde(skip)]
    pub missing: BTreeMap<String, Vec<(u64, u64)>>,
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
            images.push((m.stream, p));
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
            images.push((m.stream, p));
        }
    })?;
    Ok(report(name, src.len(), contents, images))
}

/// Verifies the segment file at `path`, read in bounded memory.
pub fn verify_file(path: &Path) -> io::Result<SegmentReport> {
    verify_source(&path.display().to_string(), &FileSource::open(path)?)
}

/// What is wrong with a stream message, if anything: an image that does not hold its pixels,
/// an accelerometer message without its raw reading.
fn image_problem(m: &MessageRef, data: &[u8]) -> Option<Problem> {
    let seq = m.sequence as u64;
    if m.kind == StreamKind::Accel {
        return decode_accel(data).err().map(|what| Problem::BadAccel {
            seq,
            what: what.to_string(),
        });
    }
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

/// The summary's counts against what the scan found: chunk indexes against chunks, and the
/// statistics' message and chunk counts.
fn check_summary(contents: &SegmentContents, problems: &mut Problems) {
    let Some(summary) = &contents.summary else {
        return;
    };
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

/// The report on a scanned segment of `len` bytes; `images` are its messages' image problems,
/// in message order.
fn report(
    name: &str,
    len: u64,
    contents: SegmentContents,
    images: Bounded<(usize, Problem)>,
) -> SegmentReport {
    let mut problems = Problems::new(MAX_LISTED);
    let several = contents.streams.len() > 1;
    let name_of = |i: usize| contents.streams.get(i).map_or("?", |s| s.name.as_str());
    problems.extend(
        contents.damage.iter().cloned().map(Problem::Damage),
        contents.damage.more(),
    );
    problems.extend(
        contents.damaged_chunks.iter().map(|c| {
            Problem::DamagedFrames {
                offset: c.offset,
                first: c.first,
                last: c.last,
                count: c.count,
            }
            .of_stream(name_of(c.stream), several)
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

    check_summary(&contents, &mut problems);

    problems.extend(
        images
            .iter()
            .map(|(i, p)| p.clone().of_stream(name_of(*i), several)),
        images.more(),
    );

    let streams: Vec<StreamReport> = contents
        .streams
        .iter()
        .map(|s| {
            let (first_time_ns, last_time_ns) = time_span(s.frames.runs());
            StreamReport {
                name: s.name.clone(),
                topic: s.topic.clone(),
                kind: s.kind,
                frames: s.frames.frames(),
                first_seq: s.frames.min(),
                last_seq: s.frames.max(),
                dropped: s.dropped(),
                first_time_ns,
                last_time_ns,
            }
        })
        .collect();
    let mut dropped = BTreeMap::new();
    for (reason, n) in streams.iter().flat_map(|s| &s.dropped) {
        *dropped.entry(reason.clone()).or_insert(0) += n;
    }
    SegmentReport {
        name: name.to_string(),
        bytes: len,
        finalized: contents.finalized,
        chunks: contents.chunks.count as usize,
        frames: contents.stream_messages(),
        first_seq: streams.first().and_then(|s| s.first_seq),
        last_seq: streams.first().and_then(|s| s.last_seq),
        start_time_ns: contents.start_time_ns,
        end_time_ns: contents.end_time_ns,
        dropped,
        streams,
        not_checked: not_checked(&contents),
        problems: problems.list,
        problems_not_listed: problems.more,
        contents,
    }
}

/// The checks framerec makes of its own segments that it cannot make of `contents`: another
/// writer's file has no drop notices to explain gaps in sequence numbers, and framerec does
/// not know the content of channels whose schema it does not write. Structure, chunk CRCs, the
/// data section and summary CRCs, and the summary's counts are checked all the same.
pub fn not_checked(contents: &SegmentContents) -> Vec<&'static str> {
    let mut out = Vec::new();
    if contents.is_foreign() {
        out.push("sequence continuity against drop notices (not a framerec file)");
    }
    if contents.has_other_channels() {
        out.push("message content of channels whose schema framerec does not write");
    }
    out
}
