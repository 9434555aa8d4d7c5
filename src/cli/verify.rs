//! `framerec verify PATH... [--json]`: exit 0 only if every recording is intact. Each stream
//! of a recording is checked on its own (its frames and drop notices cover its numbers from 0);
//! the report has a line (JSON: an entry of `streams`) per stream.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use framerec::segment::{RecordingReport, verify_file, verify_recording};

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

/// Verifies one recording directory, or one segment file on its own. The newest segments of a
/// recording that a recorder is writing are set apart, not verified.
pub fn verify_path(path: &std::path::Path) -> anyhow::Result<Checked> {
    let segments = super::segment_paths(path)?;
    let files = &segments.paths;
    let mut reports = Vec::with_capacity(files.len());
    let mut budget = framerec::segment::RecordingBudget::default();
    for f in files {
        let mut r =
            verify_file(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        budget.admit(&mut r);
        reports.push(r);
    }
    Ok(Checked {
        report: verify_recording(reports, segments.starts_at_zero),
        live: segments.live,
        writer: segments.writer,
    })
}

/// A fakenect-layout directory: INDEX.txt and no segments.
fn is_fakenect_dump(path: &Path) -> bool {
    path.join(framerec::writer::files::INDEX).is_file()
        && framerec::writer::existing_segments(path).is_ok_and(|s| s.is_empty())
}

/// What verifying a fakenect-layout directory found.
#[derive(Debug, serde::Serialize)]
struct DumpReport {
    ok: bool,
    frames: u64,
    dropped: u64,
    problem: Option<String>,
    /// Frame files no INDEX.txt line names (a crash between rename and index): harmless.
    orphans: usize,
}

/// Reads every frame the dump's INDEX.txt names, as a replay would, and its DROPS.txt.
fn verify_dump(path: &Path) -> DumpReport {
    use framerec::source::{FakenectConfig, FakenectSource, Source};
    let mut report = DumpReport {
        ok: false,
        frames: 0,
        dropped: 0,
        problem: None,
        orphans: 0,
    };
    use framerec::writer::files::{DROPS, DropsError, dropped_frames, read_drops};
    let drops = match std::fs::File::open(path.join(DROPS)) {
        Ok(f) => read_drops(std::io::BufReader::new(f)).map(|d| dropped_frames(&d)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(DropsError::Io(e)),
    };
    let drops = drops.map_err(|e| format!("{}: {e}", path.display()));
    report.dropped = *drops.as_ref().unwrap_or(&0);
    let cfg = FakenectConfig {
        dir: path.to_path_buf(),
        paced: false,
        looped: false,
        topic: String::new(),
        frame_id: String::new(),
        streams: framerec::source::KinectStream::default_table(),
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut listed = std::collections::HashSet::new();
    let result = FakenectSource::open(cfg).and_then(|mut src| {
        listed.extend(src.depth_files().map(str::to_string));
        let mut buf = framerec::frame::FrameBuf::new(src.streams()[0].frame_bytes());
        while src.next_frame(&mut buf, &stop)?.is_some() {
            report.frames += 1;
        }
        Ok(())
    });
    // Orphans only make sense against an index that could be read.
    report.orphans = std::fs::read_dir(path)
        .ok()
        .filter(|_| result.is_ok())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("d-") && n.ends_with(".pgm") && !listed.contains(n))
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

/// Frames dropped by reason, as `reason n, reason n` (or `none`).
pub fn dropped_text(dropped: &std::collections::BTreeMap<String, u64>) -> String {
    if dropped.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
    parts.join(", ")
}

/// One stream of a recording: name, topic, frames, sequence numbers, drops by reason.
pub fn stream_line(st: &framerec::segment::StreamReport) -> String {
    format!(
        "stream {} ({}): {} frames{}, dropped: {}",
        st.name,
        st.topic,
        st.frames,
        match (st.first_seq, st.last_seq) {
            (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
            _ => String::new(),
        },
        dropped_text(&st.dropped)
    )
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
                continue;
            }
            if let Some(p) = &r.problem {
                outln!("  {p}");
            }
            outln!(
                "{}: {}: {} frames in INDEX.txt (fakenect layout), {} dropped (DROPS.txt){}",
                path.display(),
                if r.ok { "OK" } else { "FAILED" },
                r.frames,
                r.dropped,
                if r.orphans > 0 {
                    format!(
                        ", {} frame file(s) not in INDEX.txt (left by a crash; ignored by replays)",
                        r.orphans
                    )
                } else {
                    String::new()
                }
            );
            continue;
        }
        let checked = match verify_path(path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                all_ok = false;
                continue;
            }
        };
        let report = &checked.report;
        all_ok &= report.ok;
        if args.json {
            out.push(serde_json::json!({
                "path": path,
                "report": report,
                "being_written": checked.live,
                "writer_pid": checked.writer.and_then(|w| w.pid),
            }));
            continue;
        }
        for s in &report.segments {
            outln!(
                "{}  {}  {} frames{}  {}",
                s.name,
                if s.ok() { "ok" } else { "DAMAGED" },
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
            );
            for p in &s.problems {
                outln!("    {p}");
            }
            if s.problems_not_listed > 0 {
                outln!(
                    "    ... and {} more problems (not listed)",
                    s.problems_not_listed
                );
            }
        }
        for p in &report.problems {
            outln!("  {p}");
        }
        if report.problems_not_listed > 0 {
            outln!(
                "  ... and {} more problems (not listed)",
                report.problems_not_listed
            );
        }
        if let Some(line) = checked.live_line() {
            println!("  {line}");
        }
        for st in &report.streams {
            outln!("  {}", stream_line(st));
        }
        let drops: Vec<String> = report
            .dropped
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        outln!(
            "{}: {}: {} frames written, {} dropped and recorded as gaps{}",
            path.display(),
            if report.ok { "OK" } else { "FAILED" },
            report.frames,
            report.dropped.values().sum::<u64>(),
            if drops.is_empty() {
                String::new()
            } else {
                format!(" ({})", drops.join(", "))
            }
        );
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
