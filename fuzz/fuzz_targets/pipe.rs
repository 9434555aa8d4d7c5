//! Fuzzes the pipe/unix framing (a stream of frames from another process, `--source pipe` and
//! `unix`), versions 1 and 2. Arbitrary bytes must never panic; the framer must always make
//! progress, never claim more bytes than it was given, and only take a frame of a configured
//! stream's shape. The first byte chooses the stream table: the depth width (4-11), and whether
//! colour (id 1, 2x2 rgb8) and accel (id 2) streams are configured too.
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use framerec::source::pipe::{
    FORMAT_ACCEL, FORMAT_DEPTH16, FORMAT_RGB8, Parsed, Shape, parse, stream_of,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let choice = data.first().copied().unwrap_or(0);
    let width = 4 + (choice % 8) as u32;
    let mut shapes = vec![Shape {
        id: 0,
        width,
        height: 2,
        format: FORMAT_DEPTH16,
        payload_len: (width * 2 * 2) as usize,
    }];
    if choice & 0x10 != 0 {
        shapes.push(Shape {
            id: 1,
            width: 2,
            height: 2,
            format: FORMAT_RGB8,
            payload_len: 12,
        });
    }
    if choice & 0x20 != 0 {
        shapes.push(Shape {
            id: 2,
            width: 1,
            height: 1,
            format: FORMAT_ACCEL,
            payload_len: 12,
        });
    }
    let mut rest = data;
    loop {
        let _ = stream_of(rest, &shapes);
        match parse(rest, &shapes) {
            Parsed::Frame(h, s) => {
                let shape = shapes[s.index()];
                let used = h.header_len + h.payload_len;
                assert!(used <= rest.len() && h.payload_len == shape.payload_len);
                assert_eq!((h.width, h.height, h.format), (shape.width, shape.height, shape.format));
                rest = &rest[used..];
            }
            Parsed::Skip(n, _, s) => {
                assert!(n >= 1 && n <= rest.len(), "skip {n} of {}", rest.len());
                assert!(s.is_none_or(|s| s.index() < shapes.len()));
                rest = &rest[n..];
            }
            Parsed::NeedMore => break,
        }
    }
});
