//! `framerec recover DIR` on a fakenect-layout recording: plans the repair, carries it out and
//! says what it did: the lines removed, the frames lost (and named in `DROPS.txt`), the files
//! appended, renamed or removed, and those left as they were.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use framerec::store::fakenect::recover::{Left, Plan, apply, plan};

fn left_lines(what: &str, files: &[Left]) -> Result<(), super::super::StdoutError> {
    for l in files {
        outln!("    {what} {}: {}", l.file, l.why);
    }
    Ok(())
}

/// Prints what the repair `p` of `path` did.
fn print(path: &Path, p: &Plan) -> anyhow::Result<()> {
    if p.is_empty() {
        outln!(
            "{}: nothing to recover: INDEX.txt names {} complete frames (fakenect layout)",
            path.display(),
            p.kept
        );
    } else {
        outln!(
            "{}: recovered (fakenect layout): kept {} frames INDEX.txt named; lost {} (named in DROPS.txt as lost); appended {} complete frames it did not name",
            path.display(),
            p.kept,
            p.lost.len(),
            p.appended.len()
        );
    }
    if let Some((line, bytes)) = p.cut {
        outln!("    INDEX.txt:{line}: a last line cut short by a crash ({bytes} bytes): removed");
    }
    if p.unterminated {
        outln!("    INDEX.txt: its last line had no newline: added");
    }
    for l in &p.lost {
        outln!(
            "    lost {} seq {}: {} ({}): its line removed",
            l.stream.as_str(),
            l.seq,
            l.file,
            l.why
        );
    }
    for name in &p.appended {
        outln!("    appended {name}");
    }
    for tmp in &p.renamed {
        outln!("    renamed {tmp} (a whole frame never renamed) to its name");
    }
    left_lines("removed", &p.removed)?;
    left_lines("left", &p.left)?;
    if p.stale_index_tmp {
        outln!("    removed the .INDEX.txt.tmp an interrupted recover left");
    }
    Ok(())
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let p = match plan(path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}: cannot recover: {e}; left as it is", path.display());
            return Ok(ExitCode::from(1));
        }
    };
    if !p.is_empty() {
        apply(path, &p).with_context(|| format!("recovering {}", path.display()))?;
    }
    print(path, &p)?;
    Ok(ExitCode::SUCCESS)
}
