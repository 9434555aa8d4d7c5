//! The `pipe:` and `unix:` sources: frames from an external driver (a vendor SDK in another
//! process) over stdin, a FIFO or a Unix stream socket, in a small framing.
//!
//! # Framing (all integers little-endian)
//!
//! ```text
//! offset  size  field
//!      0     4  magic "FRF1"
//!      4     2  version = 1
//!      6     2  header length in bytes, 48..=4096 (later versions append fields; skipped)
//!      8     8  sender's sequence number (a jump is recorded as frames lost before framerec)
//!     16     8  device timestamp, nanoseconds
//!     24     4  width, pixels
//!     28     4  height, pixels
//!     32     4  pixel format: 1 = 16-bit depth (16UC1)
//!     36     4  payload length in bytes (= width * height * 2)
//!     40     8  reserved, 0
//!     48        payload
//! ```
//!
//! This is untrusted input. Every length is bounded before anything is allocated (the frame
//! size is fixed by the configuration); on garbage the reader resynchronises on the next magic,
//! counting rejects by reason; a Unix-socket client that sends nothing valid for
//! [`GIVE_UP_BYTES`] is disconnected and the next one accepted. Nothing a client sends stops
//! the recorder: only the end of stdin or of a FIFO ends a `pipe:` recording.
//!
//! # Losses
//! Every frame framerec rejects (a header with the magic that fails a check, or a torn tail)
//! is reported to the receiver as lost (`rejected`), and a jump in the sender's sequence
//! numbers beyond the frames rejected in it as lost (`sender_gap`), each before the next frame
//! taken, so the recording names the gap where it happened. Bytes skipped looking for the magic
//! are counted (`bad_magic`, per resynchronisation) but are no frame. Numbering restarts with
//! each client; a jump backwards or of more than [`MAX_SENDER_GAP`] is taken as the sender
//! renumbering (logged, nothing counted), so a crafted number cannot claim billions of losses.

use bytes::{Buf, BytesMut};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::frame::{DropReason, FrameBuf, FrameFormat, StreamId, StreamInfo};
use crate::socket_path::{self, SocketAccess, SocketFile};

use super::{Capture, Source, SourceError};

pub const MAGIC: [u8; 4] = *b"FRF1";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 48;
const MAX_HEADER_LEN: usize = 4096;
/// A `unix:` sender that has been in the middle of a frame this long, or has sent no whole
/// frame this long while another sender waits to connect, is disconnected: one sender at a
/// time, and none can hold the socket by stalling.
pub const SENDER_STALL: std::time::Duration = std::time::Duration::from_secs(2);
/// Bytes asked of the sender per read.
const READ_BYTES: usize = 65_536;
pub const FORMAT_DEPTH16: u32 = 1;
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
    /// The frame size every frame must have.
    pub width: u32,
    pub height: u32,
    pub topic: String,
    pub frame_id: String,
    /// `unix:`: who may connect (mode and group of the socket file).
    pub access: SocketAccess,
}

/// Why bytes from a client were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Bytes skipped looking for the magic (counted per resynchronisation).
    BadMagic,
    BadVersion,
    BadHeader,
    /// Width or height other than the configured stream's.
    WrongSize,
    BadFormat,
    /// Payload length other than width * height * 2.
    BadLength,
    /// The stream ended in the middle of a frame.
    Truncated,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::BadMagic,
        Reject::BadVersion,
        Reject::BadHeader,
        Reject::WrongSize,
        Reject::BadFormat,
        Reject::BadLength,
        Reject::Truncated,
    ];

    /// True when the reject is a whole frame (a header with the magic, or a torn tail); bad
    /// magic is bytes between frames.
    pub fn is_frame(self) -> bool {
        self != Reject::BadMagic
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::BadMagic => "bad_magic",
            Reject::BadVersion => "bad_version",
            Reject::BadHeader => "bad_header",
            Reject::WrongSize => "wrong_size",
            Reject::BadFormat => "bad_format",
            Reject::BadLength => "bad_length",
            Reject::Truncated => "truncated",
        }
    }
}

/// Rejects by reason, shared with the statistics.
#[derive(Debug, Default)]
pub struct Rejects([AtomicU64; 7]);

impl Rejects {
    fn add(&self, r: Reject) {
        let i = Reject::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, r: Reject) -> u64 {
        let i = Reject::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.0[i].load(Ordering::Relaxed)
    }
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub header_len: usize,
    pub sequence: u64,
    pub device_ns: u64,
    pub width: u32,
    pub height: u32,
    pub format: u32,
    pub payload_len: usize,
}

