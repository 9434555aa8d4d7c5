//! `framerec export PATH [--stream NAME] --format pgm|png|ppm|fakenect|csv --out DIR`: one
//! stream of a recording (default `depth`, else its first image stream), one image file per
//! frame (depth: pgm, png, fakenect; colour: ppm, png) or one CSV of accelerometer readings
//! (`accel.csv`), with frame and time selection, and a progress bar when stderr is a terminal.
//! The output directory must be new or empty (`--force` writes into it anyway) and is locked
//! while export writes it. A fakenect-layout recording (`INDEX.txt` and a file per frame)
//! exports the same way from its frame files ([`dump`]).

mod dump;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use framerec::export::colormap::DepthRange;
use framerec::segment::{
    FileSource, MessageRef, SegmentContents, StreamKind, V1_STREAM_NAME, clock, decode_accel,
    decode_raw_image, parse_source, scan_head,
};
use framerec::store::lock::{LOCK_FILE, lock_dir};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// 16-bit PGM (depth).
    Pgm,
    /// PNG: 16-bit grayscale (depth) or 8-bit RGB (colour).
    Png,
    /// 8-bit PPM (colour).
    Ppm,
    /// A libfreenect fakenect dump (INDEX.txt + d-*.pgm), replayable with `fakenect` (depth).
    Fakenect,
    /// One CSV of readings, `accel.csv` (accelerometer).
    Csv,
}

/// What the frames of the exported stream are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frames {
    Depth,
    Colour,
    Accel,
}

impl Frames {
    fn formats(self) -> &'static [Format] {
        match self {
            Frames::Depth => &[Format::Pgm, Format::Png, Format::Fakenect],
            Frames::Colour => &[Format::Ppm, Format::Png],
            Frames::Accel => &[Format::Csv],
        }
    }
}

/// File name of an accelerometer export.
const ACCEL_CSV: &str = "accel.csv";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recording directory or segment file.
    path: PathBuf,
    /// The stream to export, by name (default `depth`, else the first image stream).
    #[arg(long)]
    stream: Option<String>,
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
    /// Depth as PNG through a colour map (8-bit RGB), to look at: samples of 0 (no reading)
    /// black. Without it a depth PNG holds the raw 16-bit samples.
    #[arg(long, value_enum)]
    colormap: Option<framerec::export::colormap::Colormap>,
    /// The samples at the colour map's ends: `MIN:MAX` (e.g. `400:1100` for a Kinect's
    /// 11-bit disparity of a room), or `auto`, each frame's own nonzero span [default: auto].
    #[arg(long, requires = "colormap")]
    range: Option<framerec::export::colormap::DepthRange>,
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
/// memory at a time); the first error `visit` returns ends its work and is returned. Another
/// writer's frames are numbered by their place in the file (0, 1, ...), since their MCAP
/// sequence numbers need not be unique (rosbag2 and many writers leave them 0).
///
/// `visit` also gets the frame's raw device time: its `publish_time` taken back by the clock
/// offset the segment's tail records (see [`framerec::segment::clock`]).
pub(super) fn each_frame(
    path: &Path,
    stream: &str,
    mut visit: impl FnMut(&MessageRef, u64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<SegmentContents> {
    let cannot = || format!("cannot read {}", path.display());
    let src = FileSource::open(path).with_context(cannot)?;
    let head = scan_head(&src).with_context(cannot)?;
    let clock = clock::DeviceClock::of(&head.metadata, &clock::read_offsets(&src), stream);
    let index = head.streams.iter().position(|s| s.name == stream);
    let foreign = head.is_foreign();
    let mut place = 0u32;
    let mut failed = None;
    let contents = parse_source(&src, &mut |m, data| {
        if failed.is_some() || Some(m.stream) != index {
            return;
        }
        let renumbered;
        let m = match foreign {
            true => {
                renumbered = MessageRef {
                    sequence: place,
                    ..m.clone()
                };
                place = place.wrapping_add(1);
                &renumbered
            }
            false => m,
        };
        if let Err(e) = visit(m, clock.device_ns(m.publish_time), data) {
            failed = Some(e);
        }
    })
    .with_context(cannot)?;
    match failed {
        Some(e) => Err(e),
        None => Ok(contents),
    }
}

/// The stream `args` asks for (or the default), and what its frames are, from the head of the
/// recording's first segment; an error names the streams the recording has.
fn pick_stream(args: &Args, first: &Path) -> anyhow::Result<(String, Frames)> {
    let cannot = || format!("cannot read {}", first.display());
    let head = scan_head(&FileSource::open(first).with_context(cannot)?).with_context(cannot)?;
    let Some(s) = chosen_stream(&head, args.stream.as_deref()) else {
        let other = head
            .channels
            .values()
            .find(|(topic, _)| Some(topic) == args.stream.as_ref());
        if let Some((topic, encoding)) = other {
            anyhow::bail!(
                "{}: channel {topic} ({encoding}) is not one framerec exports: export reads channels whose schema is foxglove.RawImage or framerec.Accelerometer",
                args.path.display()
            );
        }
        let names: Vec<&str> = head.streams.iter().map(|s| s.name.as_str()).collect();
        return Err(no_stream(args, &names));
    };
    let encoding = head
        .channel_metadata
        .get(&s.channel)
        .and_then(|m| m.get("encoding"))
        .map(String::as_str);
    let frames = match (s.kind, encoding) {
        (StreamKind::Accel, _) => Frames::Accel,
        (StreamKind::Image, Some("rgb8")) => Frames::Colour,
        (StreamKind::Image, _) => Frames::Depth,
    };
    check_format(args, &s.name, frames)?;
    Ok((s.name.clone(), frames))
}

/// The stream named `asked`, or by default depth, else the first image stream.
pub(super) fn chosen_stream<'a>(
    head: &'a SegmentContents,
    asked: Option<&str>,
) -> Option<&'a framerec::segment::StreamContents> {
    match asked {
        Some(name) => head.stream(name),
        None => head
            .stream(V1_STREAM_NAME)
            .or_else(|| head.streams.iter().find(|s| s.kind == StreamKind::Image)),
    }
}

