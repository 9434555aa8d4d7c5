//! Observation, beside the data path: counters and gauges as atomics, latency histograms owned
//! by whoever records into them, and the snapshot that merges them off the hot path.
//!
//! The hot path touches only [`Counters`] (relaxed atomics) and a [`Histograms`] owned by
//! one writer task. Everything else (merging, formatting, serving) happens elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::frame::DropReason;
use crate::ledger::Tally;

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

/// The highest value a histogram tracks: 1 hour in nanoseconds; values above are clamped.
pub const HIGHEST_TRACKABLE: u64 = 3_600_000_000_000;
/// Significant decimal digits every histogram keeps.
pub const SIGNIFICANT_DIGITS: u8 = 3;

fn histogram() -> Histogram<u64> {
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

/// CPU time (user + system) used so far by `who`: the process (`RUSAGE_SELF`) or the calling
/// thread (`RUSAGE_THREAD`); zero if the kernel will not say.
pub fn cpu_time(who: nix::sys::resource::UsageWho) -> std::time::Duration {
    let tv = |t: nix::sys::time::TimeVal| {
        std::time::Duration::new(t.tv_sec().max(0) as u64, t.tv_usec().max(0) as u32 * 1000)
    };
    nix::sys::resource::getrusage(who).map_or(std::time::Duration::ZERO, |u| {
        tv(u.user_time()) + tv(u.system_time())
    })
}

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

/// Everything a person or a scraper reads about a running recorder, at one instant.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Snapshot {
    pub uptime_s: f64,
    pub backend: String,
    pub received_frames: u64,
    pub received_bytes: u64,
    pub written_frames: u64,
    pub written_bytes: u64,
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// What a pipe source rejected from its senders, by reason (not frames: never accepted).
    pub source_rejects: std::collections::BTreeMap<String, u64>,
    /// Frames queued for the writers.
    pub queue_depth: u64,
    pub queue_high_water: u64,
    /// Frames taken by writers and not yet written or dropped.
    pub frames_in_writers: u64,
    pub writes_in_flight: u64,
    /// Writer tasks running (changes on reload).
    pub writers: u64,
    pub writes: u64,
    pub fsyncs: u64,
    pub segments: u64,
    pub durable_seq: Option<u64>,
    /// Free bytes on the output filesystem (for unprivileged users).
    pub free_bytes: Option<u64>,
    /// Nanoseconds; `frames_per_write` in frames.
    pub write_latency_ns: Percentiles,
    pub fsync_latency_ns: Percentiles,
    pub capture_to_written_ns: Percentiles,
    pub capture_to_durable_ns: Percentiles,
    pub queue_wait_ns: Percentiles,
    pub inter_arrival_ns: Percentiles,
    pub frames_per_write: Percentiles,
    /// The receiver handing a frame to the queue.
    #[serde(default)]
    pub enqueue_ns: Percentiles,
    /// Writes, fsyncs and segment creations that failed (in all, and in a row now).
    #[serde(default)]
    pub failures: u64,
    #[serde(default)]
    pub failures_in_a_row: u64,
    /// `writer.max-consecutive-failures` failures in a row and no good write since.
    #[serde(default)]
    pub degraded: bool,
    /// The output filesystem is under its free-space floor: frames are counted as `disk_full`.
    #[serde(default)]
    pub refusing_frames: bool,
    /// Segments retention deleted.
    #[serde(default)]
    pub segments_deleted: u64,
    /// Frames written again after an fsync failed while their write was in flight.
    #[serde(default)]
    pub frames_rewritten: u64,
}

