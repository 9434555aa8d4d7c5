//! The control socket's protocol, as pure code: one JSON request line per connection, one JSON
//! reply line.
//!
//! ```text
//! request := {"cmd": "status" | "split" | "pause" | "resume" | "stop"}
//!          | {"cmd": "mark", "text": STRING}          (1..=MAX_MARK_BYTES bytes of UTF-8)
//! reply   := {"ok": true, ...}  |  {"ok": false, "error": STRING}
//! ```
//!
//! Invariants: a request is at most [`MAX_REQUEST_BYTES`] bytes (the reader stops there), it
//! holds no field besides `cmd` and `text`, and parsing never allocates more than it was given.

use serde_json::{Map, Value};

use crate::observe::ControlReject;

/// The longest request line read, in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 << 10;
/// The longest mark text, in bytes of UTF-8.
pub const MAX_MARK_BYTES: usize = 4 << 10;
/// The commands, as a person reads them in an error.
pub const COMMANDS: &str = "status, split, pause, resume, mark, stop";

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Split,
    Pause,
    Resume,
    Mark { text: String },
    Stop,
}

impl Request {
    /// The request line a client sends (with its newline).
    pub fn line(&self) -> String {
        let v = match self {
            Request::Mark { text } => serde_json::json!({"cmd": "mark", "text": text}),
            other => serde_json::json!({ "cmd": other.name() }),
        };
        format!("{v}\n")
    }

    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Split => "split",
            Request::Pause => "pause",
            Request::Resume => "resume",
            Request::Mark { .. } => "mark",
            Request::Stop => "stop",
        }
    }
}

/// A request refused: why (counted by kind) and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub kind: ControlReject,
    pub message: String,
}

impl Rejection {
    pub fn new(kind: ControlReject, message: impl Into<String>) -> Rejection {
        Rejection {
            kind,
            message: message.into(),
        }
    }

    fn malformed(message: impl Into<String>) -> Rejection {
        Rejection::new(ControlReject::Malformed, message)
    }
}