/// The error for a recording without the stream `args` asks for: it names those it has.
fn no_stream(args: &Args, names: &[&str]) -> anyhow::Error {
    anyhow::anyhow!(
        "{} has no stream {} (it has: {})",
        args.path.display(),
        args.stream
            .as_deref()
            .unwrap_or("depth nor any image stream"),
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    )
}

/// Refuses a format the frames of stream `name` do not export as.
fn check_format(args: &Args, name: &str, frames: Frames) -> anyhow::Result<()> {
    if !frames.formats().contains(&args.format) {
        let names: Vec<String> = frames
            .formats()
            .iter()
            .filter_map(|f| clap::ValueEnum::to_possible_value(f).map(|v| v.get_name().to_string()))
            .collect();
        bail!(
            "stream {name} ({frames:?} frames) exports as {}, not {:?}",
            names.join(" or "),
            args.format
        );
    }
    if args.colormap.is_some() && (frames != Frames::Depth || args.format != Format::Png) {
        bail!(
            "--colormap colours depth exported as png; stream {name} is {frames:?} frames, \
             exported as {:?}",
            args.format
        );
    }
    Ok(())
}

/// One frame to write: its number, times, and samples (image size for an image).
struct FrameOut<'a> {
    seq: u64,
    log_time: u64,
    device_ns: u64,
    colour: bool,
    width: u32,
    height: u32,
    data: &'a [u8],
    /// An accelerometer reading with no raw bytes (a ros2 profile's `Imu`): x, y, z in m/s^2.
    accel: Option<[f64; 3]>,
}

/// Writes frame `m` (its data `data`) to `args.out`: an image file, or (accelerometer) a row
/// added to `csv`; a fakenect export adds its name to `index`.
fn export_frame(
    args: &Args,
    m: &MessageRef,
    device_ns: u64,
    data: &[u8],
    index: &mut String,
    csv: &mut Option<std::io::BufWriter<std::fs::File>>,
) -> anyhow::Result<()> {
    let bad = |e: &str| anyhow::anyhow!("frame {}: {e}", m.sequence);
    let mut out = FrameOut {
        seq: m.sequence as u64,
        log_time: m.log_time,
        device_ns,
        colour: false,
        width: 0,
        height: 0,
        data,
        accel: None,
    };
    if csv.is_some() {
        let a = decode_accel(data).map_err(bad)?;
        out.data = a.raw;
        if a.raw.is_empty() {
            out.accel = Some([a.x, a.y, a.z]);
        }
    } else {
        let img = decode_raw_image(data).map_err(bad)?;
        out.colour = img.encoding == "rgb8";
        (out.width, out.height, out.data) = (img.width, img.height, img.data);
    }
    write_frame(args, &out, index, csv)
}

