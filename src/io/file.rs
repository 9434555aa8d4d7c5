//! One segment file as the writer sees it: vectored positional writes of owned spans, fsync,
//! page-cache release. Two backends behind one interface: io_uring (tokio-uring) and blocking
//! `pwrite` on tokio's blocking pool, so the pool logic is written once.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::frame::FrameBuf;

/// The I/O backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    IoUring,
    Pwrite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::IoUring => "io-uring",
            Backend::Pwrite => "pwrite",
        }
    }
}

/// Bytes `start..end` of a buffer, owned for the duration of a write: a frame buffer's region,
/// or a compressed chunk's bytes.
#[derive(Debug)]
pub struct IoSpan {
    backing: Backing,
    start: usize,
    end: usize,
    /// The buffer came from the frame pool and goes back to it.
    pub pooled: bool,
}

#[derive(Debug)]
enum Backing {
    Frame(FrameBuf),
    Bytes(bytes::Bytes),
}

impl IoSpan {
    pub fn new(buf: FrameBuf, (start, end): (usize, usize), pooled: bool) -> IoSpan {
        assert!(
            start <= end && end <= buf.region().len(),
            "span outside the buffer"
        );
        IoSpan {
            backing: Backing::Frame(buf),
            start,
            end,
            pooled,
        }
    }

