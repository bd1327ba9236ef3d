//! `vigil`: the command-line front of the pipeline, query and demo. Thin by design: every
//! command parses its flags, calls a library crate, and prints.

mod cli;
mod cmd;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed memory for reuse where glibc returns large blocks to the OS at once;
/// with batches of many megabytes allocated and dropped per second, that saves page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    match cmd::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    // `-v` is about vigil; the libraries' own info logs (Delta snapshots, ...) need VIGIL_LOG.
    let default = match verbose {
        0 => "warn",
        1 => "warn,vigil=info",
        2 => "info,vigil=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
