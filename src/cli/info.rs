//! `framerec info PATH`: what a recording or segment holds: per segment its channels, per
//! stream its topic, encoding and resolution (or `accelerometer`), frames, sequence numbers and
//! drops by reason. A fakenect-layout recording (`INDEX.txt` and a file per frame) gets the
//! same per stream, from its frame files and `DROPS.txt`.

use std::path::PathBuf;
use std::process::ExitCode;

use framerec::frame::DropReason;
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
    let Some(meta) = channel_metadata(report, st) else {
        return "image".into();
    };
    if !meta.contains_key("encoding") {
        // Another writer's channel: the encoding and size are in each message.
        return "image (encoding and size in each message)".into();
    }
    let get = |k: &str| meta.get(k).map_or("?", |v| v.as_str());
    format!("{} {}x{}", get("encoding"), get("width"), get("height"))
}

/// The metadata of the stream's channel, from the first segment that has the stream.
fn channel_metadata<'a>(
    report: &'a RecordingReport,
    st: &StreamReport,
) -> Option<&'a std::collections::BTreeMap<String, String>> {
    report.segments.iter().map(|s| &s.contents).find_map(|c| {
        let s = c.stream(&st.name)?;
        c.channel_metadata.get(&s.channel)
    })
}

/// A stream's payload bytes: its frames times a frame's size (from its channel's metadata in
/// the first segment that has it; an accelerometer reading is 12 bytes; 0 when unknown).
fn payload_bytes(report: &RecordingReport, st: &StreamReport) -> u64 {
    let frame_bytes = match st.kind {
        StreamKind::Accel => framerec::segment::accel::RAW_BYTES as u64,
        StreamKind::Image => channel_metadata(report, st)
            .and_then(|m| {
                let get = |k: &str| m.get(k)?.parse::<u64>().ok();
                let per_pixel = if m.get("encoding")? == "rgb8" { 3 } else { 2 };
                Some(get("width")? * get("height")? * per_pixel)
            })
            .unwrap_or(0),
    };
    st.frames.saturating_mul(frame_bytes)
}

/// `bytes` in the largest decimal unit that keeps a whole number in front: `2.4 kB`, `36.9 MB`.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

/// `ns` since the Unix epoch as a date, in UTC and in the local time zone.
fn dates(ns: u64) -> (String, String) {
    use chrono::{DateTime, Local, Utc};
    let utc = DateTime::<Utc>::from_timestamp_nanos(ns.min(i64::MAX as u64) as i64);
    (
        utc.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
        utc.with_timezone(&Local)
            .format("%Y-%m-%d %H:%M:%S%.3f %Z")
            .to_string(),
    )
}

/// The stream's rate measured from its frames' log times, its start and end as dates, its
/// duration, and its payload size and rate.
fn timing(report: &RecordingReport, st: &StreamReport) -> Option<String> {
    let (a, b) = (st.first_time_ns?, st.last_time_ns?);
    let bytes = payload_bytes(report, st);
    let duration = secs(b - a);
    let rate = if duration > 0.0 && st.frames > 1 {
        format!("{:.2} frames/s", (st.frames - 1) as f64 / duration)
    } else {
        "- frames/s".into()
    };
    let per_second = if duration > 0.0 {
        format!("{}/s", size((bytes as f64 / duration) as u64))
    } else {
        "- B/s".into()
    };
    let ((start_utc, start_local), (end_utc, end_local)) = (dates(a), dates(b));
    Some(format!(
        "  {rate} measured, {duration:.3} s, {} of payload ({per_second})\n  \
         start {start_utc} ({start_local})\n  end   {end_utc} ({end_local})",
        size(bytes)
    ))
}

/// One segment's lines: size, state, ids, channels, time range, drops.
fn print_segment(s: &framerec::segment::SegmentReport) -> Result<(), super::StdoutError> {
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
        if reason == DropReason::Paused.as_str() {
            outln!("  skipped {n} frames while paused (framerec ctl pause; not lost)");
        } else {
            outln!("  dropped {n} frames: {reason}");
        }
    }

    Ok(())
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
        print_segment(s)?;
    }
    if let Some(line) = checked.live_line() {
        println!("{line}");
    }
    // The segments a recorder is still writing, read as far as they are written.
    let live = super::verify::read_live(&checked.live)?;
    for s in &live {
        outln!("{}", super::verify::segment_line(s, "being written"));
    }
    // The stream's name heads its section once; the lines under it have the rest.
    for st in &report.streams {
        outln!("stream {}: {}", st.name, describe(report, st));
        outln!("  {}: {}", st.topic, super::verify::stream_counts(st));
        if let Some(line) = timing(report, st) {
            outln!("{line}");
        }
    }
    let start = report.segments.iter().filter_map(|s| s.start_time_ns).min();
    let end = report.segments.iter().filter_map(|s| s.end_time_ns).max();
    // Frames skipped while paused are not drops (`framerec ctl pause`).
    let paused = DropReason::Paused.as_str();
    let skipped = report.dropped.get(paused).copied().unwrap_or(0);
    let dropped: u64 = report
        .dropped
        .iter()
        .filter(|(reason, _)| reason.as_str() != paused)
        .map(|(_, n)| n)
        .sum();
    outln!(
        "total: {} segments, {} bytes, {} frames (seq {}..={}), {} dropped{}, {:.3} s, {}{}",
        report.segments.len(),
        total_bytes,
        report.frames,
        report.first_seq.map_or("-".into(), |s| s.to_string()),
        report.last_seq.map_or("-".into(), |s| s.to_string()),
        dropped,
        match skipped {
            0 => String::new(),
            n => format!(", {n} skipped while paused"),
        },
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
