//! Frames and the buffers that carry them: the bottom layer every other module builds on.
//!
//! A [`FrameBuf`] is one allocation laid out so that a frame can be written to disk with no copy
//! of its payload, in buffered or `O_DIRECT` mode:
//!
//! ```text
//! FrameBuf {
//!     headroom: [u8; HEADROOM],   // aligned start; record headers are written at its end
//!     payload:  [u8; capacity],   // starts ALIGN-aligned; the source fills it
//!     tailroom: [u8; TAILROOM],   // message index and alignment padding after the payload
//! }
//! ```
//!
//! Buffers are recycled through a [`BufferPool`]: in steady state no frame allocates.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::wake::Wake;

/// Alignment of buffer starts, payload starts and `O_DIRECT` file offsets.
pub const ALIGN: usize = 4096;
/// Bytes reserved in front of the payload for record headers and padding.
pub const HEADROOM: usize = ALIGN;
/// Bytes reserved after the (ALIGN-rounded) payload for trailers and padding.
pub const TAILROOM: usize = ALIGN;

/// Sequence number the receiver gives each frame it takes from its source, from 0, gap-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FrameSeq(pub u64);

impl std::fmt::Display for FrameSeq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One frame of the recording: its stream and its number there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FrameKey {
    pub stream: StreamId,
    pub seq: FrameSeq,
}

/// Why a frame a source delivered was not written. Every drop is counted under one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The queue was full (frames or bytes) and the policy is `drop-newest`.
    QueueFull,
    /// Evicted from a full queue to make room for a newer frame (`drop-oldest`).
    QueueEvicted,
    /// The write that carried the frame failed (other than for space), or the frame was
    /// written after such a write in the same segment and cut off with it.
    IoError,
    /// The filesystem was full (ENOSPC, EDQUOT) when the frame was written, or its free space
    /// was under `output.min-free-bytes` when the frame arrived.
    DiskFull,
    /// Written, but an fsync failed before it was durable: the segment was cut back to its
    /// last durable byte, since Linux may have dropped the unsynced pages.
    FsyncError,
    /// Found missing when a crashed recording was recovered: its write never completed, or
    /// its chunk was damaged, or the drop notice naming it was never written.
    Lost,
    /// Written to a segment whose file was deleted (or renamed away) while it was recorded:
    /// found at its next fsync, it is no longer counted as written (or durable).
    SegmentDeleted,
    /// Delivered by a source but never taken: a replay's frame that was waiting for room
    /// (`block`) when the run stopped. (Recordings of earlier versions also use it for frames
    /// a libfreenect callback could not hand over.)
    SourceOverrun,
    /// A `pipe:`/`unix:` sender's own sequence numbers jumped: frames it skipped before they
    /// reached framerec (beyond those framerec rejected).
    SenderGap,
    /// A `pipe:`/`unix:` frame framerec refused (wrong size, bad version, format, header or
    /// length, or a torn tail); `source_rejects` says why.
    Rejected,
    /// Arrived while the recorder was paused (`framerec ctl pause`): skipped on purpose. Not
    /// a drop: not in [`DropReason::ALL`] nor in the drop totals; counted as `paused` per
    /// stream, and named in the recording by a notice with this reason so that `verify`
    /// explains the gap.
    Paused,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::QueueFull,
        DropReason::QueueEvicted,
        DropReason::IoError,
        DropReason::DiskFull,
        DropReason::FsyncError,
        DropReason::Lost,
        DropReason::SegmentDeleted,
        DropReason::SourceOverrun,
        DropReason::SenderGap,
        DropReason::Rejected,
    ];

    /// The name used in files, statistics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::QueueEvicted => "queue_evicted",
            DropReason::IoError => "io_error",
            DropReason::DiskFull => "disk_full",
            DropReason::FsyncError => "fsync_error",
            DropReason::Lost => "lost",
            DropReason::SegmentDeleted => "segment_deleted",
            DropReason::SourceOverrun => "source_overrun",
            DropReason::SenderGap => "sender_gap",
            DropReason::Rejected => "rejected",
            DropReason::Paused => "paused",
        }
    }

    pub fn from_name(name: &str) -> Option<DropReason> {
        DropReason::ALL
            .into_iter()
            .chain([DropReason::Paused])
            .find(|r| r.as_str() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The reason for frames a failed write of the recording took with it.
    pub fn of_write_error(e: &std::io::Error) -> DropReason {
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => DropReason::DiskFull,
            _ => DropReason::IoError,
        }
    }
}