impl Header {
    /// The bytes of a version-1 header (for senders and tests).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4..6].copy_from_slice(&VERSION.to_le_bytes());
        h[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        h[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        h[16..24].copy_from_slice(&self.device_ns.to_le_bytes());
        h[24..28].copy_from_slice(&self.width.to_le_bytes());
        h[28..32].copy_from_slice(&self.height.to_le_bytes());
        h[32..36].copy_from_slice(&self.format.to_le_bytes());
        h[36..40].copy_from_slice(&(self.payload_len as u32).to_le_bytes());
        h
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What the framer found at the front of its buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame: its header; the payload is `buf[header_len..header_len + payload_len]`.
    Frame(Header),
    /// Not enough bytes yet.
    NeedMore,
    /// Bytes to drop from the front, and why.
    Skip(usize, Reject),
}

/// Looks at the front of `buf` for a frame of `width` x `height`.
pub fn parse(buf: &[u8], width: u32, height: u32) -> Parsed {
    let frame_len = width as usize * height as usize * 2;
    if buf.len() < 8 {
        if !MAGIC.starts_with(&buf[..buf.len().min(4)]) {
            return Parsed::Skip(resync(buf), Reject::BadMagic);
        }
        return Parsed::NeedMore;
    }
    if buf[..4] != MAGIC {
        return Parsed::Skip(resync(buf), Reject::BadMagic);
    }
    // A bad field drops the magic and resynchronises on the next one: the lengths of a header
    // that fails a check are not trusted.
    if u16_at(buf, 4) != VERSION {
        return Parsed::Skip(1, Reject::BadVersion);
    }
    let header_len = u16_at(buf, 6) as usize;
    if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
        return Parsed::Skip(1, Reject::BadHeader);
    }
    if buf.len() < HEADER_LEN {
        return Parsed::NeedMore;
    }
    let h = Header {
        header_len,
        sequence: u64_at(buf, 8),
        device_ns: u64_at(buf, 16),
        width: u32_at(buf, 24),
        height: u32_at(buf, 28),
        format: u32_at(buf, 32),
        payload_len: u32_at(buf, 36) as usize,
    };
    if (h.width, h.height) != (width, height) {
        return Parsed::Skip(1, Reject::WrongSize);
    }
    if h.format != FORMAT_DEPTH16 {
        return Parsed::Skip(1, Reject::BadFormat);
    }
    if h.payload_len != frame_len {
        return Parsed::Skip(1, Reject::BadLength);
    }
    if buf.len() < header_len + frame_len {
        return Parsed::NeedMore;
    }
    Parsed::Frame(h)
}

/// Bytes before the next possible magic (at least 1).
fn resync(buf: &[u8]) -> usize {
    (1..buf.len())
        .find(|&i| MAGIC.starts_with(&buf[i..buf.len().min(i + 4)]))
        .unwrap_or(buf.len())
        .max(1)
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
    cfg: PipeConfig,
    stream: StreamInfo,
    listener: Option<UnixListener>,
    /// The socket file of `listener`, removed on drop if it is still ours.
    _socket_file: Option<SocketFile>,
    conn: Option<Conn>,
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
    last_sequence: Option<u64>,
    /// Frames rejected since the last frame taken.
    rejected: u64,
    /// Losses not yet reported by `take_lost`.
    lost: Vec<(DropReason, u64)>,
}

impl PipeSource {
    pub fn open(cfg: PipeConfig, rejects: Arc<Rejects>) -> Result<PipeSource, SourceError> {
        let frame_len = cfg.width as usize * cfg.height as usize * 2;
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
        Ok(PipeSource {
            stream: StreamInfo {
                name: "depth".into(),
                topic: cfg.topic.clone(),
                frame_id: cfg.frame_id.clone(),
                width: cfg.width,
                height: cfg.height,
                format: FrameFormat::Depth16,
            },
            cfg,
            listener,
            _socket_file: socket_file,
            conn,
            buf: BytesMut::with_capacity(MAX_HEADER_LEN + frame_len + READ_BYTES),
            max_buffered: MAX_HEADER_LEN + frame_len + READ_BYTES,
            progress_at: std::time::Instant::now(),
            rejects,
            garbage: 0,
            last_sequence: None,
            rejected: 0,
            lost: Vec::new(),
        })
    }

