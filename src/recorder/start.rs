//! Starting a recording: the directory locked, repaired and resumed, the source opened, the
//! queue, pool, statistics endpoints and interval log set up, and the writer and receiver
//! threads running.

use std::path::Path;
use std::thread::JoinHandle;

use super::supervise::IntervalLog;
use super::*;
use crate::segment::ros2::Profile;

/// A source of either kind: asked for each frame, or delivering on its own thread.
enum AnySource {
    Pull(Box<dyn Source>),
    Push(Box<dyn PushSource>),
}

impl AnySource {
    fn streams(&self) -> &[StreamInfo] {
        match self {
            AnySource::Pull(s) => s.streams(),
            AnySource::Push(s) => s.streams(),
        }
    }

    fn can_wait(&self) -> bool {
        match self {
            AnySource::Pull(s) => s.can_wait(),
            AnySource::Push(s) => s.can_wait(),
        }
    }
}

fn build_source(
    cfg: &SourceConfig,
    first_seq: &[u64],
    counters: &Counters,
) -> Result<AnySource, SourceError> {
    Ok(match cfg {
        SourceConfig::Synthetic(s) => {
            AnySource::Pull(Box::new(SyntheticSource::starting_at(s.clone(), first_seq)))
        }
        SourceConfig::Fakenect(f) => {
            let src = FakenectSource::open(f.clone())?;
            tracing::info!(dump = %f.dir.display(), frames = src.frames(), paced = f.paced, looped = f.looped, "replaying a fakenect dump");
            AnySource::Pull(Box::new(src))
        }
        SourceConfig::Freenect(f) => AnySource::Push(Box::new(FreenectSource::open(f.clone())?)),
        SourceConfig::Pipe(p) => AnySource::Pull(Box::new(PipeSource::open(
            p.clone(),
            counters.source_rejects.clone(),
        )?)),
    })
}

/// A recording that has started: its threads, endpoints, and what supervising and finishing
/// it read.
pub(super) struct Running {
    pub(super) dir: PathBuf,
    pub(super) dir_lock: Option<lock::DirLock>,
    pub(super) repaired: Vec<repair::Outcome>,
    pub(super) probed: Backend,
    /// Buffered or direct, as `auto` resolved for the directory.
    pub(super) io_mode: IoMode,
    pub(super) policy: OverflowPolicy,
    pub(super) started: Instant,
    pub(super) snapshot: SnapshotFn,
    pub(super) counters: Arc<Counters>,
    pub(super) ledger: Arc<Ledger>,
    /// (name, topic) of each stream, in stream-table order.
    pub(super) stream_names: Vec<(String, String)>,
    pub(super) queue: Arc<FrameQueue>,
    pub(super) live: Arc<LiveSettings>,
    pub(super) histograms: SharedHistograms,
    pub(super) hlog: Option<IntervalLog>,
    pub(super) server: Option<Server>,
    pub(super) metrics: Option<Server>,
    /// The control socket (`framerec ctl`).
    pub(super) control: Option<Server>,
    pub(super) writer: JoinHandle<WriterReport>,
    pub(super) receiver: JoinHandle<(Result<StopReason, SourceError>, Duration)>,
    /// The caller's stop flag (signals set it).
    pub(super) stop: Arc<AtomicBool>,
    pub(super) reload: Option<ReloadFn>,
}

/// The recording directory, locked, with what a crash left repaired (per
/// `recovery.at-start`) and the point the recording continues from.
struct OpenDir {
    dir: PathBuf,
    dir_lock: Option<lock::DirLock>,
    repaired: Vec<repair::Outcome>,
    resume: Option<repair::ResumePoint>,
}

