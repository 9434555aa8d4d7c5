//! `framerec tune`: how fast the recorder itself writes on a directory with each candidate
//! setting (buffered or direct, write size, writer count), measured with the library's record
//! path and an unpaced synthetic source in a temporary directory inside it, so fsync cadence,
//! preallocation and the rest are as a recording has them. Candidates run in interleaved
//! rounds, each round in a rotated order, so drift in the disk's state hits all alike.

mod settings;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};

use crate::config::{Config, SourceConfig, StatsSocket};
use crate::io::IoMode;
use crate::io::mode::FsKind;
use crate::pipeline::receiver::Limits;
use crate::recorder::{RecordError, RunReport};
use crate::source::SyntheticConfig;

pub use settings::{SettingsError, write_settings};

/// The shortest run worth timing: shorter ones measure start-up and the closing fsync.
pub const MIN_RUN: Duration = Duration::from_millis(250);
/// Free bytes the directory needs before tuning starts.
pub const MIN_FREE_BYTES: u64 = 512 << 20;
/// Most rounds, however long the budget.
const MAX_ROUNDS: usize = 5;

/// One setting measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub io_mode: IoMode,
    pub max_write_bytes: usize,
    pub writers: usize,
}

impl Candidate {
    /// Buffered and direct, 1 and 4 MiB writes, 1, 2, 4 and 8 writers.
    pub fn all() -> Vec<Candidate> {
        let mut all = Vec::new();
        for io_mode in [IoMode::Buffered, IoMode::Direct] {
            for max_write_bytes in [1 << 20, 4 << 20] {
                for writers in [1, 2, 4, 8] {
                    all.push(Candidate {
                        io_mode,
                        max_write_bytes,
                        writers,
                    });
                }
            }
        }
        all
    }

    /// `direct 4 MiB x2`.
    pub fn label(&self) -> String {
        format!(
            "{} {} MiB x{}",
            self.io_mode.as_str(),
            self.max_write_bytes >> 20,
            self.writers
        )
    }
}

/// One run of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub mb_per_s: f64,
    /// CPU seconds per GiB written, the receiver thread (the synthetic source) left out.
    pub cpu_s_per_gib: f64,
}

/// What became of a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Measured(Vec<Sample>),
    /// It cannot run here (direct where `O_DIRECT` is refused), and why.
    NotApplicable(String),
}

/// A candidate and its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub candidate: Candidate,
    pub outcome: Outcome,
}

impl Row {
    /// Median MB/s, spread ((max - min) / median) and median CPU s/GiB of the samples.
    pub fn summary(&self) -> Option<(f64, f64, f64)> {
        let Outcome::Measured(samples) = &self.outcome else {
            return None;
        };
        let mb: Vec<f64> = samples.iter().map(|s| s.mb_per_s).collect();
        let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_s_per_gib).collect();
        let median_mb = median(&mb)?;
        let (lo, hi) = mb
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        Some((median_mb, (hi - lo) / median_mb.max(1e-9), median(&cpu)?))
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// What tuning measured.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct TuneReport {
    pub rows: Vec<Row>,
    pub rounds: usize,
    pub run: Duration,
}

impl TuneReport {
    /// The candidate with the highest median MB/s, if any was measured.
    pub fn best(&self) -> Option<Candidate> {
        self.rows
            .iter()
            .filter_map(|r| Some((r.candidate, r.summary()?.0)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(c, _)| c)
    }
}

/// Why tuning could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("{path} does not exist or is not a directory")]
    NoDir { path: PathBuf },
    #[error(
        "{path} has {free} bytes free; tuning writes up to {need} bytes at a time: free some space or tune another directory"
    )]
    NoSpace { path: PathBuf, free: u64, need: u64 },
    #[error("a budget of {seconds} s is too short: {candidates} candidates need at least {min} s")]
    Budget {
        seconds: f64,
        candidates: usize,
        min: f64,
    },
    #[error("cannot use the scratch directory {path}")]
    Scratch {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted; the scratch directory was removed")]
    Interrupted,
    #[error("no candidate could be measured; the first failed: {first}")]
    NothingMeasured { first: String },
}

/// Rounds and the length of each run for a budget shared by `candidates`.
pub fn plan(budget: Duration, candidates: usize) -> Result<(usize, Duration), TuneError> {
    let n = candidates.max(1) as u32;
    let min = MIN_RUN * n;
    if budget < min {
        return Err(TuneError::Budget {
            seconds: budget.as_secs_f64(),
            candidates: n as usize,
            min: min.as_secs_f64(),
        });
    }
    // Runs of at least twice the minimum where the budget allows, in as many rounds as fit.
    let rounds = (budget.as_secs_f64() / (2.0 * min.as_secs_f64())) as usize;
    let rounds = rounds.clamp(1, MAX_ROUNDS);
    Ok((rounds, budget / (n * rounds as u32)))
}