    fn reject(&mut self, why: Reject) {
        self.rejects.add(why);
        if why.is_frame() {
            self.rejected += 1;
        }
    }

    /// Reports the frames rejected since the last frame taken, and `gap` frames the sender's
    /// numbering skipped, of which the rejected ones are part.
    fn note_lost(&mut self, gap: u64) {
        let rejected = std::mem::take(&mut self.rejected);
        if rejected > 0 {
            self.lost.push((DropReason::Rejected, rejected));
        }
        let skipped = gap.saturating_sub(rejected);
        if skipped > 0 {
            self.lost.push((DropReason::SenderGap, skipped));
        }
    }

    /// Drops the current client; for `pipe:` that is the end of the source.
    fn disconnect(&mut self, why: &str) {
        if !self.buf.is_empty() {
            self.reject(Reject::Truncated);
        }
        tracing::warn!(why, "frame sender disconnected");
        self.conn = None;
        self.buf.clear();
        self.garbage = 0;
        self.last_sequence = None;
    }

    fn take_frame(&mut self, h: Header, out: &mut FrameBuf) -> Result<Capture, SourceError> {
        let capacity = out.capacity();
        let payload = out
            .fill(h.payload_len)
            .map_err(|_| SourceError::FrameTooLarge {
                len: h.payload_len,
                capacity,
            })?;
        payload.copy_from_slice(&self.buf[h.header_len..h.header_len + h.payload_len]);
        self.consume(h.header_len + h.payload_len);
        self.garbage = 0;
        self.progress_at = std::time::Instant::now();
        let gap = match self.last_sequence {
            Some(last) if h.sequence > last && h.sequence - last - 1 <= MAX_SENDER_GAP => {
                h.sequence - last - 1
            }
            Some(last) if h.sequence != last + 1 => {
                tracing::warn!(
                    last,
                    next = h.sequence,
                    "the sender's sequence numbers jumped backwards or too far: taken as renumbering, no gap counted"
                );
                0
            }
            _ => 0,
        };
        self.note_lost(gap);
        self.last_sequence = Some(h.sequence);
        Ok(Capture {
            device_ns: h.device_ns,
            host_mono_ns: None,
        })
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
    }
}

impl Source for PipeSource {
    fn streams(&self) -> &[StreamInfo] {
        std::slice::from_ref(&self.stream)
    }

    fn can_wait(&self) -> bool {
        false
    }

