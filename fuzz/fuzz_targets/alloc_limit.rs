//! The allocation limit of every target, on stable Rust: libFuzzer's `-malloc_limit_mb` needs a
//! sanitizer's allocator hooks, which a build without `-Zsanitizer` lacks. Any single allocation
//! over `FRAMEREC_FUZZ_MALLOC_LIMIT_MB` (default 256) aborts, so libFuzzer saves the input as a
//! crash: a parser that trusts a length it read is found even when the memory is never touched.
//! Included by each target with `#[path = "alloc_limit.rs"] mod alloc_limit;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Limited;

/// The limit in bytes; 0 until first read from the environment.
static LIMIT: AtomicUsize = AtomicUsize::new(0);

fn limit() -> usize {
    match LIMIT.load(Ordering::Relaxed) {
        0 => {
            let mb = std::env::var("FRAMEREC_FUZZ_MALLOC_LIMIT_MB")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(256);
            let bytes = mb.saturating_mul(1 << 20).max(1);
            LIMIT.store(bytes, Ordering::Relaxed);
            bytes
        }
        n => n,
    }
}

fn check(size: usize) {
    // Reading the environment allocates (a little): only a large allocation asks for the limit.
    if size > (1 << 20) && size > limit() {
        // No allocation from here: a fixed message, then abort (libFuzzer saves the input).
        let msg = b"==framerec-fuzz== allocation over FRAMEREC_FUZZ_MALLOC_LIMIT_MB\n";
        // SAFETY: writing a static buffer to stderr.
        unsafe { libc_write(2, msg.as_ptr(), msg.len()) };
        std::process::abort();
    }
}

unsafe extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, len: usize) -> isize;
}

unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Limited = Limited;
