//! Reading interval logs back: runs and intervals a line at a time, in bounded memory, with
//! every bad line skipped and reported, and each histogram merged by tag into a [`ByTag`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::counters::{StreamCounters, parse_counters};
use super::decode::{HistogramError, decode_histogram};
use super::{ByTag, COUNTERS, END};
use crate::observe::{HIGHEST_TRACKABLE, Percentiles, SIGNIFICANT_DIGITS};

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
    /// Each stream's cumulative counters at the interval's end, when the log has them (a
    /// recording of several streams, logged by a framerec that writes them).
    pub streams: Vec<StreamCounters>,
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
                (Some((totals, streams)), Some(interval)) => {
                    interval.counters = totals;
                    interval.streams = streams;
                }
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
                    streams: Vec::new(),
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
