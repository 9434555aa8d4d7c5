//! The ros2 profile (`--profile ros2`) as ROS 2 users meet it: a recording with drops, three
//! streams and rotation passes `mcap doctor --strict-message-order`; the Python `rosbags`
//! package (`AnyReader`) reads the directory through its metadata.yaml and a single segment,
//! every image byte-exact against the synthetic source and every drop notice; `rosbags-convert`
//! converts it to a ROS 1 bag; framerec's own verify, info and export read it; `recover`
//! rebuilds metadata.yaml; O_DIRECT is refused with a reason.

mod common;

use std::path::Path;

use common::{framerec, mcap_doctor, python, segments, text};

/// `framerec record --profile ros2 ARGS --json` with a 50 ms write delay (frames are dropped),
/// three streams at 160x120, 1 MiB segments. Returns the JSON summary.
fn record(dir: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--out", dir.to_str().unwrap(), "--json"])
        .args(["--stats-socket", "off", "--profile", "ros2", "--seed", "5"])
        .args(["--streams", "depth,color,accel", "--fps", "0"])
        .args([
            "--width",
            "160",
            "--height",
            "120",
            "--segment-bytes",
            "1048576",
        ])
        .args(["--queue-bytes", "2000000", "--overflow", "drop-oldest"])
        .args(["--duration", "2s"])
        .env("RUST_LOG", "warn")
        .env("FRAMEREC_TEST_WRITE_DELAY_MS", "50")
        .output()
        .expect("framerec runs");
    assert!(out.status.success(), "record: {}", text(&out));
    serde_json::from_slice(&out.stdout).expect("a JSON summary")
}

