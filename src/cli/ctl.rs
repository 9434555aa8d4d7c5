//! `framerec ctl [--socket PATH] [--json] COMMAND`: steer a running recorder through its control
//! socket (status, split, pause, resume, stop). Exit 0 when the recorder did it, 1 when it
//! refused (the reason is printed), 2 when no recorder answers.

use std::path::PathBuf;
use std::process::ExitCode;

use framerec::config::{StatsConfig, StatsSocket};
use framerec::control::Request;
use framerec::control::client::{self, ClientError};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The recorder's control socket (default: $RUNTIME_DIRECTORY/framerec.ctl under systemd,
    /// else rec/framerec.ctl).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print the recorder's reply as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Clone, clap::Subcommand)]
enum CtlCommand {
    /// State, streams, current segment, durable watermark, queue, drops.
    Status,
    /// Close the current segment and continue in the next (no frame lost or repeated).
    Split,
    /// Stop writing frames; those arriving are counted as `paused` and the gap is noted in
    /// the recording.
    Pause,
    /// Write frames again after a pause.
    Resume,
    /// Stop gracefully, as SIGTERM does: everything accepted is written.
    Stop,
}

fn request(c: &CtlCommand) -> Request {
    match c {
        CtlCommand::Status => Request::Status,
        CtlCommand::Split => Request::Split,
        CtlCommand::Pause => Request::Pause,
        CtlCommand::Resume => Request::Resume,
        CtlCommand::Stop => Request::Stop,
    }
}

/// The default control socket, as a recorder with the default configuration in `rec` has it.
fn default_socket() -> Option<PathBuf> {
    let stats = StatsConfig {
        socket: StatsSocket::Default,
        control_socket: StatsSocket::Default,
        log_interval: None,
        metrics_addr: None,
        histograms: false,
        interval_log: None,
        interval_log_dir: None,
    };
    stats.control_socket_path(std::path::Path::new("rec"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(path) = args.socket.clone().or_else(default_socket) else {
        anyhow::bail!("no control socket: name one with --socket");
    };
    let req = request(&args.command);
    let reply = match client::ask(&path, &req) {
        Ok(v) => v,
        Err(e @ ClientError::Connect { .. }) => {
            eprintln!("framerec ctl: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("framerec ctl: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let ok = reply["ok"].as_bool() == Some(true);
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&reply)?);
    } else if ok {
        outln!("{}", readable(&req, &reply));
    }
    if !ok {
        eprintln!(
            "framerec ctl {}: refused by the recorder at {}: {}",
            req.name(),
            path.display(),
            reply["error"].as_str().unwrap_or("no reason given")
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// A reply as a person reads it.
fn readable(req: &Request, v: &Value) -> String {
    let note = v["note"]
        .as_str()
        .map_or(String::new(), |n| format!(" ({n})"));
    match req {
        Request::Status => status_table(v),
        Request::Split => format!(
            "split: closed segment {} ({}), now writing segment {} ({})",
            v["closed"]["id"],
            text(&v["closed"]["path"]),
            v["opened"]["id"],
            text(&v["opened"]["path"])
        ),
        Request::Pause | Request::Resume => format!("{}{note}", text(&v["state"])),
        Request::Mark { .. } => format!("marked at {} ns (host real time)", v["time_ns"]),
        Request::Stop => "stopping: the recorder drains its queue, finalizes and exits".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn status_table(v: &Value) -> String {
    let mut out = vec![
        format!("state              {}", text(&v["state"])),
        format!(
            "segment            {} ({})",
            text(&v["segment"]["id"]),
            text(&v["segment"]["path"])
        ),
        match v["durable_seq"].as_u64() {
            Some(seq) => format!("durable through    seq {seq}"),
            None => "durable through    nothing yet".into(),
        },
        format!(
            "queue              {} of {} frames (high water {})",
            v["queue"]["frames"], v["queue"]["max_frames"], v["queue"]["high_water"]
        ),
        format!(
            "frames             received {}, written {}, dropped {}, paused {}",
            v["received_frames"], v["written_frames"], v["dropped_frames"], v["paused_frames"]
        ),
    ];
    if let Some(d) = v["dropped"].as_object().filter(|d| !d.is_empty()) {
        let parts: Vec<String> = d.iter().map(|(k, n)| format!("{k} {n}")).collect();
        out.push(format!("dropped by reason  {}", parts.join(", ")));
    }
    out.push(format!("pauses             {}", v["pauses"]));
    out.push(format!(
        "{:<18} {:>10} {:>10} {:>10} {:>10}",
        "stream", "received", "written", "dropped", "paused"
    ));
    for st in v["streams"].as_array().into_iter().flatten() {
        out.push(format!(
            "{:<18} {:>10} {:>10} {:>10} {:>10}",
            text(&st["name"]),
            text(&st["received_frames"]),
            text(&st["written_frames"]),
            text(&st["dropped_frames"]),
            text(&st["paused_frames"])
        ));
    }
    out.join("\n")
}
