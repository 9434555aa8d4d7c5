//! Repairing a recording directory after a crash, and finding where a new run resumes it.
//! File I/O around the pure [`segment::recover_segment`]: every damaged or unfinished segment
//! is rebuilt beside itself, made durable, and swapped in; the original is kept aside as
//! `NAME.mcap.damaged` unless asked otherwise.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::segment::{
    self, Problem, RecoverError, Recovered, recover_segment, subtract, verify_recording,
    verify_segment,
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

/// A name beside `path` that does not exist yet: `NAME.damaged`, `NAME.damaged.1`, ...
fn aside_name(path: &Path) -> PathBuf {
    let base = format!("{}.damaged", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
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
    let mut reports = Vec::with_capacity(files.len());
    for f in files {
        reports.push(verify_segment(&f.display().to_string(), &fs::read(f)?));
    }
    let damaged: Vec<usize> = (0..reports.len()).filter(|i| !reports[*i].ok()).collect();
    if damaged.is_empty() {
        return Ok(Vec::new());
    }
    let missing: Vec<(u64, u64)> = verify_recording(reports, starts_at_zero)
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::Missing { first, last } => Some((*first, *last)),
            _ => None,
        })
        .collect();
    // The frames missing from the recording are named in the last damaged segment that can be
    // rebuilt (a segment with no intact chunk is put aside, and could not carry the names).
    let mut carrier = None;
    for &i in &damaged {
        if recover_segment(&fs::read(&files[i])?, &[]).is_ok() {
            carrier = Some(i);
        }
    }
    let mut outcomes = Vec::new();
    let mut named: Vec<(u64, u64)> = Vec::new();
    for &i in &damaged {
        let path = &files[i];
        let bytes = fs::read(path)?;
        let also_lost = if Some(i) == carrier {
            subtract(&missing, &named)
        } else {
            Vec::new()
        };
        let recovered = match recover_segment(&bytes, &also_lost) {
            Ok(r) => r,
            Err(why) if !segment::has_intact_chunk(&bytes) => {
                let aside = put_aside(path, discard_damaged)?;
                sync_parent(path)?;
                outcomes.push(Outcome::Emptied {
                    path: path.clone(),
                    aside,
                    why,
                });
                continue;
            }
            Err(why) => {
                outcomes.push(Outcome::Failed {
                    path: path.clone(),
                    why,
                });
                continue;
            }
        };
        named.extend_from_slice(&recovered.lost_ranges);
        // Write the rebuilt segment beside the original, make it durable, then swap names.
        let tmp = PathBuf::from(format!("{}.recovering", path.display()));
        {
            let mut f = File::create(&tmp)?;
            io::Write::write_all(&mut f, &recovered.bytes)?;
            f.sync_all()?;
        }
        let aside = if discard_damaged {
            None
        } else {
            let aside = aside_name(path);
            fs::rename(path, &aside)?;
            Some(aside)
        };
        fs::rename(&tmp, path)?;
        sync_parent(path)?;
        outcomes.push(Outcome::Recovered {
            path: path.clone(),
            aside,
            recovered: Box::new(recovered),
        });
    }
    Ok(outcomes)
}

/// What `record` does when its directory holds unfinished segments (a crashed run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// One past the highest sequence number written or named in a drop notice.
    pub next_seq: u64,
}

/// The resume point of the recording in `dir`, or None when it holds no segment. Reads
/// segments from the newest back to the first that holds a frame or a drop notice.
pub fn resume_point(dir: &Path) -> io::Result<Option<ResumePoint>> {
    let segments = crate::writer::existing_segments(dir)?;
    let Some((last_id, _)) = segments.last() else {
        return Ok(None);
    };
    let mut recording_id = None;
    let mut next_seq = 0;
    for (_, p) in segments.iter().rev() {
        let r = verify_segment(&p.display().to_string(), &fs::read(p)?);
        if recording_id.is_none() {
            recording_id = r.contents.metadata.get("recording_id").cloned();
        }
        let frames = r.contents.messages.iter().map(|m| m.sequence as u64);
        let drops = r.contents.drops.iter().map(|d| d.last.0);
        if let Some(max) = frames.chain(drops).max() {
            next_seq = max + 1;
            break;
        }
    }
    Ok(Some(ResumePoint {
        recording_id: recording_id.unwrap_or_else(|| "unknown".into()),
        next_segment_id: last_id + 1,
        next_seq,
    }))
}
