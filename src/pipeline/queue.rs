//! The bounded lock-free queue between the receiver and the writers, and the log of drops.
//!
//! The queue is bounded in frames (its `ArrayQueue` capacity) and in bytes: every accepted frame
//! holds a buffer of the [`BufferPool`](crate::frame::BufferPool) until its write completes, and
//! the pool holds at most `max_bytes` of buffers. So memory is bounded by `max_bytes` plus one
//! spare buffer, whatever the disk does.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::sync::Notify;

use crate::wake::Wake;

use crate::frame::{DropReason, Frame, FrameSeq, StreamId};
use crate::segment::DropRange;

/// What the receiver does with a frame when the queue is full.
/// Config `queue.overflow` and `--overflow` spell it in kebab-case (`auto` is `None` there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Drop the frame that just arrived (live sources: the past is already queued).
    DropNewest,
    /// Drop the oldest queued frame to make room.
    DropOldest,
    /// Wait for room (replay sources, which can wait without losing anything).
    Block,
}

impl OverflowPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            OverflowPolicy::DropNewest => "drop-newest",
            OverflowPolicy::DropOldest => "drop-oldest",
            OverflowPolicy::Block => "block",
        }
    }
}

/// Settings of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Frames the queue holds at most.
    pub max_frames: usize,
    /// Bytes of frame buffers (queued or being written) at most.
    pub max_bytes: u64,
    /// `None` (auto): `block` for sources that can wait, `drop-newest` for live ones.
    pub overflow: Option<OverflowPolicy>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_frames: 256,
            max_bytes: 256 << 20,
            overflow: None,
        }
    }
}

/// Frames on their way to the writers.
///
/// # Threading
/// The receiver pushes (and, under `drop-oldest`, pops the oldest); writers pop. No call blocks.
#[derive(Debug)]
pub struct FrameQueue {
    frames: ArrayQueue<Frame>,
    ready: Notify,
    /// Wakes a receiver waiting for room (`block`).
    room: Wake,
    closed: AtomicBool,
}

impl FrameQueue {
    pub fn new(max_frames: usize) -> FrameQueue {
        FrameQueue {
            frames: ArrayQueue::new(max_frames.max(1)),
            ready: Notify::new(),
            room: Wake::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// Queues `frame` and wakes a writer; gives the frame back when the queue is full.
    // The frame comes back by value, as `ArrayQueue::push` gives it: boxing it would allocate
    // on the receiver's path for every frame the queue has no room for.
    #[allow(clippy::result_large_err)]
    pub fn push(&self, frame: Frame) -> Result<(), Frame> {
        self.frames.push(frame)?;
        self.ready.notify_one();
        Ok(())
    }

    /// Queues `frame`, evicting and returning the oldest frame if the queue is full.
    pub fn force_push(&self, frame: Frame) -> Option<Frame> {
        let evicted = self.frames.force_push(frame);
        self.ready.notify_one();
        evicted
    }

    pub fn pop(&self) -> Option<Frame> {
        let f = self.frames.pop()?;
        self.room.notify();
        Some(f)
    }

    /// Queues `frame`, waiting up to about `timeout` for room; gives it back if none came.
    #[allow(clippy::result_large_err)] // as `push`
    pub fn push_waiting(&self, frame: Frame, timeout: Duration) -> Result<(), Frame> {
        // `None` once pushed.
        let mut pending = Some(frame);
        self.room.wait_for(timeout, || {
            let f = pending.take()?;
            match self.frames.push(f) {
                Ok(()) => Some(()),
                Err(back) => {
                    pending = Some(back);
                    None
                }
            }
        });
        match pending {
            None => {
                self.ready.notify_one();
                Ok(())
            }
            Some(f) => Err(f),
        }
    }

    /// Frames it holds at most.
    pub fn capacity(&self) -> usize {
        self.frames.capacity()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// No more frames will come: writers drain what is queued, then stop.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Waits until a frame may be available or the queue closes. Spurious wake-ups happen.
    pub async fn ready(&self) {
        let notified = self.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.frames.is_empty() || self.is_closed() {
            return;
        }
        notified.await;
    }

    /// Wakes one waiting writer (used when a writer leaves work it could not take).
    pub fn wake(&self) {
        self.ready.notify_one();
    }
}

/// Drops not yet written into the recording as drop notices.
///
/// # Threading
/// The receiver and writers add; a writer takes everything before each write. Adding merges a
/// drop into the previous range when it continues it, so overload produces few notices.
#[derive(Debug, Default)]
pub struct DropLog {
    pending: Mutex<Vec<DropRange>>,
}

impl DropLog {
    pub fn add(
        &self,
        stream: StreamId,
        first: FrameSeq,
        last: FrameSeq,
        reason: DropReason,
        time_ns: u64,
    ) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = pending
            .iter_mut()
            .rev()
            .find(|r| r.reason == reason && r.stream == stream)
            && prev.last.0 + 1 == first.0
        {
            prev.last = last;
            return;
        }
        pending.push(DropRange {
            stream,
            first,
            last,
            reason,
            time_ns,
        });
    }

    /// Everything pending, oldest first.
    pub fn take(&self) -> Vec<DropRange> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut *pending)
    }

    /// Puts back ranges a failed write could not record.
    pub fn restore(&self, ranges: Vec<DropRange>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let newer = std::mem::replace(&mut *pending, ranges);
        pending.extend(newer);
    }

    pub fn is_empty(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameBuf, FrameMeta};

    fn frame(seq: u64) -> Frame {
        Frame {
            meta: FrameMeta {
                seq: FrameSeq(seq),
                ..Default::default()
            },
            buf: FrameBuf::new(16),
            span: (0, 0),
        }
    }

    #[test]
    fn full_queue_gives_the_frame_back_and_force_push_evicts_oldest() {
        let q = FrameQueue::new(2);
        q.push(frame(0)).unwrap();
        q.push(frame(1)).unwrap();
        let back = q.push(frame(2)).unwrap_err();
        assert_eq!(back.meta.seq, FrameSeq(2));
        let evicted = q.force_push(back).unwrap();
        assert_eq!(evicted.meta.seq, FrameSeq(0));
        assert_eq!(q.pop().unwrap().meta.seq, FrameSeq(1));
        assert_eq!(q.pop().unwrap().meta.seq, FrameSeq(2));
    }

    const S0: StreamId = StreamId(0);

    #[test]
    fn drop_log_merges_consecutive_runs_per_stream_and_reason() {
        let log = DropLog::default();
        for s in 3..6 {
            log.add(S0, FrameSeq(s), FrameSeq(s), DropReason::QueueFull, 0);
        }
        log.add(S0, FrameSeq(9), FrameSeq(9), DropReason::QueueFull, 0);
        log.add(S0, FrameSeq(6), FrameSeq(6), DropReason::QueueEvicted, 0);
        // Another stream's frame 6 is its own range.
        log.add(
            StreamId(1),
            FrameSeq(6),
            FrameSeq(6),
            DropReason::QueueFull,
            0,
        );
        let ranges = log.take();
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[3].stream, StreamId(1));
        assert_eq!(
            (ranges[0].first, ranges[0].last),
            (FrameSeq(3), FrameSeq(5))
        );
        assert_eq!(ranges[1].first, FrameSeq(9));
        assert!(log.take().is_empty());
    }

    #[test]
    fn ready_returns_after_close() {
        let q = FrameQueue::new(1);
        q.close();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(q.ready());
    }
}
