//! The writer's settings: backend, writer count, segment rotation and durability.

use super::*;

/// Which I/O backend to use (config `writer.backend`, `--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// io_uring when the kernel allows it, else `pwrite` with a warning.
    Auto,
    /// io_uring or fail.
    IoUring,
    /// Blocking `pwrite` on a thread pool.
    Pwrite,
}

pub use crate::io::IoMode;

/// Settings of the writer pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    pub backend: BackendChoice,
    /// Writes in flight at most (writer tasks).
    pub writers: usize,
    /// Buffered or `O_DIRECT`; `Auto` is resolved when the recording starts.
    pub io_mode: IoMode,
    /// Bytes one write carries at most (at least one frame).
    pub max_write_bytes: usize,
    /// How long a writer waits for more frames before writing a small batch.
    pub linger: Duration,
    /// Fault injection for tests and benchmarks: each write waits this long before it is
    /// submitted (a slow disk). Not settable from the configuration file.
    pub write_delay: Duration,
    /// Reserve disk space for a segment this many bytes ahead of its writes (`fallocate`), so
    /// space runs out between writes, where the segment can still be closed cleanly, rather
    /// than in the middle of one. 0: never.
    pub preallocate_bytes: u64,
    /// After this many failed writes, fsyncs or segment creations in a row the recorder is
    /// degraded (stats, systemd `STATUS=`).
    pub max_consecutive_failures: u32,
    /// Stop recording (exit status 1, so systemd's `Restart=` applies) once degraded, instead
    /// of counting frames as dropped until the disk recovers.
    pub exit_when_degraded: bool,
    /// A run that lost frames to the disk (`io_error`, `fsync_error`, `segment_deleted`) ends
    /// as failed (exit status 1) even though it kept recording.
    pub fail_on_io_loss: bool,
    /// Free bytes the output filesystem keeps: under it, the receiver counts arriving frames as
    /// `disk_full` instead of queueing them, until space returns. 0: no floor.
    pub min_free_bytes: u64,
    /// The same as a percentage of the filesystem's size (the larger floor applies).
    pub min_free_percent: u8,
    /// How long stopping may take to drain the queue and finalize; past it the recorder exits
    /// leaving the last segments for `recover` (systemd's `TimeoutStopSec=` should be longer).
    pub stop_timeout: Duration,
    /// Retention, for always-on recording: the oldest finished segments of the directory are
    /// deleted while all of them together hold more than this many bytes.
    pub retain_bytes: Option<u64>,
    /// ... or while the oldest was last written longer ago than this.
    pub retain_age: Option<Duration>,
    /// Chunk compression on worker threads; `None`: every chunk raw.
    pub compression: Option<crate::pipeline::compress::CompressConfig>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            backend: BackendChoice::Auto,
            writers: 2,
            io_mode: IoMode::Auto,
            max_write_bytes: 4 << 20,
            linger: Duration::ZERO,
            write_delay: Duration::ZERO,
            preallocate_bytes: 64 << 20,
            max_consecutive_failures: 8,
            exit_when_degraded: false,
            fail_on_io_loss: true,
            min_free_bytes: 0,
            min_free_percent: 0,
            stop_timeout: Duration::from_secs(45),
            retain_bytes: None,
            retain_age: None,
            compression: None,
        }
    }
}

/// When a segment is closed and the next one started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentConfig {
    pub max_bytes: u64,
    pub max_duration: Option<Duration>,
}

impl Default for SegmentConfig {
    fn default() -> Self {
        SegmentConfig {
            max_bytes: 1 << 30,
            max_duration: Some(Duration::from_secs(600)),
        }
    }
}

/// When written data is made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurabilityConfig {
    /// fsync open segments this often (None: only when a segment closes).
    pub fsync_interval: Option<Duration>,
    /// Also fsync after this many frames were written.
    pub fsync_every_frames: Option<u64>,
    /// Drop durable data from the page cache (buffered I/O) so long runs do not fill memory.
    pub release_page_cache: bool,
}

impl Default for DurabilityConfig {
    fn default() -> Self {
        DurabilityConfig {
            fsync_interval: Some(Duration::from_millis(1000)),
            fsync_every_frames: None,
            release_page_cache: true,
        }
    }
}

/// Settings the writer pool takes while it runs (on SIGHUP): how many writers, when segments
/// rotate, when data is made durable. The recorder stores new values; the pool applies them
/// within [`APPLY_EVERY`], between writes, so no frame is lost or reordered.
#[derive(Debug, Default)]
pub struct LiveSettings {
    pending: std::sync::Mutex<Option<Live>>,
    /// Set while a split (`framerec ctl split`) waits for the next rotation; read per write.
    split_asked: std::sync::atomic::AtomicBool,
    /// Told of the rotation that answers the split.
    split_reply: std::sync::Mutex<Option<std::sync::mpsc::Sender<SplitDone>>>,
}

/// A rotation that answered a split: the segment closed and the one frames go to now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitDone {
    pub closed: u64,
    pub closed_path: std::path::PathBuf,
    pub opened: u64,
    pub opened_path: std::path::PathBuf,
}

/// The values of [`LiveSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Live {
    pub writers: usize,
    pub segment: SegmentConfig,
    pub durability: DurabilityConfig,
}

impl LiveSettings {
    /// Asks the pool to apply `live`.
    pub fn set(&self, live: Live) {
        if let Ok(mut p) = self.pending.lock() {
            *p = Some(live);
        }
    }

    pub(super) fn take(&self) -> Option<Live> {
        self.pending.lock().ok()?.take()
    }

    /// Asks the writers to close the current segment at the next frame written and go on in
    /// the next; the receiver hears of the rotation that does it. A split asked while another
    /// waits answers both: the earlier asker's receiver is disconnected.
    pub fn ask_split(&self) -> std::sync::mpsc::Receiver<SplitDone> {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Ok(mut r) = self.split_reply.lock() {
            *r = Some(tx);
        }
        self.split_asked
            .store(true, std::sync::atomic::Ordering::Release);
        rx
    }

    /// Whether a split waits (one relaxed load: read per write).
    pub(super) fn split_asked(&self) -> bool {
        self.split_asked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A rotation happened: it answers the split waiting, if one is.
    pub(super) fn split_done(&self, done: SplitDone) {
        if !self
            .split_asked
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        if let Ok(mut r) = self.split_reply.lock()
            && let Some(tx) = r.take()
        {
            let _ = tx.send(done);
        }
    }
}
