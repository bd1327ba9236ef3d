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

/// mimalloc's option `purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

unsafe extern "C" {
    /// Sets an option, whatever the environment said.
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// No transparent huge pages for this process. mimalloc asks for them on the arenas it
/// commits up front (its default on Linux), and on a host that grants them (`madvise` or
/// `always`) memory is resident in 2 MiB steps: peak RSS of a 1.1 GB ingest on two threads
/// rose by 50-80 MB (415-439 MB against 351-367 MB) for no gain in speed, and short runs
/// varied twofold with the kernel compacting memory to find huge pages (BENCHMARKS.md, goal
/// 6). Arenas stay committed up front: committing them piece by piece instead (an `mprotect`
/// each, under the address space's write lock) made the decoders' page faults wait on each
/// other, 2-3% of a two-thread ingest.
/// Run from `.init_array`, before the first allocation creates an arena.
#[cfg(target_os = "linux")]
extern "C" fn tune_allocator() {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and changes only whether
    // this process's future page faults may be served by huge pages. A kernel without it
    // returns an error, which leaves things as they were.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static TUNE_ALLOCATOR: extern "C" fn() = tune_allocator;

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
    // At exit mimalloc gives every page it holds back to the system, one `madvise` per range,
    // on the exiting thread after all the work: a tenth of a two-thread ingest's last 40 ms
    // (BENCHMARKS.md, goal 3). The system takes them back with the process anyway.
    // SAFETY: mimalloc's C API; setting an option takes plain integers and needs no
    // allocation. Purging off (-1) only keeps memory the process is about to return.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_runs_without_transparent_huge_pages() {
        // SAFETY: PR_GET_THP_DISABLE only reads the process's setting.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1, "set from .init_array before main");
    }

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
