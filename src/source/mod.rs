//! Frame sources: where frames come from. A source fills buffers; it never sees the queue.

pub mod synthetic;

use std::sync::atomic::AtomicBool;

use crate::frame::{FrameBuf, StreamInfo};

pub use synthetic::{SyntheticConfig, SyntheticSource};

/// Errors a source reports. A source error ends the recording; frames already taken stay valid.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("frame of {len} bytes does not fit the {capacity}-byte buffer")]
    FrameTooLarge { len: usize, capacity: usize },
    #[error("source I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// When and how a frame was captured, as the source knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    /// Device clock in nanoseconds (unwrapped to 64 bits by the source).
    pub device_ns: u64,
    /// When the frame was captured on the host's monotonic clock ([`crate::frame::host_mono_ns`]),
    /// if the source knows: a paced generator knows when each frame was due. `None`: the
    /// receiver stamps the frame's arrival. Latencies are measured from this stamp, so a source
    /// that knows it keeps a stalled receiver from hiding latency (coordinated omission).
    pub host_mono_ns: Option<u64>,
}

/// A producer of frames.
///
/// # Threading
/// Created on any thread, then moved to the receiver thread, which alone calls `next_frame`.
pub trait Source: Send {
    /// What every frame of this source looks like; fixed for the source's life.
    fn stream(&self) -> &StreamInfo;

    /// True when the source makes frames on demand (a replay, an unpaced generator), so the
    /// receiver may wait for queue room without losing anything; false for live devices.
    fn can_wait(&self) -> bool;

    /// Blocks until the next frame is available and writes its payload into `buf`.
    ///
    /// Returns `Ok(None)` at the end of the source or once `stop` is set (checked at least every
    /// 50 ms while waiting). An error ends the recording.
    fn next_frame(
        &mut self,
        buf: &mut FrameBuf,
        stop: &AtomicBool,
    ) -> Result<Option<Capture>, SourceError>;
}
