//! Recovering a fakenect-layout recording after a crash: what `framerec recover DIR` does to a
//! directory [`super::is_layout`] accepts.
//!
//! A crash can leave an `INDEX.txt` whose last line is cut short, frame files no line names
//! (renamed, not yet indexed: orphans), hidden `.NAME.tmp` files (a frame being written), and,
//! when files were lost or damaged afterwards, lines naming a missing or cut-short file. The
//! repair keeps every complete frame:
//! - a cut last line is removed;
//! - a line naming a file that is not whole is removed and its frame counted `lost` in
//!   `DROPS.txt` under its derived sequence number;
//! - a whole `.NAME.tmp` is made durable and renamed to `NAME`; one that is not whole (a
//!   frame never completed) is removed;
//! - whole orphans later than the last frame named are appended in time order (names are
//!   unique, increasing host times in receive order, so that is where they belong); others are
//!   left in place and reported (replays ignore them).
//!
//! # Crash safety
//! Each step leaves a directory `verify` accepts and a replay can read, and running `recover`
//! again finishes the work: temporary files are fsync'd and renamed (then the directory
//! fsync'd) before anything names them; the new `INDEX.txt` is written to `.INDEX.txt.tmp`,
//! fsync'd and renamed over the old one, then the directory fsync'd; only then are the lost
//! frames appended to `DROPS.txt` (fdatasync'd). A crash between those two leaves the lost
//! frames unnamed, never named twice.

use std::collections::HashSet;
use std::io::{self, Write as _};
use std::path::Path;

use super::{Dump, DumpError, DumpFrame, DumpStream, FileState, IndexEnd, inspect_file, time_ns};
use crate::frame::DropReason;
use crate::io::sync_dir;
use crate::sink::fakenect::{DROPS, INDEX};
use crate::source::KinectStream;
use crate::source::fakenect::index::parse_line;

/// Where a new `INDEX.txt` is written before it replaces the old one.
pub const INDEX_TMP: &str = ".INDEX.txt.tmp";

/// A frame whose line was removed: its file is missing or not whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub stream: KinectStream,
    pub seq: u64,
    pub file: String,
    pub why: FileState,
}

/// A file recover does not touch, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub file: String,
    pub why: String,
}

/// What recovering a fakenect-layout recording does (or did).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Plan {
    /// Frames `INDEX.txt` names that stay.
    pub kept: usize,
    /// The cut last line removed: (line, bytes).
    pub cut: Option<(usize, usize)>,
    /// The last line lacked its newline (it is written with one).
    pub unterminated: bool,
    pub lost: Vec<Lost>,
    /// `.NAME.tmp` files renamed to `NAME` (and appended).
    pub renamed: Vec<String>,
    /// Frame files appended to `INDEX.txt`, in time order.
    pub appended: Vec<String>,
    /// Temporary files of frames never completed, removed.
    pub removed: Vec<Left>,
    pub left: Vec<Left>,
    /// A `.INDEX.txt.tmp` an interrupted recover left, removed.
    pub stale_index_tmp: bool,
    /// The new `INDEX.txt`.
    index: String,
}

impl Plan {
    fn rewrites_index(&self) -> bool {
        self.cut.is_some()
            || self.unterminated
            || !self.lost.is_empty()
            || !self.appended.is_empty()
    }

    /// True when the recording needs no change.
    pub fn is_empty(&self) -> bool {
        !self.rewrites_index()
            && self.renamed.is_empty()
            && self.removed.is_empty()
            && !self.stale_index_tmp
    }
}

/// A file beside those `INDEX.txt` names that looks like a frame: an orphan, or a hidden
/// temporary file (`.NAME.tmp`) of one.
#[derive(Debug, Clone)]
struct Stray {
    /// The file's name in the directory.
    file: String,
    /// The frame's name (the same for an orphan).
    name: String,
    tmp: bool,
    kind: KinectStream,
    time_ns: u64,
}

/// The strays of `dir`: files not named by `named` whose name is a frame's (or a hidden
/// temporary one's), sorted by time, then name.
fn strays(dir: &Path, named: &HashSet<&str>) -> Result<(Vec<Stray>, bool), DumpError> {
    let io = |source| DumpError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut stale = false;
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let Ok(file) = e.file_name().into_string() else {
            continue;
        };
        if file == INDEX_TMP {
            stale = true;
            continue;
        }
        if named.contains(file.as_str()) {
            continue;
        }
        let (name, tmp) = match file.strip_prefix('.').and_then(|f| f.strip_suffix(".tmp")) {
            Some(inner) => (inner.to_string(), true),
            None => (file.clone(), false),
        };
        let Ok((kind, time_s, _)) = parse_line(&name) else {
            continue;
        };
        out.push(Stray {
            file,
            name,
            tmp,
            kind,
            time_ns: time_ns(time_s),
        });
    }
    out.sort_by(|a, b| (a.time_ns, &a.name, a.tmp).cmp(&(b.time_ns, &b.name, b.tmp)));
    Ok((out, stale))
}

/// Works out what recovering `dir` takes; changes nothing.
pub fn plan(dir: &Path) -> Result<Plan, DumpError> {
    let dump = Dump::open(dir)?;
    let named: HashSet<&str> = dump.frames.iter().map(|f| f.file.as_str()).collect();
    let (strays, stale) = strays(dir, &named)?;
    let mut p = Plan {
        stale_index_tmp: stale,
        ..Plan::default()
    };
    match dump.end {
        IndexEnd::Cut { line, bytes } => p.cut = Some((line, bytes)),
        IndexEnd::Unterminated => p.unterminated = true,
        IndexEnd::Whole => {}
    }
    let mut last_ns = None;
    for f in &dump.frames {
        if f.is_whole() {
            p.kept += 1;
            p.index.push_str(&f.file);
            p.index.push('\n');
            last_ns = Some(last_ns.map_or(f.time_ns, |t: u64| t.max(f.time_ns)));
        } else {
            p.lost.push(lost(f));
        }
    }
    let mut streams = dump.streams.clone();
    for s in strays {
        place(dir, s, &mut streams, &named, &mut last_ns, &mut p);
    }
    Ok(p)
}

