//! Fuzzes the HdrHistogram interval-log reader behind `framerec stats DIR`: the lines of a
//! `.hlog` and the histograms they carry. First byte even: the rest is the log's text. Odd: the
//! rest is one histogram's serialized bytes (what the base64 field decodes to), wrapped into an
//! interval line, so crafted histogram headers and counts reach the deserializer directly.
//! Arbitrary bytes must never panic or allocate beyond the fuzzer's limit; the report over the
//! log (merged percentiles, per-interval counter deltas) is computed as `stats DIR` does.
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use std::path::Path;

use framerec::hlog::{Report, parse_log};
use libfuzzer_sys::fuzz_target;

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (c.get(1).copied().unwrap_or(0) as u32) << 8
            | c.get(2).copied().unwrap_or(0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        format!(
            "#[StartTime: 1795467600.000 (seconds since epoch)]\n\
             #[BaseTime: 1795467600.000 (seconds since epoch)]\n\
             Tag=write,0.000,1.000,1.0,{}\n\
             #framerec-counters t=1.000 received=3 written=2 dropped.lost=1\n",
            base64(rest)
        )
    };
    let mut merged = framerec::hlog::ByTag::new();
    let (runs, _damage) = parse_log(&text, Path::new("fuzz.hlog"), &mut merged);
    assert!(merged.len() <= framerec::hlog::MAX_TAGS);
    for run in &runs {
        for iv in &run.intervals {
            let _ = iv.dropped_total();
            let _ = iv.histograms.len();
        }
    }
    // The whole report, as `stats DIR` reads it from a file.
    let dir = Path::new("/dev/shm").join(format!("framerec-fuzz-hlog-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("fuzz.hlog");
    std::fs::write(&path, text.as_bytes()).unwrap();
    let _ = Report::read(&path);
    let _ = std::fs::remove_dir_all(&dir);
});
