//! `vigil`: the command-line front of the pipeline, query and demo. Thin by design: every
//! command parses its flags, calls a library crate, and prints.

mod alloc;
mod cli;
mod cmd;
mod logs;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli.note_defaults(&matches);
    init_tracing(cli.verbose, cli.log_format == cli::LogFormat::Json);
    let code = match cmd::dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    };
    alloc::before_exit();
    code
}

/// The error and its causes, each cause once: many errors already say their cause in their
/// own message (`cannot read x: No such file or directory`), and DataFusion's repeat the whole
/// chain at every level, so `{:#}` would print the same text two to four times.
fn message(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !out.contains(&cause) {
            out.push_str(": ");
            out.push_str(&cause);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn an_error_s_causes_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        // A cause already in the message is not said again; one that is not, is.
        let e = anyhow::Error::new(io).context("cannot read x: No such file");
        assert_eq!(message(&e), "cannot read x: No such file");
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = anyhow::Error::new(io).context("cannot read x");
        assert_eq!(message(&e), "cannot read x: No such file");
    }
}
