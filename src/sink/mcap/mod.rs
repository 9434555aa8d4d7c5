//! The MCAP segment layout: frames go into segment files with a bounded number of vectored
//! writes in flight; segments rotate without stalling, are fsync'd per policy, and the durable
//! watermark follows the fsyncs.
//!
//! # Design
//! Beside the pool's writer tasks run a syncer task and short-lived open/finalize tasks. Under
//! the intake lock, [`write::prepare`] picks the segment, assigns the file offset and encodes
//! the chunk in place; the write is then awaited outside the lock. So sequence order equals
//! file order, and up to `writers` writes are in flight at once. Payload bytes are never
//! copied.
//!
//! The durable watermark of a segment advances only over the contiguous prefix of completed
//! writes, and only after an fsync that started after they completed succeeded. A failed write
//! or fsync poisons the segment: it is never fsynced again as if that proved anything.

mod durability;
mod lost;
mod segments;
mod write;

use std::collections::VecDeque;

use super::layout::Layout;
use super::layout::Staging;
use super::*;
use crate::frame::{FrameBuf, FrameKey, FrameMeta, FrameSeq, StreamId};
use crate::pipeline::compress::{Compressors, Piece};
use crate::segment::{
    self, ChunkIndexEntry, CompressedChunk, SegmentMeta, TailStats, encode_drops, encode_frames,
    ros2::Profile,
};
use file::{SegFile, sync_dir};
use lost::*;
use segments::*;
use write::*;

/// The segments' own state (the pool's is in [`Pool`]).
struct McapState {
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
    frames_since_sync: u64,
    /// Frames taken by a write and neither durable nor dropped yet: the durable watermark.
    watermark: durability::Watermark,
    /// Frames whose write was in flight when an fsync of its segment failed: still in memory,
    /// so written again (to the next segment) before anything queued.
    rewrite: Vec<Frame>,
    /// Frames (by [`FrameMeta::order`]) written again once already (a second time they are
    /// dropped).
    rewritten: std::collections::HashSet<u64>,
}

/// The MCAP segment layout of one run.
pub(super) struct Mcap {
    pool: Rc<Pool>,
    seg_cfg: RefCell<SegmentConfig>,
    dur: RefCell<DurabilityConfig>,
    direct: Cell<bool>,
    /// False once the filesystem refused `fallocate`.
    preallocate: Cell<bool>,
    sync_wake: Notify,
    syncer: RefCell<Option<JoinHandle<()>>>,
    stopping: Cell<bool>,
    /// Device and inode of the recording directory when the run started.
    dir_id: Option<(u64, u64)>,
    /// Each stream's clock offset (`publish_ns - device_ns`, one per run), by stream index, from
    /// the frames written: every segment closed afterwards records it (`segment::clock`).
    clock: RefCell<std::collections::BTreeMap<usize, i64>>,
    /// The compression stage's workers, when chunks are compressed.
    compressors: Option<Compressors>,
    st: RefCell<McapState>,
}

impl Mcap {
    pub(super) fn new(pool: Rc<Pool>, seg_cfg: SegmentConfig, dur: DurabilityConfig) -> Rc<Mcap> {
        let dir_id = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(&pool.target.dir)
                .ok()
                .map(|m| (m.dev(), m.ino()))
        };
        let compressors = pool.cfg.compression.clone().and_then(|cfg| {
            let streams: std::sync::Arc<[crate::frame::StreamInfo]> = pool.target.streams.clone().into();
            let counters = pool.counters.compress.clone();
            Compressors::start(cfg, streams, pool.target.profile, counters)
                .inspect_err(|e| tracing::warn!(error = %e, "cannot start the compression workers; chunks are written raw"))
                .ok()
        });
        Rc::new(Mcap {
            compressors,
            direct: Cell::new(pool.cfg.io_mode.is_direct()),
            preallocate: Cell::new(pool.cfg.preallocate_bytes > 0),
            seg_cfg: RefCell::new(seg_cfg),
            dur: RefCell::new(dur),
            sync_wake: Notify::new(),
            syncer: RefCell::new(None),
            stopping: Cell::new(false),
            dir_id,
            clock: RefCell::new(std::collections::BTreeMap::new()),
            st: RefCell::new(McapState {
                segments: VecDeque::new(),
                next: None,
                next_id: pool.target.first_segment_id,
                retry_at: None,
                finalizers: Vec::new(),
                written: Vec::new(),
                finished: Vec::new(),
                frames_since_sync: 0,
                watermark: durability::Watermark::default(),
                rewrite: Vec::new(),
                rewritten: std::collections::HashSet::new(),
            }),
            pool,
        })
    }

    fn current(&self) -> Option<Rc<Segment>> {
        self.st.borrow().segments.back().cloned()
    }

    /// The frames of `made` are durable: an fsync that started after their writes completed
    /// succeeded. Records their capture-to-durable latency.
    fn made_durable(&self, seg: &Segment, made: impl IntoIterator<Item = Undurable>) {
        let now = host_mono_ns();
        let mut st = self.st.borrow_mut();
        let mut histograms = self.pool.histograms();
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
                    && self.pool.record_histograms
                {
                    record(
                        &mut histograms.capture_to_durable_ns,
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
            self.pool.counters.set_durable_seq(seq);
            tracing::debug!(durable_seq = seq, "durable");
        }
    }
}

impl Layout for Mcap {
    type Write = PreparedWrite;

