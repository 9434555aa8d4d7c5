//! The writer pool: takes frames from the queue and writes them into MCAP segments with a
//! bounded number of vectored writes in flight, rotates segments without stalling, fsyncs per
//! policy and keeps the durable watermark.
//!
//! # Design
//! One thread runs a single-threaded runtime (tokio-uring, or plain tokio for the `pwrite`
//! fallback) with `writers` writer tasks, a syncer task, and short-lived open/finalize tasks.
//! A writer task, holding the intake lock, takes every queued frame up to `max-write-bytes`,
//! picks the segment, assigns the file offset and encodes the chunk in place; then it releases
//! the lock and awaits its write. So sequence order equals file order, and up to `writers`
//! writes are in flight at once. Payload bytes are never copied.
//!
//! The durable watermark of a segment advances only over the contiguous prefix of completed
//! writes, and only after an fsync that started after they completed succeeded. A failed write
//! or fsync poisons the segment: it is never fsynced again as if that proved anything.

mod durability;
mod file;
pub mod files;
mod uring;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};
use tokio::task::{JoinHandle, spawn_local};

use crate::frame::{DropReason, Frame, FrameMeta, FrameSeq, StreamInfo, host_mono_ns};
use crate::ledger::Ledger;
use crate::observe::{Counters, Histograms, SharedHistograms, record};
use crate::queue::FrameQueue;
use crate::segment::{
    self, ChunkIndexEntry, SegmentMeta, TailStats, encode_drop_chunk, encode_frame_batch,
};
use crate::stop::Stop;

pub use file::{Backend, IoSpan};
use file::{SegFile, sync_dir};

/// Which I/O backend to use (config `writer.backend`, `--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// io_uring when the kernel allows it, else `pwrite` with a warning.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// Blocking `pwrite` on a thread pool.
    Pwrite,
}

/// Settings of the writer pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    pub backend: BackendChoice,
    /// Writes in flight at most (writer tasks).
    pub writers: usize,
    /// Open segments with `O_DIRECT` (falls back to buffered where the filesystem refuses).
    pub direct_io: bool,
    /// Bytes one write carries at most (at least one frame).
    pub max_write_bytes: usize,
    /// How long a writer waits for more frames before writing a small batch.
    pub linger: Duration,
    /// Fault injection for tests and benchmarks: each write waits this long before it is
    /// submitted (a slow disk). Not settable from the configuration file.
    pub write_delay: Duration,
    /// Reserve disk space for a segment this many bytes ahead of its writes (`fallocate`), so
    /// space runs out between writes, where the segment can still be closed cleanly, rather
    /// than in the middle of one. 0: never.
    pub preallocate_bytes: u64,
    /// After this many failed writes, fsyncs or segment creations in a row the recorder is
    /// degraded (stats, systemd `STATUS=`).
    pub max_consecutive_failures: u32,
    /// Stop recording (exit status 1, so systemd's `Restart=` applies) once degraded, instead
    /// of counting frames as dropped until the disk recovers.
    pub exit_when_degraded: bool,
    /// A run that lost frames to the disk (`io_error`, `fsync_error`, `segment_deleted`) ends
    /// as failed (exit status 1) even though it kept recording.
    pub fail_on_io_loss: bool,
    /// Free bytes the output filesystem keeps: under it, the receiver counts arriving frames as
    /// `disk_full` instead of queueing them, until space returns. 0: no floor.
    pub min_free_bytes: u64,
    /// The same as a percentage of the filesystem's size (the larger floor applies).
    pub min_free_percent: u8,
    /// How long stopping may take to drain the queue and finalize; past it the recorder exits
    /// leaving the last segments for `recover` (systemd's `TimeoutStopSec=` should be longer).
    pub stop_timeout: Duration,
    /// Retention, for always-on recording: the oldest finished segments of the directory are
    /// deleted while all of them together hold more than this many bytes.
    pub retain_bytes: Option<u64>,
    /// ... or while the oldest was last written longer ago than this.
    pub retain_age: Option<Duration>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            backend: BackendChoice::Auto,
            writers: 2,
            direct_io: false,
            max_write_bytes: 4 << 20,
            linger: Duration::ZERO,
            write_delay: Duration::ZERO,
            preallocate_bytes: 64 << 20,
            max_consecutive_failures: 8,
            exit_when_degraded: false,
            fail_on_io_loss: true,
            min_free_bytes: 0,
            min_free_percent: 0,
            stop_timeout: Duration::from_secs(45),
            retain_bytes: None,
            retain_age: None,
        }
    }
}

/// When a segment is closed and the next one started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    pub max_bytes: u64,
    pub max_duration: Option<Duration>,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            max_bytes: 1 << 30,
            max_duration: Some(Duration::from_secs(600)),
        }
    }
}

/// When written data is made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurabilityConfig {
    /// fsync open segments this often (None: only when a segment closes).
    pub fsync_interval: Option<Duration>,
    /// Also fsync after this many frames were written.
    pub fsync_every_frames: Option<u64>,
    /// Drop durable data from the page cache (buffered I/O) so long runs do not fill memory.
    pub release_page_cache: bool,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        DurabilityConfig {
            fsync_interval: Some(Duration::from_millis(1000)),
            fsync_every_frames: None,
            release_page_cache: true,
        }
    }
}

/// Settings the writer pool takes while it runs (on SIGHUP): how many writers, when segments
/// rotate, when data is made durable. The recorder stores new values; the pool applies them
/// within [`APPLY_EVERY`], between writes, so no frame is lost or reordered.
#[derive(Debug, Default)]
pub struct LiveSettings {
    pending: std::sync::Mutex<Option<Live>>,
}

/// The values of [`LiveSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub writers: usize,
    pub segment: SegmentConfig,
    pub durability: DurabilityConfig,
}

impl LiveSettings {
    /// Asks the pool to apply `live`.
    pub fn set(&self, live: Live) {
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(live);
        }
    }

    fn take(&self) -> Option<Live> {
        self.pending.lock().ok()?.take()
    }
}

/// How often the pool looks for new live settings and finished writers.
pub const APPLY_EVERY: Duration = Duration::from_millis(100);

/// The most writers the pool runs (the io_uring is sized for them).
pub const MAX_WRITERS: usize = 64;

/// How long the pool waits before trying again to create a segment after creating one failed.
pub const RETRY_OPEN_AFTER: Duration = Duration::from_secs(1);

/// How often the writers move their histograms to the shared copy (the interval logs are exact
/// to about this much).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Where and what the writers record.
#[derive(Debug, Clone)]
pub struct RecordingTarget {
    pub dir: PathBuf,
    pub recording_id: String,
    pub stream: StreamInfo,
    pub first_segment_id: u64,
}

/// The shared parts of the pipeline the writers use.
#[derive(Clone)]
pub struct WriterParts {
    pub queue: Arc<FrameQueue>,
    /// The accounting: frames taken, written and dropped move through it.
    pub ledger: Arc<Ledger>,
    pub counters: Arc<Counters>,
    /// Told by the writers when they fail, so the receiver stops.
    pub stop: Arc<Stop>,
    /// Where the writers publish their histograms for the statistics surfaces.
    pub histograms: SharedHistograms,
    /// False to record counters only (statistics off).
    pub record_histograms: bool,
    /// New settings to apply while running.
    pub live: Arc<LiveSettings>,
}

/// Errors that end a recording.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(
        "io_uring is unavailable ({0}) and the configuration demands it (writer.backend = \"io-uring\")"
    )]
    IoUringUnavailable(io::Error),
    #[error("cannot start the writer runtime: {0}")]
    Runtime(io::Error),
    #[error("cannot create segment {path}: {source}")]
    CreateSegment { path: PathBuf, source: io::Error },
    #[error(
        "write of {len} bytes at offset {offset} of {segment} failed: {source} ({frames} frames dropped)"
    )]
    Write {
        segment: PathBuf,
        offset: u64,
        len: u64,
        frames: u64,
        source: io::Error,
    },
    #[error(
        "fsync of {segment} failed: {source} (the {frames} frames written since its last good fsync are dropped)"
    )]
    Fsync {
        segment: PathBuf,
        frames: u64,
        source: io::Error,
    },
    #[error("cannot reserve space in {segment}: {source} ({frames} frames dropped)")]
    Reserve {
        segment: PathBuf,
        frames: u64,
        source: io::Error,
    },
    #[error(
        "{failures} writes, fsyncs or segment creations failed in a row, the last: {last}; stopping (writer.exit-when-degraded)"
    )]
    Degraded {
        failures: u64,
        last: Box<WriterError>,
    },
    #[error("cannot finalize segment {segment}: {source}")]
    Finalize { segment: PathBuf, source: io::Error },
    #[error(
        "segment {segment} was deleted (or renamed away) while it was recorded: its {frames} frames are counted as dropped (segment_deleted)"
    )]
    SegmentDeleted { segment: PathBuf, frames: u64 },
}

