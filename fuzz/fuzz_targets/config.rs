//! Fuzzes the TOML configuration reader (`--config FILE`, `check-config`): arbitrary text must
//! give a configuration or errors, never a panic, and every error names the file and a place in
//! the text (1-based line and column within it).
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = framerec::config::parse(text, "fuzz.toml") {
        assert!(!errors.0.is_empty(), "an error with no message");
        let lines = text.split('\n').count();
        for e in &errors.0 {
            assert_eq!(e.file, "fuzz.toml");
            assert!(
                (1..=lines).contains(&e.line) && e.col >= 1,
                "{e} is outside the {lines}-line text"
            );
        }
    }
});