fn lost(f: &DumpFrame) -> Lost {
    Lost {
        stream: f.kind,
        seq: f.seq,
        file: f.file.clone(),
        why: f.state.clone(),
    }
}

/// Decides what becomes of stray `s`: appended (renamed first if a temporary file), removed
/// (a temporary file not whole) or left. `last_ns` is the time of the last frame named.
fn place(
    dir: &Path,
    s: Stray,
    streams: &mut Vec<DumpStream>,
    named: &HashSet<&str>,
    last_ns: &mut Option<u64>,
    p: &mut Plan,
) {
    let known = streams.iter().find(|k| k.kind == s.kind).cloned();
    let i = inspect_file(&dir.join(&s.file), s.kind, known.as_ref());
    let leave = |p: &mut Plan, why: String| {
        p.left.push(Left {
            file: s.file.clone(),
            why,
        })
    };
    if i.state != FileState::Whole {
        if s.tmp {
            p.removed.push(Left {
                file: s.file.clone(),
                why: format!("a frame never completed ({})", i.state),
            });
        } else {
            leave(p, format!("not a whole frame ({})", i.state));
        }
        return;
    }
    if s.tmp && (named.contains(s.name.as_str()) || dir.join(&s.name).exists()) {
        leave(
            p,
            format!(
                "a temporary copy of {}, which INDEX.txt names or exists",
                s.name
            ),
        );
        return;
    }
    if last_ns.is_some_and(|t| s.time_ns <= t) {
        leave(
            p,
            "not later than the last frame INDEX.txt names: its place in the receive order is unknown"
                .into(),
        );
        return;
    }
    if known.is_none() {
        let (width, height) = i.dims.unwrap_or((0, 0));
        streams.push(DumpStream {
            kind: s.kind,
            width,
            height,
        });
    }
    *last_ns = Some(s.time_ns);
    if s.tmp {
        p.renamed.push(s.file.clone());
    }
    p.index.push_str(&s.name);
    p.index.push('\n');
    p.appended.push(s.name);
}

/// `DROPS.txt` lines naming `lost` as `lost`, consecutive numbers of a stream as one range.
pub fn lost_lines(lost: &[Lost]) -> String {
    let mut out = String::new();
    for kind in super::KINDS {
        let mut run: Option<(u64, u64)> = None;
        let mut flush = |run: Option<(u64, u64)>| {
            if let Some((a, b)) = run {
                out.push_str(&format!(
                    "{a} {b} {} {}\n",
                    DropReason::Lost.as_str(),
                    kind.as_str()
                ));
            }
        };
        for l in lost.iter().filter(|l| l.stream == kind) {
            run = match run {
                Some((a, b)) if b.checked_add(1) == Some(l.seq) => Some((a, l.seq)),
                other => {
                    flush(other);
                    Some((l.seq, l.seq))
                }
            };
        }
        flush(run);
    }
    out
}

/// Carries out `plan` on `dir`, crash-safe at every step (see the module doc).
pub fn apply(dir: &Path, plan: &Plan) -> io::Result<()> {
    if plan.stale_index_tmp {
        remove_if_there(&dir.join(INDEX_TMP))?;
    }
    for tmp in &plan.renamed {
        let name = &tmp[1..tmp.len() - ".tmp".len()];
        std::fs::File::open(dir.join(tmp))?.sync_all()?;
        std::fs::rename(dir.join(tmp), dir.join(name))?;
    }
    if plan.rewrites_index() {
        // The files appended are made durable before a line names them.
        for name in &plan.appended {
            std::fs::File::open(dir.join(name))?.sync_all()?;
        }
        sync_dir(dir)?;
        let tmp = dir.join(INDEX_TMP);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(plan.index.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join(INDEX))?;
        sync_dir(dir)?;
    }
    if !plan.lost.is_empty() {
        append_drops(dir, &lost_lines(&plan.lost))?;
    }
    for r in &plan.removed {
        remove_if_there(&dir.join(&r.file))?;
    }
    sync_dir(dir)
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Appends `lines` to `DROPS.txt` (created if absent), after a newline if a crash left its last
/// line without one (that line stays unread, as before), and makes them durable.
fn append_drops(dir: &Path, lines: &str) -> io::Result<()> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let path = dir.join(DROPS);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)?;
    let len = f.metadata()?.len();
    let mut text = String::new();
    if len > 0 {
        let mut last = [0u8];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            text.push('\n');
        }
    }
    text.push_str(lines);
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_frames_become_ranges_per_stream() {
        let l = |stream, seq| Lost {
            stream,
            seq,
            file: String::new(),
            why: FileState::Missing,
        };
        let lost = [
            l(KinectStream::Depth, 3),
            l(KinectStream::Color, 3),
            l(KinectStream::Depth, 4),
            l(KinectStream::Depth, 9),
            l(KinectStream::Depth, u64::MAX),
        ];
        assert_eq!(
            lost_lines(&lost),
            format!(
                "3 4 lost depth\n9 9 lost depth\n{0} {0} lost depth\n3 3 lost color\n",
                u64::MAX
            )
        );
    }
}