impl WriterError {
    /// The reason under which frames this error kept from the disk are counted.
    fn drop_reason(&self) -> DropReason {
        match self {
            WriterError::CreateSegment { source, .. }
            | WriterError::Write { source, .. }
            | WriterError::Reserve { source, .. } => DropReason::of_write_error(source),
            WriterError::Fsync { .. } => DropReason::FsyncError,
            _ => DropReason::IoError,
        }
    }
}

/// What the writers report when they are done.
#[derive(Debug)]
pub struct WriterReport {
    pub backend: Backend,
    pub direct_io: bool,
    /// Segments written, in order.
    pub segments: Vec<PathBuf>,
    /// The first error, if the recording ended because of it.
    pub error: Option<WriterError>,
}

/// Runs the writer pool on the calling thread until the queue is closed and drained and every
/// segment is finalized.
pub fn run(
    cfg: WriterConfig,
    seg: SegmentConfig,
    dur: DurabilityConfig,
    target: RecordingTarget,
    parts: WriterParts,
) -> WriterReport {
    let direct_io = cfg.direct_io;
    drive(cfg.backend, direct_io, &parts, |backend| {
        run_pool(Ctx::new(cfg, seg, dur, target, &parts, backend))
    })
}

/// Runs the future `pool(backend)` makes on this thread: on io_uring where the kernel allows
/// it (or the configuration demands it), else on a current-thread tokio runtime with blocking
/// `pwrite`. Both layouts' writer pools run through here.
pub(crate) fn drive<F: std::future::Future<Output = WriterReport>>(
    choice: BackendChoice,
    direct_io: bool,
    parts: &WriterParts,
    pool: impl FnOnce(Backend) -> F,
) -> WriterReport {
    let failed = |backend, error| {
        parts.stop.disk_failed();
        discard_queue(parts);
        WriterReport {
            backend,
            direct_io,
            segments: Vec::new(),
            error: Some(error),
        }
    };
    if choice != BackendChoice::Pwrite {
        // Sized for the most writers, so a reload can add writers without a new ring.
        let entries = (MAX_WRITERS as u32 * 4).next_power_of_two();
        match uring::runtime(entries) {
            Ok(rt) => return rt.block_on(pool(Backend::IoUring)),
            Err(e) if choice == BackendChoice::IoUring => {
                return failed(Backend::IoUring, WriterError::IoUringUnavailable(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, "io_uring is unavailable; falling back to blocking pwrite");
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failed(Backend::Pwrite, WriterError::Runtime(e)),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, pool(Backend::Pwrite))
}

/// Checks that the configured backend can run here before anything is recorded: `Err` when
/// io_uring is demanded and the kernel refuses it. (`run` probes again on its own thread.)
pub fn probe(choice: BackendChoice) -> Result<Backend, WriterError> {
    match choice {
        BackendChoice::Pwrite => Ok(Backend::Pwrite),
        BackendChoice::Auto => Ok(uring::runtime(8).map_or(Backend::Pwrite, |_| Backend::IoUring)),
        BackendChoice::IoUring => uring::runtime(8)
            .map(|_| Backend::IoUring)
            .map_err(WriterError::IoUringUnavailable),
    }
}

/// Without writers, every queued frame is counted as dropped (the receiver stops soon).
fn discard_queue(parts: &WriterParts) {
    loop {
        while let Some(f) = parts.queue.pop() {
            parts.ledger.unqueued(f.meta.seq, DropReason::IoError);
        }
        if parts.queue.is_closed() && parts.queue.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A write that was issued to a segment, in file order.
struct PendingWrite {
    offset: u64,
    end: u64,
    /// Set when the write completed; it is accounted for once every write before it is.
    finished: Option<Finished>,
}

/// A completed write, waiting for the writes before it in the file to complete.
struct Finished {
    result: io::Result<()>,
    metas: Vec<FrameMeta>,
    chunks: Vec<ChunkIndexEntry>,
    drops: Vec<segment::DropRange>,
    bytes: u64,
}

/// Frames (and drop notices) written to a segment that no fsync has made durable yet, kept
/// until one does so that a failed fsync can name them.
struct Undurable {
    end: u64,
    /// The write's own list, moved here (no copy per write).
    metas: Vec<FrameMeta>,
    drops: Vec<segment::DropRange>,
}

struct SegState {
    next_offset: u64,
    opened_at: Instant,
    has_data: bool,
    chunks: Vec<ChunkIndexEntry>,
    pending: VecDeque<PendingWrite>,
    undurable: VecDeque<Undurable>,
    /// End of the contiguous prefix of accounted writes, and the last frame in it.
    written_end: u64,
    written_seq: Option<u64>,
    durable_end: u64,
    durable_seq: Option<u64>,
    /// Frames (as runs of sequence numbers) and drop notices already durable in the segment:
    /// what is lost if its file is deleted.
    durable_frames: Vec<(u64, u64)>,
    durable_notices: Vec<segment::DropRange>,
    /// Disk space is reserved (`fallocate`) up to here.
    allocated_end: u64,
    in_flight: usize,
    sealed: bool,
    /// Where the segment is cut back to when it closes, and why: the offset of its first
    /// failed write, or its durable end after a failed fsync. Nothing from there on counts as
    /// written.
    cut: Option<(u64, DropReason)>,
    head_len: u64,
    head: TailStats,
}

struct Segment {
    id: u64,
    path: PathBuf,
    file: SegFile,
    direct: bool,
    st: RefCell<SegState>,
    /// Notified when the last in-flight write of a sealed segment completes.
    idle: Notify,
}

impl Segment {
    fn finish(&self, offset: u64, finished: Finished) {
        let mut st = self.st.borrow_mut();
        if let Some(w) = st.pending.iter_mut().find(|w| w.offset == offset) {
            w.finished = Some(finished);
        }
    }
}

/// Disk space kept reserved past a segment's data for its summary and footer: a base for the
/// fixed records plus room for each chunk's index entry.
fn tail_reserve(chunks: usize) -> u64 {
    (64 << 10) + 256 * chunks as u64
}

/// Room kept past the tail for drop notices, so that frames dropped because the disk is full
/// can still be named in the file.
const NOTICE_RESERVE: u64 = 64 << 10;

/// A finalized segment, remembered so that its loss (the file or the whole directory deleted
/// while recording went on) is counted, not reported as written.
struct FinishedSegment {
    path: PathBuf,
    id: (u64, u64),
    frames: Vec<(u64, u64)>,
    notices: Vec<segment::DropRange>,
}

struct PoolState {
    /// Open segments (not yet finalized), oldest first; the last one takes new writes.
    segments: VecDeque<Rc<Segment>>,
    next: Option<JoinHandle<Result<Rc<Segment>, WriterError>>>,
    next_id: u64,
    /// After a segment could not be created or space not reserved: no new attempt before
    /// this, and frames meanwhile are dropped for this reason.
    retry_at: Option<(Instant, DropReason)>,
    finalizers: Vec<JoinHandle<()>>,
    written: Vec<PathBuf>,
    finished: Vec<FinishedSegment>,
    error: Option<WriterError>,
    frames_since_sync: u64,
    /// fsync latency and capture to durable, recorded by the syncer and finalizers.
    pool_histograms: Histograms,
    /// Each writer task's own histograms (only that task records into them).
    task_histograms: Vec<Rc<RefCell<Histograms>>>,
    /// Frames taken by a write and neither durable nor dropped yet: the durable watermark.
    watermark: durability::Watermark,
    /// Reused by `publish`.
    publish_scratch: Histograms,
    /// Frames whose write was in flight when an fsync of its segment failed: still in memory,
    /// so written again (to the next segment) before anything queued.
    rewrite: Vec<Frame>,
    /// Sequence numbers written again once already (a second time they are dropped).
    rewritten: std::collections::HashSet<u64>,
}

struct Ctx {
    cfg: WriterConfig,
    /// Writers wanted now; writer tasks at or above this index finish.
    writers: Cell<usize>,
    seg_cfg: RefCell<SegmentConfig>,
    dur: RefCell<DurabilityConfig>,
    live: Arc<LiveSettings>,
    target: RecordingTarget,
    queue: Arc<FrameQueue>,
    ledger: Arc<Ledger>,
    counters: Arc<Counters>,
    stop: Arc<Stop>,
    shared_histograms: SharedHistograms,
    record_histograms: bool,
    backend: Backend,
    direct: Cell<bool>,
    /// False once the filesystem refused `fallocate`.
    preallocate: Cell<bool>,
    intake: Mutex<()>,
    sync_wake: Notify,
    /// A writer task ended: the supervisor looks at once rather than at its next tick.
    writer_exited: Notify,
    stopping: Cell<bool>,
    /// Device and inode of the recording directory when the run started.
    dir_id: Option<(u64, u64)>,
    st: RefCell<PoolState>,
}

impl Ctx {
    fn new(
        cfg: WriterConfig,
        seg_cfg: SegmentConfig,
        dur: DurabilityConfig,
        target: RecordingTarget,
        parts: &WriterParts,
        backend: Backend,
    ) -> Rc<Ctx> {
        let dir_id = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&target.dir)
                .ok()
                .map(|m| (m.dev(), m.ino()))
        };
        Rc::new(Ctx {
            direct: Cell::new(cfg.direct_io),
            preallocate: Cell::new(cfg.preallocate_bytes > 0),
            writers: Cell::new(cfg.writers.clamp(1, MAX_WRITERS)),
            cfg,
            seg_cfg: RefCell::new(seg_cfg),
            dur: RefCell::new(dur),
            live: parts.live.clone(),
            st: RefCell::new(PoolState {
                segments: VecDeque::new(),
                next: None,
                next_id: target.first_segment_id,
                retry_at: None,
                finalizers: Vec::new(),
                written: Vec::new(),
                finished: Vec::new(),
                error: None,
                frames_since_sync: 0,
                pool_histograms: Histograms::default(),
                task_histograms: Vec::new(),
                watermark: durability::Watermark::default(),
                publish_scratch: Histograms::default(),
                rewrite: Vec::new(),
                rewritten: std::collections::HashSet::new(),
            }),
            target,
            queue: parts.queue.clone(),
            ledger: parts.ledger.clone(),
            counters: parts.counters.clone(),
            stop: parts.stop.clone(),
            shared_histograms: parts.histograms.clone(),
            record_histograms: parts.record_histograms,
            backend,
            intake: Mutex::new(()),
            sync_wake: Notify::new(),
            writer_exited: Notify::new(),
            stopping: Cell::new(false),
            dir_id,
        })
    }

    fn failed(&self) -> bool {
        self.st.borrow().error.is_some()
    }

    /// Records the first fatal error and asks the receiver to stop.
    fn fail(&self, e: WriterError) {
        tracing::error!(error = %e, "recording failed");
        let mut st = self.st.borrow_mut();
        if st.error.is_none() {
            st.error = Some(e);
        }
        self.stop.disk_failed();
    }

    /// A write, fsync or segment creation failed; the frames it concerned are already counted.
    fn failure(&self, e: WriterError) {
        if let Some(stop) = note_failure(&self.cfg, &self.counters, e) {
            self.fail(stop);
        }
    }

    /// A write succeeded: the failures in a row are over.
    fn succeeded(&self) {
        note_success(&self.counters);
    }

    fn current(&self) -> Option<Rc<Segment>> {
        self.st.borrow().segments.back().cloned()
    }

    /// The frames of `made` are durable: an fsync that started after their writes completed
    /// succeeded. Records their capture-to-durable latency.
    fn made_durable(&self, seg: &Segment, made: impl IntoIterator<Item = Undurable>) {
        let now = host_mono_ns();
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        let mut seg_st = seg.st.borrow_mut();
        // The frames each fsync covered, for the debug log (tests/watermark.rs reads it); built
        // only when that log is on.
        let log = tracing::enabled!(tracing::Level::DEBUG);
        let mut seqs = Vec::new();
        for u in made {
            seg_st.durable_notices.extend(u.drops);
            for m in &u.metas {
                match seg_st.durable_frames.last_mut() {
                    Some((_, last)) if *last + 1 == m.seq.0 => *last = m.seq.0,
                    _ => seg_st.durable_frames.push((m.seq.0, m.seq.0)),
                }
                if let Some(captured) = st.watermark.durable(m.seq.0)
                    && self.record_histograms
                {
                    record(
                        &mut st.pool_histograms.capture_to_durable_ns,
                        now.saturating_sub(captured),
                    );
                }
            }
            if log && let (Some(first), Some(last)) = (u.metas.first(), u.metas.last()) {
                seqs.push(format!("{}-{}", first.seq.0, last.seq.0));
            }
        }
        if !seqs.is_empty() {
            tracing::debug!(segment = seg.id, seqs = %seqs.join(","), "fsynced");
        }
    }

    /// Moves the recording's durable watermark over every frame that is durable or dropped, in
    /// sequence order (segments may finish their fsyncs in any order).
    fn update_durable(&self) {
        let moved = self.st.borrow_mut().watermark.advance();
        if let Some(seq) = moved {
            self.counters.set_durable_seq(seq);
            tracing::debug!(durable_seq = seq, "durable");
        }
    }
}

/// Counts a failed write, fsync or segment creation (its frames are already counted as
/// dropped). Enough of them in a row make the recorder degraded; returns the error to stop
/// with when `exit-when-degraded` says so. Both layouts' pools report failures here.
pub(crate) fn note_failure(
    cfg: &WriterConfig,
    c: &Counters,
    e: WriterError,
) -> Option<WriterError> {
    c.failures.fetch_add(1, Ordering::Relaxed);
    let in_a_row = c.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(error = %e, failures_in_a_row = in_a_row, "the disk refused; the frames concerned are counted as dropped and recording goes on");
    if in_a_row >= u64::from(cfg.max_consecutive_failures.max(1))
        && !c.degraded.swap(true, Ordering::Relaxed)
    {
        tracing::error!(
            failures = in_a_row,
            "degraded: the disk keeps failing; frames are dropped until a write succeeds"
        );
        if cfg.exit_when_degraded {
            return Some(WriterError::Degraded {
                failures: in_a_row,
                last: Box::new(e),
            });
        }
    }
    None
}

/// A write succeeded: the failures in a row are over.
pub(crate) fn note_success(c: &Counters) {
    if c.failures_in_a_row.swap(0, Ordering::Relaxed) > 0
        && c.degraded.swap(false, Ordering::Relaxed)
    {
        tracing::warn!("no longer degraded: writes succeed again");
    }
}

/// Creates segment `id`: file, head, directory entry made durable. A file left half-made by a
/// failure is removed.
async fn open_segment(ctx: Rc<Ctx>, id: u64) -> Result<Rc<Segment>, WriterError> {
    let path = ctx.target.dir.join(segment::segment_file_name(id));
    let r = create_segment(&ctx, &path, id).await;
    // Remove what this attempt made, never a file that was there before it (`create_new`
    // failed: someone else's file stands in the way, and it is theirs).
    let not_ours = matches!(&r, Err(WriterError::CreateSegment { source, .. })
        if source.kind() == io::ErrorKind::AlreadyExists);
    if r.is_err() && !not_ours && path.exists() {
        let _ = std::fs::remove_file(&path);
    }
    r
}

async fn create_segment(ctx: &Rc<Ctx>, path: &Path, id: u64) -> Result<Rc<Segment>, WriterError> {
    let create_err = |source| WriterError::CreateSegment {
        path: path.to_path_buf(),
        source,
    };
    let mut direct = ctx.direct.get();
    let file = match SegFile::create(path, direct, ctx.backend) {
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "the filesystem refuses O_DIRECT; using buffered I/O");
            ctx.direct.set(false);
            direct = false;
            SegFile::create(path, false, ctx.backend)
        }
        r => r,
    }
    .map_err(create_err)?;
    let meta = SegmentMeta {
        recording_id: ctx.target.recording_id.clone(),
        segment_id: id,
        stream: ctx.target.stream.clone(),
    };
    let (head, head_stats) = segment::encode_segment_head(&meta, direct);
    let head_len = head.len() as u64;
    // Reserve room for the head, an empty segment's tail and drop notices first: a segment
    // that could be created can always be closed.
    let allocated_end = if ctx.preallocate.get() {
        let want = head_len + tail_reserve(0) + NOTICE_RESERVE;
        preallocate(ctx, &file, 0, want).await.map_err(create_err)?
    } else {
        0
    };
    let mut buf = crate::frame::FrameBuf::new(head.len());
    buf.region_mut()[..head.len()].copy_from_slice(&head);
    let (res, _) = file
        .write_all_at(vec![IoSpan::new(buf, (0, head.len()), false)], 0)
        .await;
    res.map_err(create_err)?;
    let dir = ctx.target.dir.clone();
    file::blocking(move || sync_dir(&dir))
        .await
        .map_err(create_err)?;
    Ok(Rc::new(Segment {
        id,
        path: path.to_path_buf(),
        file,
        direct,
        st: RefCell::new(SegState {
            next_offset: head_len,
            opened_at: Instant::now(),
            has_data: false,
            chunks: Vec::new(),
            pending: VecDeque::new(),
            undurable: VecDeque::new(),
            written_end: head_len,
            written_seq: None,
            durable_end: 0,
            durable_seq: None,
            durable_frames: Vec::new(),
            durable_notices: Vec::new(),
            allocated_end,
            in_flight: 0,
            sealed: false,
            cut: None,
            head_len,
            head: head_stats,
        }),
        idle: Notify::new(),
    }))
}

/// The filesystem cannot preallocate (`EOPNOTSUPP`: FUSE, some network filesystems).
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

/// Reserves `from..to` of `file`; returns how far space is reserved now. Where the filesystem
/// cannot preallocate that is `from`, and preallocation is off for the rest of the run.
async fn preallocate(ctx: &Ctx, file: &SegFile, from: u64, to: u64) -> io::Result<u64> {
    match file.preallocate(from, to - from).await {
        Ok(()) => Ok(to),
        Err(e) if unsupported(&e) => {
            if ctx.preallocate.replace(false) {
                tracing::warn!(error = %e, "the filesystem cannot preallocate segments; a full disk will be found by a failing write instead");
            }
            Ok(from)
        }
        Err(e) => Err(e),
    }
}

/// Reserves disk space in `seg` for a write of `len` bytes carrying `frames` frames at its next
/// offset, plus its tail and (for frames) room for drop notices, `preallocate-bytes` at a time.
/// `Err` when the filesystem is full: the write must not be made, and the segment can still
/// be closed.
async fn reserve(ctx: &Rc<Ctx>, seg: &Rc<Segment>, len: u64, frames: usize) -> io::Result<()> {
    if !ctx.preallocate.get() {
        return Ok(());
    }
    let (need, have) = {
        let st = seg.st.borrow();
        let notices = if frames > 0 { NOTICE_RESERVE } else { 0 };
        // At most a chunk per frame (direct I/O) and one of drop notices.
        let chunks = st.chunks.len() + frames + 1;
        let need = st.next_offset + len + tail_reserve(chunks) + notices;
        (need, st.allocated_end)
    };
    if need <= have {
        return Ok(());
    }
    let step = ctx.cfg.preallocate_bytes.max(1);
    let want = (need + step).div_ceil(4096) * 4096;
    // Not a whole step's room left: at least what this write needs.
    let end = match preallocate(ctx, &seg.file, have, want).await {
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            preallocate(ctx, &seg.file, have, need).await?
        }
        r => r?,
    };
    seg.st.borrow_mut().allocated_end = end;
    Ok(())
}

