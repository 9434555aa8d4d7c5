//! The `fakenect:DIR` source: a pure-Rust reader of the dumps libfreenect's `fakenect-record`
//! writes (and `framerec export --format fakenect`, `--layout fakenect`), replayed at the
//! recorded pace or unpaced.
//!
//! # The dump format
//! `DIR/INDEX.txt` lists one file per line, in capture order, LF-terminated:
//!
//! ```text
//! d-1795470472.528635-0.pgm           depth: d-<host time, s>-<device timestamp>.pgm
//! r-1795470472.530000-1000.ppm        video (RGB)
//! a-1795470472.531000-1200.dump       accelerometer state
//! ```
//!
//! A depth file is a one-line header `P5 <width> <height> 65535\n` followed by exactly
//! `width * height * 2` bytes of little-endian samples as the device delivered them; a video
//! file is `P6 <width> <height> 255\n` and `width * height * 3` bytes of RGB; an accelerometer
//! file is exactly the 12 bytes of a raw tilt state ([`crate::segment::accel`]). The device
//! timestamp is the Kinect's 32-bit 60 MHz counter; it is unwrapped to 64 bits per stream.
//!
//! The streams asked for (`source.streams`) are replayed in index order; lines of the other
//! streams are validated and skipped. A stream asked for that the dump has no line of is an
//! error at open.
//!
//! Everything is validated: a bad line, a CRLF, a blank line, a line longer than a file name can
//! be, a missing or truncated file is an error naming the file and line; nothing is read past a
//! file's end, no line is held past [`MAX_INDEX_LINE`] bytes, and an error quotes at most
//! [`MAX_QUOTED`] characters of what it read.

pub(crate) mod index;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::frame::{FrameBuf, FrameFormat, StreamId, StreamInfo, host_mono_ns};

use super::{Capture, DeviceClock, KinectStream, Source, SourceError};
#[cfg(test)]
use index::parse_line;
use index::{Entry, bad, read_header, read_index};

pub use index::{MAX_INDEX_LINE, MAX_QUOTED, file_kind};

/// Settings of the fakenect replay source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakenectConfig {
    pub dir: PathBuf,
    /// Replay at the recorded pace (true) or as fast as the pipeline takes frames.
    pub paced: bool,
    /// Start again at the first frame after the last.
    pub looped: bool,
    pub topic: String,
    pub frame_id: String,
    /// The streams to replay, in stream-table order (depth from `d-*`, colour from `r-*`,
    /// accelerometer from `a-*` lines of the index).
    pub streams: Vec<KinectStream>,
}

/// A line of a stream asked for, and the stream's index in the table.
#[derive(Debug, Clone)]
struct Line {
    entry: Entry,
    stream: usize,
}

pub struct FakenectSource {
    cfg: FakenectConfig,
    streams: Vec<StreamInfo>,
    kinds: Vec<KinectStream>,
    lines: Vec<Line>,
    next: usize,
    /// One per stream: each stream's timestamps are unwrapped on their own.
    clocks: Vec<DeviceClock>,
    /// Replay start: `Instant`, the same moment on the host monotonic clock, and the recorded
    /// time it corresponds to.
    start: Option<(Instant, u64, f64)>,
    /// Recorded seconds added per completed loop, so pacing continues across loops.
    loop_offset: f64,
}

/// The streams a dump has lines of, in stream-table order (depth, color, accel).
pub fn dump_streams(dir: &std::path::Path) -> Result<Vec<KinectStream>, SourceError> {
    let entries = read_index(dir)?;
    Ok([
        KinectStream::Depth,
        KinectStream::Color,
        KinectStream::Accel,
    ]
    .into_iter()
    .filter(|k| entries.iter().any(|e| e.kind == *k))
    .collect())
}

