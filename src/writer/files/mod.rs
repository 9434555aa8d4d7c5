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

use tokio::sync::{Mutex, Notify};
use tokio::task::spawn_local;

use crate::export::fakenect_file_name;
use crate::frame::{DropReason, Frame, FrameFormat, FrameKey, HEADROOM, StreamInfo, host_mono_ns};
use crate::observe::{Histograms, record};

use super::file::{self, IoSpan, SegFile, sync_dir};
use super::pool::{Tasks, hold_free_space_floor, set_writers};
use super::{
    Backend, DurabilityConfig, MAX_WRITERS, PUBLISH_EVERY, RecordingTarget, WriterConfig,
    WriterError, WriterParts, WriterReport, drive, publish_sets,
};

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
    error: Option<WriterError>,
    /// Host time (µs) of the last name given, so names stay unique.
    last_time_us: u64,
    written: Vec<PathBuf>,
    pool_histograms: Histograms,
    task_histograms: Vec<Rc<RefCell<Histograms>>>,
    publish_scratch: Histograms,
}

struct Ctx {
    cfg: WriterConfig,
    target: RecordingTarget,
    parts: WriterParts,
    backend: Backend,
    intake: Mutex<()>,
    /// Writers wanted now (`writer.writers`, changed live by a reload); writer tasks at or
    /// above this index finish.
    writers: Cell<usize>,
    /// A writer task ended: the supervisor looks at once rather than at its next tick.
    writer_exited: Notify,
    /// Wakes the indexer: a frame was written (or failed), or the writers have finished.
    index_wake: Notify,
    writers_finished: Cell<bool>,
    st: RefCell<State>,
}

impl Ctx {
    fn fail(&self, e: WriterError) {
        tracing::error!(error = %e, "recording failed");
        let mut st = self.st.borrow_mut();
        if st.error.is_none() {
            st.error = Some(e);
        }
        self.parts.stop.disk_failed();
    }

    fn failed(&self) -> bool {
        self.st.borrow().error.is_some()
    }
}

/// Runs the per-frame-file writer pool on the calling thread until the queue is closed and
/// drained; `INDEX.txt` then names every frame written.
pub fn run(
    cfg: WriterConfig,
    _dur: DurabilityConfig,
    target: RecordingTarget,
    parts: WriterParts,
) -> WriterReport {
    let direct_io = cfg.direct_io;
    let writers = cfg.writers.clamp(1, MAX_WRITERS);
    let (choice, handles) = (cfg.backend, parts.clone());
    drive(choice, direct_io, &handles, move |backend| {
        run_pool(Rc::new(Ctx {
            cfg,
            target,
            parts,
            backend,
            intake: Mutex::new(()),
            writers: Cell::new(writers),
            writer_exited: Notify::new(),
            index_wake: Notify::new(),
            writers_finished: Cell::new(false),
            st: RefCell::new(State {
                order: VecDeque::new(),
                index: None,
                drops: None,
                error: None,
                last_time_us: 0,
                written: Vec::new(),
                pool_histograms: Histograms::default(),
                task_histograms: Vec::new(),
                publish_scratch: Histograms::default(),
            }),
        }))
    })
}

async fn run_pool(ctx: Rc<Ctx>) -> WriterReport {
    let _ = ctx.parts.counters.backend.set(ctx.backend.as_str());
    let open = |name: &str| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ctx.target.dir.join(name))
    };
    match (open(INDEX), open(DROPS)) {
        (Ok(index), Ok(drops)) => {
            let mut st = ctx.st.borrow_mut();
            st.index = Some(index);
            st.drops = Some(drops);
        }
        (Err(source), _) | (_, Err(source)) => ctx.fail(WriterError::CreateSegment {
            path: ctx.target.dir.join(INDEX),
            source,
        }),
    }
    if !ctx.failed() {
        let _ = sync_dir(&ctx.target.dir);
        ctx.parts
            .counters
            .segments_opened
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(dir = %ctx.target.dir.display(), backend = ctx.backend.as_str(), "recording (fakenect layout)");
    }
    let publisher = spawn_local(publisher(ctx.clone()));
    let indexer = spawn_local(indexer(ctx.clone()));
    supervise_writers(&ctx).await;
    ctx.writers_finished.set(true);
    ctx.index_wake.notify_one();
    let _ = indexer.await;
    index_done(&ctx).await;
    // It may be asleep for up to PUBLISH_EVERY; the last publish is made here.
    publisher.abort();
    publish(&ctx);
    ctx.parts.counters.writers.store(0, Ordering::Relaxed);
    let mut st = ctx.st.borrow_mut();
    if st.error.is_none() {
        st.written.push(ctx.target.dir.join(INDEX));
    }
    WriterReport {
        backend: ctx.backend,
        direct_io: false,
        segments: std::mem::take(&mut st.written),
        error: st.error.take(),
    }
}

