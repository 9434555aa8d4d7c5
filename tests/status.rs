//! `record`'s live status line: drawn on a terminal (a pseudo-terminal from util-linux's
//! `script`), never under `--quiet`, never when stderr is a pipe.

use std::process::Command;

/// Runs `framerec record ARGS` with a pseudo-terminal as its stdin, stdout and stderr; what
/// the terminal showed.
fn on_a_terminal(args: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_framerec");
    let out = Command::new("script")
        .args(["-qec", &format!("{bin} record {args}"), "/dev/null"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("util-linux's script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_status_line_is_drawn_on_a_terminal_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let shown = on_a_terminal(&format!(
        "--frames 40 --streams depth,color --width 64 --height 48 --out {}",
        dir("a")
    ));
    for part in [
        "  depth ",
        "  color ",
        " MB/s  queue ",
        "/256  dropped ",
        "  durable lag ",
        " GB",
    ] {
        assert!(shown.contains(part), "{part:?} in {shown:?}");
    }
    let quiet = on_a_terminal(&format!("--frames 20 --quiet --out {}", dir("b")));
    assert!(!quiet.contains("durable lag"), "{quiet:?}");
    assert!(
        quiet.contains("written"),
        "the summary still prints: {quiet:?}"
    );

    let piped = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--frames", "20", "--out", &dir("c")])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(piped.status.success());
    let text = String::from_utf8_lossy(&piped.stderr);
    assert!(!text.contains("durable lag"), "{text}");
}