/// What the frames of a stream hold. Config `[[source.stream]]` `format` spells it `depth16`,
/// `rgb8` or `accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FrameFormat {
    /// 16-bit little-endian depth samples, one channel (`16UC1`).
    Depth16,
    /// 8-bit red, green, blue samples (`rgb8`), as libfreenect's RGB video mode delivers them.
    Rgb8,
    /// One accelerometer and tilt reading: the 12-byte `freenect_raw_tilt_state` that
    /// fakenect's `a-*.dump` files hold (see [`crate::segment::accel`]), not an image.
    Accel,
}

impl FrameFormat {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            FrameFormat::Depth16 => 2,
            FrameFormat::Rgb8 => 3,
            FrameFormat::Accel => 1,
        }
    }

    /// The `foxglove.RawImage` encoding name (`accel` for the accelerometer, which is no image).
    pub fn encoding(self) -> &'static str {
        match self {
            FrameFormat::Depth16 => "16UC1",
            FrameFormat::Rgb8 => "rgb8",
            FrameFormat::Accel => "accel",
        }
    }

    pub fn is_image(self) -> bool {
        !matches!(self, FrameFormat::Accel)
    }
}

/// Index of a stream in the recording's stream table, fixed when the recording starts. Its MCAP
/// channel id is the index + 1 (see [`crate::segment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId(pub u16);

impl StreamId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What every frame of one stream looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    /// Short name: `depth`, `color`, `accel`, or a pipe stream's configured name.
    pub name: String,
    /// MCAP topic, e.g. `/camera/depth`.
    pub topic: String,
    /// `frame_id` written into each message.
    pub frame_id: String,
    /// Image width and height in pixels (1 x message length for the accelerometer).
    pub width: u32,
    pub height: u32,
    pub format: FrameFormat,
}

impl StreamInfo {
    /// A depth image stream named `depth`.
    pub fn depth(topic: &str, frame_id: &str, width: u32, height: u32) -> StreamInfo {
        StreamInfo::image(
            "depth",
            topic,
            frame_id,
            width,
            height,
            FrameFormat::Depth16,
        )
    }

    pub fn image(
        name: &str,
        topic: &str,
        frame_id: &str,
        width: u32,
        height: u32,
        format: FrameFormat,
    ) -> StreamInfo {
        StreamInfo {
            name: name.to_string(),
            topic: topic.to_string(),
            frame_id: frame_id.to_string(),
            width,
            height,
            format,
        }
    }

    /// An accelerometer stream: each frame is one raw tilt-state reading.
    pub fn accel(name: &str, topic: &str, frame_id: &str) -> StreamInfo {
        StreamInfo {
            name: name.to_string(),
            topic: topic.to_string(),
            frame_id: frame_id.to_string(),
            width: 1,
            height: 1,
            format: FrameFormat::Accel,
        }
    }

    pub fn frame_bytes(&self) -> usize {
        match self.format {
            FrameFormat::Accel => crate::segment::accel::RAW_BYTES,
            _ => self.width as usize * self.height as usize * self.format.bytes_per_pixel(),
        }
    }

    pub fn step_bytes(&self) -> u32 {
        self.width * self.format.bytes_per_pixel() as u32
    }
}

/// The stamps the receiver puts on a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// The stream the frame belongs to.
    pub stream: StreamId,
    /// Its number in that stream.
    pub seq: FrameSeq,
    /// Its place in the order frames of all streams were received (counting frames lost
    /// before reaching the queue too): in a one-stream recording, `seq` itself. The writers'
    /// durable watermark and rewrite bookkeeping go by it.
    pub order: u64,
    /// Payload bytes.
    pub len: u64,
    /// Device clock, nanoseconds, unwrapped to 64 bits by the source.
    pub device_ns: u64,
    /// The device clock anchored to host realtime: `device_ns` plus the offset that made the
    /// stream's first frame of this run read its `host_real_ns` (see [`anchor_publish_ns`]).
    /// An absolute time that keeps the device's spacing; the recording's `publish_time`.
    pub publish_ns: u64,
    /// Host `CLOCK_MONOTONIC` at capture, nanoseconds.
    pub host_mono_ns: u64,
    /// Host `CLOCK_REALTIME` at capture, nanoseconds since the Unix epoch.
    pub host_real_ns: u64,
}

impl FrameMeta {
    pub fn key(&self) -> FrameKey {
        FrameKey {
            stream: self.stream,
            seq: self.seq,
        }
    }
}