/// The scratch directory inside the tuned one, removed when dropped (also on error and after
/// Ctrl-C, which stops the run in progress through `stop`).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Measures every candidate on `dir` within about `budget` (plus start-up and closing of each
/// run). `progress(done, total, candidate)` is called before each run. A set `stop` ends the
/// run in progress and returns [`TuneError::Interrupted`].
pub fn tune(
    dir: &Path,
    budget: Duration,
    stop: &Arc<AtomicBool>,
    progress: &mut dyn FnMut(usize, usize, &Candidate),
) -> Result<TuneReport, TuneError> {
    if !dir.is_dir() {
        return Err(TuneError::NoDir {
            path: dir.to_path_buf(),
        });
    }
    let candidates = Candidate::all();
    let (rounds, run) = plan(budget, candidates.len())?;
    let frame_bytes = run_config(dir, &candidates[0]).source.frame_bytes().max(1);
    let free = free_bytes(dir)?;
    if free < MIN_FREE_BYTES {
        return Err(TuneError::NoSpace {
            path: dir.to_path_buf(),
            free,
            need: MIN_FREE_BYTES,
        });
    }
    // A run writes at most a third of what is free (deleted before the next run).
    let max_frames = (free / 3 / frame_bytes).max(1);
    let scratch_path = dir.join(format!(".framerec-tune.{}", std::process::id()));
    let scratch_err = |source| TuneError::Scratch {
        path: scratch_path.clone(),
        source,
    };
    std::fs::create_dir(&scratch_path).map_err(scratch_err)?;
    let scratch = Scratch(scratch_path.clone());
    let mut rows: Vec<Row> = candidates
        .iter()
        .map(|c| Row {
            candidate: *c,
            outcome: Outcome::Measured(Vec::new()),
        })
        .collect();
    if let Some(why) = direct_not_applicable(&scratch.0) {
        for r in rows.iter_mut().filter(|r| r.candidate.io_mode.is_direct()) {
            r.outcome = Outcome::NotApplicable(why.clone());
        }
    }
    let limits = Limits {
        frames: Some(max_frames),
        duration: Some(run),
    };
    run_rounds(&mut rows, rounds, &scratch.0, limits, stop, progress)?;
    drop(scratch);
    let report = TuneReport { rows, rounds, run };
    if report.best().is_none() {
        let first = report.rows.iter().find_map(|r| match &r.outcome {
            Outcome::NotApplicable(why) => Some(format!("{}: {why}", r.candidate.label())),
            Outcome::Measured(_) => None,
        });
        return Err(TuneError::NothingMeasured {
            first: first.unwrap_or_default(),
        });
    }
    Ok(report)
}

/// Every candidate once per round, each round starting one further along, so a change in the
/// disk's state during tuning is spread over all of them.
fn run_rounds(
    rows: &mut [Row],
    rounds: usize,
    scratch: &Path,
    limits: Limits,
    stop: &Arc<AtomicBool>,
    progress: &mut dyn FnMut(usize, usize, &Candidate),
) -> Result<(), TuneError> {
    let n = rows.len();
    let total = rounds * n;
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            progress(round * n + k, total, &rows[i].candidate);
            if matches!(rows[i].outcome, Outcome::NotApplicable(_)) {
                continue;
            }
            let run_dir = scratch.join(format!("run-{round}-{i}"));
            let result = measure(&run_dir, &rows[i].candidate, limits, stop);
            std::fs::remove_dir_all(&run_dir).map_err(|source| TuneError::Scratch {
                path: run_dir.clone(),
                source,
            })?;
            if stop.load(Ordering::Relaxed) {
                return Err(TuneError::Interrupted);
            }
            match (&mut rows[i].outcome, result) {
                (Outcome::Measured(samples), Ok(s)) => samples.push(s),
                (outcome, Err(why)) => *outcome = Outcome::NotApplicable(why),
                (Outcome::NotApplicable(_), Ok(_)) => {}
            }
        }
    }
    if let Some(first) = rows.first() {
        progress(total, total, &first.candidate);
    }
    Ok(())
}

