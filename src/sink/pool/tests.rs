//! The pool driven by a mock layout that keeps everything in memory (no disk): intake order
//! with writes completing in random order, the live writer count, and a failed recording.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::frame::{FrameBuf, FrameKey, FrameMeta, FrameSeq, StreamId};
use crate::pipeline::receiver::StopReason;

/// A layout that records what the pool hands it and completes each write after a random
/// number of yields, so writes finish out of order.
struct Mock {
    pool: Rc<Pool>,
    /// The frames (by order) `prepare` saw, in the order it saw them.
    prepared: RefCell<Vec<u64>>,
    completed: RefCell<Vec<u64>>,
    discarded: RefCell<Vec<u64>>,
    /// Writes in `complete` now, and the most at once.
    in_flight: Cell<usize>,
    peak: Cell<usize>,
    rng: Cell<u64>,
    /// Preparing this frame fails the recording.
    fail_at: Option<u64>,
    /// The write holding this frame is not settled the first time: its frames are held to be
    /// written again (as an MCAP segment does after a failed fsync).
    hold_at: Cell<Option<u64>>,
    held: RefCell<Vec<Frame>>,
    closed: Cell<bool>,
}

impl Mock {
    fn new(pool: Rc<Pool>, fail_at: Option<u64>, hold_at: Option<u64>) -> Rc<Mock> {
        Rc::new(Mock {
            pool,
            prepared: RefCell::default(),
            completed: RefCell::default(),
            discarded: RefCell::default(),
            in_flight: Cell::new(0),
            peak: Cell::new(0),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15),
            fail_at,
            hold_at: Cell::new(hold_at),
            held: RefCell::default(),
            closed: Cell::new(false),
        })
    }

    /// xorshift64: deterministic, so a failure reproduces.
    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }
}

impl Layout for Mock {
    type Write = Vec<Frame>;

    async fn open(self: &Rc<Self>) {}

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_frames: 3,
            max_bytes: usize::MAX,
        }
    }

    fn take_held(&self, batch: &mut Vec<Frame>) -> usize {
        let held = std::mem::take(&mut *self.held.borrow_mut());
        let bytes = held.iter().map(Frame::payload_len).sum();
        batch.extend(held);
        bytes
    }

    fn holds_frames(&self) -> bool {
        !self.held.borrow().is_empty()
    }

    async fn prepare(self: &Rc<Self>, batch: &mut Vec<Frame>) -> Option<Vec<Frame>> {
        self.prepared
            .borrow_mut()
            .extend(batch.iter().map(|f| f.meta.order));
        if let Some(at) = self.fail_at
            && batch.iter().any(|f| f.meta.order == at)
        {
            self.pool.fail(WriterError::Write {
                segment: PathBuf::from("mock"),
                offset: 0,
                len: 0,
                frames: 0,
                source: io::Error::other("injected"),
            });
        }
        Some(std::mem::take(batch))
    }

    async fn complete(self: &Rc<Self>, write: Vec<Frame>, _h: &RefCell<Histograms>) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.peak.set(self.peak.get().max(self.in_flight.get()));
        for _ in 0..self.random() % 8 {
            tokio::task::yield_now().await;
        }
        self.in_flight.set(self.in_flight.get() - 1);
        if let Some(at) = self.hold_at.get()
            && write.iter().any(|f| f.meta.order == at)
        {
            self.hold_at.set(None);
            self.held.borrow_mut().extend(write);
            self.pool.queue.wake();
            return;
        }
        let metas: Vec<FrameMeta> = write.iter().map(|f| f.meta).collect();
        self.pool.ledger.written_by_meta(&metas);
        self.completed
            .borrow_mut()
            .extend(metas.iter().map(|m| m.order));
    }

    fn discard(&self, batch: &mut Vec<Frame>, reason: DropReason) {
        let keys: Vec<FrameKey> = batch.iter().map(|f| f.meta.key()).collect();
        self.pool.ledger.dropped(&keys, reason);
        self.discarded
            .borrow_mut()
            .extend(batch.drain(..).map(|f| f.meta.order));
    }

    fn apply_live(&self, _live: Live) {}

    async fn tick(self: &Rc<Self>, _round: u64) {}

    async fn close(self: &Rc<Self>) -> Vec<PathBuf> {
        assert_eq!(
            self.in_flight.get(),
            0,
            "closed while a write was in flight"
        );
        self.closed.set(true);
        Vec::new()
    }

    fn direct_io(&self) -> bool {
        false
    }
}

fn parts() -> WriterParts {
    WriterParts {
        queue: Arc::new(FrameQueue::new(1024)),
        ledger: Arc::new(Ledger::new(1)),
        counters: Arc::new(Counters::default()),
        stop: Stop::new(Arc::new(AtomicBool::new(false))),
        histograms: SharedHistograms::default(),
        record_histograms: true,
        live: Arc::new(LiveSettings::default()),
        listeners: Listeners::default(),
    }
}

fn pool(parts: &WriterParts, writers: usize) -> Rc<Pool> {
    let cfg = WriterConfig {
        writers,
        ..WriterConfig::default()
    };
    let target = RecordingTarget {
        dir: std::env::temp_dir(),
        recording_id: "mock".into(),
        streams: vec![StreamInfo::depth("/depth", "depth", 4, 4)],
        first_segment_id: 0,
        profile: Default::default(),
    };
    Pool::new(cfg, target, parts, Backend::Pwrite)
}

