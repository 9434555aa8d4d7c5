//! `framerec stats DIR --plot OUT.svg|OUT.png`: what a person would rather look at than read.
//!
//! Two panels: the latency percentile distribution of the whole recording (the classic
//! HdrHistogram plot, percentiles on a log scale of 1/(1-q)), and write latency p50/p99/max and
//! capture-to-written p99 per interval over time, with intervals that dropped frames marked.
//!
//! Text needs a TrueType font, read at run time (no system library is linked): `$FRAMEREC_FONT`
//! or the first of a few common paths (Debian's `fonts-dejavu-core` provides one).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::hlog::{ByTag, Report};

/// Font files tried in order when `$FRAMEREC_FONT` is not set.
const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(
        "no TrueType font found for the plot's text (tried $FRAMEREC_FONT and {tried}); install fonts-dejavu-core or set FRAMEREC_FONT"
    )]
    NoFont { tried: String },
    #[error("cannot use the font {path}: {why}")]
    BadFont { path: PathBuf, why: String },
    #[error("the plot file must end in .svg or .png: {0}")]
    Format(PathBuf),
    #[error("nothing to plot: the interval logs hold no latency samples")]
    Empty,
    #[error("drawing {path} failed: {why}")]
    Draw { path: PathBuf, why: String },
    #[error("cannot write the plot {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Registers a TrueType font for plotters' text (`$FRAMEREC_FONT` or a common path).
pub fn load_font() -> Result<(), PlotError> {
    let candidates: Vec<PathBuf> = std::env::var_os("FRAMEREC_FONT")
        .map(PathBuf::from)
        .into_iter()
        .chain(FONT_PATHS.iter().map(PathBuf::from))
        .collect();
    let Some(path) = candidates.iter().find(|p| p.is_file()) else {
        return Err(PlotError::NoFont {
            tried: FONT_PATHS.join(", "),
        });
    };
    let bad = |why: String| PlotError::BadFont {
        path: path.clone(),
        why,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    // plotters keeps registered fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| bad("not a TrueType font".into()))
}

/// The series drawn in the distribution panel: tag, label, colour.
const DISTRIBUTION: [(&str, &str, RGBColor); 4] = [
    ("write", "write", RGBColor(31, 119, 180)),
    (
        "capture-to-written",
        "capture to written",
        RGBColor(255, 127, 14),
    ),
    (
        "capture-to-durable",
        "capture to durable",
        RGBColor(44, 160, 44),
    ),
    ("fsync", "fsync", RGBColor(148, 103, 189)),
];

/// Draws `report`'s plot into `out` (`.svg` or `.png`, by extension).
pub fn plot(report: &Report, merged: &ByTag, out: &Path) -> Result<(), PlotError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let size = (1100, 800);
    load_font()?;
    let draw = |e: String| PlotError::Draw {
        path: out.to_path_buf(),
        why: e,
    };
    // Draws and flushes on either backend.
    fn finish<DB: DrawingBackend>(
        root: DrawingArea<DB, Shift>,
        report: &Report,
        merged: &ByTag,
    ) -> Result<(), String> {
        draw_all(&root, report, merged)?;
        root.present().map_err(|e| e.to_string())
    }
    // Drawn in memory and written here, so that a file that cannot be written is reported as
    // such (plotters' own file backends report it as a debug dump of their error types).
    let bytes = match ext.as_deref() {
        Some("svg") => {
            let mut svg = String::new();
            finish(
                SVGBackend::with_string(&mut svg, size).into_drawing_area(),
                report,
                merged,
            )
            .map_err(draw)?;
            svg.into_bytes()
        }
        Some("png") => {
            let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
            finish(
                BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area(),
                report,
                merged,
            )
            .map_err(draw)?;
            rgb_png(&rgb, size).map_err(|e| draw(e.to_string()))?
        }
        _ => return Err(PlotError::Format(out.to_path_buf())),
    };
    std::fs::write(out, bytes).map_err(|error| PlotError::Write {
        path: out.to_path_buf(),
        error,
    })
}

/// An 8-bit RGB image as PNG bytes.
fn rgb_png(rgb: &[u8], (width, height): (u32, u32)) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()?;
    Ok(out)
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6).max(1e-3)
}

fn draw_all<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
    all: &ByTag,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let has_samples = DISTRIBUTION
        .iter()
        .any(|(tag, _, _)| all.get(*tag).is_some_and(|h| !h.is_empty()));
    if !has_samples {
        return Err(PlotError::Empty.to_string());
    }
    let written: u64 = report.intervals.iter().map(|i| i.written).sum();
    let dropped: u64 = report.intervals.iter().map(|i| i.dropped).sum();
    let title = format!(
        "framerec latency: {} interval(s), {written} frames written, {dropped} dropped",
        report.intervals.len()
    );
    let root = root
        .titled(&title, ("sans-serif", 22))
        .map_err(e)?
        .margin(5, 5, 10, 40);
    let (top, bottom) = root.split_vertically(380);

    draw_distribution(&top, all)?;
    draw_over_time(&bottom, report)
}

