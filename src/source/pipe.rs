//! The `pipe:` and `unix:` sources: frames from an external driver (a vendor SDK in another
//! process) over stdin, a FIFO or a Unix stream socket, in a small framing that carries
//! frames of one or several streams.
//!
//! # Framing (all integers little-endian)
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FRF1"
//!      4     2  version: 1, or 2 (with a stream id)
//!      6     2  header length in bytes, 48..=4096 (later versions append fields; skipped)
//!      8     8  sender's sequence number, per stream (a jump is recorded as frames lost
//!               before framerec)
//!     16     8  device timestamp, nanoseconds
//!     24     4  width, pixels (accel: 1)
//!     28     4  height, pixels (accel: 1)
//!     32     4  format: 1 = 16-bit depth (16UC1), 2 = rgb8, 3 = accel (the 12-byte raw
//!               tilt state of format v2's `framerec.Accelerometer`)
//!     36     4  payload length in bytes (= width * height * bytes per pixel; accel: 12)
//!     40     2  version 2: stream id (version 1: reserved, 0; the frame is stream 0)
//!     42     6  reserved, 0
//!     48        payload
//! ```
//!
//! The stream id is the `id` of a `[[source.stream]]` table; without any, the source has one
//! depth stream of id 0 (`source.width`, `height`, `topic`, `frame-id`). A frame must match its
//! stream's width, height, format and length.
//!
//! This is untrusted input. Every length is bounded before anything is allocated (each
//! stream's frame size is fixed by the configuration); on garbage the reader resynchronises
//! on the next magic, counting rejects by reason; a Unix-socket client that sends nothing
//! valid for [`GIVE_UP_BYTES`] is disconnected and the next one accepted. Nothing a client
//! sends stops the recorder: only the end of stdin or of a FIFO ends a `pipe:` recording.
//!
//! # Losses
//! Every frame framerec rejects (a header with the magic that fails a check, or a torn tail)
//! is reported to the receiver as lost (`rejected`) under the stream its header names, and a
//! jump in a stream's sender sequence numbers beyond the frames of it rejected in it as lost
//! (`sender_gap`), each before that stream's next frame, so the recording names the gap where
//! it happened. A frame of an id the configuration does not have, or whose id cannot be read
//! in a source of several streams, is nobody's: it is counted (`source_rejects`) only. Bytes
//! skipped looking for the magic are counted (`bad_magic`, per resynchronisation) but are no
//! frame. Numbering restarts with each client; a jump backwards or of more than
//! [`MAX_SENDER_GAP`] is taken as the sender renumbering (logged, nothing counted), so a
//! crafted number cannot claim billions of losses.

mod framing;

use bytes::{Buf, BytesMut};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::frame::{DropReason, FrameBuf, StreamId, StreamInfo};
use crate::socket_path::{self, SocketAccess, SocketFile};

use super::{Capture, Source, SourceError};
use framing::MAX_HEADER_LEN;
pub use framing::{
    FORMAT_ACCEL, FORMAT_DEPTH16, FORMAT_RGB8, HEADER_LEN, Header, MAGIC, Parsed, Reject, Rejects,
    STREAM_ID_AT, Shape, VERSION, VERSION_2, parse, stream_of,
};
/// A `unix:` sender that has been in the middle of a frame this long, or has sent no whole
/// frame this long while another sender waits to connect, is disconnected: one sender at a
/// time, and none can hold the socket by stalling.
pub const SENDER_STALL: std::time::Duration = std::time::Duration::from_secs(2);
/// Bytes asked of the sender per read.
const READ_BYTES: usize = 65_536;
/// The largest jump in a sender's sequence numbers counted as frames it skipped (about 9.7
/// hours at 30 fps); a larger one is taken as the sender renumbering.
pub const MAX_SENDER_GAP: u64 = 1 << 20;
/// A client sending this many bytes without one valid frame is disconnected.
pub const GIVE_UP_BYTES: u64 = 64 << 20;

/// Where the frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeEndpoint {
    Stdin,
    /// A FIFO (or any file) read to its end.
    Fifo(PathBuf),
    /// A Unix stream socket framerec listens on; one client at a time.
    Unix(PathBuf),
}

