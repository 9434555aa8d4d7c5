//! Fuzzes what `framerec stats` reads back from a recorder's statistics socket: the reply bytes
//! (a JSON snapshot, or whatever a process listening there sends) must give a snapshot or an
//! error, never a panic, and a snapshot must render as the client and the log line do.
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = framerec::serve::parse_snapshot(data) {
        let _ = s.dropped_total();
        let _ = s.fault_state();
        let _ = s.log_line(None);
        let _ = s.log_line(Some(&s));
    }
});
