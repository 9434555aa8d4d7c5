//! Repairing a recording directory after a crash, and finding where a new run resumes it.
//! File I/O around [`segment::recover_to`]: every damaged or unfinished segment is rebuilt
//! beside itself (read a chunk at a time, written as it is rebuilt: bounded memory whatever its
//! size), made durable, and swapped in; the original is kept aside as `NAME.mcap.damaged`
//! unless asked otherwise.
//!
//! # Crash safety
//! A repair is a sequence of steps each of which leaves a state the next repair finishes, so a
//! crash at any point loses nothing:
//! 1. the rebuilt segment is written to `NAME.mcap.recovering` and fsync'd (a crash leaves the
//!    original in place and a side file the next repair deletes);
//! 2. the original gets a second name, `NAME.mcap.damaged` (a hard link; a copy where the
//!    filesystem has none), and the directory is fsync'd (a crash leaves the original in place
//!    under both names; the next repair reuses that name rather than making another);
//! 3. `NAME.mcap.recovering` is renamed over `NAME.mcap` (atomic) and the directory fsync'd.
//!
//! At no point is `NAME.mcap` missing. Earlier versions renamed the original away first: a
//! repair that finds `NAME.mcap.recovering` with no `NAME.mcap` finishes that swap (the
//! rebuilt file was durable before the renames) or puts the original back.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use crate::segment::{
    self, FileSource, LostRanges, RecoverError, Recovered, SegmentContents, recover_to,
    recoverable, subtract, verify_file, verify_recording,
};

/// What happened to one segment.
#[derive(Debug)]
pub enum Outcome {
    /// Rebuilt; `aside` is where the original went (None: deleted).
    Recovered {
        path: PathBuf,
        aside: Option<PathBuf>,
        recovered: Box<Recovered>,
    },
    /// Held no intact chunk (typically a segment opened ahead of a rotation, killed before its
    /// head was written): moved aside or deleted.
    Emptied {
        path: PathBuf,
        aside: Option<PathBuf>,
        why: RecoverError,
    },
    /// Could not be rebuilt (its head is damaged but it holds intact chunks); left as it is.
    Failed { path: PathBuf, why: RecoverError },
}

/// Suffix of the side file a repair writes the rebuilt segment to.
pub const RECOVERING_SUFFIX: &str = ".recovering";
/// Suffix of the name a repaired segment's original is kept under (then `.1`, `.2`, ...).
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// The names a kept original of `path` may take, in order: `NAME.damaged`, `NAME.damaged.1`, ...
fn aside_names(path: &Path) -> impl Iterator<Item = PathBuf> {
    let base = format!("{}{DAMAGED_SUFFIX}", path.display());
    std::iter::once(PathBuf::from(&base))
        .chain((1u64..).map(move |n| PathBuf::from(format!("{base}.{n}"))))
}

/// A name beside `path` that does not exist yet.
fn aside_name(path: &Path) -> PathBuf {
    aside_names(path)
        .find(|c| c.symlink_metadata().is_err())
        .expect("an endless list of names")
}

/// Gives the original at `path` a second name beside it and returns it; `path` keeps it too.
/// A name that already is `path` (same inode: a repair killed after this step) is reused.
fn keep_original(path: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path)?;
    let mut aside = PathBuf::new();
    for candidate in aside_names(path) {
        match candidate.symlink_metadata() {
            Ok(a) if a.file_type().is_file() && (a.dev(), a.ino()) == (m.dev(), m.ino()) => {
                return Ok(candidate);
            }
            Ok(_) => {}
            Err(_) => {
                aside = candidate;
                break;
            }
        }
    }
    match fs::hard_link(path, &aside) {
        Ok(()) => {}
        // No hard links here (some FUSE and network filesystems): a durable copy instead.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EPERM | libc::EOPNOTSUPP | libc::EMLINK | libc::EXDEV)
            ) =>
        {
            let tmp = PathBuf::from(format!("{}.copying", aside.display()));
            fs::copy(path, &tmp)?;
            File::open(&tmp)?.sync_all()?;
            fs::rename(&tmp, &aside)?;
        }
        Err(e) => return Err(e),
    }
    Ok(aside)
}

