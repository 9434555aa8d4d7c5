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
use crate::intake;
use crate::ledger::{Ledger, Tally};
use crate::observe::{
    Counters, Histograms, Percentiles, Published, SharedHistograms, Snapshot, cpu_time,
    prometheus_text,
};
use crate::queue::{FrameQueue, OverflowPolicy};
use crate::receiver::{self, Limits, ReceiverParts, StopReason};
use crate::repair::{self, AtStart};
use crate::serve::{RenderFn, ServeError, Server, SnapshotFn};
use crate::service::{Notifier, Progress};
use crate::source::pipe::Reject;
use crate::source::{
    FakenectSource, FreenectSource, PipeSource, PushSource, Source, SourceError, SyntheticSource,
};
use crate::stop::Stop;
use crate::store::lock::{self, LockError};
use crate::writer::{
    self, Backend, LiveSettings, RecordingTarget, WriterError, WriterParts, WriterReport,
};

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
/// function of the sequence number).
/// A source of either kind: asked for each frame, or delivering on its own thread.
enum AnySource {
    Pull(Box<dyn Source>),
    Push(Box<dyn PushSource>),
}

impl AnySource {
    fn stream(&self) -> &StreamInfo {
        match self {
            AnySource::Pull(s) => s.stream(),
            AnySource::Push(s) => s.stream(),
        }
    }

    fn can_wait(&self) -> bool {
        match self {
            AnySource::Pull(s) => s.can_wait(),
            AnySource::Push(s) => s.can_wait(),
        }
    }
}

fn build_source(
    cfg: &SourceConfig,
    first_seq: u64,
    counters: &Counters,
) -> Result<AnySource, SourceError> {
    Ok(match cfg {
        SourceConfig::Synthetic(s) => {
            AnySource::Pull(Box::new(SyntheticSource::starting_at(s.clone(), first_seq)))
        }
        SourceConfig::Fakenect(f) => {
            let src = FakenectSource::open(f.clone())?;
            tracing::info!(dump = %f.dir.display(), frames = src.frames(), paced = f.paced, looped = f.looped, "replaying a fakenect dump");
            AnySource::Pull(Box::new(src))
        }
        SourceConfig::Freenect(f) => AnySource::Push(Box::new(FreenectSource::open(f.clone())?)),
        SourceConfig::Pipe(p) => AnySource::Pull(Box::new(PipeSource::open(
            p.clone(),
            counters.source_rejects.clone(),
        )?)),
    })
}

/// The run's interval log, if it has one, and how often it takes an interval.
struct IntervalLog {
    writer: IntervalLogWriter,
    every: Duration,
    histograms: SharedHistograms,
    /// Swapped with the shared interval histograms, so no interval allocates.
    spare: Histograms,
    /// Asks the log's sync thread to make what was written durable.
    sync: Option<std::sync::mpsc::SyncSender<()>>,
}

/// A thread that fdatasyncs the interval log whenever asked, so that neither the supervision
/// loop (stop timeouts, the watchdog) nor the writers wait on it; a request made while one
/// sync runs is merged into the next. Ends when its sender is dropped.
fn spawn_log_syncer(
    writer: &IntervalLogWriter,
) -> std::io::Result<std::sync::mpsc::SyncSender<()>> {
    let file = writer.sync_handle()?;
    let path = writer.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("framerec-hlog-sync".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = file.sync_data() {
                    tracing::warn!(log = %path.display(), error = %e, "cannot make the latency interval log durable");
                }
            }
        })?;
    Ok(tx)
}

impl IntervalLog {
    fn open(cfg: &Config, target: &RecordingTarget, histograms: &SharedHistograms) -> Option<Self> {
        let every = cfg.stats.interval_log.filter(|_| cfg.stats.histograms)?;
        let dir = cfg.stats.interval_log_dir(&cfg.output_dir);
        match IntervalLogWriter::create(&dir, target.first_segment_id, &target.recording_id) {
            Ok(writer) => {
                tracing::info!(log = %writer.path().display(), every = ?every, "writing the latency interval log");
                let sync = spawn_log_syncer(&writer)
                    .inspect_err(|e| tracing::warn!(log = %writer.path().display(), error = %e, "cannot start the interval log's sync thread; it is made durable at the end only"))
                    .ok();
                Some(IntervalLog {
                    writer,
                    every,
                    histograms: histograms.clone(),
                    spare: Histograms::default(),
                    sync,
                })
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot write the latency interval log; recording without it");
                None
            }
        }
    }

