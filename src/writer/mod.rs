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

mod file;
pub mod files;
mod uring;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};
use tokio::task::{JoinHandle, spawn_local};

use crate::frame::{BufferPool, DropReason, Frame, FrameSeq, StreamInfo, host_mono_ns};
use crate::observe::{Counters, Histograms, SharedHistograms, record};
use crate::queue::{DropLog, FrameQueue};
use crate::segment::{
    self, ChunkIndexEntry, SegmentMeta, TailStats, encode_drop_chunk, encode_frame_batch,
};

pub use file::{Backend, IoSpan};
use file::{SegFile, sync_dir};

/// Which I/O backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    pub pool: Arc<BufferPool>,
    pub drops: Arc<DropLog>,
    pub counters: Arc<Counters>,
    /// Set by the writers when they fail, so the receiver stops.
    pub stop: Arc<AtomicBool>,
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
    #[error("write of {len} bytes at offset {offset} of {segment} failed: {source}")]
    Write {
        segment: PathBuf,
        offset: u64,
        len: u64,
        source: io::Error,
    },
    #[error(
        "fsync of {segment} failed: {source} (data written since the last good fsync may be lost)"
    )]
    Fsync { segment: PathBuf, source: io::Error },
    #[error("cannot finalize segment {segment}: {source}")]
    Finalize { segment: PathBuf, source: io::Error },
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
        parts.stop.store(true, Ordering::Relaxed);
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
            drop_frames(
                &parts.counters,
                &parts.drops,
                &[f.meta.seq],
                DropReason::IoError,
            );
            parts.pool.put(f.buf);
        }
        if parts.queue.is_closed() && parts.queue.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn drop_frames(counters: &Counters, drops: &DropLog, seqs: &[FrameSeq], reason: DropReason) {
    counters.add_dropped(reason, seqs.len() as u64);
    let now = crate::frame::host_real_ns();
    for s in seqs {
        drops.add(*s, *s, reason, now);
    }
}

/// A write that was issued to a segment, in file order.
struct PendingWrite {
    end: u64,
    last_seq: Option<u64>,
    done: bool,
}

struct SegState {
    next_offset: u64,
    opened_at: Instant,
    has_data: bool,
    chunks: Vec<ChunkIndexEntry>,
    pending: VecDeque<PendingWrite>,
    /// End of the contiguous prefix of completed writes, and the last frame in it.
    written_end: u64,
    written_seq: Option<u64>,
    durable_end: u64,
    durable_seq: Option<u64>,
    in_flight: usize,
    sealed: bool,
    poisoned: bool,
    head: TailStats,
}

struct Segment {
    path: PathBuf,
    file: SegFile,
    direct: bool,
    st: RefCell<SegState>,
    /// Notified when the last in-flight write of a sealed segment completes.
    idle: Notify,
}

impl Segment {
    fn mark_done(&self, end: u64) {
        let mut st = self.st.borrow_mut();
        if let Some(w) = st.pending.iter_mut().find(|w| w.end == end) {
            w.done = true;
        }
        while st.pending.front().is_some_and(|w| w.done) {
            let w = st.pending.pop_front().expect("front exists");
            st.written_end = w.end;
            if w.last_seq.is_some() {
                st.written_seq = w.last_seq;
            }
        }
    }
}