/// The id of the next segment to create.
fn take_segment_id(ctx: &Ctx) -> u64 {
    let mut st = ctx.st.borrow_mut();
    st.next_id += 1;
    st.next_id - 1
}

fn open_next_ahead(ctx: &Rc<Ctx>) {
    let id = take_segment_id(ctx);
    ctx.st.borrow_mut().next = Some(spawn_local(open_segment(ctx.clone(), id)));
}

/// The segment a write of about `len` bytes goes to, rotating first if the current one is
/// full, old or failed. `Err` (the reason to drop the write's frames) when no segment can be
/// had; `prepare` then waits [`RETRY_OPEN_AFTER`] before asking again. A full segment is sealed
/// only once its successor exists: until then it stays open for drop notices (`notices_only`
/// writes), so frames dropped because no new segment can be created (a directory made
/// read-only, a full disk) are still named in the recording. Called with the intake lock.
async fn segment_for(
    ctx: &Rc<Ctx>,
    len: u64,
    notices_only: bool,
) -> Result<Rc<Segment>, DropReason> {
    let current = ctx.current();
    if let Some(current) = &current {
        let (sealed, rotate) = {
            let st = current.st.borrow();
            let limits = ctx.seg_cfg.borrow();
            let due = st.has_data
                && (st.next_offset + len > limits.max_bytes
                    || limits
                        .max_duration
                        .is_some_and(|d| st.opened_at.elapsed() >= d));
            (st.sealed, st.sealed || due)
        };
        if !rotate || (notices_only && !sealed) {
            return Ok(current.clone());
        }
    }
    let ahead = ctx.st.borrow_mut().next.take();
    let opened = match ahead {
        Some(h) => match h.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
        None => open_segment(ctx.clone(), take_segment_id(ctx)).await,
    };
    match opened {
        Ok(next) => {
            if let Some(current) = &current {
                seal(ctx, current);
            }
            tracing::info!(segment = %next.path.display(), "segment opened");
            ctx.counters.segments_opened.fetch_add(1, Ordering::Relaxed);
            // Its age counts from now, not from when it was opened ahead.
            next.st.borrow_mut().opened_at = Instant::now();
            let mut st = ctx.st.borrow_mut();
            st.retry_at = None;
            st.segments.push_back(next.clone());
            drop(st);
            open_next_ahead(ctx);
            Ok(next)
        }
        Err(e) => {
            let reason = e.drop_reason();
            ctx.st.borrow_mut().retry_at = Some((Instant::now() + RETRY_OPEN_AFTER, reason));
            ctx.failure(e);
            Err(reason)
        }
    }
}

