//! `framerec record`: record until a limit, SIGINT/SIGTERM or the end of the source, then drain,
//! fsync, finalize and print a summary.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use framerec::config::{AutoOr, Config, Layout, Profile, SourceConfig, StatsSocket};
use framerec::observe::{Percentiles, fmt_ns};
use framerec::pipeline::queue::OverflowPolicy;
use framerec::pipeline::receiver::Limits;
use framerec::recorder::{Controls, RunReport};
use framerec::segment::ros2;
use framerec::sink::{BackendChoice, IoMode};
use framerec::source::{
    FakenectConfig, FreenectConfig, KinectStream, OnDeviceError, PipeConfig, PipeEndpoint,
    SyntheticConfig,
};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Configuration file (TOML); flags below override it. Default:
    /// $CONFIGURATION_DIRECTORY/framerec.toml (under systemd), else /etc/framerec/framerec.toml,
    /// if it exists. SIGHUP re-reads it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Frame source: `synthetic`, `freenect` (a Kinect through libfreenect; under
    /// `fakenect DUMP` a replayed dump), `fakenect:DIR` (framerec's own dump reader), or frames
    /// from another process: `pipe:-` (stdin), `pipe:FIFO`, `unix:SOCKET` (see the README).
    #[arg(long)]
    source: Option<String>,
    /// fakenect:DIR: replay as fast as the pipeline takes frames, not at the recorded pace.
    #[arg(long)]
    no_pacing: bool,
    /// fakenect:DIR: start again after the last frame.
    #[arg(long = "loop")]
    looped: bool,
    /// freenect: which Kinect, from 0.
    #[arg(long)]
    device_index: Option<u32>,
    /// freenect: the libfreenect library to load (default libfreenect.so.0.5).
    #[arg(long)]
    freenect_library: Option<PathBuf>,
    /// freenect: when the Kinect fails mid-recording (unplugged), `stop` with an error or
    /// `retry` opening it every second.
    #[arg(long, value_enum)]
    on_device_error: Option<OnDeviceError>,
    /// Recording directory (created; must not already hold a recording).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Stop after this long, e.g. `20s`, `45m`, `1h30m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Streams to record, in this order (synthetic, fakenect, freenect): any of depth, color,
    /// accel, comma-separated. Default: depth.
    #[arg(long, value_delimiter = ',', value_enum)]
    streams: Option<Vec<KinectStream>>,
    /// Accelerometer readings (synthetic) or tilt-state polls (freenect) per second.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    accel_rate: Option<u32>,
    /// Frames per second of the synthetic source; 0 = unpaced.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    fps: Option<u32>,
    /// Concurrent writes in flight.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    writers: Option<u32>,
    /// Width of synthetic frames, pixels.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8192))]
    width: Option<u32>,
    /// Height of synthetic frames, pixels.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8192))]
    height: Option<u32>,
    /// Seed of the synthetic content.
    #[arg(long)]
    seed: Option<u64>,
    /// MCAP chunk compression for every stream: none, zstd or lz4 (on worker threads; a chunk
    /// that would not shrink, or any batch while the queue is past its high-water mark, is
    /// written raw).
    #[arg(long, value_enum)]
    compression: Option<framerec::config::CodecName>,
    /// zstd level (1-22).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22))]
    compression_level: Option<i32>,
    /// What synthetic image frames show: scene (a room, realistic to compress) or pattern (a
    /// table copy that costs the source almost nothing, for I/O benchmarks).
    #[arg(long, value_enum)]
    content: Option<framerec::source::synthetic::Content>,
    /// How segments are written: auto (direct on local block filesystems that accept it,
    /// else buffered; the choice and its reason are logged), buffered, direct.
    #[arg(long, value_enum, conflicts_with = "direct_io")]
    io_mode: Option<IoMode>,
    /// The same as `--io-mode direct` (falls back to buffered where the filesystem refuses).
    #[arg(long)]
    direct_io: bool,
    /// Bytes of disk reserved ahead of a segment's writes (fallocate); 0 = never.
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=1 << 30))]
    preallocate_bytes: Option<u64>,
    /// I/O backend: auto, io-uring, pwrite.
    #[arg(long, value_enum)]
    backend: Option<BackendChoice>,
    /// Close a segment once it reaches this many bytes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    segment_bytes: Option<u64>,
    /// Queue budget in bytes (frames queued or being written).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1 << 20..))]
    queue_bytes: Option<u64>,
    /// Queue length in frames.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    queue_frames: Option<u64>,
    /// What to do when the queue is full: auto (block for sources that can wait, e.g. an
    /// unpaced synthetic source; drop-newest for live ones), drop-newest, drop-oldest, block.
    #[arg(long, value_parser = AutoOr::<OverflowPolicy>::value_parser())]
    overflow: Option<AutoOr<OverflowPolicy>>,
    /// Recording layout: `mcap` (segments, the default) or `fakenect` (one file per frame plus
    /// INDEX.txt, replayable by libfreenect's fakenect).
    #[arg(long, value_enum)]
    layout: Option<Layout>,
    /// What the MCAP segments are laid out for: `foxglove` (the default: protobuf, JSON drop
    /// notices) or `ros2` (the rosbag2 layout and a metadata.yaml: `ros2 bag play <dir>`
    /// replays it; not with `--direct-io`).
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// Statistics socket for `framerec stats`, or `off`.
    #[arg(long)]
    stats_socket: Option<PathBuf>,
    /// Control socket for `framerec ctl` (default: framerec.ctl beside the statistics
    /// socket), or `off`.
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Prometheus endpoint: a TCP address (`127.0.0.1:9477`) or `unix:/path`.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Seconds per interval of the latency interval log (`.hlog`); 0 = none.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    interval_log_s: Option<u64>,
    /// Counters only: no latency histograms, no interval log (for overhead comparisons).
    #[arg(long)]
    no_histograms: bool,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No live status line on the terminal (it is drawn only when stderr is a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// Lays the flags given over the configuration (a flag beats the file). Long as the list of
/// flags is long: one short block per flag, in the order `--help` lists them.
fn apply(args: &Args, cfg: &mut Config) -> anyhow::Result<()> {
    if let Some(src) = &args.source {
        let (topic, frame_id) = match &cfg.source {
            SourceConfig::Synthetic(s) => (s.topic.clone(), s.frame_id.clone()),
            SourceConfig::Fakenect(f) => (f.topic.clone(), f.frame_id.clone()),
            SourceConfig::Freenect(f) => (f.topic.clone(), f.frame_id.clone()),
            SourceConfig::Pipe(p) => (p.topic.clone(), p.frame_id.clone()),
        };
        // The socket's mode and group, and a pipe's streams, come from the configuration file
        // even when the flag names the socket.
        let (access, streams) = match &cfg.source {
            SourceConfig::Pipe(p) => (p.access, p.streams.clone()),
            _ => (framerec::socket_path::SocketAccess::OWNER_ONLY, Vec::new()),
        };
        let pipe = |endpoint| {
            let d = SyntheticConfig::default();
            SourceConfig::Pipe(PipeConfig {
                endpoint,
                width: d.width,
                height: d.height,
                topic: topic.clone(),
                frame_id: frame_id.clone(),
                streams: streams.clone(),
                access,
            })
        };
        cfg.source = match (src.as_str(), src.strip_prefix("fakenect:")) {
            ("synthetic", _) => match &cfg.source {
                SourceConfig::Synthetic(_) => cfg.source.clone(),
                _ => SourceConfig::Synthetic(SyntheticConfig {
                    topic,
                    frame_id,
                    ..SyntheticConfig::default()
                }),
            },
            ("freenect", _) => match &cfg.source {
                SourceConfig::Freenect(_) => cfg.source.clone(),
                _ => SourceConfig::Freenect(FreenectConfig {
                    device_index: 0,
                    library: None,
                    on_device_error: OnDeviceError::Stop,
                    topic,
                    frame_id,
                    streams: KinectStream::default_table(),
                    accel_rate: 100,
                }),
            },
            ("pipe:-", _) => pipe(PipeEndpoint::Stdin),
            (s, _) if s.starts_with("pipe:") && s.len() > 5 => {
                pipe(PipeEndpoint::Fifo(PathBuf::from(&s[5..])))
            }
            (s, _) if s.starts_with("unix:") && s.len() > 5 => {
                pipe(PipeEndpoint::Unix(PathBuf::from(&s[5..])))
            }
            (_, Some(dir)) if !dir.is_empty() => SourceConfig::Fakenect(FakenectConfig {
                dir: PathBuf::from(dir),
                paced: true,
                looped: false,
                topic,
                frame_id,
                streams: KinectStream::default_table(),
            }),
            _ => anyhow::bail!(
                "unknown source {src:?}: expected `synthetic`, `freenect`, `fakenect:DIR`, `pipe:-`, `pipe:FIFO` or `unix:SOCKET`"
            ),
        };
    }
    match &mut cfg.source {
        SourceConfig::Fakenect(f) => {
            f.paced &= !args.no_pacing;
            f.looped |= args.looped;
        }
        SourceConfig::Freenect(f) => {
            if let Some(i) = args.device_index {
                f.device_index = i;
            }
            if let Some(l) = &args.freenect_library {
                f.library = Some(l.clone());
            }
            if let Some(v) = args.on_device_error {
                f.on_device_error = v;
            }
        }
        SourceConfig::Pipe(p) => {
            if !p.streams.is_empty() && (args.width.is_some() || args.height.is_some()) {
                anyhow::bail!(
                    "--width and --height set a pipe's one depth stream; this configuration's [[source.stream]] tables give each stream's size"
                );
            }
            if let Some(v) = args.width {
                p.width = v;
            }
            if let Some(v) = args.height {
                p.height = v;
            }
        }
        SourceConfig::Synthetic(_) => {}
    }
    apply_streams(args, cfg)?;
    let pipe = matches!(cfg.source, SourceConfig::Pipe(_));
    let synthetic_only = [
        ("--fps", args.fps.is_some()),
        ("--width", args.width.is_some() && !pipe),
        ("--height", args.height.is_some() && !pipe),
        ("--seed", args.seed.is_some()),
        ("--content", args.content.is_some()),
    ];
    let SourceConfig::Synthetic(s) = &mut cfg.source else {
        if let Some((flag, _)) = synthetic_only.iter().find(|(_, given)| *given) {
            anyhow::bail!(
                "{flag} applies to the synthetic source only (--width and --height also to pipes)"
            );
        }
        return apply_common(args, cfg);
    };
    if let Some(v) = args.fps {
        s.fps = v;
    }
    if let Some(v) = args.width {
        s.width = v;
    }
    if let Some(v) = args.height {
        s.height = v;
    }
    if let Some(v) = args.seed {
        s.seed = v;
    }
    if let Some(v) = args.content {
        s.content = v;
    }
    apply_common(args, cfg)
}

/// `--streams` and `--accel-rate`, for the sources they apply to.
fn apply_streams(args: &Args, cfg: &mut Config) -> anyhow::Result<()> {
    if let Some(v) = &args.streams {
        match &mut cfg.source {
            SourceConfig::Synthetic(s) => s.streams = v.clone(),
            SourceConfig::Fakenect(s) => s.streams = v.clone(),
            SourceConfig::Freenect(s) => s.streams = v.clone(),
            SourceConfig::Pipe(_) => anyhow::bail!(
                "--streams applies to synthetic, fakenect and freenect sources (a pipe's streams come from its configuration)"
            ),
        }
        if let Some(problem) = framerec::config::streams_problem(&cfg.source) {
            anyhow::bail!("--streams: {problem}");
        }
    }
    if let Some(v) = args.accel_rate {
        match &mut cfg.source {
            SourceConfig::Synthetic(s) => s.accel_rate = v,
            SourceConfig::Freenect(s) => s.accel_rate = v,
            _ => anyhow::bail!("--accel-rate applies to the synthetic and freenect sources"),
        }
    }
    Ok(())
}

/// The flags that apply whatever the source.
fn apply_common(args: &Args, cfg: &mut Config) -> anyhow::Result<()> {
    if let Some(v) = &args.out {
        cfg.output_dir = v.clone();
    }
    if let Some(v) = args.writers {
        cfg.writer.writers = v as usize;
    }
    if args.direct_io {
        cfg.writer.io_mode = IoMode::Direct;
    }
    if let Some(v) = args.io_mode {
        cfg.writer.io_mode = v;
    }
    if let Some(v) = args.preallocate_bytes {
        cfg.writer.preallocate_bytes = v;
    }
    if let Some(v) = args.backend {
        cfg.writer.backend = v;
    }
    if let Some(v) = args.segment_bytes {
        cfg.segment.max_bytes = v;
    }
    if let Some(v) = args.queue_bytes {
        cfg.queue.max_bytes = v;
    }
    if let Some(v) = args.queue_frames {
        cfg.queue.max_frames = v as usize;
    }
    if let Some(v) = args.layout {
        cfg.layout = v;
    }
    if let Some(v) = args.profile {
        cfg.profile = v;
    }
    if let Some(v) = args.compression {
        cfg.compression.codec = v;
        cfg.compression.streams.clear();
    }
    if let Some(v) = args.compression_level {
        cfg.compression.level = v;
    }
    if let Some(problem) = framerec::config::compression_problem(cfg) {
        anyhow::bail!("{problem}");
    }
    if cfg.profile == Profile::Ros2 && cfg.writer.io_mode.is_direct() {
        anyhow::bail!(
            "--profile ros2 with io mode direct: {}",
            ros2::DIRECT_IO_REFUSED
        );
    }
    if let Some(v) = &args.stats_socket {
        cfg.stats.socket = if v.as_os_str() == "off" {
            StatsSocket::Off
        } else {
            StatsSocket::At(v.clone())
        };
    }
    if let Some(v) = &args.control_socket {
        cfg.stats.control_socket = match v.as_os_str() == "off" {
            true => StatsSocket::Off,
            false => StatsSocket::At(v.clone()),
        };
    }
    if let Some(v) = &args.metrics_addr {
        cfg.stats.metrics_addr = Some(v.clone()).filter(|a| !a.is_empty());
    }
    if let Some(v) = args.interval_log_s {
        cfg.stats.interval_log = (v > 0).then(|| Duration::from_secs(v));
    }
    if args.no_histograms {
        cfg.stats.histograms = false;
    }
    if let Some(v) = args.overflow {
        cfg.queue.overflow = v.set();
    }
    Ok(())
}

/// SIGINT/SIGTERM: the first stops intake and drains; a second exits at once (status 130),
/// saying what it leaves: queued frames are lost and the last segments are unfinished, which
/// `framerec recover DIR` repairs. The signals are taken on a thread of their own, so the
/// message is ordinary code, not a signal handler's.
fn stop_on_signals(dir: PathBuf) -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("framerec-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    eprintln!(
                        "framerec: second {name}: exiting now without draining; frames still queued or being written are lost and the last segments are left without a summary: `framerec recover {}` repairs them",
                        dir.display()
                    );
                    std::process::exit(130);
                }
                eprintln!(
                    "framerec: {name}: stopping: draining the queue and finishing the segments (a second signal exits at once)"
                );
            }
        })?;
    Ok(stop)
}