struct PoolState {
    /// Open segments (not yet finalized), oldest first; the last one takes new writes.
    segments: VecDeque<Rc<Segment>>,
    next: Option<JoinHandle<Result<Rc<Segment>, WriterError>>>,
    next_id: u64,
    finalizers: Vec<JoinHandle<()>>,
    written: Vec<PathBuf>,
    /// Last frame of the segments already finalized.
    finalized_seq: Option<u64>,
    error: Option<WriterError>,
    frames_since_sync: u64,
    /// fsync latency and capture to durable, recorded by the syncer and finalizers.
    pool_histograms: Histograms,
    /// Each writer task's own histograms (only that task records into them).
    task_histograms: Vec<Rc<RefCell<Histograms>>>,
    /// Sequence number and capture stamp of each frame written or being written and not yet
    /// durable, in sequence order.
    awaiting_durable: VecDeque<(u64, u64)>,
    /// Reused by `publish`.
    publish_scratch: Histograms,
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
    pool: Arc<BufferPool>,
    drops: Arc<DropLog>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    shared_histograms: SharedHistograms,
    record_histograms: bool,
    backend: Backend,
    direct: Cell<bool>,
    intake: Mutex<()>,
    sync_wake: Notify,
    stopping: Cell<bool>,
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
        Rc::new(Ctx {
            direct: Cell::new(cfg.direct_io),
            writers: Cell::new(cfg.writers.clamp(1, MAX_WRITERS)),
            cfg,
            seg_cfg: RefCell::new(seg_cfg),
            dur: RefCell::new(dur),
            live: parts.live.clone(),
            st: RefCell::new(PoolState {
                segments: VecDeque::new(),
                next: None,
                next_id: target.first_segment_id,
                finalizers: Vec::new(),
                written: Vec::new(),
                finalized_seq: None,
                error: None,
                frames_since_sync: 0,
                pool_histograms: Histograms::default(),
                task_histograms: Vec::new(),
                awaiting_durable: VecDeque::new(),
                publish_scratch: Histograms::default(),
            }),
            target,
            queue: parts.queue.clone(),
            pool: parts.pool.clone(),
            drops: parts.drops.clone(),
            counters: parts.counters.clone(),
            stop: parts.stop.clone(),
            shared_histograms: parts.histograms.clone(),
            record_histograms: parts.record_histograms,
            backend,
            intake: Mutex::new(()),
            sync_wake: Notify::new(),
            stopping: Cell::new(false),
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
        self.stop.store(true, Ordering::Relaxed);
    }

    fn current(&self) -> Option<Rc<Segment>> {
        self.st.borrow().segments.back().cloned()
    }

    /// Updates the recording's durable watermark: everything in finalized segments, plus the
    /// durable prefix of the oldest open segment.
    fn update_durable(&self) {
        let mut st = self.st.borrow_mut();
        let oldest = st.segments.front().and_then(|s| s.st.borrow().durable_seq);
        if let Some(seq) = oldest.max(st.finalized_seq)
            && self.counters.durable_seq() != Some(seq)
        {
            self.counters.set_durable_seq(seq);
            tracing::debug!(durable_seq = seq, "durable");
            let now = host_mono_ns();
            let st = &mut *st;
            while let Some(&(s, captured)) = st.awaiting_durable.front()
                && s <= seq
            {
                st.awaiting_durable.pop_front();
                record(
                    &mut st.pool_histograms.capture_to_durable_ns,
                    now.saturating_sub(captured),
                );
            }
        }
    }
}

/// Creates segment `id`: file, head, directory entry made durable.
async fn open_segment(ctx: Rc<Ctx>, id: u64) -> Result<Rc<Segment>, WriterError> {
    let path = ctx.target.dir.join(segment::segment_file_name(id));
    let create_err = |source| WriterError::CreateSegment {
        path: path.clone(),
        source,
    };
    let mut direct = ctx.direct.get();
    let file = match SegFile::create(&path, direct, ctx.backend) {
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "the filesystem refuses O_DIRECT; using buffered I/O");
            ctx.direct.set(false);
            direct = false;
            SegFile::create(&path, false, ctx.backend)
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
        path,
        file,
        direct,
        st: RefCell::new(SegState {
            next_offset: head.len() as u64,
            opened_at: Instant::now(),
            has_data: false,
            chunks: Vec::new(),
            pending: VecDeque::new(),
            written_end: head.len() as u64,
            written_seq: None,
            durable_end: 0,
            durable_seq: None,
            in_flight: 0,
            sealed: false,
            poisoned: false,
            head: head_stats,
        }),
        idle: Notify::new(),
    }))
}

fn open_next_ahead(ctx: &Rc<Ctx>) {
    let mut st = ctx.st.borrow_mut();
    let id = st.next_id;
    st.next_id += 1;
    st.next = Some(spawn_local(open_segment(ctx.clone(), id)));
}