/// Queues frame `order` (stream 0, sequence number = order), as the receiver does.
fn push(parts: &WriterParts, order: u64) {
    let mut buf = FrameBuf::new(16);
    buf.fill(8).expect("fits");
    let meta = FrameMeta {
        stream: StreamId(0),
        seq: FrameSeq(order),
        order,
        len: 8,
        ..FrameMeta::default()
    };
    parts.ledger.queued(StreamId(0), 8);
    assert!(
        parts
            .queue
            .push(Frame {
                meta,
                buf,
                span: (0, 0),
            })
            .is_ok()
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

/// Waits until `done` holds (10 s at most).
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn every_frame_is_prepared_once_in_queue_order_and_a_live_writer_count_applies() {
    let parts = parts();
    let pool = pool(&parts, 1);
    let mock = Mock::new(pool.clone(), None, None);
    let report = block_on(async {
        let run = spawn_local(run_pool(pool.clone(), mock.clone()));
        for order in 0..90 {
            push(&parts, order);
        }
        until("90 frames", || mock.completed.borrow().len() == 90).await;
        assert_eq!(mock.peak.get(), 1, "one writer: one write at a time");
        parts.live.set(Live {
            writers: 3,
            segment: SegmentConfig::default(),
            durability: DurabilityConfig::default(),
        });
        until("3 writers", || {
            parts.counters.writers.load(Ordering::Relaxed) == 3
        })
        .await;
        mock.peak.set(0);
        for order in 90..300 {
            push(&parts, order);
        }
        until("300 frames", || mock.completed.borrow().len() == 300).await;
        assert_eq!(mock.peak.get(), 3, "three writers: three writes at once");
        parts.queue.close();
        run.await.expect("the pool ran")
    });
    assert!(report.error.is_none(), "{:?}", report.error);
    assert!(mock.closed.get(), "the layout closes at the end");
    let prepared = mock.prepared.borrow().clone();
    assert_eq!(
        prepared,
        (0..300).collect::<Vec<_>>(),
        "every frame reaches prepare once, in queue order"
    );
    let mut completed = mock.completed.borrow().clone();
    assert_ne!(completed, prepared, "writes completed out of order");
    completed.sort_unstable();
    assert_eq!(completed, prepared, "every write completed once");
    let t = parts.ledger.tally();
    assert_eq!((t.written_frames, t.in_writers, t.queued), (300, 0, 0));
    assert_eq!(parts.counters.writers.load(Ordering::Relaxed), 0);
    let published = parts.histograms.lock().expect("histograms");
    assert_eq!(
        published.total.queue_wait_ns.len(),
        300,
        "queue waits published"
    );
}

#[test]
fn a_failed_recording_discards_through_the_layout() {
    let parts = parts();
    let pool = pool(&parts, 2);
    let mock = Mock::new(pool.clone(), Some(30), None);
    let report = block_on(async {
        let run = spawn_local(run_pool(pool.clone(), mock.clone()));
        for order in 0..100 {
            push(&parts, order);
        }
        parts.queue.close();
        run.await.expect("the pool ran")
    });
    assert!(report.error.is_some(), "the run reports its failure");
    assert_eq!(parts.stop.reason(), StopReason::DiskFailure);
    let prepared = mock.prepared.borrow().clone();
    let discarded = mock.discarded.borrow().clone();
    assert!(prepared.contains(&30) && !discarded.is_empty());
    let all: Vec<u64> = prepared.iter().chain(&discarded).copied().collect();
    assert_eq!(
        all,
        (0..100).collect::<Vec<_>>(),
        "frames up to the failure are prepared, every later one discarded, each once"
    );
    let t = parts.ledger.tally();
    assert_eq!(t.written_frames, prepared.len() as u64);
    assert_eq!(t.dropped(DropReason::IoError), discarded.len() as u64);
    assert_eq!((t.in_writers, t.queued), (0, 0));
}

#[test]
fn frames_the_layout_holds_are_written_again_before_queued_ones() {
    let parts = parts();
    let pool = pool(&parts, 1);
    // Batches of three: the one holding frame 10 is 9, 10, 11.
    let mock = Mock::new(pool.clone(), None, Some(10));
    let report = block_on(async {
        let run = spawn_local(run_pool(pool.clone(), mock.clone()));
        for order in 0..30 {
            push(&parts, order);
        }
        parts.queue.close();
        tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the pool ends once the held frames are written")
            .expect("the pool ran")
    });
    assert!(report.error.is_none(), "{:?}", report.error);
    let prepared = mock.prepared.borrow().clone();
    let want: Vec<u64> = (0..12).chain(9..12).chain(12..30).collect();
    assert_eq!(prepared, want, "held frames go first, once");
    let mut completed = mock.completed.borrow().clone();
    completed.sort_unstable();
    assert_eq!(completed, (0..30).collect::<Vec<_>>());
    let t = parts.ledger.tally();
    assert_eq!((t.written_frames, t.in_writers, t.queued), (30, 0, 0));
}
