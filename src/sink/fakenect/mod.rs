//! The fakenect layout (`output.layout = "fakenect"`): one file per frame plus `INDEX.txt`, the
//! directory libfreenect's fakenect library replays, written through the same queue, buffer
//! pool and I/O backends as the MCAP segments, and under the same policies: the live writer
//! count and the free-space floor (`writer.min-free-bytes` / `-percent`).
//!
//! # Crash safety
//! Each frame is written to a hidden temporary file in one write (the image header goes into
//! the buffer's headroom, so the payload is not copied), fdatasync'd and renamed to its name,
//! by its stream: `d-<time>-<timestamp>.pgm` (depth: `P5 <w> <h> 65535\n` and the samples),
//! `r-<time>-<timestamp>.ppm` (colour: `P6 <w> <h> 255\n` and the RGB bytes) or
//! `a-<time>-<timestamp>.dump` (accelerometer: the 12 raw bytes, no header). A line names a
//! frame in `INDEX.txt` only after the directory holding its rename was fsync'd, and lines are
//! appended in the order the frames were received (all streams interleaved); then
//! `INDEX.txt` is fdatasync'd and the frames it names are durable. After a crash, every line of
//! `INDEX.txt` names a complete file; a frame file with no line is an orphan that replays
//! ignore. Frames dropped on the way (the format has no place for them) are listed, with their
//! reason and stream, in `DROPS.txt` (`<first seq> <last seq> <reason> <stream name>`; a line
//! without the stream, as framerec wrote them before streams, is depth's), made durable the
//! same way.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, spawn_local};

use crate::export::fakenect_file_name;
use crate::frame::{DropReason, Frame, FrameFormat, FrameKey, HEADROOM, StreamInfo, host_mono_ns};
use crate::observe::{Histograms, record};

use super::layout::Layout;
use super::pool::{Pool, run_layout};
use super::{
    BatchLimits, DurabilityConfig, Live, RecordingTarget, WriterConfig, WriterError, WriterParts,
    WriterReport,
};
use crate::io::{self as file, IoSpan, SegFile, sync_dir};

mod drops;

pub use drops::{DropLine, DropsError, MAX_DROPS_LINE, dropped_frames, read_drops};

pub const INDEX: &str = "INDEX.txt";
pub const DROPS: &str = "DROPS.txt";

/// A frame named in receive order, written or being written.
struct Pending {
    key: FrameKey,
    name: String,
    captured: u64,
    done: bool,
}

struct State {
    order: VecDeque<Pending>,
    index: Option<std::fs::File>,
    drops: Option<std::fs::File>,
    /// Host time (µs) of the last name given, so names stay unique.
    last_time_us: u64,
    written: Vec<PathBuf>,
}

/// The per-frame-file layout of one run.
struct Fakenect {
    pool: Rc<Pool>,
    /// Wakes the indexer: a frame was written (or failed), or the writers have finished.
    index_wake: Notify,
    writers_finished: Cell<bool>,
    indexer: RefCell<Option<JoinHandle<()>>>,
    st: RefCell<State>,
}

/// A frame named under the intake lock, written outside it.
struct FrameWrite {
    frame: Frame,
    name: String,
}

/// Runs the writer pool with the per-frame-file layout on the calling thread until the queue
/// is closed and drained; `INDEX.txt` then names every frame written. The pool's policies (the
/// live writer count, the free-space floor, the degraded state) apply as for segments; the
/// durability settings have nothing to act on: every frame file is fdatasync'd before
/// `INDEX.txt` names it.
pub fn run(
    cfg: WriterConfig,
    _dur: DurabilityConfig,
    target: RecordingTarget,
    parts: WriterParts,
) -> WriterReport {
    run_layout(cfg, target, parts, |pool| {
        Rc::new(Fakenect {
            pool,
            index_wake: Notify::new(),
            writers_finished: Cell::new(false),
            indexer: RefCell::new(None),
            st: RefCell::new(State {
                order: VecDeque::new(),
                index: None,
                drops: None,
                last_time_us: 0,
                written: Vec::new(),
            }),
        })
    })
}

