//! Supervising a running recording: the summary line every `log-interval-s`, the interval
//! log, a snapshot on SIGUSR1, reloads on SIGHUP, systemd's notify protocol, and the stop
//! timeout.

use super::start::Running;
use super::*;

/// The run's interval log, if it has one, and how often it takes an interval.
pub(super) struct IntervalLog {
    writer: IntervalLogWriter,
    every: Duration,
    histograms: SharedHistograms,
    /// Swapped with the shared interval histograms, so no interval allocates.
    spare: Histograms,
    /// Asks the log's sync thread to make what was written durable.
    sync: Option<std::sync::mpsc::SyncSender<()>>,
}

/// A thread that fdatasyncs the interval log whenever asked, so that neither the supervision
/// loop (stop timeouts, the watchdog) nor the writers wait on it; a request made while one
/// sync runs is merged into the next. Ends when its sender is dropped.
fn spawn_log_syncer(
    writer: &IntervalLogWriter,
) -> std::io::Result<std::sync::mpsc::SyncSender<()>> {
    let file = writer.sync_handle()?;
    let path = writer.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("framerec-hlog-sync".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                if let Err(e) = file.sync_data() {
                    tracing::warn!(log = %path.display(), error = %e, "cannot make the latency interval log durable");
                }
            }
        })?;
    Ok(tx)
}

impl IntervalLog {
    pub(super) fn open(
        cfg: &Config,
        target: &RecordingTarget,
        histograms: &SharedHistograms,
    ) -> Option<Self> {
        let every = cfg.stats.interval_log.filter(|_| cfg.stats.histograms)?;
        let dir = cfg.stats.interval_log_dir(&cfg.output_dir);
        match IntervalLogWriter::create(&dir, target.first_segment_id, &target.recording_id) {
            Ok(writer) => {
                tracing::info!(log = %writer.path().display(), every = ?every, "writing the latency interval log");
                let sync = spawn_log_syncer(&writer)
                    .inspect_err(|e| tracing::warn!(log = %writer.path().display(), error = %e, "cannot start the interval log's sync thread; it is made durable at the end only"))
                    .ok();
                Some(IntervalLog {
                    writer,
                    every,
                    histograms: histograms.clone(),
                    spare: Histograms::default(),
                    sync,
                })
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot write the latency interval log; recording without it");
                None
            }
        }
    }

    /// Moves the histograms recorded since the last call into `spare` (no allocation).
    fn take(&mut self) {
        self.spare.reset();
        if let Ok(mut shared) = self.histograms.lock() {
            std::mem::swap(&mut shared.interval, &mut self.spare);
        }
    }

    fn write(&mut self, s: &Snapshot) {
        self.take();
        if let Err(e) = self.writer.write_interval(&self.spare, s) {
            tracing::warn!(log = %self.writer.path().display(), error = %e, "writing the latency interval log failed");
        }
        if let Some(tx) = &self.sync {
            // Full: a sync is already pending and will cover this interval too.
            let _ = tx.try_send(());
        }
    }

    pub(super) fn finish(mut self, s: &Snapshot, reason: &str) {
        self.take();
        let path = self.writer.path().to_path_buf();
        if let Err(e) = self.writer.finish(&self.spare, s, reason) {
            tracing::warn!(log = %path.display(), error = %e, "finishing the latency interval log failed");
        }
    }
}

/// What the supervision loop watches and drives while the recording runs.
struct Supervision<'a> {
    snapshot: &'a SnapshotFn,
    counters: &'a Counters,
    ledger: &'a Ledger,
    hlog: Option<&'a mut IntervalLog>,
    notifier: Notifier,
    reload: Option<ReloadFn>,
    current: Config,
    live: &'a LiveSettings,
    stop: &'a AtomicBool,
}

