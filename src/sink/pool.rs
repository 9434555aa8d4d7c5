//! The writer pool, once for every layout: writer tasks at the live writer count taking
//! batches in intake order (under the intake lock, with the layout's limits), the queue-wait
//! histogram, the free-space floor, the failed and degraded state, publishing the histograms,
//! and the end (writers drained, then the layout closes). The [`Layout`] it runs only lays
//! batches out, writes and settles them, syncs and closes.

use std::cell::RefMut;

use crate::frame::FrameKey;

use super::layout::{Layout, Staging};
use super::*;

/// What every layout's writers share: one per run, on the writer thread.
pub(super) struct Pool {
    pub(super) cfg: WriterConfig,
    /// Writers wanted now (`writer.writers`, changed live by a reload); writer tasks at or
    /// above this index finish.
    pub(super) writers: Cell<usize>,
    pub(super) live: Arc<LiveSettings>,
    pub(super) target: RecordingTarget,
    pub(super) queue: Arc<FrameQueue>,
    pub(super) ledger: Arc<Ledger>,
    pub(super) listeners: Listeners,
    pub(super) counters: Arc<Counters>,
    pub(super) stop: Arc<Stop>,
    /// False to record counters only (statistics off).
    pub(super) record_histograms: bool,
    pub(super) backend: Backend,
    /// Held while a batch is taken (and, unless it goes through the layout's stage, laid out):
    /// the order of intake is the order of writes.
    pub(super) intake: Mutex<()>,
    /// Held while a batch is laid out (the layout's segment and offset bookkeeping).
    pub(super) prepare: Mutex<()>,
    /// Staged batches: the next ticket to give, and the ticket whose turn it is to be laid out.
    tickets: Cell<u64>,
    turn: Cell<u64>,
    turned: Notify,
    /// A writer task ended: the supervisor looks at once rather than at its next tick.
    writer_exited: Notify,
    shared_histograms: SharedHistograms,
    st: RefCell<PoolState>,
}

struct PoolState {
    /// The first fatal error: the writers discard from then on.
    error: Option<WriterError>,
    /// Recorded off the writer tasks (fsyncs, capture to durable).
    histograms: Histograms,
    /// Each writer task's own histograms (only that task records into them).
    task_histograms: Vec<Rc<RefCell<Histograms>>>,
    /// Reused by `publish`.
    publish_scratch: Histograms,
}

impl Pool {
    pub(super) fn new(
        cfg: WriterConfig,
        target: RecordingTarget,
        parts: &WriterParts,
        backend: Backend,
    ) -> Rc<Pool> {
        Rc::new(Pool {
            writers: Cell::new(cfg.writers.clamp(1, MAX_WRITERS)),
            cfg,
            live: parts.live.clone(),
            target,
            queue: parts.queue.clone(),
            ledger: parts.ledger.clone(),
            listeners: parts.listeners.clone(),
            counters: parts.counters.clone(),
            stop: parts.stop.clone(),
            record_histograms: parts.record_histograms,
            backend,
            intake: Mutex::new(()),
            prepare: Mutex::new(()),
            tickets: Cell::new(0),
            turn: Cell::new(0),
            turned: Notify::new(),
            writer_exited: Notify::new(),
            shared_histograms: parts.histograms.clone(),
            st: RefCell::new(PoolState {
                error: None,
                histograms: Histograms::default(),
                task_histograms: Vec::new(),
                publish_scratch: Histograms::default(),
            }),
        })
    }

    /// True once the recording failed: every frame taken from then on is discarded.
    pub(super) fn failed(&self) -> bool {
        self.st.borrow().error.is_some()
    }

    /// Records the first fatal error and asks the receiver to stop.
    pub(super) fn fail(&self, e: WriterError) {
        tracing::error!(error = %e, "recording failed");
        let mut st = self.st.borrow_mut();
        if st.error.is_none() {
            st.error = Some(e);
        }
        self.stop.disk_failed();
    }