/// Settings of the pipe source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeConfig {
    pub endpoint: PipeEndpoint,
    /// The one depth stream (id 0) when `streams` is empty: its frame size, topic and frame_id.
    pub width: u32,
    pub height: u32,
    pub topic: String,
    pub frame_id: String,
    /// `[[source.stream]]`: the streams by framing id, in stream-table order; empty = the one
    /// depth stream above.
    pub streams: Vec<PipeStream>,
    /// `unix:`: who may connect (mode and group of the socket file).
    pub access: SocketAccess,
}

/// One configured stream of a pipe: its framing id and what its frames look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeStream {
    /// The id version-2 headers carry (version-1 frames are id 0).
    pub id: u16,
    pub info: StreamInfo,
}

impl PipeConfig {
    /// The streams the source records, in stream-table order.
    pub fn stream_table(&self) -> Vec<PipeStream> {
        if !self.streams.is_empty() {
            return self.streams.clone();
        }
        vec![PipeStream {
            id: 0,
            info: StreamInfo::depth(&self.topic, &self.frame_id, self.width, self.height),
        }]
    }
}

enum Conn {
    Stdin(std::io::Stdin),
    File(std::fs::File),
    Unix(UnixStream),
}

impl Conn {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Conn::Stdin(s) => s.as_fd(),
            Conn::File(f) => f.as_fd(),
            Conn::Unix(u) => u.as_fd(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Stdin(s) => s.read(buf),
            Conn::File(f) => f.read(buf),
            Conn::Unix(u) => u.read(buf),
        }
    }
}

/// Waits up to 50 ms for `fd` to be readable.
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(50u16)), Ok(n) if n > 0)
}

