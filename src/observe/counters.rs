//! The counters and gauges the receiver and the writers share, as relaxed atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// No durable frame yet.
const NONE: u64 = u64::MAX;

/// Counters and gauges shared by the receiver and the writers.
#[derive(Debug)]
pub struct Counters {
    pub writes: AtomicU64,
    pub writes_in_flight: AtomicU64,
    /// Writer tasks running.
    pub writers: AtomicU64,
    pub queue_high_water: AtomicU64,
    pub segments_opened: AtomicU64,
    /// Segments deleted by retention.
    pub segments_deleted: AtomicU64,
    /// Frames written again to a new segment after an fsync failed while they were in flight.
    pub frames_rewritten: AtomicU64,
    pub fsyncs: AtomicU64,
    /// Writes, fsyncs and segment creations that failed, in all and in a row.
    pub failures: AtomicU64,
    pub failures_in_a_row: AtomicU64,
    /// Set after `writer.max-consecutive-failures` failures in a row, cleared by a good write.
    pub degraded: std::sync::atomic::AtomicBool,
    /// True while the output filesystem is under its free-space floor: the receiver counts
    /// arriving frames as `disk_full` instead of queueing them (set by the writers).
    pub refusing: std::sync::atomic::AtomicBool,
    durable_seq: AtomicU64,
    /// The I/O backend in use, once the writers started.
    pub backend: std::sync::OnceLock<&'static str>,
    /// Bytes or frames a pipe source rejected, by reason.
    pub source_rejects: std::sync::Arc<crate::source::pipe::Rejects>,
    /// What the compression stage did.
    pub compress: std::sync::Arc<crate::pipeline::compress::CompressCounters>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            writes: AtomicU64::new(0),
            writes_in_flight: AtomicU64::new(0),
            writers: AtomicU64::new(0),
            queue_high_water: AtomicU64::new(0),
            segments_opened: AtomicU64::new(0),
            segments_deleted: AtomicU64::new(0),
            frames_rewritten: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            failures_in_a_row: AtomicU64::new(0),
            degraded: Default::default(),
            refusing: Default::default(),
            durable_seq: AtomicU64::new(NONE),
            backend: std::sync::OnceLock::new(),
            source_rejects: Default::default(),
            compress: Default::default(),
        }
    }
}

impl Counters {
    /// Stops (`true`) or resumes (`false`) admitting frames; returns whether that changed.
    pub fn set_refusing(&self, refusing: bool) -> bool {
        self.refusing.swap(refusing, Ordering::AcqRel) != refusing
    }

    pub fn note_queue_depth(&self, depth: u64) {
        self.queue_high_water.fetch_max(depth, Ordering::Relaxed);
    }

    /// Highest sequence number at or below which every written frame is known durable.
    pub fn durable_seq(&self) -> Option<u64> {
        match self.durable_seq.load(Ordering::Acquire) {
            NONE => None,
            s => Some(s),
        }
    }

    pub fn set_durable_seq(&self, seq: u64) {
        self.durable_seq.store(seq, Ordering::Release);
    }
}
