//! The `framerec` binary: parses the command line, calls into the library, maps the result to
//! an exit code.
#![deny(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::parse();
    cli::init_logging();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<cli::StdoutError>()
                .is_some_and(cli::StdoutError::is_closed_pipe)
            {
                // As coreutils do: end by SIGPIPE's default action, quietly. Only when that
                // fails (it aborts instead) would the line below run.
                let _ = signal_hook::low_level::emulate_default_handler(libc::SIGPIPE);
            }
            eprintln!("framerec: {e:#}");
            ExitCode::from(2)
        }
    }
}
