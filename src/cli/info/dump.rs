//! `framerec info DIR` on a fakenect-layout recording: per stream its frames, size and format,
//! first and last time, drops by reason (`DROPS.txt`) and bytes; frames whose files are not
//! whole, and an `INDEX.txt` a crash cut short, are pointed out (`framerec recover` repairs
//! them).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use framerec::source::KinectStream;
use framerec::store::fakenect::{Dump, DumpFrame, IndexEnd, KINDS};

use super::secs;

/// What the frames of `kind` are: encoding and size, or `accelerometer`.
fn describe(dump: &Dump, kind: KinectStream) -> String {
    match (kind, dump.stream(kind)) {
        (KinectStream::Accel, _) => "accelerometer".into(),
        (_, Some(s)) => format!("{} {}x{}", s.format().encoding(), s.width, s.height),
        (_, None) => "no readable frame file".into(),
    }
}

/// Frames `DROPS.txt` lists for the stream named `name`, by reason.
fn dropped_of(dump: &Dump, name: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for d in dump.drops.iter().filter(|d| d.stream == name) {
        let n: &mut u64 = out.entry(d.reason.as_str().to_string()).or_default();
        *n = n.saturating_add(framerec::sink::fakenect::dropped_frames([d]));
    }
    out
}

/// The line under a stream's name: frames, numbers, bytes, times, drops.
fn stream_line(frames: &[&DumpFrame], dropped: &BTreeMap<String, u64>) -> String {
    let bytes: u64 = frames.iter().map(|f| f.bytes).sum();
    let seqs = match (frames.first(), frames.last()) {
        (Some(a), Some(b)) => format!(" (seq {}..={})", a.seq, b.seq),
        _ => String::new(),
    };
    let first = frames.iter().map(|f| f.time_ns).min();
    let last = frames.iter().map(|f| f.time_ns).max();
    let time = match (first, last) {
        (Some(a), Some(b)) => format!(
            ", time {:.3} .. {:.3} ({:.3} s)",
            secs(a),
            secs(b),
            secs(b - a)
        ),
        _ => String::new(),
    };
    format!(
        "{} frames{seqs}, {bytes} bytes{time}, dropped: {}",
        frames.len(),
        super::super::verify::dropped_text(dropped)
    )
}

pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let dump = Dump::open(path)?;
    outln!(
        "{}: fakenect layout (INDEX.txt names {} frames, one file each)",
        path.display(),
        dump.frames.len()
    );
    let mut problems = 0;
    match dump.end {
        IndexEnd::Cut { line, bytes } => {
            problems += 1;
            outln!(
                "  INDEX.txt:{line}: a last line cut short by a crash ({bytes} bytes, no frame): `framerec recover` removes it"
            );
        }
        IndexEnd::Unterminated => outln!("  INDEX.txt: the last line has no newline"),
        IndexEnd::Whole => {}
    }
    let mut dropped_total = 0u64;
    for kind in KINDS {
        let frames: Vec<&DumpFrame> = dump.frames.iter().filter(|f| f.kind == kind).collect();
        let dropped = dropped_of(&dump, kind.as_str());
        if frames.is_empty() && dropped.is_empty() {
            continue;
        }
        dropped_total = dropped_total.saturating_add(dropped.values().sum());
        outln!("stream {}: {}", kind.as_str(), describe(&dump, kind));
        outln!("  {}", stream_line(&frames, &dropped));
        for f in frames.iter().filter(|f| !f.is_whole()) {
            problems += 1;
            outln!("  INDEX.txt:{}: {}: {}", f.line, f.file, f.state);
        }
    }
    // Drops of streams this layout has no files for (a name it does not know).
    let others: std::collections::BTreeSet<&str> = dump
        .drops
        .iter()
        .map(|d| d.stream.as_str())
        .filter(|n| !KINDS.iter().any(|k| k.as_str() == *n))
        .collect();
    for name in others {
        let dropped = dropped_of(&dump, name);
        dropped_total = dropped_total.saturating_add(dropped.values().sum());
        outln!("stream {name}: no frame files");
        outln!("  {}", stream_line(&[], &dropped));
    }
    let frame_bytes: u64 = dump.frames.iter().map(|f| f.bytes).sum();
    let first = dump.frames.iter().map(|f| f.time_ns).min();
    let last = dump.frames.iter().map(|f| f.time_ns).max();
    outln!(
        "total: {} frames, {} bytes (with INDEX.txt and DROPS.txt), {} dropped, {:.3} s, {}",
        dump.frames.len(),
        frame_bytes
            .saturating_add(dump.index_bytes)
            .saturating_add(dump.drops_bytes),
        dropped_total,
        match (first, last) {
            (Some(a), Some(b)) => secs(b - a),
            _ => 0.0,
        },
        if problems == 0 {
            "intact"
        } else {
            "has problems (run `framerec recover`)"
        }
    );
    Ok(ExitCode::SUCCESS)
}
