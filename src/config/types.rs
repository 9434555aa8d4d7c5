//! The validated configuration, one typed config per component.

use super::*;

/// Where a source's frames come from, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    Synthetic(SyntheticConfig),
    /// A libfreenect dump replayed by framerec's own reader.
    Fakenect(FakenectConfig),
    /// A Kinect through libfreenect (or a dump through the fakenect library).
    Freenect(FreenectConfig),
    /// Frames from an external driver over stdin, a FIFO or a Unix socket.
    Pipe(PipeConfig),
}

impl SourceConfig {
    /// The streams a Kinect-like source records (`None` for a pipe, whose table is its own).
    pub fn kinect_streams(&self) -> Option<&Vec<KinectStream>> {
        match self {
            SourceConfig::Synthetic(s) => Some(&s.streams),
            SourceConfig::Fakenect(s) => Some(&s.streams),
            SourceConfig::Freenect(s) => Some(&s.streams),
            SourceConfig::Pipe(_) => None,
        }
    }

    /// The names of the streams the source records, in stream-table order.
    pub fn stream_names(&self) -> Vec<String> {
        match (self, self.kinect_streams()) {
            (_, Some(k)) => k.iter().map(|k| k.as_str().to_string()).collect(),
            (SourceConfig::Pipe(p), None) => {
                p.stream_table().into_iter().map(|s| s.info.name).collect()
            }
            (_, None) => vec!["depth".to_string()],
        }
    }

    /// Bytes of the largest frame, as far as the configuration knows (Kinect sources:
    /// 640x480x2).
    pub fn frame_bytes(&self) -> u64 {
        self.frames_bytes().into_iter().max().unwrap_or(0)
    }

    /// Bytes of one frame of each stream, in stream-table order (Kinect sources: 640x480).
    pub fn frames_bytes(&self) -> Vec<u64> {
        let kinect = |streams: &[KinectStream], w: u32, h: u32| -> Vec<u64> {
            let pixels = w as u64 * h as u64;
            streams
                .iter()
                .map(|k| match k {
                    KinectStream::Depth => pixels * 2,
                    KinectStream::Color => pixels * 3,
                    KinectStream::Accel => crate::segment::accel::RAW_BYTES as u64,
                })
                .collect()
        };
        match self {
            SourceConfig::Synthetic(s) => kinect(&s.streams, s.width, s.height),
            SourceConfig::Pipe(p) => p
                .stream_table()
                .iter()
                .map(|s| s.info.frame_bytes() as u64)
                .collect(),
            SourceConfig::Fakenect(s) => kinect(&s.streams, 640, 480),
            SourceConfig::Freenect(s) => kinect(&s.streams, 640, 480),
        }
    }
}

/// The validated configuration: one typed config per component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub output_dir: PathBuf,
    pub layout: Layout,
    /// What the MCAP segments are laid out for (`output.profile`, `--profile`).
    pub profile: Profile,
    pub source: SourceConfig,
    pub queue: QueueConfig,
    pub writer: WriterConfig,
    pub segment: SegmentConfig,
    pub durability: DurabilityConfig,
    pub recovery: AtStart,
    pub stats: StatsConfig,
    /// MCAP chunk compression (`[compression]`, `--compression`).
    pub compression: super::Compression,
}

/// Where and how often the recorder reports statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsConfig {
    pub socket: StatsSocket,
    /// The control socket (`framerec ctl`); `Default` is `framerec.ctl` beside the statistics
    /// socket.
    pub control_socket: StatsSocket,
    pub log_interval: Option<Duration>,
    /// Prometheus exposition address; `None` when off.
    pub metrics_addr: Option<String>,
    /// False: counters only, no histograms (and so no interval log).
    pub histograms: bool,
    /// Interval of the HdrHistogram interval log; `None` when off.
    pub interval_log: Option<Duration>,
    /// Where the interval log goes; `None` = `$LOGS_DIRECTORY`, else the output directory.
    pub interval_log_dir: Option<PathBuf>,
}

impl StatsConfig {
    /// Where the control socket of a recording in `output_dir` goes, if anywhere.
    pub fn control_socket_path(&self, output_dir: &Path) -> Option<PathBuf> {
        match &self.control_socket {
            StatsSocket::Default => Some(
                match self.socket.resolve(output_dir).as_deref().map(Path::parent) {
                    Some(Some(dir)) => dir.join("framerec.ctl"),
                    _ => StatsSocket::Default
                        .resolve(output_dir)?
                        .with_file_name("framerec.ctl"),
                },
            ),
            other => other.resolve(output_dir),
        }
    }

    /// The directory the interval log of a recording in `output_dir` goes to.
    pub fn interval_log_dir(&self, output_dir: &Path) -> PathBuf {
        match (&self.interval_log_dir, std::env::var_os("LOGS_DIRECTORY")) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) => PathBuf::from(d),
            (None, None) => output_dir.to_path_buf(),
        }
    }
}

/// Where the statistics socket goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatsSocket {
    /// `$RUNTIME_DIRECTORY/framerec.sock` under systemd, else `framerec.sock` in the output
    /// directory.
    Default,
    Off,
    At(PathBuf),
}

impl StatsSocket {
    pub fn resolve(&self, output_dir: &Path) -> Option<PathBuf> {
        match self {
            StatsSocket::Off => None,
            StatsSocket::At(p) => Some(p.clone()),
            StatsSocket::Default => Some(match std::env::var_os("RUNTIME_DIRECTORY") {
                Some(d) => PathBuf::from(d).join("framerec.sock"),
                None => output_dir.join("framerec.sock"),
            }),
        }
    }
}