/// Closes `seg` to new writes and finalizes it once its writes complete.
fn seal(ctx: &Rc<Ctx>, seg: &Rc<Segment>) {
    if std::mem::replace(&mut seg.st.borrow_mut().sealed, true) {
        return;
    }
    let handle = spawn_local(finalize(ctx.clone(), seg.clone()));
    ctx.st.borrow_mut().finalizers.push(handle);
}

/// Writes the summary and footer of a sealed segment once its writes are done, cutting it back
/// first if a write or fsync failed, and makes it durable.
async fn finalize(ctx: Rc<Ctx>, seg: Rc<Segment>) {
    loop {
        if seg.st.borrow().in_flight == 0 {
            break;
        }
        seg.idle.notified().await;
    }
    let end;
    // A failed fsync cuts the segment back to its durable end: then the tail is written again.
    // A tail the disk refused (full) is tried again until the recorder stops.
    let mut fsync_failures = 0;
    let mut tries = 0;
    loop {
        tries += 1;
        let (tail, at, cut) = {
            let st = seg.st.borrow();
            let at = st.cut.map_or(st.next_offset, |(o, _)| o);
            let tail = segment::encode_segment_tail(
                at,
                &st.chunks,
                &ctx.target.stream,
                &st.head,
                seg.direct,
            );
            (tail, at, st.cut.is_some())
        };
        if (cut || tries > 1)
            && let Err(e) = seg.file.set_len(at).await
        {
            abandon(&ctx, &seg, "cannot cut it back after a failure", e);
            return;
        }
        let mut buf = crate::frame::FrameBuf::new(tail.len());
        buf.region_mut()[..tail.len()].copy_from_slice(&tail);
        let (res, _) = seg
            .file
            .write_all_at(vec![IoSpan::new(buf, (0, tail.len()), false)], at)
            .await;
        if let Err(e) = res {
            if ctx.stopping.get() {
                abandon(&ctx, &seg, "cannot write its summary", e);
                return;
            }
            ctx.failure(WriterError::Finalize {
                segment: seg.path.clone(),
                source: e,
            });
            tokio::time::sleep(RETRY_OPEN_AFTER).await;
            continue;
        }
        match fsync(&ctx, &seg).await {
            Ok(()) if seg.file.entry_gone(&seg.path) => {
                segment_deleted(&ctx, &seg);
                return;
            }
            Ok(()) => {
                end = at + tail.len() as u64;
                break;
            }
            Err(e) if fsync_failures > 0 => {
                abandon(&ctx, &seg, "fsync failed twice", e);
                return;
            }
            Err(e) => {
                fsync_failures += 1;
                fsync_failed(&ctx, &seg, e);
            }
        }
    }
    let allocated = seg.st.borrow().allocated_end;
    if allocated > end {
        // Give back the space reserved past the end (tmpfs keeps it otherwise).
        seg.file.release_space(end, allocated - end).await;
    }
    if !seg.direct && ctx.dur.borrow().release_page_cache {
        seg.file.release_cache(end);
    }
    let made = std::mem::take(&mut seg.st.borrow_mut().undurable);
    ctx.made_durable(&seg, made);
    {
        let (frames, notices) = {
            let mut s = seg.st.borrow_mut();
            (
                std::mem::take(&mut s.durable_frames),
                std::mem::take(&mut s.durable_notices),
            )
        };
        let mut st = ctx.st.borrow_mut();
        st.segments.retain(|s| !Rc::ptr_eq(s, &seg));
        st.written.push(seg.path.clone());
        if let Some(id) = seg.file.identity() {
            st.finished.push(FinishedSegment {
                path: seg.path.clone(),
                id,
                frames,
                notices,
            });
        }
    }
    ctx.update_durable();
    tracing::info!(segment = %seg.path.display(), bytes = end, "segment finalized");
    // The finalized segment may still be referenced by the syncer's snapshot; close via drop.
    if let Ok(seg) = Rc::try_unwrap(seg)
        && let Err(e) = seg.file.close().await
    {
        tracing::warn!(error = %e, "closing a finalized segment failed");
    }
}

