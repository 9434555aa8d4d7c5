//! `framerec info PATH`: what a recording or segment holds: per segment its channels, per
//! stream its topic, encoding and resolution (or `accelerometer`), frames, sequence numbers and
//! drops by reason. A fakenect-layout recording (`INDEX.txt` and a file per frame) gets the
//! same per stream, from its frame files and `DROPS.txt`.

use std::path::PathBuf;
use std::process::ExitCode;

use framerec::segment::{RecordingReport, StreamKind, StreamReport};

mod dump;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Recording directory or segment file.
    path: PathBuf,
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// What a stream's frames are: its encoding and resolution (from its channel's metadata in the
/// first segment that has it), or `accelerometer`.
fn describe(report: &RecordingReport, st: &StreamReport) -> String {
    if st.kind == StreamKind::Accel {
        return "accelerometer".into();
    }
    report
        .segments
        .iter()
        .map(|s| &s.contents)
        .find_map(|c| {
            let s = c.stream(&st.name)?;
            let meta = c.channel_metadata.get(&s.channel)?;
            if !meta.contains_key("encoding") {
                // Another writer's channel: the encoding and size are in each message.
                return Some("image (encoding and size in each message)".into());
            }
            let get = |k: &str| meta.get(k).map_or("?", |v| v.as_str());
            Some(format!(
                "{} {}x{}",
                get("encoding"),
                get("width"),
                get("height")
            ))
        })
        .unwrap_or_else(|| "image".into())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if framerec::store::fakenect::is_layout(&args.path) {
        return dump::run(&args.path);
    }
    let checked = super::verify::verify_path(&args.path)?;
    let report = &checked.report;
    let mut total_bytes = 0;
    for s in &report.segments {
        total_bytes += s.bytes;
        let c = &s.contents;
        outln!("{}", s.name);
        outln!(
            "  {} bytes, {}, {} chunks",
            s.bytes,
            if s.finalized {
                "finalized"
            } else {
                "unfinished (no summary)"
            },
            s.chunks
        );
        if let Some(id) = c.metadata.get("recording_id") {
            outln!(
                "  recording {id}, segment {}",
                c.metadata.get("segment_id").map_or("?", |s| s.as_str())
            );
        }
        for (id, (topic, enc)) in &c.channels {
            let n = c.channel_messages.get(id).copied().unwrap_or(0);
            let times = match c.channel_times.get(id) {
                Some((a, b)) => format!(", log time {:.3} .. {:.3}", secs(*a), secs(*b)),
                None => String::new(),
            };
            outln!("  channel {id}: {topic} ({enc}), {n} messages{times}");
        }
        if let (Some(a), Some(b)) = (s.start_time_ns, s.end_time_ns) {
            outln!(
                "  time {:.3} .. {:.3} ({:.3} s)",
                secs(a),
                secs(b),
                secs(b - a)
            );
        }
        for (reason, n) in &s.dropped {
            outln!("  dropped {n} frames: {reason}");
        }
    }
    if let Some(line) = checked.live_line() {
        println!("{line}");
    }
    // The segments a recorder is still writing, read as far as they are written.
    let live = super::verify::read_live(&checked.live)?;
    for s in &live {
        outln!("{}", super::verify::segment_line(s, "being written"));
    }
    // The stream's name heads its section once; the line under it has the rest.
    for st in &report.streams {
        outln!("stream {}: {}", st.name, describe(report, st));
        outln!("  {}: {}", st.topic, super::verify::stream_counts(st));
    }
    let start = report.segments.iter().filter_map(|s| s.start_time_ns).min();
    let end = report.segments.iter().filter_map(|s| s.end_time_ns).max();
    outln!(
        "total: {} segments, {} bytes, {} frames (seq {}..={}), {} dropped, {:.3} s, {}{}",
        report.segments.len(),
        total_bytes,
        report.frames,
        report.first_seq.map_or("-".into(), |s| s.to_string()),
        report.last_seq.map_or("-".into(), |s| s.to_string()),
        report.dropped.values().sum::<u64>(),
        match (start, end) {
            (Some(a), Some(b)) => secs(b - a),
            _ => 0.0,
        },
        if report.ok {
            "intact"
        } else {
            "has problems (run `framerec verify`)"
        },
        super::verify::live_frames_text(&live)
    );
    Ok(ExitCode::SUCCESS)
}
