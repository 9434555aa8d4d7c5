//! The writer runtime: writer tasks taking batches in intake order, the live writer count,
//! the free-space floor, retention, publishing statistics, and the syncer.

use super::*;

pub(super) async fn run_pool(ctx: Rc<Ctx>) -> WriterReport {
    let _ = ctx.counters.backend.set(ctx.backend.as_str());
    let first_id = take_segment_id(&ctx);
    match open_segment(ctx.clone(), first_id).await {
        Ok(seg) => {
            tracing::info!(segment = %seg.path.display(), backend = ctx.backend.as_str(), "recording");
            became_current(&ctx, &seg);
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
pub(super) async fn take_batch(ctx: &Ctx, batch: &mut Vec<Frame>) -> bool {
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
        let before = batch.len();
        let taken = limits.fill(&ctx.queue, batch, &mut bytes);
        debug_assert_eq!(batch.len() - before, taken);
        ctx.ledger.taken_frames(&batch[before..]);
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
pub(super) async fn supervise_writers(ctx: &Rc<Ctx>) {
    let mut tasks = Tasks::default();
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
        let drained =
            ctx.queue.is_closed() && ctx.queue.is_empty() && ctx.st.borrow().rewrite.is_empty();
        let spawn = |i| {
            let ctx = ctx.clone();
            spawn_local(async move {
                writer_task(ctx.clone(), i).await;
                ctx.writer_exited.notify_one();
            })
        };
        let (gauge, exited) = (&ctx.counters.writers, &ctx.writer_exited);
        if !tasks
            .round(ctx.writers.get(), drained, gauge, exited, spawn)
            .await
        {
            return;
        }
    }
}

/// Sets the live writer count (clamped to 1..=[`MAX_WRITERS`]), saying so when it changes.
pub(super) fn set_writers(current: &Cell<usize>, wanted: usize) {
    let writers = wanted.clamp(1, MAX_WRITERS);
    if writers != current.get() {
        tracing::info!(
            from = current.get(),
            to = writers,
            "changing the number of writers"
        );
        current.set(writers);
    }
}

/// A pool's writer tasks, kept at the live writer count: every layout's pool runs its writers
/// through this. A task whose index is at or above the count finishes its write and returns.
#[derive(Default)]
pub(super) struct Tasks {
    slots: Vec<Option<JoinHandle<()>>>,
}

impl Tasks {
    /// Reaps the finished tasks and starts the missing ones below `want` (none once `drained`);
    /// returns how many run.
    pub(super) async fn keep(
        &mut self,
        want: usize,
        drained: bool,
        spawn: impl Fn(usize) -> JoinHandle<()>,
    ) -> usize {
        if self.slots.len() < want {
            self.slots.resize_with(want, || None);
        }
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(h) = slot
                && h.is_finished()
            {
                let h = slot.take().expect("checked");
                if let Err(e) = h.await {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
            if slot.is_none() && i < want && !drained {
                *slot = Some(spawn(i));
            }
        }
        self.slots.iter().flatten().count()
    }

    /// One round of a pool's supervision: [`Tasks::keep`], the running count published in
    /// `gauge`, then a wait for a task to end (`exited`) or the next tick. False once none
    /// runs and the queue is `drained`: the pool is done.
    pub(super) async fn round(
        &mut self,
        want: usize,
        drained: bool,
        gauge: &std::sync::atomic::AtomicU64,
        exited: &Notify,
        spawn: impl Fn(usize) -> JoinHandle<()>,
    ) -> bool {
        let running = self.keep(want, drained, spawn).await;
        gauge.store(running as u64, Ordering::Relaxed);
        if running == 0 && drained {
            return false;
        }
        let _ = tokio::time::timeout(APPLY_EVERY, exited.notified()).await;
        true
    }
}

/// Holds the output filesystem's free-space floor: the receiver stops admitting frames under
/// it, and starts again once free space is back above it by a margin (so it does not flap).
pub(super) fn check_free_space(ctx: &Ctx) {
    hold_free_space_floor(&ctx.cfg, &ctx.target.dir, &ctx.counters);
}

/// The free-space floor of `cfg` on `dir`'s filesystem, for every layout: sets or clears
/// `counters.refusing`.
pub(super) fn hold_free_space_floor(cfg: &WriterConfig, dir: &Path, counters: &Counters) {
    if cfg.min_free_bytes == 0 && cfg.min_free_percent == 0 {
        return;
    }
    let Ok(vfs) = nix::sys::statvfs::statvfs(dir) else {
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
        if counters.set_refusing(true) {
            tracing::warn!(
                free_bytes = free,
                floor_bytes = floor,
                "free space under the floor: arriving frames are counted as disk_full until space returns"
            );
        }
    } else if free >= floor + margin && counters.set_refusing(false) {
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
pub(super) async fn apply_retention(ctx: &Rc<Ctx>, closing: bool) {
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
    let listeners = ctx.listeners.clone();
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

pub(super) fn apply_live(ctx: &Ctx, live: Live) {
    set_writers(&ctx.writers, live.writers);
    *ctx.seg_cfg.borrow_mut() = live.segment;
    *ctx.dur.borrow_mut() = live.durability;
    // The syncer picks up a new fsync interval at its next wake-up: wake it now.
    ctx.sync_wake.notify_one();
}

pub(super) async fn writer_task(ctx: Rc<Ctx>, index: usize) {
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

/// Moves what every writer task and the pool recorded since the last call into the shared
/// histograms the statistics surfaces read.
pub(super) fn publish(ctx: &Ctx) {
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
pub(super) fn publish_sets(
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
pub(super) async fn publisher(ctx: Rc<Ctx>) {
    while !ctx.stopping.get() {
        tokio::time::sleep(PUBLISH_EVERY).await;
        publish(&ctx);
    }
}

/// fsyncs open segments per the durability policy and advances the durable watermark.
pub(super) async fn syncer(ctx: Rc<Ctx>) {
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
