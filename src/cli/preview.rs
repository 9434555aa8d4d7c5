//! `framerec preview PATH --out contact.png`: a contact sheet of evenly spaced frames of an
//! image stream, each with its number and time since the stream's first frame, depth through a
//! colour map; to see what a recording holds without exporting it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use framerec::export::colormap::{Colormap, DepthRange, depth_to_rgb};
use framerec::segment::decode_raw_image;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recording directory or segment file.
    path: PathBuf,
    /// The PNG to write.
    #[arg(long)]
    out: PathBuf,
    /// Replace `--out` if it exists.
    #[arg(long)]
    force: bool,
    /// The image stream, by name [default: depth, else the first image stream].
    #[arg(long)]
    stream: Option<String>,
    /// Frames on the sheet, evenly spaced over the stream (2-100).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(2..=100))]
    frames: u32,
    /// Thumbnails per row (1-20).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    columns: u32,
    /// Thumbnail width in pixels (32-1024); heights keep the frames' aspect.
    #[arg(long, default_value_t = 320, value_parser = clap::value_parser!(u32).range(32..=1024))]
    width: u32,
    /// Colour map for depth.
    #[arg(long, value_enum, default_value_t = Colormap::Turbo)]
    colormap: Colormap,
    /// Depth samples at the colour map's ends: `MIN:MAX` or `auto` (each frame's own span).
    #[arg(long, default_value = "auto")]
    range: DepthRange,
}

/// Height of the label strip under each thumbnail.
const LABEL_HEIGHT: u32 = 22;

