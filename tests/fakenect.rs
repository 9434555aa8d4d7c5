//! A `framerec export --format fakenect` dump replays through Debian's real libfreenect
//! fakenect library: a small C client (tests/c/fakenect_probe.c) receives every frame through
//! the libfreenect API, and each frame's device timestamp and bytes match the recording.
//! Needs `cc`, libfreenect-dev and libfreenect-bin (tests/run installs them).

use std::process::Command;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn fakenect_export_replays_through_libfreenect() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = tmp.path().join("rec");
    let dump = tmp.path().join("dump");
    let (frames, seed) = (24u64, 21u64);
    let bin = env!("CARGO_BIN_EXE_framerec");
    let out = Command::new(bin)
        .args([
            "record",
            "--out",
            rec.to_str().unwrap(),
            "--fps",
            "30",
            "--seed",
            &seed.to_string(),
        ])
        .args(["--frames", &frames.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin)
        .args([
            "export",
            rec.to_str().unwrap(),
            "--format",
            "fakenect",
            "--out",
            dump.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let probe = tmp.path().join("probe");
    let cc = Command::new("cc")
        .args(["-O2", "-o", probe.to_str().unwrap()])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/c/fakenect_probe.c"
        ))
        .arg("-lfreenect")
        .output()
        .expect("cc runs");
    assert!(
        cc.status.success(),
        "building the probe needs libfreenect-dev: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let replay = Command::new("timeout")
        .args([
            "60",
            "fakenect",
            dump.to_str().unwrap(),
            probe.to_str().unwrap(),
            &frames.to_string(),
        ])
        .output()
        .expect("fakenect (libfreenect-bin) runs");
    assert!(
        replay.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&replay.stderr)
    );

    let lines: Vec<String> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len() as u64, frames, "every frame replays");
    for (seq, line) in lines.iter().enumerate() {
        let seq = seq as u64;
        let device_ns = seq * 1_000_000_000 / 30;
        let ticks = (device_ns * 60 / 1000) as u32;
        let bytes = framerec::source::synthetic::expected_frame(seed, seq, 640, 480);
        assert_eq!(
            line,
            &format!("{ticks} {:016x}", fnv1a(&bytes)),
            "frame {seq}"
        );
    }
}