impl Snapshot {
    /// Takes a snapshot. Its frame counts are the ledger's `tally`, consistent by
    /// construction: received = written + dropped + queue_depth + frames_in_writers.
    pub fn take(
        counters: &Counters,
        tally: &Tally,
        histograms: &Histograms,
        uptime_s: f64,
        free_bytes: Option<u64>,
    ) -> Snapshot {
        Snapshot {
            uptime_s,
            backend: counters
                .backend
                .get()
                .copied()
                .unwrap_or("starting")
                .to_string(),
            received_frames: tally.received_frames,
            received_bytes: tally.received_bytes,
            written_frames: tally.written_frames,
            written_bytes: tally.written_bytes,
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), tally.dropped(*r)))
                .collect(),
            source_rejects: crate::source::pipe::Reject::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), counters.source_rejects.get(*r)))
                .collect(),
            queue_depth: tally.queued,
            queue_high_water: counters.queue_high_water.load(Ordering::Relaxed),
            frames_in_writers: tally.in_writers,
            writes_in_flight: counters.writes_in_flight.load(Ordering::Relaxed),
            writers: counters.writers.load(Ordering::Relaxed),
            writes: counters.writes.load(Ordering::Relaxed),
            fsyncs: counters.fsyncs.load(Ordering::Relaxed),
            segments: counters.segments_opened.load(Ordering::Relaxed),
            durable_seq: counters.durable_seq(),
            free_bytes,
            write_latency_ns: Percentiles::of(&histograms.write_latency_ns),
            fsync_latency_ns: Percentiles::of(&histograms.fsync_latency_ns),
            capture_to_written_ns: Percentiles::of(&histograms.capture_to_written_ns),
            capture_to_durable_ns: Percentiles::of(&histograms.capture_to_durable_ns),
            queue_wait_ns: Percentiles::of(&histograms.queue_wait_ns),
            inter_arrival_ns: Percentiles::of(&histograms.inter_arrival_ns),
            frames_per_write: Percentiles::of(&histograms.frames_per_write),
            enqueue_ns: Percentiles::of(&histograms.enqueue_ns),
            failures: counters.failures.load(Ordering::Relaxed),
            failures_in_a_row: counters.failures_in_a_row.load(Ordering::Relaxed),
            degraded: counters.degraded.load(Ordering::Relaxed),
            refusing_frames: counters.refusing.load(Ordering::Relaxed),
            segments_deleted: counters.segments_deleted.load(Ordering::Relaxed),
            frames_rewritten: counters.frames_rewritten.load(Ordering::Relaxed),
        }
    }

    /// Saturating: a snapshot read back from a socket holds whatever its sender put there.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().fold(0, |a, b| a.saturating_add(*b))
    }

    /// `DEGRADED (...)` or `DISK FULL (...)` while frames are dropped because of the disk.
    pub fn fault_state(&self) -> Option<String> {
        match (self.degraded, self.refusing_frames) {
            (true, _) => Some(format!(
                "DEGRADED ({} disk failures in a row, frames dropped)",
                self.failures_in_a_row
            )),
            (false, true) => Some("DISK FULL (under the free-space floor, frames dropped)".into()),
            (false, false) => None,
        }
    }

    /// The one-line summary the recorder logs periodically.
    pub fn log_line(&self, prev: Option<&Snapshot>) -> String {
        let (frames, bytes, secs) = match prev {
            Some(p) => (
                // Frames written then lost to a failed fsync leave `written_frames`.
                self.written_frames.saturating_sub(p.written_frames),
                self.written_bytes.saturating_sub(p.written_bytes),
                (self.uptime_s - p.uptime_s).max(1e-9),
            ),
            None => (
                self.written_frames,
                self.written_bytes,
                self.uptime_s.max(1e-9),
            ),
        };
        let state = self
            .fault_state()
            .map_or(String::new(), |s| format!("{s}: "));
        format!(
            "{state}{:.1} fps, {:.1} MB/s, queue {} (high {}), write p99 {}, dropped {}, durable through {}",
            frames as f64 / secs,
            bytes as f64 / 1e6 / secs,
            self.queue_depth,
            self.queue_high_water,
            fmt_ns(self.write_latency_ns.p99),
            self.dropped_total(),
            self.durable_seq.map_or("none".into(), |s| s.to_string())
        )
    }
}

