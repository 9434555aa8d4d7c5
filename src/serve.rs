//! The recorder's statistics surfaces, served on their own threads, off the data path: the live
//! statistics socket (a Unix socket answering each connection with one JSON [`Snapshot`], read
//! by `framerec stats`) and the Prometheus exposition (HTTP on loopback TCP or a Unix socket).
//! Nothing is computed until someone asks.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::observe::Snapshot;
use crate::socket_path::{self, SocketFile, SocketPathError};

/// Why a statistics endpoint cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Path(#[from] SocketPathError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: io::Error },
}

impl ServeError {
    /// True when the path is taken by something framerec must not remove (see
    /// [`SocketPathError::path_taken`]): the recorder refuses to start.
    pub fn path_taken(&self) -> bool {
        matches!(self, ServeError::Path(e) if e.path_taken())
    }
}

/// Builds a snapshot on demand; called from the server thread.
pub type SnapshotFn = Arc<dyn Fn() -> Snapshot + Send + Sync>;

/// Told of a connection closed unanswered because the server was answering as many as it may.
pub type BusyFn = Arc<dyn Fn() + Send + Sync>;

/// Renders the Prometheus exposition text; called from the server thread per scrape.
pub type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, SocketFile),
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

/// One client's connection, as an answering function sees it.
pub trait Connection: Read + Write {
    /// Bounds the next reads (at least 1 ms).
    fn set_read_timeout(&self, t: Duration) -> io::Result<()>;
}

impl Connection for Stream {
    fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        let t = Some(t.max(Duration::from_millis(1)));
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }
}

