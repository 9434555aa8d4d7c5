//! The command line: one file per subcommand. Exit codes: 0 success, 1 the work found or hit a
//! problem (a failed recording, a damaged file), 2 a usage, configuration or setup error (an
//! invalid config, for `record` and `check-config` alike).
//! Standard output closed by its reader (`framerec info DIR | head`) ends the process quietly,
//! by SIGPIPE's default action, as coreutils do: subcommands print with [`outln!`], never
//! `println!` (which panics on a closed stdout).

/// `println!` that returns [`StdoutError`] through `?` instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*), true)?
    };
}

/// `print!` that returns [`StdoutError`] through `?` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*), false)?
    };
}

mod assets;
mod check_config;
mod ctl;
mod defaults;
mod export;
mod info;
mod preview;
mod record;
pub mod recover;
mod stats;
mod status;
mod tune;
mod verify;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// `framerec --version`: the package version and the git commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FRAMEREC_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "framerec",
    version = VERSION,
    about = "Record high-rate sensor frames to MCAP without losing one silently"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Record frames until a limit, SIGINT/SIGTERM, or the end of the source.
    Record(Box<record::Args>),
    /// Check recordings; exits 0 only if every one is intact.
    Verify(verify::Args),
    /// Describe a recording or segment: streams, frames, time range, drops, size.
    Info(info::Args),
    /// Repair crashed or damaged segments: keep every intact chunk, name what was lost.
    Recover(recover::Args),
    /// Statistics: live from a running recorder, or from a recording's interval logs.
    Stats(stats::Args),
    /// Steer a running recorder: status, split, pause, resume, stop.
    Ctl(ctl::Args),
    /// Write frames as 16-bit PGM or PNG files.
    Export(export::Args),
    /// Validate a configuration file without recording.
    CheckConfig(check_config::Args),
    /// Draw a contact sheet (PNG) of evenly spaced frames of an image stream.
    Preview(preview::Args),
    /// Measure buffered and direct I/O, write sizes and writer counts on a directory with the
    /// recorder itself; recommend (and with --write store) the fastest.
    Tune(tune::Args),
    /// Write the manual pages: framerec(1), one per subcommand, framerec.toml(5).
    Man(assets::ManArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(assets::CompletionsArgs),
}

/// Writing to standard output failed; when its reader went away (`BrokenPipe`), `main` ends the
/// process quietly instead of reporting it.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output")]
pub struct StdoutError(#[source] pub std::io::Error);

impl StdoutError {
    /// The reader closed the pipe: not an error to report, the output is simply not wanted.
    pub fn is_closed_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// Writes `args` (and a newline) to standard output.
pub fn write_stdout(args: std::fmt::Arguments, newline: bool) -> Result<(), StdoutError> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| {
            if newline {
                out.write_all(b"\n")
            } else {
                out.flush()
            }
        })
        .map_err(StdoutError)
}

/// The command line as the binary parses it, and as its manual pages and completions show it:
/// the derived definitions plus each `record` flag's default (see [`defaults`]).
pub fn command() -> clap::Command {
    defaults::annotate(Cli::command())
}

/// Parses the process's arguments (exits with clap's message and code 2 on bad usage).
pub fn parse() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(a) => record::run(*a),
        Command::Verify(a) => verify::run(a),
        Command::Info(a) => info::run(a),
        Command::Recover(a) => recover::run(a),
        Command::CheckConfig(a) => check_config::run(a),
        Command::Export(a) => export::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Ctl(a) => ctl::run(a),
        Command::Preview(a) => preview::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Man(a) => assets::man(a),
        Command::Completions(a) => assets::completions(a),
    }
}

/// Logs to stderr; `RUST_LOG` sets the filter (default `info`).
/// True when stderr is the journal stream systemd set up (`$JOURNAL_STREAM` is its
/// `device:inode`), so logs can go to the journal with their fields.
fn stderr_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (d, i) = v.split_once(':')?;
        Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// Logs to the journal (structured fields, levels as priorities) when stderr is the journal
