//! The receiver thread: owns the source, stamps frames, and pushes them into the queue without
//! ever waiting on the disk. When the queue is full it applies the overflow policy and counts
//! each drop under its reason.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::frame::{
    BufferPool, DropReason, Frame, FrameBuf, FrameMeta, FrameSeq, host_mono_ns, host_real_ns,
};
use crate::ledger::Ledger;
use crate::observe::{Counters, Histograms, SharedHistograms, record};
use crate::queue::{FrameQueue, OverflowPolicy};
use crate::source::{Capture, Source, SourceError};
use crate::stop::Stop;
use crate::writer::PUBLISH_EVERY;

/// When the receiver stops taking frames (besides the stop flag and the end of the source).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub frames: Option<u64>,
    pub duration: Option<Duration>,
}

/// Why the receiver stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Asked to stop (a signal, or the caller).
    Signal,
    /// The writers failed and asked the receiver to stop.
    DiskFailure,
    FrameLimit,
    DurationLimit,
    EndOfSource,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Signal => "signal",
            StopReason::DiskFailure => "disk-failure",
            StopReason::FrameLimit => "frame-limit",
            StopReason::DurationLimit => "duration-limit",
            StopReason::EndOfSource => "end-of-source",
        }
    }
}

/// The parts of the pipeline the receiver talks to.
pub struct ReceiverParts {
    pub queue: Arc<FrameQueue>,
    pub pool: Arc<BufferPool>,
    /// The accounting: every frame received is queued or dropped through it.
    pub ledger: Arc<Ledger>,
    pub counters: Arc<Counters>,
    pub policy: OverflowPolicy,
    pub stop: Arc<Stop>,
    /// Sequence number of the first frame (a resumed recording continues its numbering).
    pub first_seq: u64,
    /// Where the inter-arrival histogram is published; `None` when statistics are off.
    pub histograms: Option<SharedHistograms>,
}

/// Runs the receive loop until a limit, the stop flag or the end of the source; then closes the
/// queue. Called on the receiver thread.
pub fn run(
    mut source: Box<dyn Source>,
    parts: ReceiverParts,
    limits: Limits,
) -> Result<StopReason, SourceError> {
    let mut stats = ReceiverStats::default();
    let mut seq = parts.first_seq;
    let result = receive(source.as_mut(), &parts, limits, &mut stats, &mut seq);
    // Frames the source was delivered and never handed over are counted and named in the
    // recording, after the last frame taken; frames past a frame limit were not asked for.
    if !matches!(result, Ok(StopReason::FrameLimit)) {
        source.close();
        lost_in_source(source.as_mut(), &parts, &mut seq);
    }
    parts.queue.close();
    if let Some(shared) = &parts.histograms {
        stats.publish(shared);
    }
    result
}

fn receive(
    source: &mut dyn Source,
    p: &ReceiverParts,
    limits: Limits,
    stats: &mut ReceiverStats,
    seq: &mut u64,
) -> Result<StopReason, SourceError> {
    let started = Instant::now();
    // A buffer in hand, and one to receive into when the budget is spent (the frame is then
    // received, counted and dropped, so the source never stalls).
    let mut spare: Option<FrameBuf> = None;
    let mut discard: Option<FrameBuf> = None;
    loop {
        if p.stop.is_set() {
            return Ok(p.stop.reason());
        }
        if limits.frames.is_some_and(|n| *seq - p.first_seq >= n) {
            return Ok(StopReason::FrameLimit);
        }
        if limits.duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok(StopReason::DurationLimit);
        }

        let mut buf = match take_buffer(p, &mut spare, || p.stop.is_set()) {
            Ok(b) => b,
            Err(Stopping) => return Ok(p.stop.reason()),
        };
        let into = match buf.as_mut() {
            Some(b) => b,
            None => discard.get_or_insert_with(|| FrameBuf::new(p.pool.buffer_capacity())),
        };
        let Some(capture) = source.next_frame(into, p.stop.flag())? else {
            drop(buf);
            return Ok(if p.stop.is_set() {
                p.stop.reason()
            } else {
                StopReason::EndOfSource
            });
        };
        // Frames the source lost before this one take the sequence numbers before it.
        lost_in_source(source, p, seq);
        let meta = stamp(p, stats, seq, capture);
        let len = into.payload_len() as u64;
        spare = accept(p, stats, meta, len, buf);
    }
}

/// How long a wait for room under `block` sleeps before looking at the stop flag again (it
/// wakes at once when room comes).
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Under `block`, the wait for room was given up because the run is stopping.
pub(crate) struct Stopping;