    /// Counts a failed write, fsync or segment creation (its frames are already counted as
    /// dropped). Enough of them in a row make the recorder degraded; it stops then when
    /// `exit-when-degraded` says so.
    pub(super) fn failure(&self, e: WriterError) {
        let c = &self.counters;
        c.failures.fetch_add(1, Ordering::Relaxed);
        let in_a_row = c.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(error = %e, failures_in_a_row = in_a_row, "the disk refused; the frames concerned are counted as dropped and recording goes on");
        if in_a_row >= u64::from(self.cfg.max_consecutive_failures.max(1))
            && !c.degraded.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                failures = in_a_row,
                "degraded: the disk keeps failing; frames are dropped until a write succeeds"
            );
            if self.cfg.exit_when_degraded {
                self.fail(WriterError::Degraded {
                    failures: in_a_row,
                    last: Box::new(e),
                });
            }
        }
    }

    /// A write succeeded: the failures in a row are over.
    pub(super) fn succeeded(&self) {
        let c = &self.counters;
        if c.failures_in_a_row.swap(0, Ordering::Relaxed) > 0
            && c.degraded.swap(false, Ordering::Relaxed)
        {
            tracing::warn!("no longer degraded: writes succeed again");
        }
    }

    /// The histograms recorded off the writer tasks (fsync latency, capture to durable).
    pub(super) fn histograms(&self) -> RefMut<'_, Histograms> {
        RefMut::map(self.st.borrow_mut(), |st| &mut st.histograms)
    }

    /// The histograms of writer task `index` (a task started again at the same index after a
    /// reload records into the same ones).
    fn task_histograms(&self, index: usize) -> Rc<RefCell<Histograms>> {
        let mut st = self.st.borrow_mut();
        while st.task_histograms.len() <= index {
            st.task_histograms
                .push(Rc::new(RefCell::new(Histograms::default())));
        }
        st.task_histograms[index].clone()
    }

    /// Histograms of their own for writes a layout makes outside the writer tasks (at close).
    pub(super) fn extra_histograms(&self) -> Rc<RefCell<Histograms>> {
        let h = Rc::new(RefCell::new(Histograms::default()));
        self.st.borrow_mut().task_histograms.push(h.clone());
        h
    }

    /// Moves what every writer task and the pool recorded since the last call into the shared
    /// histograms the statistics surfaces read, through a set kept for the purpose: a fresh
    /// 2 MB set five times a second fragments the allocator's heap and shows as slowly growing
    /// RSS over hours.
    fn publish(&self) {
        if !self.record_histograms {
            return;
        }
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        for h in &st.task_histograms {
            st.publish_scratch.drain_from(&mut h.borrow_mut());
        }
        st.publish_scratch.drain_from(&mut st.histograms);
        if let Ok(mut shared) = self.shared_histograms.lock() {
            shared.absorb(&mut st.publish_scratch);
        }
    }
}

/// Runs the pool with the layout `layout` makes, on this thread (io_uring or `pwrite`, see
/// [`drive`]), until the queue is closed and drained and the layout closed.
pub(super) fn run_layout<L: Layout>(
    cfg: WriterConfig,
    target: RecordingTarget,
    parts: WriterParts,
    layout: impl FnOnce(Rc<Pool>) -> Rc<L>,
) -> WriterReport {
    let (choice, direct_io) = (cfg.backend, cfg.io_mode.is_direct());
    drive(choice, direct_io, &parts, |backend| {
        let pool = Pool::new(cfg, target, &parts, backend);
        run_pool(pool.clone(), layout(pool))
    })
}

/// The pool's life: the layout opens, the writers run until the queue is closed and drained,
/// the layout closes, the last histograms are published.
pub(super) async fn run_pool<L: Layout>(pool: Rc<Pool>, layout: Rc<L>) -> WriterReport {
    let _ = pool.counters.backend.set(pool.backend.as_str());
    layout.open().await;
    let publisher = spawn_local(publisher(pool.clone()));
    supervise_writers(&pool, &layout).await;
    let segments = layout.close().await;
    // It may be asleep for up to PUBLISH_EVERY; the last publish is made here.
    publisher.abort();
    pool.publish();
    let error = pool.st.borrow_mut().error.take();
    WriterReport {
        backend: pool.backend,
        direct_io: layout.direct_io(),
        segments,
        error,
    }
}

/// Takes every queued frame up to the layout's limits, after the frames the layout holds to
/// write again; waits (without spinning) when there is none. Returns false once the queue is
/// closed and empty.
async fn take_batch<L: Layout>(pool: &Pool, layout: &L, batch: &mut Vec<Frame>) -> bool {
    let limits = layout.batch_limits();
    let mut bytes = 0usize;
    let mut lingered = pool.cfg.linger.is_zero();
    loop {
        // Still counted in the writers.
        bytes += layout.take_held(batch);
        let before = batch.len();
        let taken = limits.fill(&pool.queue, batch, &mut bytes);
        debug_assert_eq!(batch.len() - before, taken);
        pool.ledger.taken_frames(&batch[before..]);
        if !batch.is_empty() {
            if lingered || limits.full(batch.len(), bytes) || pool.queue.is_closed() {
                return true;
            }
            lingered = true;
            let _ = tokio::time::timeout(pool.cfg.linger, pool.queue.ready()).await;
            continue;
        }
        if pool.queue.is_closed() && pool.queue.is_empty() {
            return false;
        }
        pool.queue.ready().await;
    }
}