fn line(name: &str, p: Percentiles) -> String {
    format!(
        "{name:<20} p50 {:>8}  p99 {:>8}  p99.9 {:>8}  max {:>8}  ({} samples)",
        fmt_ns(p.p50),
        fmt_ns(p.p99),
        fmt_ns(p.p999),
        fmt_ns(p.max),
        p.count
    )
}

fn print_summary(r: &RunReport) {
    let t = &r.totals;
    let h = &r.histograms;
    eprintln!(
        "recorded {} frames into {} in {:.1} s: {:.1} MB, {:.1} MB/s (stopped: {})",
        t.written_frames,
        r.dir.display(),
        r.elapsed.as_secs_f64(),
        t.written_bytes as f64 / 1e6,
        r.mb_per_s(),
        r.stop.map_or("source failed", |s| s.as_str())
    );
    let drops: Vec<String> = t.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
    eprintln!(
        "  frames: received {}, written {}, dropped {} ({}){}",
        t.received_frames,
        t.written_frames,
        t.dropped_total(),
        drops.join(", "),
        match (t.paused_frames, t.marks) {
            (0, 0) => String::new(),
            (p, m) => format!("; paused (skipped on purpose) {p}, marks {m}"),
        }
    );
    if t.streams.len() > 1 {
        for st in &t.streams {
            eprintln!("  {}", st.line());
        }
    }
    if t.source_rejects.values().any(|n| *n > 0) {
        let rejects: Vec<String> = t
            .source_rejects
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        eprintln!("  source rejects: {}", rejects.join(", "));
    }
    eprintln!("  {}", line("write latency", r.write_latency()));
    eprintln!(
        "  {}",
        line(
            "capture to written",
            Percentiles::of(&h.capture_to_written_ns)
        )
    );
    eprintln!(
        "  {}",
        line(
            "capture to durable",
            Percentiles::of(&h.capture_to_durable_ns)
        )
    );
    eprintln!(
        "  {}",
        line("queue wait", Percentiles::of(&h.queue_wait_ns))
    );
    eprintln!(
        "  {}",
        line("inter-arrival", Percentiles::of(&h.inter_arrival_ns))
    );
    eprintln!(
        "  {}",
        line("fsync latency", Percentiles::of(&h.fsync_latency_ns))
    );
    let fpw = Percentiles::of(&h.frames_per_write);
    eprintln!(
        "  writes {} ({:.1} frames/write, max {}), fsyncs {}, queue high-water {} frames",
        t.writes,
        h.frames_per_write.mean(),
        fpw.max,
        t.fsyncs,
        t.queue_high_water
    );
    let c = &t.compression;
    if c.any() {
        eprintln!(
            "  compression: {} chunks compressed ({:.1} MB -> {:.1} MB, {:.2}x), {} left raw (not worth it), raw batches: {} (workers busy), {} (queue past high water); {:.2} s of worker time",
            c.chunks_compressed,
            c.bytes_in as f64 / 1e6,
            c.bytes_out as f64 / 1e6,
            c.bytes_in as f64 / c.bytes_out.max(1) as f64,
            c.chunks_not_worth_it,
            c.batches_raw_busy,
            c.batches_raw_pressure,
            c.busy_ns as f64 / 1e9
        );
    }
    eprintln!(
        "  backend {} ({}), overflow {}, {} segment(s), durable through frame {}",
        r.backend.as_str(),
        if r.direct_io { "O_DIRECT" } else { "buffered" },
        r.overflow.as_str(),
        r.segments.len(),
        t.durable_seq.map_or("none".into(), |s| s.to_string())
    );
}

