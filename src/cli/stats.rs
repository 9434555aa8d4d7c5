//! `framerec stats [--socket PATH] [--json] [--watch]`: live statistics from a running recorder.
//! `framerec stats DIR|FILE [--json] [--plot OUT.svg|OUT.png]`: a recording's interval logs,
//! after the fact (finished or crashed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use framerec::config::StatsSocket;
use framerec::hlog::Report;
use framerec::observe::{Percentiles, Snapshot, fmt_ns};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A recording directory (or log directory) or one `.hlog` file: report its interval logs
    /// instead of asking a running recorder.
    #[arg(conflicts_with_all = ["socket", "watch"])]
    path: Option<PathBuf>,
    /// With PATH: also draw the latency distribution and the latency over time into this file
    /// (`.svg` or `.png`).
    #[arg(long, requires = "path")]
    plot: Option<PathBuf>,
    /// Replace the `--plot` file if it exists.
    #[arg(long, requires = "plot")]
    force: bool,
    /// The recorder's statistics socket (default: $RUNTIME_DIRECTORY/framerec.sock under
    /// systemd, else rec/framerec.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print the snapshot as JSON.
    #[arg(long)]
    json: bool,
    /// Refresh every second until interrupted.
    #[arg(long)]
    watch: bool,
}

/// A latency for a table: `-` when nothing was recorded.
fn cell(p: &Percentiles, v: u64) -> String {
    if p.count == 0 { "-".into() } else { fmt_ns(v) }
}

fn row(name: &str, p: &Percentiles, ns: bool) -> String {
    let f = |v: u64| match (p.count, ns) {
        (0, _) => "-".to_string(),
        (_, true) => fmt_ns(v),
        (_, false) => v.to_string(),
    };
    format!(
        "  {name:<20} {:>9} {:>9} {:>9} {:>9} {:>9}",
        f(p.p50),
        f(p.p99),
        f(p.p999),
        f(p.max),
        p.count
    )
}

fn table(s: &Snapshot) -> String {
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let drops: Vec<String> = s.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
    [
        format!(
            "up {:.1} s, {}, backend {}{}",
            s.uptime_s,
            s.state,
            s.backend,
            s.fault_state().map_or(String::new(), |f| format!(", {f}"))
        ),
        format!(
            "control  paused {} time(s), {} frames skipped while paused, {} marks; requests ok {}, rejected {}",
            s.pauses,
            s.paused_frames,
            s.marks,
            s.control_ok,
            s.control_rejected
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "faults   {} failed writes/fsyncs/creations, {} frames written again, {} segments deleted by retention",
            s.failures, s.frames_rewritten, s.segments_deleted
        ),
        format!(
            "frames   received {}, written {}, dropped {} ({}), queued {}, in writers {}",
            s.received_frames,
            s.written_frames,
            s.dropped_total(),
            drops.join(", "),
            s.queue_depth,
            s.frames_in_writers
        ),
        format!(
            "bytes    received {}, written {}",
            mb(s.received_bytes),
            mb(s.written_bytes)
        ),
        format!(
            "queue    depth {} (high-water {}), writers {}, writes in flight {}, writes {}",
            s.queue_depth, s.queue_high_water, s.writers, s.writes_in_flight, s.writes
        ),
        format!(
            "disk     durable through frame {}, {} segment(s), {} fsyncs, {} free",
            s.durable_seq.map_or("none".into(), |d| d.to_string()),
            s.segments,
            s.fsyncs,
            s.free_bytes
                .map_or("?".into(), |f| format!("{:.1} GB", f as f64 / 1e9))
        ),
        format!(
            "  {:<20} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "", "p50", "p99", "p99.9", "max", "count"
        ),
        row("write", &s.write_latency_ns, true),
        row("fsync", &s.fsync_latency_ns, true),
        row("capture to written", &s.capture_to_written_ns, true),
        row("capture to durable", &s.capture_to_durable_ns, true),
        row("queue wait", &s.queue_wait_ns, true),
        row("inter-arrival", &s.inter_arrival_ns, true),
        row("frames per write", &s.frames_per_write, false),
        row("enqueue", &s.enqueue_ns, true),
    ]
    .into_iter()
    .chain(stream_lines(s))
    .collect::<Vec<_>>()
    .join("\n")
}

/// One line per stream, when there are several.
fn stream_lines(s: &Snapshot) -> Vec<String> {
    if s.streams.len() < 2 {
        return Vec::new();
    }
    s.streams
        .iter()
        .map(|st| {
            format!(
                "stream   {}, pending {}",
                st.line(),
                st.queued + st.in_writers
            )
        })
        .collect()
}

