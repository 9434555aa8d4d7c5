//! The client side of the control socket (`framerec ctl`): one request, one bounded reply.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Request;

/// The longest reply read.
pub const MAX_REPLY_BYTES: usize = 1 << 20;
/// How long a whole exchange may take (a split waits for the writers to rotate).
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no recorder answers on the control socket {path} ({source}); is one running, and is this its socket (--socket, [stats] control-socket)?"
    )]
    Connect { path: PathBuf, source: io::Error },
    #[error("the control socket {path} did not answer properly: {why}")]
    Reply { path: PathBuf, why: String },
}

/// Sends `req` to the recorder listening at `path` and returns its reply (a JSON object with
/// `ok`).
pub fn ask(path: &Path, req: &Request) -> Result<Value, ClientError> {
    let mut stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |why: String| ClientError::Reply {
        path: path.to_path_buf(),
        why,
    };
    let deadline = Instant::now() + ASK_TIMEOUT;
    stream
        .set_write_timeout(Some(ASK_TIMEOUT))
        .and_then(|()| stream.write_all(req.line().as_bytes()))
        .map_err(|e| bad(format!("cannot send the request: {e}")))?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(bad(format!("no reply within {} s", ASK_TIMEOUT.as_secs())));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| bad(e.to_string()))?;
        let n = match super::read_some(&mut stream, &mut chunk) {
            Ok(Some(n)) => n,
            Ok(None) => continue,
            Err(e) => return Err(bad(format!("cannot read the reply: {e}"))),
        };
        if n == 0 {
            break;
        }
        if reply.len() + n > MAX_REPLY_BYTES {
            return Err(bad(format!(
                "the reply is longer than {MAX_REPLY_BYTES} bytes"
            )));
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.ends_with(b"\n") {
            break;
        }
    }
    let v: Value =
        serde_json::from_slice(&reply).map_err(|e| bad(format!("the reply is not JSON ({e})")))?;
    if !v.get("ok").is_some_and(Value::is_boolean) {
        return Err(bad("the reply has no \"ok\"".into()));
    }
    Ok(v)
}