/// Writes the rebuilt segment (what `write` writes) over `path` crash-safely (see the module
/// doc) and returns what `write` returned and where the original was kept (None: `discard`, it
/// is gone).
fn swap_in<T>(
    path: &Path,
    discard: bool,
    write: impl FnOnce(&mut io::BufWriter<&File>) -> io::Result<T>,
) -> io::Result<(T, Option<PathBuf>)> {
    let tmp = PathBuf::from(format!("{}{RECOVERING_SUFFIX}", path.display()));
    let written = {
        let f = File::create(&tmp)?;
        let mut w = io::BufWriter::new(&f);
        let written = write(&mut w)?;
        io::Write::flush(&mut w)?;
        drop(w);
        f.sync_all()?;
        written
    };
    crate::failpoint::hit("repair-written");
    let aside = if discard {
        None
    } else {
        let aside = keep_original(path)?;
        sync_parent(path)?;
        crate::failpoint::hit("repair-linked");
        Some(aside)
    };
    fs::rename(&tmp, path)?;
    crate::failpoint::hit("repair-renamed");
    sync_parent(path)?;
    Ok((written, aside))
}

/// An I/O error reading `path`, naming it.
fn read_error(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
}

/// The segment a side file of a repair belongs to: `NAME.mcap` for `NAME.mcap.recovering`.
fn recovering_target(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    let target = name.strip_suffix(RECOVERING_SUFFIX)?;
    target
        .ends_with(".mcap")
        .then(|| path.with_file_name(target))
}

