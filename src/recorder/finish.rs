//! Finishing a recording: the threads joined (or, past the stop timeout, the writers left to
//! the process's exit), the ledger checked, the failure if any, the interval log's last
//! interval, and the report.

use super::start::Running;
use super::*;

/// Ends `run` and reports it.
pub(super) fn finish(
    run: Running,
    cfg: &Config,
    timed_out: bool,
    mut notifier: Notifier,
) -> RunReport {
    let Running {
        dir,
        mut dir_lock,
        repaired,
        probed,
        policy,
        io_mode,
        started,
        snapshot,
        counters,
        ledger,
        stream_names,
        queue,
        histograms,
        hlog,
        server,
        metrics,
        control,
        writer,
        receiver,
        ..
    } = run;
    notifier.stopping("stopping: finalizing");
    let (received, receiver_cpu) = match receiver.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    let (report, gave_up) = if timed_out {
        // The directory stays locked until the process exits (the kernel releases it then).
        std::mem::forget(dir_lock.take());
        abandon_writer(cfg, (probed, io_mode), &queue, &ledger, &counters)
    } else {
        match writer.join() {
            Ok(r) => (r, None),
            Err(p) => std::panic::resume_unwind(p),
        }
    };
    drop(server);
    drop(metrics);
    drop(control);
    let (stop_reason, source_failure) = match received {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let totals = checked_totals(&counters, &ledger, &stream_names);
    let failure = match (gave_up, report.error, source_failure) {
        (Some(t), _, _) => Some(t),
        (None, Some(w), _) => Some(RunFailure::Writer(w)),
        (None, None, Some(s)) => Some(RunFailure::Source(s)),
        (None, None, None) => lost_to_disk(&totals).filter(|_| cfg.writer.fail_on_io_loss),
    };
    // After a stop timeout the interval log's disk may be the stuck one: its last interval is
    // left out, as after a crash.
    if !timed_out && let Some(log) = hlog {
        let reason = match (&failure, stop_reason) {
            (Some(f), _) => format!("failed: {f}"),
            (None, Some(s)) => s.as_str().to_string(),
            (None, None) => "unknown".into(),
        };
        log.finish(&snapshot(), &reason);
    }
    let histograms = histograms
        .lock()
        .map(|h| h.total.clone())
        .unwrap_or_default();
    drop(dir_lock);
    RunReport {
        dir,
        stop: stop_reason,
        elapsed: started.elapsed(),
        totals,
        backend: report.backend,
        direct_io: report.direct_io,
        overflow: policy,
        segments: report.segments,
        repaired,
        histograms,
        failure,
        receiver_cpu,
    }
}

/// Past the stop timeout the writers wait on the disk: their thread is left to the process's
/// exit (the kernel completes or cancels its I/O); nothing in flight is dropped here. What
/// they were still holding goes into the failure. `(probed, io_mode)`: the backend and the
/// I/O mode the writers were started with.
fn abandon_writer(
    cfg: &Config,
    (probed, io_mode): (Backend, IoMode),
    queue: &FrameQueue,
    ledger: &Ledger,
    counters: &Counters,
) -> (WriterReport, Option<RunFailure>) {
    let failure = RunFailure::StopTimeout {
        after: cfg.writer.stop_timeout,
        queued: queue.len() as u64,
        in_writers: ledger.tally().in_writers,
        in_flight: counters.writes_in_flight.load(Ordering::Relaxed),
    };
    tracing::error!("{failure}");
    let report = WriterReport {
        backend: probed,
        direct_io: io_mode.is_direct(),
        segments: Vec::new(),
        error: None,
    };
    (report, Some(failure))
}

/// The run's totals, overall and per stream, after checking each stream's tally balances
/// (received = written + dropped + queued + in writers).
fn checked_totals(
    counters: &Counters,
    ledger: &Ledger,
    stream_names: &[(String, String)],
) -> Totals {
    let tallies = ledger.streams();
    for (t, (name, _)) in tallies.iter().zip(stream_names) {
        if let Err(e) = t.check() {
            tracing::error!(stream = %name, "{e}");
        }
    }
    let mut totals = Totals::of(counters, &Tally::sum(tallies.iter()));
    totals.streams = StreamStats::all(stream_names, &tallies);
    totals
}
