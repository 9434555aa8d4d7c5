//! Files as the sinks write them: [`SegFile`] (vectored positional writes of owned spans,
//! fsync, page-cache release) over io_uring or blocking `pwrite`, and the one `unsafe` impl
//! (`uring.rs`: tokio-uring's buffer contract for [`IoSpan`]).

mod file;
pub(crate) mod uring;

pub use file::*;
