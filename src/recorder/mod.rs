//! A whole recording: builds the source, queue, receiver thread and writer pool from a
//! [`Config`], runs them until a limit, a stop request or the end of the source, drains, and
//! reports. The CLI, tests and benchmarks all record through [`record`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::resource::UsageWho;
use serde::Serialize;

use crate::config::{Config, Layout, SourceConfig, StatsSocket};
use crate::frame::{ALIGN, BufferPool, DropReason, StreamInfo, host_real_ns, round_up};
use crate::hlog::IntervalLogWriter;
use crate::ledger::{Ledger, Tally};
use crate::observe::{
    Counters, Histograms, Percentiles, Published, SharedHistograms, Snapshot, StreamStats,
    cpu_time, prometheus_text,
};
use crate::pipeline::intake;
use crate::pipeline::queue::{FrameQueue, OverflowPolicy};
use crate::pipeline::receiver::{self, Limits, ReceiverParts, StopReason};
use crate::repair::{self, AtStart};
use crate::segment::ros2::Profile;
use crate::serve::{RenderFn, ServeError, Server, SnapshotFn};
use crate::service::{Notifier, Progress};
use crate::sink::{
    self, Backend, IoMode, LiveSettings, RecordingTarget, SegmentListener, WriterError,
    WriterParts, WriterReport,
};
use crate::source::pipe::Reject;
use crate::source::{
    FakenectSource, FreenectSource, PipeSource, PushSource, Source, SourceError, SyntheticSource,
};
use crate::stop::Stop;
use crate::store::lock::{self, LockError};

mod finish;
pub(crate) mod reload;
mod start;
mod supervise;

/// Errors that keep a recording from starting.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create the output directory {path}")]
    OutputDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{dir} holds an unfinished segment ({first}) from a crashed run; run `framerec recover {dir}` or set recovery.at-start = \"recover\""
    )]
    Unfinished { dir: PathBuf, first: PathBuf },
    #[error("cannot repair the unfinished segments of {dir}: {why}")]
    Repair { dir: PathBuf, why: String },
    #[error(
        "{dir} already holds a fakenect dump (INDEX.txt); the fakenect layout records into a new directory"
    )]
    ExistingDump { dir: PathBuf },
    #[error(
        "{dir} holds a recording in the {was} profile, not {wanted}: a run that continues it uses the same (--profile {was}), or records into a new directory"
    )]
    ProfileMismatch {
        dir: PathBuf,
        was: Profile,
        wanted: Profile,
    },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error("cannot start the source: {0}")]
    Source(SourceError),
    /// A statistics surface the user named (socket path, Prometheus address) cannot be served.
    #[error("cannot serve statistics: {0}")]
    Serve(ServeError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Backend(WriterError),
}

/// Why a recording that started ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Writer(#[from] WriterError),
    #[error(
        "stopping took longer than writer.stop-timeout-s ({}s): exited with {queued} frames queued and {in_writers} in {in_flight} unfinished writes; the last segments are left for `framerec recover`",
        after.as_secs_f64()
    )]
    StopTimeout {
        after: Duration,
        queued: u64,
        in_writers: u64,
        in_flight: u64,
    },
    #[error(
        "{frames} frames were lost to the disk ({reasons}); they are counted as dropped and named in the recording (writer.fail-on-io-loss = false makes this exit 0)"
    )]
    LostToDisk { frames: u64, reasons: String },
}