/// Writes frame `f` to `args.out`: an image file, or (accelerometer) a row added to `csv`; a
/// fakenect export adds its name to `index`.
fn write_frame(
    args: &Args,
    f: &FrameOut,
    index: &mut String,
    csv: &mut Option<std::io::BufWriter<std::fs::File>>,
) -> anyhow::Result<()> {
    if let Some(csv) = csv {
        let row = match f.accel {
            Some(xyz) => framerec::export::accel_csv_row_of(f.seq, f.log_time, f.device_ns, xyz),
            None => framerec::export::accel_csv_row(f.seq, f.log_time, f.device_ns, f.data)
                .ok_or_else(|| anyhow::anyhow!("frame {}: raw reading is not 12 bytes", f.seq))?,
        };
        csv.write_all(row.as_bytes())
            .with_context(|| format!("cannot write {ACCEL_CSV}"))?;
        return Ok(());
    }
    let colour = f.colour;
    let (name, file) = match args.format {
        Format::Ppm | Format::Png if colour => (
            format!(
                "{:010}.{}",
                f.seq,
                if args.format == Format::Ppm {
                    "ppm"
                } else {
                    "png"
                }
            ),
            match args.format {
                Format::Ppm => framerec::export::ppm_rgb8(f.width, f.height, f.data),
                _ => framerec::export::png_rgb8(f.width, f.height, f.data)?,
            },
        ),
        Format::Ppm | Format::Csv => bail!("frame {}: not an rgb8 image", f.seq),
        Format::Pgm => (
            format!("{:010}.pgm", f.seq),
            framerec::export::pgm16(f.width, f.height, f.data),
        ),
        Format::Png => (
            format!("{:010}.png", f.seq),
            match args.colormap {
                Some(map) => {
                    let range = args.range.unwrap_or(DepthRange::Auto);
                    let rgb = framerec::export::colormap::depth_to_rgb(f.data, map, range);
                    framerec::export::png_rgb8(f.width, f.height, &rgb)?
                }
                None => framerec::export::png16(f.width, f.height, f.data)?,
            },
        ),
        Format::Fakenect => (
            framerec::export::fakenect_depth_name(f.log_time, f.device_ns),
            framerec::export::fakenect_depth(f.width, f.height, f.data),
        ),
    };
    if args.format == Format::Fakenect {
        index.push_str(&name);
        index.push('\n');
    }
    std::fs::write(args.out.join(&name), file).with_context(|| format!("cannot write {name}"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if framerec::store::fakenect::is_layout(&args.path) {
        return dump::run(&args);
    }
    let files = recording_files(&args)?;
    check_out(&args)?;
    let Some(first) = files.first() else {
        bail!("{} holds no segment", args.path.display());
    };
    let (stream, _) = pick_stream(&args, first)?;
    let selection = Selection {
        args: &args,
        t0: first_log_time(&args, &files, &stream)?,
    };
    let counts = count_selected(&selection, &files, &stream)?;
    let total: u64 = counts.iter().sum();
    if total == 0 {
        bail!("no frames match the selection");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let _lock = lock_dir(&args.out)?;
    // Checked again under the lock: another export may have written it meanwhile.
    check_out(&args)?;
    let with_frames: Vec<&PathBuf> = files
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 0)
        .map(|(f, _)| f)
        .collect();
    let written = write_selected(&selection, &with_frames, &stream, total)?;
    outln!("exported {written} frames to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// The segments of the recording, finished ones first, then those a running recorder is
/// still writing (whose frames so far are exported too, with a note saying so).
fn recording_files(args: &Args) -> anyhow::Result<Vec<PathBuf>> {
    let segments = super::segment_paths(&args.path)?;
    if let (Some(w), false) = (segments.writer, segments.live.is_empty()) {
        eprintln!(
            "note: {} is being written by a running recorder ({w}); its newest segment is unfinished: exporting the frames it holds so far",
            args.path.display()
        );
    }
    Ok(segments.paths.into_iter().chain(segments.live).collect())
}

/// The recording's first log time, which --start and --end count from (a scan of every
/// segment, made only for them; 0 without them).
fn first_log_time(args: &Args, files: &[PathBuf], stream: &str) -> anyhow::Result<u64> {
    let mut t0 = None;
    if args.start.is_some() || args.end.is_some() {
        for f in files {
            let c = each_frame(f, stream, |_, _, _| Ok(()))?;
            if let Some(t) = c.start_time_ns {
                t0 = Some(t0.map_or(t, |t0: u64| t0.min(t)));
            }
        }
    }
    Ok(t0.unwrap_or(0))
}

/// The frames `args` selects, by sequence number and by time after `t0`.
struct Selection<'a> {
    args: &'a Args,
    t0: u64,
}

impl Selection<'_> {
    fn contains(&self, m: &MessageRef) -> bool {
        self.contains_frame(m.sequence as u64, m.log_time)
    }

    /// Whether the frame numbered `seq`, logged at `log_time`, is selected.
    fn contains_frame(&self, seq: u64, log_time: u64) -> bool {
        let a = self.args;
        let rel = Duration::from_nanos(log_time.saturating_sub(self.t0));
        a.from_seq.is_none_or(|from| seq >= from)
            && a.to_seq.is_none_or(|to| seq <= to)
            && a.start.is_none_or(|s| rel >= s)
            && a.end.is_none_or(|e| rel <= e)
    }
}

/// How many frames each segment has selected, frames read as the scan meets them (nothing
/// per frame is kept); a fakenect export checks their size before it writes anything.
fn count_selected(
    selection: &Selection<'_>,
    files: &[PathBuf],
    stream: &str,
) -> anyhow::Result<Vec<u64>> {
    let fakenect = selection.args.format == Format::Fakenect;
    let mut counts = Vec::with_capacity(files.len());
    for f in files {
        let mut n = 0u64;
        each_frame(f, stream, |m, _, data| {
            if selection.contains(m) {
                n += 1;
                if fakenect {
                    check_fakenect_size(m, data)?;
                }
            }
            Ok(())
        })?;
        counts.push(n);
    }
    Ok(counts)
}

/// Refuses a frame fakenect cannot replay: it takes every file for a 640x480 depth frame.
fn check_fakenect_size(m: &MessageRef, data: &[u8]) -> anyhow::Result<()> {
    let img = decode_raw_image(data).map_err(|e| anyhow::anyhow!("frame {}: {e}", m.sequence))?;
    fakenect_size(m.sequence as u64, img.width, img.height)
}

/// Refuses frame `seq` of `width`x`height` for a fakenect export unless it is 640x480.
fn fakenect_size(seq: u64, width: u32, height: u32) -> anyhow::Result<()> {
    if (width, height) != FAKENECT_SIZE {
        bail!(
            "frame {seq} is {width}x{height}: the fakenect format carries 640x480 depth frames only (libfreenect's fakenect replays any file as 640x480); export it as pgm or png instead"
        );
    }
    Ok(())
}

/// Writes the `total` selected frames of `files` to the output directory with a progress
/// bar, then the fakenect index or the CSV's last rows; returns how many were written.
fn write_selected(
    selection: &Selection<'_>,
    files: &[&PathBuf],
    stream: &str,
    total: u64,
) -> anyhow::Result<u64> {
    let args = selection.args;
    let bar = progress_bar(total);
    let mut written = 0u64;
    let mut index = String::new();
    let mut csv = open_csv(args)?;
    for f in files {
        each_frame(f, stream, |m, device_ns, data| {
            if selection.contains(m) {
                export_frame(args, m, device_ns, data, &mut index, &mut csv)?;
                written += 1;
                bar.inc(1);
            }
            Ok(())
        })?;
    }
    bar.finish_and_clear();
    finish(args, &index, csv)?;
    Ok(written)
}

/// Writes the fakenect index, or the CSV's last rows.
fn finish(
    args: &Args,
    index: &str,
    csv: Option<std::io::BufWriter<std::fs::File>>,
) -> anyhow::Result<()> {
    if args.format == Format::Fakenect {
        std::fs::write(args.out.join("INDEX.txt"), index).context("cannot write INDEX.txt")?;
    }
    if let Some(mut w) = csv {
        w.flush()
            .with_context(|| format!("cannot write {ACCEL_CSV}"))?;
    }
    Ok(())
}

/// A progress bar over `total` frames (drawn only when stderr is a terminal).
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} frames, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The CSV an accelerometer export writes, its header written; None for image formats.
fn open_csv(args: &Args) -> anyhow::Result<Option<std::io::BufWriter<std::fs::File>>> {
    if args.format != Format::Csv {
        return Ok(None);
    }
    let path = args.out.join(ACCEL_CSV);
    let f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    w.write_all(framerec::export::ACCEL_CSV_HEADER.as_bytes())
        .with_context(|| format!("cannot write {ACCEL_CSV}"))?;
    Ok(Some(w))
}
