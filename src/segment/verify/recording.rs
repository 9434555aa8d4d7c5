//! A recording verified as a whole: continuity across its segments, within a budget of
//! runs and notices.

use super::continuity::{Continuity, continuity};
use super::*;

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
