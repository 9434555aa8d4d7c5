//! What `framerec stats DIR` reports from the interval logs it reads.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{ByTag, Damage, EXTENSION, Interval, Run, StreamCounters, logs_in, read_log};
use crate::observe::Percentiles;

/// What `framerec stats DIR` reports: the runs of every log, overall and per interval.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub logs: Vec<PathBuf>,
    pub runs: Vec<RunSummary>,
    /// Lines skipped as unreadable, as `file:line: why`.
    pub damage: Vec<String>,
    /// Every interval merged, by tag.
    pub overall: BTreeMap<String, Percentiles>,
    pub intervals: Vec<IntervalSummary>,
    /// Frames received, written and dropped per stream over every interval, in the order the
    /// logs first name them (at most [`MAX_LOG_STREAMS`](super::MAX_LOG_STREAMS)); empty when
    /// the logs have no per-stream counters (one stream, or logs of an older framerec).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamFrames>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub file: PathBuf,
    /// Seconds since the epoch.
    pub start: f64,
    pub intervals: usize,
    /// How the run ended; `None` when it did not end cleanly (killed or crashed).
    pub ended: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IntervalSummary {
    /// Seconds from the first run's start.
    pub start_s: f64,
    pub length_s: f64,
    /// Frames received, written and dropped during the interval (from the counters).
    pub received: u64,
    pub written: u64,
    pub dropped: u64,
    pub histograms: BTreeMap<String, Percentiles>,
    /// The same per stream, when the log has per-stream counters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<StreamFrames>,
}

/// Frames of one stream received, written and dropped (in an interval, or over all).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamFrames {
    pub name: String,
    pub received: u64,
    pub written: u64,
    pub dropped: u64,
}

impl StreamFrames {
    /// What `now` counts beyond `before` (cumulative counters; `before` None: from zero).
    fn delta(now: &StreamCounters, before: Option<&StreamCounters>) -> StreamFrames {
        let (received, written, dropped) =
            before.map_or((0, 0, 0), |b| (b.received, b.written, b.dropped_total()));
        StreamFrames {
            name: now.name.clone(),
            received: now.received.saturating_sub(received),
            written: now.written.saturating_sub(written),
            dropped: now.dropped_total().saturating_sub(dropped),
        }
    }

    /// Adds `other`'s counts (saturating: a crafted log's counters must not overflow).
    fn add(&mut self, other: &StreamFrames) {
        self.received = self.received.saturating_add(other.received);
        self.written = self.written.saturating_add(other.written);
        self.dropped = self.dropped.saturating_add(other.dropped);
    }

    /// `depth: received R, written W, dropped D`: a stream's line where the totals are shown.
    pub fn line(&self) -> String {
        format!(
            "{}: received {}, written {}, dropped {}",
            self.name, self.received, self.written, self.dropped
        )
    }
}

impl Report {
    /// Reads the interval logs at `path` (a file, or every `.hlog` in a directory), and every
    /// interval's histograms merged by tag.
    pub fn read(path: &Path) -> io::Result<(Report, ByTag)> {
        let logs = logs_in(path)?;
        if logs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no interval logs (*.{EXTENSION}) in {} (was stats.interval-log-s 0, or are they in $LOGS_DIRECTORY?)",
                    path.display()
                ),
            ));
        }
        let mut runs = Vec::new();
        let mut damage = Vec::new();
        let mut overall = ByTag::new();
        for log in &logs {
            let (r, d) = read_log(log, &mut overall)?;
            runs.extend(r);
            damage.extend(d.iter().map(Damage::to_string));
        }
        runs.sort_by(|a, b| a.start.total_cmp(&b.start));
        let origin = runs.first().map_or(0.0, |r| r.start);
        let intervals: Vec<IntervalSummary> = runs
            .iter()
            .flat_map(|run| interval_summaries(run, origin))
            .collect();
        let streams = stream_totals(&intervals);
        let report = Report {
            logs,
            runs: runs
                .iter()
                .map(|r| RunSummary {
                    file: r.file.clone(),
                    start: r.start,
                    intervals: r.intervals.len(),
                    ended: r.ended.clone(),
                })
                .collect(),
            damage,
            overall: overall
                .iter()
                .map(|(t, h)| (t.clone(), Percentiles::of(h)))
                .collect(),
            intervals,
            streams,
        };
        Ok((report, overall))
    }

    /// One line per stream (see [`StreamFrames::line`]) over the whole report: what a text
    /// report shows beside its totals. Empty when the logs have no per-stream counters.
    pub fn stream_lines(&self) -> Vec<String> {
        self.streams.iter().map(StreamFrames::line).collect()
    }
}

/// The intervals of `run`, each with what its counters add to the interval before it (the
/// first: to zero), its start in seconds from `origin`.
fn interval_summaries(run: &Run, origin: f64) -> Vec<IntervalSummary> {
    let mut out = Vec::with_capacity(run.intervals.len());
    // The last interval that had counters.
    let mut prev: Option<&Interval> = None;
    for iv in &run.intervals {
        let before = |k: &str| prev.and_then(|p| p.counters.get(k)).copied().unwrap_or(0);
        let delta = |k: &str| {
            iv.counters
                .get(k)
                .map_or(0, |v| v.saturating_sub(before(k)))
        };
        let dropped_before = prev.map_or(0, Interval::dropped_total);
        let stream_before =
            |name: &str| prev.and_then(|p| p.streams.iter().find(|s| s.name == name));
        out.push(IntervalSummary {
            start_s: iv.start - origin,
            length_s: iv.length,
            received: delta("received"),
            written: delta("written"),
            dropped: iv.dropped_total().saturating_sub(dropped_before),
            histograms: iv.histograms.clone(),
            streams: iv
                .streams
                .iter()
                .map(|s| StreamFrames::delta(s, stream_before(&s.name)))
                .collect(),
        });
        if !iv.counters.is_empty() {
            prev = Some(iv);
        }
    }
    out
}

/// Each stream's frames over all `intervals`, in the order they first name it, at most
/// [`MAX_LOG_STREAMS`](super::MAX_LOG_STREAMS) streams (a crafted log's others are left out).
fn stream_totals(intervals: &[IntervalSummary]) -> Vec<StreamFrames> {
    let mut totals: Vec<StreamFrames> = Vec::new();
    for s in intervals.iter().flat_map(|iv| &iv.streams) {
        match totals.iter().position(|t| t.name == s.name) {
            Some(at) => totals[at].add(s),
            None if totals.len() < super::MAX_LOG_STREAMS => totals.push(s.clone()),
            None => {}
        }
    }
    totals
}