fn open_dir(cfg: &Config) -> Result<OpenDir, RecordError> {
    let dir = cfg.output_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| RecordError::OutputDir {
        path: dir.clone(),
        source,
    })?;
    let io_err = |source| RecordError::OutputDir {
        path: dir.clone(),
        source,
    };
    // One writer per directory, taken before anything (repair included) touches its files.
    let dir_lock = Some(lock::lock_dir(&dir)?);
    if cfg.layout == Layout::Fakenect && dir.join(sink::fakenect::INDEX).exists() {
        return Err(RecordError::ExistingDump { dir });
    }
    // A directory is one recording: a new run repairs what a crash left, then continues it.
    if cfg.recovery == AtStart::Recover {
        repair::finish_interrupted(&dir, None).map_err(io_err)?;
    }
    let existing = sink::existing_segments(&dir).map_err(io_err)?;
    let unfinished = repair::unfinished_tail(&existing).map_err(io_err)?;
    let mut repaired = Vec::new();
    if !unfinished.is_empty() {
        match cfg.recovery {
            AtStart::Refuse => {
                let first = unfinished
                    .iter()
                    .find(|p| !repair::looks_finished(p).unwrap_or(false));
                return Err(RecordError::Unfinished {
                    dir,
                    first: first.unwrap_or(&unfinished[0]).clone(),
                });
            }
            AtStart::Recover => {
                let starts_at_zero = existing.first().is_some_and(|(id, _)| *id == 0)
                    && existing.len() == unfinished.len();
                repaired = repair::repair(&unfinished, starts_at_zero, false).map_err(io_err)?;
                if let Some(repair::Outcome::Failed { path, why }) = repaired
                    .iter()
                    .find(|o| matches!(o, repair::Outcome::Failed { .. }))
                {
                    return Err(RecordError::Repair {
                        dir,
                        why: format!("{}: {why}", path.display()),
                    });
                }
                for o in &repaired {
                    if let repair::Outcome::Recovered {
                        path, recovered, ..
                    } = o
                    {
                        tracing::warn!(segment = %path.display(), kept = recovered.kept_frames, lost = ?recovered.lost_ranges, "recovered a segment left unfinished by a crash");
                    }
                }
            }
            AtStart::Leave => {
                tracing::warn!(dir = %dir.display(), "leaving unfinished segments as they are (recovery.at-start = \"leave\")");
            }
        }
    }
    let resume = repair::resume_point(&dir).map_err(io_err)?;
    if resume.is_some() && cfg.layout == Layout::Mcap {
        same_profile(&dir, cfg.profile)?;
    }
    if let Some(r) = &resume {
        tracing::info!(recording = %r.recording_id, next_seqs = ?r.next_seqs, next_segment = r.next_segment_id, "continuing the recording");
    }
    Ok(OpenDir {
        dir,
        dir_lock,
        repaired,
        resume,
    })
}

/// `cfg` with `writer.io-mode = "auto"` made concrete for `dir` (see
/// [`crate::io::mode::decide`]); the mode and its reason are logged.
fn with_io_mode(cfg: &Config, dir: &Path) -> Config {
    let mut cfg = cfg.clone();
    let mode = cfg.writer.io_mode;
    if mode != IoMode::Auto {
        tracing::info!("io mode {} (writer.io-mode)", mode.as_str());
        return cfg;
    }
    let refusal = match (cfg.layout, cfg.profile) {
        _ if cfg.compression.any() => Some("compressed chunks cannot be aligned for O_DIRECT"),
        (Layout::Fakenect, _) => Some("the fakenect layout writes buffered"),
        (_, Profile::Ros2) => Some("the ros2 profile refuses O_DIRECT"),
        _ => None,
    };
    let (mode, why) = crate::io::mode::auto(dir, refusal);
    tracing::info!("io mode {} (auto: {why})", mode.as_str());
    cfg.writer.io_mode = mode;
    cfg
}

/// `cfg` with the writers' compression stage set up for `streams`.
fn with_compression(cfg: &Config, streams: &[StreamInfo]) -> Config {
    let mut cfg = cfg.clone();
    let names: Vec<String> = streams.iter().map(|s| s.name.clone()).collect();
    cfg.writer.compression = cfg.compression.for_streams(&names);
    if let Some(c) = &cfg.writer.compression {
        tracing::info!(threads = c.threads, "chunk compression on");
    }
    cfg
}

/// One bag is one serialization format: a continued recording keeps the profile its last
/// segment was written in (a head with no schema left to tell passes).
fn same_profile(dir: &Path, wanted: Profile) -> Result<(), RecordError> {
    let io_err = |source| RecordError::OutputDir {
        path: dir.to_path_buf(),
        source,
    };
    let existing = sink::existing_segments(dir).map_err(io_err)?;
    let Some((_, last)) = existing.last() else {
        return Ok(());
    };
    let src = crate::segment::FileSource::open(last).map_err(io_err)?;
    let head = crate::segment::scan_head(&src).map_err(io_err)?;
    let was = Profile::of_schemas(head.schemas.values().map(String::as_str));
    if was == wanted || head.schemas.is_empty() {
        return Ok(());
    }
    Err(RecordError::ProfileMismatch {
        dir: dir.to_path_buf(),
        was,
        wanted,
    })
}

