//! Fuzzes the pipe/unix framing (a stream of frames from another process, `--source pipe` and
//! `unix`). Arbitrary bytes must never panic; the framer must always make progress and never
//! claim more bytes than it was given.
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use framerec::source::pipe::{Parsed, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (width, height) = (4 + (data.first().copied().unwrap_or(0) % 8) as u32, 2);
    let mut rest = data;
    loop {
        match parse(rest, width, height) {
            Parsed::Frame(h) => {
                let used = h.header_len + h.payload_len;
                assert!(used <= rest.len() && h.payload_len == (width * height * 2) as usize);
                rest = &rest[used..];
            }
            Parsed::Skip(n, _) => {
                assert!(n >= 1 && n <= rest.len(), "skip {n} of {}", rest.len());
                rest = &rest[n..];
            }
            Parsed::NeedMore => break,
        }
    }
});