/// (written frames, dropped frames) of stream `name` in a run's JSON summary.
fn stream_totals(report: &serde_json::Value, name: &str) -> (u64, u64) {
    let s = report["totals"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap();
    let dropped = s["dropped"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    (s["written_frames"].as_u64().unwrap(), dropped)
}

/// What `tests/python/read_rosbags.py` read of `path` (it checks every image and reading).
fn read_rosbags(path: &Path) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_rosbags.py");
    let out = std::process::Command::new(python())
        .args([script, path.to_str().unwrap(), "5", "160", "120"])
        .output()
        .expect("the tests' python runs");
    assert!(
        out.status.success(),
        "rosbags reader on {}: {}",
        path.display(),
        text(&out)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // A ROS 2 message has no sequence number: an image matches one of its candidates'.
    for image in read["crcs"].as_array().unwrap() {
        let crc = image[2].as_u64().unwrap();
        let seqs = image[1].as_array().unwrap();
        assert!(
            seqs.iter().any(|s| u64::from(common::synthetic_crc(
                image[0].as_str().unwrap(),
                5,
                s.as_u64().unwrap(),
                160,
                120
            )) == crc),
            "{} image at sequences {seqs:?}: bytes differ",
            image[0]
        );
    }
    read
}

fn topic(read: &serde_json::Value, name: &str) -> u64 {
    read["topics"][name].as_u64().unwrap_or(0)
}

#[test]
fn rosbags_reads_every_image_byte_exact_and_every_drop_notice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let report = record(&dir);
    let (depth, depth_dropped) = stream_totals(&report, "depth");
    let (color, _) = stream_totals(&report, "color");
    let (accel, _) = stream_totals(&report, "accel");
    assert!(depth_dropped > 0, "the slow disk made no drops: {report}");

    let all = read_rosbags(&dir);
    assert_eq!(topic(&all, "/camera/depth"), depth, "{all}");
    assert_eq!(topic(&all, "/camera/color"), color);
    assert_eq!(topic(&all, "/camera/accel"), accel);
    assert_eq!(all["images"].as_u64().unwrap(), depth + color);
    let drops = all["drops"].as_array().unwrap();
    assert_eq!(drops.len() as u64, all["mcap_notices"].as_u64().unwrap());
    for name in ["depth", "color", "accel"] {
        let named: u64 = drops
            .iter()
            .filter(|d| d["stream"] == format!("/camera/{name}"))
            .map(|d| d["count"].as_u64().unwrap())
            .sum();
        assert_eq!(
            named,
            stream_totals(&report, name).1,
            "{name}: frames the notices name"
        );
    }

    // One segment alone: the file has what rosbags needs without metadata.yaml.
    let files = segments(&dir);
    let one = files
        .iter()
        .map(|f| (f, read_rosbags(f)))
        .find(|(_, r)| r["images"].as_u64().unwrap() > 0)
        .expect("a segment with images");
    assert!(topic(&one.1, "/camera/depth") + topic(&one.1, "/camera/color") > 0);
}

#[test]
fn doctor_rosbags_convert_and_framerec_tools_accept_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let report = record(&dir);
    let files = segments(&dir);
    assert!(files.len() >= 2, "{} segments: no rotation", files.len());
    for file in &files {
        let out = mcap_doctor(file);
        let printed = text(&out);
        let complaints = printed
            .lines()
            .filter(|l| l.contains("Warning") || l.contains("Error"))
            .count();
        assert!(
            out.status.success() && complaints == 0,
            "mcap doctor --strict-message-order {}:\n{printed}",
            file.display()
        );
    }

    let bag = tmp.path().join("out.bag");
    // The console script beside the interpreter (a venv's bin), else the same CLI as a module.
    let script = python().with_file_name("rosbags-convert");
    let mut convert = if script.exists() {
        std::process::Command::new(&script)
    } else {
        let mut c = std::process::Command::new(python());
        c.args(["-m", "rosbags.convert"]);
        c
    };
    let out = convert
        .args([
            "--src",
            dir.to_str().unwrap(),
            "--dst",
            bag.to_str().unwrap(),
        ])
        .output()
        .expect("rosbags-convert runs");
    assert!(out.status.success(), "rosbags-convert: {}", text(&out));
    assert!(std::fs::metadata(&bag).unwrap().len() > 0);

    let verify = framerec(&["verify", dir.to_str().unwrap()]);
    assert!(verify.status.success(), "verify: {}", text(&verify));
    assert!(text(&verify).contains("OK:"), "{}", text(&verify));
    let info = framerec(&["info", dir.to_str().unwrap()]);
    assert!(info.status.success(), "info: {}", text(&info));
    assert!(
        text(&info).contains("stream accel: accelerometer"),
        "{}",
        text(&info)
    );
    let png = tmp.path().join("png");
    let export = framerec(&[
        "export",
        "--format",
        "png",
        "--out",
        png.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "export: {}", text(&export));
    let pngs = std::fs::read_dir(&png).unwrap().count() as u64;
    assert_eq!(
        pngs,
        stream_totals(&report, "depth").0,
        "a PNG per depth frame"
    );
    // The accelerometer as CSV: acceleration from the Imu, tilt columns empty (not kept).
    let csv_dir = tmp.path().join("csv");
    let export = framerec(&[
        "export",
        "--stream",
        "accel",
        "--format",
        "csv",
        "--out",
        csv_dir.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "export csv: {}", text(&export));
    let csv = std::fs::read_dir(&csv_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(
        rows.len() as u64,
        stream_totals(&report, "accel").0,
        "{csv}"
    );
    for row in &rows {
        let cols: Vec<&str> = row.split(',').collect();
        assert_eq!(cols.len(), 8, "{row}");
        let z: f64 = cols[5].parse().unwrap();
        assert!(z.is_finite(), "{row}");
        assert_eq!((cols[6], cols[7]), ("", ""), "{row}");
    }

    // recover rebuilds the directory's metadata.yaml from the segments.
    let yaml = dir.join("metadata.yaml");
    let before = std::fs::read_to_string(&yaml).unwrap();
    std::fs::remove_file(&yaml).unwrap();
    let recover = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(recover.status.success(), "recover: {}", text(&recover));
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), before);
}

#[test]
fn ros2_with_direct_io_is_refused_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let out = framerec(&[
        "record",
        "--out",
        dir.to_str().unwrap(),
        "--profile",
        "ros2",
        "--direct-io",
        "--frames",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("CDR"), "{}", text(&out));
    assert!(!dir.join("0000000000000000.mcap").exists());

    let err = framerec::config::parse(
        "[output]\nprofile = \"ros2\"\n[writer]\ndirect-io = true\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("t.toml:2") && err.contains("O_DIRECT"),
        "{err}"
    );
}

#[test]
fn metadata_yaml_names_only_the_segments_retention_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let cfg = tmp.path().join("framerec.toml");
    std::fs::write(
        &cfg,
        format!(
            "[output]\ndir = {:?}\nprofile = \"ros2\"\nmax-total-bytes = 3145728\n\
             [source]\nwidth = 160\nheight = 120\nfps = 0\nseed = 5\n\
             [segment]\nmax-bytes = 1048576\n",
            dir.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = framerec(&[
        "record",
        "--config",
        cfg.to_str().unwrap(),
        "--stats-socket",
        "off",
        "--frames",
        "600",
    ]);
    assert!(out.status.success(), "record: {}", text(&out));
    assert!(
        !dir.join("0000000000000000.mcap").exists(),
        "retention deleted nothing: {:?}",
        segments(&dir)
    );
    let yaml = std::fs::read_to_string(dir.join("metadata.yaml")).unwrap();
    let named: Vec<&str> = yaml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- \""))
        .map(|l| l.trim_end_matches('"'))
        .collect();
    let kept: Vec<String> = segments(&dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(named, kept, "{yaml}");
    let read = read_rosbags(&dir);
    assert!(read["images"].as_u64().unwrap() > 0, "{read}");
}

/// kill -9 of a ros2 recorder mid-run, then `framerec recover`: every segment passes doctor
/// again and rosbags reads the directory (recover rebuilt the cut segment in the ros2 profile
/// and metadata.yaml with it).
#[test]
fn a_killed_and_recovered_ros2_recording_reads_in_rosbags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let args = [
        "record",
        "--out",
        dir.to_str().unwrap(),
        "--stats-socket",
        "off",
        "--profile",
        "ros2",
        "--seed",
        "5",
        "--fps",
        "200",
        "--width",
        "160",
        "--height",
        "120",
        "--segment-bytes",
        "1048576",
    ];
    let mut child = common::spawn_framerec(
        &[&args[..]],
        "warn",
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while segments(&dir).len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let r = framerec(&["recover", dir.to_str().unwrap()]);
    assert!(r.status.success(), "recover: {}", text(&r));
    let files = segments(&dir);
    assert!(files.len() >= 2);
    for file in &files {
        let out = mcap_doctor(file);
        assert!(
            out.status.success() && !text(&out).contains("Warning"),
            "{}: {}",
            file.display(),
            text(&out)
        );
    }
    let read = read_rosbags(&dir);
    assert!(read["images"].as_u64().unwrap() > 0, "{read}");
    let yaml = std::fs::read_to_string(dir.join("metadata.yaml")).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(yaml.contains(name), "{name} not in metadata.yaml:\n{yaml}");
    }
}