/// Connections answered at once; more are closed at once, so a crowd of idle clients cannot
/// take every thread or much memory.
const MAX_CONNECTIONS: usize = 16;
/// How long one connection may take, from accept to the end of its answer.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

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
    /// A Unix socket of mode 0600 at `path`. A socket left by a crashed recorder is replaced;
    /// anything else at the path is an error (see [`socket_path`]).
    fn unix(path: &Path) -> Result<Listener, ServeError> {
        let (l, file) = socket_path::bind(path, socket_path::SocketAccess::OWNER_ONLY)?;
        let listen = |source| ServeError::Listen {
            addr: path.display().to_string(),
            source,
        };
        l.set_nonblocking(true).map_err(listen)?;
        Ok(Listener::Unix(l, file))
    }

    fn tcp(addr: &str) -> Result<Listener, ServeError> {
        let listen = |source| ServeError::Listen {
            addr: addr.to_string(),
            source,
        };
        let l = TcpListener::bind(addr).map_err(listen)?;
        l.set_nonblocking(true).map_err(listen)?;
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
            Listener::Unix(_, f) => format!("unix:{}", f.path().display()),
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
/// its Unix socket file (if it is still the one it bound), when dropped.
pub struct Server {
    /// Closing it wakes the thread to stop.
    wake: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
    /// Where it listens: the bound TCP address (the real port when port 0 was asked for), or
    /// `unix:PATH`.
    pub addr: String,
}

impl Server {
    /// Each connection is answered on a thread of its own (at most [`MAX_CONNECTIONS`] at
    /// once, each within [`CONNECTION_DEADLINE`]): a client that connects and says nothing
    /// delays nobody else.
    fn spawn(
        listener: Listener,
        name: &str,
        answer: impl Fn(&mut Stream, std::time::Instant) + Send + Sync + 'static,
    ) -> io::Result<Server> {
        Server::spawn_with(listener, name, answer, None)
    }

    /// [`Server::spawn`], calling `busy` for each connection closed unanswered because
    /// [`MAX_CONNECTIONS`] were being answered.
    fn spawn_with(
        listener: Listener,
        name: &str,
        answer: impl Fn(&mut Stream, std::time::Instant) + Send + Sync + 'static,
        busy: Option<BusyFn>,
    ) -> io::Result<Server> {
        let addr = listener.addr()?;
        let answer = Arc::new(answer);
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let conn_name = format!("{name}-conn");
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
                        Ok(mut stream) => {
                            use std::sync::atomic::Ordering::AcqRel;
                            if active.fetch_add(1, AcqRel) >= MAX_CONNECTIONS {
                                active.fetch_sub(1, AcqRel);
                                tracing::debug!("too many statistics clients at once; closing one");
                                if let Some(busy) = &busy {
                                    busy();
                                }
                                continue;
                            }
                            let (answer, done) = (answer.clone(), active.clone());
                            let deadline = std::time::Instant::now() + CONNECTION_DEADLINE;
                            let spawned = std::thread::Builder::new()
                                .name(conn_name.clone())
                                .spawn(move || {
                                    answer(&mut stream, deadline);
                                    done.fetch_sub(1, AcqRel);
                                });
                            if let Err(e) = spawned {
                                active.fetch_sub(1, AcqRel);
                                tracing::warn!(error = %e, "cannot start a thread for a statistics client");
                            }
                        }
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
            addr,
        })
    }

    /// The live statistics socket at `path`: each connection gets one JSON snapshot.
    pub fn stats(path: &Path, snapshot: SnapshotFn) -> Result<Server, ServeError> {
        let listen = |source| ServeError::Listen {
            addr: path.display().to_string(),
            source,
        };
        Server::spawn(Listener::unix(path)?, "framerec-stats", move |stream, _| {
            match serde_json::to_vec(&snapshot()) {
                Ok(json) => {
                    let _ = stream.write_all(&json);
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode a statistics snapshot"),
            }
        })
        .map_err(listen)
    }

    /// A Unix socket of mode 0600 at `path` whose connections `answer` serves, each on a
    /// thread of its own (at most [`MAX_CONNECTIONS`] at once), given the instant by which it
    /// must be done ([`CONNECTION_DEADLINE`] after the accept).
    /// `busy` is called for each connection closed unanswered because that many were being
    /// answered.
    pub fn unix(
        path: &Path,
        name: &str,
        answer: impl Fn(&mut dyn Connection, std::time::Instant) + Send + Sync + 'static,
        busy: BusyFn,
    ) -> Result<Server, ServeError> {
        let listen = |source| ServeError::Listen {
            addr: path.display().to_string(),
            source,
        };
        let answer = move |stream: &mut Stream, deadline| answer(stream, deadline);
        Server::spawn_with(Listener::unix(path)?, name, answer, Some(busy)).map_err(listen)
    }

    /// Prometheus exposition over HTTP at a TCP address (`127.0.0.1:9477`) or a Unix socket
    /// (`unix:/run/framerec/metrics.sock`); every request gets the current metrics.
    pub fn metrics(addr: &str, render: RenderFn) -> Result<Server, ServeError> {
        let listener = match addr.strip_prefix("unix:") {
            Some(path) => Listener::unix(Path::new(path))?,
            None => Listener::tcp(addr)?,
        };
        Server::spawn(listener, "framerec-metrics", move |stream, deadline| {
            answer_http(stream, &render, deadline)
        })
        .map_err(|source| ServeError::Listen {
            addr: addr.to_string(),
            source,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.wake.take());
        // The thread owns the listener and its socket file, removed as the thread ends.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What an HTTP request head asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    NotFound,
    BadMethod,
    Bad,
}

/// Parses the request line of `head`: only `GET /metrics` (a query string allowed) is served.
fn parse_request(head: &[u8]) -> Request {
    let line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let mut parts = line.split(|b| *b == b' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Request::Bad;
    };
    let path = target.split(|b| *b == b'?').next().unwrap_or(&[]);
    match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => Request::Metrics,
        (b"GET" | b"HEAD", _) => Request::NotFound,
        _ => Request::BadMethod,
    }
}

/// Reads the request head (at most 8 KiB, before `deadline`) and answers: the metrics for
/// `GET /metrics`, 404 for any other path, 405 for any other method.
fn answer_http(stream: &mut Stream, render: &RenderFn, deadline: std::time::Instant) {
    let mut head = [0u8; 8192];
    let mut got = 0;
    while got < head.len() {
        let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
            return;
        };
        if stream.set_read_timeout(left).is_err() {
            return;
        }
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Only the new bytes (and the 3 before them) can complete the blank line.
                let from = got.saturating_sub(3);
                got += n;
                if head[from..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let (status, body) = match parse_request(&head[..got]) {
        Request::Metrics => ("200 OK", render()),
        Request::NotFound => ("404 Not Found", "only /metrics is served\n".to_string()),
        Request::BadMethod => ("405 Method Not Allowed", "use GET\n".to_string()),
        Request::Bad => ("400 Bad Request", "not an HTTP request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// The largest reply [`fetch`] reads: a snapshot is a few KB.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 20;
/// How long [`fetch`] waits for a whole reply.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads one snapshot from a recorder's statistics socket: at most [`MAX_SNAPSHOT_BYTES`],
/// within [`FETCH_TIMEOUT`] in all, whatever the other end sends.
pub fn fetch(path: &Path) -> io::Result<Snapshot> {
    let mut stream = UnixStream::connect(path)?;
    let deadline = std::time::Instant::now() + FETCH_TIMEOUT;
    let timed_out = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no complete reply within {} s", FETCH_TIMEOUT.as_secs()),
        )
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(timed_out)?;
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        if buf.len() + n > MAX_SNAPSHOT_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the reply is longer than {MAX_SNAPSHOT_BYTES} bytes: not a framerec statistics socket"
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_snapshot(&buf)
}

/// Parses a statistics socket's reply (one JSON [`Snapshot`]), at most [`MAX_SNAPSHOT_BYTES`].
pub fn parse_snapshot(reply: &[u8]) -> io::Result<Snapshot> {
    if reply.len() > MAX_SNAPSHOT_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the reply is longer than {MAX_SNAPSHOT_BYTES} bytes"),
        ));
    }
    serde_json::from_slice(reply).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.0\r\n"),
            Request::Metrics
        );
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), Request::NotFound);
        assert_eq!(
            parse_request(b"GET /metricsx HTTP/1.1\r\n"),
            Request::NotFound
        );
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n"),
            Request::BadMethod
        );
        assert_eq!(parse_request(b""), Request::Bad);
        assert_eq!(parse_request(b"\xff\xfe"), Request::Bad);
    }
}