    /// Moves the histograms recorded since the last call into `spare` (no allocation).
    fn take(&mut self) {
        self.spare.reset();
        if let Ok(mut shared) = self.histograms.lock() {
            std::mem::swap(&mut shared.interval, &mut self.spare);
        }
    }

    fn write(&mut self, s: &Snapshot) {
        self.take();
        if let Err(e) = self.writer.write_interval(&self.spare, s) {
            tracing::warn!(log = %self.writer.path().display(), error = %e, "writing the latency interval log failed");
        }
        if let Some(tx) = &self.sync {
            // Full: a sync is already pending and will cover this interval too.
            let _ = tx.try_send(());
        }
    }

    fn finish(mut self, s: &Snapshot, reason: &str) {
        self.take();
        let path = self.writer.path().to_path_buf();
        if let Err(e) = self.writer.finish(&self.spare, s, reason) {
            tracing::warn!(log = %path.display(), error = %e, "finishing the latency interval log failed");
        }
    }
}

/// Re-reads the configuration (on SIGHUP): the new one, or every error in it.
pub type ReloadFn = Box<dyn FnMut() -> Result<Config, String> + Send>;

/// How a caller steers a running recording.
pub struct Controls {
    /// Set to stop gracefully (everything accepted is still written).
    pub stop: Arc<AtomicBool>,
    /// Handles SIGHUP by re-reading the configuration; `None` leaves SIGHUP alone.
    pub reload: Option<ReloadFn>,
}

/// What the supervision loop watches and drives while the recording runs.
struct Supervision<'a> {
    snapshot: &'a SnapshotFn,
    counters: &'a Counters,
    ledger: &'a Ledger,
    hlog: Option<&'a mut IntervalLog>,
    notifier: Notifier,
    reload: Option<ReloadFn>,
    current: Config,
    live: &'a LiveSettings,
    stop: &'a AtomicBool,
}

impl Supervision<'_> {
    fn progress(&self) -> Progress {
        let c = self.counters;
        Progress {
            // Writes, not fsyncs: frames waiting behind a stuck write are what matters.
            completed: c.writes.load(Ordering::Relaxed),
            idle: {
                let t = self.ledger.tally();
                t.queued == 0
                    && t.in_writers == 0
                    && c.writes_in_flight.load(Ordering::Relaxed) == 0
            },
        }
    }

    /// Logs a summary line every `log-interval-s`, writes the interval log, logs a full
    /// snapshot on SIGUSR1, reloads on SIGHUP and speaks the notify protocol, until `done`.
    /// Returns true if stopping (a signal, a limit, the end of the source) took longer than
    /// `stop_timeout` to get there.
    fn run(
        &mut self,
        receiver_done: impl Fn() -> bool,
        done: impl Fn() -> bool,
        stop_timeout: Duration,
    ) -> bool {
        let usr1 = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let mut handlers =
            vec![signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone()).ok()];
        if self.reload.is_some() {
            handlers
                .push(signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).ok());
        }
        let mut last = Instant::now();
        let mut prev: Option<Snapshot> = None;
        let mut last_interval = Instant::now();
        let mut stopping_since: Option<Instant> = None;
        let mut timed_out = false;
        while !done() {
            // Once stopping, look often: the process ends as soon as the writers are done.
            std::thread::sleep(if stopping_since.is_some() {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(50)
            });
            if !self.notifier.is_ready()
                && self.counters.segments_opened.load(Ordering::Relaxed) > 0
                && self.ledger.tally().received_frames > 0
            {
                let s = (self.snapshot)();
                self.notifier.ready(&s.log_line(None));
            }
            if self.stop.load(Ordering::Relaxed) || receiver_done() {
                self.notifier
                    .stopping("stopping: draining the queue and finalizing");
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stop_timeout {
                    timed_out = true;
                    break;
                }
            }
            let progress = self.progress();
            self.notifier.watchdog(progress);
            let snapshot = self.snapshot;
            let previous = prev.clone();
            self.notifier
                .status(|| snapshot().log_line(previous.as_ref()));
            if usr1.swap(false, Ordering::Relaxed) {
                let s = (self.snapshot)();
                tracing::info!(snapshot = %serde_json::to_string(&s).unwrap_or_default(), "SIGUSR1");
            }
            if hup.swap(false, Ordering::Relaxed)
                && let Some(reload) = self.reload.as_mut()
            {
                self.notifier.reloading();
                match reload() {
                    Ok(new) => {
                        crate::reload::apply(&mut self.current, &new, self.live);
                    }
                    Err(errors) => {
                        tracing::error!(%errors, "the reloaded configuration is invalid; still running on the previous one")
                    }
                }
                let s = (self.snapshot)();
                self.notifier.reloaded(&s.log_line(prev.as_ref()));
            }
            if let Some(every) = self.current.stats.log_interval
                && last.elapsed() >= every
            {
                let s = (self.snapshot)();
                tracing::info!("{}", s.log_line(prev.as_ref()));
                prev = Some(s);
                last = Instant::now();
            }
            if let Some(log) = self.hlog.as_deref_mut()
                && last_interval.elapsed() >= log.every
            {
                last_interval += log.every;
                log.write(&(self.snapshot)());
            }
        }
        for id in handlers.into_iter().flatten() {
            signal_hook::low_level::unregister(id);
        }
        timed_out
    }
}

