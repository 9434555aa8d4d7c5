//! The configuration file: TOML, parsed and validated once into each component's own typed
//! config. Every error is reported at once, each with `file:line:col` and the reason.
//!
//! `config/framerec.toml` documents every key; keep it in step with the structs below.

use crate::socket_path::SocketAccess;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::pipeline::queue::{OverflowPolicy, QueueConfig};
use crate::repair::AtStart;
pub use crate::segment::ros2::Profile;
use crate::sink::{BackendChoice, DurabilityConfig, IoMode, SegmentConfig, WriterConfig};
use crate::source::{
    FakenectConfig, FreenectConfig, KinectStream, OnDeviceError, PipeConfig, PipeEndpoint,
    SyntheticConfig,
};

mod compression;
mod errors;
mod pipe_streams;
#[cfg(test)]
mod tests;
mod types;
mod validate;
mod values;

pub use compression::{CodecName, Compression, compression_problem};
pub use errors::{ConfigError, ConfigErrors};
use errors::{blank_entry, line_col};
#[cfg(test)]
pub(crate) use tests::accepted_keys;
pub use types::{Config, SourceConfig, StatsConfig, StatsSocket};
pub use validate::streams_problem;
use validate::{key_position, validate};
pub use values::{AutoOr, Int};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    #[default]
    Synthetic,
    Fakenect,
    Freenect,
    Pipe,
    Unix,
}

const MIB: i64 = 1 << 20;

/// `[output]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct OutputSection {
    /// Recording directory. Default "" = `$STATE_DIRECTORY` under systemd, else `./rec`.
    dir: PathBuf,
    /// `mcap` (default) or `fakenect`.
    layout: Layout,
    /// mcap layout: `foxglove` (default: protobuf messages, JSON drop notices) or `ros2` (the
    /// rosbag2 layout, CDR messages, plus `metadata.yaml`; not with `writer.direct-io`).
    profile: Profile,
    /// Bytes the output filesystem keeps free: under it, arriving frames are counted as
    /// `disk_full` instead of queued, until space returns. Default 0 (off), range 0-16 TiB.
    min_free_bytes: Int<0, { 16 * 1024 * 1024 * MIB }>,
    /// The same as a percentage of the filesystem's size; the larger floor applies. Default 0
    /// (off), range 0-99.
    min_free_percent: Int<0, 99>,
    /// Retention, for always-on recording: delete the oldest finished segments while the
    /// directory's segments hold more than this many bytes. Keep it at least twice
    /// `segment.max-bytes`. Default 0 (keep everything), range 0-1 PiB.
    max_total_bytes: Int<0, { 1024 * 1024 * 1024 * MIB }>,
    /// ... or while the oldest was last written more than this many seconds ago. Default 0
    /// (keep everything), range 0-31536000.
    max_age_s: Int<0, 31_536_000>,
}

/// How a recording directory is laid out (config `output.layout`, `--layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// MCAP segments (the default).
    #[default]
    Mcap,
    /// One file per frame plus INDEX.txt: a directory libfreenect's fakenect replays.
    Fakenect,
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            dir: PathBuf::new(),
            layout: Layout::Mcap,
            profile: Profile::Foxglove,
            min_free_bytes: Int(0),
            min_free_percent: Int(0),
            max_total_bytes: Int(0),
            max_age_s: Int(0),
        }
    }
}