/// A buffer to receive the next frame into, by the overflow policy: `None` when the frame is
/// to be received and dropped (`drop-newest` with the budget spent). Under `block` it waits
/// for the writers to give one back, until `stopping()`.
pub(crate) fn take_buffer(
    p: &ReceiverParts,
    spare: &mut Option<FrameBuf>,
    stopping: impl Fn() -> bool,
) -> Result<Option<FrameBuf>, Stopping> {
    if let Some(b) = spare.take().or_else(|| p.pool.get()) {
        return Ok(Some(b));
    }
    Ok(match p.policy {
        OverflowPolicy::DropOldest => p.queue.pop().map(|old| {
            p.ledger.unqueued(old.meta.seq, DropReason::QueueEvicted);
            old.buf
        }),
        OverflowPolicy::Block => loop {
            // Woken as soon as a writer drops a buffer; the timeout only bounds how long a
            // stop goes unnoticed.
            if let Some(b) = p.pool.get_waiting(WAIT_SLICE) {
                break Some(b);
            }
            if stopping() {
                return Err(Stopping);
            }
        },
        OverflowPolicy::DropNewest => None,
    })
}

/// Gives a received frame the next sequence number and its times.
pub(crate) fn stamp(
    p: &ReceiverParts,
    stats: &mut ReceiverStats,
    seq: &mut u64,
    capture: Capture,
) -> FrameMeta {
    let meta = FrameMeta {
        seq: FrameSeq(*seq),
        device_ns: capture.device_ns,
        host_mono_ns: capture.host_mono_ns.unwrap_or_else(host_mono_ns),
        host_real_ns: host_real_ns(),
    };
    if let Some(shared) = &p.histograms {
        stats.frame(meta.host_mono_ns, shared);
    }
    *seq += 1;
    meta
}

/// Counts a received frame of `len` bytes and queues it by the overflow policy (`buf` holds its payload;
/// `None`: no room, it is dropped). Returns a buffer the receiver may reuse.
pub(crate) fn accept(
    p: &ReceiverParts,
    stats: &mut ReceiverStats,
    meta: FrameMeta,
    len: u64,
    buf: Option<FrameBuf>,
) -> Option<FrameBuf> {
    let Some(buf) = buf else {
        p.ledger
            .refused(meta.seq, meta.seq, len, DropReason::QueueFull);
        return None;
    };
    if p.counters.refusing.load(Ordering::Acquire) {
        // The output filesystem is under its free-space floor.
        p.ledger
            .refused(meta.seq, meta.seq, len, DropReason::DiskFull);
        return Some(buf);
    }
    p.ledger.queued(len);
    // Timed only when statistics are on (no clock read per frame otherwise).
    let enqueue_started = p.histograms.is_some().then(Instant::now);
    let frame = Frame {
        meta,
        buf,
        span: (0, 0),
    };
    let mut spare = None;
    match p.policy {
        OverflowPolicy::DropNewest => {
            if let Err(back) = p.queue.push(frame) {
                p.ledger.unqueued(back.meta.seq, DropReason::QueueFull);
                spare = Some(back.buf);
            }
        }
        OverflowPolicy::DropOldest => {
            if let Some(old) = p.queue.force_push(frame) {
                p.ledger.unqueued(old.meta.seq, DropReason::QueueEvicted);
                spare = Some(old.buf);
            }
        }
        OverflowPolicy::Block => {
            // The frame is accepted: wait for room even when stopping. Writers pop until
            // the queue closes (after a failure they count frames as io_error), so room comes.
            let mut frame = frame;
            while let Err(back) = p.queue.push_waiting(frame, WAIT_SLICE) {
                frame = back;
            }
        }
    }
    if let Some(t) = enqueue_started {
        stats.enqueued(t.elapsed());
    }
    p.counters.note_queue_depth(p.queue.len() as u64);
    spare
}

/// The receiver's own histograms, published every [`PUBLISH_EVERY`].
#[derive(Default)]
pub(crate) struct ReceiverStats {
    h: Histograms,
    last_capture: Option<u64>,
    last_publish: u64,
}

impl ReceiverStats {
    fn frame(&mut self, captured: u64, shared: &SharedHistograms) {
        if let Some(last) = self.last_capture {
            record(&mut self.h.inter_arrival_ns, captured.saturating_sub(last));
        }
        self.last_capture = Some(captured);
        if captured.saturating_sub(self.last_publish) >= PUBLISH_EVERY.as_nanos() as u64 {
            self.publish(shared);
            self.last_publish = captured;
        }
    }

    /// A frame was queued (or dropped by the overflow policy) in `took`.
    fn enqueued(&mut self, took: Duration) {
        record(&mut self.h.enqueue_ns, took.as_nanos() as u64);
    }

    pub(crate) fn publish(&mut self, shared: &SharedHistograms) {
        if let Ok(mut s) = shared.lock() {
            s.absorb(&mut self.h);
        }
    }
}

/// Counts the frames `source` reports lost as received and dropped, each under the next
/// sequence number, and names them in the recording.
fn lost_in_source(source: &mut dyn Source, p: &ReceiverParts, seq: &mut u64) {
    for (reason, frames) in source.take_lost() {
        // Never past the end of the sequence space, whatever a source claims.
        let frames = frames.min(u64::MAX - *seq);
        if frames == 0 {
            continue;
        }
        let (first, last) = (FrameSeq(*seq), FrameSeq(*seq + frames - 1));
        *seq += frames;
        p.ledger.refused(first, last, 0, reason);
        tracing::warn!(
            frames,
            reason = reason.as_str(),
            first = first.0,
            last = last.0,
            "frames lost in the source before the receiver took them"
        );
    }
}
