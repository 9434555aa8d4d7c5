//! `framerec check-config [FILE]`: validate a configuration without recording.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration file (default: $CONFIGURATION_DIRECTORY/framerec.toml, else
    /// /etc/framerec/framerec.toml).
    file: Option<PathBuf>,
}

/// The configuration file used when none is named.
pub fn default_config_path() -> PathBuf {
    std::env::var_os("CONFIGURATION_DIRECTORY")
        .map(|d| PathBuf::from(d).join("framerec.toml"))
        .unwrap_or_else(|| PathBuf::from("/etc/framerec/framerec.toml"))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = match args.file {
        Some(p) => p,
        None => {
            let p = default_config_path();
            if !p.exists() {
                outln!(
                    "no configuration file at {}; the built-in defaults apply and are valid",
                    p.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            p
        }
    };
    match framerec::config::load(&path) {
        Ok(_) => {
            outln!("{}: ok", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            // As `record` does with the same file: a configuration error is a usage error.
            Ok(ExitCode::from(2))
        }
    }
}
