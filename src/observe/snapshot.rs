//! The snapshot: everything a person or a scraper reads about a running recorder at one
//! instant, and the one-line summary made from it.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::{Counters, Histograms, Percentiles};
use crate::frame::DropReason;
use crate::ledger::Tally;

/// Everything a person or a scraper reads about a running recorder, at one instant.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Default)]
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
    /// What the compression stage did (all zero when compression is off).
    #[serde(default)]
    pub compression: crate::pipeline::compress::CompressionTotals,
    /// The frame counts above, stream by stream (their sums are the totals).
    #[serde(default)]
    pub streams: Vec<StreamStats>,
    /// `recording`, or `paused` (`framerec ctl pause`).
    #[serde(default = "recording")]
    pub state: String,
    /// Frames that arrived while paused (skipped on purpose; not in `dropped`).
    #[serde(default)]
    pub paused_frames: u64,
    /// Times the recorder was paused.
    #[serde(default)]
    pub pauses: u64,
    /// Marks written (`framerec ctl mark`).
    #[serde(default)]
    pub marks: u64,
    /// Control socket requests answered.
    #[serde(default)]
    pub control_ok: u64,
    /// Control socket requests rejected, by kind (malformed, oversized, incomplete, refused, busy).
    #[serde(default)]
    pub control_rejected: std::collections::BTreeMap<String, u64>,
}

fn recording() -> String {
    "recording".into()
}

/// Where the frames of one stream are, at one instant.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Default)]
pub struct StreamStats {
    /// The stream's name (`depth`, `color`, `accel`, ...).
    pub name: String,
    pub topic: String,
    pub received_frames: u64,
    pub received_bytes: u64,
    pub written_frames: u64,
    pub written_bytes: u64,
    /// Queued for the writers, and taken by them and not yet written or dropped.
    pub queued: u64,
    pub in_writers: u64,
    /// By reason, every reason listed.
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Arrived while the recorder was paused (skipped on purpose, not dropped).
    #[serde(default)]
    pub paused: u64,
}

impl StreamStats {
    /// The stats of stream `name` on `topic` from its ledger tally.
    pub fn of(name: &str, topic: &str, t: &Tally) -> StreamStats {
        StreamStats {
            name: name.to_string(),
            topic: topic.to_string(),
            received_frames: t.received_frames,
            received_bytes: t.received_bytes,
            written_frames: t.written_frames,
            written_bytes: t.written_bytes,
            queued: t.queued,
            in_writers: t.in_writers,
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), t.dropped(*r)))
                .collect(),
            paused: t.paused,
        }
    }

    /// The stats of every stream of `streams` (name, topic) from the ledger's tallies, in
    /// stream-table order.
    pub fn all(streams: &[(String, String)], tallies: &[Tally]) -> Vec<StreamStats> {
        streams
            .iter()
            .zip(tallies)
            .map(|((name, topic), t)| StreamStats::of(name, topic, t))
            .collect()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// `name (topic): received R, written W, dropped D (reason n, ...)`, naming only the
    /// reasons that dropped frames: the stream's line in the summary and in `framerec stats`.
    pub fn line(&self) -> String {
        let drops: Vec<String> = self
            .dropped
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        format!(
            "{} ({}): received {}, written {}, dropped {}{}{}",
            self.name,
            self.topic,
            self.received_frames,
            self.written_frames,
            self.dropped_total(),
            if drops.is_empty() {
                String::new()
            } else {
                format!(" ({})", drops.join(", "))
            },
            if self.paused > 0 {
                format!(", paused {}", self.paused)
            } else {
                String::new()
            }
        )
    }
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
            compression: counters.compress.totals(),
            streams: Vec::new(),
            state: if counters.is_paused() {
                "paused"
            } else {
                "recording"
            }
            .into(),
            paused_frames: tally.paused,
            pauses: counters.pauses.load(Ordering::Relaxed),
            marks: counters.marks.load(Ordering::Relaxed),
            control_ok: counters.control.ok(),
            control_rejected: super::ControlReject::ALL
                .iter()
                .map(|r| (r.as_str().to_string(), counters.control.rejected_by(*r)))
                .collect(),
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