/// `[source]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct SourceSection {
    /// Default `synthetic`.
    kind: SourceKind,
    /// Pixels. Default 640, range 1-8192.
    width: Int<1, 8192>,
    /// Pixels. Default 480, range 1-8192.
    height: Int<1, 8192>,
    /// Frames per second; 0 = unpaced. Default 30, range 0-100000.
    fps: Int<0, 100_000>,
    /// Seed of the synthetic content. Default 1.
    seed: Int<0, { i64::MAX }>,
    /// What synthetic image frames show: `scene` (default) or `pattern`.
    content: crate::source::synthetic::Content,
    /// synthetic, fakenect, freenect: the streams to record, in this order: any of `depth`,
    /// `color`, `accel`, each at most once. Default `["depth"]`.
    streams: Vec<KinectStream>,
    /// synthetic: accelerometer readings per second; freenect: tilt-state polls per second.
    /// Default 100, range 1-1000.
    accel_rate: Int<1, 1000>,
    /// MCAP topic of the depth stream. Default `/camera/depth`.
    topic: String,
    /// `frame_id` of each image. Default `camera_depth`.
    frame_id: String,
    /// fakenect: the dump directory (with INDEX.txt); pipe: "-" (stdin) or a FIFO; unix: the
    /// socket to listen on.
    path: PathBuf,
    /// fakenect: replay at the recorded pace. Default true.
    paced: bool,
    /// fakenect: start again after the last frame. Default false.
    #[serde(rename = "loop")]
    looped: bool,
    /// freenect: which Kinect, from 0. Default 0.
    device_index: Int<0, 255>,
    /// freenect: the library to load; "" = libfreenect.so.0.5 from the loader's path.
    library: PathBuf,
    /// freenect: on a device failure mid-recording, `stop` (default) or `retry`.
    on_device_error: OnDeviceError,
    /// unix: permission bits of the socket, set before anyone can connect (whatever the
    /// umask). Default 0o600 (the recorder's user only); range 0-0o777.
    socket_mode: Int<0, 0o777>,
    /// unix: group of the socket (a group id); -1 = the recorder's group. Default -1.
    socket_gid: Int<-1, { u32::MAX as i64 - 1 }>,
    /// pipe, unix: `[[source.stream]]` tables, the streams by framing id (at most 16). Default
    /// none: one depth stream (id 0) of `width` x `height` on `topic`.
    stream: Vec<pipe_streams::StreamSection>,
}

impl Default for SourceSection {
    fn default() -> Self {
        let d = SyntheticConfig::default();
        SourceSection {
            kind: SourceKind::Synthetic,
            width: Int(d.width as i64),
            height: Int(d.height as i64),
            fps: Int(d.fps as i64),
            seed: Int(d.seed as i64),
            content: d.content,
            streams: d.streams,
            accel_rate: Int(d.accel_rate as i64),
            topic: d.topic,
            frame_id: d.frame_id,
            path: PathBuf::new(),
            paced: true,
            looped: false,
            device_index: Int(0),
            library: PathBuf::new(),
            on_device_error: OnDeviceError::Stop,
            socket_mode: Int(0o600),
            socket_gid: Int(-1),
            stream: Vec::new(),
        }
    }
}

/// `[queue]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct QueueSection {
    /// Frames. Default 256, range 1-65536.
    max_frames: Int<1, 65_536>,
    /// Bytes of frame buffers queued or being written. Default 256 MiB, range 1 MiB-64 GiB.
    max_bytes: Int<MIB, { 64 * 1024 * MIB }>,
    /// `auto` (default: `block` for sources that can wait, else `drop-newest`), `drop-newest`,
    /// `drop-oldest` or `block`.
    overflow: AutoOr<OverflowPolicy>,
}

impl Default for QueueSection {
    fn default() -> Self {
        let d = QueueConfig::default();
        QueueSection {
            max_frames: Int(d.max_frames as i64),
            max_bytes: Int(d.max_bytes as i64),
            overflow: AutoOr::Auto,
        }
    }
}

/// `[writer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct WriterSection {
    /// `auto` (default), `io-uring` or `pwrite`.
    backend: BackendChoice,
    /// Concurrent writes. Default 2, range 1-64.
    writers: Int<1, 64>,
    /// `auto` (default: direct on local block filesystems that accept it, else buffered),
    /// `buffered` or `direct`.
    io_mode: Option<IoMode>,
    /// Deprecated: `true` = `io-mode = "direct"`, `false` = `"buffered"`; an `io-mode` that
    /// says otherwise is an error.
    direct_io: Option<bool>,
    /// Bytes per write. Default 4 MiB, range 4 KiB-256 MiB.
    max_write_bytes: Int<4096, { 256 * MIB }>,
    /// Microseconds to wait for more frames. Default 0, range 0-1000000.
    linger_us: Int<0, 1_000_000>,
    /// Bytes of disk reserved ahead of a segment's writes (`fallocate`). Default 64 MiB; 0 =
    /// never; range 0-1 GiB.
    preallocate_bytes: Int<0, { 1024 * MIB }>,
    /// Failed writes, fsyncs or segment creations in a row that make the recorder degraded.
    /// Default 8, range 1-1000000.
    max_consecutive_failures: Int<1, 1_000_000>,
    /// Stop (exit status 1) once degraded, so systemd's `Restart=` applies. Default false:
    /// keep counting frames as dropped until the disk recovers.
    exit_when_degraded: bool,
    /// End a run that lost frames to the disk (`io_error`, `fsync_error`, `segment_deleted`)
    /// with exit status 1, even though recording went on. Default true; false: exit 0 with the
    /// losses counted and named in the recording.
    fail_on_io_loss: bool,
    /// Seconds stopping may take to drain the queue and finalize segments; past it the
    /// recorder exits (status 1) leaving the last segments for `framerec recover`. Keep it
    /// under systemd's `TimeoutStopSec=` (60 s in the unit). Default 45, range 1-3600.
    stop_timeout_s: Int<1, 3600>,
}