/// A format for nanoseconds a person reads: `850µs`, `12.3ms`, `1.20s`.
pub fn fmt_ns(ns: u64) -> String {
    if ns < 1_000 {
        format!("{ns}ns")
    } else if ns < 1_000_000 {
        format!("{:.0}µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.1}ms", ns as f64 / 1e6)
    } else {
        format!("{:.2}s", ns as f64 / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_seq_starts_unset() {
        let c = Counters::default();
        assert_eq!(c.durable_seq(), None);
        c.set_durable_seq(0);
        assert_eq!(c.durable_seq(), Some(0));
    }

    #[test]
    fn percentiles_of_known_values() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            record(&mut h, v * 1000);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((499_000..=501_000).contains(&p.p50), "{p:?}");
        assert!(p.max >= 999_000, "{p:?}");
        assert_eq!(fmt_ns(1_500_000), "1.5ms");
    }

    /// The stats_reply fuzz target's regression (fuzz/regressions/stats_reply/): a reply whose
    /// drop counts add past u64::MAX made `framerec stats` panic (debug) or print a wrapped total.
    #[test]
    fn a_crafted_reply_does_not_overflow_the_drop_total() {
        let reply = include_bytes!("../fuzz/regressions/stats_reply/dropped-total-overflows.json");
        let s = crate::serve::parse_snapshot(reply).unwrap();
        assert_eq!(s.dropped_total(), u64::MAX);
        assert!(s.log_line(None).contains("dropped 18446744073709551615"));
    }
}

/// Upper bounds (seconds) of the Prometheus latency buckets: around the 33 ms frame budget,
/// from 0.25 ms to 10 s.
pub const LATENCY_BUCKETS_S: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the frames-per-write buckets.
pub const FRAMES_PER_WRITE_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

fn prom_histogram(
    out: &mut String,
    name: &str,
    help: &str,
    h: &Histogram<u64>,
    bounds: &[f64],
    scale: f64,
) {
    use std::fmt::Write as _;
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for le in bounds {
        let limit = (le * scale).round() as u64;
        let count = if h.is_empty() {
            0
        } else {
            h.count_between(0, limit)
        };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.len());
    // HdrHistogram keeps no exact sum: the mean of the recorded values times their count.
    let sum = if h.is_empty() {
        0.0
    } else {
        h.mean() * h.len() as f64 / scale
    };
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {}", h.len());
}

/// The Prometheus text exposition (format 0.0.4) of a snapshot and its histograms.
pub fn prometheus_text(s: &Snapshot, h: &Histograms) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let one = |v: u64| vec![(String::new(), v as f64)];
    metric(
        "framerec_frames_received_total",
        "counter",
        "Frames the receiver took from the source.",
        &one(s.received_frames),
    );
    metric(
        "framerec_received_bytes_total",
        "counter",
        "Payload bytes received.",
        &one(s.received_bytes),
    );
    metric(
        "framerec_frames_written_total",
        "counter",
        "Frames written to segments (frames a failed fsync takes back move to dropped).",
        &one(s.written_frames),
    );
    metric(
        "framerec_written_bytes_total",
        "counter",
        "Payload bytes written.",
        &one(s.written_bytes),
    );
    let drops: Vec<(String, f64)> = s
        .dropped
        .iter()
        .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), *n as f64))
        .collect();
    metric(
        "framerec_frames_dropped_total",
        "counter",
        "Frames accepted and not written, by reason.",
        &drops,
    );
    metric(
        "framerec_writes_total",
        "counter",
        "Vectored writes completed.",
        &one(s.writes),
    );
    metric(
        "framerec_fsyncs_total",
        "counter",
        "Successful fsyncs.",
        &one(s.fsyncs),
    );
    metric(
        "framerec_queue_depth_frames",
        "gauge",
        "Frames queued for the writers.",
        &one(s.queue_depth),
    );
    metric(
        "framerec_queue_high_water_frames",
        "gauge",
        "Highest queue depth seen.",
        &one(s.queue_high_water),
    );
    metric(
        "framerec_frames_in_writers",
        "gauge",
        "Frames taken by writers, not yet written.",
        &one(s.frames_in_writers),
    );
    metric(
        "framerec_writes_in_flight",
        "gauge",
        "Writes submitted and not completed.",
        &one(s.writes_in_flight),
    );
    let rejects: Vec<(String, f64)> = s
        .source_rejects
        .iter()
        .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), *n as f64))
        .collect();
    metric(
        "framerec_source_rejects_total",
        "counter",
        "Input a pipe source rejected from its senders, by reason.",
        &rejects,
    );
    metric(
        "framerec_io_failures_total",
        "counter",
        "Writes, fsyncs and segment creations that failed.",
        &one(s.failures),
    );
    metric(
        "framerec_degraded",
        "gauge",
        "1 after writer.max-consecutive-failures failures in a row, until a write succeeds.",
        &one(s.degraded as u64),
    );
    metric(
        "framerec_refusing_frames",
        "gauge",
        "1 while the output filesystem is under its free-space floor.",
        &one(s.refusing_frames as u64),
    );
    metric(
        "framerec_writers",
        "gauge",
        "Writer tasks running (the configured count, once a reload has applied).",
        &one(s.writers),
    );
    metric(
        "framerec_segments",
        "gauge",
        "Segments started by this run.",
        &one(s.segments),
    );
    if let Some(d) = s.durable_seq {
        metric(
            "framerec_durable_sequence",
            "gauge",
            "Every frame at or below this sequence number is durable.",
            &one(d),
        );
    }
    if let Some(f) = s.free_bytes {
        metric(
            "framerec_free_bytes",
            "gauge",
            "Free bytes on the output filesystem.",
            &one(f),
        );
    }
    metric(
        "framerec_uptime_seconds",
        "gauge",
        "Seconds since the recording started.",
        &[(String::new(), s.uptime_s)],
    );
    metric(
        "framerec_backend_info",
        "gauge",
        "The I/O backend in use.",
        &[(format!("{{backend=\"{}\"}}", s.backend), 1.0)],
    );
    prom_histogram(
        &mut out,
        "framerec_write_latency_seconds",
        "Submit to completion of one vectored write.",
        &h.write_latency_ns,
        &LATENCY_BUCKETS_S,
        1e9,
    );
    prom_histogram(
        &mut out,
        "framerec_fsync_latency_seconds",
        "One fsync of a segment.",
        &h.fsync_latency_ns,
        &LATENCY_BUCKETS_S,
        1e9,
    );
    prom_histogram(
        &mut out,
        "framerec_capture_to_written_seconds",
        "Host capture stamp to write completion, per frame.",
        &h.capture_to_written_ns,
        &LATENCY_BUCKETS_S,
        1e9,
    );
    prom_histogram(
        &mut out,
        "framerec_capture_to_durable_seconds",
        "Host capture stamp to the fsync that made the frame durable, per frame.",
        &h.capture_to_durable_ns,
        &LATENCY_BUCKETS_S,
        1e9,
    );
    prom_histogram(
        &mut out,
        "framerec_inter_arrival_seconds",
        "Between consecutive frames' capture stamps.",
        &h.inter_arrival_ns,
        &LATENCY_BUCKETS_S,
        1e9,
    );
    prom_histogram(
        &mut out,
        "framerec_enqueue_seconds",
        "The receiver handing one frame to the queue.",
        &h.enqueue_ns,
        &LATENCY_BUCKETS_S,
        1e9,
    );
    prom_histogram(
        &mut out,
        "framerec_queue_wait_seconds",
        "Host capture stamp to a writer taking the frame.",
        &h.queue_wait_ns,
        &LATENCY_BUCKETS_S,
        1e9,
    );
    prom_histogram(
        &mut out,
        "framerec_frames_per_write",
        "Frames carried by one write.",
        &h.frames_per_write,
        &FRAMES_PER_WRITE_BUCKETS,
        1.0,
    );
    out
}