/// Finishes or rolls back what an interrupted repair left beside the segments of `paths` (the
/// segments of a directory, or one file): a `NAME.mcap.recovering` beside an existing
/// `NAME.mcap` is deleted (the swap never happened; the original is still in place); one with
/// no `NAME.mcap` is renamed into place if it is an intact segment, else the kept original is
/// put back. Returns the segments it put in place, which a caller must list again.
pub fn finish_interrupted(dir: &Path, only: Option<&Path>) -> io::Result<Vec<PathBuf>> {
    let mut restored = Vec::new();
    let mut side_files = Vec::new();
    match only {
        Some(p) => side_files.push(PathBuf::from(format!("{}{RECOVERING_SUFFIX}", p.display()))),
        None => match fs::read_dir(dir) {
            Ok(entries) => {
                for e in entries {
                    side_files.push(e?.path());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(restored),
            Err(e) => return Err(e),
        },
    }
    for side in side_files {
        let Some(target) = recovering_target(&side) else {
            continue;
        };
        if !side
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_file())
        {
            continue;
        }
        if target.symlink_metadata().is_ok() {
            tracing::info!(file = %side.display(), "removing the side file of an interrupted repair (the segment is still in place)");
            fs::remove_file(&side)?;
            sync_parent(&side)?;
            continue;
        }
        let intact = verify_file(&side).map_err(|e| read_error(&side, e))?.ok();
        let original = PathBuf::from(format!("{}{DAMAGED_SUFFIX}", target.display()));
        if intact {
            tracing::warn!(segment = %target.display(), "finishing an interrupted repair: the rebuilt segment goes into place");
            fs::rename(&side, &target)?;
        } else if original.is_file() {
            tracing::warn!(segment = %target.display(), "rolling back an interrupted repair: the original goes back into place");
            fs::rename(&original, &target)?;
            fs::remove_file(&side)?;
        } else {
            tracing::warn!(segment = %target.display(), "an interrupted repair left only its damaged side file: it goes into place to be repaired");
            fs::rename(&side, &target)?;
        }
        sync_parent(&target)?;
        restored.push(target);
    }
    Ok(restored)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Moves `path` aside (or deletes it) and returns where it went.
fn put_aside(path: &Path, discard: bool) -> io::Result<Option<PathBuf>> {
    if discard {
        fs::remove_file(path)?;
        return Ok(None);
    }
    let aside = aside_name(path);
    fs::rename(path, &aside)?;
    Ok(Some(aside))
}

/// Repairs every segment of `files` (a recording, in order) that does not verify. Frames the
/// recording as a whole is missing are named as lost in the last damaged segment. An empty
/// result means every segment was intact.
pub fn repair(
    files: &[PathBuf],
    starts_at_zero: bool,
    discard_damaged: bool,
) -> io::Result<Vec<Outcome>> {
    repair_with_progress(files, starts_at_zero, discard_damaged, &mut |_| {})
}

/// Every segment of `files` scanned, within one recording's memory budget.
fn scan_all(
    files: &[PathBuf],
    scanned: &mut dyn FnMut(u64),
) -> io::Result<Vec<crate::segment::SegmentReport>> {
    let mut reports = Vec::with_capacity(files.len());
    let mut budget = crate::segment::RecordingBudget::default();
    for f in files {
        let mut r = verify_file(f).map_err(|e| read_error(f, e))?;
        scanned(r.bytes);
        budget.admit(&mut r);
        reports.push(r);
    }
    Ok(reports)
}

/// [`repair`], telling `scanned` the bytes of each segment once it has been scanned (a
/// progress bar's feed).
pub fn repair_with_progress(
    files: &[PathBuf],
    starts_at_zero: bool,
    discard_damaged: bool,
    scanned: &mut dyn FnMut(u64),
) -> io::Result<Vec<Outcome>> {
    let reports = scan_all(files, scanned)?;
    let damaged: Vec<usize> = (0..reports.len()).filter(|i| !reports[*i].ok()).collect();
    if damaged.is_empty() {
        return Ok(Vec::new());
    }
    // The scans of the damaged segments, which their rebuilds follow (a few records per chunk).
    let scans: Vec<SegmentContents> = damaged
        .iter()
        .map(|i| reports[*i].contents.clone())
        .collect();
    let missing = verify_recording(reports, starts_at_zero).missing;
    let empty = Vec::new();
    // The frames missing from the recording are named in the last damaged segment that can be
    // rebuilt (a segment with no intact chunk is put aside, and could not carry the names).
    let carrier = damaged
        .iter()
        .zip(&scans)
        .filter(|(_, c)| recoverable(c).is_ok())
        .map(|(i, _)| *i)
        .next_back();
    let mut outcomes = Vec::new();
    let mut named = LostRanges::new();
    for (&i, scan) in damaged.iter().zip(&scans) {
        let path = &files[i];
        let src = FileSource::open(path).map_err(|e| read_error(path, e))?;
        let also_lost: LostRanges = if Some(i) == carrier {
            missing
                .iter()
                .map(|(name, m)| {
                    let done = named.get(name).unwrap_or(&empty);
                    (name.clone(), subtract(m, done))
                })
                .collect()
        } else {
            LostRanges::new()
        };
        if let Err(why) = recoverable(scan) {
            if !segment::source_has_intact_chunk(&src).map_err(|e| read_error(path, e))? {
                let aside = put_aside(path, discard_damaged)?;
                sync_parent(path)?;
                outcomes.push(Outcome::Emptied {
                    path: path.clone(),
                    aside,
                    why,
                });
            } else {
                outcomes.push(Outcome::Failed {
                    path: path.clone(),
                    why,
                });
            }
            continue;
        }
        let (recovered, aside) = swap_in(path, discard_damaged, |out| {
            // `recoverable` held, so the rebuild itself cannot refuse.
            recover_to(&src, scan, &also_lost, out)?.map_err(io::Error::other)
        })?;
        for st in &recovered.streams {
            named
                .entry(st.name.clone())
                .or_default()
                .extend_from_slice(&st.lost_ranges);
        }
        outcomes.push(Outcome::Recovered {
            path: path.clone(),
            aside,
            recovered: Box::new(recovered),
        });
    }
    Ok(outcomes)
}

/// What `record` does when its directory holds unfinished segments (a crashed run); config
/// `recovery.at-start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AtStart {
    /// Repair them, then continue the recording.
    Recover,
    /// Refuse to record until they are repaired.
    Refuse,
    /// Leave them as they are and continue the recording.
    Leave,
}

/// True when `path` ends with a footer record and the trailing magic (read from its tail only).
pub fn looks_finished(path: &Path) -> io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let tail_len = (segment::RECORD_PREFIX + 20 + segment::MAGIC.len()) as u64;
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len < tail_len + segment::MAGIC.len() as u64 {
        return Ok(false);
    }
    f.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    f.read_exact(&mut tail)?;
    Ok(tail[0] == segment::OP_FOOTER && tail[tail.len() - 8..] == segment::MAGIC)
}

