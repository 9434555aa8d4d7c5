//! What `framerec stats DIR` reports from the interval logs it reads.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use super::{ByTag, Damage, EXTENSION, logs_in, read_log};
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
        let mut intervals = Vec::new();
        for run in &runs {
            let mut prev: BTreeMap<String, u64> = BTreeMap::new();
            for iv in &run.intervals {
                let delta = |k: &str| {
                    iv.counters
                        .get(k)
                        .map_or(0, |v| v.saturating_sub(prev.get(k).copied().unwrap_or(0)))
                };
                let dropped_before: u64 = prev
                    .iter()
                    .filter(|(k, _)| k.starts_with("dropped."))
                    .fold(0u64, |sum, (_, v)| sum.saturating_add(*v));
                intervals.push(IntervalSummary {
                    start_s: iv.start - origin,
                    length_s: iv.length,
                    received: delta("received"),
                    written: delta("written"),
                    dropped: iv.dropped_total().saturating_sub(dropped_before),
                    histograms: iv.histograms.clone(),
                });
                if !iv.counters.is_empty() {
                    prev = iv.counters.clone();
                }
            }
        }
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
        };
        Ok((report, overall))
    }
}