/// Why direct candidates are not run in `dir`, if they are not: a memory filesystem (where
/// `O_DIRECT`, if accepted, is the same copy), or a probe write refused.
fn direct_not_applicable(dir: &Path) -> Option<String> {
    if let Ok(FsKind::Memory(name)) = FsKind::of_dir(dir) {
        return Some(format!("{name} is memory; O_DIRECT saves nothing"));
    }
    crate::io::mode::probe_direct(dir)
        .err()
        .map(|e| format!("O_DIRECT refused: {e}"))
}

fn free_bytes(dir: &Path) -> Result<u64, TuneError> {
    let vfs = nix::sys::statvfs::statvfs(dir).map_err(|e| TuneError::Scratch {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    Ok(vfs.blocks_available() as u64 * vfs.fragment_size() as u64)
}

/// The recorder's configuration for one run of `c` into `dir`: the defaults, an unpaced
/// synthetic source, no statistics endpoints or interval log.
pub fn run_config(dir: &Path, c: &Candidate) -> Config {
    let mut cfg = Config {
        output_dir: dir.to_path_buf(),
        source: SourceConfig::Synthetic(SyntheticConfig {
            fps: 0,
            // A table copy: rendering the scene (~0.5 ms a frame) would measure the source.
            content: crate::source::synthetic::Content::Pattern,
            ..SyntheticConfig::default()
        }),
        ..Config::default()
    };
    cfg.writer.io_mode = c.io_mode;
    cfg.writer.max_write_bytes = c.max_write_bytes;
    cfg.writer.writers = c.writers;
    cfg.stats.socket = StatsSocket::Off;
    cfg.stats.metrics_addr = None;
    cfg.stats.interval_log = None;
    cfg
}

/// One run of `c`; `Err` says why it does not apply here.
fn measure(
    dir: &Path,
    c: &Candidate,
    limits: Limits,
    stop: &Arc<AtomicBool>,
) -> Result<Sample, String> {
    let before = process_cpu();
    let report: RunReport = crate::recorder::record(&run_config(dir, c), limits, stop.clone())
        .map_err(|e: RecordError| error_chain(&e))?;
    let spent = process_cpu()
        .saturating_sub(before)
        .saturating_sub(report.receiver_cpu);
    if let Some(f) = &report.failure {
        return Err(f.to_string());
    }
    if c.io_mode.is_direct() && !report.direct_io {
        return Err("the filesystem refuses O_DIRECT".into());
    }
    let gib = report.totals.written_bytes as f64 / f64::from(1u32 << 30);
    Ok(Sample {
        mb_per_s: report.mb_per_s(),
        cpu_s_per_gib: spent.as_secs_f64() / gib.max(1e-9),
    })
}

/// CPU time of the whole process so far, user and system.
fn process_cpu() -> Duration {
    use nix::sys::time::TimeValLike as _;
    let t =
        |tv: nix::sys::time::TimeVal| Duration::from_micros(tv.num_microseconds().max(0) as u64);
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| t(u.user_time()) + t(u.system_time()))
        .unwrap_or_default()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_in_rounds() {
        let n = Candidate::all().len();
        assert_eq!(n, 16);
        let (rounds, run) = plan(Duration::from_secs(20), n).unwrap();
        assert_eq!(rounds, 2);
        assert_eq!(run, Duration::from_millis(625));
        assert_eq!(plan(Duration::from_secs(4), n).unwrap().0, 1);
        assert_eq!(plan(Duration::from_secs(600), n).unwrap().0, MAX_ROUNDS);
        let err = plan(Duration::from_secs(1), n).unwrap_err().to_string();
        assert!(err.contains("at least 4 s"), "{err}");
    }

    #[test]
    fn the_best_is_the_highest_median_and_spread_is_relative() {
        let s = |mb| Sample {
            mb_per_s: mb,
            cpu_s_per_gib: 0.5,
        };
        let c = Candidate::all();
        let report = TuneReport {
            rows: vec![
                Row {
                    candidate: c[0],
                    outcome: Outcome::Measured(vec![s(100.0), s(300.0), s(200.0)]),
                },
                Row {
                    candidate: c[9],
                    outcome: Outcome::Measured(vec![s(250.0), s(240.0)]),
                },
                Row {
                    candidate: c[10],
                    outcome: Outcome::NotApplicable("refused".into()),
                },
            ],
            rounds: 3,
            run: Duration::from_secs(1),
        };
        assert_eq!(report.best(), Some(c[9]));
        assert_eq!(report.rows[0].summary(), Some((200.0, 1.0, 0.5)));
        assert_eq!(report.rows[2].summary(), None);
    }
}