impl Layout for Fakenect {
    type Write = FrameWrite;

    /// Opens `INDEX.txt` and `DROPS.txt` for appending and starts the indexer.
    async fn open(self: &Rc<Self>) {
        let dir = &self.pool.target.dir;
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))
        };
        match (open(INDEX), open(DROPS)) {
            (Ok(index), Ok(drops)) => {
                let mut st = self.st.borrow_mut();
                st.index = Some(index);
                st.drops = Some(drops);
            }
            (Err(source), _) | (_, Err(source)) => self.pool.fail(WriterError::CreateSegment {
                path: dir.join(INDEX),
                source,
            }),
        }
        if !self.pool.failed() {
            let _ = sync_dir(dir);
            self.pool
                .counters
                .segments_opened
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(dir = %dir.display(), backend = self.pool.backend.as_str(), "recording (fakenect layout)");
        }
        let indexer = spawn_local(indexer(self.clone()));
        *self.indexer.borrow_mut() = Some(indexer);
    }

    /// One frame a write: each goes to a file of its own.
    fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            max_frames: 1,
            max_bytes: usize::MAX,
        }
    }

    fn take_held(&self, _batch: &mut Vec<Frame>) -> usize {
        0
    }

    fn holds_frames(&self) -> bool {
        false
    }

    /// Names the frame and puts it in the receive order `INDEX.txt` follows.
    async fn prepare(self: &Rc<Self>, batch: &mut Vec<Frame>) -> Option<FrameWrite> {
        debug_assert!(batch.len() <= 1, "batches of one frame");
        let frame = batch.pop()?;
        let name = self.name(&frame);
        Some(FrameWrite { frame, name })
    }

    async fn complete(self: &Rc<Self>, w: FrameWrite, h: &RefCell<Histograms>) {
        let key = w.frame.meta.key();
        match write_frame(self, w.frame, &w.name, h).await {
            Ok(()) => {
                let mut st = self.st.borrow_mut();
                if let Some(p) = st.order.iter_mut().find(|p| p.key == key) {
                    p.done = true;
                }
            }
            Err(e) => {
                // That frame's file is gone (never named in INDEX.txt); the others are
                // independent of it, so recording goes on.
                self.st.borrow_mut().order.retain(|p| p.key != key);
                self.pool.failure(e);
            }
        }
        self.index_wake.notify_one();
    }

    fn discard(&self, batch: &mut Vec<Frame>, reason: DropReason) {
        for f in batch.drain(..) {
            self.pool.ledger.dropped(&[f.meta.key()], reason);
        }
    }

    /// Segment and durability settings have nothing to act on here.
    fn apply_live(&self, _live: Live) {}

    async fn tick(self: &Rc<Self>, _round: u64) {}

    /// Ends the indexer, then names the last frames written.
    async fn close(self: &Rc<Self>) -> Vec<PathBuf> {
        self.writers_finished.set(true);
        self.index_wake.notify_one();
        let indexer = self.indexer.borrow_mut().take();
        if let Some(indexer) = indexer {
            let _ = indexer.await;
        }
        index_done(self).await;
        let failed = self.pool.failed();
        let mut st = self.st.borrow_mut();
        if !failed {
            st.written.push(self.pool.target.dir.join(INDEX));
        }
        std::mem::take(&mut st.written)
    }

    fn direct_io(&self) -> bool {
        false
    }
}

