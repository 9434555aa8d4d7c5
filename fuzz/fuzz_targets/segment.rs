//! Fuzzes everything that reads segment bytes from disk: the scanner (framerec's files and any
//! other writer's: zstd and lz4 chunks, schema and channel records inside chunks, messages and
//! attachments outside chunks), verify, and recover (framerec's rebuild, and the copy of a
//! foreign file's intact records; the seeds `foreign-*.mcap` start it on both). Arbitrary bytes
//! must never panic, and whatever recover produces is a finalized MCAP file with no structural
//! damage (its messages are the input's, so their content may still be bad).
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = framerec::segment::scan_head(data);
    let report = framerec::segment::verify_segment("fuzz", data);
    let _ = framerec::segment::verify_recording(vec![report], true);
    if let Ok(rec) = framerec::segment::recover_segment(data, &[(0, 3)]) {
        let again = framerec::segment::parse_segment(&rec.bytes);
        assert!(
            again.finalized && again.damage.is_empty(),
            "recover produced a damaged segment: {:?}",
            again.damage
        );
    }
});
