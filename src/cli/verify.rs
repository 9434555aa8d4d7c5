//! `framerec verify PATH... [--json]`: exit 0 only if every recording is intact.

use std::path::PathBuf;
use std::process::ExitCode;

use framerec::segment::{RecordingReport, verify_recording, verify_segment};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recording directories or segment files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

/// Verifies one recording directory, or one segment file on its own.
pub fn verify_path(path: &std::path::Path) -> anyhow::Result<RecordingReport> {
    let segments = super::segment_paths(path)?;
    let files = &segments.paths;
    let mut reports = Vec::with_capacity(files.len());
    for f in files {
        let bytes =
            std::fs::read(f).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", f.display()))?;
        reports.push(verify_segment(&f.display().to_string(), &bytes));
    }
    Ok(verify_recording(reports, segments.starts_at_zero))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut all_ok = true;
    let mut out = Vec::new();
    for path in &args.paths {
        let report = match verify_path(path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                all_ok = false;
                continue;
            }
        };
        all_ok &= report.ok;
        if args.json {
            out.push(serde_json::json!({ "path": path, "report": report }));
            continue;
        }
        for s in &report.segments {
            println!(
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
                println!("    {p}");
            }
        }
        for p in &report.problems {
            println!("  {p}");
        }
        let drops: Vec<String> = report
            .dropped
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!(
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
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