    fn next_frame(
        &mut self,
        out: &mut FrameBuf,
        stop: &AtomicBool,
    ) -> Result<Option<Capture>, SourceError> {
        loop {
            // Frames already buffered first.
            loop {
                match parse(&self.buf, self.cfg.width, self.cfg.height) {
                    Parsed::Frame(h) => return self.take_frame(h, out).map(Some),
                    Parsed::NeedMore => break,
                    Parsed::Skip(n, why) => {
                        self.reject(why);
                        self.garbage += n as u64;
                        self.consume(n);
                    }
                }
            }
            if self.garbage > GIVE_UP_BYTES && self.listener.is_some() {
                self.disconnect("nothing valid in 64 MiB");
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let Some(conn) = self.conn.as_mut() else {
                let Some(listener) = &self.listener else {
                    return Ok(None);
                };
                if !readable(listener.as_fd()) {
                    continue;
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
                continue;
            };
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
            if !readable(conn.fd()) {
                continue;
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
                    if self.listener.is_none() {
                        return Ok(None);
                    }
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
        }
    }

    fn take_lost(&mut self) -> Vec<(StreamId, DropReason, u64)> {
        std::mem::take(&mut self.lost)
            .into_iter()
            .map(|(reason, n)| (StreamId(0), reason, n))
            .collect()
    }

    fn close(&mut self) {
        // Frames rejected after the last one taken (a torn tail at the end, say).
        self.note_lost(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, w: u32, h: u32, fill: u8) -> Vec<u8> {
        let len = (w * h * 2) as usize;
        let mut out = Header {
            header_len: HEADER_LEN,
            sequence: seq,
            device_ns: seq.wrapping_mul(1000),
            width: w,
            height: h,
            format: FORMAT_DEPTH16,
            payload_len: len,
        }
        .encode()
        .to_vec();
        out.extend(std::iter::repeat_n(fill, len));
        out
    }

    /// Every frame `parse` finds in `bytes`, and the rejects on the way.
    fn frames_in(mut bytes: &[u8], w: u32, h: u32) -> (Vec<u64>, Vec<Reject>) {
        let (mut seqs, mut rejects) = (Vec::new(), Vec::new());
        loop {
            match parse(bytes, w, h) {
                Parsed::Frame(hd) => {
                    seqs.push(hd.sequence);
                    bytes = &bytes[hd.header_len + hd.payload_len..];
                }
                Parsed::Skip(n, r) => {
                    assert!(n >= 1 && n <= bytes.len());
                    rejects.push(r);
                    bytes = &bytes[n..];
                }
                Parsed::NeedMore => return (seqs, rejects),
            }
        }
    }

    #[test]
    fn frames_between_garbage_are_found() {
        let mut s = b"hello".to_vec();
        s.extend(frame(0, 4, 2, 1));
        s.extend(b"FRF1xx");
        s.extend(frame(1, 4, 2, 2));
        s.extend(frame(2, 8, 2, 3));
        s.extend(frame(3, 4, 2, 4));
        let (seqs, rejects) = frames_in(&s, 4, 2);
        assert_eq!(seqs, [0, 1, 3]);
        assert!(rejects.contains(&Reject::BadMagic));
        assert!(rejects.contains(&Reject::WrongSize));
    }

    /// The losses reported before each frame a file of `stream` delivers.
    /// The losses of the one stream a v1 pipe has.
    fn depth_losses(lost: Vec<(StreamId, DropReason, u64)>) -> Vec<(DropReason, u64)> {
        assert!(lost.iter().all(|l| l.0 == StreamId(0)));
        lost.into_iter().map(|(_, r, n)| (r, n)).collect()
    }

    fn losses(stream: &[u8]) -> Vec<Vec<(DropReason, u64)>> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("frames");
        std::fs::write(&path, stream).unwrap();
        let cfg = PipeConfig {
            endpoint: PipeEndpoint::Fifo(path),
            width: 4,
            height: 2,
            topic: "/t".into(),
            frame_id: "f".into(),
            access: SocketAccess::OWNER_ONLY,
        };
        let mut src = PipeSource::open(cfg, Arc::default()).unwrap();
        let mut buf = FrameBuf::new(16);
        let stop = AtomicBool::new(false);
        let mut out = Vec::new();
        while src.next_frame(&mut buf, &stop).unwrap().is_some() {
            out.push(depth_losses(src.take_lost()));
        }
        src.close();
        out.push(depth_losses(src.take_lost()));
        out
    }

    #[test]
    fn gaps_and_rejects_are_reported_before_the_next_frame_and_a_crafted_jump_is_not_a_gap() {
        let mut s = frame(0, 4, 2, 0);
        let mut wrong = frame(1, 4, 2, 0);
        wrong[24..28].copy_from_slice(&8u32.to_le_bytes());
        s.extend(wrong);
        s.extend(frame(4, 4, 2, 0));
        s.extend(frame(u64::MAX - 1, 4, 2, 0));
        s.extend(frame(3, 4, 2, 0));
        s.extend(&frame(4, 4, 2, 0)[..20]);
        use DropReason::{Rejected, SenderGap};
        assert_eq!(
            losses(&s),
            [
                vec![],
                vec![(Rejected, 1), (SenderGap, 2)],
                vec![],
                vec![],
                vec![(Rejected, 1)],
            ]
        );
    }

    #[test]
    fn a_huge_length_is_rejected_before_anything_is_allocated() {
        let mut f = frame(0, 4, 2, 0);
        f[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&f, 4, 2), Parsed::Skip(1, Reject::BadLength));
        let mut f = frame(0, 4, 2, 0);
        f[6..8].copy_from_slice(&60_000u16.to_le_bytes());
        assert_eq!(parse(&f, 4, 2), Parsed::Skip(1, Reject::BadHeader));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panicking_and_valid_frames_survive(
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            cut in 0usize..300,
        ) {
            let mut s = garbage.clone();
            s.extend(frame(7, 4, 2, 9));
            let at = cut.min(garbage.len());
            let mut t = s[..at].to_vec();
            t.extend(frame(8, 4, 2, 9));
            t.extend(&s[at..]);
            let (seqs, _) = frames_in(&t, 4, 2);
            // Frame 7 is always found (it follows the garbage); 8 unless the garbage before
            // it ends in a prefix of a header that swallows it.
            proptest::prop_assert!(seqs.contains(&7));
        }
    }
}
