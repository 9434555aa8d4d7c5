//! The intake of push sources: a device's callback hands each frame straight to the queue. The
//! frame is numbered at delivery, copied once (from the device's buffer into a pooled frame
//! buffer) and queued, or counted dropped under the overflow policy, all on the callback's
//! thread. There is no second hand-off in which a frame could be lost uncounted.
//!
//! The receiver thread drives a push source with [`run`]: it starts it, watches the stop flag,
//! the limits and the source's end, then stops it and closes the queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::frame::{DropReason, StreamId};
use crate::pipeline::receiver::{
    Limits, ReceiverParts, ReceiverStats, Seqs, Spares, StopReason, Stopping, accept, stamp,
    take_buffer,
};
use crate::source::{Capture, FrameSink, PushSource, SourceError};
use crate::stop::Stop;

/// How often the receiver thread looks at the stop flag, the limits and the source's end.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Takes frames from a push source's thread. See the module docs.
pub struct Intake {
    parts: ReceiverParts,
    /// Frames asked for (`--frames`), if limited.
    limit: Option<u64>,
    /// The receive side's state: only the source's thread delivers, so the lock is uncontended
    /// but for the end of the run.
    inner: Mutex<Inner>,
    /// Set when the run stops: a delivery waiting for room (`block`) gives up.
    stopping: AtomicBool,
    limit_reached: AtomicBool,
}

struct Inner {
    /// The sequence number of the next frame delivered, per stream.
    seq: Seqs,
    stats: ReceiverStats,
    /// Buffers back from a drop, for the next frame of their stream.
    spares: Spares,
}

impl Inner {
    /// The next frame of `stream` delivered, of `len` bytes, is dropped for `reason` before it
    /// is queued.
    fn refuse(&mut self, p: &ReceiverParts, stream: StreamId, len: u64, reason: DropReason) {
        if let Some((seq, _)) = self.seq.take(stream, 1) {
            p.ledger.refused(stream, seq, seq, len, reason);
        }
    }
}

impl Intake {
    pub fn new(parts: ReceiverParts, limit: Option<u64>) -> Intake {
        let seq = Seqs::new(&parts);
        let spares = Spares::new(parts.pools.len());
        Intake {
            parts,
            limit,
            inner: Mutex::new(Inner {
                seq,
                stats: ReceiverStats::default(),
                spares,
            }),
            stopping: AtomicBool::new(false),
            limit_reached: AtomicBool::new(limit == Some(0)),
        }
    }

    /// True once the frame limit is reached: later deliveries are not asked for.
    pub fn limit_reached(&self) -> bool {
        self.limit_reached.load(Ordering::Acquire)
    }

    /// The run is stopping: a delivery waiting for room gives up (its frame is counted as
    /// `source_overrun`), later ones are still taken while the source runs.
    fn stop_waiting(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Publishes the receive statistics; the source has stopped.
    fn finish(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.spares.clear();
        if let Some(shared) = &self.parts.histograms {
            inner.stats.publish(shared);
        }
    }
}

impl FrameSink for Intake {
    fn deliver(&self, stream: StreamId, payload: &[u8], capture: Capture) -> bool {
        let p = &self.parts;
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let inner = &mut *guard;
        if self.limit.is_some_and(|n| inner.seq.counted() >= n) {
            return false;
        }
        if stream.index() >= p.pools.len() {
            tracing::warn!(
                stream = stream.0,
                "a frame of a stream the recording does not have"
            );
            return true;
        }
        let len = payload.len() as u64;
        match take_buffer(p, stream, inner.spares.spare(stream), || {
            self.stopping.load(Ordering::Acquire)
        }) {
            Err(Stopping) => {
                // Delivered while the run stopped, with no room to wait for: named as lost.
                inner.refuse(p, stream, len, DropReason::SourceOverrun);
            }
            Ok(mut buf) => {
                let too_large = match buf.as_mut().map(|b| b.fill(payload.len())) {
                    Some(Ok(into)) => {
                        into.copy_from_slice(payload);
                        None
                    }
                    Some(Err(capacity)) => Some(capacity),
                    None => None,
                };
                if let Some(capacity) = too_large {
                    // The device changed its frame size under us: counted, never truncated.
                    tracing::warn!(
                        len,
                        capacity,
                        "a device frame larger than the stream's frames was rejected"
                    );
                    *inner.spares.spare(stream) = buf.take();
                    inner.refuse(p, stream, len, DropReason::Rejected);
                } else {
                    let meta = stamp(p, &mut inner.stats, &mut inner.seq, stream, len, capture);
                    *inner.spares.spare(stream) = accept(p, &mut inner.stats, meta, len, buf);
                }
            }
        }
        if self.limit.is_some_and(|n| inner.seq.counted() >= n) {
            self.limit_reached.store(true, Ordering::Release);
        }
        true
    }
}

/// Runs a push source until a limit, the stop flag or its end; then stops it and closes the
/// queue. Called on the receiver thread.
pub fn run(
    mut source: Box<dyn PushSource>,
    parts: ReceiverParts,
    limits: Limits,
) -> Result<StopReason, SourceError> {
    let stop = parts.stop.clone();
    let queue = parts.queue.clone();
    let intake = Arc::new(Intake::new(parts, limits.frames));
    let result = watch(source.as_mut(), &intake, &stop, limits);
    intake.stop_waiting();
    source.stop();
    intake.finish();
    queue.close();
    result
}

fn watch(
    source: &mut dyn PushSource,
    intake: &Arc<Intake>,
    stop: &Stop,
    limits: Limits,
) -> Result<StopReason, SourceError> {
    let started = Instant::now();
    source.start(intake.clone())?;
    loop {
        if stop.is_set() {
            return Ok(stop.reason());
        }
        if intake.limit_reached() {
            return Ok(StopReason::FrameLimit);
        }
        if limits.duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok(StopReason::DurationLimit);
        }
        if !source.wait(WATCH_EVERY, stop.flag())? {
            return Ok(if stop.is_set() {
                stop.reason()
            } else if intake.limit_reached() {
                StopReason::FrameLimit
            } else {
                StopReason::EndOfSource
            });
        }
    }
}