/// Frames the run lost to the disk failing (not to a full disk or a full queue), if any.
fn lost_to_disk(totals: &Totals) -> Option<RunFailure> {
    let lost: Vec<(&str, u64)> = [
        DropReason::IoError,
        DropReason::FsyncError,
        DropReason::SegmentDeleted,
    ]
    .iter()
    .filter_map(|r| {
        let n = totals.dropped.get(r.as_str()).copied().unwrap_or(0);
        (n > 0).then_some((r.as_str(), n))
    })
    .collect();
    let frames = lost.iter().map(|(_, n)| n).sum();
    (frames > 0).then(|| RunFailure::LostToDisk {
        frames,
        reasons: lost
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Counters at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub received_frames: u64,
    pub received_bytes: u64,
    pub written_frames: u64,
    pub written_bytes: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub writes: u64,
    pub fsyncs: u64,
    pub queue_high_water: u64,
    pub durable_seq: Option<u64>,
    /// Writes, fsyncs and segment creations that failed.
    pub failures: u64,
    /// Frames written again after an fsync failed while their write was in flight.
    pub frames_rewritten: u64,
    /// What a `pipe:`/`unix:` source rejected, by reason (resynchronisations for `bad_magic`,
    /// frames otherwise).
    pub source_rejects: BTreeMap<&'static str, u64>,
    /// The frame counts stream by stream (their sums are the totals above).
    pub streams: Vec<StreamStats>,
    /// Frames that arrived while the recorder was paused (skipped on purpose, not dropped).
    pub paused_frames: u64,
    /// Marks written (`framerec ctl mark`).
    pub marks: u64,
    /// What the compression stage did (all zero when compression is off).
    pub compression: crate::pipeline::compress::CompressionTotals,
}

impl Totals {
    pub fn of(c: &Counters, t: &Tally) -> Totals {
        Totals {
            received_frames: t.received_frames,
            received_bytes: t.received_bytes,
            written_frames: t.written_frames,
            written_bytes: t.written_bytes,
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), t.dropped(*r)))
                .collect(),
            writes: c.writes.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            queue_high_water: c.queue_high_water.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            frames_rewritten: c.frames_rewritten.load(Ordering::Relaxed),
            durable_seq: c.durable_seq(),
            source_rejects: Reject::ALL
                .iter()
                .map(|r| (r.as_str(), c.source_rejects.get(*r)))
                .collect(),
            streams: Vec::new(),
            paused_frames: t.paused,
            marks: c.marks.load(Ordering::Relaxed),
            compression: c.compress.totals(),
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// What a finished recording reports.
#[derive(Debug)]
pub struct RunReport {
    pub dir: PathBuf,
    pub stop: Option<StopReason>,
    pub elapsed: Duration,
    pub totals: Totals,
    pub backend: Backend,
    pub direct_io: bool,
    pub overflow: OverflowPolicy,
    pub segments: Vec<PathBuf>,
    /// Segments repaired at start (left unfinished by a crashed run).
    pub repaired: Vec<repair::Outcome>,
    pub histograms: Histograms,
    pub failure: Option<RunFailure>,
    /// CPU time (user + system) of the receiver thread: the source making or fetching frames
    /// and handing them to the queue. The rest of the process's CPU is the writing.
    pub receiver_cpu: Duration,
}

impl RunReport {
    pub fn write_latency(&self) -> Percentiles {
        Percentiles::of(&self.histograms.write_latency_ns)
    }

    /// Megabytes (10^6) of payload written per second of recording.
    pub fn mb_per_s(&self) -> f64 {
        self.totals.written_bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The source, continuing at frame `first_seq` where the source can (synthetic content is a
/// Re-reads the configuration (on SIGHUP): the new one, or every error in it.
pub type ReloadFn = Box<dyn FnMut() -> Result<Config, String> + Send>;

/// How a caller steers a running recording.
pub struct Controls {
    /// Set to stop gracefully (everything accepted is still written).
    pub stop: Arc<AtomicBool>,
    /// Handles SIGHUP by re-reading the configuration; `None` leaves SIGHUP alone.
    pub reload: Option<ReloadFn>,
    /// Told of segments opening and finalizing, and asked before retention deletes one.
    pub listeners: Vec<Arc<dyn SegmentListener>>,
    /// Given the run's snapshot function once it is recording (a live status line).
    pub on_start: Option<OnStart>,
}

/// Called once a run records, with the function that takes its statistics snapshot.
pub type OnStart = Box<dyn FnOnce(crate::serve::SnapshotFn) + Send>;

/// Records per `cfg` until `limits`, `stop`, or the end of the source, then drains and
/// finalizes. Setting `stop` is a graceful stop: everything accepted is still written.
pub fn record(
    cfg: &Config,
    limits: Limits,
    stop: Arc<AtomicBool>,
) -> Result<RunReport, RecordError> {
    record_with(
        cfg,
        limits,
        Controls {
            stop,
            reload: None,
            listeners: Vec::new(),
            on_start: None,
        },
    )
}

/// [`record`], steered by `controls`: a stop flag and, if given, reloads on SIGHUP. Speaks
/// systemd's notify protocol when `$NOTIFY_SOCKET` is set.
pub fn record_with(
    cfg: &Config,
    limits: Limits,
    controls: Controls,
) -> Result<RunReport, RecordError> {
    let mut run = start::start(cfg, limits, controls)?;
    let (timed_out, notifier) = supervise::supervise(&mut run, cfg);
    Ok(finish::finish(run, cfg, timed_out, notifier))
}