impl Supervision<'_> {
    fn progress(&self) -> Progress {
        let c = self.counters;
        Progress {
            // Writes, not fsyncs: frames waiting behind a stuck write are what matters.
            completed: c.writes.load(Ordering::Relaxed),
            idle: {
                let t = self.ledger.tally();
                t.queued == 0
                    && t.in_writers == 0
                    && c.writes_in_flight.load(Ordering::Relaxed) == 0
            },
        }
    }

    /// Logs a summary line every `log-interval-s`, writes the interval log, logs a full
    /// snapshot on SIGUSR1, reloads on SIGHUP and speaks the notify protocol, until `done`.
    /// Returns true if stopping (a signal, a limit, the end of the source) took longer than
    /// `stop_timeout` to get there.
    ///
    /// One loop over the events it answers (a tick, a signal, the receiver ending, the stop
    /// deadline), each a few lines: split up, the loop's state would travel through every part.
    fn run(
        &mut self,
        receiver_done: impl Fn() -> bool,
        done: impl Fn() -> bool,
        stop_timeout: Duration,
    ) -> bool {
        let usr1 = Arc::new(AtomicBool::new(false));
        let hup = Arc::new(AtomicBool::new(false));
        let mut handlers =
            vec![signal_hook::flag::register(signal_hook::consts::SIGUSR1, usr1.clone()).ok()];
        if self.reload.is_some() {
            handlers
                .push(signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).ok());
        }
        let mut last = Instant::now();
        let mut prev: Option<Snapshot> = None;
        let mut last_interval = Instant::now();
        let mut stopping_since: Option<Instant> = None;
        let mut timed_out = false;
        while !done() {
            // Once stopping, look often: the process ends as soon as the writers are done.
            std::thread::sleep(if stopping_since.is_some() {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(50)
            });
            if !self.notifier.is_ready()
                && self.counters.segments_opened.load(Ordering::Relaxed) > 0
                && self.ledger.tally().received_frames > 0
            {
                let s = (self.snapshot)();
                self.notifier.ready(&s.log_line(None));
            }
            if self.stop.load(Ordering::Relaxed) || receiver_done() {
                self.notifier
                    .stopping("stopping: draining the queue and finalizing");
                let since = *stopping_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stop_timeout {
                    timed_out = true;
                    break;
                }
            }
            let progress = self.progress();
            self.notifier.watchdog(progress);
            let snapshot = self.snapshot;
            let previous = prev.clone();
            self.notifier
                .status(|| snapshot().log_line(previous.as_ref()));
            if usr1.swap(false, Ordering::Relaxed) {
                let s = (self.snapshot)();
                tracing::info!(snapshot = %serde_json::to_string(&s).unwrap_or_default(), "SIGUSR1");
            }
            if hup.swap(false, Ordering::Relaxed)
                && let Some(reload) = self.reload.as_mut()
            {
                self.notifier.reloading();
                match reload() {
                    Ok(new) => {
                        reload::apply(&mut self.current, &new, self.live);
                    }
                    Err(errors) => {
                        tracing::error!(%errors, "the reloaded configuration is invalid; still running on the previous one")
                    }
                }
                let s = (self.snapshot)();
                self.notifier.reloaded(&s.log_line(prev.as_ref()));
            }
            if let Some(every) = self.current.stats.log_interval
                && last.elapsed() >= every
            {
                let s = (self.snapshot)();
                tracing::info!("{}", s.log_line(prev.as_ref()));
                prev = Some(s);
                last = Instant::now();
            }
            if let Some(log) = self.hlog.as_deref_mut()
                && last_interval.elapsed() >= log.every
            {
                last_interval += log.every;
                log.write(&(self.snapshot)());
            }
        }
        for id in handlers.into_iter().flatten() {
            signal_hook::low_level::unregister(id);
        }
        timed_out
    }
}

/// Supervises `run` until its threads are done (or stopping took longer than
/// `writer.stop-timeout-s`: then true). Returns that and the notifier, to say the run stops.
pub(super) fn supervise(run: &mut Running, cfg: &Config) -> (bool, Notifier) {
    let mut supervision = Supervision {
        snapshot: &run.snapshot,
        counters: &run.counters,
        ledger: &run.ledger,
        hlog: run.hlog.as_mut(),
        notifier: Notifier::from_env(),
        reload: run.reload.take(),
        current: cfg.clone(),
        live: &run.live,
        stop: &run.stop,
    };
    let (receiver, writer) = (&run.receiver, &run.writer);
    let timed_out = supervision.run(
        || receiver.is_finished(),
        || receiver.is_finished() && writer.is_finished(),
        cfg.writer.stop_timeout,
    );
    (timed_out, supervision.notifier)
}
