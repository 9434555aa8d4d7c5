//! The live statistics socket: a Unix socket (mode 0600) that answers every connection with
//! one JSON [`Snapshot`] and closes it. `framerec stats` is its client. Runs on its own thread,
//! off the data path; a snapshot is built only when someone asks.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::observe::Snapshot;

/// Builds a snapshot on demand; called from the server thread.
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

pub struct StatsServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatsServer {
    /// Serves snapshots at `path`. A socket file left by a crashed recorder is replaced; one a
    /// live recorder still answers on is an error.
    pub fn start(path: &Path, snapshot: SnapshotFn) -> io::Result<StatsServer> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another recorder serves statistics at {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("framerec-stats".into())
            .spawn(move || serve(listener, snapshot, flag))?;
        Ok(StatsServer {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn serve(listener: UnixListener, snapshot: SnapshotFn, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                match serde_json::to_vec(&snapshot()) {
                    Ok(json) => {
                        let _ = stream.write_all(&json);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot encode a statistics snapshot"),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!(error = %e, "statistics socket accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Drop for StatsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one snapshot from a recorder's statistics socket.
pub fn fetch(path: &Path) -> io::Result<Snapshot> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    io::Read::read_to_end(&mut stream, &mut buf)?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
