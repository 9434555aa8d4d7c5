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
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

/// Colours of the series, one per series over both panels (Tableau's palette, without its red:
/// red marks the intervals that dropped frames).
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const BROWN: RGBColor = RGBColor(140, 86, 75);
const PINK: RGBColor = RGBColor(227, 119, 194);
const GREY: RGBColor = RGBColor(90, 90, 90);
const CYAN: RGBColor = RGBColor(23, 190, 207);
/// The drop markers' colour, used by no series.
const DROP_RED: RGBColor = RGBColor(220, 0, 0);

/// The series drawn in the distribution panel: tag, label, colour.
const DISTRIBUTION: [(&str, &str, RGBColor); 4] = [
    ("write", "write", BLUE),
    ("capture-to-written", "capture to written", ORANGE),
    ("capture-to-durable", "capture to durable", GREEN),
    ("fsync", "fsync", PURPLE),
];

/// Intervals that dropped frames labelled with their count; more are only marked.
const MAX_DROP_LABELS: usize = 12;

/// Width of the area right of each panel that holds its legend, so it never covers data.
const LEGEND_WIDTH: u32 = 285;

/// One legend line: a sample of the series' line (dashed or not) and its label.
struct LegendEntry {
    label: String,
    /// A second, smaller line under the label (counts, maxima).
    detail: Option<String>,
    colour: RGBColor,
    dashed: bool,
}

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
/// (x = 1/(1-q), log scale); its legend to the right.
fn draw_distribution<DB: DrawingBackend>(
    top: &DrawingArea<DB, Shift>,
    all: &ByTag,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let (plot_area, legend_area) = top.split_horizontally(top.dim_in_pixel().0 - LEGEND_WIDTH);
    let max_ms = DISTRIBUTION
        .iter()
        .filter_map(|(t, _, _)| all.get(*t).filter(|h| !h.is_empty()))
        .map(|h| ms(h.max()))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&plot_area)
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
    let mut legend = Vec::new();
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
            .map_err(e)?;
        legend.push(LegendEntry {
            label: label.to_string(),
            detail: Some(format!("n={}, max {:.2} ms", h.len(), ms(h.max()))),
            colour,
            dashed: false,
        });
    }
    draw_legend(&legend_area, &legend)
}

/// A series over time: its points split into runs of consecutive intervals that have samples,
/// so no line crosses an interval without any.
fn runs_of(points: &[Option<(f64, f64)>]) -> Vec<Vec<(f64, f64)>> {
    points
        .split(Option::is_none)
        .filter(|run| !run.is_empty())
        .map(|run| run.iter().flatten().copied().collect())
        .collect()
}

/// The bottom panel: write and capture-to-written latency per interval, with the intervals
/// that dropped frames marked in red; its legend to the right.
fn draw_over_time<DB: DrawingBackend>(
    bottom: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let (plot_area, legend_area) =
        bottom.split_horizontally(bottom.dim_in_pixel().0 - LEGEND_WIDTH);
    let end = report
        .intervals
        .iter()
        .map(|i| i.start_s + i.length_s)
        .fold(1.0, f64::max);
    // One point per interval, None where the interval has no sample of `tag`.
    let per = |tag: &str, pick: fn(&crate::observe::Percentiles) -> u64| {
        let points: Vec<Option<(f64, f64)>> = report
            .intervals
            .iter()
            .map(|i| {
                let p = i.histograms.get(tag).filter(|p| p.count > 0)?;
                Some((i.start_s + i.length_s, ms(pick(p))))
            })
            .collect();
        points
    };
    // Drawn in this order: the max last and dashed, so the p99 under it stays visible.
    let series = [
        ("write p50", per("write", |p| p.p50), BROWN, false),
        ("write p99", per("write", |p| p.p99), PINK, false),
        (
            "capture to written p99",
            per("capture-to-written", |p| p.p99),
            CYAN,
            false,
        ),
        ("write max", per("write", |p| p.max), GREY, true),
    ];
    let top_ms = series
        .iter()
        .flat_map(|(_, s, _, _)| s.iter().flatten().map(|p| p.1))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption("per interval", ("sans-serif", 17))
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
    let mut legend = draw_runs(&mut chart, series)?;
    let drops = mark_drops(&mut chart, report, end, top_ms * 2.0)?;
    if drops > 0 {
        let frames: u64 = report.intervals.iter().map(|i| i.dropped).sum();
        legend.push(LegendEntry {
            label: "interval that dropped frames".into(),
            detail: Some(format!("{frames} frames in {drops} interval(s)")),
            colour: DROP_RED,
            dashed: false,
        });
    }
    draw_legend(&legend_area, &legend)
}

/// A series over time: label, one point per interval (None without samples), colour, dashed.
type Series<'a> = (&'a str, Vec<Option<(f64, f64)>>, RGBColor, bool);