/// Whether `fd` is readable now (a sender waits to be accepted), without waiting.
fn readable_now(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

pub struct PipeSource {
    listener: Option<UnixListener>,
    /// The socket file of `listener`, removed on drop if it is still ours.
    _socket_file: Option<SocketFile>,
    conn: Option<Conn>,
    /// The stream table, and what each stream's frames look like on the wire (same order).
    streams: Vec<StreamInfo>,
    shapes: Vec<Shape>,
    /// Bytes received and not yet parsed. Parsing consumes from the front in O(1)
    /// (`advance`), so skipping garbage a byte at a time is linear; the space in front is
    /// reclaimed when more room is needed. Never more than [`PipeSource::max_buffered`].
    buf: BytesMut,
    max_buffered: usize,
    /// When the current client connected or last delivered a whole frame.
    progress_at: std::time::Instant,
    rejects: Arc<Rejects>,
    /// Bytes from the current client since its last valid frame.
    garbage: u64,
    /// Per stream: the sender's last sequence number and the frames rejected since the last
    /// frame taken.
    per_stream: Vec<SenderState>,
    /// A whole frame at the front of `buf` that `next_stream` announced.
    pending: Option<(Header, StreamId)>,
    /// Losses not yet reported by `take_lost`.
    lost: Vec<(StreamId, DropReason, u64)>,
}

/// What the source knows of one stream's sender numbering.
#[derive(Debug, Default, Clone, Copy)]
struct SenderState {
    last_sequence: Option<u64>,
    rejected: u64,
}

impl PipeSource {
    pub fn open(cfg: PipeConfig, rejects: Arc<Rejects>) -> Result<PipeSource, SourceError> {
        let table = cfg.stream_table();
        let largest = table
            .iter()
            .map(|s| s.info.frame_bytes())
            .max()
            .unwrap_or(0);
        let (listener, socket_file, conn) = match &cfg.endpoint {
            PipeEndpoint::Stdin => (None, None, Some(Conn::Stdin(std::io::stdin()))),
            PipeEndpoint::Fifo(p) => {
                // Opened without blocking: a FIFO with no writer yet would hold `open` (and
                // with it every signal) until one came. Reads wait in `poll`, which sees the
                // stop flag every 50 ms; the first writer's data starts the source, its close
                // (or the end of a file) ends it.
                use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(p)
                    .map_err(|e| {
                        SourceError::Device(format!("cannot open {}: {e}", p.display()))
                    })?;
                if f.metadata().is_ok_and(|m| m.file_type().is_fifo()) {
                    tracing::info!(fifo = %p.display(), "waiting for a frame sender to open the FIFO");
                }
                (None, None, Some(Conn::File(f)))
            }
            PipeEndpoint::Unix(p) => {
                let (l, file) = socket_path::bind(p, cfg.access)
                    .map_err(|e| SourceError::Device(e.to_string()))?;
                l.set_nonblocking(true)?;
                tracing::info!(socket = %p.display(), "waiting for a frame sender");
                (Some(l), Some(file), None)
            }
        };
        let max_buffered = MAX_HEADER_LEN + largest + READ_BYTES;
        Ok(PipeSource {
            listener,
            _socket_file: socket_file,
            conn,
            shapes: table.iter().map(|s| Shape::of(s.id, &s.info)).collect(),
            per_stream: vec![SenderState::default(); table.len()],
            streams: table.into_iter().map(|s| s.info).collect(),
            buf: BytesMut::with_capacity(max_buffered),
            max_buffered,
            progress_at: std::time::Instant::now(),
            rejects,
            garbage: 0,
            pending: None,
            lost: Vec::new(),
        })
    }

    /// Counts a reject, and a rejected frame under `stream` when it is known.
    fn reject(&mut self, why: Reject, stream: Option<StreamId>) {
        self.rejects.add(why);
        if why.is_frame()
            && let Some(s) = stream
        {
            self.per_stream[s.index()].rejected += 1;
        }
    }

    /// Reports the frames of `stream` rejected since its last frame taken, and `gap` frames
    /// its sender's numbering skipped, of which the rejected ones are part.
    fn note_lost(&mut self, stream: StreamId, gap: u64) {
        let rejected = std::mem::take(&mut self.per_stream[stream.index()].rejected);
        if rejected > 0 {
            self.lost.push((stream, DropReason::Rejected, rejected));
        }
        let skipped = gap.saturating_sub(rejected);
        if skipped > 0 {
            self.lost.push((stream, DropReason::SenderGap, skipped));
        }
    }

    /// Drops the current client; for `pipe:` that is the end of the source.
    fn disconnect(&mut self, why: &str) {
        if !self.buf.is_empty() {
            self.reject(Reject::Truncated, stream_of(&self.buf, &self.shapes));
        }
        tracing::warn!(why, "frame sender disconnected");
        self.conn = None;
        self.buf.clear();
        self.garbage = 0;
        self.pending = None;
        for s in &mut self.per_stream {
            s.last_sequence = None;
        }
    }

    fn take_frame(
        &mut self,
        h: Header,
        stream: StreamId,
        out: &mut FrameBuf,
    ) -> Result<Capture, SourceError> {
        let capacity = out.capacity();
        let payload = out
            .fill(h.payload_len)
            .map_err(|_| SourceError::FrameTooLarge {
                len: h.payload_len,
                capacity,
            })?;
        payload.copy_from_slice(&self.buf[h.header_len..h.header_len + h.payload_len]);
        self.buf.advance(h.header_len + h.payload_len);
        self.garbage = 0;
        self.progress_at = std::time::Instant::now();
        let last = self.per_stream[stream.index()].last_sequence;
        let gap = match last {
            Some(last) if h.sequence > last && h.sequence - last - 1 <= MAX_SENDER_GAP => {
                h.sequence - last - 1
            }
            Some(last) if h.sequence != last + 1 => {
                tracing::warn!(
                    stream = self.streams[stream.index()].name,
                    last,
                    next = h.sequence,
                    "the sender's sequence numbers jumped backwards or too far: taken as renumbering, no gap counted"
                );
                0
            }
            _ => 0,
        };
        self.note_lost(stream, gap);
        self.per_stream[stream.index()].last_sequence = Some(h.sequence);
        Ok(Capture {
            device_ns: h.device_ns,
            host_mono_ns: None,
        })
    }

    /// Reads until a whole frame is at the front of the buffer: `None` at the end of the
    /// source or once `stop` is set (checked every 50 ms while waiting).
    fn next_whole_frame(
        &mut self,
        stop: &AtomicBool,
    ) -> Result<Option<(Header, StreamId)>, SourceError> {
        loop {
            // Frames already buffered first.
            loop {
                match parse(&self.buf, &self.shapes) {
                    Parsed::Frame(h, s) => return Ok(Some((h, s))),
                    Parsed::NeedMore => break,
                    Parsed::Skip(n, why, stream) => {
                        self.reject(why, stream);
                        self.garbage += n as u64;
                        self.buf.advance(n);
                    }
                }
            }
            if self.garbage > GIVE_UP_BYTES && self.listener.is_some() {
                self.disconnect("nothing valid in 64 MiB");
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if self.conn.is_none() {
                if !self.accept()? {
                    return Ok(None);
                }
                continue;
            }
            if let Some(listener) = &self.listener
                && self.progress_at.elapsed() > SENDER_STALL
            {
                if !self.buf.is_empty() {
                    self.disconnect("stalled in the middle of a frame");
                    continue;
                }
                if readable_now(listener.as_fd()) {
                    self.disconnect("idle while another sender waits");
                    continue;
                }
            }
            if !self.read_some()? {
                return Ok(None);
            }
        }
    }

    /// With no client: waits up to 50 ms for one to connect (`unix:`). False when there is
    /// no listener (`pipe:` has ended).
    fn accept(&mut self) -> Result<bool, SourceError> {
        let Some(listener) = &self.listener else {
            return Ok(false);
        };
        if !readable(listener.as_fd()) {
            return Ok(true);
        }
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                tracing::info!("frame sender connected");
                self.conn = Some(Conn::Unix(s));
                self.progress_at = std::time::Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => tracing::warn!(error = %e, "accepting a frame sender failed"),
        }
        Ok(true)
    }

    /// Waits up to 50 ms for bytes from the client and appends them to the buffer. False at
    /// the end of a `pipe:` source.
    fn read_some(&mut self) -> Result<bool, SourceError> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(true);
        };
        if !readable(conn.fd()) {
            return Ok(true);
        }
        let len = self.buf.len();
        let room = READ_BYTES.min(self.max_buffered - len);
        // Reclaims the consumed space in front (a copy of what is left, at most once per
        // buffer's worth of bytes consumed) or grows to the bound.
        self.buf.reserve(room);
        self.buf.resize(len + room, 0);
        let read = conn.read(&mut self.buf[len..]);
        self.buf.truncate(len + *read.as_ref().unwrap_or(&0));
        match read {
            Ok(0) => {
                self.disconnect("end of stream");
                return Ok(self.listener.is_some());
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => {
                if self.listener.is_none() {
                    return Err(SourceError::Io(e));
                }
                self.disconnect(&e.to_string());
            }
        }
        Ok(true)
    }
}