/// stream, else plain text on stderr. `RUST_LOG` sets the levels either way (default info).
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let journald = journald.with_syslog_identifier("framerec".into());
                tracing_subscriber::registry()
                    .with(filter())
                    .with(journald)
                    .init();
                return;
            }
            Err(e) => eprintln!("framerec: cannot log to the journal ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// The segment files of a recording directory (or the one file given), in recording order.
pub struct Segments {
    /// The segments to read as finished data (all of them unless a recorder is at work).
    pub paths: Vec<std::path::PathBuf>,
    /// A directory whose first segment is segment 0: frame 0 must be accounted for.
    pub starts_at_zero: bool,
    /// The newest segments a running recorder is still writing (no summary yet): not damage.
    pub live: Vec<std::path::PathBuf>,
    /// The recorder writing the directory, if one is.
    pub writer: Option<framerec::store::lock::Holder>,
}

/// The directory whose lock covers `path` (the path itself, or a segment file's directory).
pub fn lock_dir_of(path: &std::path::Path) -> &std::path::Path {
    if path.is_dir() {
        path
    } else {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => std::path::Path::new("."),
        }
    }
}

/// Every segment of `path`, for a command that holds the directory's lock (`recover`).
pub fn all_segment_paths(path: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    Ok(listing(path)?.into_iter().map(|(_, p)| p).collect())
}

fn listing(path: &std::path::Path) -> anyhow::Result<Vec<(u64, std::path::PathBuf)>> {
    if path.is_dir() {
        let mut segments = framerec::sink::existing_segments(path)?;
        if segments.is_empty() {
            // Another writer's directory (a rosbag2 bag: metadata.yaml and name_0.mcap, ...):
            // its MCAP files in name order, none of them framerec's segment 0.
            segments = other_mcap_files(path)?
                .into_iter()
                .map(|p| (u64::MAX, p))
                .collect();
        }
        anyhow::ensure!(
            !segments.is_empty(),
            "{} holds no segments (*.mcap files)",
            path.display()
        );
        Ok(segments)
    } else {
        anyhow::ensure!(path.exists(), "{} does not exist", path.display());
        Ok(vec![(u64::MAX, path.to_path_buf())])
    }
}

/// The `*.mcap` files of `dir` (not in subdirectories), sorted by name.
fn other_mcap_files(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    use anyhow::Context as _;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "mcap") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A progress bar over the bytes of `files`, on stderr when it is a terminal and the work is
/// long (over 1 GB); hidden otherwise.
pub fn bytes_progress(files: &[std::path::PathBuf]) -> indicatif::ProgressBar {
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    if total < 1_000_000_000 || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes}, {bytes_per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// The segments of `path` for a reader: when a recorder is writing the directory, its newest
/// unfinished segments are set apart as `live`.
pub fn segment_paths(path: &std::path::Path) -> anyhow::Result<Segments> {
    let segments = listing(path)?;
    let starts_at_zero = path.is_dir() && segments[0].0 == 0;
    let dir = lock_dir_of(path);
    // Not knowing (an unreadable lock file) reads the directory as finished, as before locks.
    let writer = framerec::store::lock::writer_of(dir).unwrap_or_else(|e| {
        eprintln!(
            "framerec: cannot check whether {} is being written ({e}); reading it as finished",
            dir.display()
        );
        None
    });
    let mut paths: Vec<std::path::PathBuf> = segments.into_iter().map(|(_, p)| p).collect();
    let mut live = Vec::new();
    if writer.is_some() {
        while let Some(p) = paths.last() {
            // A segment finished while it was listed reads as finished: either is right.
            if framerec::repair::looks_finished(p).unwrap_or(false) {
                break;
            }
            live.push(paths.pop().expect("checked"));
        }
        live.reverse();
    }
    Ok(Segments {
        paths,
        starts_at_zero,
        live,
        writer,
    })
}
