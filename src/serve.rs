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

/// Renders the Prometheus exposition text; called from the metrics thread per scrape.
pub type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;

enum Listener {
    Tcp(std::net::TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Prometheus text exposition over HTTP, on a TCP address (`127.0.0.1:9477`) or a Unix socket
/// (`unix:/run/framerec/metrics.sock`). Answers every request with the current metrics.
pub struct MetricsServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    unix_path: Option<PathBuf>,
    /// Where it listens (the bound port, when port 0 was asked for).
    pub addr: String,
}

impl MetricsServer {
    pub fn start(addr: &str, render: RenderFn) -> io::Result<MetricsServer> {
        let listener = match addr.strip_prefix("unix:") {
            Some(path) => {
                let path = PathBuf::from(path);
                if path.exists() && UnixStream::connect(&path).is_err() {
                    std::fs::remove_file(&path)?;
                }
                let l = UnixListener::bind(&path)?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                l.set_nonblocking(true)?;
                Listener::Unix(l, path)
            }
            None => {
                let l = std::net::TcpListener::bind(addr)?;
                l.set_nonblocking(true)?;
                Listener::Tcp(l)
            }
        };
        let (bound, unix_path) = match &listener {
            Listener::Tcp(l) => (l.local_addr()?.to_string(), None),
            Listener::Unix(_, p) => (format!("unix:{}", p.display()), Some(p.clone())),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("framerec-metrics".into())
            .spawn(move || serve_metrics(listener, render, flag))?;
        Ok(MetricsServer {
            stop,
            thread: Some(thread),
            unix_path,
            addr: bound,
        })
    }
}

/// Reads the request head (bounded, with a timeout) and answers with the metrics.
fn answer(mut stream: impl io::Read + Write, render: &RenderFn) {
    let mut head = [0u8; 8192];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                if head[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let body = render();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn serve_metrics(listener: Listener, render: RenderFn, stop: Arc<AtomicBool>) {
    let timeout = Some(Duration::from_secs(2));
    while !stop.load(Ordering::Relaxed) {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(timeout);
                let _ = s.set_write_timeout(timeout);
                answer(s, &render);
            }),
            Listener::Unix(l, _) => l.accept().map(|(s, _)| {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(timeout);
                let _ = s.set_write_timeout(timeout);
                answer(s, &render);
            }),
        };
        match accepted {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}
