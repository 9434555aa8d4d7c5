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
    /// True while the recorder is paused (`framerec ctl pause`): the receiver counts arriving
    /// frames as `paused` instead of queueing them.
    paused: std::sync::atomic::AtomicBool,
    /// Times the recorder was paused.
    pub pauses: AtomicU64,
    /// Marks written into the recording (`framerec ctl mark`).
    pub marks: AtomicU64,
    /// Requests to the control socket, answered and rejected.
    pub control: ControlCounters,
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
            paused: Default::default(),
            pauses: AtomicU64::new(0),
            marks: AtomicU64::new(0),
            control: ControlCounters::default(),
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

    /// Pauses (`true`) or resumes (`false`) recording; returns whether that changed.
    pub fn set_paused(&self, paused: bool) -> bool {
        let changed = self.paused.swap(paused, Ordering::AcqRel) != paused;
        if changed && paused {
            self.pauses.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// Whether arriving frames are skipped (counted as `paused`) rather than recorded.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
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

/// Why the control socket rejected a request (each counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlReject {
    /// Not one JSON request: garbage, a missing or unknown command, a wrong field.
    Malformed,
    /// Longer than the request bound (or a mark's text over its bound).
    Oversized,
    /// Not finished within the connection's deadline, or the client went away first.
    Incomplete,
    /// Well-formed, but it cannot apply here (a split in the fakenect layout, a timeout).
    Refused,
    /// Closed unread: as many clients as the socket answers at once were being answered.
    Busy,
}

impl ControlReject {
    pub const ALL: [ControlReject; 5] = [
        ControlReject::Malformed,
        ControlReject::Oversized,
        ControlReject::Incomplete,
        ControlReject::Refused,
        ControlReject::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ControlReject::Malformed => "malformed",
            ControlReject::Oversized => "oversized",
            ControlReject::Incomplete => "incomplete",
            ControlReject::Refused => "refused",
            ControlReject::Busy => "busy",
        }
    }
}

/// Requests to the control socket: answered with success, and rejected by kind.
#[derive(Debug, Default)]
pub struct ControlCounters {
    ok: AtomicU64,
    rejected: [AtomicU64; ControlReject::ALL.len()],
}

impl ControlCounters {
    pub fn answered(&self) {
        self.ok.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, why: ControlReject) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn rejected_by(&self, why: ControlReject) -> u64 {
        self.rejected[why as usize].load(Ordering::Relaxed)
    }
}
