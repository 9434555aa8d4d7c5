//! A whole recording: builds the source, queue, receiver thread and writer pool from a
//! [`Config`], runs them until a limit, a stop request or the end of the source, drains, and
//! reports. The CLI, tests and benchmarks all record through [`record`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{Config, SourceConfig};
use crate::frame::{ALIGN, BufferPool, DropReason, host_real_ns, round_up};
use crate::observe::{Counters, Percentiles, WriterHistograms};
use crate::queue::{DropLog, FrameQueue, OverflowPolicy};
use crate::receiver::{self, Limits, ReceiverParts, StopReason};
use crate::source::{Source, SourceError, SyntheticSource};
use crate::writer::{self, Backend, RecordingTarget, WriterError, WriterParts};

/// Errors that keep a recording from starting.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot create the output directory {path}: {source}")]
    OutputDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir} already holds a recording ({first}); record into a new directory")]
    NotEmpty { dir: PathBuf, first: PathBuf },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("{0}")]
    Backend(WriterError),
}

/// Why a recording that started ended badly.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    #[error("source failed: {0}")]
    Source(#[from] SourceError),
    #[error("{0}")]
    Writer(#[from] WriterError),
}

/// Counters at the end of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub received_frames: u64,
    pub received_bytes: u64,
    pub written_frames: u64,
    pub written_bytes: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub writes: u64,
    pub fsyncs: u64,
    pub queue_high_water: u64,
    pub durable_seq: Option<u64>,
}

impl Totals {
    pub fn of(c: &Counters) -> Totals {
        Totals {
            received_frames: c.received_frames.load(Ordering::Relaxed),
            received_bytes: c.received_bytes.load(Ordering::Relaxed),
            written_frames: c.written_frames.load(Ordering::Relaxed),
            written_bytes: c.written_bytes.load(Ordering::Relaxed),
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), c.dropped(*r)))
                .collect(),
            writes: c.writes.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            queue_high_water: c.queue_high_water.load(Ordering::Relaxed),
            durable_seq: c.durable_seq(),
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// What a finished recording reports.
#[derive(Debug)]
pub struct RunReport {
    pub dir: PathBuf,
    pub stop: Option<StopReason>,
    pub elapsed: Duration,
    pub totals: Totals,
    pub backend: Backend,
    pub direct_io: bool,
    pub overflow: OverflowPolicy,
    pub segments: Vec<PathBuf>,
    pub histograms: WriterHistograms,
    pub failure: Option<RunFailure>,
}

impl RunReport {
    pub fn write_latency(&self) -> Percentiles {
        Percentiles::of(&self.histograms.write_latency_ns)
    }

    /// Megabytes (10^6) of payload written per second of recording.
    pub fn mb_per_s(&self) -> f64 {
        self.totals.written_bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn build_source(cfg: &SourceConfig) -> Box<dyn Source> {
    match cfg {
        SourceConfig::Synthetic(s) => Box::new(SyntheticSource::new(s.clone())),
    }
}

/// Records per `cfg` until `limits`, `stop`, or the end of the source, then drains and
/// finalizes. Setting `stop` is a graceful stop: everything accepted is still written.
pub fn record(
    cfg: &Config,
    limits: Limits,
    stop: Arc<AtomicBool>,
) -> Result<RunReport, RecordError> {
    writer::probe(cfg.writer.backend).map_err(RecordError::Backend)?;
    let dir = cfg.output_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| RecordError::OutputDir {
        path: dir.clone(),
        source,
    })?;
    let existing = writer::existing_segments(&dir).map_err(|source| RecordError::OutputDir {
        path: dir.clone(),
        source,
    })?;
    if let Some((_, first)) = existing.into_iter().next() {
        return Err(RecordError::NotEmpty { dir, first });
    }

    let source = build_source(&cfg.source);
    let stream = source.stream().clone();
    let policy = cfg.queue.overflow.unwrap_or(if source.can_wait() {
        OverflowPolicy::Block
    } else {
        OverflowPolicy::DropNewest
    });
    let frame_bytes = stream.frame_bytes();
    let buffer_bytes = (round_up(frame_bytes, ALIGN) + 2 * ALIGN) as u64;
    let max_buffers = (cfg.queue.max_bytes / buffer_bytes).max(2) as usize;
    let pool = BufferPool::new(max_buffers, frame_bytes);
    let queue = Arc::new(FrameQueue::new(cfg.queue.max_frames));
    let drops = Arc::new(DropLog::default());
    let counters = Arc::new(Counters::default());

    let target = RecordingTarget {
        dir: dir.clone(),
        recording_id: format!("{:x}-{}", host_real_ns(), std::process::id()),
        stream,
        first_segment_id: 0,
    };
    let parts = WriterParts {
        queue: queue.clone(),
        pool: pool.clone(),
        drops: drops.clone(),
        counters: counters.clone(),
        stop: stop.clone(),
    };
    let (wcfg, scfg, dcfg) = (
        cfg.writer.clone(),
        cfg.segment.clone(),
        cfg.durability.clone(),
    );
    let started = Instant::now();
    let writer = std::thread::Builder::new()
        .name("framerec-writer".into())
        .spawn(move || writer::run(wcfg, scfg, dcfg, target, parts))
        .map_err(RecordError::Thread)?;

    let rparts = ReceiverParts {
        queue: queue.clone(),
        pool,
        drops,
        counters: counters.clone(),
        policy,
        stop,
    };
    let receiver = std::thread::Builder::new()
        .name("framerec-receiver".into())
        .spawn(move || receiver::run(source, rparts, limits));
    let receiver = match receiver {
        Ok(r) => r,
        Err(e) => {
            queue.close();
            let _ = writer.join();
            return Err(RecordError::Thread(e));
        }
    };
    let received = match receiver.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    let report = match writer.join() {
        Ok(r) => r,
        Err(p) => std::panic::resume_unwind(p),
    };
    let (stop_reason, source_failure) = match received {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let failure = match (report.error, source_failure) {
        (Some(w), _) => Some(RunFailure::Writer(w)),
        (None, Some(s)) => Some(RunFailure::Source(s)),
        (None, None) => None,
    };
    Ok(RunReport {
        dir,
        stop: stop_reason,
        elapsed: started.elapsed(),
        totals: Totals::of(&counters),
        backend: report.backend,
        direct_io: report.direct_io,
        overflow: policy,
        segments: report.segments,
        histograms: report.histograms,
        failure,
    })
}