/// Leaves a segment unfinished after its summary could not be written: `recover` (or the next
/// start in the directory) rebuilds it from its intact chunks.
fn abandon(ctx: &Rc<Ctx>, seg: &Rc<Segment>, what: &str, e: io::Error) {
    tracing::error!(segment = %seg.path.display(), error = %e, "segment left unfinished ({what}); run `framerec recover`");
    ctx.st.borrow_mut().segments.retain(|s| !Rc::ptr_eq(s, seg));
    ctx.failure(WriterError::Finalize {
        segment: seg.path.clone(),
        source: e,
    });
}

/// An fsync of `seg` failed. Linux may have dropped the unsynced pages while keeping them
/// readable from the cache, so nothing written since the last good fsync can be trusted: the
/// segment is cut back to its durable end, its frames after it are counted as
/// `dropped{fsync_error}` (their drop notices and those they carried go to a later write), the
/// durable watermark never passes them, and the segment is closed.
fn fsync_failed(ctx: &Rc<Ctx>, seg: &Rc<Segment>, e: io::Error) {
    let lost = {
        let mut st = seg.st.borrow_mut();
        let at = st.durable_end.max(st.head_len);
        if st.cut.is_none_or(|(o, _)| o > at) {
            st.cut = Some((at, DropReason::FsyncError));
        }
        st.chunks.retain(|c| c.chunk_start_offset < at);
        st.written_end = at;
        st.written_seq = st.durable_seq;
        std::mem::take(&mut st.undurable)
    };
    let mut seqs: Vec<FrameSeq> = Vec::new();
    for u in lost {
        seqs.extend(u.metas.iter().map(|m| m.seq));
        ctx.ledger.notices().restore(u.drops);
    }
    ctx.ledger.revoked(&seqs, DropReason::FsyncError);
    never_durable(ctx, &seqs);
    ctx.failure(WriterError::Fsync {
        segment: seg.path.clone(),
        frames: seqs.len() as u64,
        source: e,
    });
    seal(ctx, seg);
}

/// The file of `seg` lost its name while it was recorded (deleted, renamed away, or its
/// directory removed): nothing in it can be found. Its frames, durable ones included, move from
/// written to `dropped{segment_deleted}` (their drop notices, and those it carried, go to a later
/// segment if one can be made); the segment takes no more writes and is left as it is.
fn segment_deleted(ctx: &Rc<Ctx>, seg: &Rc<Segment>) {
    let (durable, undurable, notices) = {
        let mut st = seg.st.borrow_mut();
        st.sealed = true;
        st.cut = Some((st.head_len, DropReason::SegmentDeleted));
        st.chunks.clear();
        (
            std::mem::take(&mut st.durable_frames),
            std::mem::take(&mut st.undurable),
            std::mem::take(&mut st.durable_notices),
        )
    };
    let mut notices = notices;
    let mut seqs: Vec<FrameSeq> = Vec::new();
    for u in undurable {
        seqs.extend(u.metas.iter().map(|m| m.seq));
        notices.extend(u.drops);
    }
    ctx.st.borrow_mut().segments.retain(|s| !Rc::ptr_eq(s, seg));
    lost_with_file(ctx, &seg.path, &durable, seqs, notices);
    // Its directory may be gone with it, and the segments finished in it.
    check_finished(ctx);
}

/// Counts the frames of a segment file that is gone as `dropped{segment_deleted}` instead of
/// written: `durable` (runs of sequence numbers) and `seqs`; its drop notices go to a later
/// segment.
fn lost_with_file(
    ctx: &Ctx,
    path: &Path,
    durable: &[(u64, u64)],
    mut seqs: Vec<FrameSeq>,
    notices: Vec<segment::DropRange>,
) {
    seqs.extend(durable.iter().flat_map(|&(a, b)| (a..=b).map(FrameSeq)));
    ctx.ledger.notices().restore(notices);
    ctx.ledger.revoked(&seqs, DropReason::SegmentDeleted);
    never_durable(ctx, &seqs);
    ctx.st.borrow_mut().written.retain(|p| p != path);
    ctx.failure(WriterError::SegmentDeleted {
        segment: path.to_path_buf(),
        frames: seqs.len() as u64,
    });
}

/// Looks for finalized segments whose file is gone (deleted, or the directory removed) and
/// counts their frames as lost. One `stat` per finalized segment: called when a loss was seen,
/// when the directory changed, and once at the end of the run.
fn check_finished(ctx: &Ctx) {
    use std::os::unix::fs::MetadataExt;
    let gone: Vec<FinishedSegment> = {
        let mut st = ctx.st.borrow_mut();
        let (gone, kept) = std::mem::take(&mut st.finished).into_iter().partition(|f| {
            std::fs::metadata(&f.path)
                .map(|m| (m.dev(), m.ino()) != f.id)
                .unwrap_or_else(|e| e.kind() == io::ErrorKind::NotFound)
        });
        st.finished = kept;
        gone
    };
    for f in gone {
        lost_with_file(ctx, &f.path, &f.frames, Vec::new(), f.notices);
    }
}

