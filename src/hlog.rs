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

use crate::observe::{HIGHEST_TRACKABLE, Histograms, Percentiles, SIGNIFICANT_DIGITS, Snapshot};

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
    /// By tag. Only the percentiles are kept per interval (a decoded histogram takes up to
    /// 270 KB); the histograms themselves are merged by tag as they are read, into [`ByTag`].
    pub histograms: BTreeMap<String, Percentiles>,
    /// Cumulative counters at the interval's end (`received`, `written`, `dropped.<reason>`,
    /// ...), when the log has them.
    pub counters: BTreeMap<String, u64>,
}

impl Interval {
    pub fn dropped_total(&self) -> u64 {
        // Saturating: a crafted log's counters must not overflow the sum.
        self.counters
            .iter()
            .filter(|(k, _)| k.starts_with("dropped."))
            .fold(0u64, |sum, (_, v)| sum.saturating_add(*v))
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
    /// A line that is not a valid interval (a torn last line after a crash, or a crafted one),
    /// 1-based.
    BadLine {
        file: PathBuf,
        line: usize,
        why: LineError,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::BadLine { file, line, why } => write!(f, "{}:{line}: {why}", file.display()),
        }
    }
}

/// The longest line a reader takes: a histogram framerec writes is at most about 400 KB of
/// base64 (33,792 counts of up to 9 bytes, deflated, in base64); longer lines are skipped
/// unread so that a crafted log costs no more memory than this.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// The largest uncompressed histogram payload a reader accepts (framerec's own are at most
/// 33,792 counts of at most 9 bytes each, about 304 KB).
pub const MAX_PAYLOAD_BYTES: u32 = 512 * 1024;
/// `V2` and `V2` + DEFLATE histogram encodings (HdrHistogram's cookies).
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// cookie, payload length, normalizing offset, significant digits (u32 each), lowest and
/// highest trackable value (u64 each), integer-to-double ratio (f64).
const V2_HEADER_BYTES: usize = 40;

/// Why a line of an interval log was skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    #[error("a line longer than {max} bytes (not written by framerec)")]
    TooLong { max: usize },
    #[error("not an interval line (Tag=T,start,length,max,histogram)")]
    Malformed,
    #[error("a bad start time")]
    BadTime,
    #[error("counters with no interval before them, or unreadable counters")]
    BadCounters,
    #[error("a tag beyond the {max} different ones a log can have (framerec writes 8)")]
    TooManyTags { max: usize },
    #[error("its histogram is unreadable: {0}")]
    Histogram(#[from] HistogramError),
}

/// Why an encoded histogram was refused: checked before anything is allocated from it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    #[error("{len} bytes of base64, over the {max} a histogram can take")]
    TooLong { len: usize, max: usize },
    #[error("not base64")]
    Base64,
    #[error("shorter than a histogram header")]
    Truncated,
    #[error("cookie {0:#010x} is not an HdrHistogram V2 encoding")]
    Cookie(u32),
    #[error("the compressed payload claims {claimed} bytes, {available} follow")]
    CompressedLength { claimed: u32, available: usize },
    #[error("the payload claims {claimed} bytes, over the {max} a histogram can take")]
    PayloadLength { claimed: u32, max: u32 },
    #[error("normalizing offset {0} is not supported")]
    NormalizingOffset(u32),
    #[error("it claims {claimed} significant digits; framerec keeps {max}")]
    SignificantDigits { claimed: u32, max: u8 },
    #[error(
        "its range {lowest}..={highest} is not within 1..={max} that framerec's histograms track"
    )]
    Range { lowest: u64, highest: u64, max: u64 },
    #[error("the counts do not decode: {0}")]
    Counts(String),
}

/// Reads every run of one interval log, a line at a time (no line over [`MAX_LINE_BYTES`] is
/// held), adding its histograms to `merged`. Bad lines are skipped and reported, never fatal.
pub fn read_log(path: &Path, merged: &mut ByTag) -> io::Result<(Vec<Run>, Vec<Damage>)> {
    use std::io::BufRead as _;
    let mut reader = io::BufReader::new(File::open(path)?);
    let mut parser = LogParser::new(path, merged);
    let mut line = Vec::new();
    let mut n = 0;
    loop {
        n += 1;
        line.clear();
        let mut too_long = false;
        // Up to the newline, keeping at most MAX_LINE_BYTES of it.
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], Some(i + 1)),
                None => (buf, None),
            };
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
            } else {
                line.extend_from_slice(chunk);
            }
            let used = done.unwrap_or(buf.len());
            reader.consume(used);
            if done.is_some() {
                break;
            }
        }
        if too_long {
            parser.damage(
                n,
                LineError::TooLong {
                    max: MAX_LINE_BYTES,
                },
            );
            continue;
        }
        if line.is_empty() && reader.fill_buf()?.is_empty() {
            break;
        }
        parser.line(n, String::from_utf8_lossy(&line).trim_end_matches('\r'));
    }
    Ok(parser.finish())
}

