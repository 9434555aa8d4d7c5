//! The control socket: a running recorder steered by `framerec ctl` (status, split, pause,
//! resume, stop; `mark` is parsed and bounded, and refused with its reason until the writers
//! can put marks into the recording: [`Control::mark`] is the seam). A Unix socket of mode 0600 served by [`crate::serve::Server`]'s core (a
//! thread per client, a bounded number of clients, a deadline each); one JSON request line per
//! connection, one JSON reply line (see [`protocol`]). Every request gets a reply or, when the
//! client cannot be answered in time, a closed connection; every rejection is counted
//! ([`crate::observe::ControlCounters`]).

pub mod client;
pub mod protocol;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::observe::{ControlReject, Counters};
use crate::serve::{Connection, ServeError, Server, SnapshotFn};
use crate::sink::{LiveSettings, SegmentListener};
pub use protocol::{MAX_MARK_BYTES, MAX_REQUEST_BYTES, Rejection, Request};

/// How long a client may take to send its request.
pub const READ_DEADLINE: Duration = Duration::from_secs(2);
/// How long a split waits for the writers to rotate (a frame must arrive to be written to the
/// next segment).
pub const SPLIT_WAIT: Duration = Duration::from_secs(2);

/// The segment frames go to now, as the writers announce it (a [`SegmentListener`]).
#[derive(Debug, Default)]
pub struct CurrentSegment(Mutex<Option<(u64, PathBuf)>>);

impl CurrentSegment {
    pub fn get(&self) -> Option<(u64, PathBuf)> {
        self.0.lock().ok()?.clone()
    }
}

impl SegmentListener for CurrentSegment {
    fn opened(&self, id: u64, path: &Path) {
        if let Ok(mut c) = self.0.lock() {
            *c = Some((id, path.to_path_buf()));
        }
    }
}

/// Writes a mark into the recording: `Err` says why it cannot.
pub type MarkFn = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the control socket acts on.
pub struct Control {
    pub counters: Arc<Counters>,
    pub live: Arc<LiveSettings>,
    pub snapshot: SnapshotFn,
    /// The run's graceful stop flag (the one SIGTERM sets).
    pub stop: Arc<AtomicBool>,
    pub segment: Arc<CurrentSegment>,
    /// `Some(why)` when the layout has no segments to split (fakenect).
    pub no_split: Option<&'static str>,
    pub queue_frames: u64,
    /// Writes marks; `None` (for now always) refuses them with the reason.
    pub mark: Option<MarkFn>,
}

impl Control {
    /// Serves `self` on a Unix socket of mode 0600 at `path`.
    pub fn serve(self, path: &Path) -> Result<Server, ServeError> {
        let control = Arc::new(self);
        let counters = control.counters.clone();
        let busy = Arc::new(move || counters.control.rejected(ControlReject::Busy));
        Server::unix(
            path,
            "framerec-ctl",
            move |conn, deadline| control.answer(conn, deadline),
            busy,
        )
    }

    /// Reads one request from `conn`, acts on it, and replies (an error reply for a request
    /// refused); counts the outcome.
    pub fn answer(&self, conn: &mut dyn Connection, deadline: Instant) {
        let read_by = deadline.min(Instant::now() + READ_DEADLINE);
        let result = read_request(conn, read_by)
            .and_then(|line| protocol::parse_request(&line))
            .and_then(|req| self.act(req, deadline));
        let reply = match &result {
            Ok(fields) => {
                self.counters.control.answered();
                protocol::ok_reply(fields.clone())
            }
            Err(r) => {
                self.counters.control.rejected(r.kind);
                tracing::debug!(kind = r.kind.as_str(), error = %r.message, "control request refused");
                protocol::error_reply(r)
            }
        };
        let _ = conn.write_all(reply.as_bytes());
    }

    fn act(&self, req: Request, deadline: Instant) -> Result<Value, Rejection> {
        match req {
            Request::Status => Ok(self.status()),
            Request::Split => self.split(deadline),
            Request::Pause | Request::Resume => {
                let pause = req == Request::Pause;
                let changed = self.counters.set_paused(pause);
                let state = if pause { "paused" } else { "recording" };
                if changed {
                    tracing::info!(state, "framerec ctl {}", req.name());
                }
                let mut v = json!({ "state": state });
                if !changed {
                    v["note"] = json!(format!("already {state}"));
                }
                Ok(v)
            }
            Request::Mark { text } => self.mark(&text),
            Request::Stop => {
                tracing::info!("framerec ctl stop: draining the queue and finalizing");
                self.stop.store(true, Ordering::SeqCst);
                Ok(json!({"state": "stopping"}))
            }
        }
    }

    fn mark(&self, text: &str) -> Result<Value, Rejection> {
        protocol::check_mark_text(text)?;
        let Some(mark) = &self.mark else {
            return Err(refused(
                "this recorder cannot write marks into its recording (not implemented in this layout or build)",
            ));
        };
        let time_ns = crate::frame::host_real_ns();
        mark(text).map_err(refused)?;
        self.counters.marks.fetch_add(1, Ordering::Relaxed);
        Ok(json!({"time_ns": time_ns, "bytes": text.len()}))
    }