/// One thumbnail: 8-bit RGB, `width` x `height`, and its label.
struct Thumb {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
    label: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.out.exists() && !args.force {
        bail!("{} exists; --force replaces it", args.out.display());
    }
    if args
        .out
        .extension()
        .is_none_or(|e| !e.eq_ignore_ascii_case("png"))
    {
        bail!(
            "the contact sheet is a PNG: {} must end in .png",
            args.out.display()
        );
    }
    let segments = super::segment_paths(&args.path)?;
    let files: Vec<PathBuf> = segments.paths.into_iter().chain(segments.live).collect();
    let stream = pick_stream(&args, &files[0])?;
    let total = count_frames(&files, &stream)?;
    if total == 0 {
        bail!("stream {stream} of {} holds no frames", args.path.display());
    }
    let wanted = spaced(total, u64::from(args.frames));
    let thumbs = collect(&args, &files, &stream, &wanted)?;
    let sheet = compose(&thumbs, args.columns)?;
    std::fs::write(&args.out, sheet)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "contact sheet of {} frame(s) of {stream} ({total} in all) written to {}",
        thumbs.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The stream asked for, or depth, or the first image stream of the first segment (as
/// `export` chooses), which must be an image stream.
fn pick_stream(args: &Args, first: &Path) -> anyhow::Result<String> {
    use framerec::segment::{FileSource, StreamKind, scan_head};
    let cannot = || format!("cannot read {}", first.display());
    let head = scan_head(&FileSource::open(first).with_context(cannot)?).with_context(cannot)?;
    let chosen = super::export::chosen_stream(&head, args.stream.as_deref())
        .filter(|s| s.kind == StreamKind::Image);
    if let Some(s) = chosen {
        return Ok(s.name.clone());
    }
    let images: Vec<&str> = head
        .streams
        .iter()
        .filter(|s| s.kind == StreamKind::Image)
        .map(|s| s.name.as_str())
        .collect();
    bail!(
        "{} has no image stream{}; its image streams: {}",
        first.display(),
        args.stream
            .as_ref()
            .map(|s| format!(" named {s}"))
            .unwrap_or_default(),
        if images.is_empty() {
            "none".into()
        } else {
            images.join(", ")
        }
    )
}

fn count_frames(files: &[PathBuf], stream: &str) -> anyhow::Result<u64> {
    let mut n = 0u64;
    for f in files {
        super::export::each_frame(f, stream, |_, _, _| {
            n += 1;
            Ok(())
        })?;
    }
    Ok(n)
}

/// `count` frame places (0-based) evenly spaced over `total` frames, first and last included
/// (fewer when the stream is shorter).
fn spaced(total: u64, count: u64) -> Vec<u64> {
    if total <= count {
        return (0..total).collect();
    }
    let mut out: Vec<u64> = (0..count).map(|k| k * (total - 1) / (count - 1)).collect();
    out.dedup();
    out
}

/// The thumbnails of the frames at places `wanted` (ascending) of `stream`.
fn collect(
    args: &Args,
    files: &[PathBuf],
    stream: &str,
    wanted: &[u64],
) -> anyhow::Result<Vec<Thumb>> {
    let mut thumbs = Vec::with_capacity(wanted.len());
    let mut place = 0u64;
    let mut next = wanted.iter().peekable();
    let mut first_time = None;
    for f in files {
        super::export::each_frame(f, stream, |m, _, data| {
            let t0 = *first_time.get_or_insert(m.log_time);
            if next.peek() == Some(&&place) {
                next.next();
                let img = decode_raw_image(data)
                    .map_err(|e| anyhow::anyhow!("frame {}: {e}", m.sequence))?;
                let rgb = match img.encoding {
                    "rgb8" => img.data.to_vec(),
                    "16UC1" | "mono16" => depth_to_rgb(img.data, args.colormap, args.range),
                    other => bail!("frame {}: cannot draw encoding {other}", m.sequence),
                };
                let expected = img.width as usize * img.height as usize * 3;
                if rgb.len() != expected {
                    bail!(
                        "frame {}: {} bytes for {}x{}",
                        m.sequence,
                        img.data.len(),
                        img.width,
                        img.height
                    );
                }
                let secs = m.log_time.saturating_sub(t0) as f64 / 1e9;
                let (w, h, small) = shrink(&rgb, img.width, img.height, args.width);
                thumbs.push(Thumb {
                    width: w,
                    height: h,
                    rgb: small,
                    label: format!("#{}  +{secs:.3} s", m.sequence),
                });
            }
            place += 1;
            Ok(())
        })?;
    }
    Ok(thumbs)
}

/// `rgb` (`w` x `h`) scaled by nearest neighbour to `to_width` wide (never up).
fn shrink(rgb: &[u8], w: u32, h: u32, to_width: u32) -> (u32, u32, Vec<u8>) {
    let tw = to_width.min(w).max(1);
    let th = ((u64::from(h) * u64::from(tw)) / u64::from(w.max(1))).max(1) as u32;
    let mut out = Vec::with_capacity(tw as usize * th as usize * 3);
    for y in 0..th {
        let sy = (u64::from(y) * u64::from(h) / u64::from(th)) as usize;
        for x in 0..tw {
            let sx = (u64::from(x) * u64::from(w) / u64::from(tw)) as usize;
            let i = (sy * w as usize + sx) * 3;
            out.extend_from_slice(&rgb[i..i + 3]);
        }
    }
    (tw, th, out)
}

/// The sheet as PNG bytes: thumbnails in rows of `columns`, each with its label under it.
fn compose(thumbs: &[Thumb], columns: u32) -> anyhow::Result<Vec<u8>> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let cell_w = thumbs.iter().map(|t| t.width).max().unwrap_or(1) + 8;
    let cell_h = thumbs.iter().map(|t| t.height).max().unwrap_or(1) + LABEL_HEIGHT + 8;
    let cols = columns.min(thumbs.len() as u32).max(1);
    let rows = (thumbs.len() as u32).div_ceil(cols).max(1);
    let (width, height) = (cols * cell_w, rows * cell_h);
    let mut canvas = vec![255u8; width as usize * height as usize * 3];
    for (k, t) in thumbs.iter().enumerate() {
        let (cx, cy) = (
            (k as u32 % cols) * cell_w + 4,
            (k as u32 / cols) * cell_h + 4,
        );
        for y in 0..t.height {
            let src = &t.rgb[(y * t.width * 3) as usize..((y + 1) * t.width * 3) as usize];
            let at = (((cy + y) * width + cx) * 3) as usize;
            canvas[at..at + src.len()].copy_from_slice(src);
        }
    }
    framerec::plot::load_font()?;
    {
        let area = BitMapBackend::with_buffer(&mut canvas, (width, height)).into_drawing_area();
        let font = ("sans-serif", 14)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for (k, t) in thumbs.iter().enumerate() {
            let (cx, cy) = (
                (k as u32 % cols) * cell_w + 4,
                (k as u32 / cols) * cell_h + 4,
            );
            let y = cy + t.height + LABEL_HEIGHT / 2;
            area.draw(&Text::new(
                t.label.clone(),
                (cx as i32, y as i32),
                font.clone(),
            ))
            .map_err(|e| anyhow::anyhow!("cannot draw a label: {e}"))?;
        }
        area.present()
            .map_err(|e| anyhow::anyhow!("cannot draw the sheet: {e}"))?;
    }
    Ok(framerec::export::png_rgb8(width, height, &canvas)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_evenly_spaced_with_both_ends() {
        assert_eq!(spaced(100, 4), vec![0, 33, 66, 99]);
        assert_eq!(spaced(3, 12), vec![0, 1, 2]);
        assert_eq!(spaced(12, 12), (0..12).collect::<Vec<_>>());
        assert_eq!(spaced(13, 2), vec![0, 12]);
    }

    #[test]
    fn shrinking_keeps_the_aspect_and_never_grows() {
        let rgb: Vec<u8> = (0..(8 * 4 * 3)).map(|i| i as u8).collect();
        let (w, h, out) = shrink(&rgb, 8, 4, 4);
        assert_eq!((w, h, out.len()), (4, 2, 4 * 2 * 3));
        assert_eq!(&out[0..3], &rgb[0..3]);
        let (w, h, _) = shrink(&rgb, 8, 4, 100);
        assert_eq!((w, h), (8, 4));
    }
}