/// Takes a snapshot of the run on demand (statistics socket, Prometheus, the log line).
fn snapshot_fn(
    streams: &[(String, String)],
    counters: &Arc<Counters>,
    ledger: &Arc<Ledger>,
    dir: &Path,
    histograms: &SharedHistograms,
    started: Instant,
) -> SnapshotFn {
    let streams = streams.to_vec();
    let (counters, ledger, dir, histograms) = (
        counters.clone(),
        ledger.clone(),
        dir.to_path_buf(),
        histograms.clone(),
    );
    Arc::new(move || {
        let free = nix::sys::statvfs::statvfs(&dir)
            .ok()
            .map(|s| s.blocks_available() * s.fragment_size());
        // Percentiles are read under the lock: no 2 MB copy of the histograms per snapshot.
        let take = |h: &Histograms| {
            // One instant for the totals and the streams.
            let tallies = ledger.streams();
            let mut s = Snapshot::take(
                &counters,
                &Tally::sum(tallies.iter()),
                h,
                started.elapsed().as_secs_f64(),
                free,
            );
            s.streams = StreamStats::all(&streams, &tallies);
            s
        };
        match histograms.lock() {
            Ok(h) => take(&h.total),
            Err(_) => take(&Histograms::default()),
        }
    })
}

/// The statistics socket and the Prometheus endpoint, as configured.
fn serve(
    cfg: &Config,
    dir: &Path,
    snapshot: &SnapshotFn,
    histograms: &SharedHistograms,
) -> Result<(Option<Server>, Option<Server>), RecordError> {
    // A socket or address the user named is one they will look for: failing to serve it is an
    // error at start. The default socket beside the recording is a convenience: a warning.
    let server = match cfg.stats.socket.resolve(dir) {
        None => None,
        Some(path) => match Server::stats(&path, snapshot.clone()) {
            Ok(s) => Some(s),
            Err(e) if e.path_taken() || matches!(cfg.stats.socket, StatsSocket::At(_)) => {
                return Err(RecordError::Serve(e));
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "statistics socket unavailable; recording without it");
                None
            }
        },
    };
    if let Some(s) = &server {
        tracing::info!(socket = %s.addr, "serving statistics");
    }
    let render: RenderFn = {
        let (snapshot, histograms) = (snapshot.clone(), histograms.clone());
        Arc::new(move || {
            let s = snapshot();
            match histograms.lock() {
                Ok(h) => prometheus_text(&s, &h.total),
                Err(_) => prometheus_text(&s, &Histograms::default()),
            }
        })
    };
    let metrics = match cfg.stats.metrics_addr.as_deref() {
        None => None,
        Some(addr) => {
            let m = Server::metrics(addr, render).map_err(RecordError::Serve)?;
            tracing::info!(addr = %m.addr, "serving Prometheus metrics");
            Some(m)
        }
    };
    Ok((server, metrics))
}

/// The control socket, as configured: a path the user named that cannot be served refuses
/// the start; the default one only warns.
fn serve_control(
    cfg: &Config,
    dir: &Path,
    counters: &Arc<Counters>,
    live: &Arc<LiveSettings>,
    snapshot: &SnapshotFn,
    stop: &Arc<AtomicBool>,
    segment: Arc<crate::control::CurrentSegment>,
) -> Result<Option<Server>, RecordError> {
    let Some(path) = cfg.stats.control_socket_path(dir) else {
        return Ok(None);
    };
    let control = crate::control::Control {
        counters: counters.clone(),
        live: live.clone(),
        snapshot: snapshot.clone(),
        stop: stop.clone(),
        segment,
        no_split: (cfg.layout == Layout::Fakenect).then_some(
            "the fakenect layout writes one file per frame: it has no segments to split",
        ),
        queue_frames: cfg.queue.max_frames as u64,
        mark: None,
    };
    match control.serve(&path) {
        Ok(s) => {
            tracing::info!(socket = %s.addr, "serving the control socket (framerec ctl)");
            Ok(Some(s))
        }
        Err(e) if e.path_taken() || matches!(cfg.stats.control_socket, StatsSocket::At(_)) => {
            Err(RecordError::Serve(e))
        }
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "control socket unavailable; recording without it");
            Ok(None)
        }
    }
}

