//! A fakenect-layout recording ([`crate::sink::fakenect`]: `INDEX.txt`, `DROPS.txt` and one
//! file per frame) read as a whole, for `info`, `export` and `recover`: every frame `INDEX.txt`
//! names with the state of its file, the streams and their sizes, and the drops.
//!
//! Lines and headers are parsed by the `fakenect:DIR` source's reader
//! ([`crate::source::fakenect`]) and `DROPS.txt` by [`read_drops`]; this module adds what a
//! recording needs beyond a replay: the state of each file (whole, missing, cut short), an
//! `INDEX.txt` whose last line a crash cut short, and the frames' sequence numbers.
//!
//! # Sequence numbers
//! The layout keeps no sequence numbers: they are derived. Each stream's frames are numbered
//! from 0 in `INDEX.txt` order (the order they were received), skipping the numbers
//! `DROPS.txt` lists for the stream. That gives the recorder's numbers as long as every frame
//! received is either named in `INDEX.txt` or listed in `DROPS.txt`, which the recorder and
//! `recover` keep true up to the last frame named.

pub mod recover;

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use crate::frame::FrameFormat;
use crate::sink::fakenect::{DROPS, DropLine, DropsError, INDEX, read_drops};
use crate::source::fakenect::index::{Entry, Tail, read_header, read_index_torn};
use crate::source::{DeviceClock, KinectStream, SourceError};

/// The largest `DROPS.txt` read (about two million ranges): framerec writes one line per run of
/// drops, so a bigger one was not written by it.
pub const MAX_DROPS_BYTES: u64 = 64 << 20;

/// Why a fakenect-layout recording cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Index(#[from] SourceError),
    #[error("{}: {source}", dir.display())]
    Drops { dir: PathBuf, source: DropsError },
    #[error("{}: {DROPS} is {bytes} bytes, more than the {MAX_DROPS_BYTES} a reader takes", dir.display())]
    DropsTooLarge { dir: PathBuf, bytes: u64 },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a whole frame ({state})", path.display())]
    NotWhole { path: PathBuf, state: FileState },
    #[error("{}: changed while it was read (now {bytes} bytes, was {expected})", path.display())]
    Changed {
        path: PathBuf,
        bytes: u64,
        expected: u64,
    },
}

/// How `INDEX.txt` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IndexEnd {
    /// With a newline.
    Whole,
    /// Its last line names a frame but has no newline.
    Unterminated,
    /// Its last line (1-based `line`, `bytes` long) was cut short by a crash: no frame.
    Cut { line: usize, bytes: usize },
}

/// What the file of a frame holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum FileState {
    /// Its header and exactly the samples its stream's size takes.
    Whole,
    Missing,
    /// Fewer bytes than its header and samples take: cut short.
    Short {
        bytes: u64,
        expected: u64,
    },
    /// More bytes than its header and samples take.
    Long {
        bytes: u64,
        expected: u64,
    },
    /// Unreadable, or a header that is not its stream's.
    Bad(String),
}

impl std::fmt::Display for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileState::Whole => write!(f, "whole"),
            FileState::Missing => write!(f, "missing"),
            FileState::Short { bytes, expected } => {
                write!(f, "cut short: {bytes} of {expected} bytes")
            }
            FileState::Long { bytes, expected } => {
                write!(f, "{bytes} bytes, more than the {expected} a frame takes")
            }
            FileState::Bad(why) => write!(f, "{why}"),
        }
    }
}

/// One frame file: named by an `INDEX.txt` line (`line`, 1-based) or found beside them.
#[derive(Debug, Clone)]
pub struct DumpFrame {
    pub file: String,
    /// Its `INDEX.txt` line; 0 for a file no line names.
    pub line: usize,
    pub kind: KinectStream,
    /// Host time from its name (microseconds, as the name has it), in nanoseconds.
    pub time_ns: u64,
    /// The device timestamp in its name (60 MHz ticks, 32 bits).
    pub timestamp: u32,
    /// The device time unwrapped along its stream, in nanoseconds.
    pub device_ns: u64,
    /// Its derived sequence number within its stream (see the module doc).
    pub seq: u64,
    /// Bytes of its header line (0 for the accelerometer).
    pub header_bytes: u64,
    /// Its size; 0 when missing.
    pub bytes: u64,
    pub state: FileState,
}

impl DumpFrame {
    pub fn is_whole(&self) -> bool {
        self.state == FileState::Whole
    }

    /// Bytes of samples: the file after its header.
    pub fn payload_bytes(&self) -> u64 {
        self.bytes.saturating_sub(self.header_bytes)
    }
}

/// A stream of the recording, as its first readable frame file shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpStream {
    pub kind: KinectStream,
    /// Image size (0x0 for the accelerometer).
    pub width: u32,
    pub height: u32,
}