/// Runs the writer tasks until the queue is closed and drained, with the same policies as the
/// segment layout: the live writer count (a reload grows or shrinks it) and the free-space
/// floor. Segment and durability settings have nothing to act on here: every frame file is
/// fdatasync'd before INDEX.txt names it.
async fn supervise_writers(ctx: &Rc<Ctx>) {
    let mut tasks = Tasks::default();
    loop {
        if let Some(live) = ctx.parts.live.take() {
            set_writers(&ctx.writers, live.writers);
        }
        hold_free_space_floor(&ctx.cfg, &ctx.target.dir, &ctx.parts.counters);
        let drained = ctx.parts.queue.is_closed() && ctx.parts.queue.is_empty();
        let spawn = |i| {
            let ctx = ctx.clone();
            spawn_local(async move {
                writer_task(ctx.clone(), i).await;
                ctx.writer_exited.notify_one();
            })
        };
        let (gauge, exited) = (&ctx.parts.counters.writers, &ctx.writer_exited);
        if !tasks
            .round(ctx.writers.get(), drained, gauge, exited, spawn)
            .await
        {
            return;
        }
    }
}

fn publish(ctx: &Ctx) {
    if !ctx.parts.record_histograms {
        return;
    }
    let mut st = ctx.st.borrow_mut();
    let st = &mut *st;
    publish_sets(
        &st.task_histograms,
        &mut st.pool_histograms,
        &mut st.publish_scratch,
        &ctx.parts.histograms,
    );
}

/// Publishes the histograms every PUBLISH_EVERY until aborted at the end.
async fn publisher(ctx: Rc<Ctx>) {
    loop {
        tokio::time::sleep(PUBLISH_EVERY).await;
        publish(&ctx);
    }
}

/// The next queued frame; `None` once the queue is closed and drained.
async fn next_frame(ctx: &Ctx) -> Option<Frame> {
    loop {
        if let Some(f) = ctx.parts.queue.pop() {
            ctx.parts.ledger.taken(f.meta.stream, 1);
            return Some(f);
        }
        if ctx.parts.queue.is_closed() && ctx.parts.queue.is_empty() {
            return None;
        }
        ctx.parts.queue.ready().await;
    }
}

async fn writer_task(ctx: Rc<Ctx>, index: usize) {
    // Owned by this task's index (a task started again at the same index after a reload
    // records into the same one); the publisher reads it between writes.
    let h = {
        let mut st = ctx.st.borrow_mut();
        while st.task_histograms.len() <= index {
            st.task_histograms
                .push(Rc::new(RefCell::new(Histograms::default())));
        }
        st.task_histograms[index].clone()
    };
    loop {
        if index >= ctx.writers.get() {
            return;
        }
        // Names are given in sequence order under the intake lock; writes then overlap.
        let guard = ctx.intake.lock().await;
        if index >= ctx.writers.get() {
            return;
        }
        let Some(frame) = next_frame(&ctx).await else {
            return;
        };
        let key = frame.meta.key();
        if ctx.failed() {
            drop(guard);
            give_up(&ctx, frame);
            continue;
        }
        let name = {
            let mut st = ctx.st.borrow_mut();
            let time_us = (frame.meta.host_real_ns / 1000).max(st.last_time_us + 1);
            st.last_time_us = time_us;
            let stream = &ctx.target.streams[key.stream.index()];
            let (prefix, ext) = file_kind(stream.format);
            let name = fakenect_file_name(prefix, ext, time_us * 1000, frame.meta.device_ns);
            st.order.push_back(Pending {
                key,
                name: name.clone(),
                captured: frame.meta.host_mono_ns,
                done: false,
            });
            name
        };
        drop(guard);
        if ctx.parts.record_histograms {
            record(
                &mut h.borrow_mut().queue_wait_ns,
                host_mono_ns().saturating_sub(frame.meta.host_mono_ns),
            );
        }
        match write_frame(&ctx, frame, &name, &h).await {
            Ok(()) => {
                let mut st = ctx.st.borrow_mut();
                if let Some(p) = st.order.iter_mut().find(|p| p.key == key) {
                    p.done = true;
                }
            }
            Err(e) => {
                // That frame's file is gone (never named in INDEX.txt); the others are
                // independent of it, so recording goes on.
                ctx.st.borrow_mut().order.retain(|p| p.key != key);
                if let Some(stop) = super::note_failure(&ctx.cfg, &ctx.parts.counters, e) {
                    ctx.fail(stop);
                }
            }
        }
        ctx.index_wake.notify_one();
    }
}

