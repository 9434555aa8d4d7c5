//! A recording verified as a whole: continuity across its segments, within a budget of
//! runs and notices.

use super::continuity::{Continuity, continuity};
use super::*;

/// Verifies segments (in recording order) as one recording: each on its own, then continuity
/// of each stream (by name) across all of them. `starts_at_zero` says the first segment of the
/// recording is present, so each stream's frame 0 must be accounted for. Works on runs of
/// frames, not frames: time and memory grow with the number of runs and drop notices
/// (n log n), whatever the number of frames. In a recording of several streams each problem
/// of continuity names its stream.
///
/// The segments' runs and drop notices move into the check: in the reports returned, each
/// stream's `frames` and `drops` in `contents` are empty (everything else is kept).
pub fn verify_recording(mut segments: Vec<SegmentReport>, starts_at_zero: bool) -> RecordingReport {
    let mut problems = Problems::new(MAX_LISTED);
    let all_runs: usize = segments.iter().map(|s| runs_kept(&s.contents)).sum();
    let all_drops: usize = segments.iter().map(|s| drops_kept(&s.contents)).sum();
    let complete = segments.iter().all(|s| s.contents.complete())
        && all_runs <= MAX_RUNS_IN_RECORDING
        && all_drops <= MAX_DROPS_IN_RECORDING;
    let names = stream_names(&segments);
    let foreign = segments.iter().any(|s| s.contents.is_foreign());
    let several = names.len() > 1;
    let mut streams = Vec::with_capacity(names.len());
    let mut missing = BTreeMap::new();
    // Each stream's time span, before its runs are taken for the continuity check.
    let spans = time_spans(&segments, &names);
    if complete {
        for (name, topic, kind) in &names {
            let mut runs: Vec<SeqRun> = Vec::new();
            let mut drops: Vec<(u64, u64, NoticeReason)> = Vec::new();
            for s in segments.iter_mut().flat_map(|s| &mut s.contents.streams) {
                if s.name == *name {
                    runs.extend(std::mem::take(&mut s.frames).into_runs());
                    drops.extend(
                        std::mem::take(&mut s.drops)
                            .into_iter()
                            .map(|d| (d.first.0, d.last.0, d.reason)),
                    );
                }
            }
            let mut found = Problems::new(MAX_LISTED);
            let mut c = continuity(runs, drops, starts_at_zero, &mut found);
            if foreign {
                // Another writer's sequence numbers: gaps are not framerec's to explain.
                found = Problems::new(MAX_LISTED);
                c.missing.clear();
            }
            problems.extend(
                found.list.into_iter().map(|p| p.of_stream(name, several)),
                found.more,
            );
            streams.push(summary(name, topic, *kind, &c, spans[name]));
            missing.insert(name.clone(), c.missing);
        }
    } else {
        for (name, topic, kind) in &names {
            let c = fragmented(&segments, name);
            streams.push(summary(name, topic, *kind, &c, spans[name]));
        }
        let (runs, notices) = (all_runs, all_drops);
        problems.push(Problem::Fragmented { runs, notices });
        for s in segments.iter_mut() {
            s.contents.forget_runs_and_notices();
        }
    }
    let mut dropped = BTreeMap::new();
    for (reason, n) in streams.iter().flat_map(|s| &s.dropped) {
        *dropped.entry(reason.clone()).or_insert(0) += n;
    }
    let ok =
        problems.list.is_empty() && problems.more == 0 && segments.iter().all(SegmentReport::ok);
    RecordingReport {
        ok,
        segments,
        frames: streams.iter().map(|s| s.frames).sum(),
        dropped,
        first_seq: streams.first().and_then(|s| s.first_seq),
        last_seq: streams.first().and_then(|s| s.last_seq),
        streams,
        problems: problems.list,
        problems_not_listed: problems.more,
        missing,
    }
}

/// The streams of the segments by name, in the order they first come (the first segment's
/// table, then any a later segment adds), with the topic and kind they first have.
fn stream_names(segments: &[SegmentReport]) -> Vec<(String, String, StreamKind)> {
    let mut names: Vec<(String, String, StreamKind)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for s in segments.iter().flat_map(|s| &s.contents.streams) {
        if seen.insert(s.name.as_str()) {
            names.push((s.name.clone(), s.topic.clone(), s.kind));
        }
    }
    names
}

/// Each stream's time span (first and last log time) over `segments`.
fn time_spans(
    segments: &[SegmentReport],
    names: &[(String, String, StreamKind)],
) -> BTreeMap<String, (Option<u64>, Option<u64>)> {
    names
        .iter()
        .map(|(name, _, _)| {
            let runs = segments
                .iter()
                .flat_map(|s| &s.contents.streams)
                .filter(|s| s.name == *name)
                .flat_map(|s| s.frames.runs());
            (name.clone(), super::time_span(runs))
        })
        .collect()
}

fn summary(
    name: &str,
    topic: &str,
    kind: StreamKind,
    c: &Continuity,
    (first_time_ns, last_time_ns): (Option<u64>, Option<u64>),
) -> StreamReport {
    StreamReport {
        first_time_ns,
        last_time_ns,
        name: name.to_string(),
        topic: topic.to_string(),
        kind,
        frames: c.frames,
        first_seq: c.first_seq,
        last_seq: c.last_seq,
        dropped: c.dropped.clone(),
    }
}

fn runs_kept(c: &SegmentContents) -> usize {
    c.streams.iter().map(|s| s.frames.runs().len()).sum()
}

fn drops_kept(c: &SegmentContents) -> usize {
    c.streams.iter().map(|s| s.drops.len()).sum()
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
        let runs = runs_kept(&report.contents);
        let notices = drops_kept(&report.contents);
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

/// What is known of stream `name` in a recording too fragmented to check its continuity: the
/// segments' counts (frames written counted each time, dropped per reason, lowest and highest
/// number). Nothing is named missing.
fn fragmented(segments: &[SegmentReport], name: &str) -> Continuity {
    let mut c = Continuity::default();
    for s in segments
        .iter()
        .flat_map(|s| &s.contents.streams)
        .filter(|s| s.name == name)
    {
        c.frames += s.frames.frames();
        for (reason, n) in s.dropped() {
            *c.dropped.entry(reason).or_insert(0) += n;
        }
        for first in s.frames.min().into_iter().chain(s.min_dropped) {
            c.first_seq = Some(c.first_seq.map_or(first, |f| f.min(first)));
        }
        for last in s.frames.max().into_iter().chain(s.max_dropped) {
            c.last_seq = Some(c.last_seq.map_or(last, |l| l.max(last)));
        }
    }
    c
}
