//! `framerec recover PATH`: repair every damaged or unfinished segment of a recording (or one
//! segment file). The damaged original is kept aside as `NAME.mcap.damaged` (which `verify`
//! and readers of the directory ignore) unless `--discard-damaged` is given. Running it again
//! changes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use framerec::repair::{Outcome, repair};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recording directory or segment file.
    path: PathBuf,
    /// Delete the damaged originals instead of keeping them as `*.mcap.damaged`.
    #[arg(long)]
    discard_damaged: bool,
}

fn ranges(r: &[(u64, u64)]) -> String {
    if r.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = r
        .iter()
        .map(|(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}..={b}")
            }
        })
        .collect();
    parts.join(", ")
}

fn original(aside: &Option<PathBuf>) -> String {
    match aside {
        Some(p) => format!("original kept as {}", p.display()),
        None => "original deleted".into(),
    }
}

/// Prints what repair did; returns false when a segment could not be repaired.
pub fn print(outcomes: &[Outcome]) -> Result<bool, super::StdoutError> {
    let mut ok = true;
    for o in outcomes {
        match o {
            Outcome::Recovered {
                path,
                aside,
                recovered: r,
            } => {
                outln!(
                    "{}: recovered: kept {} frames in {} chunks (seq {}); lost {} (named in the file as lost); {} damaged chunks, {} bytes skipped; {}",
                    path.display(),
                    r.kept_frames,
                    r.kept_chunks,
                    ranges(&r.kept_ranges),
                    ranges(&r.lost_ranges),
                    r.damaged_chunks,
                    r.skipped_bytes,
                    original(aside)
                );
                for d in &r.damage {
                    outln!("    {d}");
                }
            }
            Outcome::Emptied { path, aside, why } => {
                outln!(
                    "{}: holds no intact chunk ({why}); {}",
                    path.display(),
                    original(aside)
                );
            }
            Outcome::Failed { path, why } => {
                eprintln!("{}: cannot recover: {why}; left as it is", path.display());
                ok = false;
            }
        }
    }
    Ok(ok)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let segments = super::segment_paths(&args.path)?;
    let outcomes = repair(
        &segments.paths,
        segments.starts_at_zero,
        args.discard_damaged,
    )?;
    if outcomes.is_empty() {
        outln!(
            "{}: nothing to recover: every segment is intact",
            args.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    Ok(if print(&outcomes)? {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
