//! HdrHistogram interval logs (`.hlog`) beside a recording, and the reader behind
//! `framerec stats DIR`.
//!
//! # Format
//! The format of Java's `HistogramLogWriter`, which its `HistogramLogReader`, the HdrHistogram
//! plotters and the Python `hdrhistogram` package read:
//!
//! ```text
//! #framerec interval log: ...
//! #[StartTime: 1795467600.123 (seconds since epoch)]
//! #[BaseTime: 1795467600.123 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! Tag=write,0.000,10.000,1105.000,HISTFAAAA...
//! ...
//! #framerec-counters t=10.000 received=300 written=300 ...
//! ```
//!
//! Every interval has one line per histogram, tagged with [`Histograms::tagged`]'s names;
//! timestamps are seconds since BaseTime (the run's start); values are nanoseconds except
//! `frames-per-write` (frames). After each interval's histograms comes a `#framerec-counters` line
//! with the cumulative counters at its end, which other readers skip as a comment. A run that
//! ended cleanly closes its log with `#framerec-end reason=...`. A new run of the same
//! recording appends a new StartTime header. Lines are written at every interval, so a crash
//! loses at most the interval in progress (a torn last line is ignored on reading); the header
//! is made durable on creation, each interval by the recorder right after it is written (off
//! the writers' thread), and the end line on [`IntervalLogWriter::finish`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

use crate::observe::{Histograms, Percentiles, Snapshot};

pub const EXTENSION: &str = "hlog";

/// The interval log of the run whose first segment is `first_segment_id`.
pub fn file_name(first_segment_id: u64) -> String {
    format!("framerec-{first_segment_id:016}.{EXTENSION}")
}

const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";
const COUNTERS: &str = "#framerec-counters ";
const END: &str = "#framerec-end ";

/// Writes one run's interval log.
pub struct IntervalLogWriter {
    file: File,
    path: PathBuf,
    started: Instant,
    /// End of the last interval written, from the start.
    last: Duration,
    serializer: V2DeflateSerializer,
    buf: Vec<u8>,
}

impl IntervalLogWriter {
    /// Opens (appending) the log `dir/file_name(first_segment_id)` and writes the header.
    pub fn create(
        dir: &Path,
        first_segment_id: u64,
        recording_id: &str,
    ) -> io::Result<IntervalLogWriter> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name(first_segment_id));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let now = SystemTime::now();
        let mut w = IntervalLogWriter {
            file,
            path,
            started: Instant::now(),
            last: Duration::ZERO,
            serializer: V2DeflateSerializer::new(),
            buf: Vec::new(),
        };
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "framerec interval log: recording {recording_id}, first segment {first_segment_id}; values in nanoseconds except frames-per-write (frames)"
            ))
            .with_start_time(now)
            .with_base_time(now)
            .begin_log_with(&mut w.buf, &mut w.serializer)?;
        w.buf.extend_from_slice(LEGEND.as_bytes());
        w.flush_buf()?;
        // The header and the file's name survive a power cut from here on.
        w.file.sync_data()?;
        File::open(dir)?.sync_all()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the log for making it durable from another thread (`fdatasync` can
    /// take as long as the disk wants; whoever writes intervals should not wait for it).
    pub fn sync_handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the interval from the last one's end to now: every histogram in `h`, then the
    /// counters of `s`.
    pub fn write_interval(&mut self, h: &Histograms, s: &Snapshot) -> io::Result<()> {
        let now = self.started.elapsed();
        let (start, length) = (self.last, now.saturating_sub(self.last));
        {
            let mut log = IntervalLogWriterBuilder::new()
                .begin_log_with(&mut self.buf, &mut self.serializer)?;
            for (tag, hist) in h.tagged() {
                log.write_histogram(hist, start, length, Tag::new(tag))
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        let mut line = format!(
            "{COUNTERS}t={:.3} received={} written={} queued={} in_writers={} durable={}",
            now.as_secs_f64(),
            s.received_frames,
            s.written_frames,
            s.queue_depth,
            s.frames_in_writers,
            s.durable_seq.map_or("none".into(), |d| d.to_string())
        );
        for (reason, n) in &s.dropped {
            line.push_str(&format!(" dropped.{reason}={n}"));
        }
        line.push('\n');
        self.buf.extend_from_slice(line.as_bytes());
        self.last = now;
        self.flush_buf()
    }

    /// Writes the last interval and the end line, and makes the log durable.
    pub fn finish(mut self, h: &Histograms, s: &Snapshot, reason: &str) -> io::Result<PathBuf> {
        self.write_interval(h, s)?;
        let reason: String = reason
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        self.buf
            .extend_from_slice(format!("{END}reason={reason}\n").as_bytes());
        self.flush_buf()?;
        self.file.sync_data()?;
        Ok(self.path)
    }
}

/// One interval as read back.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Start, seconds since the epoch.
    pub start: f64,
    pub length: f64,
    /// By tag.
    pub histograms: BTreeMap<String, Histogram<u64>>,
    /// Cumulative counters at the interval's end (`received`, `written`, `dropped.<reason>`,
    /// ...), when the log has them.
    pub counters: BTreeMap<String, u64>,
}

impl Interval {
    pub fn dropped_total(&self) -> u64 {
        self.counters
            .iter()
            .filter(|(k, _)| k.starts_with("dropped."))
            .map(|(_, v)| v)
            .sum()
    }
}

/// A run, as one log records it.
#[derive(Debug, Clone)]
pub struct Run {
    pub file: PathBuf,
    /// Seconds since the epoch.
    pub start: f64,
    pub intervals: Vec<Interval>,
    /// The end line's reason; `None` when the run did not end cleanly (a crash or a kill).
    pub ended: Option<String>,
}

/// Problems a reader tolerates and reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Damage {
    /// A line that is not a valid interval (a torn last line after a crash), 1-based.
    BadLine { file: PathBuf, line: usize },
}