impl Default for WriterSection {
    fn default() -> Self {
        let d = WriterConfig::default();
        WriterSection {
            backend: d.backend,
            writers: Int(d.writers as i64),
            io_mode: None,
            direct_io: None,
            max_write_bytes: Int(d.max_write_bytes as i64),
            linger_us: Int(0),
            preallocate_bytes: Int(d.preallocate_bytes as i64),
            max_consecutive_failures: Int(i64::from(d.max_consecutive_failures)),
            exit_when_degraded: d.exit_when_degraded,
            fail_on_io_loss: d.fail_on_io_loss,
            stop_timeout_s: Int(d.stop_timeout.as_secs() as i64),
        }
    }
}

impl WriterSection {
    /// `io-mode`, else what the deprecated `direct-io` says, else `auto`. A conflict of the
    /// two is reported by validation, which sees both.
    fn io_mode(&self) -> IoMode {
        match (self.io_mode, self.direct_io) {
            (Some(m), _) => m,
            (None, Some(true)) => IoMode::Direct,
            (None, Some(false)) => IoMode::Buffered,
            (None, None) => IoMode::Auto,
        }
    }

    /// Why `io-mode` and `direct-io` cannot both hold, if they cannot.
    fn io_mode_conflict(&self) -> Option<String> {
        let (mode, direct) = (self.io_mode?, self.direct_io?);
        let agrees = match mode {
            IoMode::Direct => direct,
            IoMode::Buffered => !direct,
            IoMode::Auto => false,
        };
        (!agrees).then(|| {
            format!(
                "writer.io-mode = \"{}\" conflicts with writer.direct-io = {direct} (deprecated); remove writer.direct-io",
                mode.as_str()
            )
        })
    }
}

/// `[segment]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct SegmentSection {
    /// Bytes. Default 1 GiB, range 1 MiB-1 TiB.
    max_bytes: Int<MIB, { 1024 * 1024 * MIB }>,
    /// Seconds; 0 = no limit. Default 600, range 0-604800.
    max_duration_s: Int<0, 604_800>,
}

impl Default for SegmentSection {
    fn default() -> Self {
        SegmentSection {
            max_bytes: Int(1 << 30),
            max_duration_s: Int(600),
        }
    }
}

/// `[durability]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct DurabilitySection {
    /// Milliseconds between fsyncs; 0 = only when a segment closes. Default 1000, range 0-3600000.
    fsync_interval_ms: Int<0, 3_600_000>,
    /// Also fsync every this many frames; 0 = off. Default 0.
    fsync_every_frames: Int<0, { i64::MAX }>,
    /// Drop durable data from the page cache. Default true.
    release_page_cache: bool,
}

impl Default for DurabilitySection {
    fn default() -> Self {
        DurabilitySection {
            fsync_interval_ms: Int(1000),
            fsync_every_frames: Int(0),
            release_page_cache: true,
        }
    }
}

/// `[recovery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct RecoverySection {
    /// Unfinished segments in the output directory at start: `recover` (default), `refuse`, `leave`.
    at_start: AtStart,
}

impl Default for RecoverySection {
    fn default() -> Self {
        RecoverySection {
            at_start: AtStart::Recover,
        }
    }
}