fn json_summary(r: &RunReport) -> serde_json::Value {
    let h = &r.histograms;
    serde_json::json!({
        "dir": r.dir,
        "elapsed_s": r.elapsed.as_secs_f64(),
        // signal, disk-failure, frame-limit, duration-limit, end-of-source; null: the source failed.
        "stopped": r.stop.map(|s| s.as_str()),
        "receiver_cpu_s": r.receiver_cpu.as_secs_f64(),
        "mb_per_s": r.mb_per_s(),
        "totals": r.totals,
        "backend": r.backend,
        "direct_io": r.direct_io,
        "io_mode": if r.direct_io { IoMode::Direct } else { IoMode::Buffered }.as_str(),
        "overflow": r.overflow.as_str(),
        "segments": r.segments,
        "write_latency_ns": r.write_latency(),
        "capture_to_written_ns": Percentiles::of(&h.capture_to_written_ns),
        "queue_wait_ns": Percentiles::of(&h.queue_wait_ns),
        "fsync_latency_ns": Percentiles::of(&h.fsync_latency_ns),
        "frames_per_write": Percentiles::of(&h.frames_per_write),
        "failure": r.failure.as_ref().map(|f| f.to_string()),
    })
}

/// The configuration file in effect: `--config`, else the default path if it exists.
fn config_path(args: &Args) -> Option<PathBuf> {
    args.config.clone().or_else(|| {
        let p = super::check_config::default_config_path();
        p.exists().then_some(p)
    })
}