impl DumpStream {
    pub fn format(&self) -> FrameFormat {
        match self.kind {
            KinectStream::Depth => FrameFormat::Depth16,
            KinectStream::Color => FrameFormat::Rgb8,
            KinectStream::Accel => FrameFormat::Accel,
        }
    }

    /// Bytes of samples each frame holds.
    pub fn frame_bytes(&self) -> u64 {
        match self.kind {
            KinectStream::Accel => crate::segment::accel::RAW_BYTES as u64,
            _ => {
                u64::from(self.width)
                    * u64::from(self.height)
                    * self.format().bytes_per_pixel() as u64
            }
        }
    }
}

/// A fakenect-layout recording: its frames in `INDEX.txt` order and its drops.
#[derive(Debug, Clone)]
pub struct Dump {
    pub dir: PathBuf,
    pub frames: Vec<DumpFrame>,
    /// Streams with a readable frame file, in stream-table order (depth, color, accel).
    pub streams: Vec<DumpStream>,
    pub drops: Vec<DropLine>,
    pub end: IndexEnd,
    pub index_bytes: u64,
    pub drops_bytes: u64,
}

/// True when `dir` is a fakenect-layout recording: an `INDEX.txt` and no segment.
pub fn is_layout(dir: &Path) -> bool {
    dir.join(INDEX).is_file()
        && super::list(dir)
            .is_ok_and(|files| files.iter().all(|f| f.kind != super::FileKind::Segment))
}

/// The stream table order: depth, color, accel.
pub const KINDS: [KinectStream; 3] = [
    KinectStream::Depth,
    KinectStream::Color,
    KinectStream::Accel,
];

impl Dump {
    /// Reads `INDEX.txt` (a last line cut short by a crash is set apart, not an error),
    /// `DROPS.txt` (absent: no drops) and the header and size of every frame file it names.
    pub fn open(dir: &Path) -> Result<Dump, DumpError> {
        let read = read_index_torn(dir)?;
        let end = match read.tail {
            Tail::Whole => IndexEnd::Whole,
            Tail::Unterminated => IndexEnd::Unterminated,
            Tail::Cut { line, bytes } => IndexEnd::Cut { line, bytes },
        };
        let (drops, drops_bytes) = read_drops_of(dir)?;
        let index_bytes = file_len(&dir.join(INDEX))?;
        let inspected: Vec<(Entry, Inspected)> = read
            .entries
            .into_iter()
            .map(|e| {
                let i = inspect_file(&dir.join(&e.file), e.kind, None);
                (e, i)
            })
            .collect();
        // Each stream is as its first whole file shows it: one file cut short (or crafted)
        // does not decide it.
        let streams: Vec<DumpStream> = KINDS
            .iter()
            .filter_map(|kind| {
                let (_, i) = inspected
                    .iter()
                    .find(|(e, i)| e.kind == *kind && i.state == FileState::Whole)?;
                let (width, height) = i.dims.unwrap_or((0, 0));
                Some(DumpStream {
                    kind: *kind,
                    width,
                    height,
                })
            })
            .collect();
        let mut frames: Vec<DumpFrame> = inspected
            .into_iter()
            .map(|(e, i)| frame(e, i, &streams))
            .collect();
        assign_seqs(&mut frames, &drops);
        let mut clocks = [
            DeviceClock::default(),
            DeviceClock::default(),
            DeviceClock::default(),
        ];
        for f in &mut frames {
            f.device_ns = clocks[kind_index(f.kind)].unwrap_ns(f.timestamp);
        }
        Ok(Dump {
            dir: dir.to_path_buf(),
            frames,
            streams,
            drops,
            end,
            index_bytes,
            drops_bytes,
        })
    }

    pub fn stream(&self, kind: KinectStream) -> Option<&DumpStream> {
        self.streams.iter().find(|s| s.kind == kind)
    }

