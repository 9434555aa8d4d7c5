//! The receiver thread: owns the source, stamps frames, and pushes them into the queue without
//! ever waiting on the disk. When the queue is full it applies the overflow policy and counts
//! each drop under its reason.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::frame::{
    BufferPool, DropReason, Frame, FrameBuf, FrameMeta, FrameSeq, StreamId, anchor_publish_ns,
    host_mono_ns, host_real_ns,
};
use crate::ledger::Ledger;
use crate::observe::{Counters, Histograms, SharedHistograms, record};
use crate::pipeline::queue::{FrameQueue, OverflowPolicy};
use crate::sink::PUBLISH_EVERY;
use crate::source::{Capture, Source, SourceError};
use crate::stop::Stop;

/// When the receiver stops taking frames (besides the stop flag and the end of the source).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Frames of the first stream (the others go along with it).
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
    /// One pool per stream, by [`StreamId`]: each stream's share of the byte budget, in
    /// buffers of its frame size, so a stream that floods runs out of its own buffers only.
    pub pools: Vec<Arc<BufferPool>>,
    /// The accounting: every frame received is queued or dropped through it.
    pub ledger: Arc<Ledger>,
    pub counters: Arc<Counters>,
    pub policy: OverflowPolicy,
    pub stop: Arc<Stop>,
    /// Sequence number of each stream's first frame (a resumed recording continues its
    /// numbering).
    pub first_seq: Vec<u64>,
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
    let mut seq = Seqs::new(&parts);
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

/// The next sequence number of each stream, and what the frame limit counts.
pub(crate) struct Seqs {
    next: Vec<u64>,
    /// Per stream, `host_real_ns - device_ns` of its first frame in this run: the anchor of
    /// its publish times.
    clock_offset: Vec<Option<i128>>,
    first: u64,
    /// The next frame's [`FrameMeta::order`].
    order: u64,
}

impl Seqs {
    pub(crate) fn new(p: &ReceiverParts) -> Seqs {
        let next: Vec<u64> = (0..p.pools.len())
            .map(|s| p.first_seq.get(s).copied().unwrap_or(0))
            .collect();
        Seqs::starting_at(next)
    }

    /// Each stream's numbering starting at its entry of `next`.
    fn starting_at(next: Vec<u64>) -> Seqs {
        Seqs {
            clock_offset: vec![None; next.len()],
            first: next.first().copied().unwrap_or(0),
            order: next.iter().fold(0u64, |a, b| a.saturating_add(*b)),
            next,
        }
    }

    /// `device_ns` anchored to host realtime by `stream`'s first frame of this run (which
    /// anchors it when it is that frame).
    pub(crate) fn publish_ns(&mut self, stream: StreamId, device_ns: u64, real_ns: u64) -> u64 {
        let Some(slot) = self.clock_offset.get_mut(stream.index()) else {
            return real_ns;
        };
        let offset = *slot.get_or_insert(real_ns as i128 - device_ns as i128);
        anchor_publish_ns(device_ns, offset)
    }

    /// Frames of the first stream numbered so far in this run.
    pub(crate) fn counted(&self) -> u64 {
        self.next.first().map_or(0, |n| n - self.first)
    }

    /// Takes the next `n` numbers of `stream`: the first and last, or None for a stream the
    /// table does not have.
    pub(crate) fn take(&mut self, stream: StreamId, n: u64) -> Option<(FrameSeq, FrameSeq)> {
        let next = self.next.get_mut(stream.index())?;
        // Never past the end of the sequence space, whatever a source claims.
        let n = n.min(u64::MAX - *next);
        if n == 0 {
            return None;
        }
        let first = *next;
        *next += n;
        self.order = self.order.saturating_add(n);
        Some((FrameSeq(first), FrameSeq(first + n - 1)))
    }
}

/// Per stream: a buffer in hand, and one to receive into when the budget is spent (the frame
/// is then received, counted and dropped, so the source never stalls).
#[derive(Default)]
pub(crate) struct Spares {
    spare: Vec<Option<FrameBuf>>,
    discard: Vec<Option<FrameBuf>>,
}

