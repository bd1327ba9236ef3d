//! The process's allocator: mimalloc behind a thin wrapper whose `realloc` faults a large block in
//! before copying it, with two settings of vigil's own.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_long, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

/// mimalloc keeps freed memory for reuse where glibc returns large blocks to the OS at once;
/// with batches of many megabytes allocated and dropped per second, that saves page faults.
/// One addition: [`Allocator::realloc`].
#[global_allocator]
static GLOBAL: Allocator = Allocator;

/// mimalloc, with large blocks' memory faulted in for writing before a `realloc` copies them.
struct Allocator;

/// Whether [`Allocator::realloc`] faults blocks in: not when the process works on one thread
/// ([`single_threaded`]).
static POPULATE: AtomicBool = AtomicBool::new(true);

/// For a process whose work runs on one thread: a TLB flush then interrupts no other core,
/// and faulting in a block's never-written room before a copy costs more than reading the
/// zero page there (a 1.1 GB ingest on one thread: 1-4% slower with it; BENCHMARKS.md, goal 3).
pub(crate) fn single_threaded() {
    POPULATE.store(false, Ordering::Relaxed);
}

/// Blocks from this size on are faulted in before they are copied: a system call costs a
/// microsecond or two, about what copying 64 KiB does.
const POPULATE_BYTES: usize = 64 << 10;

// SAFETY: every call goes to mimalloc with the same arguments; `realloc` only adds an madvise
// that changes no byte of memory the process owns.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    /// A block that grows out of its room is copied whole, capacity never written included (a
    /// `Vec` does not tell the allocator its length): parquet's page compression, for one,
    /// takes a buffer as large as the page and then reserves the compression bound, so
    /// every page's buffer is copied before a byte is written to it. Reading memory never
    /// written maps the kernel's shared zero page there; whoever writes that memory later,
    /// once it is freed and handed out again, takes a copy-on-write fault that flushes the
    /// page from the TLB of every core the process runs on: an interrupt to each and a
    /// flushed TLB after it. Faulted in for writing first (`MADV_POPULATE_WRITE`, Linux
    /// 5.14; elsewhere the call fails and nothing changes), the memory gets pages of its
    /// own instead, with no flush now or later.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size()
            && layout.size() >= POPULATE_BYTES
            && POPULATE.load(Ordering::Relaxed)
        {
            // SAFETY: `ptr` is a live block of mimalloc's.
            let room = unsafe { mi_usable_size(ptr.cast()) };
            if new_size > room {
                populate(ptr, room);
            }
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Faults in the pages of `len` bytes at `ptr` for writing, changing none of their bytes.
#[cfg(target_os = "linux")]
fn populate(ptr: *mut u8, len: usize) {
    // SAFETY: sysconf only reads a value (glibc has it from the auxiliary vector).
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => return,
    };
    let start = ptr as usize & !(page - 1);
    let end = (ptr as usize + len).next_multiple_of(page);
    // SAFETY: the range covers a live block and at most the rest of its first and last pages,
    // which belong to the process's heap; populating writes no byte, so whatever else lies
    // in those pages is unchanged. An error (an old kernel) leaves things as they were.
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_POPULATE_WRITE,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn populate(_ptr: *mut u8, _len: usize) {}

/// mimalloc's option `purge_delay` (the same index in its v2 and v3 headers).
const MI_OPTION_PURGE_DELAY: c_int = 15;

unsafe extern "C" {
    /// Sets an option, whatever the environment said.
    fn mi_option_set(option: c_int, value: c_long);
    /// The bytes a block can hold: what a `realloc` of it copies.
    fn mi_usable_size(p: *const c_void) -> usize;
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
    fn populating_gives_memory_never_written_pages_of_its_own() {
        // SAFETY: a private anonymous mapping of our own, unmapped below; mincore and munmap
        // take it as mmap gave it.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let len = 16 * page;
            let map = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            let resident = || {
                let mut pages = vec![0u8; 16];
                assert_eq!(libc::mincore(map, len, pages.as_mut_ptr()), 0);
                pages.iter().map(|p| usize::from(p & 1)).sum::<usize>()
            };
            assert_eq!(resident(), 0, "nothing touched yet");
            // Five pages from the middle of the first: both partial pages at the ends count.
            super::populate(map.cast::<u8>().add(page / 2), 4 * page);
            assert_eq!(resident(), 5);
            assert!(
                std::slice::from_raw_parts(map.cast::<u8>(), len)
                    .iter()
                    .all(|&b| b == 0),
                "populating writes nothing"
            );
            libc::munmap(map, len);
        }
    }

    /// Each page's flags in `/proc/self/pagemap` from `at` for `pages` pages.
    #[cfg(target_os = "linux")]
    fn pagemap(at: usize, pages: usize, page: usize) -> Vec<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let mut map = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
        map.seek(SeekFrom::Start((at / page * 8) as u64)).unwrap();
        let mut bytes = vec![0u8; pages * 8];
        map.read_exact(&mut bytes).unwrap();
        bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_block_a_realloc_copies_has_pages_of_its_own_not_the_zero_page() {
        use std::alloc::{GlobalAlloc, Layout};
        // SAFETY: sysconf reads a value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let size = 16 << 20;
        let layout = Layout::from_size_align(size, page).unwrap();
        // SAFETY: a block of our own, written at its first byte only, grown and freed below.
        unsafe {
            let p = super::GLOBAL.alloc(layout);
            assert!(!p.is_null());
            p.write(1);
            let present = |f: &u64| f >> 63 & 1 == 1;
            let before = pagemap(p as usize, size / page, page);
            assert!(
                !before[1..].iter().any(present),
                "a fresh block, never touched past its first page"
            );
            let q = super::GLOBAL.realloc(p, layout, 2 * size);
            // The old block, freed but still mapped: without faulting in, the copy would
            // have read the zero page into it (present, but not mapped exclusively: bit 56).
            let after = pagemap(p as usize, size / page, page);
            let own = after
                .iter()
                .filter(|f| present(f) && *f >> 56 & 1 == 1)
                .count();
            assert_eq!(own, size / page);
            assert_eq!(q.read(), 1);
            super::GLOBAL.dealloc(q, Layout::from_size_align(2 * size, page).unwrap());
        }
    }

    #[test]
    fn large_blocks_keep_their_bytes_through_a_realloc() {
        // Grown past their room, shrunk, grown from a block never written beyond its start.
        let mut v: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
        v.reserve_exact(3 << 20);
        assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        v.truncate(100 << 10);
        v.shrink_to_fit();
        assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let mut w: Vec<u8> = Vec::with_capacity(1 << 20);
        w.extend_from_slice(b"head");
        w.reserve_exact(4 << 20);
        assert_eq!(w, b"head");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_runs_without_transparent_huge_pages() {
        // SAFETY: PR_GET_THP_DISABLE only reads the process's setting.
        let disabled = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        assert_eq!(disabled, 1, "set from .init_array before main");
    }
}
