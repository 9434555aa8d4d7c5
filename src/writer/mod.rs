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

mod config;
mod durability;
mod file;
pub mod files;
mod lost;
mod pool;
mod segments;
mod uring;
mod write;

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

use crate::frame::{
    DropReason, Frame, FrameKey, FrameMeta, FrameSeq, StreamId, StreamInfo, host_mono_ns,
};
use crate::ledger::Ledger;
use crate::observe::{Counters, Histograms, SharedHistograms, record};
use crate::queue::FrameQueue;
use crate::segment::{
    self, ChunkIndexEntry, SegmentMeta, TailStats, encode_drop_chunk, encode_frame_batch,
};
use crate::stop::Stop;

pub use config::*;
pub use file::{Backend, IoSpan};
use file::{SegFile, sync_dir};
use lost::*;
pub use pool::BatchLimits;
use pool::*;
use segments::*;
use write::*;

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
    /// The recording's streams: stream `i` is the segments' channel `i + 1`.
    pub streams: Vec<StreamInfo>,
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
    /// Told when segments open and finalize, and asked before retention deletes one.
    pub listeners: Listeners,
}

/// Told of a segment's life; asked before retention deletes it. The seam where whatever acts on
/// finished segments (an uploader, a compressor, a control channel) plugs in: a segment a
/// listener still needs is not deleted.
///
/// # Threading
/// Called on the writer thread (`may_delete` on a blocking thread beside it): return at once,
/// handing any slow work to a thread of your own.
pub trait SegmentListener: Send + Sync {
    /// Segment `id` became the one new frames go to.
    fn opened(&self, _id: u64, _path: &Path) {}
    /// Segment `id` is complete and durable: summary and footer written, fsync'd.
    fn finalized(&self, _id: u64, _path: &Path) {}
    /// May retention delete the finished segment `id` now? `false` keeps it until a later
    /// round asks again.
    fn may_delete(&self, _id: u64, _path: &Path) -> bool {
        true
    }
}

/// The listeners of a run (none by default).
pub type Listeners = Arc<Vec<Arc<dyn SegmentListener>>>;

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
            parts.ledger.unqueued(f.meta.key(), DropReason::IoError);
        }
        if parts.queue.is_closed() && parts.queue.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
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
    /// Frames (by [`FrameMeta::order`]) written again once already (a second time they are
    /// dropped).
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
    listeners: Listeners,
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
            listeners: parts.listeners.clone(),
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
                // Runs per stream: the last run of the frame's stream grows.
                match seg_st
                    .durable_frames
                    .iter_mut()
                    .rev()
                    .find(|r| r.0 == m.stream)
                {
                    Some((_, _, last)) if *last + 1 == m.seq.0 => *last = m.seq.0,
                    _ => seg_st.durable_frames.push((m.stream, m.seq.0, m.seq.0)),
                }
                if let Some(captured) = st.watermark.durable(m.order)
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