impl FakenectSource {
    /// Opens the dump: reads and validates `INDEX.txt` and the first header of each image
    /// stream asked for.
    pub fn open(cfg: FakenectConfig) -> Result<FakenectSource, SourceError> {
        let mut kinds = cfg.streams.clone();
        if kinds.is_empty() {
            kinds.push(KinectStream::Depth);
        }
        let lines: Vec<Line> = read_index(&cfg.dir)?
            .into_iter()
            .filter_map(|entry| {
                let stream = kinds.iter().position(|k| *k == entry.kind)?;
                Some(Line { entry, stream })
            })
            .collect();
        let mut streams = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let Some(first) = lines.iter().find(|l| l.stream == i) else {
                let (prefix, ext) = file_kind(*kind);
                return Err(bad(
                    &cfg.dir,
                    format!(
                        "INDEX.txt lists no {} frames ({prefix}-*.{ext}), and the {} stream was asked for",
                        kind.as_str(),
                        kind.as_str()
                    ),
                ));
            };
            streams.push(stream_info(&cfg, *kind, &first.entry)?);
        }
        Ok(FakenectSource {
            clocks: vec![DeviceClock::default(); kinds.len()],
            cfg,
            streams,
            kinds,
            lines,
            next: 0,
            start: None,
            loop_offset: 0.0,
        })
    }

    /// The files of the streams asked for that `INDEX.txt` names, in order.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.entry.file.as_str())
    }

    /// Frames (lines of the streams asked for) in one pass of the dump.
    pub fn frames(&self) -> usize {
        self.lines.len()
    }

    /// Frames of stream `s` in one pass of the dump.
    pub fn frames_of(&self, s: StreamId) -> usize {
        self.lines.iter().filter(|l| l.stream == s.index()).count()
    }

    fn read_frame(&self, l: &Line, buf: &mut FrameBuf) -> Result<(), SourceError> {
        let e = &l.entry;
        let at = |what: String| bad(&self.cfg.dir, format!("INDEX.txt:{}: {what}", e.line));
        let mut f = File::open(self.cfg.dir.join(&e.file))
            .map_err(|err| at(format!("cannot open {}: {err}", e.file)))?;
        let size = f
            .metadata()
            .map_err(|err| at(format!("{}: {err}", e.file)))?
            .len();
        let stream = &self.streams[l.stream];
        let len = stream.frame_bytes();
        let header = match self.kinds[l.stream] {
            KinectStream::Accel => 0,
            kind => {
                let (w, h, header) = read_header(&mut f, &e.file, kind).map_err(at)?;
                if (w, h) != (stream.width, stream.height) {
                    return Err(at(format!(
                        "{} is {w}x{h}; the dump's {} started at {}x{}",
                        e.file, stream.name, stream.width, stream.height
                    )));
                }
                header
            }
        };
        if size != (header + len) as u64 {
            return Err(at(format!(
                "{} holds {} bytes of {} after its header, expected {len}{}",
                e.file,
                size.saturating_sub(header as u64),
                stream.name,
                if size < (header + len) as u64 {
                    ": truncated"
                } else {
                    ""
                }
            )));
        }
        let capacity = buf.capacity();
        let payload = buf
            .fill(len)
            .map_err(|_| SourceError::FrameTooLarge { len, capacity })?;
        // The header read may have taken payload bytes with it: read from the payload start.
        f.seek(SeekFrom::Start(header as u64))
            .and_then(|_| f.read_exact(payload))
            .map_err(|err| at(format!("reading {}: {err}", e.file)))
    }

    /// Moves to the next line, starting a looped replay again after the last; false at the
    /// end.
    fn ready(&mut self) -> bool {
        if self.next < self.lines.len() {
            return true;
        }
        if !self.cfg.looped {
            return false;
        }
        let (first, last) = (
            &self.lines[0].entry,
            &self.lines[self.lines.len() - 1].entry,
        );
        // One more frame period after the last frame, then the first again.
        let period = if self.lines.len() > 1 {
            (last.time_s - first.time_s) / (self.lines.len() - 1) as f64
        } else {
            1.0 / 30.0
        };
        self.loop_offset += last.time_s - first.time_s + period;
        self.next = 0;
        true
    }
}

/// What every frame of `kind` looks like, from its first line's file.
fn stream_info(
    cfg: &FakenectConfig,
    kind: KinectStream,
    first: &Entry,
) -> Result<StreamInfo, SourceError> {
    if kind == KinectStream::Accel {
        return Ok(StreamInfo::accel("accel", "/camera/accel", "camera_accel"));
    }
    let at = |what: String| bad(&cfg.dir, format!("INDEX.txt:{}: {what}", first.line));
    let mut f = File::open(cfg.dir.join(&first.file))
        .map_err(|e| at(format!("cannot open {}: {e}", first.file)))?;
    let (width, height, _) = read_header(&mut f, &first.file, kind).map_err(at)?;
    Ok(match kind {
        KinectStream::Color => StreamInfo::image(
            "color",
            "/camera/color",
            "camera_color",
            width,
            height,
            FrameFormat::Rgb8,
        ),
        _ => StreamInfo::depth(&cfg.topic, &cfg.frame_id, width, height),
    })
}

impl Source for FakenectSource {
    fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }

    fn next_stream(&mut self, _stop: &AtomicBool) -> Result<StreamId, SourceError> {
        Ok(if self.ready() {
            StreamId(self.lines[self.next].stream as u16)
        } else {
            StreamId(0)
        })
    }

    fn can_wait(&self) -> bool {
        true
    }

    fn next_frame(
        &mut self,
        buf: &mut FrameBuf,
        stop: &AtomicBool,
    ) -> Result<Option<Capture>, SourceError> {
        if !self.ready() {
            return Ok(None);
        }
        let l = self.lines[self.next].clone();
        let t = l.entry.time_s + self.loop_offset;
        let (start, start_mono, t0) = *self
            .start
            .get_or_insert_with(|| (Instant::now(), host_mono_ns(), t));
        // Times are bounded when INDEX.txt is read; looping adds at most their span per lap.
        let due = Duration::try_from_secs_f64((t - t0).max(0.0)).unwrap_or(Duration::MAX);
        if self.cfg.paced {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let elapsed = start.elapsed();
                if elapsed >= due {
                    break;
                }
                std::thread::sleep((due - elapsed).min(Duration::from_millis(50)));
            }
        }
        self.read_frame(&l, buf)?;
        self.next += 1;
        Ok(Some(Capture {
            device_ns: self.clocks[l.stream].unwrap_ns(l.entry.timestamp),
            host_mono_ns: self.cfg.paced.then(|| {
                start_mono.saturating_add(u64::try_from(due.as_nanos()).unwrap_or(u64::MAX))
            }),
        }))
    }
}

#[cfg(test)]
mod tests;