/// The segment a write of about `len` bytes goes to, rotating first if the current one is full
/// or old. Called with the intake lock held.
async fn segment_for(ctx: &Rc<Ctx>, len: u64) -> Result<Rc<Segment>, WriterError> {
    let current = ctx.current().expect("a segment is open while writers run");
    let rotate = {
        let st = current.st.borrow();
        let limits = ctx.seg_cfg.borrow();
        st.sealed
            || st.poisoned
            || (st.has_data
                && (st.next_offset + len > limits.max_bytes
                    || limits
                        .max_duration
                        .is_some_and(|d| st.opened_at.elapsed() >= d)))
    };
    if !rotate {
        return Ok(current);
    }
    seal(ctx, &current);
    let next = ctx
        .st
        .borrow_mut()
        .next
        .take()
        .expect("the next segment is always being opened");
    let next = match next.await {
        Ok(r) => r?,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    tracing::info!(segment = %next.path.display(), "segment opened");
    ctx.counters.segments_opened.fetch_add(1, Ordering::Relaxed);
    ctx.st.borrow_mut().segments.push_back(next.clone());
    open_next_ahead(ctx);
    Ok(next)
}

/// Closes `seg` to new writes and finalizes it once its writes complete.
fn seal(ctx: &Rc<Ctx>, seg: &Rc<Segment>) {
    if std::mem::replace(&mut seg.st.borrow_mut().sealed, true) {
        return;
    }
    let handle = spawn_local(finalize(ctx.clone(), seg.clone()));
    ctx.st.borrow_mut().finalizers.push(handle);
}

async fn finalize(ctx: Rc<Ctx>, seg: Rc<Segment>) {
    loop {
        if seg.st.borrow().in_flight == 0 {
            break;
        }
        seg.idle.notified().await;
    }
    let (tail, at) = {
        let st = seg.st.borrow();
        if st.poisoned {
            tracing::error!(segment = %seg.path.display(), "segment left unfinished after a failure; run `framerec recover`");
            ctx.st
                .borrow_mut()
                .segments
                .retain(|s| !Rc::ptr_eq(s, &seg));
            return;
        }
        let tail = segment::encode_segment_tail(
            st.next_offset,
            &st.chunks,
            &ctx.target.stream,
            &st.head,
            seg.direct,
        );
        (tail, st.next_offset)
    };
    let mut buf = crate::frame::FrameBuf::new(tail.len());
    buf.region_mut()[..tail.len()].copy_from_slice(&tail);
    let err = |source| WriterError::Finalize {
        segment: seg.path.clone(),
        source,
    };
    let (res, _) = seg
        .file
        .write_all_at(vec![IoSpan::new(buf, (0, tail.len()), false)], at)
        .await;
    let res = match res {
        Ok(()) => {
            let t = Instant::now();
            let r = seg.file.sync_data().await;
            let mut st = ctx.st.borrow_mut();
            record(
                &mut st.pool_histograms.fsync_latency_ns,
                t.elapsed().as_nanos() as u64,
            );
            r
        }
        Err(e) => Err(e),
    };
    if let Err(e) = res {
        seg.st.borrow_mut().poisoned = true;
        ctx.st
            .borrow_mut()
            .segments
            .retain(|s| !Rc::ptr_eq(s, &seg));
        ctx.fail(err(e));
        return;
    }
    ctx.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    let end = at + tail.len() as u64;
    if !seg.direct && ctx.dur.borrow().release_page_cache {
        seg.file.release_cache(end);
    }
    let last = seg.st.borrow().written_seq;
    {
        let mut st = ctx.st.borrow_mut();
        st.segments.retain(|s| !Rc::ptr_eq(s, &seg));
        st.written.push(seg.path.clone());
        if last.is_some() {
            st.finalized_seq = last.max(st.finalized_seq);
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

async fn run_pool(ctx: Rc<Ctx>) -> WriterReport {
    let _ = ctx.counters.backend.set(ctx.backend.as_str());
    let first_id = ctx.st.borrow().next_id;
    ctx.st.borrow_mut().next_id += 1;
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
    // Drop notices that no later write carried.
    if !ctx.failed() && !ctx.drops.is_empty() {
        let h = Rc::new(RefCell::new(Histograms::default()));
        ctx.st.borrow_mut().task_histograms.push(h.clone());
        write_batch(&ctx, &mut Vec::new(), &h).await;
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
    publish(&ctx);
    let mut st = ctx.st.borrow_mut();
    WriterReport {
        backend: ctx.backend,
        direct_io: ctx.direct.get(),
        segments: std::mem::take(&mut st.written),
        error: st.error.take(),
    }
}

/// Takes every queued frame up to the byte cap; waits (without spinning) when there is none.
/// Returns false once the queue is closed and empty.
async fn take_batch(ctx: &Ctx, batch: &mut Vec<Frame>) -> bool {
    let max_frames = if ctx.direct.get() {
        64
    } else {
        segment::MAX_FRAMES_PER_CHUNK
    };
    let mut bytes = 0usize;
    let mut lingered = ctx.cfg.linger.is_zero();
    loop {
        while batch.len() < max_frames && (batch.is_empty() || bytes < ctx.cfg.max_write_bytes) {
            let Some(f) = ctx.queue.pop() else { break };
            ctx.counters
                .frames_in_writers
                .fetch_add(1, Ordering::AcqRel);
            bytes += f.payload_len();
            batch.push(f);
        }
        if !batch.is_empty() {
            let full = bytes >= ctx.cfg.max_write_bytes || batch.len() >= max_frames;
            if lingered || full || ctx.queue.is_closed() {
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

/// The writer no longer holds `n` frames (they were written or counted as dropped).
fn release_frames(ctx: &Ctx, n: usize) {
    ctx.counters
        .frames_in_writers
        .fetch_sub(n as u64, Ordering::AcqRel);
}

/// Runs the writer tasks until the queue is closed and drained, applying new live settings
/// as they come: more writers start at once; writers above the new count finish their write
/// and stop (the intake lock keeps sequence order = file order either way).
async fn supervise_writers(ctx: &Rc<Ctx>) {
    let mut tasks: Vec<Option<JoinHandle<()>>> = Vec::new();
    loop {
        if let Some(live) = ctx.live.take() {
            apply_live(ctx, live);
        }
        let want = ctx.writers.get();
        let drained = ctx.queue.is_closed() && ctx.queue.is_empty();
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
                *slot = Some(spawn_local(writer_task(ctx.clone(), i)));
            }
        }
        let running = tasks.iter().flatten().count();
        ctx.counters
            .writers
            .store(running as u64, Ordering::Relaxed);
        if running == 0 && drained {
            return;
        }
        tokio::time::sleep(APPLY_EVERY).await;
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
            discard_frames(&ctx, &mut batch);
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
    end: u64,
    spans: Vec<IoSpan>,
    metas: Vec<crate::frame::FrameMeta>,
    chunks: Vec<ChunkIndexEntry>,
    drops: Vec<segment::DropRange>,
}

/// Counts `frames` as dropped for an I/O error (the recording has failed) and recycles their
/// buffers, leaving `frames` empty.
fn discard_frames(ctx: &Ctx, frames: &mut Vec<Frame>) {
    let seqs: Vec<FrameSeq> = frames.iter().map(|f| f.meta.seq).collect();
    drop_frames(&ctx.counters, &ctx.drops, &seqs, DropReason::IoError);
    release_frames(ctx, seqs.len());
    for f in frames.drain(..) {
        ctx.pool.put(f.buf);
    }
}

/// Picks the segment, assigns the offset and encodes drop notices and frames in place, moving
/// the frames out of `frames` (which keeps its capacity for the next batch). Called with the
/// intake lock held.
async fn prepare(ctx: &Rc<Ctx>, frames: &mut Vec<Frame>) -> Option<PreparedWrite> {
    let drops = ctx.drops.take();
    let estimate: u64 = frames
        .iter()
        .map(|f| f.buf.region().len() as u64)
        .sum::<u64>()
        + 4096 * (1 + drops.len() as u64 / 16);
    let seg = match segment_for(ctx, estimate).await {
        Ok(s) => s,
        Err(e) => {
            ctx.drops.restore(drops);
            discard_frames(ctx, frames);
            ctx.fail(e);
            return None;
        }
    };
    let direct = seg.direct;
    let mut st = seg.st.borrow_mut();
    let offset = st.next_offset;
    let mut at = offset;
    let mut spans = Vec::with_capacity(frames.len() + 1);
    let mut chunks = Vec::new();
    if !drops.is_empty() {
        let (buf, span, entry) = encode_drop_chunk(&drops, &ctx.target.stream.topic, at, direct);
        at += (span.1 - span.0) as u64;
        spans.push(IoSpan::new(buf, span, false));
        chunks.push(entry);
    }
    let layout = encode_frame_batch(frames, at, &ctx.target.stream, direct);
    at += layout.len;
    chunks.extend(layout.chunks);
    let metas: Vec<_> = frames.iter().map(|f| f.meta).collect();
    if ctx.record_histograms {
        let mut pool = ctx.st.borrow_mut();
        pool.awaiting_durable
            .extend(metas.iter().map(|m| (m.seq.0, m.host_mono_ns)));
    }
    spans.extend(frames.drain(..).map(|f| IoSpan::new(f.buf, f.span, true)));
    st.next_offset = at;
    st.in_flight += 1;
    st.has_data = true;
    st.pending.push_back(PendingWrite {
        end: at,
        last_seq: metas.last().map(|m| m.seq.0),
        done: false,
    });
    drop(st);
    Some(PreparedWrite {
        seg,
        offset,
        end: at,
        spans,
        metas,
        chunks,
        drops,
    })
}

/// Submits a prepared write, awaits it, and accounts for every frame in it.
async fn complete(ctx: &Rc<Ctx>, w: PreparedWrite, h: &RefCell<Histograms>) {
    ctx.counters
        .writes_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let len = w.end - w.offset;
    if !ctx.cfg.write_delay.is_zero() {
        tokio::time::sleep(ctx.cfg.write_delay).await;
    }
    let started = Instant::now();
    let (res, spans) = w.seg.file.write_all_at(w.spans, w.offset).await;
    let elapsed = started.elapsed().as_nanos() as u64;
    ctx.counters
        .writes_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    match res {
        Ok(()) => {
            if ctx.record_histograms {
                let mut h = h.borrow_mut();
                record(&mut h.write_latency_ns, elapsed);
                record(&mut h.frames_per_write, w.metas.len() as u64);
                let now = host_mono_ns();
                for m in &w.metas {
                    record(
                        &mut h.capture_to_written_ns,
                        now.saturating_sub(m.host_mono_ns),
                    );
                }
            }
            let mut bytes = 0u64;
            for s in spans {
                if s.pooled {
                    bytes += s.buf.payload_len() as u64;
                    ctx.pool.put(s.buf);
                }
            }
            ctx.counters.writes.fetch_add(1, Ordering::Relaxed);
            ctx.counters
                .written_frames
                .fetch_add(w.metas.len() as u64, Ordering::AcqRel);
            release_frames(ctx, w.metas.len());
            ctx.counters
                .written_bytes
                .fetch_add(bytes, Ordering::Relaxed);
            w.seg.st.borrow_mut().chunks.extend(w.chunks);
            w.seg.mark_done(w.end);
            let mut st = ctx.st.borrow_mut();
            st.frames_since_sync += w.metas.len() as u64;
            if ctx
                .dur
                .borrow()
                .fsync_every_frames
                .is_some_and(|n| st.frames_since_sync >= n)
            {
                ctx.sync_wake.notify_one();
            }
        }
        Err(e) => {
            for s in spans {
                if s.pooled {
                    ctx.pool.put(s.buf);
                }
            }
            ctx.drops.restore(w.drops);
            let seqs: Vec<FrameSeq> = w.metas.iter().map(|m| m.seq).collect();
            drop_frames(&ctx.counters, &ctx.drops, &seqs, DropReason::IoError);
            release_frames(ctx, seqs.len());
            w.seg.st.borrow_mut().poisoned = true;
            ctx.fail(WriterError::Write {
                segment: w.seg.path.clone(),
                offset: w.offset,
                len,
                source: e,
            });
        }
    }
    let idle = {
        let mut st = w.seg.st.borrow_mut();
        st.in_flight -= 1;
        st.in_flight == 0
    };
    if idle {
        w.seg.idle.notify_one();
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

async fn sync_segment(ctx: &Rc<Ctx>, seg: &Rc<Segment>) {
    let (end, seq) = {
        let st = seg.st.borrow();
        if st.poisoned || st.written_end <= st.durable_end {
            return;
        }
        (st.written_end, st.written_seq)
    };
    let t = Instant::now();
    let res = seg.file.sync_data().await;
    record(
        &mut ctx.st.borrow_mut().pool_histograms.fsync_latency_ns,
        t.elapsed().as_nanos() as u64,
    );
    match res {
        Ok(()) => {
            ctx.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            let mut st = seg.st.borrow_mut();
            st.durable_end = st.durable_end.max(end);
            if seq.is_some() {
                st.durable_seq = seq.max(st.durable_seq);
            }
            drop(st);
            if !seg.direct && ctx.dur.borrow().release_page_cache {
                seg.file.release_cache(end);
            }
        }
        Err(e) => {
            // Linux may have dropped the dirty pages: a later fsync proves nothing. Poison.
            seg.st.borrow_mut().poisoned = true;
            ctx.fail(WriterError::Fsync {
                segment: seg.path.clone(),
                source: e,
            });
        }
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