impl Source for PipeSource {
    fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }

    /// Reads the next frame's header (and its payload: it is already in the buffer when this
    /// returns), blocking as `next_frame` does.
    fn next_stream(&mut self, stop: &AtomicBool) -> Result<StreamId, SourceError> {
        if self.pending.is_none() {
            self.pending = self.next_whole_frame(stop)?;
        }
        Ok(self.pending.map_or(StreamId(0), |(_, s)| s))
    }

    fn can_wait(&self) -> bool {
        false
    }

    fn next_frame(
        &mut self,
        out: &mut FrameBuf,
        stop: &AtomicBool,
    ) -> Result<Option<Capture>, SourceError> {
        let next = match self.pending.take() {
            Some(f) => Some(f),
            None => self.next_whole_frame(stop)?,
        };
        match next {
            Some((h, stream)) => self.take_frame(h, stream, out).map(Some),
            None => Ok(None),
        }
    }

    fn take_lost(&mut self) -> Vec<(StreamId, DropReason, u64)> {
        std::mem::take(&mut self.lost)
    }

    fn close(&mut self) {
        // Frames rejected after the last one taken (a torn tail at the end, say).
        for i in 0..self.per_stream.len() {
            self.note_lost(StreamId(i as u16), 0);
        }
    }
}

#[cfg(test)]
mod tests;