    /// Creates the first segment and opens the next one ahead; starts the syncer.
    async fn open(self: &Rc<Self>) {
        let first_id = take_segment_id(self);
        match open_segment(self.clone(), first_id).await {
            Ok(seg) => {
                tracing::info!(segment = %seg.path.display(), backend = self.pool.backend.as_str(), "recording");
                became_current(self, &seg);
                self.st.borrow_mut().segments.push_back(seg);
                open_next_ahead(self);
            }
            Err(e) => self.pool.fail(e),
        }
        let syncer = spawn_local(syncer(self.clone()));
        *self.syncer.borrow_mut() = Some(syncer);
    }

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_frames: if self.direct.get() {
                64
            } else {
                segment::MAX_FRAMES_PER_CHUNK
            },
            max_bytes: self.pool.cfg.max_write_bytes,
        }
    }

    /// The frames an fsync failure caught in flight, written again before anything queued.
    fn take_held(&self, batch: &mut Vec<Frame>) -> usize {
        let mut bytes = 0;
        for f in self.st.borrow_mut().rewrite.drain(..) {
            bytes += f.payload_len();
            batch.push(f);
        }
        bytes
    }

    fn holds_frames(&self) -> bool {
        !self.st.borrow().rewrite.is_empty()
    }

    async fn prepare(self: &Rc<Self>, batch: &mut Vec<Frame>) -> Option<PreparedWrite> {
        prepare(self, batch).await
    }

    fn stage(&self, batch: &mut Vec<Frame>) -> Option<super::layout::Staging> {
        let compressors = self.compressors.as_ref()?;
        stage(self, compressors, batch)
    }

    async fn prepare_staged(self: &Rc<Self>, pieces: Vec<Piece>) -> Option<PreparedWrite> {
        prepare_pieces(self, pieces).await
    }

    async fn complete(self: &Rc<Self>, write: PreparedWrite, h: &RefCell<Histograms>) {
        complete(self, write, h).await;
    }

    fn discard(&self, batch: &mut Vec<Frame>, reason: DropReason) {
        discard_frames(self, batch, reason);
    }

    fn apply_live(&self, live: Live) {
        *self.seg_cfg.borrow_mut() = live.segment;
        *self.dur.borrow_mut() = live.durability;
        // The syncer picks up a new fsync interval at its next wake-up: wake it now.
        self.sync_wake.notify_one();
    }

    /// Losses of a directory removed under the run; retention every tenth round.
    async fn tick(self: &Rc<Self>, round: u64) {
        if directory_changed(self) {
            check_finished(self);
        }
        if round.is_multiple_of(10) {
            apply_retention(self, false).await;
        }
    }

    async fn close(self: &Rc<Self>) -> Vec<PathBuf> {
        close_segments(self).await
    }

    fn direct_io(&self) -> bool {
        self.direct.get()
    }
}

/// After the writers ended: the last drop notices, the syncer ended, the current segment
/// sealed and every segment finalized, the one opened ahead removed, retention once more.
/// Returns the segments written, in order.
async fn close_segments(ctx: &Rc<Mcap>) -> Vec<PathBuf> {
    // Segments deleted while the run went on are losses, and their notices need a new home.
    check_finished(ctx);
    // Drop notices that no later write carried: try hard, they are the only record of a gap.
    let h = ctx.pool.extra_histograms();
    for _ in 0..3 {
        if ctx.pool.ledger.notices().is_empty() {
            break;
        }
        ctx.st.borrow_mut().retry_at = None;
        write_batch(ctx, &mut Vec::new(), &h).await;
    }
    let unwritten = ctx.pool.ledger.notices().take();
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
    let syncer = ctx.syncer.borrow_mut().take();
    if let Some(syncer) = syncer {
        let _ = syncer.await;
    }
    if let Some(current) = ctx.current() {
        seal(ctx, &current);
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
        let _ = sync_dir(&ctx.pool.target.dir);
    }
    apply_retention(ctx, true).await;
    std::mem::take(&mut ctx.st.borrow_mut().written)
}

/// Deletes the oldest finished segments, and the damaged originals repair kept aside beside
/// them, per [`crate::store::retention`]. Open segments are never touched. Runs every second
/// and once more when every segment is closed (`closing`), off the writer thread (unlinking a
/// large file takes a while).
async fn apply_retention(ctx: &Rc<Mcap>, closing: bool) {
    use crate::store::{self, FileKind, retention};
    let limits = retention::Limits {
        max_total_bytes: ctx.pool.cfg.retain_bytes,
        max_age: ctx.pool.cfg.retain_age,
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
    let dir = ctx.pool.target.dir.clone();
    let listeners = ctx.pool.listeners.clone();
    let ros2 = ctx.pool.target.profile == Profile::Ros2;
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
            let f = &files[i];
            // A segment a listener still needs (not uploaded yet, say) stays.
            if f.kind == FileKind::Segment && !listeners.iter().all(|l| l.may_delete(f.id, &f.path)) {
                tracing::debug!(segment = %f.path.display(), "retention: kept, a listener still needs it");
                continue;
            }
            std::fs::remove_file(&files[i].path)?;
            deleted.push((files[i].kind, files[i].path.clone()));
        }
        if ros2 && deleted.iter().any(|(kind, _)| *kind == FileKind::Segment) {
            // metadata.yaml must name only files that exist (rosbag2 refuses the bag else).
            segment::ros2::bag::write_metadata_yaml(&dir)?;
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
                    ctx.pool
                        .counters
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

/// fsyncs open segments per the durability policy and advances the durable watermark.
async fn syncer(ctx: Rc<Mcap>) {
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