/// The configuration: the file (if any) with the flags applied over it.
fn configure(args: &Args) -> Result<Config, String> {
    let mut cfg = match config_path(args) {
        Some(path) => framerec::config::load(&path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    apply(args, &mut cfg).map_err(|e| e.to_string())?;
    if let Some(ms) = std::env::var("FRAMEREC_TEST_WRITE_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Fault injection for the test suite (a disk that takes this long per write).
        cfg.writer.write_delay = Duration::from_millis(ms);
    }
    Ok(cfg)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = match configure(&args) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(path) = config_path(&args) {
        tracing::info!(config = %path.display(), "configuration loaded");
    }
    let stop = stop_on_signals(cfg.output_dir.clone()).context("cannot install signal handlers")?;
    let limits = Limits {
        frames: args.frames,
        duration: args.duration,
    };
    let reload_args = args.clone();
    let controls = Controls {
        stop,
        reload: Some(Box::new(move || {
            if let Some(path) = config_path(&reload_args) {
                tracing::info!(config = %path.display(), "SIGHUP: re-reading the configuration");
            }
            configure(&reload_args)
        })),
        listeners: Vec::new(),
        on_start: None,
    };
    // The status line lives until the recording returns (its drop clears the line).
    let status: Arc<Mutex<Option<super::status::StatusLine>>> = Arc::default();
    let controls = if !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let slot = status.clone();
        let queue_frames = cfg.queue.max_frames as u64;
        Controls {
            on_start: Some(Box::new(move |snapshot| {
                let line = super::status::StatusLine::start(snapshot, queue_frames);
                if let Ok(mut s) = slot.lock() {
                    *s = Some(line);
                }
            })),
            ..controls
        }
    } else {
        controls
    };
    let report = framerec::recorder::record_with(&cfg, limits, controls);
    drop(status.lock().map(|mut s| s.take()));
    let report = report?;
    if !report.repaired.is_empty() {
        eprintln!("repaired at start (left unfinished by a crashed run):");
        super::recover::print(&report.repaired)?;
    }
    print_summary(&report);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&json_summary(&report))?);
    }
    match &report.failure {
        None => Ok(ExitCode::SUCCESS),
        Some(f) => {
            eprintln!("framerec: recording failed: {f}");
            Ok(ExitCode::from(1))
        }
    }
}
