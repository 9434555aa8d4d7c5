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
//! #framerec-counters t=10.000 received=300 written=300 ... stream.depth.received=100 ...
//! ```
//!
//! Every interval has one line per histogram, tagged with [`Histograms::tagged`]'s names;
//! timestamps are seconds since BaseTime (the run's start); values are nanoseconds except
//! `frames-per-write` (frames). After each interval's histograms comes a `#framerec-counters` line
//! with the cumulative counters at its end (per stream too in a recording of several: see
//! `counters`), which other readers skip as a comment. A run that
//! ended cleanly closes its log with `#framerec-end reason=...`. A new run of the same
//! recording appends a new StartTime header. Lines are written at every interval, so a crash
//! loses at most the interval in progress (a torn last line is ignored on reading); the header
//! is made durable on creation, each interval by the recorder right after it is written (off
//! the writers' thread), and the end line on [`IntervalLogWriter::finish`].
//!
//! [`Histograms::tagged`]: crate::observe::Histograms::tagged

mod counters;
mod decode;
mod reader;
mod report;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

pub use counters::{MAX_COUNTER_KEYS, MAX_LOG_STREAMS, StreamCounters};
pub use decode::{HistogramError, MAX_PAYLOAD_BYTES, decode_histogram};
pub use reader::{Damage, Interval, LineError, MAX_LINE_BYTES, MAX_TAGS, Run, parse_log, read_log};
pub use report::{IntervalSummary, Report, RunSummary, StreamFrames};
pub use writer::IntervalLogWriter;

pub const EXTENSION: &str = "hlog";

/// The interval log of the run whose first segment is `first_segment_id`.
pub fn file_name(first_segment_id: u64) -> String {
    format!("framerec-{first_segment_id:016}.{EXTENSION}")
}

const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";
const COUNTERS: &str = "#framerec-counters ";
const END: &str = "#framerec-end ";

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

/// Every interval's histograms merged, by tag, at framerec's own bounds.
pub type ByTag = BTreeMap<String, Histogram<u64>>;