#[cfg(test)]
mod prometheus_tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_end_with_the_count() {
        let mut h = Histograms::default();
        for ms in [0.1, 0.3, 2.0, 40.0, 3000.0] {
            record(&mut h.write_latency_ns, (ms * 1e6) as u64);
        }
        let c = Counters::default();
        let s = Snapshot::take(&c, &Tally::default(), &h, 1.0, None);
        let text = prometheus_text(&s, &h);
        let bucket = |le: &str| -> u64 {
            let key = format!("framerec_write_latency_seconds_bucket{{le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(bucket("0.00025"), 1);
        assert_eq!(bucket("0.0005"), 2);
        assert_eq!(bucket("0.0025"), 3);
        assert_eq!(bucket("0.05"), 4);
        assert_eq!(bucket("2.5"), 4);
        assert_eq!(bucket("5"), 5);
        assert_eq!(bucket("+Inf"), 5);
        assert!(text.contains("framerec_write_latency_seconds_count 5"));
        assert!(text.contains("framerec_frames_dropped_total{reason=\"queue_full\"} 0"));
    }

    #[test]
    fn a_degraded_or_refusing_recorder_says_so_first_in_its_status_line_and_metrics() {
        let c = Counters::default();
        let h = Histograms::default();
        let healthy = Snapshot::take(&c, &Tally::default(), &h, 1.0, None);
        assert!(healthy.log_line(None).starts_with("0.0 fps"));
        c.failures_in_a_row.store(9, Ordering::Relaxed);
        c.degraded.store(true, Ordering::Relaxed);
        let s = Snapshot::take(&c, &Tally::default(), &h, 1.0, None);
        assert!(
            s.log_line(None)
                .starts_with("DEGRADED (9 disk failures in a row"),
            "{}",
            s.log_line(None)
        );
        assert!(prometheus_text(&s, &h).contains("framerec_degraded 1"));
        c.degraded.store(false, Ordering::Relaxed);
        c.refusing.store(true, Ordering::Relaxed);
        let s = Snapshot::take(&c, &Tally::default(), &h, 1.0, None);
        assert!(s.log_line(None).starts_with("DISK FULL"));
        assert!(prometheus_text(&s, &h).contains("framerec_refusing_frames 1"));
    }
}