/// Records per `cfg` until `limits`, `stop`, or the end of the source, then drains and
/// finalizes. Setting `stop` is a graceful stop: everything accepted is still written.
pub fn record(
    cfg: &Config,
    limits: Limits,
    stop: Arc<AtomicBool>,
) -> Result<RunReport, RecordError> {
    record_with(cfg, limits, Controls { stop, reload: None })
}

/// [`record`], steered by `controls`: a stop flag and, if given, reloads on SIGHUP. Speaks
/// systemd's notify protocol when `$NOTIFY_SOCKET` is set.
pub fn record_with(
    cfg: &Config,
    limits: Limits,
    controls: Controls,
) -> Result<RunReport, RecordError> {
    let Controls { stop, reload } = controls;
    // The caller's flag, and why the run stopped: the caller, or the writers failing.
    let halt = Stop::new(stop.clone());
    let probed = writer::probe(cfg.writer.backend).map_err(RecordError::Backend)?;
    let dir = cfg.output_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| RecordError::OutputDir {
        path: dir.clone(),
        source,
    })?;
    let io_err = |source| RecordError::OutputDir {
        path: dir.clone(),
        source,
    };
    // One writer per directory, taken before anything (repair included) touches its files.
    let mut dir_lock = Some(lock::lock_dir(&dir)?);
    if cfg.layout == Layout::Fakenect && dir.join(writer::files::INDEX).exists() {
        return Err(RecordError::ExistingDump { dir });
    }
    // A directory is one recording: a new run repairs what a crash left, then continues it.
    if cfg.recovery == AtStart::Recover {
        repair::finish_interrupted(&dir, None).map_err(io_err)?;
    }
    let existing = writer::existing_segments(&dir).map_err(io_err)?;
    let unfinished = repair::unfinished_tail(&existing).map_err(io_err)?;
    let mut repaired = Vec::new();
    if !unfinished.is_empty() {
        match cfg.recovery {
            AtStart::Refuse => {
                let first = unfinished
                    .iter()
                    .find(|p| !repair::looks_finished(p).unwrap_or(false));
                return Err(RecordError::Unfinished {
                    dir,
                    first: first.unwrap_or(&unfinished[0]).clone(),
                });
            }
            AtStart::Recover => {
                let starts_at_zero = existing.first().is_some_and(|(id, _)| *id == 0)
                    && existing.len() == unfinished.len();
                repaired = repair::repair(&unfinished, starts_at_zero, false).map_err(io_err)?;
                if let Some(repair::Outcome::Failed { path, why }) = repaired
                    .iter()
                    .find(|o| matches!(o, repair::Outcome::Failed { .. }))
                {
                    return Err(RecordError::Repair {
                        dir,
                        why: format!("{}: {why}", path.display()),
                    });
                }
                for o in &repaired {
                    if let repair::Outcome::Recovered {
                        path, recovered, ..
                    } = o
                    {
                        tracing::warn!(segment = %path.display(), kept = recovered.kept_frames, lost = ?recovered.lost_ranges, "recovered a segment left unfinished by a crash");
                    }
                }
            }
            AtStart::Leave => {
                tracing::warn!(dir = %dir.display(), "leaving unfinished segments as they are (recovery.at-start = \"leave\")");
            }
        }
    }
    let resume = repair::resume_point(&dir).map_err(io_err)?;
    if let Some(r) = &resume {
        tracing::info!(recording = %r.recording_id, next_seq = r.next_seq, next_segment = r.next_segment_id, "continuing the recording");
    }

    let first_seq = resume.as_ref().map_or(0, |r| r.next_seq);
    let counters = Arc::new(Counters::default());
    let source = build_source(&cfg.source, first_seq, &counters).map_err(RecordError::Source)?;
    let stream = source.stream().clone();
    if cfg.layout == Layout::Fakenect && (stream.width, stream.height) != (640, 480) {
        tracing::warn!(
            width = stream.width,
            height = stream.height,
            "libfreenect's fakenect replays 640x480 depth only; this dump will not replay through it"
        );
    }
    let policy = cfg.queue.overflow.unwrap_or(if source.can_wait() {
        OverflowPolicy::Block
    } else {
        OverflowPolicy::DropNewest
    });
    if policy == OverflowPolicy::Block && matches!(source, AnySource::Push(_)) && !source.can_wait()
    {
        // The device's callback would stall its USB transfers: frames lost where nobody counts.
        return Err(RecordError::Source(SourceError::Device(
            "queue.overflow = \"block\" cannot apply to a live Kinect: its callback must never \
             wait (frames would be lost inside libfreenect, uncounted); use \"drop-newest\" or \
             \"drop-oldest\" (block is for replays)"
                .into(),
        )));
    }
    let frame_bytes = stream.frame_bytes();
    let buffer_bytes = (round_up(frame_bytes, ALIGN) + 2 * ALIGN) as u64;
    let max_buffers = (cfg.queue.max_bytes / buffer_bytes).max(2) as usize;
    let pool = BufferPool::new(max_buffers, frame_bytes);
    let queue = Arc::new(FrameQueue::new(cfg.queue.max_frames));
    let ledger = Arc::new(Ledger::default());

    let target = RecordingTarget {
        dir: dir.clone(),
        recording_id: resume.as_ref().map_or_else(
            || format!("{:x}-{}", host_real_ns(), std::process::id()),
            |r| r.recording_id.clone(),
        ),
        stream,
        first_segment_id: resume.as_ref().map_or(0, |r| r.next_segment_id),
    };
    let histograms: SharedHistograms = Arc::new(Mutex::new(Published::default()));
    let live = Arc::new(LiveSettings::default());
    let parts = WriterParts {
        queue: queue.clone(),
        ledger: ledger.clone(),
        counters: counters.clone(),
        stop: halt.clone(),
        histograms: histograms.clone(),
        record_histograms: cfg.stats.histograms,
        live: live.clone(),
    };
    // The statistics endpoints are bound before anything records: a path taken by something
    // else refuses the start.
    let started = Instant::now();
    let snapshot: SnapshotFn = {
        let (counters, ledger, dir, histograms) = (
            counters.clone(),
            ledger.clone(),
            dir.clone(),
            histograms.clone(),
        );
        Arc::new(move || {
            let free = nix::sys::statvfs::statvfs(&dir)
                .ok()
                .map(|s| s.blocks_available() * s.fragment_size());
            // Percentiles are read under the lock: no 2 MB copy of the histograms per snapshot.
            let take = |h: &Histograms| {
                Snapshot::take(
                    &counters,
                    &ledger.tally(),
                    h,
                    started.elapsed().as_secs_f64(),
                    free,
                )
            };
            match histograms.lock() {
                Ok(h) => take(&h.total),
                Err(_) => take(&Histograms::default()),
            }
        })
    };
    // A socket or address the user named is one they will look for: failing to serve it is an
    // error at start. The default socket beside the recording is a convenience: a warning.
    let server = match cfg.stats.socket.resolve(&dir) {
        None => None,
        Some(path) => match Server::stats(&path, snapshot.clone()) {
            Ok(s) => Some(s),
            Err(e) if e.path_taken() || matches!(cfg.stats.socket, StatsSocket::At(_)) => {
                return Err(RecordError::Serve(e));
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "statistics socket unavailable; recording without it");
                None
            }
        },
    };
    if let Some(s) = &server {
        tracing::info!(socket = %s.addr, "serving statistics");
    }
    let render: RenderFn = {
        let (snapshot, histograms) = (snapshot.clone(), histograms.clone());
        Arc::new(move || {
            let s = snapshot();
            match histograms.lock() {
                Ok(h) => prometheus_text(&s, &h.total),
                Err(_) => prometheus_text(&s, &Histograms::default()),
            }
        })
    };
    let metrics = match cfg.stats.metrics_addr.as_deref() {
        None => None,
        Some(addr) => {
            let m = Server::metrics(addr, render).map_err(RecordError::Serve)?;
            tracing::info!(addr = %m.addr, "serving Prometheus metrics");
            Some(m)
        }
    };
    let mut hlog = IntervalLog::open(cfg, &target, &histograms);
    let (wcfg, scfg, dcfg) = (
        cfg.writer.clone(),
        cfg.segment.clone(),
        cfg.durability.clone(),
    );
    let layout = cfg.layout;
    let writer = std::thread::Builder::new()
        .name("framerec-writer".into())
        .spawn(move || match layout {
            Layout::Mcap => writer::run(wcfg, scfg, dcfg, target, parts),
            Layout::Fakenect => writer::files::run(wcfg, dcfg, target, parts),
        })
        .map_err(RecordError::Thread)?;

    let rparts = ReceiverParts {
        queue: queue.clone(),
        pool,
        ledger: ledger.clone(),
        counters: counters.clone(),
        policy,
        stop: halt.clone(),
        first_seq,
        histograms: cfg.stats.histograms.then(|| histograms.clone()),
    };
    let receiver = std::thread::Builder::new()
        .name("framerec-receiver".into())
        .spawn(move || {
            let received = match source {
                AnySource::Pull(s) => receiver::run(s, rparts, limits),
                AnySource::Push(s) => intake::run(s, rparts, limits),
            };
            (received, cpu_time(UsageWho::RUSAGE_THREAD))
        });
    let receiver = match receiver {
        Ok(r) => r,
        Err(e) => {
            queue.close();
            let _ = writer.join();
            return Err(RecordError::Thread(e));
        }
    };
    let mut supervision = Supervision {
        snapshot: &snapshot,
        counters: &counters,
        ledger: &ledger,
        hlog: hlog.as_mut(),
        notifier: Notifier::from_env(),
        reload,
        current: cfg.clone(),
        live: &live,
        stop: &stop,
    };
    let timed_out = supervision.run(
        || receiver.is_finished(),
        || receiver.is_finished() && writer.is_finished(),
        cfg.writer.stop_timeout,
    );
    let mut notifier = supervision.notifier;
    notifier.stopping("stopping: finalizing");
    let (received, receiver_cpu) = match receiver.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    let (report, gave_up) = if timed_out {
        // The writers wait on the disk: their thread is left to the process's exit (the kernel
        // completes or cancels its I/O); nothing in flight is dropped here. The directory stays
        // locked until then too: the kernel releases the lock when the process exits.
        std::mem::forget(dir_lock.take());
        let failure = RunFailure::StopTimeout {
            after: cfg.writer.stop_timeout,
            queued: queue.len() as u64,
            in_writers: ledger.tally().in_writers,
            in_flight: counters.writes_in_flight.load(Ordering::Relaxed),
        };
        tracing::error!("{failure}");
        let report = WriterReport {
            backend: probed,
            direct_io: cfg.writer.direct_io,
            segments: Vec::new(),
            error: None,
        };
        (report, Some(failure))
    } else {
        match writer.join() {
            Ok(r) => (r, None),
            Err(p) => std::panic::resume_unwind(p),
        }
    };
    drop(server);
    drop(metrics);
    let (stop_reason, source_failure) = match received {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let tally = ledger.tally();
    if let Err(e) = tally.check() {
        tracing::error!("{e}");
    }
    let totals = Totals::of(&counters, &tally);
    let failure = match (gave_up, report.error, source_failure) {
        (Some(t), _, _) => Some(t),
        (None, Some(w), _) => Some(RunFailure::Writer(w)),
        (None, None, Some(s)) => Some(RunFailure::Source(s)),
        (None, None, None) => lost_to_disk(&totals).filter(|_| cfg.writer.fail_on_io_loss),
    };
    // After a stop timeout the interval log's disk may be the stuck one: its last interval is
    // left out, as after a crash.
    if !timed_out && let Some(log) = hlog {
        let reason = match (&failure, stop_reason) {
            (Some(f), _) => format!("failed: {f}"),
            (None, Some(s)) => s.as_str().to_string(),
            (None, None) => "unknown".into(),
        };
        log.finish(&snapshot(), &reason);
    }
    let histograms = histograms
        .lock()
        .map(|h| h.total.clone())
        .unwrap_or_default();
    drop(dir_lock);
    Ok(RunReport {
        dir,
        stop: stop_reason,
        elapsed: started.elapsed(),
        totals,
        backend: report.backend,
        direct_io: report.direct_io,
        overflow: policy,
        segments: report.segments,
        repaired,
        histograms,
        failure,
        receiver_cpu,
    })
}