/// Starts recording per `cfg`; see [`record_with`].
///
/// Long as a list is long: it puts the run's parts together in the order they depend on each
/// other (directory, source, queue and ledger, endpoints, writer, receiver), one call or one
/// struct each, and hands them all to [`Running`].
pub(super) fn start(
    cfg: &Config,
    limits: Limits,
    controls: Controls,
) -> Result<Running, RecordError> {
    let Controls {
        stop,
        reload,
        listeners,
        on_start,
    } = controls;
    // The caller's flag, and why the run stopped: the caller, or the writers failing.
    let halt = Stop::new(stop.clone());
    let probed = sink::probe(cfg.writer.backend).map_err(RecordError::Backend)?;
    let OpenDir {
        dir,
        dir_lock,
        repaired,
        resume,
    } = open_dir(cfg)?;
    let cfg = &with_io_mode(cfg, &dir);

    let counters = Arc::new(Counters::default());
    let OpenedSource {
        source,
        streams,
        first_seq,
        policy,
    } = open_source(cfg, resume.as_ref(), &counters)?;
    let pools = stream_pools(&streams, cfg.queue.max_bytes);
    let stream_names = stream_names(&streams);
    let cfg = &with_compression(cfg, &streams);
    let queue = Arc::new(FrameQueue::new(cfg.queue.max_frames));
    let ledger = Arc::new(Ledger::new(streams.len()));

    let target = recording_target(&dir, resume.as_ref(), streams, cfg.profile);
    let histograms: SharedHistograms = Arc::new(Mutex::new(Published::default()));
    let live = Arc::new(LiveSettings::default());
    let segment = Arc::new(crate::control::CurrentSegment::default());
    let mut listeners = listeners;
    listeners.push(segment.clone());
    let parts = WriterParts {
        queue: queue.clone(),
        ledger: ledger.clone(),
        counters: counters.clone(),
        stop: halt.clone(),
        histograms: histograms.clone(),
        record_histograms: cfg.stats.histograms,
        live: live.clone(),
        listeners: Arc::new(listeners),
    };
    // The statistics endpoints are bound before anything records: a path taken by something
    // else refuses the start.
    let started = Instant::now();
    let snapshot = snapshot_fn(
        &stream_names,
        &counters,
        &ledger,
        &dir,
        &histograms,
        started,
    );
    let (server, metrics) = serve(cfg, &dir, &snapshot, &histograms)?;
    let control = serve_control(cfg, &dir, &counters, &live, &snapshot, &stop, segment)?;
    if let Some(f) = on_start {
        f(snapshot.clone());
    }
    let hlog = IntervalLog::open(cfg, &target, &histograms);
    let writer = spawn_writer(cfg, target, parts)?;

    let rparts = ReceiverParts {
        queue: queue.clone(),
        pools,
        ledger: ledger.clone(),
        counters: counters.clone(),
        policy,
        stop: halt.clone(),
        first_seq,
        histograms: cfg.stats.histograms.then(|| histograms.clone()),
    };
    let receiver = match spawn_receiver(source, rparts, limits) {
        Ok(r) => r,
        Err(e) => {
            queue.close();
            let _ = writer.join();
            return Err(RecordError::Thread(e));
        }
    };
    Ok(Running {
        dir,
        dir_lock,
        repaired,
        probed,
        io_mode: cfg.writer.io_mode,
        policy,
        started,
        snapshot,
        counters,
        ledger,
        stream_names,
        queue,
        live,
        histograms,
        hlog,
        server,
        metrics,
        control,
        writer,
        receiver,
        stop,
        reload,
    })
}

/// The source, opened where the recording continues, with its streams checked against the
/// configured ones, and the overflow policy that applies to it.
struct OpenedSource {
    source: AnySource,
    streams: Vec<StreamInfo>,
    /// Each stream's first sequence number (where a resumed recording goes on).
    first_seq: Vec<u64>,
    policy: OverflowPolicy,
}

fn open_source(
    cfg: &Config,
    resume: Option<&repair::ResumePoint>,
    counters: &Counters,
) -> Result<OpenedSource, RecordError> {
    let names = cfg.source.stream_names();
    let first_seq: Vec<u64> = names
        .iter()
        .map(|n| resume.map_or(0, |r| r.next_seq_of(n)))
        .collect();
    let source = build_source(&cfg.source, &first_seq, counters).map_err(RecordError::Source)?;
    let streams = source.streams().to_vec();
    check_streams(&streams, &names).map_err(RecordError::Source)?;
    for stream in streams.iter().filter(|s| s.format.is_image()) {
        if cfg.layout == Layout::Fakenect && (stream.width, stream.height) != (640, 480) {
            tracing::warn!(
                stream = %stream.name,
                width = stream.width,
                height = stream.height,
                "libfreenect's fakenect replays 640x480 images only; this dump will not replay through it"
            );
        }
    }
    let policy = cfg.queue.overflow.unwrap_or(if source.can_wait() {
        OverflowPolicy::Block
    } else {
        OverflowPolicy::DropNewest
    });
    if policy == OverflowPolicy::Block && matches!(source, AnySource::Push(_)) && !source.can_wait()
    {
        // The device's callback would stall its USB transfers: frames lost where nobody counts.
        return Err(RecordError::Source(SourceError::Device(
            "queue.overflow = \"block\" cannot apply to a live Kinect: its callback must never \
             wait (frames would be lost inside libfreenect, uncounted); use \"drop-newest\" or \
             \"drop-oldest\" (block is for replays)"
                .into(),
        )));
    }
    Ok(OpenedSource {
        source,
        streams,
        first_seq,
        policy,
    })
}

