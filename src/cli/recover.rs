//! `framerec recover PATH`: repair every damaged or unfinished segment of a recording (or one
//! segment file). The damaged original is kept aside as `NAME.mcap.damaged` (which `verify`
//! and readers of the directory ignore) unless `--discard-damaged` is given. Running it again
//! changes nothing. It holds the directory's lock while it works, so it refuses (exit 2) to
//! touch a recording a recorder is writing. A fakenect-layout recording is made consistent
//! again ([`framerec::store::fakenect::recover`]): what its repair did is printed by [`dump`].

mod dump;

use std::path::PathBuf;
use std::process::ExitCode;

use framerec::repair::{Outcome, finish_interrupted, repair_with_progress};

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
            } if r.foreign => {
                outln!(
                    "{}: recovered another writer's file: kept {} messages in {} intact chunks and outside chunks, as they were; {} damaged chunks, {} bytes skipped; {}",
                    path.display(),
                    r.kept_frames,
                    r.kept_chunks,
                    r.damaged_chunks,
                    r.skipped_bytes,
                    original(aside)
                );
                for d in &r.damage {
                    outln!("    lost: {d}");
                }
                if r.more_damage > 0 {
                    outln!("    ... and {} more damage (not listed)", r.more_damage);
                }
            }
            Outcome::Recovered {
                path,
                aside,
                recovered: r,
            } => {
                outln!(
                    "{}: recovered: kept {} frames in {} chunks ({}seq {}); lost {} (named in the file as lost); {} damaged chunks, {} bytes skipped; {}",
                    path.display(),
                    r.kept_frames,
                    r.kept_chunks,
                    match r.streams.first() {
                        Some(st) if r.streams.len() > 1 => format!("{}: ", st.name),
                        _ => String::new(),
                    },
                    ranges(&r.kept_ranges),
                    ranges(&r.lost_ranges),
                    r.damaged_chunks,
                    r.skipped_bytes,
                    original(aside)
                );
                if r.streams.len() > 1 {
                    for st in &r.streams {
                        outln!(
                            "    stream {}: kept {} frames (seq {}); lost {}",
                            st.name,
                            st.kept_frames,
                            ranges(&st.kept_ranges),
                            ranges(&st.lost_ranges)
                        );
                    }
                }
                if r.lost_not_named {
                    outln!(
                        "    the kept chunks are fragmented into more runs of frames or drop notices than recover tracks: seq lists only the first runs, and frames missing from this segment are not named as lost"
                    );
                }
                for d in &r.damage {
                    outln!("    {d}");
                }
                if r.more_damage > 0 {
                    outln!("    ... and {} more damage (not listed)", r.more_damage);
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
    // Repair rewrites segments: never while a recorder (or another repair) writes them.
    let _lock = framerec::store::lock::lock_dir(super::lock_dir_of(&args.path))?;
    if framerec::store::fakenect::is_layout(&args.path) {
        return dump::run(&args.path);
    }
    // What a repair killed half-way left is finished (or rolled back) first.
    let finished = if args.path.is_dir() {
        finish_interrupted(&args.path, None)?
    } else {
        let dir = args.path.parent().unwrap_or(std::path::Path::new("."));
        finish_interrupted(dir, Some(&args.path))?
    };
    for p in &finished {
        println!(
            "{}: put back in place after an interrupted repair",
            p.display()
        );
    }
    anyhow::ensure!(args.path.exists(), "{} does not exist", args.path.display());
    let paths = super::all_segment_paths(&args.path)?;
    let starts_at_zero = args.path.is_dir()
        && framerec::sink::existing_segments(&args.path)?
            .first()
            .is_some_and(|(id, _)| *id == 0);
    let bar = super::bytes_progress(&paths);
    let outcomes = repair_with_progress(&paths, starts_at_zero, args.discard_damaged, &mut |n| {
        bar.inc(n)
    })?;
    bar.finish_and_clear();
    // A ros2 recording's metadata.yaml (rosbag2's index of it) lists the segments as they are now.
    framerec::segment::ros2::bag::write_metadata_yaml(super::lock_dir_of(&args.path))?;
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
