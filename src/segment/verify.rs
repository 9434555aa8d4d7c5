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
struct Problems {
    list: Vec<Problem>,
    more: u64,
    cap: usize,
}

impl Problems {
    fn new(cap: usize) -> Self {
        Problems {
            list: Vec::new(),
            more: 0,
            cap,
        }
    }
    fn push(&mut self, p: Problem) {
        if self.list.len() < self.cap {
            self.list.push(p);
        } else {
            self.more += 1;
        }
    }
    /// Adds what another list kept and counted.
    fn extend(&mut self, items: impl IntoIterator<Item = Problem>, more: u64) {
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

/// Verifies segments (in recording order) as one recording: each on its own, then continuity
/// across all of them. `starts_at_zero` says the first segment of the recording is present, so
/// frame 0 must be accounted for. Works on runs of frames, not frames: time and memory grow
/// with the number of runs and drop notices (n log n), whatever the number of frames.
///
/// The segments' runs and drop notices move into the check: in the reports returned,
/// `contents.frames` and `contents.drops` are empty (everything else is kept).
pub fn verify_recording(mut segments: Vec<SegmentReport>, starts_at_zero: bool) -> RecordingReport {
    let mut problems = Problems::new(MAX_LISTED);
    let all_runs: usize = segments
        .iter()
        .map(|s| s.contents.frames.runs().len())
        .sum();
    let all_drops: usize = segments.iter().map(|s| s.contents.drops.len()).sum();
    let complete = segments.iter().all(|s| s.contents.complete())
        && all_runs <= MAX_RUNS_IN_RECORDING
        && all_drops <= MAX_DROPS_IN_RECORDING;
    let c = if complete {
        let mut runs: Vec<SeqRun> = Vec::with_capacity(all_runs);
        let mut drops: Vec<(u64, u64, NoticeReason)> = Vec::with_capacity(all_drops);
        for s in &mut segments {
            runs.extend(std::mem::take(&mut s.contents.frames).into_runs());
            drops.extend(
                std::mem::take(&mut s.contents.drops)
                    .into_iter()
                    .map(|d| (d.first.0, d.last.0, d.reason)),
            );
        }
        continuity(runs, drops, starts_at_zero, &mut problems)
    } else {
        fragmented(&mut segments, &mut problems)
    };
    let ok =
        problems.list.is_empty() && problems.more == 0 && segments.iter().all(SegmentReport::ok);
    RecordingReport {
        ok,
        segments,
        frames: c.frames,
        dropped: c.dropped,
        first_seq: c.first_seq,
        last_seq: c.last_seq,
        problems: problems.list,
        problems_not_listed: problems.more,
        missing: c.missing,
    }
}

/// How many runs of frames and drop notices [`verify_recording`] checks in all (besides
/// [`MAX_RUNS`](super::decode::MAX_RUNS) and [`MAX_DROPS`](super::decode::MAX_DROPS) per
/// segment): 16 MiB of runs (32 bytes each) and 20 MiB of notices (40 bytes each) at most, so
/// that with the check's own ranges a reading tool stays near its 64 MiB target.
pub const MAX_RUNS_IN_RECORDING: usize = 1 << 19;
/// See [`MAX_RUNS_IN_RECORDING`].
pub const MAX_DROPS_IN_RECORDING: usize = 1 << 19;

/// Keeps what the segments of one recording store, while they are read one after another,
/// under [`MAX_RUNS_IN_RECORDING`] runs and [`MAX_DROPS_IN_RECORDING`] notices in all: once a
/// segment would pass that, it and every later one keep only their counts, and
/// [`verify_recording`] reports the recording as too fragmented to check. So a recording of
/// many fragmented segments costs no more than one of few.
#[derive(Debug, Default)]
pub struct RecordingBudget {
    runs: usize,
    notices: usize,
    spent: bool,
}

impl RecordingBudget {
    pub fn admit(&mut self, report: &mut SegmentReport) {
        let runs = report.contents.frames.runs().len();
        let notices = report.contents.drops.len();
        if self.spent
            || self.runs + runs > MAX_RUNS_IN_RECORDING
            || self.notices + notices > MAX_DROPS_IN_RECORDING
        {
            self.spent = true;
            report.contents.forget_runs_and_notices();
        } else {
            self.runs += runs;
            self.notices += notices;
        }
    }
}

/// What is known of a recording too fragmented to check its continuity: the segments' counts
/// (frames written counted each time, dropped per reason, lowest and highest number), and one
/// [`Problem::Fragmented`]. Nothing is named missing. Empties the segments' runs and notices.
fn fragmented(segments: &mut [SegmentReport], problems: &mut Problems) -> Continuity {
    let mut c = Continuity::default();
    let (mut runs, mut notices) = (0, 0);
    for s in segments.iter_mut() {
        runs += s.contents.frames.runs().len();
        notices += s.contents.drops.len();
        c.frames += s.contents.frames.frames();
        for (reason, n) in &s.dropped {
            *c.dropped.entry(reason.clone()).or_insert(0) += n;
        }
        let lowest_drop = s.contents.min_dropped;
        for first in s.first_seq.into_iter().chain(lowest_drop) {
            c.first_seq = Some(c.first_seq.map_or(first, |f| f.min(first)));
        }
        for last in s.last_seq.into_iter().chain(s.contents.max_dropped) {
            c.last_seq = Some(c.last_seq.map_or(last, |l| l.max(last)));
        }
        s.contents.frames = SeqRuns::default();
        s.contents.drops = Vec::new();
    }
    problems.push(Problem::Fragmented { runs, notices });
    c
}

/// What the continuity check found besides its problems.
#[derive(Debug, Default, PartialEq, Eq)]
struct Continuity {
    /// Distinct frames written.
    frames: u64,
    dropped: BTreeMap<String, u64>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    missing: Vec<(u64, u64)>,
}

/// Continuity over runs of written frames (any order) and drop notices (first, last, reason):
/// every frame number from the start (0 when `starts_at_zero`) to the highest is written once
/// or named in exactly one drop notice, and log times do not go back as frame numbers go up.
/// Problems come in this order: frames written more than once, times going back, frames both
/// written and dropped, frames dropped twice, frames missing; each kind in frame order.
///
/// Where runs overlap (a frame written twice), the log times of the frames they share are not
/// compared: the duplicate is the problem reported.
fn continuity<R: Ord + AsRef<str>>(
    mut runs: Vec<SeqRun>,
    mut drops: Vec<(u64, u64, R)>,
    starts_at_zero: bool,
    problems: &mut Problems,
) -> Continuity {
    runs.sort_unstable_by_key(|r| (r.first, r.last, r.first_time));
    drops.sort_unstable();

    // How many runs hold each frame: a sweep over the starts and ends of each cluster of
    // overlapping runs (a run that overlaps none needs none).
    let mut dup: Option<(u64, u64, i64)> = None;
    let mut events: Vec<(u64, i64)> = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        let mut reach = runs[i].last;
        let mut j = i + 1;
        while j < runs.len() && runs[j].first <= reach {
            reach = reach.max(runs[j].last);
            j += 1;
        }
        if j - i > 1 {
            events.clear();
            for r in &runs[i..j] {
                events.push((r.first, 1));
                if let Some(end) = r.last.checked_add(1) {
                    events.push((end, -1));
                }
            }
            events.sort_unstable();
            let mut depth = 0i64;
            let mut e = 0;
            while e < events.len() {
                let at = events[e].0;
                while e < events.len() && events[e].0 == at {
                    depth += events[e].1;
                    e += 1;
                }
                // Frames at..next are held by `depth` runs.
                let Some(&(next, _)) = events.get(e) else {
                    break;
                };
                if depth >= 2 {
                    dup = match dup {
                        Some((a, b, n)) if n == depth && b + 1 == at => Some((a, next - 1, n)),
                        Some(d) => {
                            problems.push(duplicate(d));
                            Some((at, next - 1, depth))
                        }
                        None => Some((at, next - 1, depth)),
                    };
                }
            }
        }
        i = j;
    }
    drop(events);
    if let Some(d) = dup {
        problems.push(duplicate(d));
    }

    // Log times at the joins of runs that do not overlap (within a run they never go back).
    let mut prev: Option<SeqRun> = None;
    for r in &runs {
        if let Some(p) = prev
            && r.first > p.last
            && r.first_time < p.last_time
        {
            problems.push(Problem::TimeGoesBack {
                seq: r.first,
                log_time: r.first_time,
                prev_seq: p.last,
                prev_log_time: p.last_time,
            });
        }
        prev = match prev {
            Some(p) if p.last >= r.last => Some(p),
            _ => Some(*r),
        };
    }

    // The frames written, as sorted disjoint ranges.
    let mut written: Vec<(u64, u64)> = Vec::new();
    for r in &runs {
        match written.last_mut() {
            Some(w) if r.first <= w.1.saturating_add(1) => w.1 = w.1.max(r.last),
            _ => written.push((r.first, r.last)),
        }
    }
    drop(runs);
    let frames = written.iter().map(|(a, b)| b - a + 1).sum();

    // Walk the sequence space: each number is written once or inside exactly one drop range.
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for (first, last, reason) in &drops {
        let n = (last - first).saturating_add(1);
        match dropped.get_mut(reason.as_ref()) {
            Some(d) => *d += n,
            None => {
                dropped.insert(reason.as_ref().to_string(), n);
            }
        }
        let lo = written.partition_point(|w| w.1 < *first);
        if let Some(w) = written.get(lo).filter(|w| w.0 <= *last) {
            problems.push(Problem::WrittenAndDropped {
                seq: w.0.max(*first),
                reason: reason.as_ref().to_string(),
            });
        }
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
    // Frames written and frames dropped, both sorted: merged as they are walked.
    let intervals = Merged {
        a: written.iter().copied().peekable(),
        b: drops.iter().map(|(a, b, _)| (*a, *b)).peekable(),
    };
    let first_seq = match (written.first(), drops.first()) {
        (Some(w), Some(d)) => Some(w.0.min(d.0)),
        (w, d) => w.map(|w| w.0).or(d.map(|d| d.0)),
    };
    let last_seq = written
        .last()
        .map(|w| w.1)
        .into_iter()
        .chain(drops.iter().map(|d| d.1))
        .max();
    let mut missing = Vec::new();
    let mut next = if starts_at_zero { Some(0) } else { first_seq };
    for (a, b) in intervals {
        if let Some(n) = next
            && a > n
        {
            problems.push(Problem::Missing {
                first: n,
                last: a - 1,
            });
            missing.push((n, a - 1));
        }
        let after = b.saturating_add(1);
        next = Some(next.map_or(after, |n| n.max(after)));
    }
    Continuity {
        frames,
        dropped,
        first_seq,
        last_seq,
        missing,
    }
}

/// Two sorted iterators of ranges, walked as one sorted one.
struct Merged<A: Iterator<Item = (u64, u64)>, B: Iterator<Item = (u64, u64)>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = (u64, u64)>, B: Iterator<Item = (u64, u64)>> Iterator for Merged<A, B> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// The problem for frames `first..=last`, each written `count` times.
fn duplicate((first, last, count): (u64, u64, i64)) -> Problem {
    let count = count as usize;
    if first == last {
        Problem::Duplicate { seq: first, count }
    } else {
        Problem::DuplicateRange { first, last, count }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Runs of `frames` (seq, log_time) in file order, as one segment's scan makes them.
    fn runs_of(frames: &[(u64, u64)]) -> Vec<SeqRun> {
        let mut r = SeqRuns::default();
        for (s, t) in frames {
            r.push(*s, *t);
        }
        r.runs().to_vec()
    }

    fn drops(d: &[(u64, u64, &str)]) -> Vec<(u64, u64, String)> {
        d.iter().map(|(a, b, r)| (*a, *b, r.to_string())).collect()
    }

    /// Continuity of frames written in this order, with these drop notices.
    fn check(
        frames: &[(u64, u64)],
        d: &[(u64, u64, &str)],
        starts_at_zero: bool,
    ) -> (Continuity, Vec<Problem>) {
        let mut p = Problems::new(usize::MAX);
        let c = continuity(runs_of(frames), drops(d), starts_at_zero, &mut p);
        assert_eq!(p.more, 0);
        (c, p.list)
    }

    /// Frames 0..n, one every 10 ns.
    fn steady(range: std::ops::Range<u64>) -> Vec<(u64, u64)> {
        range.map(|s| (s, s * 10)).collect()
    }

    #[test]
    fn a_contiguous_recording_is_one_run_and_has_no_problem() {
        let frames = steady(0..1000);
        assert_eq!(runs_of(&frames).len(), 1);
        let (c, p) = check(&frames, &[], true);
        assert_eq!(p, vec![]);
        assert_eq!(
            (c.frames, c.first_seq, c.last_seq),
            (1000, Some(0), Some(999))
        );
    }

    #[test]
    fn missing_frames_are_named_unless_a_notice_explains_them() {
        let mut frames = steady(2..5);
        frames.extend(steady(8..10));
        let (c, p) = check(&frames, &[], true);
        assert_eq!(
            p,
            vec![
                Problem::Missing { first: 0, last: 1 },
                Problem::Missing { first: 5, last: 7 }
            ]
        );
        assert_eq!(c.missing, vec![(0, 1), (5, 7)]);
        let (_, p) = check(&frames, &[(5, 7, "queue_full")], false);
        assert_eq!(p, vec![], "from its first frame, notice explaining the gap");
    }

    #[test]
    fn a_frame_written_twice_is_a_duplicate_and_a_range_says_so_once() {
        // 0..=9, then 4 again, then 6..=8 again (a rewrite after a failed fsync, say).
        let mut frames = steady(0..10);
        frames.push((4, 40));
        frames.extend(steady(6..9));
        let (c, p) = check(&frames, &[], true);
        assert_eq!(
            p,
            vec![
                Problem::Duplicate { seq: 4, count: 2 },
                Problem::DuplicateRange {
                    first: 6,
                    last: 8,
                    count: 2
                },
            ]
        );
        assert_eq!(c.frames, 10, "distinct frames");
        assert_eq!(
            Problem::DuplicateRange {
                first: 6,
                last: 8,
                count: 2
            }
            .to_string(),
            "frames 6..=8 are written 2 times each"
        );
    }

    #[test]
    fn frames_dropped_twice_and_written_and_dropped() {
        let frames = steady(0..5);
        let (c, p) = check(
            &frames,
            &[(3, 6, "queue_full"), (6, 8, "lost"), (9, 9, "lost")],
            true,
        );
        assert_eq!(
            p,
            vec![
                Problem::WrittenAndDropped {
                    seq: 3,
                    reason: "queue_full".into()
                },
                Problem::DroppedTwice { first: 6, last: 6 },
            ]
        );
        assert_eq!(c.dropped["queue_full"], 4);
        assert_eq!(c.dropped["lost"], 4);
        assert_eq!(c.last_seq, Some(9));
    }

    #[test]
    fn frames_out_of_order_are_fine_while_time_goes_forward() {
        // Written 0..=4, 8..=9, 5..=7: three runs, sequence order restores the times.
        let mut frames = steady(0..5);
        frames.extend(steady(8..10));
        frames.extend(steady(5..8));
        assert_eq!(runs_of(&frames).len(), 3);
        let (c, p) = check(&frames, &[], true);
        assert_eq!(p, vec![]);
        assert_eq!(c.frames, 10);
    }

    #[test]
    fn time_going_back_is_found_inside_a_run_and_between_runs() {
        // Frame 3 goes back in time (a run splits there); frame 7, in a later segment, too.
        let frames = vec![(0, 0), (1, 10), (2, 20), (3, 15), (4, 30)];
        let later = vec![(5, 40), (6, 50)];
        let again = vec![(7, 45)];
        let mut runs = runs_of(&frames);
        assert_eq!(runs.len(), 2, "{runs:?}");
        runs.extend(runs_of(&later));
        runs.extend(runs_of(&again));
        let mut p = Problems::new(usize::MAX);
        continuity::<String>(runs, vec![], true, &mut p);
        assert_eq!(
            p.list,
            vec![
                Problem::TimeGoesBack {
                    seq: 3,
                    log_time: 15,
                    prev_seq: 2,
                    prev_log_time: 20
                },
                Problem::TimeGoesBack {
                    seq: 7,
                    log_time: 45,
                    prev_seq: 6,
                    prev_log_time: 50
                },
            ]
        );
    }

    #[test]
    fn problems_past_the_bound_are_counted_not_listed() {
        // Every other frame missing: 1000 gaps.
        let frames: Vec<(u64, u64)> = (0..1000).map(|s| (2 * s + 1, s)).collect();
        let mut p = Problems::new(MAX_LISTED);
        let c = continuity::<String>(runs_of(&frames), vec![], true, &mut p);
        assert_eq!(p.list.len(), MAX_LISTED);
        assert_eq!(p.more, 1000 - MAX_LISTED as u64);
        assert_eq!(c.missing.len(), 1000, "a repair still gets every gap");
    }

    /// What the per-frame check (the one before runs) finds: written frames one by one.
    #[derive(Debug, Default)]
    struct Model {
        frames: u64,
        first_seq: Option<u64>,
        last_seq: Option<u64>,
        dropped: BTreeMap<String, u64>,
        /// (seq, times written) of each frame written more than once.
        duplicates: Vec<(u64, usize)>,
        time_back: Vec<Problem>,
        written_and_dropped: Vec<Problem>,
        /// Frames named by more than one notice.
        dropped_twice: BTreeSet<u64>,
        missing: Vec<(u64, u64)>,
    }

    fn model(frames: &[(u64, u64)], drops: &[(u64, u64, String)], starts_at_zero: bool) -> Model {
        let mut m = Model::default();
        let mut written: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (s, t) in frames {
            written.entry(*s).or_default().push(*t);
        }
        m.frames = written.len() as u64;
        m.duplicates = written
            .iter()
            .filter(|(_, t)| t.len() > 1)
            .map(|(s, t)| (*s, t.len()))
            .collect();
        let firsts: Vec<(u64, u64)> = written
            .iter()
            .map(|(s, t)| (*s, *t.iter().min().unwrap()))
            .collect();
        for w in firsts.windows(2) {
            if w[1].1 < w[0].1 {
                m.time_back.push(Problem::TimeGoesBack {
                    seq: w[1].0,
                    log_time: w[1].1,
                    prev_seq: w[0].0,
                    prev_log_time: w[0].1,
                });
            }
        }
        let mut drops = drops.to_vec();
        drops.sort_unstable();
        let mut named: BTreeMap<u64, usize> = BTreeMap::new();
        for (a, b, reason) in &drops {
            *m.dropped.entry(reason.clone()).or_insert(0) += b - a + 1;
            if let Some(s) = (*a..=*b).find(|s| written.contains_key(s)) {
                m.written_and_dropped.push(Problem::WrittenAndDropped {
                    seq: s,
                    reason: reason.clone(),
                });
            }
            for s in *a..=*b {
                *named.entry(s).or_insert(0) += 1;
            }
        }
        m.dropped_twice = named
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| *s)
            .collect();
        let covered: BTreeSet<u64> = written.keys().chain(named.keys()).copied().collect();
        m.first_seq = covered.first().copied();
        m.last_seq = covered.last().copied();
        if let Some(last) = m.last_seq {
            let start = if starts_at_zero {
                0
            } else {
                m.first_seq.unwrap()
            };
            for s in start..=last {
                if covered.contains(&s) {
                    continue;
                }
                match m.missing.last_mut() {
                    Some(r) if r.1 + 1 == s => r.1 = s,
                    _ => m.missing.push((s, s)),
                }
            }
        }
        m
    }

    /// Frames in file order, where the first segment ends, drop notices, starts at zero.
    type Inputs = (Vec<(u64, u64)>, usize, Vec<(u64, u64, String)>, bool);

    fn inputs() -> impl Strategy<Value = Inputs> {
        let any_order = prop::collection::vec((0u64..60, 0u64..100), 0..80);
        // Distinct frames, mostly in order and mostly forward in time.
        let distinct = prop::collection::btree_set(0u64..80, 0..70)
            .prop_flat_map(|set| {
                let n = set.len();
                (
                    Just(set),
                    prop::collection::vec(0u64..4, n),
                    prop::collection::vec(any::<bool>(), n),
                )
            })
            .prop_map(|(set, jitter, swap)| {
                let mut v: Vec<(u64, u64)> = set
                    .iter()
                    .zip(&jitter)
                    .map(|(s, j)| (*s, s * 3 + j))
                    .collect();
                for (i, sw) in swap.iter().enumerate() {
                    if *sw && i + 1 < v.len() && i % 7 == 0 {
                        v.swap(i, i + 1);
                    }
                }
                v
            });
        let drops = prop::collection::vec(
            (
                0u64..80,
                0u64..6,
                prop::sample::select(vec!["lost", "queue_full"]),
            ),
            0..6,
        )
        .prop_map(|d| {
            d.into_iter()
                .map(|(a, n, r)| (a, a + n, r.to_string()))
                .collect::<Vec<_>>()
        });
        (
            prop_oneof![any_order, distinct],
            any::<prop::sample::Index>(),
            drops,
            any::<bool>(),
        )
            .prop_map(|(f, i, d, z)| {
                let split = i.index(f.len() + 1);
                (f, split, d, z)
            })
    }

    proptest! {
        #[test]
        fn runs_find_what_the_per_frame_check_finds((frames, split, drops, z) in inputs()) {
            let mut runs = runs_of(&frames[..split]);
            runs.extend(runs_of(&frames[split..]));
            let mut p = Problems::new(usize::MAX);
            let c = continuity(runs, drops.clone(), z, &mut p);
            let m = model(&frames, &drops, z);
            prop_assert_eq!(c.frames, m.frames);
            prop_assert_eq!(c.first_seq, m.first_seq);
            prop_assert_eq!(c.last_seq, m.last_seq);
            prop_assert_eq!(&c.dropped, &m.dropped);
            prop_assert_eq!(&c.missing, &m.missing);

            let kind = |p: &Problem| match p {
                Problem::Duplicate { .. } | Problem::DuplicateRange { .. } => 0,
                Problem::TimeGoesBack { .. } => 1,
                Problem::WrittenAndDropped { .. } => 2,
                Problem::DroppedTwice { .. } => 3,
                Problem::Missing { .. } => 4,
                _ => 5,
            };
            let kinds: Vec<u8> = p.list.iter().map(kind).collect();
            prop_assert!(kinds.windows(2).all(|w| w[0] <= w[1]), "in order: {:?}", p.list);
            let mut duplicates = Vec::new();
            let mut time_back = Vec::new();
            let mut written_and_dropped = Vec::new();
            let mut dropped_twice = BTreeSet::new();
            let mut missing = Vec::new();
            for q in &p.list {
                match q {
                    Problem::Duplicate { seq, count } => duplicates.push((*seq, *count)),
                    Problem::DuplicateRange { first, last, count } => {
                        prop_assert!(first < last);
                        duplicates.extend((*first..=*last).map(|s| (s, *count)));
                    }
                    Problem::TimeGoesBack { .. } => time_back.push(q.clone()),
                    Problem::WrittenAndDropped { .. } => written_and_dropped.push(q.clone()),
                    Problem::DroppedTwice { first, last } => dropped_twice.extend(*first..=*last),
                    Problem::Missing { first, last } => missing.push((*first, *last)),
                    other => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            prop_assert_eq!(&duplicates, &m.duplicates);
            // Where frames are written twice, the duplicate is the problem: times are compared
            // only where each frame is written once.
            if m.duplicates.is_empty() {
                prop_assert_eq!(&time_back, &m.time_back);
            }
            prop_assert_eq!(&written_and_dropped, &m.written_and_dropped);
            prop_assert_eq!(&dropped_twice, &m.dropped_twice);
            prop_assert_eq!(&missing, &m.missing);
        }
    }

    /// A drop notice for frames `first..=last`.
    fn notice(first: u64, last: u64, reason: &str) -> super::super::decode::DropNotice {
        super::super::decode::DropNotice {
            first: crate::frame::FrameSeq(first),
            last: crate::frame::FrameSeq(last),
            reason: super::super::decode::NoticeReason::from_name(reason),
            log_time: 0,
        }
    }

    #[test]
    fn a_recording_of_many_fragmented_segments_keeps_no_more_than_one_budget() {
        use super::super::decode::MAX_RUNS;
        // Segments each under their own cap (MAX_RUNS / 2 runs: alternating numbers), more of
        // them than the recording's budget holds.
        let per = MAX_RUNS as u64 / 2;
        let segments = 2 * (MAX_RUNS_IN_RECORDING as u64 / per) + 2;
        let mut budget = RecordingBudget::default();
        let mut reports = Vec::new();
        let mut kept = 0usize;
        for k in 0..segments {
            let mut c = SegmentContents::default();
            for i in 0..per {
                let seq = k * per + (i ^ 1);
                c.frames.push(seq, seq);
            }
            c.drop_notice(notice(
                10 * segments * per + k,
                10 * segments * per + k,
                "queue_full",
            ));
            let mut r = report("t", 0, c, Bounded::default());
            budget.admit(&mut r);
            kept += r.contents.frames.runs().len();
            reports.push(r);
        }
        assert!(kept <= MAX_RUNS_IN_RECORDING, "{kept} runs kept");
        let r = verify_recording(reports, true);
        assert!(!r.ok);
        assert!(
            r.problems
                .iter()
                .any(|p| matches!(p, Problem::Fragmented { .. })),
            "{:?}",
            r.problems
        );
        assert_eq!(r.frames, segments * per, "frames still counted exactly");
        assert_eq!(r.dropped.get("queue_full"), Some(&segments));
        assert_eq!(r.first_seq, Some(0));
        assert_eq!(r.last_seq, Some(10 * segments * per + segments - 1));
    }

    #[test]
    fn a_scan_past_its_caps_keeps_exact_counts_and_verify_reports_one_problem() {
        use super::super::decode::{MAX_DROPS, MAX_REASONS, MAX_RUNS, OTHER_REASONS};
        let mut c = SegmentContents::default();
        // Numbers alternating (1, 0, 3, 2, ...): each frame starts a run.
        let n = MAX_RUNS as u64 + 1000;
        for i in 0..n {
            c.frames.push(i ^ 1, i);
        }
        assert_eq!(c.frames.runs().len(), MAX_RUNS);
        assert_eq!(c.frames.frames(), n);
        assert_eq!(c.frames.not_kept(), 1000);
        assert_eq!((c.frames.min(), c.frames.max()), (Some(0), Some(n - 1)));
        // Then one notice per other number: half queue_full, half reasons of other writers,
        // more of them than are named one by one.
        let m = MAX_DROPS as u64 + 2 * MAX_REASONS as u64 + 10;
        let reason = |k: u64| {
            if k.is_multiple_of(2) {
                "queue_full".to_string()
            } else {
                format!("other-writer-{k}")
            }
        };
        for k in 0..m {
            c.drop_notice(notice(n + 2 * k, n + 2 * k, &reason(k)));
        }
        assert_eq!(c.drops.len(), MAX_DROPS);
        assert_eq!(c.drops_not_kept, m - MAX_DROPS as u64);
        assert_eq!(c.dropped_not_kept.len(), MAX_REASONS + 1, "others lumped");
        assert!(!c.complete());
        let mut want = BTreeMap::new();
        for k in 0..m {
            let r = if k < MAX_DROPS as u64 || c.dropped_not_kept.contains_key(&reason(k)) {
                reason(k)
            } else {
                OTHER_REASONS.to_string()
            };
            *want.entry(r).or_insert(0u64) += 1;
        }
        let segment = report("t", 0, c, Bounded::default());
        assert!(segment.ok(), "{:?}", segment.problems);
        assert_eq!(segment.dropped, want);
        assert_eq!(segment.dropped.values().sum::<u64>(), m);

        let r = verify_recording(vec![segment], true);
        assert!(!r.ok);
        assert_eq!(
            r.problems,
            vec![Problem::Fragmented {
                runs: MAX_RUNS,
                notices: MAX_DROPS
            }]
        );
        assert!(
            r.problems[0]
                .to_string()
                .contains("sequence continuity not checked past 262144 runs")
        );
        assert_eq!(r.frames, n);
        assert_eq!(r.dropped, want);
        assert_eq!(r.first_seq, Some(0));
        assert_eq!(r.last_seq, Some(n + 2 * (m - 1)));
        assert!(r.missing.is_empty());
        assert!(r.segments[0].contents.frames.runs().is_empty());
    }

    #[test]
    fn a_scan_within_its_caps_is_checked_as_before() {
        let mut c = SegmentContents::default();
        for i in 0..1000u64 {
            c.frames.push(i ^ 1, i);
        }
        c.drop_notice(notice(1000, 1000, "queue_full"));
        assert!(c.complete());
        let r = verify_recording(vec![report("t", 0, c, Bounded::default())], true);
        // 0 after 1: a time going back at each join, not fragmentation.
        assert!(
            !r.problems
                .iter()
                .any(|p| matches!(p, Problem::Fragmented { .. }))
        );
        assert_eq!((r.frames, r.last_seq), (1000, Some(1000)));
    }

    #[test]
    fn a_notice_reason_is_small_and_an_unknown_one_bounded() {
        use super::super::decode::{DropNotice, MAX_REASON_BYTES};
        assert!(std::mem::size_of::<DropNotice>() <= 40);
        assert_eq!(
            NoticeReason::from_name("queue_full"),
            NoticeReason::Known(crate::frame::DropReason::QueueFull)
        );
        let long = "é".repeat(MAX_REASON_BYTES);
        let r = NoticeReason::from_name(&long);
        assert!(matches!(r, NoticeReason::Other(_)));
        assert!(r.as_str().len() <= MAX_REASON_BYTES && long.starts_with(r.as_str()));
        // Ordered as names, as the strings they replace were.
        assert!(NoticeReason::from_name("lost") < NoticeReason::from_name("other"));
        assert!(NoticeReason::from_name("other") < NoticeReason::from_name("queue_full"));
    }
}
