//! `framerec recover PATH`: repair every damaged or unfinished segment of a recording (or one
//! segment file). The damaged original is kept aside as `NAME.mcap.damaged` (which `verify`
//! and readers of the directory ignore) unless `--discard-damaged` is given. Running it again
//! changes nothing.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use framerec::segment::{self, Problem, recover_segment, verify_recording, verify_segment};

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

/// The parts of the inclusive ranges `from` that no range in `minus` covers.
fn subtract(from: &[(u64, u64)], minus: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(a, b) in from {
        let mut next = a;
        let mut cuts: Vec<(u64, u64)> = minus
            .iter()
            .copied()
            .filter(|(c, d)| *d >= a && *c <= b)
            .collect();
        cuts.sort_unstable();
        for (c, d) in cuts {
            if c > next {
                out.push((next, c - 1));
            }
            next = next.max(d.saturating_add(1));
        }
        if next <= b {
            out.push((next, b));
        }
    }
    out
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

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let files = super::segment_paths(&args.path)?;
    let in_dir = args.path.is_dir();
    let mut reports = Vec::new();
    for f in &files {
        let bytes = fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
        reports.push(verify_segment(&f.display().to_string(), &bytes));
    }
    let damaged: Vec<usize> = (0..reports.len()).filter(|i| !reports[*i].ok()).collect();
    if damaged.is_empty() {
        println!(
            "{}: nothing to recover: every segment is intact",
            args.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Frames missing from the recording as a whole (e.g. the tail of a segment whose last
    // writes never completed) are named as lost in the last damaged segment.
    let starts_at_zero = in_dir
        && files.first().and_then(|f| {
            f.file_name()?
                .to_str()
                .and_then(segment::parse_segment_file_name)
        }) == Some(0);
    let recording = verify_recording(reports, starts_at_zero);
    let missing: Vec<(u64, u64)> = recording
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::Missing { first, last } => Some((*first, *last)),
            _ => None,
        })
        .collect();

    let mut failed = false;
    let mut named: Vec<(u64, u64)> = Vec::new();
    for (n, &i) in damaged.iter().enumerate() {
        let path = &files[i];
        let bytes = fs::read(path)?;
        let also_lost = if n + 1 == damaged.len() {
            subtract(&missing, &named)
        } else {
            Vec::new()
        };
        let rec = match recover_segment(&bytes, &also_lost) {
            Ok(r) => r,
            Err(e) if !segment::has_intact_chunk(&bytes) => {
                // Typically the segment opened ahead of a rotation, killed before its head was
                // written: there is nothing in it to keep.
                let what = if args.discard_damaged {
                    fs::remove_file(path)?;
                    "deleted".to_string()
                } else {
                    let aside = aside_name(path);
                    fs::rename(path, &aside)?;
                    format!("moved aside as {}", aside.display())
                };
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    sync_dir(dir)?;
                }
                println!("{}: holds no intact chunk ({e}); {what}", path.display());
                continue;
            }
            Err(e) => {
                eprintln!("{}: cannot recover: {e}; left as it is", path.display());
                failed = true;
                continue;
            }
        };
        named.extend_from_slice(&rec.lost_ranges);
        // Write the rebuilt segment beside the original, make it durable, then swap names.
        let tmp = PathBuf::from(format!("{}.recovering", path.display()));
        {
            let mut f =
                File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            std::io::Write::write_all(&mut f, &rec.bytes)?;
            f.sync_all()?;
        }
        let aside = aside_name(path);
        fs::rename(path, &aside)?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir)?;
        }
        if args.discard_damaged {
            fs::remove_file(&aside)?;
        }
        println!(
            "{}: recovered: kept {} frames in {} chunks (seq {}); lost {} (named in the file as lost); {} damaged chunks, {} bytes skipped; original {}",
            path.display(),
            rec.kept_frames,
            rec.kept_chunks,
            ranges(&rec.kept_ranges),
            ranges(&rec.lost_ranges),
            rec.damaged_chunks,
            rec.skipped_bytes,
            if args.discard_damaged {
                "deleted".to_string()
            } else {
                format!("kept as {}", aside.display())
            }
        );
        for d in &rec.damage {
            println!("    {d}");
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