/// The top panel: latency by percentile over the whole recording, one line per histogram
/// (x = 1/(1-q), log scale).
fn draw_distribution<DB: DrawingBackend>(
    top: &DrawingArea<DB, Shift>,
    all: &ByTag,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let max_ms = DISTRIBUTION
        .iter()
        .filter_map(|(t, _, _)| all.get(*t).filter(|h| !h.is_empty()))
        .map(|h| ms(h.max()))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(top)
        .caption("latency by percentile, whole recording", ("sans-serif", 17))
        .margin(8)
        .x_label_area_size(35)
        .y_label_area_size(65)
        .build_cartesian_2d(
            (1f64..1e5f64).log_scale(),
            (0.01f64..max_ms * 2.0).log_scale(),
        )
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 1.0 / x);
            if q < 1.0 {
                "0%".into()
            } else {
                format!("{}%", trim(q))
            }
        })
        .y_label_formatter(&|y| trim(*y))
        .draw()
        .map_err(e)?;
    for (tag, label, colour) in DISTRIBUTION {
        let Some(h) = all.get(tag).filter(|h| !h.is_empty()) else {
            continue;
        };
        let points: Vec<(f64, f64)> = (0..=250)
            .map(|i| {
                let x = 10f64.powf(i as f64 * 5.0 / 250.0);
                let q = (1.0 - 1.0 / x).clamp(0.0, 1.0);
                (x, ms(h.value_at_quantile(q)))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(e)?
            .label(format!(
                "{label} (n={}, max {:.2} ms)",
                h.len(),
                ms(h.max())
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
    }
    draw_legend(&mut chart)?;

    Ok(())
}

/// The bottom panel: write and capture-to-written latency per interval, with the intervals
/// that dropped frames marked in red.
fn draw_over_time<DB: DrawingBackend>(
    bottom: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let end = report
        .intervals
        .iter()
        .map(|i| i.start_s + i.length_s)
        .fold(1.0, f64::max);
    let per = |tag: &str, pick: fn(&crate::observe::Percentiles) -> u64| -> Vec<(f64, f64)> {
        report
            .intervals
            .iter()
            .filter_map(|i| {
                let p = i.histograms.get(tag).filter(|p| p.count > 0)?;
                Some((i.start_s + i.length_s, ms(pick(p))))
            })
            .collect()
    };
    let series = [
        ("write p50", per("write", |p| p.p50), RGBColor(31, 119, 180)),
        ("write max", per("write", |p| p.max), RGBColor(214, 39, 40)),
        ("write p99", per("write", |p| p.p99), RGBColor(255, 127, 14)),
        (
            "capture to written p99",
            per("capture-to-written", |p| p.p99),
            RGBColor(44, 160, 44),
        ),
    ];
    let top_ms = series
        .iter()
        .flat_map(|(_, s, _)| s.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(bottom)
        .caption(
            "per interval (red marks: intervals that dropped frames)",
            ("sans-serif", 17),
        )
        .margin(8)
        .x_label_area_size(35)
        .y_label_area_size(65)
        .build_cartesian_2d(0f64..end, (0.01f64..top_ms * 2.0).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms)")
        .y_label_formatter(&|y| trim(*y))
        .draw()
        .map_err(e)?;
    for (label, points, colour) in series {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 2, colour.filled())))
            .map_err(e)?;
    }
    mark_drops(&mut chart, report, top_ms * 2.0)?;
    draw_legend(&mut chart)?;
    Ok(())
}

/// A panel's legend, in its lower right corner.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|x| x.to_string())
}

/// A red line at the end of every interval that dropped frames, up to `top`, with the count.
fn mark_drops<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, LogCoord<f64>>>,
    report: &Report,
    top: f64,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let red = RGBColor(220, 0, 0);
    for i in report.intervals.iter().filter(|i| i.dropped > 0) {
        let x = i.start_s + i.length_s;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.01), (x, top)],
                red.mix(0.5).stroke_width(3),
            )))
            .map_err(e)?;
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{} dropped", i.dropped),
                (x, top * 0.6),
                ("sans-serif", 12).into_font().color(&red),
            )))
            .map_err(e)?;
    }
    Ok(())
}

/// `2.5`, `0.01`, `100`: a number without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}