/// `device_ns` on the host realtime scale, given the stream's clock offset (`host_real_ns -
/// device_ns` of its first frame): clamped to the `u64` range, never wrapping.
pub fn anchor_publish_ns(device_ns: u64, offset_ns: i128) -> u64 {
    (device_ns as i128 + offset_ns).clamp(0, u64::MAX as i128) as u64
}

/// One aligned, reusable allocation holding a frame's payload plus room around it.
///
/// A buffer handed out by a [`BufferPool`] goes back to it when dropped, wherever that happens
/// (written, dropped, evicted, discarded at the end): nobody returns one by hand.
pub struct FrameBuf {
    storage: Box<[u8]>,
    /// Offset of the ALIGN-aligned start inside `storage`.
    base: usize,
    capacity: usize,
    payload_len: usize,
    /// The payload's CRC-32, once [`FrameBuf::seal_crc`] took it; any mutable access forgets it.
    payload_crc: Option<u32>,
    /// The pool this buffer came from and returns to on drop.
    home: Option<Arc<BufferPool>>,
}

impl FrameBuf {
    /// A buffer whose payload can hold up to `capacity` bytes.
    pub fn new(capacity: usize) -> FrameBuf {
        let rounded = round_up(capacity.max(1), ALIGN);
        let total = HEADROOM + rounded + TAILROOM;
        let storage = vec![0u8; total + ALIGN].into_boxed_slice();
        let base = storage.as_ptr().align_offset(ALIGN);
        debug_assert!(base < ALIGN);
        FrameBuf {
            storage,
            base,
            capacity: rounded,
            payload_len: 0,
            payload_crc: None,
            home: None,
        }
    }

    /// Bytes the payload may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// Sets the payload length and returns the payload for filling.
    ///
    /// Fails when `len` exceeds the capacity, returning the capacity.
    pub fn fill(&mut self, len: usize) -> Result<&mut [u8], usize> {
        if len > self.capacity {
            return Err(self.capacity);
        }
        self.payload_len = len;
        self.payload_crc = None;
        let start = self.base + HEADROOM;
        Ok(&mut self.storage[start..start + len])
    }

    /// Takes the payload's CRC-32 now, while the bytes the source just wrote are in this core's
    /// cache, so that the writer thread combines it into its chunk's CRC instead of reading the
    /// payload again from memory. Kept until the buffer is next written to.
    pub fn seal_crc(&mut self) {
        self.payload_crc = Some(crc32fast::hash(self.payload()));
    }

    /// The payload's CRC-32: the one [`FrameBuf::seal_crc`] took, or computed now.
    pub fn payload_crc(&self) -> u32 {
        match self.payload_crc {
            Some(crc) => {
                debug_assert_eq!(crc, crc32fast::hash(self.payload()), "payload changed");
                crc
            }
            None => crc32fast::hash(self.payload()),
        }
    }

    pub fn payload(&self) -> &[u8] {
        let start = self.base + HEADROOM;
        &self.storage[start..start + self.payload_len]
    }

    /// The whole aligned region: headroom, payload capacity and tailroom. Offsets into it are
    /// what [`FrameBuf::span`] takes; the payload starts at [`HEADROOM`].
    pub fn region(&self) -> &[u8] {
        &self.storage[self.base..self.base + HEADROOM + self.capacity + TAILROOM]
    }

    /// The whole region, writable (the payload's sealed CRC is forgotten: see
    /// [`FrameBuf::seal_crc`]).
    pub fn region_mut(&mut self) -> &mut [u8] {
        self.payload_crc = None;
        let end = self.base + HEADROOM + self.capacity + TAILROOM;
        &mut self.storage[self.base..end]
    }
}

impl Drop for FrameBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.home.take() {
            pool.give_back(FrameBuf {
                storage: std::mem::take(&mut self.storage),
                base: self.base,
                capacity: self.capacity,
                payload_len: 0,
                payload_crc: None,
                home: None,
            });
        }
    }
}

impl std::fmt::Debug for FrameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBuf")
            .field("capacity", &self.capacity)
            .field("payload_len", &self.payload_len)
            .finish()
    }
}

/// A frame in flight between the receiver and the disk.
#[derive(Debug)]
pub struct Frame {
    pub meta: FrameMeta,
    pub buf: FrameBuf,
    /// Bytes of `buf`'s region, starting at `span.0`, that go to disk (set by the encoder).
    pub span: (usize, usize),
}

impl Frame {
    pub fn payload_len(&self) -> usize {
        self.buf.payload_len()
    }
}

