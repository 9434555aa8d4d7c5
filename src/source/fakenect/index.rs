//! Parsing a fakenect dump: the lines of `INDEX.txt` and the one-line headers of its image
//! files. Every read is bounded: a line by [`MAX_INDEX_LINE`], a header by [`MAX_HEADER`].

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::super::{KinectStream, SourceError};

/// The longest `INDEX.txt` line: a file name, at most `NAME_MAX` bytes on Linux.
pub const MAX_INDEX_LINE: usize = 255;
/// The most characters of input an error message quotes.
pub const MAX_QUOTED: usize = 64;
/// The longest image header line read (`P6 <width> <height> 255\n` is far shorter).
const MAX_HEADER: usize = 64;
/// The latest time an INDEX.txt entry may carry, in seconds since the epoch.
const MAX_TIME_S: f64 = 1e10;

/// One line of `INDEX.txt`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// 1-based line number, for errors.
    pub line: usize,
    pub file: String,
    pub kind: KinectStream,
    pub time_s: f64,
    pub timestamp: u32,
}

/// `s` quoted for an error message, cut at [`MAX_QUOTED`] characters.
pub(crate) fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
    }
}

/// Why a dump cannot be replayed.
pub(super) fn bad(dir: &Path, what: impl std::fmt::Display) -> SourceError {
    SourceError::Dump(format!("{}: {what}", dir.display()))
}

/// Parses `INDEX.txt`: every entry, of every kind, in order.
pub(crate) fn read_index(dir: &Path) -> Result<Vec<Entry>, SourceError> {
    read_lines(dir, false).map(|read| read.entries)
}

/// How `INDEX.txt` ends, as [`read_index_torn`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// With a newline (or empty).
    Whole,
    /// Its last line names a frame but lacks its newline (it is among the entries).
    Unterminated,
    /// Its last line (1-based `line`, `bytes` long, no newline) is no entry: an append cut
    /// short by a crash.
    Cut { line: usize, bytes: usize },
}

/// `INDEX.txt` as a crash may have left it: its entries and how it ends.
#[derive(Debug, Clone)]
pub(crate) struct IndexRead {
    pub entries: Vec<Entry>,
    pub tail: Tail,
}

/// Parses `INDEX.txt` as [`read_index`] does, except that a last line without a newline that is
/// not an entry (an append a crash cut short) ends the read instead of failing it.
pub(crate) fn read_index_torn(dir: &Path) -> Result<IndexRead, SourceError> {
    read_lines(dir, true)
}