/// Reads every run of one interval log. Bad lines are skipped and reported, never fatal.
pub fn read_log(path: &Path) -> io::Result<(Vec<Run>, Vec<Damage>)> {
    let text = String::from_utf8_lossy(&std::fs::read(path)?).into_owned();
    Ok(parse_log(&text, path))
}

/// [`read_log`] of text already read; `path` names the file in the results.
pub fn parse_log(text: &str, path: &Path) -> (Vec<Run>, Vec<Damage>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut damage = Vec::new();
    let mut base = 0.0;
    for (i, line) in text.lines().enumerate() {
        let bad = || Damage::BadLine {
            file: path.to_path_buf(),
            line: i + 1,
        };
        if let Some(rest) = line.strip_prefix("#[StartTime: ") {
            let start = leading_f64(rest).ok_or_else(|| io::Error::other("bad StartTime"));
            match start {
                Ok(start) => {
                    base = start;
                    runs.push(Run {
                        file: path.to_path_buf(),
                        start,
                        intervals: Vec::new(),
                        ended: None,
                    });
                }
                Err(_) => damage.push(bad()),
            }
        } else if let Some(rest) = line.strip_prefix("#[BaseTime: ") {
            match leading_f64(rest) {
                Some(b) => base = b,
                None => damage.push(bad()),
            }
        } else if let Some(rest) = line.strip_prefix(END) {
            if let Some(run) = runs.last_mut() {
                run.ended = Some(rest.strip_prefix("reason=").unwrap_or(rest).to_string());
            }
        } else if let Some(rest) = line.strip_prefix(COUNTERS) {
            let counters = parse_counters(rest);
            match (
                counters,
                runs.last_mut().and_then(|r| r.intervals.last_mut()),
            ) {
                (Some(c), Some(interval)) => interval.counters = c,
                _ => damage.push(bad()),
            }
        } else if line.starts_with('#') || line.starts_with('"') || line.is_empty() {
            continue;
        } else {
            let Some((tag, start, length, h)) = parse_interval(line) else {
                damage.push(bad());
                continue;
            };
            if runs.is_empty() {
                runs.push(Run {
                    file: path.to_path_buf(),
                    start: base + start,
                    intervals: Vec::new(),
                    ended: None,
                });
            }
            let run = runs.last_mut().expect("a run exists");
            let start = base + start;
            let same = run
                .intervals
                .last()
                .is_some_and(|iv| (iv.start - start).abs() < 1e-6);
            if !same {
                run.intervals.push(Interval {
                    start,
                    length,
                    histograms: BTreeMap::new(),
                    counters: BTreeMap::new(),
                });
            }
            let iv = run.intervals.last_mut().expect("just pushed");
            iv.histograms.insert(tag, h);
        }
    }
    (runs, damage)
}