/// The segments a repair at start must look at: every segment from the first unfinished one
/// on, plus the finished one before it (for continuity). Empty when all look finished.
pub fn unfinished_tail(segments: &[(u64, PathBuf)]) -> io::Result<Vec<PathBuf>> {
    let mut first = None;
    for (i, (_, p)) in segments.iter().enumerate() {
        if !looks_finished(p)? {
            first = Some(i);
            break;
        }
    }
    Ok(match first {
        None => Vec::new(),
        Some(i) => segments[i.saturating_sub(1)..]
            .iter()
            .map(|(_, p)| p.clone())
            .collect(),
    })
}

/// Where a new run continues an existing recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub recording_id: String,
    pub next_segment_id: u64,
    /// Per stream name: one past the highest sequence number written or named in a drop notice.
    pub next_seqs: BTreeMap<String, u64>,
}

impl ResumePoint {
    /// Where stream `name` continues its numbering (0 for a stream the recording never had).
    pub fn next_seq_of(&self, name: &str) -> u64 {
        self.next_seqs.get(name).copied().unwrap_or(0)
    }
}

/// What a segment file's intact chunks name: per stream, the highest sequence number (of a
/// frame or in a drop notice), and the names of every stream it has; and its recording id.
struct Highest {
    seqs: BTreeMap<String, u64>,
    streams: Vec<String>,
    recording_id: Option<String>,
}

fn highest_seq(path: &Path) -> io::Result<Highest> {
    let src = FileSource::open(path).map_err(|e| read_error(path, e))?;
    let c = segment::parse_source(&src, &mut |_, _| {}).map_err(|e| read_error(path, e))?;
    let mut seqs = BTreeMap::new();
    for s in &c.streams {
        if let Some(max) = s.frames.max().into_iter().chain(s.max_dropped).max() {
            let e = seqs.entry(s.name.clone()).or_insert(max);
            *e = (*e).max(max);
        }
    }
    Ok(Highest {
        seqs,
        streams: c.streams.iter().map(|s| s.name.clone()).collect(),
        recording_id: c.metadata.get("recording_id").cloned(),
    })
}

/// The resume point of the recording in `dir`, or None when it holds no segment. Reads
/// segments from the newest back until every stream has a frame or a drop notice (or the first
/// segment is read), and every damaged original a repair kept aside (`*.damaged`) from there
/// on: a sequence number or segment id found in any of them is never used again.
pub fn resume_point(dir: &Path) -> io::Result<Option<ResumePoint>> {
    let segments = crate::sink::existing_segments(dir)?;
    let sides: Vec<(u64, PathBuf)> = crate::store::list(dir)?
        .into_iter()
        .filter(|f| f.kind == crate::store::FileKind::Side)
        .map(|f| (f.id, f.path))
        .collect();
    let Some(last_id) = segments.iter().chain(&sides).map(|(id, _)| *id).max() else {
        return Ok(None);
    };
    let mut recording_id = None;
    let mut highest: BTreeMap<String, u64> = BTreeMap::new();
    let mut known: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    // Segment ids grow with sequence numbers (a frame written again after a failed fsync only
    // moves to a later segment), so the damaged originals of segments older than the oldest
    // one read cannot hold a higher number: only the others are read.
    let mut oldest_read = None;
    for (seg_id, p) in segments.iter().rev() {
        let h = highest_seq(p)?;
        recording_id = recording_id.or(h.recording_id);
        known.extend(h.streams);
        for (name, seq) in h.seqs {
            highest.entry(name).or_insert(seq);
        }
        if !highest.is_empty() {
            oldest_read = Some(*seg_id);
            if known.iter().all(|n| highest.contains_key(n)) {
                break;
            }
        }
    }
    for (_, p) in sides
        .iter()
        .filter(|(id, _)| oldest_read.is_none_or(|n| *id >= n))
    {
        let h = highest_seq(p)?;
        recording_id = recording_id.or(h.recording_id);
        for (name, seq) in h.seqs {
            let e = highest.entry(name).or_insert(seq);
            *e = (*e).max(seq);
        }
    }
    Ok(Some(ResumePoint {
        recording_id: recording_id.unwrap_or_else(|| "unknown".into()),
        next_segment_id: last_id + 1,
        next_seqs: highest.into_iter().map(|(n, s)| (n, s + 1)).collect(),
    }))
}