fn read_lines(dir: &Path, torn_ok: bool) -> Result<IndexRead, SourceError> {
    let path = dir.join("INDEX.txt");
    let file = File::open(&path).map_err(|e| bad(dir, format!("cannot open INDEX.txt: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut raw = Vec::new();
    let mut n = 0;
    let mut tail = Tail::Whole;
    loop {
        raw.clear();
        // At most one byte past the longest line, so a file with no newline (or /dev/zero)
        // costs no more than that.
        let read = (&mut reader)
            .take(MAX_INDEX_LINE as u64 + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|e| bad(dir, format!("reading INDEX.txt: {e}")))?;
        if read == 0 {
            break;
        }
        n += 1;
        let at = |what: String| bad(dir, format!("INDEX.txt:{n}: {what}"));
        let terminated = raw.last() == Some(&b'\n');
        if terminated {
            raw.pop();
        } else if raw.len() > MAX_INDEX_LINE {
            return Err(at(format!(
                "a line longer than {MAX_INDEX_LINE} bytes, the longest a file name can be"
            )));
        }
        match parse_raw(&raw) {
            Ok((line, (kind, time_s, timestamp))) => {
                if !terminated {
                    tail = Tail::Unterminated;
                }
                entries.push(Entry {
                    line: n,
                    file: line.to_string(),
                    kind,
                    time_s,
                    timestamp,
                });
            }
            // Without a newline this is the last line: cut short by a crash.
            Err(_) if torn_ok && !terminated => {
                tail = Tail::Cut {
                    line: n,
                    bytes: raw.len(),
                };
                break;
            }
            Err(what) => return Err(at(what)),
        }
    }
    Ok(IndexRead { entries, tail })
}

/// One line of `INDEX.txt` without its newline: the line and its entry.
fn parse_raw(raw: &[u8]) -> Result<(&str, (KinectStream, f64, u32)), String> {
    if raw.last() == Some(&b'\r') {
        return Err("CRLF line ending (libfreenect reads LF-terminated lines only)".into());
    }
    let line = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    if line.trim().is_empty() {
        return Err("blank line".into());
    }
    Ok((line, parse_line(line)?))
}

/// The index line prefix and file extension of a stream's files.
pub fn file_kind(kind: KinectStream) -> (&'static str, &'static str) {
    match kind {
        KinectStream::Depth => ("d", "pgm"),
        KinectStream::Color => ("r", "ppm"),
        KinectStream::Accel => ("a", "dump"),
    }
}

/// `d-<time>-<timestamp>.pgm` (or `r-...ppm`, `a-...dump`) to (stream, time, timestamp).
pub(crate) fn parse_line(line: &str) -> Result<(KinectStream, f64, u32), String> {
    let quote = quoted(line);
    if line.contains('/') || line.contains('\\') || line.starts_with('.') {
        return Err(format!("{quote} is not a file name in the dump directory"));
    }
    let mut parts = line.splitn(3, '-');
    let kind = parts.next().unwrap_or_default();
    let (time, rest) = (parts.next(), parts.next());
    let (Some(time), Some(rest)) = (time, rest) else {
        return Err(format!(
            "{quote} is not <kind>-<time>-<timestamp>.<ext> (e.g. d-1795470472.528635-0.pgm)"
        ));
    };
    let (timestamp, ext) = rest
        .split_once('.')
        .ok_or_else(|| format!("{quote} has no file extension"))?;
    let kind = [
        KinectStream::Depth,
        KinectStream::Color,
        KinectStream::Accel,
    ]
    .into_iter()
    .find(|k| file_kind(*k) == (kind, ext))
    .ok_or_else(|| format!("{quote}: expected d-...pgm, r-...ppm or a-...dump"))?;
    let time: f64 = time
        .parse()
        .ok()
        // Seconds since the epoch, as libfreenect's recorder writes them: up to 1e10 (the year
        // 2286); beyond that a time is no clock's, and would overflow the pacing.
        .filter(|t: &f64| t.is_finite() && (0.0..=MAX_TIME_S).contains(t))
        .ok_or_else(|| {
            format!(
                "{quote}: the time {} is not a number of seconds",
                quoted(time)
            )
        })?;
    let timestamp: u32 = timestamp.parse().map_err(|_| {
        format!(
            "{quote}: the device timestamp {} is not a 32-bit unsigned number",
            quoted(timestamp)
        )
    })?;
    Ok((kind, time, timestamp))
}

/// The header line an image file of `kind` starts with: (magic, maxval).
pub(super) fn header_form(kind: KinectStream) -> (&'static str, &'static str) {
    match kind {
        KinectStream::Color => ("P6", "255"),
        _ => ("P5", "65535"),
    }
}

/// Reads an image file's header line (`P5 <w> <h> 65535` for depth, `P6 <w> <h> 255` for
/// colour): (width, height, header length).
pub(crate) fn read_header(
    file: &mut File,
    name: &str,
    kind: KinectStream,
) -> Result<(u32, u32, usize), String> {
    let (magic, maxval) = header_form(kind);
    let mut head = [0u8; MAX_HEADER];
    let mut got = 0;
    while got < head.len() {
        let n = file
            .read(&mut head[got..])
            .map_err(|e| format!("{name}: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
        if head[..got].contains(&b'\n') {
            break;
        }
    }
    let end = head[..got]
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| format!("{name}: no `{magic} <width> <height> {maxval}` header line"))?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| format!("{name}: bad header"))?;
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let dims = |s: &str| s.parse::<u32>().ok().filter(|v| (1..=8192).contains(v));
    match fields.as_slice() {
        [m, w, h, v] if *m == magic && *v == maxval => match (dims(w), dims(h)) {
            (Some(w), Some(h)) => Ok((w, h, end + 1)),
            _ => Err(format!("{name}: bad size in header {text:?}")),
        },
        _ => Err(format!(
            "{name}: header {text:?} is not `{magic} <width> <height> {maxval}`"
        )),
    }
}
