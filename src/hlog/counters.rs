//! The `#framerec-counters` line of an interval log: the cumulative counters at an interval's
//! end, written and read here so that both sides agree on its keys.
//!
//! ```text
//! #framerec-counters t=10.000 received=300 written=300 queued=0 in_writers=0 durable=299
//!     dropped.<reason>=N ...
//!     stream.<name>.received=N stream.<name>.written=N stream.<name>.dropped.<reason>=N ...
//! ```
//!
//! (one line). The `stream.` keys come only when the recording has more than one stream, every
//! drop reason listed for each; a stream's name is written with whitespace, `=`, `%` and
//! control characters as `%XX` (its UTF-8 bytes), so any name reads back as it was. Logs
//! written before the per-stream keys read as before, with no streams.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::observe::Snapshot;

use super::COUNTERS;

/// The most keys a reader takes from one counters line (framerec writes 6 + 10 reasons, and
/// 12 per stream for at most 16 streams): a crafted line with more is refused, not stored.
pub const MAX_COUNTER_KEYS: usize = 1024;
/// The most streams a reader takes from one counters line (framerec records at most 16).
pub const MAX_LOG_STREAMS: usize = 64;

const STREAM: &str = "stream.";
const RECEIVED: &str = ".received";
const WRITTEN: &str = ".written";
const DROPPED: &str = ".dropped.";

/// One stream's cumulative counters at an interval's end, as its log records them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounters {
    pub name: String,
    pub received: u64,
    pub written: u64,
    /// By reason.
    pub dropped: BTreeMap<String, u64>,
}

impl StreamCounters {
    /// Saturating: a crafted log's counters must not overflow the sum.
    pub fn dropped_total(&self) -> u64 {
        self.dropped
            .values()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
}

/// The counters line of snapshot `s` at `t_s` seconds from the log's start, with its newline.
pub(super) fn counters_line(t_s: f64, s: &Snapshot) -> String {
    let mut line = format!(
        "{COUNTERS}t={t_s:.3} received={} written={} queued={} in_writers={} durable={}",
        s.received_frames,
        s.written_frames,
        s.queue_depth,
        s.frames_in_writers,
        s.durable_seq.map_or("none".into(), |d| d.to_string())
    );
    for (reason, n) in &s.dropped {
        let _ = write!(line, " dropped.{reason}={n}");
    }
    if s.streams.len() > 1 {
        for st in &s.streams {
            let name = escape(&st.name);
            let _ = write!(
                line,
                " {STREAM}{name}{RECEIVED}={} {STREAM}{name}{WRITTEN}={}",
                st.received_frames, st.written_frames
            );
            for (reason, n) in &st.dropped {
                let _ = write!(line, " {STREAM}{name}{DROPPED}{reason}={n}");
            }
        }
    }
    line.push('\n');
    line
}

/// The counters of a line after its `#framerec-counters ` prefix: the totals by key, and the
/// streams in the order the line names them. None when a field is not `key=value`, a value
/// is not a count, or the line has more keys or streams than a log framerec writes could.
/// A `stream.` key of a form this reader does not know is skipped.
pub(super) fn parse_counters(s: &str) -> Option<(BTreeMap<String, u64>, Vec<StreamCounters>)> {
    let mut totals = BTreeMap::new();
    let mut streams: Vec<StreamCounters> = Vec::new();
    for (i, field) in s.split_whitespace().enumerate() {
        if i >= MAX_COUNTER_KEYS {
            return None;
        }
        let (k, v) = field.split_once('=')?;
        if k == "t" || v == "none" {
            continue;
        }
        let n: u64 = v.parse().ok()?;
        let Some(rest) = k.strip_prefix(STREAM) else {
            totals.insert(k.to_string(), n);
            continue;
        };
        let Some((name, key)) = stream_key(rest) else {
            continue;
        };
        let at = match streams.iter().position(|st| st.name == name) {
            Some(at) => at,
            None if streams.len() < MAX_LOG_STREAMS => {
                streams.push(StreamCounters {
                    name,
                    ..StreamCounters::default()
                });
                streams.len() - 1
            }
            None => return None,
        };
        let st = &mut streams[at];
        match key {
            StreamKey::Received => st.received = n,
            StreamKey::Written => st.written = n,
            StreamKey::Dropped(reason) => {
                st.dropped.insert(reason.to_string(), n);
            }
        }
    }
    Some((totals, streams))
}

/// Which of a stream's counters a key names.
enum StreamKey<'a> {
    Received,
    Written,
    Dropped(&'a str),
}

/// `<name>.received`, `<name>.written` or `<name>.dropped.<reason>` (after `stream.`) to the
/// stream's name, unescaped, and the counter; None for any other form, or a name that does
/// not unescape to UTF-8. Read from the right, as a reason has no `.` and a name may.
fn stream_key(rest: &str) -> Option<(String, StreamKey<'_>)> {
    let (name, key) = if let Some(name) = rest.strip_suffix(RECEIVED) {
        (name, StreamKey::Received)
    } else if let Some(name) = rest.strip_suffix(WRITTEN) {
        (name, StreamKey::Written)
    } else {
        let at = rest.rfind(DROPPED)?;
        let reason = &rest[at + DROPPED.len()..];
        if reason.is_empty() || reason.contains('.') {
            return None;
        }
        (&rest[..at], StreamKey::Dropped(reason))
    };
    if name.is_empty() {
        return None;
    }
    Some((unescape(name)?, key))
}

/// Whether `c` cannot stand in a key as it is.
fn needs_escape(c: char) -> bool {
    c.is_whitespace() || c.is_control() || c == '=' || c == '%'
}

/// `name` with every character that cannot stand in a key as `%XX` per UTF-8 byte.
fn escape(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.chars().any(needs_escape) {
        return name.into();
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        if needs_escape(c) {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// [`escape`] undone; None when a `%` is not followed by two hex digits or the bytes are not
/// UTF-8.
fn unescape(key: &str) -> Option<String> {
    if !key.contains('%') {
        return Some(key.to_string());
    }
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = key.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
