//! `framerec export PATH --format pgm|png|fakenect --out DIR`: one image file per frame, with frame and
//! time selection, and a progress bar when stderr is a terminal. The output directory must be
//! new or empty (`--force` writes into it anyway) and is locked while export writes it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use framerec::segment::{FileSource, MessageRef, Source, decode_raw_image, verify_file};
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

/// The data of message `m` of the segment `name`, read from `src` into `buf`.
fn read_message<'a>(
    src: &'a FileSource,
    name: &str,
    m: &MessageRef,
    buf: &'a mut bytes::BytesMut,
) -> anyhow::Result<&'a [u8]> {
    src.read(m.data.start as u64..m.data.end as u64, buf)
        .with_context(|| format!("cannot read frame {} from {name}", m.sequence))
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
    // First pass: which frames are selected (messages only; a payload is read when it is
    // exported, one at a time).
    let mut segments = Vec::new();
    for f in &files {
        let report = verify_file(f).with_context(|| format!("cannot read {}", f.display()))?;
        let src = FileSource::open(f).with_context(|| format!("cannot read {}", f.display()))?;
        segments.push((src, report));
    }
    let mut buf = bytes::BytesMut::new();
    let t0 = segments
        .iter()
        .filter_map(|(_, r)| r.start_time_ns)
        .min()
        .unwrap_or(0);
    let selected = |seq: u64, log_time: u64| {
        let rel = Duration::from_nanos(log_time.saturating_sub(t0));
        args.from_seq.is_none_or(|a| seq >= a)
            && args.to_seq.is_none_or(|b| seq <= b)
            && args.start.is_none_or(|s| rel >= s)
            && args.end.is_none_or(|e| rel <= e)
    };
    let total: u64 = segments
        .iter()
        .flat_map(|(_, r)| r.contents.messages.iter())
        .filter(|m| selected(m.sequence as u64, m.log_time))
        .count() as u64;
    if total == 0 {
        bail!("no frames match the selection");
    }
    if args.format == Format::Fakenect {
        for (src, report) in &segments {
            for m in report
                .contents
                .messages
                .iter()
                .filter(|m| selected(m.sequence as u64, m.log_time))
            {
                let img = decode_raw_image(read_message(src, &report.name, m, &mut buf)?)
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
        }
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
    for (src, report) in &segments {
        for m in report
            .contents
            .messages
            .iter()
            .filter(|m| selected(m.sequence as u64, m.log_time))
        {
            let data = read_message(src, &report.name, m, &mut buf)?;
            let img =
                decode_raw_image(data).map_err(|e| anyhow::anyhow!("frame {}: {e}", m.sequence))?;
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
            std::fs::write(args.out.join(&name), file)
                .with_context(|| format!("cannot write {name}"))?;
            written += 1;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if args.format == Format::Fakenect {
        std::fs::write(args.out.join("INDEX.txt"), index).context("cannot write INDEX.txt")?;
    }
    outln!("exported {written} frames to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
