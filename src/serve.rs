//! The recorder's statistics surfaces, served on their own threads, off the data path: the live
//! statistics socket (a Unix socket answering each connection with one JSON [`Snapshot`], read
//! by `framerec stats`) and the Prometheus exposition (HTTP on loopback TCP or a Unix socket).
//! Nothing is computed until someone asks.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::observe::Snapshot;

/// Builds a snapshot on demand; called from the server thread.
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// Renders the Prometheus exposition text; called from the server thread per scrape.
pub type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

impl Listener {
    /// A Unix socket of mode 0600 at `path`. A socket file left by a crashed recorder is
    /// replaced; one a live recorder still answers on is an error.
    fn unix(path: &Path) -> io::Result<Listener> {
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another recorder serves {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let l = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        l.set_nonblocking(true)?;
        Ok(Listener::Unix(l, path.to_path_buf()))
    }

    fn tcp(addr: &str) -> io::Result<Listener> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        Ok(Listener::Tcp(l))
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }

    fn addr(&self) -> io::Result<String> {
        Ok(match self {
            Listener::Tcp(l) => l.local_addr()?.to_string(),
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
        })
    }

    /// A connection in blocking mode with 2 s timeouts.
    fn accept(&self) -> io::Result<Stream> {
        let timeout = Some(Duration::from_secs(2));
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                Stream::Tcp(s)
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_read_timeout(timeout)?;
                s.set_write_timeout(timeout)?;
                Stream::Unix(s)
            }
        })
    }
}

/// One listening thread, asleep in `poll` until a connection comes; stops at once, and removes
/// its Unix socket file, when dropped.
pub struct Server {
    /// Closing it wakes the thread to stop.
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
    unix_path: Option<PathBuf>,
    /// Where it listens: the bound TCP address (the real port when port 0 was asked for), or
    /// `unix:PATH`.
    pub addr: String,
}

impl Server {
    fn spawn(
        listener: Listener,
        name: &str,
        answer: impl Fn(&mut Stream) + Send + 'static,
    ) -> io::Result<Server> {
        let addr = listener.addr()?;
        let unix_path = match &listener {
            Listener::Unix(_, p) => Some(p.clone()),
            Listener::Tcp(_) => None,
        };
        let (wake, woken) = UnixStream::pair()?;
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                loop {
                    let mut fds = [
                        PollFd::new(listener.fd(), PollFlags::POLLIN),
                        PollFd::new(woken.as_fd(), PollFlags::POLLIN),
                    ];
                    match poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) | Err(Errno::EINTR) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "statistics poll failed");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                    // The other end was closed (or written to): the server is being dropped.
                    if fds[1].any().unwrap_or(true) {
                        return;
                    }
                    match listener.accept() {
                        Ok(mut stream) => answer(&mut stream),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "statistics accept failed");
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                }
            })?;
        Ok(Server {
            wake: Some(wake),
            thread: Some(thread),
            unix_path,
            addr,
        })
    }

    /// The live statistics socket at `path`: each connection gets one JSON snapshot.
    pub fn stats(path: &Path, snapshot: SnapshotFn) -> io::Result<Server> {
        Server::spawn(Listener::unix(path)?, "framerec-stats", move |stream| {
            match serde_json::to_vec(&snapshot()) {
                Ok(json) => {
                    let _ = stream.write_all(&json);
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode a statistics snapshot"),
            }
        })
    }

    /// Prometheus exposition over HTTP at a TCP address (`127.0.0.1:9477`) or a Unix socket
    /// (`unix:/run/framerec/metrics.sock`); every request gets the current metrics.
    pub fn metrics(addr: &str, render: RenderFn) -> io::Result<Server> {
        let listener = match addr.strip_prefix("unix:") {
            Some(path) => Listener::unix(Path::new(path))?,
            None => Listener::tcp(addr)?,
        };
        Server::spawn(listener, "framerec-metrics", move |stream| {
            answer_http(stream, &render)
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.unix_path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Reads the request head (bounded, with a timeout) and answers with the metrics.
fn answer_http(stream: &mut Stream, render: &RenderFn) {
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

/// Reads one snapshot from a recorder's statistics socket.
pub fn fetch(path: &Path) -> io::Result<Snapshot> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    // A snapshot is a few KiB: whatever answers on the socket cannot make the client hold more.
    stream.take(MAX_REPLY + 1).read_to_end(&mut buf)?;
    parse_snapshot(&buf)
}

/// Longest statistics reply [`fetch`] reads, in bytes.
pub const MAX_REPLY: u64 = 1 << 20;

/// Parses a statistics socket's reply (one JSON [`Snapshot`]), at most [`MAX_REPLY`] bytes.
pub fn parse_snapshot(reply: &[u8]) -> io::Result<Snapshot> {
    if reply.len() as u64 > MAX_REPLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the reply is longer than {MAX_REPLY} bytes"),
        ));
    }
    serde_json::from_slice(reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