/// A directory is one recording and one bag: continuing it in the other profile is refused.
#[test]
fn continuing_a_recording_in_the_other_profile_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let d = dir.to_str().unwrap();
    let run = |profile: &str| {
        framerec(&[
            "record",
            "--out",
            d,
            "--stats-socket",
            "off",
            "--frames",
            "3",
            "--profile",
            profile,
        ])
    };
    assert!(run("ros2").status.success());
    let other = run("foxglove");
    assert!(!other.status.success());
    assert!(
        text(&other).contains("in the ros2 profile"),
        "{}",
        text(&other)
    );
    assert!(
        run("ros2").status.success(),
        "the same profile continues it"
    );
    assert_eq!(segments(&dir).len(), 2);
}

/// A frame_id longer than the recorder's fixed scratch for the fields before a payload is a
/// configuration error in either profile (it panicked the writer thread).
#[test]
fn a_frame_id_too_long_is_refused_not_a_panic() {
    for profile in ["foxglove", "ros2"] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("framerec.toml");
        let dir = tmp.path().join("rec");
        std::fs::write(
            &cfg,
            format!(
                "[output]\ndir = {:?}\nprofile = \"{profile}\"\n[source]\nstreams = [\"depth\", \"accel\"]\nframe-id = \"{}\"\n",
                dir.to_str().unwrap(),
                "x".repeat(600)
            ),
        )
        .unwrap();
        let out = framerec(&[
            "record",
            "--config",
            cfg.to_str().unwrap(),
            "--stats-socket",
            "off",
            "--frames",
            "2",
        ]);
        assert!(!out.status.success(), "{profile}");
        let said = text(&out);
        assert!(
            said.contains("at most 256") && !said.contains("panicked"),
            "{profile}: {said}"
        );
    }
}