/// Host monotonic clock: nanoseconds since this process first read it.
pub fn host_mono_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}

/// Host realtime clock: nanoseconds since the Unix epoch.
pub fn host_real_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// Rounds `n` up to a multiple of `align` (a power of two).
pub const fn round_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

/// A bounded free list of equally sized frame buffers.
///
/// `get` hands out a recycled buffer, or allocates while fewer than `max_buffers` exist; the
/// buffer returns itself when dropped. Any thread may get or drop one; neither blocks.
#[derive(Debug)]
pub struct BufferPool {
    free: ArrayQueue<FrameBuf>,
    /// Wakes a receiver waiting for a buffer (`block`).
    returned: Wake,
    allocated: AtomicUsize,
    max_buffers: usize,
    buffer_capacity: usize,
}

impl BufferPool {
    pub fn new(max_buffers: usize, buffer_capacity: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            free: ArrayQueue::new(max_buffers.max(1)),
            returned: Wake::default(),
            allocated: AtomicUsize::new(0),
            max_buffers: max_buffers.max(1),
            buffer_capacity,
        })
    }

    pub fn buffer_capacity(&self) -> usize {
        self.buffer_capacity
    }

    /// A buffer, or `None` when all `max_buffers` are out. It comes back when dropped.
    pub fn get(self: &Arc<Self>) -> Option<FrameBuf> {
        let mut buf = self.take()?;
        buf.home = Some(self.clone());
        Some(buf)
    }

    fn take(&self) -> Option<FrameBuf> {
        if let Some(buf) = self.free.pop() {
            return Some(buf);
        }
        let mut n = self.allocated.load(Ordering::Relaxed);
        loop {
            if n >= self.max_buffers {
                return None;
            }
            match self.allocated.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(FrameBuf::new(self.buffer_capacity)),
                Err(seen) => n = seen,
            }
        }
    }

    /// Takes back a dropped buffer for reuse (its `home` is cleared: the free list holds no
    /// reference to the pool).
    fn give_back(&self, buf: FrameBuf) {
        if self.free.push(buf).is_err() {
            self.allocated.fetch_sub(1, Ordering::Relaxed);
        }
        self.returned.notify();
    }

    /// A buffer, waiting up to about `timeout` for one to come back when all are out.
    pub fn get_waiting(self: &Arc<Self>, timeout: Duration) -> Option<FrameBuf> {
        self.returned.wait_for(timeout, || self.get())
    }

    /// Buffers currently allocated (free or in use).
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_sized() {
        let mut b = FrameBuf::new(614_400);
        assert_eq!(b.region().as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.capacity(), round_up(614_400, ALIGN));
        assert_eq!(b.region().len(), HEADROOM + b.capacity() + TAILROOM);
        b.fill(10).unwrap().copy_from_slice(&[7; 10]);
        assert_eq!(b.payload(), &[7; 10]);
        assert_eq!((b.payload().as_ptr() as usize) % ALIGN, 0);
        assert!(b.fill(b.capacity() + 1).is_err());
    }

    #[test]
    fn a_sealed_payload_crc_is_forgotten_once_the_buffer_is_written_to() {
        let mut buf = FrameBuf::new(4096);
        buf.fill(100).unwrap().fill(7);
        buf.seal_crc();
        assert_eq!(buf.payload_crc(), crc32fast::hash(&[7; 100]));
        buf.region_mut()[HEADROOM] = 8;
        assert_eq!(buf.payload_crc(), crc32fast::hash(buf.payload()));
        buf.seal_crc();
        buf.fill(50).unwrap().fill(9);
        assert_eq!(buf.payload_crc(), crc32fast::hash(&[9; 50]));
    }

    #[test]
    fn pool_bounds_allocation_and_recycles() {
        let pool = BufferPool::new(2, 100);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none());
        let ptr = a.region().as_ptr();
        drop(a);
        let c = pool.get().unwrap();
        assert_eq!(c.region().as_ptr(), ptr, "the dropped buffer is reused");
        // Dropped anywhere (here: inside a frame on another thread), a buffer comes back.
        let frame = Frame {
            meta: FrameMeta::default(),
            buf: b,
            span: (0, 0),
        };
        std::thread::spawn(move || drop(frame)).join().unwrap();
        drop(c);
        assert_eq!(pool.allocated(), 2);
        assert_eq!(pool.free.len(), 2, "both buffers are back");
        let (x, y) = (pool.get().unwrap(), pool.get().unwrap());
        assert!(pool.get().is_none(), "and no more were made");
        drop((x, y));
    }
}