/// Checks a mark's text: not empty, at most [`MAX_MARK_BYTES`].
pub fn check_mark_text(text: &str) -> Result<(), Rejection> {
    if text.is_empty() {
        return Err(Rejection::malformed("the mark's text is empty"));
    }
    if text.len() > MAX_MARK_BYTES {
        return Err(Rejection::new(
            ControlReject::Oversized,
            format!(
                "the mark's text is {} bytes long; at most {MAX_MARK_BYTES} are recorded",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// Parses one request line (a trailing newline allowed).
pub fn parse_request(line: &[u8]) -> Result<Request, Rejection> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(Rejection::new(
            ControlReject::Oversized,
            format!("the request is longer than {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| Rejection::malformed(format!("not a JSON request ({e})")))?;
    let Value::Object(mut fields) = value else {
        return Err(Rejection::malformed(
            "the request is not a JSON object such as {\"cmd\":\"status\"}",
        ));
    };
    let cmd = match fields.remove("cmd") {
        Some(Value::String(c)) => c,
        Some(_) => return Err(Rejection::malformed("\"cmd\" is not a string")),
        None => {
            return Err(Rejection::malformed(format!(
                "the request has no \"cmd\"; commands: {COMMANDS}"
            )));
        }
    };
    let text = match cmd.as_str() {
        "mark" => Some(mark_text(&mut fields)?),
        _ => None,
    };
    if let Some(field) = fields.keys().next() {
        return Err(Rejection::malformed(format!(
            "unknown field {field:?} in a {cmd:?} request"
        )));
    }
    Ok(match (cmd.as_str(), text) {
        ("status", _) => Request::Status,
        ("split", _) => Request::Split,
        ("pause", _) => Request::Pause,
        ("resume", _) => Request::Resume,
        ("stop", _) => Request::Stop,
        ("mark", Some(text)) => Request::Mark { text },
        _ => {
            let mut shown: String = cmd.chars().take(40).collect();
            if shown.len() < cmd.len() {
                shown.push('…');
            }
            return Err(Rejection::malformed(format!(
                "unknown command {shown:?}; commands: {COMMANDS}"
            )));
        }
    })
}

fn mark_text(fields: &mut Map<String, Value>) -> Result<String, Rejection> {
    match fields.remove("text") {
        Some(Value::String(t)) => {
            check_mark_text(&t)?;
            Ok(t)
        }
        Some(_) => Err(Rejection::malformed("the mark's \"text\" is not a string")),
        None => Err(Rejection::malformed("a mark needs \"text\"")),
    }
}

/// The reply line for a success: `fields` (a JSON object) with `"ok": true` first.
pub fn ok_reply(fields: Value) -> String {
    let mut out = Map::new();
    out.insert("ok".into(), Value::Bool(true));
    if let Value::Object(f) = fields {
        out.extend(f);
    }
    format!("{}\n", Value::Object(out))
}

/// The reply line for a refusal.
pub fn error_reply(r: &Rejection) -> String {
    format!(
        "{}\n",
        serde_json::json!({"ok": false, "error": r.message, "kind": r.kind.as_str()})
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_round_trips() {
        for r in [
            Request::Status,
            Request::Split,
            Request::Pause,
            Request::Resume,
            Request::Stop,
            Request::Mark {
                text: "door \"opened\"\n".into(),
            },
        ] {
            assert_eq!(parse_request(r.line().as_bytes()), Ok(r.clone()));
        }
        assert_eq!(
            parse_request(b" {\"cmd\":\"status\"} \r\n"),
            Ok(Request::Status)
        );
    }

    #[test]
    fn garbage_is_malformed_with_a_reason() {
        let cases: [(&[u8], &str); 9] = [
            (b"", "not a JSON request"),
            (b"\xff\xfe\x00", "not a JSON request"),
            (b"{\"cmd\":", "not a JSON request"),
            (b"[1,2]", "not a JSON object"),
            (b"{}", "no \"cmd\""),
            (b"{\"cmd\":7}", "not a string"),
            (b"{\"cmd\":\"reboot\"}", "unknown command \"reboot\""),
            (b"{\"cmd\":\"status\",\"x\":1}", "unknown field \"x\""),
            (b"{\"cmd\":\"mark\"}", "needs \"text\""),
        ];
        for (line, why) in cases {
            let e = parse_request(line).unwrap_err();
            assert_eq!(e.kind, ControlReject::Malformed, "{line:?}");
            assert!(e.message.contains(why), "{line:?}: {}", e.message);
        }
    }

    #[test]
    fn lengths_are_bounded() {
        let long = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert_eq!(
            parse_request(&long).unwrap_err().kind,
            ControlReject::Oversized
        );
        let text = "x".repeat(MAX_MARK_BYTES + 1);
        let e = parse_request(Request::Mark { text }.line().as_bytes()).unwrap_err();
        assert_eq!(e.kind, ControlReject::Oversized);
        assert!(e.message.contains("4096"), "{}", e.message);
        let text = "é".repeat(MAX_MARK_BYTES / 2);
        assert!(parse_request(Request::Mark { text }.line().as_bytes()).is_ok());
        let e = parse_request(b"{\"cmd\":\"mark\",\"text\":\"\"}").unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        // A long unknown command is cut in the reply.
        let cmd = "y".repeat(10_000);
        let e = parse_request(format!("{{\"cmd\":\"{cmd}\"}}").as_bytes()).unwrap_err();
        assert!(e.message.len() < 200, "{}", e.message);
    }

    #[test]
    fn replies_are_one_json_line() {
        let ok = ok_reply(serde_json::json!({"state": "paused"}));
        assert_eq!(ok, "{\"ok\":true,\"state\":\"paused\"}\n");
        let e = error_reply(&Rejection::new(ControlReject::Refused, "no"));
        let v: Value = serde_json::from_str(&e).unwrap();
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], "no");
    }
}
