//! The Prometheus text exposition of a snapshot and its histograms.

use hdrhistogram::Histogram;

use super::{Histograms, Snapshot};

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

/// A label value, escaped as the text format wants (`\\`, `\"`, `\n`).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The frame counts of each stream, labelled with its name.
fn stream_metrics(metric: &mut impl FnMut(&str, &str, &str, &[(String, f64)]), s: &Snapshot) {
    let per = |f: &dyn Fn(&super::StreamStats) -> u64| -> Vec<(String, f64)> {
        s.streams
            .iter()
            .map(|st| (format!("{{stream=\"{}\"}}", label(&st.name)), f(st) as f64))
            .collect()
    };
    metric(
        "framerec_stream_frames_received_total",
        "counter",
        "Frames the receiver took from the source, by stream.",
        &per(&|st| st.received_frames),
    );
    metric(
        "framerec_stream_frames_written_total",
        "counter",
        "Frames written to segments, by stream.",
        &per(&|st| st.written_frames),
    );
    metric(
        "framerec_stream_frames_pending",
        "gauge",
        "Frames queued or in the writers, by stream: received = written + dropped + pending.",
        &per(&|st| st.queued + st.in_writers),
    );
    let drops: Vec<(String, f64)> = s
        .streams
        .iter()
        .flat_map(|st| {
            st.dropped.iter().map(move |(r, n)| {
                let labels = format!("{{stream=\"{}\",reason=\"{r}\"}}", label(&st.name));
                (labels, *n as f64)
            })
        })
        .collect();
    metric(
        "framerec_stream_frames_dropped_total",
        "counter",
        "Frames accepted and not written, by stream and reason.",
        &drops,
    );
}

/// The recorder's state and what the control socket did.
fn control_metrics(metric: &mut impl FnMut(&str, &str, &str, &[(String, f64)]), s: &Snapshot) {
    let one = |v: u64| vec![(String::new(), v as f64)];
    let states = ["recording", "paused"]
        .iter()
        .map(|st| {
            let on = if s.state == *st { 1.0 } else { 0.0 };
            (format!("{{state=\"{st}\"}}"), on)
        })
        .collect::<Vec<_>>();
    metric(
        "framerec_state",
        "gauge",
        "1 for the recorder's state (recording, paused), 0 for the others.",
        &states,
    );
    let paused: Vec<(String, f64)> = s
        .streams
        .iter()
        .map(|st| {
            (
                format!("{{stream=\"{}\"}}", label(&st.name)),
                st.paused as f64,
            )
        })
        .collect();
    metric(
        "framerec_stream_frames_paused_total",
        "counter",
        "Frames that arrived while the recorder was paused (skipped on purpose), by stream.",
        &paused,
    );
    metric(
        "framerec_frames_paused_total",
        "counter",
        "Frames that arrived while the recorder was paused (skipped on purpose; not drops).",
        &one(s.paused_frames),
    );
    metric(
        "framerec_pauses_total",
        "counter",
        "Times the recorder was paused.",
        &one(s.pauses),
    );
    metric(
        "framerec_marks_total",
        "counter",
        "Marks written into the recording (framerec ctl mark).",
        &one(s.marks),
    );
    let mut requests = vec![("{result=\"ok\"}".to_string(), s.control_ok as f64)];
    requests.extend(
        s.control_rejected
            .iter()
            .map(|(k, n)| (format!("{{result=\"{}\"}}", label(k)), *n as f64)),
    );
    metric(
        "framerec_control_requests_total",
        "counter",
        "Control socket requests: answered (ok) or rejected (malformed, oversized, incomplete, refused, busy).",
        &requests,
    );
}

