//! `framerec tune DIR [--seconds N] [--write CONFIG]`: measure the recorder's write settings on
//! a directory (see `framerec::tune`), print the table and the recommendation, and store it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context as _;
use framerec::tune::{Candidate, Outcome, TuneError, TuneReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to measure (it must exist; a temporary directory inside it is removed
    /// after, also on Ctrl-C or an error).
    dir: PathBuf,
    /// Seconds of measuring in all, shared by every candidate and round (4-3600).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(4..=3600))]
    seconds: u64,
    /// Store the recommended settings in this existing configuration file (comments kept).
    #[arg(long, value_name = "CONFIG")]
    write: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Checked before measuring, so a bad path costs no time.
    let config_text = match &args.write {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("--write {}: cannot read it", p.display()))?,
        ),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let bar = progress_bar();
    let mut progress = |done: usize, total: usize, c: &Candidate| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(c.label());
    };
    let result = framerec::tune::tune(
        &args.dir,
        Duration::from_secs(args.seconds),
        &stop,
        &mut progress,
    );
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(TuneError::Interrupted) => {
            eprintln!("framerec: {}", TuneError::Interrupted);
            return Ok(ExitCode::from(130));
        }
        Err(e) => return Err(e.into()),
    };
    print_table(&report)?;
    let best = report.best().context("nothing was measured")?;
    outln!(
        "recommended: [writer] io-mode = \"{}\", max-write-bytes = {}, writers = {}",
        best.io_mode.as_str(),
        best.max_write_bytes,
        best.writers
    );
    if let (Some(path), Some(text)) = (&args.write, config_text) {
        let file = path.display().to_string();
        let out = framerec::tune::write_settings(&text, &file, &best)
            .with_context(|| format!("--write {file}"))?;
        let tmp = path.with_extension("toml.tune-tmp");
        std::fs::write(&tmp, out)
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("--write {file}: cannot write it"))?;
        outln!("stored in {file}");
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar() -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} runs, eta {eta}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn print_table(report: &TuneReport) -> Result<(), super::StdoutError> {
    outln!(
        "{} round(s) of {:.2} s runs; MB/s median and spread ((max - min) / median); CPU s/GiB written, the synthetic source apart",
        report.rounds,
        report.run.as_secs_f64()
    );
    outln!(
        "{:<22} {:>10} {:>8} {:>10}",
        "candidate",
        "MB/s",
        "spread",
        "CPU s/GiB"
    );
    for row in &report.rows {
        let label = row.candidate.label();
        match (&row.outcome, row.summary()) {
            // One round has no spread to show.
            (_, Some((mb, _, cpu))) if report.rounds < 2 => {
                outln!("{label:<22} {mb:>10.0} {:>8} {cpu:>10.2}", "-")
            }
            (_, Some((mb, spread, cpu))) => outln!(
                "{label:<22} {mb:>10.0} {:>7.0}% {cpu:>10.2}",
                spread * 100.0
            ),
            (Outcome::NotApplicable(why), None) => {
                outln!("{label:<22} {:>10} ({why})", "n/a")
            }
            (Outcome::Measured(_), None) => outln!("{label:<22} {:>10}", "-"),
        }
    }
    Ok(())
}