/// True when the recording directory is no longer the one the run started in (removed, or
/// removed and made again).
fn directory_changed(ctx: &Ctx) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(&ctx.target.dir) {
        Ok(m) => ctx.dir_id.is_some_and(|id| id != (m.dev(), m.ino())),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

async fn run_pool(ctx: Rc<Ctx>) -> WriterReport {
    let _ = ctx.counters.backend.set(ctx.backend.as_str());
    let first_id = take_segment_id(&ctx);
    match open_segment(ctx.clone(), first_id).await {
        Ok(seg) => {
            tracing::info!(segment = %seg.path.display(), backend = ctx.backend.as_str(), "recording");
            ctx.counters.segments_opened.fetch_add(1, Ordering::Relaxed);
            ctx.st.borrow_mut().segments.push_back(seg);
            open_next_ahead(&ctx);
        }
        Err(e) => {
            ctx.fail(e);
        }
    }
    let syncer = spawn_local(syncer(ctx.clone()));
    spawn_local(publisher(ctx.clone()));
    supervise_writers(&ctx).await;
    // Segments deleted while the run went on are losses, and their notices need a new home.
    check_finished(&ctx);
    // Drop notices that no later write carried: try hard, they are the only record of a gap.
    let h = Rc::new(RefCell::new(Histograms::default()));
    ctx.st.borrow_mut().task_histograms.push(h.clone());
    for _ in 0..3 {
        if ctx.ledger.notices().is_empty() {
            break;
        }
        ctx.st.borrow_mut().retry_at = None;
        write_batch(&ctx, &mut Vec::new(), &h).await;
    }
    let unwritten = ctx.ledger.notices().take();
    if !unwritten.is_empty() {
        let frames: u64 = unwritten.iter().map(|d| d.last.0 - d.first.0 + 1).sum();
        tracing::error!(
            frames,
            first = unwritten[0].first.0,
            "drop notices could not be written to the recording; the frames are counted as dropped but the files do not name them"
        );
    }
    ctx.stopping.set(true);
    ctx.sync_wake.notify_one();
    let _ = syncer.await;
    if let Some(current) = ctx.current() {
        seal(&ctx, &current);
    }
    let finalizers = std::mem::take(&mut ctx.st.borrow_mut().finalizers);
    for f in finalizers {
        let _ = f.await;
    }
    // The segment opened ahead holds no data: remove it.
    let next = ctx.st.borrow_mut().next.take();
    if let Some(next) = next
        && let Ok(Ok(seg)) = next.await
    {
        let _ = std::fs::remove_file(&seg.path);
        let _ = sync_dir(&ctx.target.dir);
    }
    apply_retention(&ctx, true).await;
    publish(&ctx);
    let mut st = ctx.st.borrow_mut();
    WriterReport {
        backend: ctx.backend,
        direct_io: ctx.direct.get(),
        segments: std::mem::take(&mut st.written),
        error: st.error.take(),
    }
}

/// How much one write may carry: the coalescing decision.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

impl BatchLimits {
    /// Moves queued frames into `batch`, whose frames hold `bytes`, until it is full; a batch
    /// takes one frame even when that frame alone is over the byte cap. Returns how many it
    /// took (for the ledger).
    pub fn fill(self, queue: &FrameQueue, batch: &mut Vec<Frame>, bytes: &mut usize) -> usize {
        let before = batch.len();
        while batch.len() < self.max_frames && (batch.is_empty() || *bytes < self.max_bytes) {
            let Some(f) = queue.pop() else { break };
            *bytes += f.payload_len();
            batch.push(f);
        }
        batch.len() - before
    }

    /// Whether a batch of `frames` holding `bytes` should be written without lingering.
    pub fn full(self, frames: usize, bytes: usize) -> bool {
        bytes >= self.max_bytes || frames >= self.max_frames
    }
}

/// Takes every queued frame up to the byte cap; waits (without spinning) when there is none.
/// Returns false once the queue is closed and empty.
async fn take_batch(ctx: &Ctx, batch: &mut Vec<Frame>) -> bool {
    let limits = BatchLimits {
        max_frames: if ctx.direct.get() {
            64
        } else {
            segment::MAX_FRAMES_PER_CHUNK
        },
        max_bytes: ctx.cfg.max_write_bytes,
    };
    let mut bytes = 0usize;
    let mut lingered = ctx.cfg.linger.is_zero();
    loop {
        for f in ctx.st.borrow_mut().rewrite.drain(..) {
            // Still counted in `frames_in_writers`.
            bytes += f.payload_len();
            batch.push(f);
        }
        let taken = limits.fill(&ctx.queue, batch, &mut bytes);
        ctx.ledger.taken(taken as u64);
        if !batch.is_empty() {
            if lingered || limits.full(batch.len(), bytes) || ctx.queue.is_closed() {
                return true;
            }
            lingered = true;
            let _ = tokio::time::timeout(ctx.cfg.linger, ctx.queue.ready()).await;
            continue;
        }
        if ctx.queue.is_closed() && ctx.queue.is_empty() {
            return false;
        }
        ctx.queue.ready().await;
    }
}

/// Runs the writer tasks until the queue is closed and drained, applying new live settings
/// as they come: more writers start at once; writers above the new count finish their write
/// and stop (the intake lock keeps sequence order = file order either way).
async fn supervise_writers(ctx: &Rc<Ctx>) {
    let mut tasks: Vec<Option<JoinHandle<()>>> = Vec::new();
    let mut rounds = 0u64;
    loop {
        if let Some(live) = ctx.live.take() {
            apply_live(ctx, live);
        }
        check_free_space(ctx);
        if directory_changed(ctx) {
            check_finished(ctx);
        }
        rounds += 1;
        if rounds.is_multiple_of(10) {
            apply_retention(ctx, false).await;
        }
        let want = ctx.writers.get();
        let drained =
            ctx.queue.is_closed() && ctx.queue.is_empty() && ctx.st.borrow().rewrite.is_empty();
        if tasks.len() < want {
            tasks.resize_with(want, || None);
        }
        for (i, slot) in tasks.iter_mut().enumerate() {
            if let Some(h) = slot
                && h.is_finished()
            {
                let h = slot.take().expect("checked");
                if let Err(e) = h.await {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
            if slot.is_none() && i < want && !drained {
                let ctx = ctx.clone();
                *slot = Some(spawn_local(async move {
                    writer_task(ctx.clone(), i).await;
                    ctx.writer_exited.notify_one();
                }));
            }
        }
        let running = tasks.iter().flatten().count();
        ctx.counters
            .writers
            .store(running as u64, Ordering::Relaxed);
        if running == 0 && drained {
            return;
        }
        let _ = tokio::time::timeout(APPLY_EVERY, ctx.writer_exited.notified()).await;
    }
}

/// Holds the output filesystem's free-space floor: the receiver stops admitting frames under
/// it, and starts again once free space is back above it by a margin (so it does not flap).
fn check_free_space(ctx: &Ctx) {
    let cfg = &ctx.cfg;
    if cfg.min_free_bytes == 0 && cfg.min_free_percent == 0 {
        return;
    }
    let Ok(vfs) = nix::sys::statvfs::statvfs(&ctx.target.dir) else {
        return;
    };
    let block = vfs.fragment_size();
    let free = vfs.blocks_available() * block;
    let size = vfs.blocks() * block;
    let floor = cfg
        .min_free_bytes
        .max(size / 100 * u64::from(cfg.min_free_percent));
    let margin = (floor / 20).min(16 << 20);
    if free < floor {
        if ctx.counters.set_refusing(true) {
            tracing::warn!(
                free_bytes = free,
                floor_bytes = floor,
                "free space under the floor: arriving frames are counted as disk_full until space returns"
            );
        }
    } else if free >= floor + margin && ctx.counters.set_refusing(false) {
        tracing::warn!(
            free_bytes = free,
            "free space is back above the floor: recording again"
        );
    }
}

/// Deletes the oldest finished segments, and the damaged originals repair kept aside beside
/// them, per [`crate::store::retention`]. Open segments are never touched. Runs every second
/// and once more when every segment is closed (`closing`), off the writer thread (unlinking a
/// large file takes a while).
async fn apply_retention(ctx: &Rc<Ctx>, closing: bool) {
    use crate::store::{self, FileKind, retention};
    let limits = retention::Limits {
        max_total_bytes: ctx.cfg.retain_bytes,
        max_age: ctx.cfg.retain_age,
    };
    if limits == retention::Limits::default() {
        return;
    }
    let Some(first_open) = ctx
        .st
        .borrow()
        .segments
        .iter()
        .map(|s| s.id)
        .min()
        .or(closing.then_some(u64::MAX))
    else {
        return;
    };
    let dir = ctx.target.dir.clone();
    let deleted = file::blocking(move || {
        let files = store::list(&dir)?;
        let entries: Vec<retention::Entry> = files
            .iter()
            .map(|f| retention::Entry {
                id: f.id,
                kind: f.kind,
                len: f.len,
                modified: f.modified,
            })
            .collect();
        let mut deleted = Vec::new();
        for i in retention::to_delete(&entries, limits, first_open, std::time::SystemTime::now()) {
            std::fs::remove_file(&files[i].path)?;
            deleted.push((files[i].kind, files[i].path.clone()));
        }
        Ok(deleted)
    })
    .await;
    match deleted {
        Ok(paths) => {
            // Deleted by the user's retention policy: not a loss.
            ctx.st
                .borrow_mut()
                .finished
                .retain(|f| !paths.iter().any(|(_, p)| *p == f.path));
            for (kind, p) in paths {
                if kind == FileKind::Segment {
                    ctx.counters
                        .segments_deleted
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(segment = %p.display(), "segment deleted (retention)");
                } else {
                    tracing::info!(file = %p.display(), "damaged original deleted (retention)");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "retention: cannot delete old segments"),
    }
}

fn apply_live(ctx: &Ctx, live: Live) {
    let writers = live.writers.clamp(1, MAX_WRITERS);
    if writers != ctx.writers.get() {
        tracing::info!(
            from = ctx.writers.get(),
            to = writers,
            "changing the number of writers"
        );
        ctx.writers.set(writers);
    }
    *ctx.seg_cfg.borrow_mut() = live.segment;
    *ctx.dur.borrow_mut() = live.durability;
    // The syncer picks up a new fsync interval at its next wake-up: wake it now.
    ctx.sync_wake.notify_one();
}

async fn writer_task(ctx: Rc<Ctx>, index: usize) {
    // Owned by this task; the publisher reads it between writes (same thread, no lock).
    let h = {
        let mut st = ctx.st.borrow_mut();
        while st.task_histograms.len() <= index {
            st.task_histograms
                .push(Rc::new(RefCell::new(Histograms::default())));
        }
        st.task_histograms[index].clone()
    };
    let mut batch: Vec<Frame> = Vec::with_capacity(segment::MAX_FRAMES_PER_CHUNK);
    loop {
        if index >= ctx.writers.get() {
            return;
        }
        let guard = ctx.intake.lock().await;
        if index >= ctx.writers.get() {
            return;
        }
        if !take_batch(&ctx, &mut batch).await {
            return;
        }
        if ctx.record_histograms {
            let now = host_mono_ns();
            let mut h = h.borrow_mut();
            for f in &batch {
                record(
                    &mut h.queue_wait_ns,
                    now.saturating_sub(f.meta.host_mono_ns),
                );
            }
        }
        if ctx.failed() {
            discard_frames(&ctx, &mut batch, DropReason::IoError);
            continue;
        }
        let write = prepare(&ctx, &mut batch).await;
        drop(guard);
        if let Some(w) = write {
            complete(&ctx, w, &h).await;
        }
    }
}

/// A write that has been laid out and is ready to submit.
struct PreparedWrite {
    seg: Rc<Segment>,
    offset: u64,
    spans: Vec<IoSpan>,
    metas: Vec<FrameMeta>,
    chunks: Vec<ChunkIndexEntry>,
    drops: Vec<segment::DropRange>,
}

/// Counts `frames` as dropped for `reason` (no segment can take them) and recycles their
/// buffers, leaving `frames` empty.
fn discard_frames(ctx: &Ctx, frames: &mut Vec<Frame>, reason: DropReason) {
    let seqs: Vec<FrameSeq> = frames.iter().map(|f| f.meta.seq).collect();
    ctx.ledger.dropped(&seqs, reason);
    // Frames written again after a failed fsync were taken once already.
    never_durable(ctx, &seqs);
    frames.clear();
}

/// Picks the segment, assigns the offset and encodes drop notices and frames in place, moving
/// the frames out of `frames` (which keeps its capacity for the next batch). Called with the
/// intake lock held.
async fn prepare(ctx: &Rc<Ctx>, frames: &mut Vec<Frame>) -> Option<PreparedWrite> {
    let mut drops = ctx.ledger.notices().take();
    let estimate: u64 = frames
        .iter()
        .map(|f| f.buf.region().len() as u64)
        .sum::<u64>()
        + 4096 * (1 + drops.len() as u64 / 16);
    // The disk refused a segment or space a moment ago: do not ask again for every batch
    // (drop notices alone still go to the open segment, which keeps room for them).
    let notices_only = frames.is_empty();
    let paused = ctx
        .st
        .borrow()
        .retry_at
        .filter(|(until, _)| Instant::now() < *until && !notices_only);
    let seg = match paused {
        Some((_, reason)) => Err(reason),
        None => segment_for(ctx, estimate, notices_only).await,
    };
    let seg = match seg {
        Ok(s) => s,
        Err(reason) => {
            ctx.ledger.notices().restore(drops);
            discard_frames(ctx, frames, reason);
            return None;
        }
    };
    if let Err(e) = reserve(ctx, &seg, estimate, frames.len()).await {
        // The disk is full: the segment stays open (its tail and drop notices have room);
        // these frames are dropped, and space is looked for again after a pause.
        let reason = DropReason::of_write_error(&e);
        ctx.st.borrow_mut().retry_at = Some((Instant::now() + RETRY_OPEN_AFTER, reason));
        ctx.ledger.notices().restore(drops);
        let n = frames.len() as u64;
        discard_frames(ctx, frames, reason);
        ctx.failure(WriterError::Reserve {
            segment: seg.path.clone(),
            frames: n,
            source: e,
        });
        return None;
    }
    let direct = seg.direct;
    let mut st = seg.st.borrow_mut();
    let offset = st.next_offset;
    let mut at = offset;
    let mut spans = Vec::with_capacity(frames.len() + 1);
    let mut chunks = Vec::new();
    if !drops.is_empty() {
        // The notices go before this batch in the file, and the batch may hold frames taken
        // before a drop was noticed: a notice's log time may not pass the batch's first frame,
        // or the file leaves log-time order (`mcap doctor --strict-message-order`).
        if let Some(first) = frames.first() {
            for d in &mut drops {
                d.time_ns = d.time_ns.min(first.meta.host_real_ns);
            }
        }
        let (buf, span, entry) = encode_drop_chunk(&drops, &ctx.target.stream.topic, at, direct);
        at += (span.1 - span.0) as u64;
        spans.push(IoSpan::new(buf, span, false));
        chunks.push(entry);
    }
    let layout = encode_frame_batch(frames, at, &ctx.target.stream, direct);
    at += layout.len;
    chunks.extend(layout.chunks);
    let metas: Vec<_> = frames.iter().map(|f| f.meta).collect();
    {
        let mut pool = ctx.st.borrow_mut();
        for m in &metas {
            pool.watermark.taken(m.seq.0, m.host_mono_ns);
        }
    }
    spans.extend(frames.drain(..).map(|f| IoSpan::new(f.buf, f.span, true)));
    st.next_offset = at;
    st.in_flight += 1;
    st.has_data = true;
    st.pending.push_back(PendingWrite {
        offset,
        end: at,
        finished: None,
    });
    drop(st);
    Some(PreparedWrite {
        seg,
        offset,
        spans,
        metas,
        chunks,
        drops,
    })
}

/// Submits a prepared write, awaits it, and hands it to [`settle`].
async fn complete(ctx: &Rc<Ctx>, w: PreparedWrite, h: &RefCell<Histograms>) {
    ctx.counters
        .writes_in_flight
        .fetch_add(1, Ordering::Relaxed);
    if !ctx.cfg.write_delay.is_zero() {
        tokio::time::sleep(ctx.cfg.write_delay).await;
    }
    let started = Instant::now();
    let (result, spans) = w.seg.file.write_all_at(w.spans, w.offset).await;
    let elapsed = started.elapsed().as_nanos() as u64;
    ctx.counters
        .writes_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    if result.is_ok() && ctx.record_histograms {
        let mut h = h.borrow_mut();
        record(&mut h.write_latency_ns, elapsed);
        record(&mut h.frames_per_write, w.metas.len() as u64);
    }
    let mut metas = w.metas;
    let mut spans = spans;
    if matches!(
        w.seg.st.borrow().cut,
        Some((_, DropReason::FsyncError | DropReason::SegmentDeleted))
    ) {
        spans = rewrite_later(ctx, &mut metas, spans);
    }
    let mut bytes = 0u64;
    for s in spans {
        // A frame's buffer goes back to the pool as the span drops.
        if s.pooled {
            bytes += s.buf.payload_len() as u64;
        }
    }
    w.seg.finish(
        w.offset,
        Finished {
            result,
            metas,
            chunks: w.chunks,
            drops: w.drops,
            bytes,
        },
    );
    settle(ctx, &w.seg, h);
    let idle = {
        let mut st = w.seg.st.borrow_mut();
        st.in_flight -= 1;
        st.in_flight == 0
    };
    if idle {
        w.seg.idle.notify_one();
    }
}

/// An fsync of this write's segment failed while the write was in flight: its frames are still
/// in memory, so they are written again (to the next segment) instead of being dropped, once.
/// Takes them out of `metas` and `spans`; gives back the spans that are not frames.
fn rewrite_later(ctx: &Ctx, metas: &mut Vec<FrameMeta>, spans: Vec<IoSpan>) -> Vec<IoSpan> {
    let again = {
        let st = ctx.st.borrow();
        metas.iter().any(|m| st.rewritten.contains(&m.seq.0))
    };
    if metas.is_empty() || again {
        return spans;
    }
    let mut rest = Vec::new();
    let mut frames = Vec::with_capacity(metas.len());
    let mut it = metas.iter();
    for s in spans {
        if s.pooled
            && let Some(meta) = it.next()
        {
            frames.push(Frame {
                meta: *meta,
                buf: s.buf,
                span: (0, 0),
            });
        } else {
            rest.push(s);
        }
    }
    // They stay pending in the watermark until their second write is durable.
    let seqs: Vec<FrameSeq> = metas.iter().map(|m| m.seq).collect();
    ctx.counters
        .frames_rewritten
        .fetch_add(frames.len() as u64, Ordering::Relaxed);
    tracing::warn!(
        frames = frames.len(),
        first = seqs[0].0,
        "an fsync failed while these frames were being written; they are still in memory and are written again to the next segment"
    );
    {
        let mut st = ctx.st.borrow_mut();
        st.rewritten.extend(seqs.iter().map(|s| s.0));
        st.rewrite.extend(frames);
    }
    metas.clear();
    ctx.queue.wake();
    rest
}

/// Accounts for the completed writes at the front of `seg`, in file order: their frames are
/// written while every write before them succeeded; from the first failed write on, the
/// segment will be cut back there, so they are dropped, under that write's reason.
fn settle(ctx: &Rc<Ctx>, seg: &Rc<Segment>, h: &RefCell<Histograms>) {
    loop {
        let w = {
            let mut st = seg.st.borrow_mut();
            if st.pending.front().is_none_or(|w| w.finished.is_none()) {
                return;
            }
            st.pending.pop_front().expect("checked")
        };
        let Finished {
            result,
            metas,
            chunks,
            drops,
            bytes,
        } = w.finished.expect("checked");
        let seqs = || metas.iter().map(|m| m.seq).collect::<Vec<_>>();
        let cut = seg.st.borrow().cut;
        match (result, cut) {
            (Ok(()), None) => {
                written(ctx, seg, w.end, metas, chunks, drops, bytes, h);
            }
            (Err(e), None) => {
                let reason = DropReason::of_write_error(&e);
                seg.st.borrow_mut().cut = Some((w.offset, reason));
                lose(ctx, &seqs(), drops, reason);
                ctx.failure(WriterError::Write {
                    segment: seg.path.clone(),
                    offset: w.offset,
                    len: w.end - w.offset,
                    frames: metas.len() as u64,
                    source: e,
                });
                seal(ctx, seg);
            }
            (_, Some((_, reason))) => lose(ctx, &seqs(), drops, reason),
        }
    }
}

/// Counts a settled write's frames as written.
#[allow(clippy::too_many_arguments)]
fn written(
    ctx: &Rc<Ctx>,
    seg: &Segment,
    end: u64,
    metas: Vec<FrameMeta>,
    chunks: Vec<ChunkIndexEntry>,
    drops: Vec<segment::DropRange>,
    bytes: u64,
    h: &RefCell<Histograms>,
) {
    if ctx.record_histograms {
        let now = host_mono_ns();
        let mut h = h.borrow_mut();
        for m in &metas {
            record(
                &mut h.capture_to_written_ns,
                now.saturating_sub(m.host_mono_ns),
            );
        }
    }
    let n = metas.len() as u64;
    ctx.counters.writes.fetch_add(1, Ordering::Relaxed);
    ctx.ledger.written(n, bytes);
    ctx.succeeded();
    {
        let mut st = seg.st.borrow_mut();
        st.chunks.extend(chunks);
        st.written_end = end;
        if let Some(m) = metas.last() {
            st.written_seq = Some(m.seq.0);
        }
        st.undurable.push_back(Undurable { end, metas, drops });
    }
    let mut st = ctx.st.borrow_mut();
    st.frames_since_sync += n;
    if ctx
        .dur
        .borrow()
        .fsync_every_frames
        .is_some_and(|k| st.frames_since_sync >= k)
    {
        ctx.sync_wake.notify_one();
    }
}

/// Counts a settled write's frames as dropped for `reason`; its drop notices go to a later write.
fn lose(ctx: &Ctx, seqs: &[FrameSeq], drops: Vec<segment::DropRange>, reason: DropReason) {
    ctx.ledger.notices().restore(drops);
    ctx.ledger.dropped(seqs, reason);
    never_durable(ctx, seqs);
}

/// Dropped frames will never be durable: the watermark may pass them (and capture-to-durable
/// never counts them).
fn never_durable(ctx: &Ctx, seqs: &[FrameSeq]) {
    let mut st = ctx.st.borrow_mut();
    for s in seqs {
        st.watermark.dropped(s.0);
    }
}

/// Writes a batch (possibly only pending drop notices) outside the writer tasks.
async fn write_batch(ctx: &Rc<Ctx>, frames: &mut Vec<Frame>, h: &RefCell<Histograms>) {
    let guard = ctx.intake.lock().await;
    let w = prepare(ctx, frames).await;
    drop(guard);
    if let Some(w) = w {
        complete(ctx, w, h).await;
    }
}

/// Moves what every writer task and the pool recorded since the last call into the shared
/// histograms the statistics surfaces read.
fn publish(ctx: &Ctx) {
    if !ctx.record_histograms {
        return;
    }
    let mut st = ctx.st.borrow_mut();
    let st = &mut *st;
    publish_sets(
        &st.task_histograms,
        &mut st.pool_histograms,
        &mut st.publish_scratch,
        &ctx.shared_histograms,
    );
}

/// Moves what the writer tasks and the pool recorded into `shared`, through `scratch`: a set
/// kept for the purpose, since a fresh 2 MB set five times a second fragments the allocator's
/// heap and shows as slowly growing RSS over hours. Both layouts publish through here.
fn publish_sets(
    tasks: &[Rc<RefCell<Histograms>>],
    pool: &mut Histograms,
    scratch: &mut Histograms,
    shared: &SharedHistograms,
) {
    for h in tasks {
        scratch.drain_from(&mut h.borrow_mut());
    }
    scratch.drain_from(pool);
    if let Ok(mut shared) = shared.lock() {
        shared.absorb(scratch);
    }
}

/// Publishes the histograms five times a second, off the writers' path.
async fn publisher(ctx: Rc<Ctx>) {
    while !ctx.stopping.get() {
        tokio::time::sleep(PUBLISH_EVERY).await;
        publish(&ctx);
    }
}

/// fsyncs open segments per the durability policy and advances the durable watermark.
async fn syncer(ctx: Rc<Ctx>) {
    loop {
        let every = ctx.dur.borrow().fsync_interval;
        match every {
            Some(every) => {
                let _ = tokio::time::timeout(every, ctx.sync_wake.notified()).await;
            }
            None => ctx.sync_wake.notified().await,
        }
        if ctx.stopping.get() {
            return;
        }
        ctx.st.borrow_mut().frames_since_sync = 0;
        let open: Vec<Rc<Segment>> = ctx.st.borrow().segments.iter().cloned().collect();
        for seg in open {
            sync_segment(&ctx, &seg).await;
        }
        ctx.update_durable();
    }
}

/// One fdatasync of `seg`, timed into the fsync histogram and counted when it succeeds.
async fn fsync(ctx: &Ctx, seg: &Segment) -> io::Result<()> {
    let t = Instant::now();
    let r = seg.file.sync_data().await;
    record(
        &mut ctx.st.borrow_mut().pool_histograms.fsync_latency_ns,
        t.elapsed().as_nanos() as u64,
    );
    if r.is_ok() {
        ctx.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    r
}

async fn sync_segment(ctx: &Rc<Ctx>, seg: &Rc<Segment>) {
    let (end, seq) = {
        let st = seg.st.borrow();
        if st.cut.is_some() || st.written_end <= st.durable_end {
            return;
        }
        (st.written_end, st.written_seq)
    };
    match fsync(ctx, seg).await {
        Ok(()) if seg.file.entry_gone(&seg.path) => segment_deleted(ctx, seg),
        Ok(()) => {
            let mut st = seg.st.borrow_mut();
            if st.cut.is_some() {
                // A write failed meanwhile; its segment's own close decides what is durable.
                return;
            }
            st.durable_end = st.durable_end.max(end);
            if seq.is_some() {
                st.durable_seq = seq.max(st.durable_seq);
            }
            let mut made = Vec::new();
            while st.undurable.front().is_some_and(|u| u.end <= end) {
                made.extend(st.undurable.pop_front());
            }
            drop(st);
            ctx.made_durable(seg, made);
            if !seg.direct && ctx.dur.borrow().release_page_cache {
                seg.file.release_cache(end);
            }
        }
        Err(e) => fsync_failed(ctx, seg, e),
    }
}

/// Ids of the segments in `dir`, sorted, and whether each one looks finished.
pub fn existing_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if let Some(id) = e
                    .file_name()
                    .to_str()
                    .and_then(segment::parse_segment_file_name)
                {
                    out.push((id, e.path()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}