impl Fakenect {
    /// The file name of `frame`, by its stream and host time (kept unique), entered in the
    /// receive order. Called under the intake lock.
    fn name(&self, frame: &Frame) -> String {
        let key = frame.meta.key();
        let mut st = self.st.borrow_mut();
        let time_us = (frame.meta.host_real_ns / 1000).max(st.last_time_us + 1);
        st.last_time_us = time_us;
        let stream = &self.pool.target.streams[key.stream.index()];
        let (prefix, ext) = file_kind(stream.format);
        let name = fakenect_file_name(prefix, ext, time_us * 1000, frame.meta.device_ns);
        st.order.push_back(Pending {
            key,
            name: name.clone(),
            captured: frame.meta.host_mono_ns,
            done: false,
        });
        name
    }
}

/// Names written frames in `INDEX.txt` as they complete, in rounds, on its own task: the
/// writers go on to their next frame instead of waiting for the index's fsyncs.
async fn indexer(ctx: Rc<Fakenect>) {
    loop {
        ctx.index_wake.notified().await;
        if ctx.writers_finished.get() {
            return;
        }
        index_done(&ctx).await;
    }
}

/// The index line prefix and file extension of a stream's frame files.
pub fn file_kind(format: FrameFormat) -> (&'static str, &'static str) {
    match format {
        FrameFormat::Depth16 => ("d", "pgm"),
        FrameFormat::Rgb8 => ("r", "ppm"),
        FrameFormat::Accel => ("a", "dump"),
    }
}

/// The header line in front of a frame's bytes in its file (none for the accelerometer).
fn file_header(stream: &StreamInfo) -> String {
    match stream.format {
        FrameFormat::Depth16 => format!("P5 {} {} 65535\n", stream.width, stream.height),
        FrameFormat::Rgb8 => format!("P6 {} {} 255\n", stream.width, stream.height),
        FrameFormat::Accel => String::new(),
    }
}

/// Writes one frame as `name`: temporary file, one write, fdatasync, rename.
async fn write_frame(
    ctx: &Fakenect,
    frame: Frame,
    name: &str,
    h: &RefCell<Histograms>,
) -> Result<(), WriterError> {
    let p = &ctx.pool;
    let stream = &ctx.pool.target.streams[frame.meta.stream.index()];
    let header = file_header(stream);
    let mut buf = frame.buf;
    let len = buf.payload_len();
    let start = HEADROOM - header.len();
    buf.region_mut()[start..HEADROOM].copy_from_slice(header.as_bytes());
    let path = ctx.pool.target.dir.join(name);
    let tmp = ctx.pool.target.dir.join(format!(".{name}.tmp"));
    let seq = frame.meta.seq;
    let key = frame.meta.key();
    let fail = |source: std::io::Error, what: &str| {
        let reason = DropReason::of_write_error(&source);
        p.ledger.dropped(&[key], reason);
        let _ = std::fs::remove_file(&tmp);
        tracing::error!(frame = seq.0, file = %path.display(), "{what} failed");
        WriterError::Write {
            segment: path.clone(),
            offset: 0,
            len: (header.len() + len) as u64,
            frames: 1,
            source,
        }
    };
    let file = match SegFile::create_off_thread(tmp.clone(), false, ctx.pool.backend).await {
        Ok(f) => f,
        Err(e) => {
            drop(buf);
            return Err(fail(e, "creating the frame file"));
        }
    };
    p.counters.writes_in_flight.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    if !ctx.pool.cfg.write_delay.is_zero() {
        // Fault injection for the test suite, as in the segment writer.
        tokio::time::sleep(ctx.pool.cfg.write_delay).await;
    }
    let (res, spans) = file
        .write_all_at(vec![IoSpan::new(buf, (start, HEADROOM + len), true)], 0)
        .await;
    let write_ns = started.elapsed().as_nanos() as u64;
    p.counters.writes_in_flight.fetch_sub(1, Ordering::Relaxed);
    // The buffer goes back to the pool.
    drop(spans);
    res.map_err(|e| fail(e, "writing the frame file"))?;
    let t = Instant::now();
    file.sync_data()
        .await
        .map_err(|e| fail(e, "fsync of the frame file"))?;
    let fsync_ns = t.elapsed().as_nanos() as u64;
    let _ = file.close().await;
    let (from, to) = (tmp.clone(), path.clone());
    file::blocking(move || std::fs::rename(from, to))
        .await
        .map_err(|e| fail(e, "renaming the frame file"))?;
    p.succeeded();
    p.counters.writes.fetch_add(1, Ordering::Relaxed);
    p.ledger.written(frame.meta.stream, 1, len as u64);
    if p.record_histograms {
        let mut h = h.borrow_mut();
        record(&mut h.write_latency_ns, write_ns);
        record(&mut h.fsync_latency_ns, fsync_ns);
        record(&mut h.frames_per_write, 1);
        record(
            &mut h.capture_to_written_ns,
            host_mono_ns().saturating_sub(frame.meta.host_mono_ns),
        );
    }
    Ok(())
}