/// The writer thread, running the configured layout.
fn spawn_writer(
    cfg: &Config,
    target: RecordingTarget,
    parts: WriterParts,
) -> Result<JoinHandle<WriterReport>, RecordError> {
    let (wcfg, scfg, dcfg) = (
        cfg.writer.clone(),
        cfg.segment.clone(),
        cfg.durability.clone(),
    );
    let layout = cfg.layout;
    std::thread::Builder::new()
        .name("framerec-writer".into())
        .spawn(move || match layout {
            Layout::Mcap => sink::run(wcfg, scfg, dcfg, target, parts),
            Layout::Fakenect => sink::fakenect::run(wcfg, dcfg, target, parts),
        })
        .map_err(RecordError::Thread)
}

/// The receiver thread: it runs the source until a limit, a stop or the source's end, and
/// reports why it stopped and the CPU time it used.
fn spawn_receiver(
    source: AnySource,
    rparts: ReceiverParts,
    limits: Limits,
) -> std::io::Result<JoinHandle<(Result<StopReason, SourceError>, Duration)>> {
    std::thread::Builder::new()
        .name("framerec-receiver".into())
        .spawn(move || {
            let received = match source {
                AnySource::Pull(s) => receiver::run(s, rparts, limits),
                AnySource::Push(s) => intake::run(s, rparts, limits),
            };
            (received, cpu_time(UsageWho::RUSAGE_THREAD))
        })
}

/// Where and what the writers record: a new recording, or the one `resume` continues.
fn recording_target(
    dir: &Path,
    resume: Option<&repair::ResumePoint>,
    streams: Vec<StreamInfo>,
    cfg_profile: Profile,
) -> RecordingTarget {
    RecordingTarget {
        dir: dir.to_path_buf(),
        recording_id: resume.map_or_else(
            || format!("{:x}-{}", host_real_ns(), std::process::id()),
            |r| r.recording_id.clone(),
        ),
        streams,
        first_segment_id: resume.map_or(0, |r| r.next_segment_id),
        profile: cfg_profile,
    }
}

/// (name, topic) of each stream, in stream-table order.
fn stream_names(streams: &[StreamInfo]) -> Vec<(String, String)> {
    streams
        .iter()
        .map(|s| (s.name.clone(), s.topic.clone()))
        .collect()
}

/// One buffer pool per stream, sized for its frames: every stream gets the same number of
/// buffers (so the same depth of queue in frames), as many as the byte budget allows, and at
/// least 2. Memory stays within `max_bytes` plus two buffers per stream.
fn stream_pools(streams: &[StreamInfo], max_bytes: u64) -> Vec<Arc<BufferPool>> {
    let buffer_bytes = |s: &StreamInfo| (round_up(s.frame_bytes(), ALIGN) + 2 * ALIGN) as u64;
    let all: u64 = streams.iter().map(buffer_bytes).sum();
    let each = (max_bytes / all.max(1)).max(2) as usize;
    streams
        .iter()
        .map(|s| BufferPool::new(each, s.frame_bytes()))
        .collect()
}

/// The source's stream table must be the one the configuration names, and fit a segment.
fn check_streams(streams: &[StreamInfo], names: &[String]) -> Result<(), SourceError> {
    let have: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    if streams.is_empty() || streams.len() > crate::segment::MAX_STREAMS || have != names {
        return Err(SourceError::Device(format!(
            "the source delivers streams [{}], the configuration asks for [{}] (at most {})",
            have.join(", "),
            names.join(", "),
            crate::segment::MAX_STREAMS
        )));
    }
    // The fields before a payload are built in a fixed scratch on the hot path.
    if let Some(s) = streams
        .iter()
        .find(|s| s.frame_id.len() > crate::segment::MAX_FRAME_ID_BYTES)
    {
        return Err(SourceError::Device(format!(
            "stream {}: frame_id is {} bytes long, at most {} are recorded",
            s.name,
            s.frame_id.len(),
            crate::segment::MAX_FRAME_ID_BYTES
        )));
    }
    Ok(())
}
