//! `framerec stats [--socket PATH] [--json] [--watch]`: live statistics from a running recorder.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use framerec::config::StatsSocket;
use framerec::observe::{Percentiles, Snapshot, fmt_ns};

#[derive(Debug, clap::Args)]
pub struct Args {
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

fn row(name: &str, p: &Percentiles, ns: bool) -> String {
    let f = |v: u64| if ns { fmt_ns(v) } else { v.to_string() };
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
        format!("up {:.1} s, backend {}", s.uptime_s, s.backend),
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
            "queue    depth {} (high-water {}), writes in flight {}, writes {}",
            s.queue_depth, s.queue_high_water, s.writes_in_flight, s.writes
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
        row("queue wait", &s.queue_wait_ns, true),
        row("frames per write", &s.frames_per_write, false),
    ]
    .join("\n")
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args
        .socket
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
            println!("{}", serde_json::to_string_pretty(&s)?);
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H");
            }
            println!("{}", table(&s));
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
