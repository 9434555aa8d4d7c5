//! The latency histograms: one set per recording thread or task, merged off the hot path into
//! the published views, and their percentiles.

use hdrhistogram::Histogram;
use serde::Serialize;

/// The highest value a histogram tracks: 1 hour in nanoseconds; values above are clamped.
pub const HIGHEST_TRACKABLE: u64 = 3_600_000_000_000;
/// Significant decimal digits every histogram keeps.
pub const SIGNIFICANT_DIGITS: u8 = 3;

pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE, SIGNIFICANT_DIGITS)
        .expect("static histogram bounds are valid")
}

/// Every latency histogram the recorder keeps. Each recording thread or task owns one and
/// records into it without locks; [`Published`] merges them off the hot path.
///
/// Latencies are nanoseconds. The frame latencies (capture to written, capture to durable,
/// queue wait) are measured from the frame's *capture* stamp, which a paced source sets to the
/// moment the frame was due: a receiver held up by a full queue cannot hide the wait from them
/// (coordinated omission). No synthetic samples are added (`record_correct` would count the
/// frames the queue absorbed twice); frames that never reach the disk are counted as drops.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Submit to completion of one vectored write (the disk's service time).
    pub write_latency_ns: Histogram<u64>,
    /// Frames carried by one write.
    pub frames_per_write: Histogram<u64>,
    /// Capture to write completion.
    pub capture_to_written_ns: Histogram<u64>,
    /// Capture to the fsync that made the frame durable.
    pub capture_to_durable_ns: Histogram<u64>,
    /// Capture to the moment a writer took the frame from the queue.
    pub queue_wait_ns: Histogram<u64>,
    /// One fsync (fdatasync) of a segment.
    pub fsync_latency_ns: Histogram<u64>,
    /// Between consecutive frames' capture stamps, as the receiver saw them.
    pub inter_arrival_ns: Histogram<u64>,
    /// The receiver handing one frame to the queue (or to the overflow policy): the time it
    /// spends not receiving, which must stay small however slow the disk is.
    pub enqueue_ns: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Histograms {
            write_latency_ns: histogram(),
            frames_per_write: histogram(),
            capture_to_written_ns: histogram(),
            capture_to_durable_ns: histogram(),
            queue_wait_ns: histogram(),
            fsync_latency_ns: histogram(),
            inter_arrival_ns: histogram(),
            enqueue_ns: histogram(),
        }
    }
}

impl Histograms {
    /// Every histogram with its interval-log tag and unit.
    pub fn tagged(&self) -> [(&'static str, &Histogram<u64>); 8] {
        [
            ("write", &self.write_latency_ns),
            ("fsync", &self.fsync_latency_ns),
            ("capture-to-written", &self.capture_to_written_ns),
            ("capture-to-durable", &self.capture_to_durable_ns),
            ("queue-wait", &self.queue_wait_ns),
            ("inter-arrival", &self.inter_arrival_ns),
            ("frames-per-write", &self.frames_per_write),
            ("enqueue", &self.enqueue_ns),
        ]
    }

    fn each_mut(&mut self) -> [&mut Histogram<u64>; 8] {
        [
            &mut self.write_latency_ns,
            &mut self.fsync_latency_ns,
            &mut self.capture_to_written_ns,
            &mut self.capture_to_durable_ns,
            &mut self.queue_wait_ns,
            &mut self.inter_arrival_ns,
            &mut self.frames_per_write,
            &mut self.enqueue_ns,
        ]
    }

    /// The histogram with interval-log tag `tag`.
    pub fn by_tag_mut(&mut self, tag: &str) -> Option<&mut Histogram<u64>> {
        let i = self.tagged().iter().position(|(t, _)| *t == tag)?;
        self.each_mut().into_iter().nth(i)
    }

    pub fn merge(&mut self, other: &Histograms) {
        for (mine, (_, theirs)) in self.each_mut().into_iter().zip(other.tagged()) {
            if !theirs.is_empty() {
                // Same bounds on both sides, so `add` cannot fail.
                let _ = mine.add(theirs);
            }
        }
    }

    /// Adds everything in `other` to `self` and empties `other`.
    pub fn drain_from(&mut self, other: &mut Histograms) {
        for (mine, theirs) in self.each_mut().into_iter().zip(other.each_mut()) {
            if !theirs.is_empty() {
                let _ = mine.add(&*theirs);
                theirs.reset();
            }
        }
    }

    pub fn reset(&mut self) {
        for h in self.each_mut() {
            h.reset();
        }
    }
}

/// The histograms as the statistics surfaces read them: everything since the start, and what
/// arrived since the interval log last took it.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub total: Histograms,
    pub interval: Histograms,
}

impl Published {
    /// Adds a recorder's unpublished values to both views and empties `fresh`.
    pub fn absorb(&mut self, fresh: &mut Histograms) {
        self.total.merge(fresh);
        self.interval.drain_from(fresh);
    }
}

/// The published histograms, shared between the recording threads and the readers.
pub type SharedHistograms = std::sync::Arc<std::sync::Mutex<Published>>;

/// Records `value` clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, value: u64) {
    h.saturating_record(value.max(1));
}

/// Percentiles of one histogram, in its unit.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}
