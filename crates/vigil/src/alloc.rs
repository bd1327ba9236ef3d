//! The process's allocator: mimalloc, with two settings of vigil's own.

use std::ffi::{c_int, c_long};

/// mimalloc keeps freed memory for reuse where glibc returns large blocks to the OS at once;
/// with batches of many megabytes allocated and dropped per second, that saves page faults.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option `purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: c_int = 15;

unsafe extern "C" {
    /// Sets an option, whatever the environment said.
    fn mi_option_set(option: c_int, value: c_long);
}

/// Called as `main` returns: at exit mimalloc gives every page it holds back to the system,
/// one `madvise` per range, on the exiting thread after all the work (17 ms of a two-thread
/// ingest's 40 ms serial tail under perf, 4-6 ms of its wall time; BENCHMARKS.md, goal 3).
/// The system takes them back with the process anyway.
pub(crate) fn before_exit() {
    // SAFETY: mimalloc's C API; setting an option takes plain integers and needs no
    // allocation. Purging off (-1) only keeps memory the process is about to return.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_runs_without_transparent_huge_pages() {
        // SAFETY: PR_GET_THP_DISABLE only reads the process's setting.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1, "set from .init_array before main");
    }
}
