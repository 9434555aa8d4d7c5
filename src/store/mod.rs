//! A recording directory as a store of files: who may write it (the [`lock`]), which of its
//! files belong to which segment (the listing), which of them retention deletes
//! ([`retention`], pure), and a fakenect-layout recording read and recovered as a whole
//! ([`fakenect`]).

pub mod fakenect;
pub mod lock;
pub mod retention;

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::segment;

/// What one file of a recording directory is to its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// A damaged original that repair kept aside: `NAME.mcap.damaged`, `NAME.mcap.damaged.N`.
    /// Ordered before [`FileKind::Segment`]: a side file goes with or before its segment.
    Side,
    /// The segment itself, `{id:016}.mcap`.
    Segment,
}

/// The segment id and kind of a file name of a recording directory; None for any other file
/// (framerec's retention never touches those).
pub fn parse_file_name(name: &str) -> Option<(u64, FileKind)> {
    if let Some(id) = segment::parse_segment_file_name(name) {
        return Some((id, FileKind::Segment));
    }
    let (seg, rest) = name.split_once(".damaged")?;
    let id = segment::parse_segment_file_name(seg)?;
    let numbered = rest
        .strip_prefix('.')
        .is_some_and(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()));
    (rest.is_empty() || numbered).then_some((id, FileKind::Side))
}

/// One file of a recording directory, as retention sees it.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub id: u64,
    pub kind: FileKind,
    pub path: PathBuf,
    /// The bytes it takes: its length, or for a side file the space allocated to it if that is
    /// more (a segment killed while open keeps the blocks reserved ahead of its writes).
    pub len: u64,
    pub modified: std::time::SystemTime,
}

/// The segments and side files of `dir`, sorted by (id, kind, name). A file that vanishes while
/// it is listed is left out.
pub fn list(dir: &Path) -> io::Result<Vec<StoredFile>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some((id, kind)) = e.file_name().to_str().and_then(parse_file_name) else {
            continue;
        };
        let m = match e.metadata() {
            Ok(m) => m,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        if !m.is_file() {
            continue;
        }
        let len = match kind {
            FileKind::Segment => m.len(),
            FileKind::Side => m.len().max(m.blocks().saturating_mul(512)),
        };
        out.push(StoredFile {
            id,
            kind,
            path: e.path(),
            len,
            modified: m.modified()?,
        });
    }
    out.sort_by(|a, b| (a.id, a.kind, &a.path).cmp(&(b.id, b.kind, &b.path)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_segments_and_side_files() {
        let seg = "0000000000000007.mcap";
        assert_eq!(parse_file_name(seg), Some((7, FileKind::Segment)));
        assert_eq!(
            parse_file_name("0000000000000007.mcap.damaged"),
            Some((7, FileKind::Side))
        );
        assert_eq!(
            parse_file_name("0000000000000007.mcap.damaged.12"),
            Some((7, FileKind::Side))
        );
        for other in [
            "0000000000000007.mcap.damaged.",
            "0000000000000007.mcap.damaged.x",
            "0000000000000007.mcap.damagedx",
            "0000000000000007.mcap.recovering",
            "7.mcap.damaged",
            "notes.damaged",
            ".framerec.lock",
            "framerec-0000000000000000.hlog",
        ] {
            assert_eq!(parse_file_name(other), None, "{other}");
        }
    }
}