impl Spares {
    pub(crate) fn new(streams: usize) -> Spares {
        Spares {
            spare: (0..streams).map(|_| None).collect(),
            discard: (0..streams).map(|_| None).collect(),
        }
    }

    pub(crate) fn spare(&mut self, stream: StreamId) -> &mut Option<FrameBuf> {
        &mut self.spare[stream.index()]
    }

    fn discard(&mut self, p: &ReceiverParts, stream: StreamId) -> &mut FrameBuf {
        let pool = &p.pools[stream.index()];
        self.discard[stream.index()].get_or_insert_with(|| FrameBuf::new(pool.buffer_capacity()))
    }

    pub(crate) fn clear(&mut self) {
        self.spare.iter_mut().for_each(|s| *s = None);
    }
}

fn receive(
    source: &mut dyn Source,
    p: &ReceiverParts,
    limits: Limits,
    stats: &mut ReceiverStats,
    seq: &mut Seqs,
) -> Result<StopReason, SourceError> {
    let started = Instant::now();
    let mut spares = Spares::new(p.pools.len());
    loop {
        if p.stop.is_set() {
            return Ok(p.stop.reason());
        }
        if limits.frames.is_some_and(|n| seq.counted() >= n) {
            return Ok(StopReason::FrameLimit);
        }
        if limits.duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok(StopReason::DurationLimit);
        }

        let stream = source.next_stream(p.stop.flag())?;
        if stream.index() >= p.pools.len() {
            return Err(SourceError::Device(format!(
                "the source named stream {} of {}",
                stream.0,
                p.pools.len()
            )));
        }
        let mut buf = match take_buffer(p, stream, spares.spare(stream), || p.stop.is_set()) {
            Ok(b) => b,
            Err(Stopping) => return Ok(p.stop.reason()),
        };
        let into = match buf.as_mut() {
            Some(b) => b,
            None => spares.discard(p, stream),
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
        let len = into.payload_len() as u64;
        let meta = stamp(p, stats, seq, stream, len, capture);
        *spares.spare(stream) = accept(p, stats, meta, len, buf);
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
///
/// With several streams, each draws on its own pool, so a stream that floods runs out of its
/// own buffers only. Under `drop-oldest` the queue's oldest frame is evicted for a buffer only
/// in a one-stream recording: with several streams it may be another stream's frame (and the
/// lock-free queue cannot look before it takes), so there the new frame is dropped as
/// `queue_full` instead, and one stream's flood never evicts another's frames.
pub(crate) fn take_buffer(
    p: &ReceiverParts,
    stream: StreamId,
    spare: &mut Option<FrameBuf>,
    stopping: impl Fn() -> bool,
) -> Result<Option<FrameBuf>, Stopping> {
    let pool = &p.pools[stream.index()];
    if let Some(b) = spare.take().or_else(|| pool.get()) {
        return Ok(Some(b));
    }
    Ok(match p.policy {
        OverflowPolicy::DropOldest if p.pools.len() == 1 => p.queue.pop().map(|old| {
            p.ledger.unqueued(old.meta.key(), DropReason::QueueEvicted);
            old.buf
        }),
        OverflowPolicy::DropOldest => None,
        OverflowPolicy::Block => loop {
            // Woken as soon as a writer drops a buffer; the timeout only bounds how long a
            // stop goes unnoticed.
            if let Some(b) = pool.get_waiting(WAIT_SLICE) {
                break Some(b);
            }
            if stopping() {
                return Err(Stopping);
            }
        },
        OverflowPolicy::DropNewest => None,
    })
}

/// Gives a received frame of `stream` its next sequence number and its times.
pub(crate) fn stamp(
    p: &ReceiverParts,
    stats: &mut ReceiverStats,
    seq: &mut Seqs,
    stream: StreamId,
    len: u64,
    capture: Capture,
) -> FrameMeta {
    let order = seq.order;
    let (next, _) = seq.take(stream, 1).unwrap_or_default();
    let host_real_ns = host_real_ns();
    let meta = FrameMeta {
        stream,
        seq: next,
        order,
        len,
        device_ns: capture.device_ns,
        publish_ns: seq.publish_ns(stream, capture.device_ns, host_real_ns),
        host_mono_ns: capture.host_mono_ns.unwrap_or_else(host_mono_ns),
        host_real_ns,
    };
    if let Some(shared) = &p.histograms
        && stream == StreamId(0)
    {
        // Inter-arrival is the first stream's: other streams' frames between its frames are
        // not gaps in it.
        stats.frame(meta.host_mono_ns, shared);
    }
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
    if p.counters.is_paused() {
        // Skipped on purpose: counted as paused and named in the recording, not dropped.
        p.ledger.paused(meta.stream, meta.seq, len);
        return buf;
    }
    let Some(buf) = buf else {
        p.ledger
            .refused(meta.stream, meta.seq, meta.seq, len, DropReason::QueueFull);
        return None;
    };
    if p.counters.refusing.load(Ordering::Acquire) {
        // The output filesystem is under its free-space floor.
        p.ledger
            .refused(meta.stream, meta.seq, meta.seq, len, DropReason::DiskFull);
        return Some(buf);
    }
    p.ledger.queued(meta.stream, len);
    // Timed only when statistics are on (no clock read per frame otherwise).
    let enqueue_started = p.histograms.is_some().then(Instant::now);
    let mut buf = buf;
    // Here the payload is still in this core's cache; the writer thread would read it from memory.
    buf.seal_crc();
    let frame = Frame {
        meta,
        buf,
        span: (0, 0),
    };
    let mut spare = None;
    match p.policy {
        OverflowPolicy::DropNewest => {
            if let Err(back) = p.queue.push(frame) {
                p.ledger.unqueued(back.meta.key(), DropReason::QueueFull);
                spare = Some(back.buf);
            }
        }
        OverflowPolicy::DropOldest => {
            if let Some(old) = p.queue.force_push(frame) {
                p.ledger.unqueued(old.meta.key(), DropReason::QueueEvicted);
                // The evicted frame's buffer is reused only for its own stream's frames.
                spare = (old.meta.stream == meta.stream).then_some(old.buf);
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
/// sequence number of its stream, and names them in the recording.
fn lost_in_source(source: &mut dyn Source, p: &ReceiverParts, seq: &mut Seqs) {
    for (stream, reason, frames) in source.take_lost() {
        let Some((first, last)) = seq.take(stream, frames) else {
            continue;
        };
        p.ledger.refused(stream, first, last, 0, reason);
        tracing::warn!(
            frames,
            stream = stream.0,
            reason = reason.as_str(),
            first = first.0,
            last = last.0,
            "frames lost in the source before the receiver took them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_times_follow_the_device_clock_from_each_streams_first_frame() {
        let mut seqs = Seqs::starting_at(vec![0, 0]);
        let (s0, s1) = (StreamId(0), StreamId(1));
        // The first frame of a stream reads its host realtime; later ones keep the device's
        // spacing, whatever the host's stamps (jitter, a host clock step) say.
        assert_eq!(seqs.publish_ns(s0, 5_000, 1_000_000), 1_000_000);
        assert_eq!(seqs.publish_ns(s0, 38_333, 1_090_000), 1_033_333);
        assert_eq!(seqs.publish_ns(s0, 71_666, 9_000_000), 1_066_666);
        // Another stream has its own device clock and anchor.
        assert_eq!(seqs.publish_ns(s1, 7, 1_050_000), 1_050_000);
        assert_eq!(seqs.publish_ns(s1, 10, 1_060_000), 1_050_003);
        // A device time before the anchor's zero clamps at 0 rather than wrapping.
        assert_eq!(seqs.publish_ns(s0, 0, 2_000_000), 995_000);
        let mut early = Seqs::starting_at(vec![0]);
        assert_eq!(early.publish_ns(s0, u64::MAX, 1), 1);
        assert_eq!(early.publish_ns(s0, 0, 2), 0);
        // A stream the table does not have gets the host's time.
        assert_eq!(seqs.publish_ns(StreamId(9), 1, 42), 42);
    }
}