/// Runs the writer tasks until the queue is closed and drained, applying new live settings
/// as they come: more writers start at once; writers above the new count finish their write
/// and stop (the intake lock keeps intake order = write order either way). Holds the
/// free-space floor and gives the layout its tick.
async fn supervise_writers<L: Layout>(pool: &Rc<Pool>, layout: &Rc<L>) {
    let mut tasks = Tasks::default();
    let mut round = 0u64;
    loop {
        if let Some(live) = pool.live.take() {
            set_writers(&pool.writers, live.writers);
            layout.apply_live(live);
        }
        hold_free_space_floor(&pool.cfg, &pool.target.dir, &pool.counters);
        round += 1;
        layout.tick(round).await;
        let drained = pool.queue.is_closed() && pool.queue.is_empty() && !layout.holds_frames();
        let spawn = |i| {
            let (pool, layout) = (pool.clone(), layout.clone());
            spawn_local(async move {
                writer_task(&pool, &layout, i).await;
                pool.writer_exited.notify_one();
            })
        };
        let (gauge, exited) = (&pool.counters.writers, &pool.writer_exited);
        if !tasks
            .round(pool.writers.get(), drained, gauge, exited, spawn)
            .await
        {
            return;
        }
    }
}

/// One writer task: under the intake lock it takes a batch and has the layout lay it out;
/// outside it, the layout writes and settles it. Once the recording failed, batches are
/// discarded through the layout.
async fn writer_task<L: Layout>(pool: &Rc<Pool>, layout: &Rc<L>, index: usize) {
    // Owned by this task; the publisher reads it between writes (same thread, no lock).
    let h = pool.task_histograms(index);
    let capacity = layout
        .batch_limits()
        .max_frames
        .min(segment::MAX_FRAMES_PER_CHUNK);
    let mut batch: Vec<Frame> = Vec::with_capacity(capacity);
    loop {
        if index >= pool.writers.get() {
            return;
        }
        let guard = pool.intake.lock().await;
        if index >= pool.writers.get() {
            return;
        }
        if !take_batch(pool, &**layout, &mut batch).await {
            return;
        }
        if pool.record_histograms {
            let now = host_mono_ns();
            let mut h = h.borrow_mut();
            for f in &batch {
                record(
                    &mut h.queue_wait_ns,
                    now.saturating_sub(f.meta.host_mono_ns),
                );
            }
        }
        if pool.failed() {
            layout.discard(&mut batch, DropReason::IoError);
            continue;
        }
        if let Some(staging) = layout.stage(&mut batch) {
            let ticket = pool.tickets.get();
            pool.tickets.set(ticket + 1);
            drop(guard);
            if let Some(w) = staged(pool, layout, staging, ticket).await {
                layout.complete(w, &h).await;
            }
            continue;
        }
        let write = {
            let _prepare = pool.prepare.lock().await;
            layout.prepare(&mut batch).await
        };
        drop(guard);
        debug_assert!(batch.is_empty(), "prepare takes every frame of its batch");
        if let Some(w) = write {
            layout.complete(w, &h).await;
        }
    }
}

/// A batch through the layout's stage: awaits its pieces outside the intake lock (other writers
/// take and stage the next batches meanwhile), then its turn, and lays it out.
async fn staged<L: Layout>(
    pool: &Pool,
    layout: &Rc<L>,
    staging: Staging,
    ticket: u64,
) -> Option<L::Write> {
    let pieces = match staging {
        Staging::Ready(pieces) => Some(pieces),
        Staging::Pending { answer, metas } => match answer.await {
            Ok(pieces) => Some(pieces),
            Err(_) => {
                // A worker died holding the batch (a bug): its frames are gone; say so.
                tracing::error!(
                    frames = metas.len(),
                    "a compression worker ended without answering; its frames are lost"
                );
                let keys: Vec<FrameKey> = metas.iter().map(|m| m.key()).collect();
                pool.ledger.dropped(&keys, DropReason::IoError);
                None
            }
        },
    };
    loop {
        let turned = pool.turned.notified();
        tokio::pin!(turned);
        turned.as_mut().enable();
        if pool.turn.get() == ticket {
            break;
        }
        turned.await;
    }
    let write = match pieces {
        Some(pieces) => {
            let _prepare = pool.prepare.lock().await;
            layout.prepare_staged(pieces).await
        }
        None => None,
    };
    pool.turn.set(ticket + 1);
    pool.turned.notify_waiters();
    write
}

/// Publishes the histograms every [`PUBLISH_EVERY`], off the writers' path, until aborted at
/// the end.
async fn publisher(pool: Rc<Pool>) {
    loop {
        tokio::time::sleep(PUBLISH_EVERY).await;
        pool.publish();
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

/// Sets the live writer count (clamped to 1..=[`MAX_WRITERS`]), saying so when it changes.
fn set_writers(current: &Cell<usize>, wanted: usize) {
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

/// The pool's writer tasks, kept at the live writer count. A task whose index is at or above the count finishes its write and returns.
#[derive(Default)]
struct Tasks {
    slots: Vec<Option<JoinHandle<()>>>,
}

impl Tasks {
    /// Reaps the finished tasks and starts the missing ones below `want` (none once `drained`);
    /// returns how many run.
    async fn keep(
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
    async fn round(
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
/// Sets or clears `counters.refusing`.
fn hold_free_space_floor(cfg: &WriterConfig, dir: &Path, counters: &Counters) {
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

#[cfg(test)]
mod tests;