/// `[stats]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct StatsSection {
    /// Unix socket for `framerec stats`. Default "" = `$RUNTIME_DIRECTORY/framerec.sock` when
    /// that is set, else `framerec.sock` in the output directory; "off" disables it.
    socket: String,
    /// Unix socket for `framerec ctl`. Default "" = `framerec.ctl` beside the statistics
    /// socket (`$RUNTIME_DIRECTORY` under systemd, else the output directory); "off" = none.
    control_socket: String,
    /// Seconds between summary log lines; 0 = off. Default 10, range 0-86400.
    log_interval_s: Int<0, 86_400>,
    /// Prometheus exposition: "" (off, default), a TCP address (`127.0.0.1:9477`) or
    /// `unix:/path`.
    metrics_addr: String,
    /// Record latency histograms (false: counters only). Default true.
    histograms: bool,
    /// Seconds per interval of the HdrHistogram interval log; 0 = no log. Default 10.
    interval_log_s: Int<0, 86_400>,
    /// Directory of the interval logs: "" = `$LOGS_DIRECTORY` under systemd, else the output
    /// directory.
    interval_log_dir: String,
}

impl Default for StatsSection {
    fn default() -> Self {
        StatsSection {
            socket: String::new(),
            control_socket: String::new(),
            log_interval_s: Int(10),
            metrics_addr: String::new(),
            histograms: true,
            interval_log_s: Int(10),
            interval_log_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct FileConfig {
    output: OutputSection,
    source: SourceSection,
    queue: QueueSection,
    writer: WriterSection,
    segment: SegmentSection,
    durability: DurabilitySection,
    recovery: RecoverySection,
    stats: StatsSection,
    compression: compression::CompressionSection,
}

impl Default for Config {
    fn default() -> Self {
        FileConfig::default().into_config()
    }
}

impl FileConfig {
    /// The file's tables as the domain's config. Long as the list of keys is long: one
    /// struct literal, a line or a few per key, nothing decided here that a key does not say.
    fn into_config(self) -> Config {
        let s = self.source;
        Config {
            output_dir: if self.output.dir.as_os_str().is_empty() {
                std::env::var_os("STATE_DIRECTORY")
                    .map_or_else(|| PathBuf::from("rec"), PathBuf::from)
            } else {
                self.output.dir
            },
            layout: self.output.layout,
            profile: self.output.profile,
            source: match s.kind {
                SourceKind::Synthetic => SourceConfig::Synthetic(SyntheticConfig {
                    width: s.width.0 as u32,
                    height: s.height.0 as u32,
                    fps: s.fps.0 as u32,
                    seed: s.seed.u64(),
                    topic: s.topic,
                    frame_id: s.frame_id,
                    streams: s.streams,
                    accel_rate: s.accel_rate.0 as u32,
                    content: s.content,
                }),
                SourceKind::Fakenect => SourceConfig::Fakenect(FakenectConfig {
                    dir: s.path,
                    paced: s.paced,
                    looped: s.looped,
                    topic: s.topic,
                    frame_id: s.frame_id,
                    streams: s.streams,
                }),
                SourceKind::Pipe | SourceKind::Unix => SourceConfig::Pipe(PipeConfig {
                    endpoint: match (s.kind, s.path.to_str()) {
                        (SourceKind::Unix, _) => PipeEndpoint::Unix(s.path),
                        (_, Some("-" | "")) => PipeEndpoint::Stdin,
                        _ => PipeEndpoint::Fifo(s.path),
                    },
                    width: s.width.0 as u32,
                    height: s.height.0 as u32,
                    topic: s.topic,
                    frame_id: s.frame_id,
                    streams: pipe_streams::table(&s.stream),
                    access: SocketAccess {
                        mode: s.socket_mode.0 as u32,
                        group: u32::try_from(s.socket_gid.0).ok(),
                    },
                }),
                SourceKind::Freenect => SourceConfig::Freenect(FreenectConfig {
                    device_index: s.device_index.0 as u32,
                    library: Some(s.library).filter(|p| !p.as_os_str().is_empty()),
                    on_device_error: s.on_device_error,
                    topic: s.topic,
                    frame_id: s.frame_id,
                    streams: s.streams,
                    accel_rate: s.accel_rate.0 as u32,
                }),
            },
            queue: QueueConfig {
                max_frames: self.queue.max_frames.0 as usize,
                max_bytes: self.queue.max_bytes.u64(),
                overflow: self.queue.overflow.set(),
            },
            writer: WriterConfig {
                backend: self.writer.backend,
                writers: self.writer.writers.0 as usize,
                io_mode: self.writer.io_mode(),
                max_write_bytes: self.writer.max_write_bytes.0 as usize,
                linger: Duration::from_micros(self.writer.linger_us.u64()),
                write_delay: Duration::ZERO,
                preallocate_bytes: self.writer.preallocate_bytes.u64(),
                max_consecutive_failures: self.writer.max_consecutive_failures.0 as u32,
                exit_when_degraded: self.writer.exit_when_degraded,
                fail_on_io_loss: self.writer.fail_on_io_loss,
                min_free_bytes: self.output.min_free_bytes.u64(),
                min_free_percent: self.output.min_free_percent.0 as u8,
                stop_timeout: Duration::from_secs(self.writer.stop_timeout_s.u64()),
                retain_bytes: Some(self.output.max_total_bytes.u64()).filter(|b| *b > 0),
                retain_age: Some(self.output.max_age_s.u64())
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs),
                compression: None,
            },
            segment: SegmentConfig {
                max_bytes: self.segment.max_bytes.u64(),
                max_duration: match self.segment.max_duration_s.u64() {
                    0 => None,
                    s => Some(Duration::from_secs(s)),
                },
            },
            durability: DurabilityConfig {
                fsync_interval: match self.durability.fsync_interval_ms.u64() {
                    0 => None,
                    ms => Some(Duration::from_millis(ms)),
                },
                fsync_every_frames: match self.durability.fsync_every_frames.u64() {
                    0 => None,
                    n => Some(n),
                },
                release_page_cache: self.durability.release_page_cache,
            },
            stats: StatsConfig {
                socket: match self.stats.socket.as_str() {
                    "off" => StatsSocket::Off,
                    "" => StatsSocket::Default,
                    path => StatsSocket::At(PathBuf::from(path)),
                },
                control_socket: match self.stats.control_socket.as_str() {
                    "off" => StatsSocket::Off,
                    "" => StatsSocket::Default,
                    path => StatsSocket::At(PathBuf::from(path)),
                },
                log_interval: match self.stats.log_interval_s.u64() {
                    0 => None,
                    s => Some(Duration::from_secs(s)),
                },
                metrics_addr: Some(self.stats.metrics_addr).filter(|a| !a.is_empty()),
                histograms: self.stats.histograms,
                interval_log: match self.stats.interval_log_s.u64() {
                    0 => None,
                    s => Some(Duration::from_secs(s)),
                },
                interval_log_dir: Some(PathBuf::from(self.stats.interval_log_dir))
                    .filter(|d| !d.as_os_str().is_empty()),
            },
            recovery: self.recovery.at_start,
            compression: self.compression.into_compression(),
        }
    }
}

/// Parses and validates configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let at = |offset: usize, message: String| {
        let (line, col) = line_col(text, offset);
        ConfigError {
            file: file.to_string(),
            line,
            col,
            message,
        }
    };
    // Syntax first: all syntax errors the parser can recover from.
    let (_, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        return Err(ConfigErrors(
            syntax
                .iter()
                .map(|e| at(e.span().map_or(0, |s| s.start), e.message().to_string()))
                .collect(),
        ));
    }
    // Then types, ranges and unknown keys: report one, blank its entry, parse again.
    let mut work = text.to_string();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..256 {
        match toml::from_str::<FileConfig>(&work) {
            Ok(cfg) => {
                if errors.is_empty() {
                    return validate(cfg, text, file);
                }
                break;
            }
            Err(e) => {
                let offset = e.span().map_or(0, |s| s.start);
                if !seen.insert((offset, e.message().to_string())) {
                    break;
                }
                errors.push(at(offset, e.message().trim().to_string()));
                if !blank_entry(&mut work, offset) {
                    break;
                }
            }
        }
    }
    errors.sort_by_key(|e| (e.line, e.col));
    Err(ConfigErrors(errors))
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &name),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: name,
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }])),
    }
}
