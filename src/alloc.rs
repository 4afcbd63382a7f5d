//! The runner's memory allocator: a binary's choice, so the library crates (and
//! the C ABI's hosts) keep whatever allocator their program uses.
//!
//! On Linux the runner uses jemalloc (the `jemalloc` feature, on by default),
//! configured for a batch process:
//!
//! - **Why not glibc's malloc.** A 10,000-job campaign makes about 500
//!   allocations per job, most under 64 bytes, from the runtime's workers and
//!   the journal, cache and end-of-run threads at once. glibc serves them from a
//!   few arenas behind locks: perf showed 18% of the run's CPU in malloc and
//!   free, and the lock hand-offs doubled its context switches (18,000 voluntary
//!   switches against 8,500 with jemalloc's per-thread caches). Measured side by
//!   side on 2 cores: 1.41 to 2.07 s and 2.3 to 3.2 s of CPU with glibc, 1.23 to
//!   1.38 s and 1.7 to 2.1 s with jemalloc.
//! - **One arena, no decay.** Image campaigns churn buffers of 1 to 4 MB.
//!   jemalloc's defaults (four arenas a core, dirty pages handed back over 10 s)
//!   raised the 200-job 1024 px campaign's peak from 250 to 330 MB and its page
//!   faults fourfold; one arena whose freed pages stay for reuse keeps both
//!   where glibc had them. A run's memory is its high-water mark either way.
//!   `_RJEM_MALLOC_CONF` in the environment still overrides these options.
//! - **Large zeroed buffers are cleared here.** jemalloc zeroes a recycled large
//!   block by handing its pages back to the kernel (`MADV_DONTNEED`), so every
//!   `vec![0; n]` of pixels faulted its pages in afresh: 270,000 faults and twice
//!   the system time on that campaign. Writing the zeros costs less.
//!
//! Without the feature, or elsewhere than Linux, the runner keeps the system's
//! allocator; on glibc it is tuned for the large buffers of image work
//! ([`tune`]).

#[cfg(all(feature = "jemalloc", target_os = "linux"))]
mod jemalloc {
    use std::alloc::{GlobalAlloc, Layout};

    use tikv_jemallocator::Jemalloc;

    /// Zeroed requests at least this large are served as plain ones and cleared
    /// with a write (see the module's doc); smaller ones come from slabs that
    /// jemalloc clears the same way itself.
    const CLEAR_FROM: usize = 64 << 10;

    /// jemalloc, with large zeroed requests cleared in place.
    pub struct Allocator;

    // SAFETY: every call is forwarded to jemalloc with the caller's layout; the
    // one change, clearing a fresh block with `write_bytes` instead of asking
    // for a zeroed one, writes only within the block just allocated.
    unsafe impl GlobalAlloc for Allocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded under the caller's contract.
            unsafe { Jemalloc.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.size() < CLEAR_FROM {
                // SAFETY: forwarded under the caller's contract.
                return unsafe { Jemalloc.alloc_zeroed(layout) };
            }
            // SAFETY: forwarded under the caller's contract; a non-null block
            // is `layout.size()` writable bytes.
            unsafe {
                let block = Jemalloc.alloc(layout);
                if !block.is_null() {
                    std::ptr::write_bytes(block, 0, layout.size());
                }
                block
            }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded under the caller's contract.
            unsafe { Jemalloc.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: forwarded under the caller's contract.
            unsafe { Jemalloc.realloc(ptr, layout, new_size) }
        }
    }

    /// The options jemalloc reads before `main` (a NUL-terminated C string
    /// behind the symbol it looks up; its environment variable comes after).
    #[used]
    #[export_name = "_rjem_malloc_conf"]
    static OPTIONS: &[u8; 46] = b"narenas:1,dirty_decay_ms:-1,muzzy_decay_ms:-1\0";

    #[cfg(test)]
    mod tests {
        use std::ffi::{c_void, CStr};

        fn option<T: Default>(name: &CStr) -> T {
            let mut value = T::default();
            let mut len = std::mem::size_of::<T>();
            // SAFETY: `value` is a `T` of `len` bytes, the size jemalloc
            // checks against the option's type before it writes.
            let rc = unsafe {
                tikv_jemalloc_sys::mallctl(
                    name.as_ptr(),
                    (&raw mut value).cast::<c_void>(),
                    &mut len,
                    std::ptr::null_mut(),
                    0,
                )
            };
            assert_eq!(rc, 0, "mallctl({name:?})");
            value
        }

        #[test]
        fn the_runner_allocates_from_one_jemalloc_arena_that_keeps_its_freed_pages() {
            if std::env::var_os("_RJEM_MALLOC_CONF").is_some() {
                return; // the user's options win, by design
            }
            assert_eq!(option::<u32>(c"opt.narenas"), 1);
            assert_eq!(option::<isize>(c"opt.dirty_decay_ms"), -1);
            assert_eq!(option::<isize>(c"opt.muzzy_decay_ms"), -1);
        }

        #[test]
        fn a_large_zeroed_buffer_is_zero_even_where_a_dirty_one_was_freed() {
            let size = 4 << 20;
            let mut dirty = vec![0xA5u8; size];
            dirty[size - 1] = 1;
            drop(dirty);
            let clean = vec![0u8; size];
            assert!(clean.iter().all(|&b| b == 0));
        }
    }
}

#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[global_allocator]
static ALLOCATOR: jemalloc::Allocator = jemalloc::Allocator;

/// Keep the large buffers of image work in glibc's pools (used only where the
/// runner is built without jemalloc).
///
/// Every job of a 1024 px campaign allocates a few buffers of 1 to 4 MB (the
/// response, the decoded PNG, the pixels, each rendition). glibc's defaults hand
/// buffers that size back to the kernel when freed and fault fresh zeroed pages
/// in for the next job, and spread the blocking pool's threads over up to eight
/// arenas a core, each keeping its own free memory. Measured on the 200-job
/// renditions campaign (2 cores): serving those buffers from the heap, trimming
/// it only past 32 MiB free and one arena a core cut the system time from 0.5-0.6
/// to 0.31-0.36 s and the peak RSS from 280 to 220 MB.
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc")))]
pub fn tune() {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only sets glibc's malloc parameters, before any other
    // thread exists; a refused value (it returns 0) leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_ARENA_MAX, arenas);
    }
}

/// Nothing to tune: jemalloc's options are compiled in, or the platform's
/// allocator is not glibc's.
#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "jemalloc"))))]
pub fn tune() {}