/// Draws each series as its runs (see [`runs_of`]) with a dot per interval, dashed where asked;
/// returns their legend entries.
fn draw_runs<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, LogCoord<f64>>>,
    series: [Series<'_>; 4],
) -> Result<Vec<LegendEntry>, String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let mut legend = Vec::new();
    for (label, points, colour, dashed) in series {
        let runs = runs_of(&points);
        if runs.is_empty() {
            continue;
        }
        for run in runs {
            if dashed {
                chart
                    .draw_series(DashedLineSeries::new(
                        run.clone(),
                        6,
                        4,
                        colour.stroke_width(2),
                    ))
                    .map_err(e)?;
            } else {
                chart
                    .draw_series(LineSeries::new(run.clone(), colour.stroke_width(2)))
                    .map_err(e)?;
            }
            chart
                .draw_series(run.iter().map(|p| Circle::new(*p, 2, colour.filled())))
                .map_err(e)?;
        }
        legend.push(LegendEntry {
            label: label.to_string(),
            detail: None,
            colour,
            dashed,
        });
    }
    Ok(legend)
}

/// A legend in its own area (beside a panel, never over its data): a line sample and a label
/// per entry, labels cut to fit the area's width.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    // About 7 pixels a character at 13 px: the label never runs past the area's edge.
    let max_chars = (LEGEND_WIDTH as usize - 40) / 7;
    let fit = |text: &str| -> String {
        if text.chars().count() > max_chars {
            let cut: String = text.chars().take(max_chars - 1).collect();
            format!("{cut}…")
        } else {
            text.to_string()
        }
    };
    let mut y = 60;
    for entry in entries {
        let style = entry.colour.stroke_width(2);
        if entry.dashed {
            for x in [6, 16] {
                area.draw(&PathElement::new(vec![(x, y), (x + 6, y)], style))
                    .map_err(e)?;
            }
        } else {
            area.draw(&PathElement::new(vec![(6, y), (28, y)], style))
                .map_err(e)?;
        }
        let left = |size: u32| {
            ("sans-serif", size)
                .into_font()
                .into_text_style(area)
                .pos(Pos::new(HPos::Left, VPos::Center))
        };
        area.draw(&Text::new(fit(&entry.label), (34, y), left(13)))
            .map_err(e)?;
        if let Some(detail) = &entry.detail {
            y += 16;
            area.draw(&Text::new(fit(detail), (34, y), left(11)))
                .map_err(e)?;
        }
        y += 24;
    }
    Ok(())
}

/// A red line at the end of every interval that dropped frames, up to `top`, with the count
/// beside it (left of the line near the right edge, so it is never cut off). Returns how many
/// intervals dropped frames.
fn mark_drops<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, LogCoord<f64>>>,
    report: &Report,
    end: f64,
    top: f64,
) -> Result<usize, String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    let dropping: Vec<_> = report.intervals.iter().filter(|i| i.dropped > 0).collect();
    // Counts beside the lines only while they can stand apart (on three staggered rows); past
    // that the legend gives the total.
    let labelled = dropping.len() <= MAX_DROP_LABELS;
    for (k, i) in dropping.iter().enumerate() {
        let x = i.start_s + i.length_s;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x, 0.01), (x, top)],
                DROP_RED.mix(0.5).stroke_width(3),
            )))
            .map_err(e)?;
        if !labelled {
            continue;
        }
        let side = if x > end * 0.8 {
            HPos::Right
        } else {
            HPos::Left
        };
        let row = [0.6, 0.3, 0.15][k % 3];
        chart
            .draw_series(std::iter::once(Text::new(
                format!(" {} dropped ", i.dropped),
                (x, top * row),
                ("sans-serif", 12)
                    .into_font()
                    .color(&DROP_RED)
                    .pos(Pos::new(side, VPos::Center)),
            )))
            .map_err(e)?;
    }
    let marked = dropping.len();
    Ok(marked)
}

/// `2.5`, `0.01`, `100`: a number without trailing zeros.
fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_breaks_where_an_interval_has_no_sample() {
        let p = |x: f64| Some((x, x * 10.0));
        assert_eq!(
            runs_of(&[p(1.0), p(2.0), None, None, p(5.0), None, p(7.0), p(8.0)]),
            vec![
                vec![(1.0, 10.0), (2.0, 20.0)],
                vec![(5.0, 50.0)],
                vec![(7.0, 70.0), (8.0, 80.0)]
            ]
        );
        assert!(runs_of(&[None, None]).is_empty());
    }

    #[test]
    fn every_series_has_its_own_colour_and_none_is_the_drop_red() {
        let all = [BLUE, ORANGE, GREEN, PURPLE, BROWN, PINK, GREY, CYAN];
        for (i, a) in all.iter().enumerate() {
            assert_ne!(*a, DROP_RED);
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let top: Vec<RGBColor> = DISTRIBUTION.iter().map(|d| d.2).collect();
        for c in [BROWN, PINK, GREY, CYAN] {
            assert!(
                !top.contains(&c),
                "bottom series colours differ from the top's"
            );
        }
    }
}