    /// The samples of the whole frame `f` (its file after the header) into `buf`.
    pub fn read_payload(&self, f: &DumpFrame, buf: &mut Vec<u8>) -> Result<(), DumpError> {
        let path = self.dir.join(&f.file);
        if !f.is_whole() {
            return Err(DumpError::NotWhole {
                path,
                state: f.state.clone(),
            });
        }
        let io = |source| DumpError::Io {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        // The size was checked against the stream's when the recording was opened, so it is
        // bounded; a file that changed since is not read.
        if bytes != f.bytes {
            return Err(DumpError::Changed {
                path,
                bytes,
                expected: f.bytes,
            });
        }
        buf.clear();
        buf.resize(f.payload_bytes() as usize, 0);
        file.seek(SeekFrom::Start(f.header_bytes))
            .and_then(|_| file.read_exact(buf))
            .map_err(io)
    }
}

fn kind_index(kind: KinectStream) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

fn file_len(path: &Path) -> Result<u64, DumpError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| DumpError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// `DROPS.txt` of `dir` (none when it does not exist) and its size.
pub fn read_drops_of(dir: &Path) -> Result<(Vec<DropLine>, u64), DumpError> {
    let path = dir.join(DROPS);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => return Err(DumpError::Io { path, source }),
    };
    let bytes = file
        .metadata()
        .map_err(|source| DumpError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    if bytes > MAX_DROPS_BYTES {
        return Err(DumpError::DropsTooLarge {
            dir: dir.to_path_buf(),
            bytes,
        });
    }
    let drops = read_drops(io::BufReader::new(file.take(MAX_DROPS_BYTES))).map_err(|source| {
        DumpError::Drops {
            dir: dir.to_path_buf(),
            source,
        }
    })?;
    Ok((drops, bytes))
}

/// What a frame file holds: its state (against `expected` size if its stream's size is known,
/// else against its own header), header length, size, and the image size its header gives.
pub(crate) struct Inspected {
    pub state: FileState,
    pub header_bytes: u64,
    pub bytes: u64,
    pub dims: Option<(u32, u32)>,
}

/// Reads the header and size of the frame file `path` of `kind`; `stream` is what the
/// recording's stream looks like, when known.
pub(crate) fn inspect_file(
    path: &Path,
    kind: KinectStream,
    stream: Option<&DumpStream>,
) -> Inspected {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = Inspected {
        state: FileState::Missing,
        header_bytes: 0,
        bytes: 0,
        dims: None,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.state = FileState::Bad(format!("cannot open {name}: {e}"));
            return out;
        }
    };
    out.bytes = match file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => {
            out.state = FileState::Bad(format!("{name} is not a file"));
            return out;
        }
        Err(e) => {
            out.state = FileState::Bad(format!("{name}: {e}"));
            return out;
        }
    };
    let sample = match kind {
        KinectStream::Accel => DumpStream {
            kind,
            width: 0,
            height: 0,
        },
        _ => match read_header(&mut file, &name, kind) {
            Ok((w, h, header)) => {
                out.header_bytes = header as u64;
                out.dims = Some((w, h));
                DumpStream {
                    kind,
                    width: w,
                    height: h,
                }
            }
            Err(why) => {
                out.state = FileState::Bad(why);
                return out;
            }
        },
    };
    if let Some(s) = stream.filter(|s| **s != sample) {
        out.state = FileState::Bad(format!(
            "{name} is {}x{}; the recording's {} frames are {}x{}",
            sample.width,
            sample.height,
            kind.as_str(),
            s.width,
            s.height
        ));
        return out;
    }
    let expected = out.header_bytes + sample.frame_bytes();
    out.state = match out.bytes.cmp(&expected) {
        std::cmp::Ordering::Equal => FileState::Whole,
        std::cmp::Ordering::Less => FileState::Short {
            bytes: out.bytes,
            expected,
        },
        std::cmp::Ordering::Greater => FileState::Long {
            bytes: out.bytes,
            expected,
        },
    };
    out
}

/// The frame of `INDEX.txt` entry `e` whose file `i` describes; an image of another size than
/// its stream's is no frame of it.
fn frame(e: Entry, mut i: Inspected, streams: &[DumpStream]) -> DumpFrame {
    let stream = streams.iter().find(|s| s.kind == e.kind);
    if let (Some(s), Some((w, h))) = (stream, i.dims)
        && (w, h) != (s.width, s.height)
    {
        i.state = FileState::Bad(format!(
            "{} is {w}x{h}; the recording's {} frames are {}x{}",
            e.file,
            e.kind.as_str(),
            s.width,
            s.height
        ));
    }
    DumpFrame {
        time_ns: time_ns(e.time_s),
        file: e.file,
        line: e.line,
        kind: e.kind,
        timestamp: e.timestamp,
        device_ns: 0,
        seq: 0,
        header_bytes: i.header_bytes,
        bytes: i.bytes,
        state: i.state,
    }
}

/// Seconds since the epoch (bounded by the index reader) to nanoseconds.
pub(crate) fn time_ns(time_s: f64) -> u64 {
    (time_s * 1e9).round() as u64
}

/// Numbers each stream's frames from 0 in order, skipping the numbers `drops` lists for the
/// stream: one pass over the frames and the sorted ranges.
pub fn assign_seqs(frames: &mut [DumpFrame], drops: &[DropLine]) {
    for kind in KINDS {
        let mut ranges: Vec<(u64, u64)> = drops
            .iter()
            .filter(|d| d.stream == kind.as_str())
            .map(|d| (d.first.0, d.last.0))
            .collect();
        ranges.sort_unstable();
        let mut next = 0u64;
        let mut r = 0;
        for f in frames.iter_mut().filter(|f| f.kind == kind) {
            while let Some(&(first, last)) = ranges.get(r) {
                if first > next {
                    break;
                }
                if last >= next {
                    next = last.saturating_add(1);
                }
                r += 1;
            }
            f.seq = next;
            next = next.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests;