/// The Prometheus text exposition (format 0.0.4) of a snapshot and its histograms.
fn compression_metrics(metric: &mut impl FnMut(&str, &str, &str, &[(String, f64)]), s: &Snapshot) {
    let c = &s.compression;
    let chunks = [
        ("compressed", c.chunks_compressed),
        ("raw_not_worth_it", c.chunks_not_worth_it),
    ];
    metric(
        "framerec_compression_chunks_total",
        "counter",
        "Chunks the compression workers made: compressed, or left raw because they would not shrink enough.",
        &chunks.map(|(k, n)| (format!("{{result=\"{k}\"}}"), n as f64)),
    );
    let raw = [
        ("busy", c.batches_raw_busy),
        ("pressure", c.batches_raw_pressure),
    ];
    metric(
        "framerec_compression_raw_batches_total",
        "counter",
        "Batches written raw without compressing: every worker busy, or the queue past its high-water mark.",
        &raw.map(|(k, n)| (format!("{{reason=\"{k}\"}}"), n as f64)),
    );
    let bytes = [("in", c.bytes_in), ("out", c.bytes_out)];
    metric(
        "framerec_compression_bytes_total",
        "counter",
        "Payload bytes into compressed chunks (in) and the chunks' bytes (out).",
        &bytes.map(|(k, n)| (format!("{{direction=\"{k}\"}}"), n as f64)),
    );
    metric(
        "framerec_compression_seconds_total",
        "counter",
        "Worker time spent compressing.",
        &[(String::new(), c.busy_ns as f64 / 1e9)],
    );
}

pub fn prometheus_text(s: &Snapshot, h: &Histograms) -> String {
    // Over 80 lines, as one flat list of every metric's name, kind and help beside its value:
    // cutting it into parts would only scatter that list. It shrinks when the metrics become
    // one table (DESIGN.md, `observe/`); this module was split by moving code, not rewriting it.
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
    stream_metrics(&mut metric, s);
    control_metrics(&mut metric, s);
    compression_metrics(&mut metric, s);
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
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::ledger::Tally;
    use crate::observe::{Counters, record};

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
        // Per stream, with a name that needs escaping.
        let mut s = s.clone();
        let mut t = Tally {
            received_frames: 3,
            written_frames: 2,
            ..Tally::default()
        };
        t.dropped[crate::frame::DropReason::QueueFull.index()] = 1;
        s.streams = vec![crate::observe::StreamStats::of("a\"b", "/t", &t)];
        let text = prometheus_text(&s, &h);
        assert!(
            text.contains("framerec_stream_frames_received_total{stream=\"a\\\"b\"} 3"),
            "{text}"
        );
        assert!(text.contains("framerec_stream_frames_written_total{stream=\"a\\\"b\"} 2"));
        assert!(text.contains(
            "framerec_stream_frames_dropped_total{stream=\"a\\\"b\",reason=\"queue_full\"} 1"
        ));
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

    #[test]
    fn the_state_pauses_and_control_requests_are_exposed() {
        let mut s = Snapshot {
            state: "paused".into(),
            paused_frames: 7,
            control_ok: 3,
            ..Snapshot::default()
        };
        s.control_rejected.insert("oversized".into(), 2);
        let text = prometheus_text(&s, &Histograms::default());
        for line in [
            "framerec_state{state=\"paused\"} 1",
            "framerec_state{state=\"recording\"} 0",
            "framerec_frames_paused_total 7",
            "framerec_control_requests_total{result=\"ok\"} 3",
            "framerec_control_requests_total{result=\"oversized\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn what_the_compression_stage_did_is_exposed() {
        let s = Snapshot {
            compression: crate::pipeline::compress::CompressionTotals {
                chunks_compressed: 5,
                chunks_not_worth_it: 1,
                batches_raw_busy: 2,
                batches_raw_pressure: 3,
                bytes_in: 6000,
                bytes_out: 1000,
                busy_ns: 1_500_000_000,
            },
            ..Snapshot::default()
        };
        let text = prometheus_text(&s, &Histograms::default());
        for line in [
            "framerec_compression_chunks_total{result=\"compressed\"} 5",
            "framerec_compression_chunks_total{result=\"raw_not_worth_it\"} 1",
            "framerec_compression_raw_batches_total{reason=\"busy\"} 2",
            "framerec_compression_raw_batches_total{reason=\"pressure\"} 3",
            "framerec_compression_bytes_total{direction=\"in\"} 6000",
            "framerec_compression_bytes_total{direction=\"out\"} 1000",
            "framerec_compression_seconds_total 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
