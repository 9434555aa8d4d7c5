//! Only one process writes a recording directory at a time.
//!
//! A writer (`record`, `recover`, `export --out`) holds an exclusive `flock` on
//! `DIR/.framerec.lock`, with its PID written in the file for the error a second writer prints.
//! The kernel releases the lock when the holder exits, however it exits (kill -9 included), so
//! a stale file never blocks anyone; a writer that ends normally also removes the file.
//! Readers (`verify`, `info`, `export` reading) take no lock: [`writer_of`] tries a shared lock
//! without waiting to learn whether a writer is at work, and lets it go at once.
//!
//! Removing the file on release is safe because both sides check, once they hold their lock,
//! that the path still names the file they locked; if not (its previous holder removed it
//! meanwhile), they start over on the new file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name in a recording directory.
pub const LOCK_FILE: &str = ".framerec.lock";

/// How long a writer retries while the lock is held: readers hold a shared lock for a moment
/// only, and must not make a starting writer fail.
const READER_GRACE: Duration = Duration::from_millis(500);
const RETRY_EVERY: Duration = Duration::from_millis(10);

/// The process holding a directory's lock, as its lock file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// None when the file names no PID (the holder is between taking the lock and writing it).
    pub pid: Option<u32>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "PID {pid}"),
            None => f.write_str("a process whose PID is not written yet"),
        }
    }
}

/// Why a writer did not get a directory.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir} is being written by another framerec process ({holder}); only one process writes a recording directory at a time"
    )]
    Held { dir: PathBuf, holder: Holder },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// An exclusive hold on a recording directory; released (and its file removed) on drop.
#[derive(Debug)]
pub struct DirLock {
    path: PathBuf,
    file: Flock<File>,
}

impl DirLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DirLock {
    /// Removes the file while still holding the lock, then the lock goes with the descriptor;
    /// whoever opened the old file notices that the path no longer names it.
    fn drop(&mut self) {
        if same_file(&self.file, &self.path).unwrap_or(false) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// True when `path` still names the open `file`.
fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The PID a lock file names (its first line, read from a bounded prefix).
fn read_pid(file: &File) -> Option<u32> {
    let mut buf = [0u8; 32];
    let mut f = file;
    let n = f.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Takes the exclusive lock of `dir` (which must exist), or says who holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let deadline = Instant::now() + READER_GRACE;
    loop {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut locked) => {
                if !same_file(&locked, &path).map_err(io_err)? {
                    continue;
                }
                locked.set_len(0).map_err(io_err)?;
                writeln!(locked, "{}", std::process::id()).map_err(io_err)?;
                return Ok(DirLock { path, file: locked });
            }
            Err((file, Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    return Err(LockError::Held {
                        dir: dir.to_path_buf(),
                        holder: Holder {
                            pid: read_pid(&file),
                        },
                    });
                }
                std::thread::sleep(RETRY_EVERY);
            }
            Err((_, errno)) => return Err(io_err(errno.into())),
        }
    }
}

/// The process writing `dir` right now, if any. Takes no lock that outlives the call and
/// creates no file.
pub fn writer_of(dir: &Path) -> io::Result<Option<Holder>> {
    let path = dir.join(LOCK_FILE);
    // Bounded: each retry means a writer removed the file in between, which is rare.
    for _ in 0..8 {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(locked) => {
                if same_file(&locked, &path)? {
                    return Ok(None);
                }
            }
            Err((file, Errno::EWOULDBLOCK)) => {
                return Ok(Some(Holder {
                    pid: read_pid(&file),
                }));
            }
            Err((_, errno)) => return Err(errno.into()),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_named_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let held = lock_dir(tmp.path()).unwrap();
        assert_eq!(
            writer_of(tmp.path()).unwrap(),
            Some(Holder {
                pid: Some(std::process::id())
            })
        );
        // flock locks belong to the open file, so a second open in this process conflicts too.
        match lock_dir(tmp.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder.pid, Some(std::process::id()))
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        assert!(
            !tmp.path().join(LOCK_FILE).exists(),
            "released: file removed"
        );
        assert_eq!(writer_of(tmp.path()).unwrap(), None);
        let again = lock_dir(tmp.path()).unwrap();
        assert!(again.path().exists());
    }

    #[test]
    fn a_stale_lock_file_blocks_nobody() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(LOCK_FILE), "999999999\n").unwrap();
        assert_eq!(writer_of(tmp.path()).unwrap(), None);
        let l = lock_dir(tmp.path()).unwrap();
        let pid = std::fs::read_to_string(l.path()).unwrap();
        assert_eq!(pid, format!("{}\n", std::process::id()));
    }

    #[test]
    fn a_reader_does_not_create_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(writer_of(tmp.path()).unwrap(), None);
        assert!(!tmp.path().join(LOCK_FILE).exists());
    }
}
