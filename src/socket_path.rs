//! Paths of the Unix sockets framerec listens on (the statistics socket, a `unix:` Prometheus
//! endpoint, the `unix:` source): the one place that decides what may be removed there.
//!
//! A path is removed before binding only if it is a socket nobody answers on (`lstat` says
//! socket and `connect` gives `ECONNREFUSED`: left by a crashed process). A regular file, a
//! directory, a symlink, anything else, or a socket someone answers on is refused, never
//! removed: a finished segment at a mistyped path must survive. On exit only the socket this
//! process bound is removed, recognised by its device and inode.
//!
//! A socket is created with its final mode (and group) before anyone can reach it, whatever
//! the umask: it is bound inside a fresh mode-0700 directory beside `path`, given its mode and
//! group there, and only then renamed to `path` (refusing to replace anything that appeared
//! meanwhile). No `chmod` after the fact, so no window in which another user can connect.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why a socket path cannot be listened on.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    #[error(
        "{path} is a {kind}, not a socket: framerec replaces only a stale socket there; choose another path"
    )]
    Occupied { path: PathBuf, kind: &'static str },
    #[error(
        "another process answers on the socket {path} (another recorder?); choose another path or stop it"
    )]
    Live { path: PathBuf },
    #[error("cannot tell whether the socket {path} is stale ({source}); it is left as it is")]
    Probe { path: PathBuf, source: io::Error },
    #[error("cannot inspect {path}: {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

impl SocketPathError {
    /// True when something else is at the path (a file, a directory, a symlink, a live or
    /// unprobeable socket): a setup error the user must resolve, never worked around.
    pub fn path_taken(&self) -> bool {
        matches!(
            self,
            SocketPathError::Occupied { .. }
                | SocketPathError::Live { .. }
                | SocketPathError::Probe { .. }
        )
    }
}

/// The socket file this process bound; dropping it removes the file if it is still that socket.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove the socket");
                }
            }
            // Gone, or replaced by someone else's file: not ours to remove.
            _ => {}
        }
    }
}

fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_file() {
        "regular file"
    } else if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_block_device() || ft.is_char_device() {
        "device"
    } else {
        "file of another kind"
    }
}

/// Who may connect to a socket framerec listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAccess {
    /// Permission bits (`0o600`: the recorder's user only).
    pub mode: u32,
    /// Group of the socket file (None: the recorder's).
    pub group: Option<u32>,
}

impl SocketAccess {
    /// The recorder's user only.
    pub const OWNER_ONLY: SocketAccess = SocketAccess {
        mode: 0o600,
        group: None,
    };
}

/// Binds `path` with `access` already in force: in a private directory beside it, then moved
/// into place without replacing anything.
fn bind_private(path: &Path, access: SocketAccess) -> io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let private = parent.join(format!(".framerec-bind-{}-{}", std::process::id(), {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let inner = private.join(name);
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(access.mode & 0o777))?;
        if let Some(gid) = access.group {
            std::os::unix::fs::chown(&inner, None, Some(gid))?;
        }
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &inner,
            nix::fcntl::AT_FDCWD,
            path,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(io::Error::from)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(private.join(name));
    let _ = std::fs::remove_dir(&private);
    result
}

/// Listens on a Unix stream socket at `path` with `access`, replacing a stale socket there and
/// nothing else.
pub fn bind(
    path: &Path,
    access: SocketAccess,
) -> Result<(UnixListener, SocketFile), SocketPathError> {
    let p = || path.to_path_buf();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => return Err(SocketPathError::Stat { path: p(), source }),
        Ok(m) if !m.file_type().is_socket() => {
            return Err(SocketPathError::Occupied {
                path: p(),
                kind: kind(m.file_type()),
            });
        }
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketPathError::Live { path: p() }),
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                tracing::info!(socket = %path.display(), "replacing a stale socket nobody answers on");
                std::fs::remove_file(path)
                    .map_err(|source| SocketPathError::RemoveStale { path: p(), source })?;
            }
            Err(source) => return Err(SocketPathError::Probe { path: p(), source }),
        },
    }
    let listener = bind_private(path, access).map_err(|source| match source.raw_os_error() {
        Some(libc::EEXIST) => SocketPathError::Occupied {
            path: p(),
            kind: "file that appeared while the socket was made",
        },
        _ => SocketPathError::Bind { path: p(), source },
    })?;
    let m = std::fs::symlink_metadata(path)
        .map_err(|source| SocketPathError::Stat { path: p(), source })?;
    Ok((
        listener,
        SocketFile {
            path: p(),
            dev: m.dev(),
            ino: m.ino(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_a_directory_or_a_symlink_is_refused_and_left_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("0000000000000000.mcap");
        std::fs::write(&file, b"a finished segment").unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let link = tmp.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for (path, what) in [
            (&file, "regular file"),
            (&dir, "directory"),
            (&link, "symlink"),
        ] {
            let e = bind(path, SocketAccess::OWNER_ONLY).unwrap_err();
            assert!(e.path_taken(), "{e}");
            let text = e.to_string();
            assert!(
                text.contains(&path.display().to_string()) && text.contains(what),
                "{text}"
            );
        }
        assert_eq!(std::fs::read(&file).unwrap(), b"a finished segment");
        assert!(dir.is_dir());
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a stale socket file remains");
        let (listener, file) =
            bind(&path, SocketAccess::OWNER_ONLY).expect("the stale socket is replaced");
        // Now it is live: a second bind refuses and leaves it.
        let e = bind(&path, SocketAccess::OWNER_ONLY).unwrap_err();
        assert!(matches!(e, SocketPathError::Live { .. }), "{e}");
        assert!(UnixStream::connect(&path).is_ok(), "still served");
        drop(listener);
        drop(file);
        assert!(!path.exists(), "our own socket is removed");
    }

    #[test]
    fn on_drop_only_the_socket_this_process_bound_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.sock");
        let beside = tmp.path().join("beside");
        // Replacements are made beside and renamed over the path while ours still exists, so
        // they cannot reuse its inode number.
        let (listener, file) = bind(&path, SocketAccess::OWNER_ONLY).unwrap();
        drop(listener);
        std::fs::write(&beside, b"not ours").unwrap();
        std::fs::rename(&beside, &path).unwrap();
        drop(file);
        assert_eq!(std::fs::read(&path).unwrap(), b"not ours");
        std::fs::remove_file(&path).unwrap();

        let (l1, f1) = bind(&path, SocketAccess::OWNER_ONLY).unwrap();
        drop(l1);
        let other = UnixListener::bind(&beside).unwrap();
        std::fs::rename(&beside, &path).unwrap();
        drop(f1);
        assert!(path.exists(), "another socket at the path is not ours");
        drop(other);
    }
}
