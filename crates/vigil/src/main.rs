//! `vigil`: the command-line front of the pipeline, query and demo. Thin by design: every
//! command parses its flags, calls a library crate, and prints.

mod cli;
mod cmd;
mod logs;
mod output;

use std::process::ExitCode;

/// mimalloc keeps freed memory for reuse where glibc returns large blocks to the OS at once;
/// with batches of many megabytes allocated and dropped per second, that saves page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli.note_defaults(&matches);
    init_tracing(cli.verbose, cli.log_format == cli::LogFormat::Json);
    match cmd::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(verbose: u8, json: bool) {
    use tracing_subscriber::EnvFilter;
    // `-v` is about vigil; the libraries' own info logs (Delta snapshots, ...) need VIGIL_LOG.
    // JSON logs are for a collector, which expects a service's INFO lines.
    let default = match (verbose, json) {
        (0, false) => "warn",
        (0, true) | (1, _) => "warn,vigil=info",
        (2, _) => "info,vigil=debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs::set_json();
        fmt.event_format(logs::JsonLines).init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