/// [`read_log`] of text already read; `path` names the file in the results.
pub fn parse_log(text: &str, path: &Path, merged: &mut ByTag) -> (Vec<Run>, Vec<Damage>) {
    let mut parser = LogParser::new(path, merged);
    for (i, line) in text.lines().enumerate() {
        if line.len() > MAX_LINE_BYTES {
            parser.damage(
                i + 1,
                LineError::TooLong {
                    max: MAX_LINE_BYTES,
                },
            );
        } else {
            parser.line(i + 1, line);
        }
    }
    parser.finish()
}

/// The runs of one log, built a line at a time.
struct LogParser<'m> {
    path: PathBuf,
    merged: &'m mut ByTag,
    runs: Vec<Run>,
    damage: Vec<Damage>,
    base: f64,
}

impl<'m> LogParser<'m> {
    fn new(path: &Path, merged: &'m mut ByTag) -> LogParser<'m> {
        LogParser {
            path: path.to_path_buf(),
            merged,
            runs: Vec::new(),
            damage: Vec::new(),
            base: 0.0,
        }
    }

    fn finish(self) -> (Vec<Run>, Vec<Damage>) {
        (self.runs, self.damage)
    }

    fn damage(&mut self, line: usize, why: LineError) {
        self.damage.push(Damage::BadLine {
            file: self.path.clone(),
            line,
            why,
        });
    }

    /// Line `i` (1-based), without its newline.
    fn line(&mut self, i: usize, line: &str) {
        if let Some(rest) = line.strip_prefix("#[StartTime: ") {
            match leading_f64(rest) {
                Some(start) => {
                    self.base = start;
                    self.runs.push(Run {
                        file: self.path.clone(),
                        start,
                        intervals: Vec::new(),
                        ended: None,
                    });
                }
                None => self.damage(i, LineError::BadTime),
            }
        } else if let Some(rest) = line.strip_prefix("#[BaseTime: ") {
            match leading_f64(rest) {
                Some(b) => self.base = b,
                None => self.damage(i, LineError::BadTime),
            }
        } else if let Some(rest) = line.strip_prefix(END) {
            if let Some(run) = self.runs.last_mut() {
                run.ended = Some(rest.strip_prefix("reason=").unwrap_or(rest).to_string());
            }
        } else if let Some(rest) = line.strip_prefix(COUNTERS) {
            let counters = parse_counters(rest);
            match (
                counters,
                self.runs.last_mut().and_then(|r| r.intervals.last_mut()),
            ) {
                (Some(c), Some(interval)) => interval.counters = c,
                _ => self.damage(i, LineError::BadCounters),
            }
        } else if line.starts_with('#') || line.starts_with('"') || line.is_empty() {
        } else {
            let (tag, start, length, h) = match parse_interval(line) {
                Ok(parts) => parts,
                Err(why) => return self.damage(i, why),
            };
            if let Err(why) = merge(self.merged, &tag, &h) {
                return self.damage(i, why);
            }
            let start = self.base + start;
            if self.runs.is_empty() {
                self.runs.push(Run {
                    file: self.path.clone(),
                    start,
                    intervals: Vec::new(),
                    ended: None,
                });
            }
            let run = self.runs.last_mut().expect("a run exists");
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
            iv.histograms.insert(tag, Percentiles::of(&h));
        }
    }
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
fn parse_interval(line: &str) -> Result<(String, f64, f64, Histogram<u64>), LineError> {
    let (tag, rest) = match line.strip_prefix("Tag=") {
        Some(r) => {
            let (t, rest) = r.split_once(',').ok_or(LineError::Malformed)?;
            (t.to_string(), rest)
        }
        None => (String::new(), line),
    };
    let mut fields = rest.splitn(4, ',');
    let mut number = || -> Result<f64, LineError> {
        let v: f64 = fields
            .next()
            .and_then(|f| f.parse().ok())
            .ok_or(LineError::Malformed)?;
        v.is_finite().then_some(v).ok_or(LineError::Malformed)
    };
    let (start, length, _max) = (number()?, number()?, number()?);
    let encoded = fields.next().ok_or(LineError::Malformed)?;
    Ok((tag, start, length, decode_histogram(encoded.trim())?))
}

/// A base64 HdrHistogram V2 encoding (compressed or not) to its histogram. The header is
/// checked against what framerec writes before the `hdrhistogram` deserializer sees it, as
/// that allocates whatever payload and counts array the header claims.
pub fn decode_histogram(base64: &str) -> Result<Histogram<u64>, HistogramError> {
    use std::io::Read as _;
    let max = MAX_LINE_BYTES;
    if base64.len() > max {
        return Err(HistogramError::TooLong {
            len: base64.len(),
            max,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|_| HistogramError::Base64)?;
    let u32_at = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    if bytes.len() < 8 {
        return Err(HistogramError::Truncated);
    }
    let mut header = [0u8; V2_HEADER_BYTES];
    match u32_at(&bytes, 0) {
        V2_COOKIE => header.copy_from_slice(
            bytes
                .get(..V2_HEADER_BYTES)
                .ok_or(HistogramError::Truncated)?,
        ),
        V2_COMPRESSED_COOKIE => {
            let claimed = u32_at(&bytes, 4);
            let available = bytes.len() - 8;
            if usize::try_from(claimed).map_or(true, |c| c > available) {
                return Err(HistogramError::CompressedLength { claimed, available });
            }
            flate2::read::ZlibDecoder::new(&bytes[8..])
                .read_exact(&mut header)
                .map_err(|_| HistogramError::Truncated)?;
        }
        other => return Err(HistogramError::Cookie(other)),
    }
    let cookie = u32_at(&header, 0);
    if cookie != V2_COOKIE {
        return Err(HistogramError::Cookie(cookie));
    }
    let claimed = u32_at(&header, 4);
    if claimed > MAX_PAYLOAD_BYTES {
        return Err(HistogramError::PayloadLength {
            claimed,
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let offset = u32_at(&header, 8);
    if offset != 0 {
        return Err(HistogramError::NormalizingOffset(offset));
    }
    let digits = u32_at(&header, 12);
    if digits > u32::from(SIGNIFICANT_DIGITS) {
        return Err(HistogramError::SignificantDigits {
            claimed: digits,
            max: SIGNIFICANT_DIGITS,
        });
    }
    let lowest = u64::from_be_bytes(header[16..24].try_into().unwrap());
    let highest = u64::from_be_bytes(header[24..32].try_into().unwrap());
    if lowest == 0 || lowest > highest || highest > HIGHEST_TRACKABLE {
        return Err(HistogramError::Range {
            lowest,
            highest,
            max: HIGHEST_TRACKABLE,
        });
    }
    Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .map_err(|e| HistogramError::Counts(e.to_string()))
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

/// Every interval's histograms merged, by tag, at framerec's own bounds.
pub type ByTag = BTreeMap<String, Histogram<u64>>;

/// The most tags a reader merges (framerec writes 8): each costs a histogram of up to 270 KB.
pub const MAX_TAGS: usize = 32;

/// Adds `h` to `merged`'s histogram for `tag`, refusing a new tag past [`MAX_TAGS`].
fn merge(merged: &mut ByTag, tag: &str, h: &Histogram<u64>) -> Result<(), LineError> {
    if !merged.contains_key(tag) {
        if merged.len() >= MAX_TAGS {
            return Err(LineError::TooManyTags { max: MAX_TAGS });
        }
        let empty = Histogram::new_with_bounds(1, HIGHEST_TRACKABLE, SIGNIFICANT_DIGITS)
            .expect("static histogram bounds are valid");
        merged.insert(tag.to_string(), empty);
    }
    let all = merged.get_mut(tag).expect("inserted above");
    // `decode_histogram` bounds every value within `all`'s range: adding cannot fail.
    all.add(h)
        .map_err(|e| LineError::Histogram(HistogramError::Counts(format!("{e:?}"))))
}

/// What `framerec stats DIR` reports: the runs of every log, overall and per interval.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub logs: Vec<PathBuf>,
    pub runs: Vec<RunSummary>,
    /// Lines skipped as unreadable, as `file:line: why`.
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
    /// Reads the interval logs at `path` (a file, or every `.hlog` in a directory), and every
    /// interval's histograms merged by tag.
    pub fn read(path: &Path) -> io::Result<(Report, ByTag)> {
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
        let mut overall = ByTag::new();
        for log in &logs {
            let (r, d) = read_log(log, &mut overall)?;
            runs.extend(r);
            damage.extend(d.iter().map(Damage::to_string));
        }
        runs.sort_by(|a, b| a.start.total_cmp(&b.start));
        let origin = runs.first().map_or(0.0, |r| r.start);
        let mut intervals = Vec::new();
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
                    .fold(0u64, |sum, (_, v)| sum.saturating_add(*v));
                intervals.push(IntervalSummary {
                    start_s: iv.start - origin,
                    length_s: iv.length,
                    received: delta("received"),
                    written: delta("written"),
                    dropped: iv.dropped_total().saturating_sub(dropped_before),
                    histograms: iv.histograms.clone(),
                });
                if !iv.counters.is_empty() {
                    prev = iv.counters.clone();
                }
            }
        }
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
        Ok((report, overall))
    }
}

#[cfg(test)]
mod tests {

    /// Found by the fuzzer: counters in a crafted log overflowed the drop total (a panic in
    /// debug builds, a wrapped total otherwise).
    #[test]
    fn crafted_drop_counters_saturate() {
        let iv = Interval {
            start: 0.0,
            length: 1.0,
            histograms: BTreeMap::new(),
            counters: [
                ("dropped.lost".to_string(), u64::MAX),
                ("dropped.io_error".to_string(), 5),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(iv.dropped_total(), u64::MAX);
    }

    use super::*;
    use crate::observe::{Counters, record};

    fn snapshot(received: u64) -> Snapshot {
        let tally = crate::ledger::Tally {
            received_frames: received,
            written_frames: received,
            ..Default::default()
        };
        Snapshot::take(
            &Counters::default(),
            &tally,
            &Histograms::default(),
            1.0,
            None,
        )
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

        let mut merged = ByTag::new();
        let (runs, damage) = read_log(&path, &mut merged).unwrap();
        assert!(damage.is_empty(), "{damage:?}");
        assert_eq!(merged["write"].len(), 101);
        assert_eq!(merged["write"].max(), h_max(5_000_000));
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(run.ended.as_deref(), Some("frame_limit"));
        assert_eq!(run.intervals.len(), 2);
        let first = &run.intervals[0].histograms["write"];
        assert_eq!(first.count, 100);
        assert_eq!(first.max, h_max(100_000));
        assert_eq!(run.intervals[1].histograms["write"].count, 1);
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
            let _ = read_log(&path, &mut ByTag::new()).unwrap();
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
            let _ = read_log(&path, &mut ByTag::new()).unwrap();
        }
    }

    /// A V2 histogram header as HdrHistogram encodes it, with no counts after it.
    fn v2_header(payload: u32, digits: u32, lowest: u64, highest: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&V2_COOKIE.to_be_bytes());
        b.extend_from_slice(&payload.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&digits.to_be_bytes());
        b.extend_from_slice(&lowest.to_be_bytes());
        b.extend_from_slice(&highest.to_be_bytes());
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b
    }

    /// `v2` deflated behind the compressed cookie, in base64: what an interval line carries.
    pub(crate) fn compressed_base64(v2: &[u8]) -> String {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(v2).unwrap();
        let z = z.finish().unwrap();
        let mut b = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
        b.extend_from_slice(&u32::try_from(z.len()).unwrap().to_be_bytes());
        b.extend_from_slice(&z);
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    #[test]
    fn a_histogram_claiming_a_huge_payload_is_refused_before_allocating() {
        // What the deserializer would resize its buffer to: 4 GB.
        let header = v2_header(u32::MAX - 15, 3, 1, HIGHEST_TRACKABLE);
        let claimed = u32::MAX - 15;
        let want = HistogramError::PayloadLength {
            claimed,
            max: MAX_PAYLOAD_BYTES,
        };
        assert_eq!(
            decode_histogram(&compressed_base64(&header)).unwrap_err(),
            want
        );
        let plain = base64::engine::general_purpose::STANDARD.encode(&header);
        assert_eq!(decode_histogram(&plain).unwrap_err(), want);
        // The whole 216-byte line, as `framerec stats` reads it.
        let line = format!("Tag=write,0.000,1.000,0.0,{}", compressed_base64(&header));
        let (runs, damage) = parse_log(&line, Path::new("x.hlog"), &mut ByTag::new());
        assert!(runs.is_empty());
        let [Damage::BadLine { line: 1, why, .. }] = &damage[..] else {
            panic!("{damage:?}")
        };
        assert_eq!(why, &LineError::Histogram(want));
    }

    #[test]
    fn a_histogram_wider_or_finer_than_framerecs_is_refused() {
        // 5 digits over the widest range: a counts array of gigabytes per line.
        let b64 = compressed_base64(&v2_header(0, 5, 1, u64::MAX / 2));
        assert_eq!(
            decode_histogram(&b64).unwrap_err(),
            HistogramError::SignificantDigits {
                claimed: 5,
                max: SIGNIFICANT_DIGITS
            }
        );
        let b64 = compressed_base64(&v2_header(0, 3, 1, u64::MAX / 2));
        assert!(
            matches!(
                decode_histogram(&b64),
                Err(HistogramError::Range { highest, .. }) if highest == u64::MAX / 2
            ),
            "{:?}",
            decode_histogram(&b64)
        );
        let b64 = compressed_base64(&v2_header(0, 3, 0, 1000));
        assert!(matches!(
            decode_histogram(&b64),
            Err(HistogramError::Range { lowest: 0, .. })
        ));
        // The compressed length claims more bytes than the line holds.
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(compressed_base64(&v2_header(0, 3, 1, 1000)))
            .unwrap();
        raw[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(matches!(
            decode_histogram(&b64),
            Err(HistogramError::CompressedLength {
                claimed: u32::MAX,
                ..
            })
        ));
        let b64 =
            base64::engine::general_purpose::STANDARD.encode([0x1c, 0x84, 0x93, 0x03, 0, 0, 0, 0]);
        assert_eq!(
            decode_histogram(&b64).unwrap_err(),
            HistogramError::Cookie(0x1c84_9303)
        );
    }

    #[test]
    fn framerecs_own_histograms_decode_at_the_bounds() {
        use hdrhistogram::serialization::Serializer as _;
        // Every bucket in use with a large, random count: the longest payload framerec's
        // histograms can produce (8-byte varints that hardly compress).
        let mut h = crate::observe::Histograms::default().write_latency_ns;
        let (mut v, mut x) = (1u64, 0x9e37_79b9_7f4a_7c15u64);
        while v <= HIGHEST_TRACKABLE {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h.record_n(v, (1 << 47) | (x >> 17)).unwrap();
            v = h.next_non_equivalent(v);
        }
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&h, &mut bytes)
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert!(b64.len() < MAX_LINE_BYTES, "{}", b64.len());
        eprintln!("largest histogram: {} base64 bytes", b64.len());
        let back = decode_histogram(&b64).unwrap();
        assert_eq!(back, h);
    }

    #[test]
    fn tags_past_the_bound_are_refused_not_merged() {
        let b64 = compressed_base64(&v2_header(0, 3, 1, HIGHEST_TRACKABLE));
        let log: String = (0..MAX_TAGS + 5)
            .map(|i| format!("Tag=t{i},0.000,1.000,0.0,{b64}\n"))
            .collect();
        let mut merged = ByTag::new();
        let (runs, damage) = parse_log(&log, Path::new("x.hlog"), &mut merged);
        assert_eq!(merged.len(), MAX_TAGS);
        assert_eq!(runs[0].intervals[0].histograms.len(), MAX_TAGS);
        assert_eq!(damage.len(), 5);
        assert!(damage.iter().all(|d| matches!(
            d,
            Damage::BadLine {
                why: LineError::TooManyTags { max: MAX_TAGS },
                ..
            }
        )));
    }

    #[test]
    fn an_overlong_line_is_skipped_unread_and_the_rest_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
        let mut h = Histograms::default();
        record(&mut h.write_latency_ns, 1000);
        w.write_interval(&h, &snapshot(1)).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"Tag=write,1.000,1.000,5.0,").unwrap();
        f.write_all(&vec![b'A'; 3 * MAX_LINE_BYTES]).unwrap();
        f.write_all(b"\n#framerec-end reason=done\n").unwrap();
        let (runs, damage) = read_log(&path, &mut ByTag::new()).unwrap();
        assert_eq!(runs[0].intervals.len(), 1);
        assert_eq!(runs[0].ended.as_deref(), Some("done"));
        let [Damage::BadLine { why, .. }] = &damage[..] else {
            panic!("{damage:?}")
        };
        assert_eq!(
            why,
            &LineError::TooLong {
                max: MAX_LINE_BYTES
            }
        );
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
        let (runs, damage) = read_log(&path, &mut ByTag::new()).unwrap();
        assert_eq!(runs[0].intervals.len(), 1);
        assert_eq!(runs[0].ended, None);
        assert_eq!(damage.len(), 1, "{damage:?}");
    }
}