/// The offline report as text: runs, overall percentiles, then one row per interval. `live`:
/// the recorder writing the directory, whose run (the newest) has not ended yet.
fn offline_table(r: &Report, live: Option<framerec::store::lock::Holder>) -> String {
    let mut out = Vec::new();
    let newest = r.runs.len().checked_sub(1);
    for (i, run) in r.runs.iter().enumerate() {
        let started = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs_f64(run.start.max(0.0)),
        );
        out.push(format!(
            "run of {} from {started}: {} interval(s), {}",
            run.file.display(),
            run.intervals,
            match (&run.ended, live) {
                (Some(reason), _) => format!("ended: {reason}"),
                (None, Some(w)) if Some(i) == newest =>
                    format!("still being written by a running recorder ({w})"),
                (None, _) =>
                    "did not end cleanly (killed or crashed; the last interval is lost)".into(),
            }
        ));
    }
    for d in &r.damage {
        out.push(format!("skipped an unreadable line at {d}"));
    }
    let total =
        |f: fn(&framerec::hlog::IntervalSummary) -> u64| -> u64 { r.intervals.iter().map(f).sum() };
    out.push(format!(
        "frames   received {}, written {}, dropped {}",
        total(|i| i.received),
        total(|i| i.written),
        total(|i| i.dropped)
    ));
    for line in r.stream_lines() {
        out.push(format!("stream   {line}"));
    }
    out.push(format!(
        "  {:<20} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "overall", "p50", "p99", "p99.9", "max", "count"
    ));
    let none = Percentiles::default();
    for (tag, name) in [
        ("write", "write"),
        ("fsync", "fsync"),
        ("capture-to-written", "capture to written"),
        ("capture-to-durable", "capture to durable"),
        ("queue-wait", "queue wait"),
        ("inter-arrival", "inter-arrival"),
        ("enqueue", "enqueue"),
    ] {
        out.push(row(name, r.overall.get(tag).unwrap_or(&none), true));
    }
    out.push(row(
        "frames per write",
        r.overall.get("frames-per-write").unwrap_or(&none),
        false,
    ));
    out.push(format!(
        "  {:>8} {:>7} {:>7} {:>9} {:>9} {:>9} {:>12} {:>12}",
        "t (s)", "frames", "dropped", "write p50", "p99", "max", "c->written99", "c->durable99"
    ));
    for i in &r.intervals {
        let p = |t: &str| i.histograms.get(t).copied().unwrap_or_default();
        out.push(format!(
            "  {:>8.1} {:>7} {:>7} {:>9} {:>9} {:>9} {:>12} {:>12}",
            i.start_s + i.length_s,
            i.written,
            i.dropped,
            cell(&p("write"), p("write").p50),
            cell(&p("write"), p("write").p99),
            cell(&p("write"), p("write").max),
            cell(&p("capture-to-written"), p("capture-to-written").p99),
            cell(&p("capture-to-durable"), p("capture-to-durable").p99),
        ));
    }
    out.join("\n")
}

fn offline(path: &std::path::Path, args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.plot {
        anyhow::ensure!(
            args.force || std::fs::symlink_metadata(out).is_err(),
            "{} already exists; --force replaces it",
            out.display()
        );
    }
    let (report, merged) = Report::read(path)
        .with_context(|| format!("cannot read the interval logs of {}", path.display()))?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let live = path
            .is_dir()
            .then(|| framerec::store::lock::writer_of(path).ok().flatten())
            .flatten();
        outln!("{}", offline_table(&report, live));
    }
    if let Some(out) = &args.plot {
        framerec::plot::plot(&report, &merged, out)?;
        eprintln!("plot written to {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A file that starts with the MCAP magic.
fn is_mcap_file(path: &std::path::Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 8];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && magic == framerec::segment::MAGIC
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.path {
        if is_mcap_file(path) {
            anyhow::bail!(
                "{} is an MCAP recording, not an interval log: `framerec stats` reads the latency \
                 interval logs (*.hlog) a recorder writes beside its segments; `framerec info {}` \
                 describes the file's channels and messages",
                path.display(),
                path.display()
            );
        }
        return offline(path, &args);
    }
    let path = args
        .socket
        .clone()
        .or_else(|| StatsSocket::Default.resolve(std::path::Path::new("rec")))
        .context("no statistics socket")?;
    loop {
        let s = framerec::serve::fetch(&path).with_context(|| {
            format!(
                "cannot read statistics from {} (is a recorder running?)",
                path.display()
            )
        })?;
        if args.json {
            outln!("{}", serde_json::to_string_pretty(&s)?);
        } else {
            if args.watch {
                out!("\x1b[2J\x1b[H");
            }
            outln!("{}", table(&s));
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
