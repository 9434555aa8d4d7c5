//! Frame sources: where frames come from. A source fills buffers; it never sees the queue.
//!
//! Two kinds: a pull [`Source`] is asked for each frame by the receiver thread (a generator, a
//! file, a pipe); a [`PushSource`] delivers frames on its own thread when the device does (a
//! libfreenect callback), into a [`FrameSink`] that copies each one straight into a queued
//! buffer.

pub mod fakenect;
pub mod freenect;
pub mod pipe;
pub mod synthetic;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::frame::{DropReason, FrameBuf, StreamId, StreamInfo};

pub use fakenect::{FakenectConfig, FakenectSource, dump_streams};
pub use freenect::{FreenectConfig, FreenectSource, OnDeviceError};
pub use pipe::{PipeConfig, PipeEndpoint, PipeSource};
pub use synthetic::{SyntheticConfig, SyntheticSource};

/// A stream of a Kinect (or of the synthetic source that stands in for one). A source's stream
/// table lists those it records, in this order of choice (config `source.streams`,
/// `--streams`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum KinectStream {
    /// 16-bit depth (`16UC1`) on the configured topic (default `/camera/depth`).
    Depth,
    /// `rgb8` colour on `/camera/color`.
    Color,
    /// Accelerometer and tilt readings (`framerec.Accelerometer`) on `/camera/accel`.
    Accel,
}

impl KinectStream {
    pub fn as_str(self) -> &'static str {
        match self {
            KinectStream::Depth => "depth",
            KinectStream::Color => "color",
            KinectStream::Accel => "accel",
        }
    }

    /// The default stream table: depth alone.
    pub fn default_table() -> Vec<KinectStream> {
        vec![KinectStream::Depth]
    }
}

/// Errors a source reports. A source error ends the recording; frames already taken stay valid.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("frame of {len} bytes does not fit the {capacity}-byte buffer")]
    FrameTooLarge { len: usize, capacity: usize },
    #[error("source I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A fakenect dump that cannot be replayed: file, line and reason.
    #[error("fakenect dump {0}")]
    Dump(String),
    /// libfreenect is missing, no device, or the device failed.
    #[error("{0}")]
    Device(String),
}

/// The Kinect's device clock runs at 60 MHz.
const TICKS_PER_S: u64 = 60_000_000;

/// Nanoseconds of `ticks` of the Kinect's 60 MHz clock (rounded down).
pub fn kinect_ticks_to_ns(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000_000 / TICKS_PER_S as u128) as u64
}

/// The 60 MHz tick count of `ns`, rounded to nearest, so `ns -> ticks` undoes
/// [`kinect_ticks_to_ns`] exactly.
pub fn kinect_ns_to_ticks(ns: u64) -> u64 {
    ((ns as u128 * TICKS_PER_S as u128 + 500_000_000) / 1_000_000_000) as u64
}

/// Unwraps the Kinect's 32-bit device timestamp (60 MHz, wraps every ~71.6 s) to 64 bits:
/// a timestamp lower than the previous one is taken as one wrap.
#[derive(Debug, Default, Clone)]
pub struct DeviceClock {
    last: Option<u32>,
    wraps: u64,
}

impl DeviceClock {
    pub fn unwrap_ticks(&mut self, ts: u32) -> u64 {
        if self.last.is_some_and(|last| ts < last) {
            self.wraps += 1;
        }
        self.last = Some(ts);
        (self.wraps << 32) | ts as u64
    }

    /// The unwrapped device time in nanoseconds.
    pub fn unwrap_ns(&mut self, ts: u32) -> u64 {
        kinect_ticks_to_ns(self.unwrap_ticks(ts))
    }
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
    /// The streams this source delivers, by [`StreamId`]: what every frame of each looks like;
    /// fixed for the source's life.
    fn streams(&self) -> &[StreamInfo];

    /// The stream of the frame the next [`Source::next_frame`] call delivers, so the receiver
    /// can hand it a buffer of that stream. May block (a pipe reads the frame's header here);
    /// at the end of the source any stream may be named: `next_frame` then returns `Ok(None)`.
    fn next_stream(&mut self, _stop: &AtomicBool) -> Result<StreamId, SourceError> {
        Ok(StreamId(0))
    }

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

    /// Frames delivered to the source that it lost before the receiver took them (a device
    /// faster than the receiver, frames a sender skipped or framerec rejected), by reason, since
    /// the last call. They all came before the frame `next_frame` returned last, or, once it
    /// returned `None` or after [`Source::close`], before the end. The receiver calls this after
    /// every frame and at the end, and gives each lost frame a sequence number of its own, so
    /// the recording names the gap where it happened.
    fn take_lost(&mut self) -> Vec<(StreamId, DropReason, u64)> {
        Vec::new()
    }

    /// Stops delivery: after it, [`Source::take_lost`] reports every frame the source was
    /// delivered and did not hand over. Called once when the receiver stops early (a signal,
    /// the duration limit, an error); not after a frame limit, since frames past it were not
    /// asked for.
    fn close(&mut self) {}
}

/// Where a [`PushSource`] delivers: the recorder's intake (numbers, copies and queues each frame
/// under the overflow policy).
///
/// # Threading
/// Called from the source's own thread (a device callback); never blocks on the disk. Under
/// `overflow = "block"` it may wait for the writers to free a buffer.
pub trait FrameSink: Send + Sync {
    /// Takes a frame of `stream` the device delivered; `payload` is only read during the call.
    /// Returns false when the frame was not asked for (a frame limit was reached): it is not
    /// counted. Every other frame is counted, as kept or as dropped under its reason.
    fn deliver(&self, stream: StreamId, payload: &[u8], capture: Capture) -> bool;
}

/// A producer that delivers frames on its own thread, as a device does.
///
/// # Threading
/// Created on any thread, then moved to the receiver thread, which calls `start`, `wait` and
/// `stop`; frames reach the sink from the source's own thread in between.
pub trait PushSource: Send {
    /// The streams this source delivers, by [`StreamId`]; fixed for the source's life.
    fn streams(&self) -> &[StreamInfo];

    /// True when delivery may wait for queue room without losing anything (a replay); false for
    /// a live device, whose callback must never wait.
    fn can_wait(&self) -> bool;

    /// Starts delivering into `sink`.
    fn start(&mut self, sink: Arc<dyn FrameSink>) -> Result<(), SourceError>;

    /// Waits up to about `timeout` for the source to end: `Ok(true)` while it delivers,
    /// `Ok(false)` at its end (a replay's end; `stop` set while reopening a device). An error
    /// ends the recording.
    fn wait(&mut self, timeout: Duration, stop: &AtomicBool) -> Result<bool, SourceError>;

    /// Stops delivery: once it returns, no frame reaches the sink any more.
    fn stop(&mut self);
}