fn leading_f64(s: &str) -> Option<f64> {
    s.split_whitespace().next()?.parse().ok()
}

fn parse_counters(s: &str) -> Option<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for field in s.split_whitespace() {
        let (k, v) = field.split_once('=')?;
        if k == "t" || v == "none" {
            continue;
        }
        out.insert(k.to_string(), v.parse().ok()?);
    }
    Some(out)
}

/// `Tag=T,start,length,max,base64` to its parts, decoded.
fn parse_interval(line: &str) -> Option<(String, f64, f64, Histogram<u64>)> {
    let (tag, rest) = match line.strip_prefix("Tag=") {
        Some(r) => {
            let (t, rest) = r.split_once(',')?;
            (t.to_string(), rest)
        }
        None => (String::new(), line),
    };
    let mut fields = rest.splitn(4, ',');
    let start: f64 = fields.next()?.parse().ok()?;
    let length: f64 = fields.next()?.parse().ok()?;
    let _max: f64 = fields.next()?.parse().ok()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(fields.next()?.trim())
        .ok()?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .ok()?;
    (start.is_finite() && length.is_finite()).then_some((tag, start, length, h))
}

/// The interval logs of `path`: the file itself, or every `.hlog` in the directory, by name.
pub fn logs_in(path: &Path) -> io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut logs: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == EXTENSION))
        .collect();
    logs.sort();
    Ok(logs)
}

