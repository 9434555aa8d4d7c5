//! `framerec verify PATH... [--json]`: exit 0 only if every recording is intact. Each stream
//! of a recording is checked on its own (its frames and drop notices cover its numbers from 0);
//! the report has a line (JSON: an entry of `streams`) per stream. The segments a running
//! recorder is still writing are read as far as they are written (their frames so far, JSON
//! `being_written_so_far`), not verified: their unfinished ends are not damage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use framerec::segment::{RecordingReport, SegmentReport, verify_file, verify_recording};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recording directories or segment files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

/// What verifying a recording found, and what it left for its recorder to finish.
pub struct Checked {
    pub report: RecordingReport,
    /// Segments a running recorder is still writing: not verified, not damage.
    pub live: Vec<PathBuf>,
    pub writer: Option<framerec::store::lock::Holder>,
}

impl Checked {
    /// The line naming the segments still being written, if any.
    pub fn live_line(&self) -> Option<String> {
        let w = self.writer?;
        (!self.live.is_empty()).then(|| {
            let names: Vec<String> = self.live.iter().map(|p| p.display().to_string()).collect();
            format!(
                "{} still being written by a running recorder ({w}): not verified until it is finished",
                names.join(", ")
            )
        })
    }
}

/// A read of the segments a running recorder is still writing, as far as they are written:
/// the frames they hold so far. Their unfinished ends are not damage.
pub(super) fn read_live(live: &[PathBuf]) -> anyhow::Result<Vec<SegmentReport>> {
    live.iter()
        .map(|f| verify_file(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display())))
        .collect()
}

/// Verifies one recording directory, or one segment file on its own. The newest segments of a
/// recording that a recorder is writing are set apart, not verified.
pub fn verify_path(path: &std::path::Path) -> anyhow::Result<Checked> {
    let segments = super::segment_paths(path)?;
    let files = &segments.paths;
    let mut reports = Vec::with_capacity(files.len());
    let mut budget = framerec::segment::RecordingBudget::default();
    let bar = super::bytes_progress(files);
    for f in files {
        let mut r =
            verify_file(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        bar.inc(r.bytes);
        budget.admit(&mut r);
        reports.push(r);
    }
    bar.finish_and_clear();
    Ok(Checked {
        report: verify_recording(reports, segments.starts_at_zero),
        live: segments.live,
        writer: segments.writer,
    })
}

/// A fakenect-layout directory: INDEX.txt and no segments.
fn is_fakenect_dump(path: &Path) -> bool {
    path.join(framerec::sink::fakenect::INDEX).is_file()
        && framerec::sink::existing_segments(path).is_ok_and(|s| s.is_empty())
}

/// What verifying a fakenect-layout directory found.
#[derive(Debug, serde::Serialize)]
struct DumpReport {
    ok: bool,
    frames: u64,
    dropped: u64,
    /// Per stream (depth, color, accel): frames in INDEX.txt and frames DROPS.txt lists.
    streams: std::collections::BTreeMap<String, StreamCount>,
    problem: Option<String>,
    /// Frame files no INDEX.txt line names (a crash between rename and index): harmless.
    orphans: usize,
}

#[derive(Debug, Default, serde::Serialize)]
struct StreamCount {
    frames: u64,
    dropped: u64,
}

/// Reads every frame the dump's INDEX.txt names, as a replay would, and its DROPS.txt.
fn verify_dump(path: &Path) -> DumpReport {
    use framerec::source::{FakenectConfig, FakenectSource, Source, dump_streams};
    let mut report = DumpReport {
        ok: false,
        frames: 0,
        dropped: 0,
        streams: Default::default(),
        problem: None,
        orphans: 0,
    };
    use framerec::sink::fakenect::{DROPS, DropsError, dropped_frames, read_drops};
    let drops = match std::fs::File::open(path.join(DROPS)) {
        Ok(f) => read_drops(std::io::BufReader::new(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(DropsError::Io(e)),
    };
    let drops = drops.map_err(|e| format!("{}: {e}", path.display()));
    for d in drops.iter().flatten() {
        let count = report.streams.entry(d.stream.clone()).or_default();
        count.dropped = count.dropped.saturating_add(dropped_frames([d]));
    }
    report.dropped = drops.as_ref().map_or(0, dropped_frames);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut listed = std::collections::HashSet::new();
    let result = dump_streams(path).and_then(|streams| {
        let mut src = FakenectSource::open(FakenectConfig {
            dir: path.to_path_buf(),
            paced: false,
            looped: false,
            topic: String::new(),
            frame_id: String::new(),
            streams,
        })?;
        listed.extend(src.files().map(str::to_string));
        let largest = src.streams().iter().map(|s| s.frame_bytes()).max();
        let mut buf = framerec::frame::FrameBuf::new(largest.unwrap_or(0));
        loop {
            let s = src.next_stream(&stop)?;
            if src.next_frame(&mut buf, &stop)?.is_none() {
                break;
            }
            let name = src.streams()[s.index()].name.clone();
            report.streams.entry(name).or_default().frames += 1;
            report.frames += 1;
        }
        Ok(())
    });
    let frame_file = |n: &str| {
        [("d-", ".pgm"), ("r-", ".ppm"), ("a-", ".dump")]
            .iter()
            .any(|(p, e)| n.starts_with(p) && n.ends_with(e))
    };
    // Orphans only make sense against an index that could be read.
    report.orphans = std::fs::read_dir(path)
        .ok()
        .filter(|_| result.is_ok())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| frame_file(n) && !listed.contains(n))
                .count()
        })
        .unwrap_or(0);
    match (result, drops) {
        (Ok(()), Ok(_)) => report.ok = true,
        (Err(e), _) => report.problem = Some(e.to_string()),
        (_, Err(e)) => report.problem = Some(e),
    }
    report
}