    fn split(&self, deadline: Instant) -> Result<Value, Rejection> {
        if let Some(why) = self.no_split {
            return Err(refused(why));
        }
        if self.counters.is_paused() {
            return Err(refused(
                "the recorder is paused: a split happens at the next frame written; resume first",
            ));
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(SPLIT_WAIT);
        let done = self.live.ask_split().recv_timeout(wait).map_err(|e| {
            refused(match e {
                std::sync::mpsc::RecvTimeoutError::Timeout => format!(
                    "no segment rotation within {:.1} s (no frame was written meanwhile?); the split stays asked and happens at the next frame",
                    wait.as_secs_f64()
                ),
                std::sync::mpsc::RecvTimeoutError::Disconnected => {
                    "another split asked meanwhile took this one's place".to_string()
                }
            })
        })?;
        tracing::info!(
            closed = done.closed,
            opened = done.opened,
            "framerec ctl split"
        );
        Ok(json!({
            "closed": {"id": done.closed, "path": done.closed_path},
            "opened": {"id": done.opened, "path": done.opened_path},
        }))
    }

    fn status(&self) -> Value {
        let s = (self.snapshot)();
        let dropped: serde_json::Map<String, Value> = s
            .dropped
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| (k.clone(), json!(n)))
            .collect();
        let streams: Vec<Value> = s
            .streams
            .iter()
            .map(|st| {
                json!({
                    "name": st.name, "topic": st.topic,
                    "received_frames": st.received_frames, "written_frames": st.written_frames,
                    "dropped_frames": st.dropped_total(), "paused_frames": st.paused,
                })
            })
            .collect();
        json!({
            "state": if self.stop.load(Ordering::Relaxed) { "stopping" } else { s.state.as_str() },
            "uptime_s": s.uptime_s,
            "segment": self.segment.get().map(|(id, path)| json!({"id": id, "path": path})),
            "durable_seq": s.durable_seq,
            "queue": {"frames": s.queue_depth, "max_frames": self.queue_frames, "high_water": s.queue_high_water},
            "received_frames": s.received_frames,
            "written_frames": s.written_frames,
            "dropped": dropped,
            "dropped_frames": s.dropped_total(),
            "paused_frames": s.paused_frames,
            "pauses": s.pauses,
            "marks": s.marks,
            "streams": streams,
        })
    }
}

fn refused(why: impl Into<String>) -> Rejection {
    Rejection::new(ControlReject::Refused, why)
}

/// Reads a request line: up to its newline, or the end of the stream, before `deadline`, at
/// most [`MAX_REQUEST_BYTES`].
/// One read of `conn`: `Ok(None)` when it was interrupted or timed out with nothing read (the
/// caller checks its deadline and tries again), else the bytes read (0 at end of stream).
pub(crate) fn read_some(
    conn: &mut (impl io::Read + ?Sized),
    buf: &mut [u8],
) -> io::Result<Option<usize>> {
    match conn.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

pub fn read_request(conn: &mut dyn Connection, deadline: Instant) -> Result<Vec<u8>, Rejection> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    let incomplete = |what: &str| Rejection::new(ControlReject::Incomplete, what);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(left).is_err() {
            return Err(incomplete(&format!(
                "the request was not finished within {} s (one JSON line, ending in a newline)",
                READ_DEADLINE.as_secs()
            )));
        }
        let n = match read_some(conn, &mut chunk) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => return Err(incomplete(&format!("cannot read the request: {e}"))),
        };
        if n == 0 {
            if line.is_empty() {
                return Err(incomplete("no request was sent"));
            }
            return Ok(line);
        }
        let new = &chunk[..n];
        let end = new.iter().position(|b| *b == b'\n');
        let take = end.map_or(n, |i| i + 1);
        if line.len() + take > MAX_REQUEST_BYTES {
            return Err(Rejection::new(
                ControlReject::Oversized,
                format!("the request is longer than {MAX_REQUEST_BYTES} bytes"),
            ));
        }
        line.extend_from_slice(&new[..take]);
        if end.is_some() {
            return Ok(line);
        }
    }
}

/// A reader over bytes, for tests of [`read_request`].
#[cfg(test)]
struct Bytes(io::Cursor<Vec<u8>>, Vec<u8>);

#[cfg(test)]
impl io::Read for Bytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(&mut self.0, buf)
    }
}

#[cfg(test)]
impl io::Write for Bytes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl Connection for Bytes {
    fn set_read_timeout(&self, _: Duration) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Vec<u8>, Rejection> {
        let mut b = Bytes(io::Cursor::new(bytes.to_vec()), Vec::new());
        read_request(&mut b, Instant::now() + Duration::from_secs(5))
    }

    #[test]
    fn a_request_ends_at_its_newline_or_the_end_of_the_stream() {
        assert_eq!(
            read(b"{\"cmd\":\"status\"}\nmore").unwrap(),
            b"{\"cmd\":\"status\"}\n"
        );
        assert_eq!(read(b"{\"cmd\":\"stop\"}").unwrap(), b"{\"cmd\":\"stop\"}");
        assert_eq!(read(b"").unwrap_err().kind, ControlReject::Incomplete);
    }

    #[test]
    fn an_oversized_request_is_refused_without_reading_it_all() {
        let big = vec![b'x'; 1 << 20];
        let e = read(&big).unwrap_err();
        assert_eq!(e.kind, ControlReject::Oversized);
        let exact = [vec![b' '; MAX_REQUEST_BYTES - 1], b"\n".to_vec()].concat();
        assert_eq!(read(&exact).unwrap().len(), MAX_REQUEST_BYTES);
    }
}
