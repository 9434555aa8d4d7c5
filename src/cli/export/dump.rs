//! `framerec export DIR` on a fakenect-layout recording: the formats, stream choice and frame
//! and time selection of a segment export, read from the frame files: each frame's samples
//! exactly as its file holds them, its derived sequence number, its host time (from its name)
//! as the log time and its device time. Frames whose files are not whole are skipped with a
//! note (`framerec recover` names them as lost).

use std::process::ExitCode;

use anyhow::{Context, bail};
use framerec::source::KinectStream;
use framerec::store::fakenect::{Dump, DumpFrame, IndexEnd};
use framerec::store::lock::lock_dir;

use super::{
    Args, Format, FrameOut, Frames, Selection, check_format, check_out, fakenect_size, finish,
    no_stream, open_csv, progress_bar, write_frame,
};

/// The stream `args` asks for (default depth, else the first image stream) among those with a
/// readable frame file, and what its frames are.
fn pick(args: &Args, dump: &Dump) -> anyhow::Result<(KinectStream, Frames)> {
    let chosen = match &args.stream {
        Some(name) => dump.streams.iter().find(|s| s.kind.as_str() == name),
        None => dump
            .stream(KinectStream::Depth)
            .or_else(|| dump.stream(KinectStream::Color)),
    };
    let Some(s) = chosen else {
        let names: Vec<&str> = dump.streams.iter().map(|s| s.kind.as_str()).collect();
        return Err(no_stream(args, &names));
    };
    let frames = match s.kind {
        KinectStream::Depth => Frames::Depth,
        KinectStream::Color => Frames::Colour,
        KinectStream::Accel => Frames::Accel,
    };
    check_format(args, s.kind.as_str(), frames)?;
    if args.format == Format::Fakenect
        && let Some(f) = dump.frames.iter().find(|f| f.kind == s.kind)
    {
        fakenect_size(f.seq, s.width, s.height)?;
    }
    Ok((s.kind, frames))
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    check_out(args)?;
    let dump = Dump::open(&args.path)?;
    if let IndexEnd::Cut { line, .. } = dump.end {
        eprintln!(
            "note: INDEX.txt:{line} was cut short by a crash and names no frame (`framerec recover` removes it)"
        );
    }
    let (kind, _) = pick(args, &dump)?;
    let Some(stream) = dump.stream(kind).cloned() else {
        bail!(
            "{} has no readable {} frame",
            args.path.display(),
            kind.as_str()
        );
    };
    let selection = Selection {
        args,
        t0: dump.frames.iter().map(|f| f.time_ns).min().unwrap_or(0),
    };
    let of_stream = || dump.frames.iter().filter(|f| f.kind == kind);
    let not_whole: Vec<&DumpFrame> = of_stream().filter(|f| !f.is_whole()).collect();
    let selected: Vec<&DumpFrame> = of_stream()
        .filter(|f| f.is_whole() && selection.contains_frame(f.seq, f.time_ns))
        .collect();
    if let Some(first) = not_whole.first() {
        eprintln!(
            "note: {} {} frames named in INDEX.txt have files that are not whole (the first: {}, {}); they are not exported (`framerec recover` names them as lost)",
            not_whole.len(),
            kind.as_str(),
            first.file,
            first.state
        );
    }
    if selected.is_empty() {
        bail!("no frames match the selection");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let _lock = lock_dir(&args.out)?;
    // Checked again under the lock: another export may have written it meanwhile.
    check_out(args)?;
    let bar = progress_bar(selected.len() as u64);
    let mut index = String::new();
    let mut csv = open_csv(args)?;
    let mut buf = Vec::new();
    for f in &selected {
        dump.read_payload(f, &mut buf)?;
        let out = FrameOut {
            seq: f.seq,
            log_time: f.time_ns,
            device_ns: f.device_ns,
            colour: kind == KinectStream::Color,
            width: stream.width,
            height: stream.height,
            data: &buf,
            accel: None,
        };
        write_frame(args, &out, &mut index, &mut csv)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    finish(args, &index, csv)?;
    outln!(
        "exported {} frames to {}",
        selected.len(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
