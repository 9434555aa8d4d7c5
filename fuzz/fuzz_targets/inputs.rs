//! Fuzzes the other readers of outside input: the pipe/unix framing (a stream of frames from
//! another process), the HdrHistogram interval-log reader and the fakenect layout's DROPS.txt. Arbitrary bytes must never
//! panic; the framer must always make progress and never claim more bytes than it was given.
#![no_main]

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
    let text = String::from_utf8_lossy(data);
    let mut merged = framerec::hlog::ByTag::new();
    let _ = framerec::hlog::parse_log(&text, std::path::Path::new("fuzz.hlog"), &mut merged);
    assert!(merged.len() <= framerec::hlog::MAX_TAGS);
    if let Ok(drops) = framerec::writer::files::read_drops(data) {
        assert!(drops.iter().all(|(first, last, _)| first <= last));
    }
});