    /// All of `bytes` (a compressed chunk and its message indexes).
    pub fn of_bytes(bytes: bytes::Bytes) -> IoSpan {
        IoSpan {
            end: bytes.len(),
            backing: Backing::Bytes(bytes),
            start: 0,
            pooled: false,
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.backing {
            Backing::Frame(buf) => &buf.region()[self.start..self.end],
            Backing::Bytes(b) => &b[self.start..self.end],
        }
    }

    /// The frame buffer the span was cut from, if it was one.
    pub fn into_frame_buf(self) -> Option<FrameBuf> {
        match self.backing {
            Backing::Frame(buf) => Some(buf),
            Backing::Bytes(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Drops the first `n` bytes from the span (after a short write).
    fn advance(&mut self, n: usize) {
        self.start += n.min(self.len());
    }
}

/// Removes `n` written bytes from the front of `spans`, moving finished spans to `done`.
fn consume(spans: &mut Vec<IoSpan>, done: &mut Vec<IoSpan>, mut n: usize) {
    let mut finished = 0;
    for s in spans.iter_mut() {
        if n == 0 {
            break;
        }
        let take = n.min(s.len());
        s.advance(take);
        n -= take;
        if s.is_empty() {
            finished += 1;
        }
    }
    done.extend(spans.drain(..finished));
}

fn create_std(path: &Path, direct: bool) -> io::Result<std::fs::File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    opts.open(path)
}

pub enum SegFile {
    Uring(tokio_uring::fs::File, Arc<std::fs::File>),
    Blocking(Arc<std::fs::File>),
}

impl SegFile {
    /// Creates `path` (which must not exist). `direct` opens it with `O_DIRECT`.
    pub fn create(path: &Path, direct: bool, backend: Backend) -> io::Result<SegFile> {
        SegFile::wrap(create_std(path, direct)?, backend)
    }

    /// [`SegFile::create`] on a blocking thread: creating a file allocates an inode, which can
    /// take a millisecond the writers' thread should spend submitting writes.
    pub async fn create_off_thread(
        path: PathBuf,
        direct: bool,
        backend: Backend,
    ) -> io::Result<SegFile> {
        SegFile::wrap(blocking(move || create_std(&path, direct)).await?, backend)
    }

    fn wrap(file: std::fs::File, backend: Backend) -> io::Result<SegFile> {
        Ok(match backend {
            Backend::IoUring => {
                let dup = file.try_clone()?;
                SegFile::Uring(tokio_uring::fs::File::from_std(dup), Arc::new(file))
            }
            Backend::Pwrite => SegFile::Blocking(Arc::new(file)),
        })
    }

    fn std(&self) -> &Arc<std::fs::File> {
        match self {
            SegFile::Uring(_, f) | SegFile::Blocking(f) => f,
        }
    }

    /// Writes every span, in order, at `offset`; resubmits after short writes. Gives the spans
    /// back whatever happens.
    pub async fn write_all_at(
        &self,
        spans: Vec<IoSpan>,
        offset: u64,
    ) -> (io::Result<()>, Vec<IoSpan>) {
        match self {
            SegFile::Uring(file, _) => {
                let mut spans = spans;
                let mut done = Vec::with_capacity(spans.len());
                let mut pos = offset;
                while !spans.is_empty() {
                    let (res, back) = file.writev_at(spans, pos).await;
                    spans = back;
                    match res {
                        Ok(0) => {
                            done.append(&mut spans);
                            return (Err(io::ErrorKind::WriteZero.into()), done);
                        }
                        Ok(n) => {
                            pos += n as u64;
                            consume(&mut spans, &mut done, n);
                        }
                        Err(e) => {
                            done.append(&mut spans);
                            return (Err(e), done);
                        }
                    }
                }
                (Ok(()), done)
            }
            SegFile::Blocking(file) => {
                let file = file.clone();
                let job = tokio::task::spawn_blocking(move || {
                    let mut pos = offset;
                    for s in &spans {
                        if let Err(e) = file.write_all_at(s.bytes(), pos) {
                            return (Err(e), spans);
                        }
                        pos += s.len() as u64;
                    }
                    (Ok(()), spans)
                });
                match job.await {
                    Ok(r) => r,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            }
        }
    }

    /// `fdatasync`: data and the metadata needed to read it back.
    /// Device and inode of the open file.
    pub fn identity(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        self.std().metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// True when the file no longer has its name `path`: it was deleted (no link left) or
    /// `path` now names another file (renamed away, or the directory removed and made again).
    pub fn entry_gone(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(open) = self.std().metadata() else {
            return false;
        };
        let named = match std::fs::metadata(path) {
            Ok(m) => (m.dev(), m.ino()) == (open.dev(), open.ino()),
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        };
        open.nlink() == 0 || !named
    }

    pub async fn sync_data(&self) -> io::Result<()> {
        match self {
            SegFile::Uring(file, _) => file.sync_data().await,
            SegFile::Blocking(file) => {
                let file = file.clone();
                blocking(move || file.sync_data()).await
            }
        }
    }

    /// Reserves disk blocks for `offset..offset + len` without changing the file's size.
    pub async fn preallocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let file = self.std().clone();
        blocking(move || {
            nix::fcntl::fallocate(
                file.as_fd(),
                nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                offset as i64,
                len as i64,
            )
            .map_err(io::Error::from)
        })
        .await
    }

    /// Cuts the file to `len` bytes.
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        let file = self.std().clone();
        blocking(move || file.set_len(len)).await
    }

    /// Frees blocks reserved past the file's end at `end` (`len` bytes of them). Advice only.
    pub async fn release_space(&self, end: u64, len: u64) {
        let file = self.std().clone();
        let _ = blocking(move || {
            // tmpfs keeps blocks reserved past the end until they are punched out; ext4 frees
            // them on a truncate to the same size.
            let _ = nix::fcntl::fallocate(
                file.as_fd(),
                nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                end as i64,
                len as i64,
            );
            file.set_len(end)
        })
        .await;
    }

    /// Drops the file's clean cached pages in `0..len` (recorded data nobody will read soon).
    pub fn release_cache(&self, len: u64) {
        // Advice only: an error costs memory, not data.
        let _ = nix::fcntl::posix_fadvise(
            self.std().as_fd(),
            0,
            len as i64,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
    }

    /// Closes the file (the io_uring handle first, then the std handle it duplicated).
    pub async fn close(self) -> io::Result<()> {
        match self {
            SegFile::Uring(file, _) => file.close().await,
            SegFile::Blocking(_) => Ok(()),
        }
    }
}

/// Runs `f` on tokio's blocking pool and returns its result.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `fsync` of a directory, so that files created in it survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(len: usize) -> IoSpan {
        IoSpan::new(FrameBuf::new(len), (0, len), true)
    }

    #[test]
    fn consume_moves_finished_spans_and_trims_the_next() {
        let mut spans = vec![span(10), span(20), span(30)];
        let mut done = Vec::new();
        consume(&mut spans, &mut done, 25);
        assert_eq!(done.len(), 1);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].len(), 5);
        consume(&mut spans, &mut done, 35);
        assert!(spans.is_empty());
        assert_eq!(done.len(), 3);
    }
}
