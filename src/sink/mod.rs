//! The sink: the writer pool and the layouts it writes through. It takes frames from the queue
//! and writes them to disk, on one thread running a single-threaded runtime (tokio-uring, or
//! plain tokio for the `pwrite` fallback).
//!
//! - `pool.rs`: the writer pool, once for every layout: writer tasks at the live writer count,
//!   intake order, batching, the free-space floor, the failed and degraded state, publishing.
//! - `layout.rs`: the `Layout` trait, the seam between the pool and the files.
//! - `mcap/`: MCAP segments (open-ahead, rotation, preallocation, finalize, cut-back, fsync
//!   and the durable watermark).
//! - `fakenect/`: the fakenect layout, one file per frame and `INDEX.txt`.
//! - `config.rs`: settings. The files themselves are [`crate::io`]'s (io_uring or `pwrite`).

mod config;
pub mod fakenect;
mod layout;
mod mcap;
mod pool;

use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};
use tokio::task::{JoinHandle, spawn_local};

use crate::frame::{DropReason, Frame, StreamInfo, host_mono_ns};
use crate::io::{self as file, uring};
use crate::ledger::Ledger;
use crate::observe::{Counters, Histograms, SharedHistograms, record};
use crate::pipeline::queue::FrameQueue;
use crate::segment;
use crate::stop::Stop;

pub use crate::io::{Backend, IoSpan};
pub use config::*;
pub use pool::BatchLimits;
use pool::*;

/// How often the pool looks for new live settings and finished writers.
pub const APPLY_EVERY: Duration = Duration::from_millis(100);

/// The most writers the pool runs (the io_uring is sized for them).
pub const MAX_WRITERS: usize = 64;

/// How long the pool waits before trying again to create a segment after creating one failed.
pub const RETRY_OPEN_AFTER: Duration = Duration::from_secs(1);

/// How often the writers move their histograms to the shared copy (the interval logs are exact
/// to about this much).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Where and what the writers record.
#[derive(Debug, Clone)]
pub struct RecordingTarget {
    pub dir: PathBuf,
    pub recording_id: String,
    /// The recording's streams: stream `i` is the segments' channel `i + 1`.
    pub streams: Vec<StreamInfo>,
    pub first_segment_id: u64,
    /// How the segments are laid out (the ros2 profile also keeps the directory's
    /// `metadata.yaml`).
    pub profile: crate::segment::ros2::Profile,
}

/// The shared parts of the pipeline the writers use.
#[derive(Clone)]
pub struct WriterParts {
    pub queue: Arc<FrameQueue>,
    /// The accounting: frames taken, written and dropped move through it.
    pub ledger: Arc<Ledger>,
    pub counters: Arc<Counters>,
    /// Told by the writers when they fail, so the receiver stops.
    pub stop: Arc<Stop>,
    /// Where the writers publish their histograms for the statistics surfaces.
    pub histograms: SharedHistograms,
    /// False to record counters only (statistics off).
    pub record_histograms: bool,
    /// New settings to apply while running.
    pub live: Arc<LiveSettings>,
    /// Told when segments open and finalize, and asked before retention deletes one.
    pub listeners: Listeners,
}

/// Told of a segment's life; asked before retention deletes it. The seam where whatever acts on
/// finished segments (an uploader, a compressor, a control channel) plugs in: a segment a
/// listener still needs is not deleted.
///
/// # Threading
/// Called on the writer thread (`may_delete` on a blocking thread beside it): return at once,
/// handing any slow work to a thread of your own.
pub trait SegmentListener: Send + Sync {
    /// Segment `id` became the one new frames go to.
    fn opened(&self, _id: u64, _path: &Path) {}
    /// Segment `id` is complete and durable: summary and footer written, fsync'd.
    fn finalized(&self, _id: u64, _path: &Path) {}
    /// May retention delete the finished segment `id` now? `false` keeps it until a later
    /// round asks again.
    fn may_delete(&self, _id: u64, _path: &Path) -> bool {
        true
    }
}

/// The listeners of a run (none by default).
pub type Listeners = Arc<Vec<Arc<dyn SegmentListener>>>;