/// Takes the frames at the front of the receive order that are written: their `INDEX.txt`
/// lines, the last sequence number of the first stream among them (the watermark follows it:
/// depth in a Kinect recording) and their capture stamps.
fn written_prefix(st: &mut State) -> (String, Option<u64>, Vec<u64>) {
    let mut lines = String::new();
    let mut last = None;
    let mut captured = Vec::new();
    while let Some(p) = st.order.pop_front() {
        if !p.done {
            st.order.push_front(p);
            break;
        }
        lines.push_str(&p.name);
        lines.push('\n');
        if p.key.stream.index() == 0 {
            last = Some(p.key.seq.0);
        }
        captured.push(p.captured);
    }
    (lines, last, captured)
}

/// Appends the index lines of the written prefix of frames, and any drops, and makes them
/// durable: directory fsync (the renames), append, fdatasync. Only the indexer calls it, and
/// `close` once more after the indexer ended: one round at a time.
async fn index_done(ctx: &Rc<Fakenect>) {
    loop {
        let (lines, last, captured) = written_prefix(&mut ctx.st.borrow_mut());
        let drops = ctx.pool.ledger.notices().take();
        if lines.is_empty() && drops.is_empty() {
            break;
        }
        let (index, drop_file) = {
            let st = ctx.st.borrow();
            (
                st.index.as_ref().and_then(|f| f.try_clone().ok()),
                st.drops.as_ref().and_then(|f| f.try_clone().ok()),
            )
        };
        let (Some(mut index), Some(mut drop_file)) = (index, drop_file) else {
            break;
        };
        let dir = ctx.pool.target.dir.clone();
        let drop_lines: String = drops
            .iter()
            .map(|d| {
                let stream = &ctx.pool.target.streams[d.stream.index()].name;
                format!(
                    "{} {} {} {stream}\n",
                    d.first.0,
                    d.last.0,
                    d.reason.as_str()
                )
            })
            .collect();
        let t = Instant::now();
        let res = file::blocking(move || {
            sync_dir(&dir)?;
            if !drop_lines.is_empty() {
                drop_file.write_all(drop_lines.as_bytes())?;
                drop_file.sync_data()?;
            }
            if !lines.is_empty() {
                index.write_all(lines.as_bytes())?;
                index.sync_data()?;
            }
            Ok(())
        })
        .await;
        match res {
            Ok(()) => {
                ctx.pool.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                let now = host_mono_ns();
                if ctx.pool.record_histograms {
                    let mut h = ctx.pool.histograms();
                    record(&mut h.fsync_latency_ns, t.elapsed().as_nanos() as u64);
                    for c in captured {
                        record(&mut h.capture_to_durable_ns, now.saturating_sub(c));
                    }
                }
                if let Some(seq) = last {
                    ctx.pool.counters.set_durable_seq(seq);
                }
            }
            Err(source) => {
                ctx.pool.ledger.notices().restore(drops);
                ctx.pool.fail(WriterError::Fsync {
                    segment: ctx.pool.target.dir.join(INDEX),
                    frames: 0,
                    source,
                });
                break;
            }
        }
    }
}