/// ` [depth 40 frames, color 40 frames, accel 39 frames + 1 dropped]` for a dump of more than
/// one stream.
fn per_stream(r: &DumpReport) -> String {
    if r.streams.len() < 2 {
        return String::new();
    }
    let each: Vec<String> = r
        .streams
        .iter()
        .map(|(name, c)| match c.dropped {
            0 => format!("{name} {} frames", c.frames),
            d => format!("{name} {} frames + {d} dropped", c.frames),
        })
        .collect();
    format!(" [{}]", each.join(", "))
}

/// Frames dropped by reason, as `reason n, reason n` (or `none`).
pub fn dropped_text(dropped: &std::collections::BTreeMap<String, u64>) -> String {
    if dropped.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

/// One stream of a recording: name, topic, then its [`stream_counts`].
pub fn stream_line(st: &framerec::segment::StreamReport) -> String {
    format!("stream {} ({}): {}", st.name, st.topic, stream_counts(st))
}

/// A stream's frames, sequence numbers and drops by reason.
pub fn stream_counts(st: &framerec::segment::StreamReport) -> String {
    let (dropped, paused) = without_paused(&st.dropped);
    format!(
        "{} frames{}, dropped: {}{}",
        st.frames,
        match (st.first_seq, st.last_seq) {
            (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
            _ => String::new(),
        },
        dropped_text(&dropped),
        paused_text(paused)
    )
}

/// Frames by notice reason split into drops and the frames skipped while the recorder was
/// paused (notices of reason `paused`: gaps made on purpose, not losses).
fn without_paused(
    by_reason: &std::collections::BTreeMap<String, u64>,
) -> (std::collections::BTreeMap<String, u64>, u64) {
    let mut dropped = by_reason.clone();
    let paused = dropped.remove("paused").unwrap_or(0);
    (dropped, paused)
}

/// `, N skipped while paused (framerec ctl pause)`, or nothing.
fn paused_text(paused: u64) -> String {
    match paused {
        0 => String::new(),
        n => format!(", {n} skipped while paused (framerec ctl pause; not lost)"),
    }
}

/// Prints what verifying the fakenect-layout directory `path` found.
fn print_dump(path: &Path, r: &DumpReport) -> anyhow::Result<()> {
    if let Some(p) = &r.problem {
        outln!("  {p}");
    }
    outln!(
        "{}: {}: {} frames in INDEX.txt (fakenect layout), {} dropped (DROPS.txt){}{}",
        path.display(),
        if r.ok { "OK" } else { "FAILED" },
        r.frames,
        r.dropped,
        per_stream(r),
        if r.orphans > 0 {
            format!(
                ", {} frame file(s) not in INDEX.txt (left by a crash; ignored by replays)",
                r.orphans
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// A segment's line: name, state, frames and their numbers, finalized or not.
pub(super) fn segment_line(s: &SegmentReport, state: &str) -> String {
    format!(
        "{}  {state}  {} frames{}  {}",
        s.name,
        s.frames,
        match (s.first_seq, s.last_seq) {
            (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
            _ => String::new(),
        },
        if s.finalized {
            "finalized"
        } else {
            "unfinished"
        }
    )
}

/// Prints what verifying the recording `path` found; `live` are the reads so far of the
/// segments its recorder is still writing.
fn print_recording(path: &Path, checked: &Checked, live: &[SegmentReport]) -> anyhow::Result<()> {
    let report = &checked.report;
    for s in &report.segments {
        outln!("{}", segment_line(s, if s.ok() { "ok" } else { "DAMAGED" }));
        for what in &s.not_checked {
            outln!("    not checked: {what}");
        }
        print_problems("    ", &s.problems, s.problems_not_listed)?;
    }
    for s in live {
        outln!("{}", segment_line(s, "being written"));
    }
    print_problems("  ", &report.problems, report.problems_not_listed)?;
    if let Some(line) = checked.live_line() {
        outln!("  {line}");
    }
    for st in &report.streams {
        outln!("  {}", stream_line(st));
    }
    let (dropped, paused) = without_paused(&report.dropped);
    let drops: Vec<String> = dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
    outln!(
        "{}: {}: {} frames written, {} dropped and recorded as gaps{}{}{}",
        path.display(),
        if report.ok { "OK" } else { "FAILED" },
        report.frames,
        dropped.values().sum::<u64>(),
        if drops.is_empty() {
            String::new()
        } else {
            format!(" ({})", drops.join(", "))
        },
        paused_text(paused),
        live_frames_text(live)
    );
    Ok(())
}

/// The problems listed, each on a line of its own after `indent`, and how many more were not.
fn print_problems<P: std::fmt::Display>(
    indent: &str,
    listed: &[P],
    not_listed: u64,
) -> anyhow::Result<()> {
    for p in listed {
        outln!("{indent}{p}");
    }
    if not_listed > 0 {
        outln!("{indent}... and {not_listed} more problems (not listed)");
    }
    Ok(())
}

/// `; N frames so far in the unfinished segment being written` when a recorder is at work.
pub(super) fn live_frames_text(live: &[SegmentReport]) -> String {
    let frames: u64 = live.iter().map(|s| s.frames).sum();
    match live.len() {
        0 => String::new(),
        1 => format!("; {frames} frames so far in the unfinished segment being written"),
        n => format!("; {frames} frames so far in the {n} unfinished segments being written"),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut all_ok = true;
    let mut out = Vec::new();
    for path in &args.paths {
        if is_fakenect_dump(path) {
            let r = verify_dump(path);
            all_ok &= r.ok;
            if args.json {
                out.push(serde_json::json!({ "path": path, "fakenect": r }));
            } else {
                print_dump(path, &r)?;
            }
            continue;
        }
        let read = verify_path(path).and_then(|c| Ok((read_live(&c.live)?, c)));
        let (live, checked) = match read {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                all_ok = false;
                continue;
            }
        };
        // The unfinished ends of the segments being written are not damage: only the
        // finished segments decide.
        all_ok &= checked.report.ok;
        if args.json {
            out.push(serde_json::json!({
                "path": path,
                "report": checked.report,
                "being_written": checked.live,
                "being_written_so_far": live,
                "writer_pid": checked.writer.and_then(|w| w.pid),
            }));
        } else {
            print_recording(path, &checked, &live)?;
        }
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
