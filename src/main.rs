//! The `framerec` binary: parses the command line, calls into the library, maps the result to
//! an exit code.
#![deny(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("framerec: {e:#}");
            ExitCode::from(2)
        }
    }
}
