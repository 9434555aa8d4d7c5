//! Where a scan reads a segment's bytes from: a slice already in memory (tests, fuzzing,
//! benches), or a file read a range at a time into a buffer the caller reuses, so reading a
//! recording of any size takes memory for one record (one chunk) and a few windows, not for the
//! file.
//!
//! The decoder asks only for ranges it has checked against [`Source::len`] first: a length read
//! from the file that runs past its end is damage, never a read or an allocation.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use bytes::BytesMut;

/// Bytes a scan reads past the point it examines (resync windows, whole-range hashes): large
/// enough that reads are few, small enough to be a constant.
pub const WINDOW_BYTES: usize = 1 << 20;

/// Random access to a segment's bytes.
pub trait Source {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// True when the source holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of `range` (which lies within `0..len()`): borrowed from memory, or read into
    /// `buf`, which is resized to fit (and keeps its capacity for the next read).
    fn read<'a>(&'a self, range: Range<u64>, buf: &'a mut BytesMut) -> io::Result<&'a [u8]>;

    /// Bytes read per window when a scan walks the source front to back.
    fn window(&self) -> usize {
        WINDOW_BYTES
    }
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read<'a>(&'a self, range: Range<u64>, _buf: &'a mut BytesMut) -> io::Result<&'a [u8]> {
        let (start, end) = (range.start as usize, range.end as usize);
        self.get(start..end).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "read of bytes {start}..{end} past the end of {} bytes",
                    <[u8]>::len(self)
                ),
            )
        })
    }

    fn window(&self) -> usize {
        <[u8]>::len(self).max(1)
    }
}

/// A segment file read with positioned reads (`pread`); its length is taken once, at open.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
    window: usize,
}

impl FileSource {
    pub fn new(file: File) -> io::Result<FileSource> {
        let len = file.metadata()?.len();
        Ok(FileSource {
            file,
            len,
            window: WINDOW_BYTES,
        })
    }

    pub fn open(path: &std::path::Path) -> io::Result<FileSource> {
        FileSource::new(File::open(path)?)
    }

    /// The same source read in windows of `bytes` (tests use tiny windows to cross every
    /// boundary).
    pub fn with_window(mut self, bytes: usize) -> FileSource {
        self.window = bytes.max(1);
        self
    }
}

impl Source for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read<'a>(&'a self, range: Range<u64>, buf: &'a mut BytesMut) -> io::Result<&'a [u8]> {
        if range.end > self.len || range.start > range.end {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "read of bytes {}..{} past the end of a {}-byte file",
                    range.start, range.end, self.len
                ),
            ));
        }
        let n = (range.end - range.start) as usize;
        buf.clear();
        buf.resize(n, 0);
        match self.file.read_exact_at(&mut buf[..], range.start) {
            Ok(()) => Ok(&buf[..]),
            // The file shrank after it was opened (a recorder cut it back, someone truncated it).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file shrank while it was read (bytes {}..{} of {} are gone)",
                    range.start, range.end, self.len
                ),
            )),
            Err(e) => Err(e),
        }
    }

    fn window(&self) -> usize {
        self.window
    }
}

/// CRC-32 of `range` of `src`, read a window at a time.
pub fn hash_range<S: Source + ?Sized>(src: &S, range: Range<u64>) -> io::Result<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = BytesMut::new();
    let mut at = range.start;
    while at < range.end {
        let to = range.end.min(at + src.window() as u64);
        h.update(src.read(at..to, &mut buf)?);
        at = to;
    }
    Ok(h.finalize())
}
