//! The io_uring side of the writer: the buffer contract tokio-uring needs, and the probe that
//! tells whether io_uring can be used here. The only `unsafe` of the writer lives here.
#![allow(unsafe_code)]

use std::io;

use super::file::IoSpan;

// SAFETY: `IoSpan` owns its `FrameBuf`, whose bytes live in a boxed slice, or a `Bytes`, whose
// bytes live in its shared heap allocation: moving the span does not move them, nothing writes
// to them while tokio-uring owns the span (a `Bytes` is immutable), so the pointer stays valid
// until the operation completes. `start..end` lies inside the region
// (checked when the span is made), and every byte of it is initialized.
unsafe impl tokio_uring::buf::IoBuf for IoSpan {
    fn stable_ptr(&self) -> *const u8 {
        self.bytes().as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len()
    }

    fn bytes_total(&self) -> usize {
        self.len()
    }
}

/// A tokio-uring runtime, or the reason io_uring cannot be used (`EPERM` when disabled by
/// sysctl `kernel.io_uring_disabled` or seccomp, `ENOSYS` when the kernel lacks it).
pub fn runtime(entries: u32) -> io::Result<tokio_uring::Runtime> {
    tokio_uring::Runtime::new(tokio_uring::builder().entries(entries))
}
