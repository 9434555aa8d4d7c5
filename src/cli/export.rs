//! `framerec export PATH --format pgm|png|fakenect --out DIR`: one image file per frame, with frame and
//! time selection, and a progress bar when stderr is a terminal. The output directory must be
//! new or empty (`--force` writes into it anyway) and is locked while export writes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use framerec::segment::{FileSource, MessageRef, SegmentContents, decode_raw_image, parse_source};
use framerec::store::lock::{LOCK_FILE, lock_dir};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Pgm,
    Png,
    /// A libfreenect fakenect dump (INDEX.txt + d-*.pgm), replayable with `fakenect`.
    Fakenect,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recording directory or segment file.
    path: PathBuf,
    #[arg(long, value_enum)]
    format: Format,
    /// Output directory (created; must be empty unless `--force`).
    #[arg(long)]
    out: PathBuf,
    /// Write into a directory that already holds files, replacing any of the same names.
    #[arg(long)]
    force: bool,
    /// First frame sequence number to export.
    #[arg(long)]
    from_seq: Option<u64>,
    /// Last frame sequence number to export.
    #[arg(long)]
    to_seq: Option<u64>,
    /// Skip frames captured earlier than this after the recording's first frame (e.g. `10s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    start: Option<Duration>,
    /// Skip frames captured later than this after the recording's first frame.
    #[arg(long, value_parser = humantime::parse_duration)]
    end: Option<Duration>,
}

/// Sizes libfreenect's fakenect replays: it hands the file's samples to the program as a
/// 640x480 depth frame, whatever the file's header says.
const FAKENECT_SIZE: (u32, u32) = (640, 480);

/// The files of `dir` an export would overwrite or mix with (all but the lock file); None when
/// `dir` does not exist.
fn existing_entries(dir: &Path) -> anyhow::Result<Option<usize>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut n = 0;
            for e in entries {
                let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
                n += usize::from(e.file_name() != LOCK_FILE);
            }
            Ok(Some(n))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot list {}", dir.display())),
    }
}

/// Refuses an output directory that holds files, unless `--force`.
fn check_out(args: &Args) -> anyhow::Result<()> {
    match existing_entries(&args.out)? {
        Some(n) if n > 0 && !args.force => bail!(
            "{} is not empty ({n} entries): export writes into a new or empty directory; --force writes into it anyway, replacing files of the same names",
            args.out.display()
        ),
        _ => Ok(()),
    }
}

/// Scans the segment file `path`, handing `visit` each frame with its data (one chunk in
/// memory at a time); the first error `visit` returns ends its work and is returned.
fn each_frame(
    path: &Path,
    mut visit: impl FnMut(&MessageRef, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<SegmentContents> {
    let cannot = || format!("cannot read {}", path.display());
    let src = FileSource::open(path).with_context(cannot)?;
    let mut failed = None;
    let contents = parse_source(&src, &mut |m, data| {
        if failed.is_none()
            && let Err(e) = visit(m, data)
        {
            failed = Some(e);
        }
    })
    .with_context(cannot)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(contents),
    }
}

/// Writes frame `m` (its data `data`) as an image file in `args.out`; a fakenect export adds
/// its name to `index`.
fn export_frame(
    args: &Args,
    m: &MessageRef,
    data: &[u8],
    index: &mut String,
) -> anyhow::Result<()> {
    let img = decode_raw_image(data).map_err(|e| anyhow::anyhow!("frame {}: {e}", m.sequence))?;
    let (name, file) = match args.format {
        Format::Pgm => (
            format!("{:010}.pgm", m.sequence),
            framerec::export::pgm16(img.width, img.height, img.data),
        ),
        Format::Png => (
            format!("{:010}.png", m.sequence),
            framerec::export::png16(img.width, img.height, img.data)?,
        ),
        Format::Fakenect => (
            framerec::export::fakenect_depth_name(m.log_time, m.publish_time),
            framerec::export::fakenect_depth(img.width, img.height, img.data),
        ),
    };
    if args.format == Format::Fakenect {
        index.push_str(&name);
        index.push('\n');
    }
    std::fs::write(args.out.join(&name), file).with_context(|| format!("cannot write {name}"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let segments = super::segment_paths(&args.path)?;
    if let (Some(w), false) = (segments.writer, segments.live.is_empty()) {
        eprintln!(
            "note: {} is being written by a running recorder ({w}); its newest segment is unfinished: exporting the frames it holds so far",
            args.path.display()
        );
    }
    let files: Vec<PathBuf> = segments.paths.into_iter().chain(segments.live).collect();
    check_out(&args)?;
    // The recording's first log time, which --start and --end count from (a scan of every
    // segment, needed only for them).
    let mut t0 = None;
    if args.start.is_some() || args.end.is_some() {
        for f in &files {
            let c = each_frame(f, |_, _| Ok(()))?;
            if let Some(t) = c.start_time_ns {
                t0 = Some(t0.map_or(t, |t0: u64| t0.min(t)));
            }
        }
    }
    let t0 = t0.unwrap_or(0);
    let selected = |seq: u64, log_time: u64| {
        let rel = Duration::from_nanos(log_time.saturating_sub(t0));
        args.from_seq.is_none_or(|a| seq >= a)
            && args.to_seq.is_none_or(|b| seq <= b)
            && args.start.is_none_or(|s| rel >= s)
            && args.end.is_none_or(|e| rel <= e)
    };
    // How many frames each segment has selected, frames read as the scan meets them (nothing
    // per frame is kept); a fakenect export checks their size before it writes anything.
    let mut counts = Vec::with_capacity(files.len());
    for f in &files {
        let mut n = 0u64;
        each_frame(f, |m, data| {
            if !selected(m.sequence as u64, m.log_time) {
                return Ok(());
            }
            n += 1;
            if args.format == Format::Fakenect {
                let img = decode_raw_image(data)
                    .map_err(|e| anyhow::anyhow!("frame {}: {e}", m.sequence))?;
                if (img.width, img.height) != FAKENECT_SIZE {
                    bail!(
                        "frame {} is {}x{}: the fakenect format carries 640x480 depth frames only (libfreenect's fakenect replays any file as 640x480); export it as pgm or png instead",
                        m.sequence,
                        img.width,
                        img.height
                    );
                }
            }
            Ok(())
        })?;
        counts.push(n);
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        bail!("no frames match the selection");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let _lock = lock_dir(&args.out)?;
    // Checked again under the lock: another export may have written it meanwhile.
    check_out(&args)?;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} frames, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut written = 0u64;
    let mut index = String::new();
    for (f, _) in files.iter().zip(&counts).filter(|(_, n)| **n > 0) {
        each_frame(f, |m, data| {
            if selected(m.sequence as u64, m.log_time) {
                export_frame(&args, m, data, &mut index)?;
                written += 1;
                bar.inc(1);
            }
            Ok(())
        })?;
    }
    bar.finish_and_clear();
    if args.format == Format::Fakenect {
        std::fs::write(args.out.join("INDEX.txt"), index).context("cannot write INDEX.txt")?;
    }
    outln!("exported {written} frames to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
