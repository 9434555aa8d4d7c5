//! Files as the sinks write them: [`SegFile`] (vectored positional writes of owned spans,
//! fsync, page-cache release) over io_uring or blocking `pwrite`, and the one `unsafe` impl
//! (`uring.rs`: tokio-uring's buffer contract for [`IoSpan`]); buffered or direct, and what
//! `auto` means on a directory (`mode.rs`).

mod file;
pub mod mode;
pub(crate) mod uring;

pub use file::*;
pub use mode::IoMode;