/// Errors that end a recording.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(
        "io_uring is unavailable ({0}) and the configuration demands it (writer.backend = \"io-uring\")"
    )]
    IoUringUnavailable(io::Error),
    #[error("cannot start the writer runtime: {0}")]
    Runtime(io::Error),
    #[error("cannot create segment {path}: {source}")]
    CreateSegment { path: PathBuf, source: io::Error },
    #[error(
        "write of {len} bytes at offset {offset} of {segment} failed: {source} ({frames} frames dropped)"
    )]
    Write {
        segment: PathBuf,
        offset: u64,
        len: u64,
        frames: u64,
        source: io::Error,
    },
    #[error(
        "fsync of {segment} failed: {source} (the {frames} frames written since its last good fsync are dropped)"
    )]
    Fsync {
        segment: PathBuf,
        frames: u64,
        source: io::Error,
    },
    #[error("cannot reserve space in {segment}: {source} ({frames} frames dropped)")]
    Reserve {
        segment: PathBuf,
        frames: u64,
        source: io::Error,
    },
    #[error(
        "{failures} writes, fsyncs or segment creations failed in a row, the last: {last}; stopping (writer.exit-when-degraded)"
    )]
    Degraded {
        failures: u64,
        last: Box<WriterError>,
    },
    #[error("cannot finalize segment {segment}: {source}")]
    Finalize { segment: PathBuf, source: io::Error },
    #[error(
        "segment {segment} was deleted (or renamed away) while it was recorded: its {frames} frames are counted as dropped (segment_deleted)"
    )]
    SegmentDeleted { segment: PathBuf, frames: u64 },
}

impl WriterError {
    /// The reason under which frames this error kept from the disk are counted.
    fn drop_reason(&self) -> DropReason {
        match self {
            WriterError::CreateSegment { source, .. }
            | WriterError::Write { source, .. }
            | WriterError::Reserve { source, .. } => DropReason::of_write_error(source),
            WriterError::Fsync { .. } => DropReason::FsyncError,
            _ => DropReason::IoError,
        }
    }
}

/// What the writers report when they are done.
#[derive(Debug)]
pub struct WriterReport {
    pub backend: Backend,
    pub direct_io: bool,
    /// Segments written, in order.
    pub segments: Vec<PathBuf>,
    /// The first error, if the recording ended because of it.
    pub error: Option<WriterError>,
}

/// Runs the writer pool with the MCAP segment layout on the calling thread until the queue is
/// closed and drained and every segment is finalized.
pub fn run(
    cfg: WriterConfig,
    seg: SegmentConfig,
    dur: DurabilityConfig,
    target: RecordingTarget,
    parts: WriterParts,
) -> WriterReport {
    run_layout(cfg, target, parts, |pool| mcap::Mcap::new(pool, seg, dur))
}

/// Runs the future `pool(backend)` makes on this thread: on io_uring where the kernel allows
/// it (or the configuration demands it), else on a current-thread tokio runtime with blocking
/// `pwrite`. Every layout's pool runs through here.
fn drive<F: std::future::Future<Output = WriterReport>>(
    choice: BackendChoice,
    direct_io: bool,
    parts: &WriterParts,
    pool: impl FnOnce(Backend) -> F,
) -> WriterReport {
    let failed = |backend, error| {
        parts.stop.disk_failed();
        discard_queue(parts);
        WriterReport {
            backend,
            direct_io,
            segments: Vec::new(),
            error: Some(error),
        }
    };
    if choice != BackendChoice::Pwrite {
        // Sized for the most writers, so a reload can add writers without a new ring.
        let entries = (MAX_WRITERS as u32 * 4).next_power_of_two();
        match uring::runtime(entries) {
            Ok(rt) => return rt.block_on(pool(Backend::IoUring)),
            Err(e) if choice == BackendChoice::IoUring => {
                return failed(Backend::IoUring, WriterError::IoUringUnavailable(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, "io_uring is unavailable; falling back to blocking pwrite");
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failed(Backend::Pwrite, WriterError::Runtime(e)),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, pool(Backend::Pwrite))
}

/// Checks that the configured backend can run here before anything is recorded: `Err` when
/// io_uring is demanded and the kernel refuses it. (`run` probes again on its own thread.)
pub fn probe(choice: BackendChoice) -> Result<Backend, WriterError> {
    match choice {
        BackendChoice::Pwrite => Ok(Backend::Pwrite),
        BackendChoice::Auto => Ok(uring::runtime(8).map_or(Backend::Pwrite, |_| Backend::IoUring)),
        BackendChoice::IoUring => uring::runtime(8)
            .map(|_| Backend::IoUring)
            .map_err(WriterError::IoUringUnavailable),
    }
}

/// Without writers, every queued frame is counted as dropped (the receiver stops soon).
fn discard_queue(parts: &WriterParts) {
    loop {
        while let Some(f) = parts.queue.pop() {
            parts.ledger.unqueued(f.meta.key(), DropReason::IoError);
        }
        if parts.queue.is_closed() && parts.queue.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Ids of the segments in `dir`, sorted, and whether each one looks finished.
pub fn existing_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let e = e?;
                if let Some(id) = e
                    .file_name()
                    .to_str()
                    .and_then(segment::parse_segment_file_name)
                {
                    out.push((id, e.path()));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    out.sort();
    Ok(out)
}