/// Seconds since the epoch.
pub fn epoch_s(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Every interval's histograms merged, by tag.
pub fn merge_by_tag(intervals: &[Interval]) -> BTreeMap<String, Histogram<u64>> {
    let mut all: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    for iv in intervals {
        for (tag, h) in &iv.histograms {
            match all.get_mut(tag) {
                Some(a) => {
                    let _ = a.add(h);
                }
                None => {
                    all.insert(tag.clone(), h.clone());
                }
            }
        }
    }
    all
}

/// What `framerec stats DIR` reports: the runs of every log, overall and per interval.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub logs: Vec<PathBuf>,
    pub runs: Vec<RunSummary>,
    /// Lines skipped as unreadable, as `file:line`.
    pub damage: Vec<String>,
    /// Every interval merged, by tag.
    pub overall: BTreeMap<String, Percentiles>,
    pub intervals: Vec<IntervalSummary>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    pub file: PathBuf,
    /// Seconds since the epoch.
    pub start: f64,
    pub intervals: usize,
    /// How the run ended; `None` when it did not end cleanly (killed or crashed).
    pub ended: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IntervalSummary {
    /// Seconds from the first run's start.
    pub start_s: f64,
    pub length_s: f64,
    /// Frames received, written and dropped during the interval (from the counters).
    pub received: u64,
    pub written: u64,
    pub dropped: u64,
    pub histograms: BTreeMap<String, Percentiles>,
}

impl Report {
    /// Reads the interval logs at `path` (a file, or every `.hlog` in a directory).
    pub fn read(path: &Path) -> io::Result<(Report, Vec<Interval>)> {
        let logs = logs_in(path)?;
        if logs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no interval logs (*.{EXTENSION}) in {} (was stats.interval-log-s 0, or are they in $LOGS_DIRECTORY?)",
                    path.display()
                ),
            ));
        }
        let mut runs = Vec::new();
        let mut damage = Vec::new();
        for log in &logs {
            let (r, d) = read_log(log)?;
            runs.extend(r);
            damage.extend(
                d.into_iter()
                    .map(|Damage::BadLine { file, line }| format!("{}:{line}", file.display())),
            );
        }
        runs.sort_by(|a, b| a.start.total_cmp(&b.start));
        let origin = runs.first().map_or(0.0, |r| r.start);
        let mut intervals = Vec::new();
        let mut all = Vec::new();
        for run in &runs {
            let mut prev: BTreeMap<String, u64> = BTreeMap::new();
            for iv in &run.intervals {
                let delta = |k: &str| {
                    iv.counters
                        .get(k)
                        .map_or(0, |v| v.saturating_sub(prev.get(k).copied().unwrap_or(0)))
                };
                let dropped_before: u64 = prev
                    .iter()
                    .filter(|(k, _)| k.starts_with("dropped."))
                    .map(|(_, v)| v)
                    .sum();
                intervals.push(IntervalSummary {
                    start_s: iv.start - origin,
                    length_s: iv.length,
                    received: delta("received"),
                    written: delta("written"),
                    dropped: iv.dropped_total().saturating_sub(dropped_before),
                    histograms: iv
                        .histograms
                        .iter()
                        .map(|(t, h)| (t.clone(), Percentiles::of(h)))
                        .collect(),
                });
                if !iv.counters.is_empty() {
                    prev = iv.counters.clone();
                }
                all.push(iv.clone());
            }
        }
        let overall = merge_by_tag(&all);
        let report = Report {
            logs,
            runs: runs
                .iter()
                .map(|r| RunSummary {
                    file: r.file.clone(),
                    start: r.start,
                    intervals: r.intervals.len(),
                    ended: r.ended.clone(),
                })
                .collect(),
            damage,
            overall: overall
                .iter()
                .map(|(t, h)| (t.clone(), Percentiles::of(h)))
                .collect(),
            intervals,
        };
        Ok((report, all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{Counters, record};

    fn snapshot(received: u64) -> Snapshot {
        let c = Counters::default();
        c.received_frames
            .fetch_add(received, std::sync::atomic::Ordering::Relaxed);
        c.written_frames
            .fetch_add(received, std::sync::atomic::Ordering::Relaxed);
        Snapshot::take(&c, &Histograms::default(), || 0, 1.0, None)
    }

    #[test]
    fn written_intervals_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IntervalLogWriter::create(dir.path(), 3, "rec").unwrap();
        let mut h = Histograms::default();
        for v in 1..=100u64 {
            record(&mut h.write_latency_ns, v * 1000);
        }
        w.write_interval(&h, &snapshot(10)).unwrap();
        h.reset();
        record(&mut h.write_latency_ns, 5_000_000);
        let path = w.finish(&h, &snapshot(25), "frame limit").unwrap();
        assert_eq!(path.file_name().unwrap(), "framerec-0000000000000003.hlog");

        let (runs, damage) = read_log(&path).unwrap();
        assert!(damage.is_empty(), "{damage:?}");
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(run.ended.as_deref(), Some("frame_limit"));
        assert_eq!(run.intervals.len(), 2);
        let first = &run.intervals[0].histograms["write"];
        assert_eq!(first.len(), 100);
        assert_eq!(first.max(), h_max(100_000));
        assert_eq!(run.intervals[1].histograms["write"].len(), 1);
        assert_eq!(run.intervals[0].counters["received"], 10);
        assert_eq!(run.intervals[1].counters["received"], 25);
        assert_eq!(run.intervals[1].histograms.len(), 8);
    }

    fn h_max(v: u64) -> u64 {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        h.record(v).unwrap();
        h.max()
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_read_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.hlog");
            std::fs::write(&path, &bytes).unwrap();
            let _ = read_log(&path).unwrap();
        }

        #[test]
        fn mangled_lines_of_a_real_log_read_without_panicking(cut in 0usize..4000, byte in proptest::num::u8::ANY) {
            let dir = tempfile::tempdir().unwrap();
            let mut w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
            let mut h = Histograms::default();
            record(&mut h.write_latency_ns, 1234);
            w.write_interval(&h, &snapshot(1)).unwrap();
            let path = w.path().to_path_buf();
            drop(w);
            let mut bytes = std::fs::read(&path).unwrap();
            let at = cut % bytes.len();
            bytes[at] = byte;
            bytes.truncate(at + 1 + cut / 3);
            std::fs::write(&path, &bytes).unwrap();
            let _ = read_log(&path).unwrap();
        }
    }

    #[test]
    fn a_torn_last_line_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
        let mut h = Histograms::default();
        record(&mut h.write_latency_ns, 1000);
        w.write_interval(&h, &snapshot(1)).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"Tag=write,1.000,1.000,5.0,HISTFAAAA").unwrap();
        let (runs, damage) = read_log(&path).unwrap();
        assert_eq!(runs[0].intervals.len(), 1);
        assert_eq!(runs[0].ended, None);
        assert_eq!(damage.len(), 1, "{damage:?}");
    }
}