/// Names written frames in `INDEX.txt` as they complete, in rounds, on its own task: the
/// writers go on to their next frame instead of waiting for the index's fsyncs.
async fn indexer(ctx: Rc<Ctx>) {
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

/// Counts a frame the failed recording cannot write as dropped for an I/O error.
fn give_up(ctx: &Ctx, frame: Frame) {
    let p = &ctx.parts;
    p.ledger.dropped(&[frame.meta.key()], DropReason::IoError);
}

/// Writes one frame as `name`: temporary file, one write, fdatasync, rename.
async fn write_frame(
    ctx: &Ctx,
    frame: Frame,
    name: &str,
    h: &RefCell<Histograms>,
) -> Result<(), WriterError> {
    let p = &ctx.parts;
    let stream = &ctx.target.streams[frame.meta.stream.index()];
    let header = file_header(stream);
    let mut buf = frame.buf;
    let len = buf.payload_len();
    let start = HEADROOM - header.len();
    buf.region_mut()[start..HEADROOM].copy_from_slice(header.as_bytes());
    let path = ctx.target.dir.join(name);
    let tmp = ctx.target.dir.join(format!(".{name}.tmp"));
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
    let file = match SegFile::create_off_thread(tmp.clone(), false, ctx.backend).await {
        Ok(f) => f,
        Err(e) => {
            drop(buf);
            return Err(fail(e, "creating the frame file"));
        }
    };
    p.counters.writes_in_flight.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    if !ctx.cfg.write_delay.is_zero() {
        // Fault injection for the test suite, as in the segment writer.
        tokio::time::sleep(ctx.cfg.write_delay).await;
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
    super::note_success(&p.counters);
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
/// the pool once more after the indexer ended: one round at a time.
async fn index_done(ctx: &Rc<Ctx>) {
    loop {
        let (lines, last, captured) = written_prefix(&mut ctx.st.borrow_mut());
        let drops = ctx.parts.ledger.notices().take();
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
        let dir = ctx.target.dir.clone();
        let drop_lines: String = drops
            .iter()
            .map(|d| {
                let stream = &ctx.target.streams[d.stream.index()].name;
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
                ctx.parts.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                let now = host_mono_ns();
                let mut st = ctx.st.borrow_mut();
                if ctx.parts.record_histograms {
                    record(
                        &mut st.pool_histograms.fsync_latency_ns,
                        t.elapsed().as_nanos() as u64,
                    );
                    for c in captured {
                        record(
                            &mut st.pool_histograms.capture_to_durable_ns,
                            now.saturating_sub(c),
                        );
                    }
                }
                if let Some(seq) = last {
                    ctx.parts.counters.set_durable_seq(seq);
                }
            }
            Err(source) => {
                ctx.parts.ledger.notices().restore(drops);
                ctx.fail(WriterError::Fsync {
                    segment: ctx.target.dir.join(INDEX),
                    frames: 0,
                    source,
                });
                break;
            }
        }
    }
}
