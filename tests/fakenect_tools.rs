//! `info`, `export` and `recover` on fakenect-layout recordings (`--layout fakenect`: a file
//! per frame, `INDEX.txt`, `DROPS.txt`): each reads a real recording of three streams; recover
//! repairs crafted crash damage (a cut last line, a missing or short file, orphans, temporary
//! files) so that `verify` passes and Debian's fakenect replays it, and never panics on
//! crafted input.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{framerec, text};
use framerec::source::synthetic::{expected_accel, expected_color_frame, expected_frame};

const SEED: u64 = 5;
const WIDTH: u32 = 64;
const HEIGHT: u32 = 48;
const FRAMES: u64 = 30;
const DEPTH_HEADER: &[u8] = b"P5 64 48 65535\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Records 30 unpaced frames of depth, colour and accelerometer into `dir`, in `layout`.
fn record3(dir: &Path, layout: &str) {
    let o = framerec(&[
        "record",
        "--layout",
        layout,
        "--streams",
        "depth,color,accel",
        "--width",
        &WIDTH.to_string(),
        "--height",
        &HEIGHT.to_string(),
        "--frames",
        &FRAMES.to_string(),
        "--fps",
        "0",
        "--seed",
        &SEED.to_string(),
        "--stats-socket",
        "off",
        "--out",
        s(dir),
    ]);
    assert!(o.status.success(), "record: {}", text(&o));
}

fn index_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("INDEX.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `n`th (0-based) line of `INDEX.txt` naming a frame of `prefix` (`d`, `r`, `a`).
fn nth_of(dir: &Path, prefix: &str, n: usize) -> String {
    index_lines(dir)
        .into_iter()
        .filter(|l| l.starts_with(&format!("{prefix}-")))
        .nth(n)
        .unwrap()
}

/// Lines of `INDEX.txt` naming frames of `prefix` (`d`, `r`, `a`).
fn count(dir: &Path, prefix: &str) -> usize {
    index_lines(dir)
        .iter()
        .filter(|l| l.starts_with(&format!("{prefix}-")))
        .count()
}

/// Every file of `dir` (name to bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(n, _)| !n.starts_with('.'))
        .collect()
}

/// Runs framerec, which must succeed; its stdout and stderr.
fn ok(args: &[&str]) -> String {
    let o = framerec(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    text(&o)
}

fn export(dir: &Path, out: &Path, extra: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut args = vec!["export", s(dir), "--out", s(out)];
    args.extend_from_slice(extra);
    ok(&args);
    files(out)
}

#[test]
fn info_describes_each_stream_of_a_fakenect_layout_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    record3(&dir, "fakenect");
    // Drops the recorder did not have: DROPS.txt is read for them.
    std::fs::write(
        dir.join("DROPS.txt"),
        "30 32 queue_full depth\n40 40 disk_full depth\n",
    )
    .unwrap();
    let info = ok(&["info", s(&dir)]);
    let (color, accel) = (count(&dir, "r"), count(&dir, "a"));
    let depth_bytes = FRAMES * (DEPTH_HEADER.len() as u64 + 64 * 48 * 2);
    for want in [
        "fakenect layout".to_string(),
        "stream depth: 16UC1 64x48".into(),
        format!("  30 frames (seq 0..=29), {depth_bytes} bytes, time "),
        "dropped: disk_full 1, queue_full 3".into(),
        "stream color: rgb8 64x48".into(),
        format!("  {color} frames (seq 0..={}), ", color - 1),
        "stream accel: accelerometer".into(),
        format!(
            "  {accel} frames (seq 0..={}), {} bytes",
            accel - 1,
            accel * 12
        ),
        format!("total: {} frames", 30 + color + accel),
        " 4 dropped, ".into(),
        "intact".into(),
    ] {
        assert!(info.contains(&want), "{want:?} in:\n{info}");
    }
    // A frame file gone is pointed out.
    let gone = nth_of(&dir, "r", 3);
    std::fs::remove_file(dir.join(&gone)).unwrap();
    let info = ok(&["info", s(&dir)]);
    assert!(
        info.contains(&format!("{gone}: missing")) && info.contains("has problems"),
        "{info}"
    );
}

#[test]
fn export_of_a_fakenect_layout_recording_holds_the_frames_of_the_same_recording_in_mcap() {
    let tmp = tempfile::tempdir().unwrap();
    let (dump, mcap) = (tmp.path().join("dump"), tmp.path().join("mcap"));
    record3(&dump, "fakenect");
    record3(&mcap, "mcap");
    let out = |name: &str| tmp.path().join(name);

    // Depth as PGM: the same files as the MCAP recording's export, and the synthetic frames.
    let a = export(&dump, &out("a"), &["--format", "pgm"]);
    let b = export(&mcap, &out("b"), &["--format", "pgm"]);
    assert_eq!(a.len() as u64, FRAMES);
    assert!(a == b, "depth exports differ");
    for seq in 0..FRAMES {
        let want =
            framerec::export::pgm16(WIDTH, HEIGHT, &expected_frame(SEED, seq, WIDTH, HEIGHT));
        assert_eq!(a[&format!("{seq:010}.pgm")], want, "depth frame {seq}");
    }
    // Colour as PPM and PNG.
    for format in ["ppm", "png"] {
        let a = export(
            &dump,
            &out(&format!("c{format}")),
            &["--stream", "color", "--format", format],
        );
        let b = export(
            &mcap,
            &out(&format!("m{format}")),
            &["--stream", "color", "--format", format],
        );
        // The recording ends at its 30th depth frame: a colour frame more or less, either way.
        assert_eq!(a.len(), count(&dump, "r"));
        assert!(a.len() >= 25 && b.len() >= 25);
        for (name, bytes) in &a {
            assert!(
                b.get(name).is_none_or(|m| m == bytes),
                "colour {format} {name} differs"
            );
        }
    }
    let ppm = files(&out("cppm"));
    let rgb = expected_color_frame(SEED, 7, WIDTH, HEIGHT);
    assert!(ppm["0000000007.ppm"].ends_with(&rgb));
    // The accelerometer as CSV: the same readings under the same numbers.
    let a = export(
        &dump,
        &out("accel"),
        &["--stream", "accel", "--format", "csv"],
    );
    let b = export(
        &mcap,
        &out("accel_m"),
        &["--stream", "accel", "--format", "csv"],
    );
    let readings = |csv: &[u8]| -> Vec<String> {
        String::from_utf8(csv.to_vec())
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                format!("{},{}", f[0], f[3..].join(","))
            })
            .collect()
    };
    let rows = readings(&a["accel.csv"]);
    let mcap_rows = readings(&b["accel.csv"]);
    assert_eq!(rows.len(), count(&dump, "a"));
    let common = rows.len().min(mcap_rows.len());
    assert!(common > 0);
    assert_eq!(rows[..common], mcap_rows[..common]);
    let raw = expected_accel(SEED, 0);
    let want = framerec::export::accel_csv_row(0, 0, 0, &raw).unwrap();
    let want: Vec<&str> = want.trim_end().split(',').collect();
    assert_eq!(rows[0], format!("0,{}", want[3..].join(",")));

    // Frame and time selection.
    let sel = export(
        &dump,
        &out("sel"),
        &["--format", "pgm", "--from-seq", "5", "--to-seq", "9"],
    );
    let names: Vec<&str> = sel.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "0000000005.pgm",
            "0000000006.pgm",
            "0000000007.pgm",
            "0000000008.pgm",
            "0000000009.pgm"
        ]
    );
    let all = export(&dump, &out("all"), &["--format", "pgm", "--end", "1h"]);
    assert_eq!(all.len() as u64, FRAMES);
    let o = framerec(&[
        "export",
        s(&dump),
        "--out",
        s(&out("late")),
        "--format",
        "pgm",
        "--start",
        "1h",
    ]);
    assert!(
        !o.status.success() && text(&o).contains("no frames match the selection"),
        "{}",
        text(&o)
    );
    // A format the stream has not, and fakenect's 640x480 only, are refused.
    for (args, why) in [
        (vec!["--format", "ppm"], "exports as pgm or png or fakenect"),
        (vec!["--format", "fakenect"], "640x480"),
        (
            vec!["--stream", "ir", "--format", "pgm"],
            "no stream ir (it has: depth, color, accel)",
        ),
    ] {
        let refused = out("refused");
        let mut all = vec!["export", s(&dump), "--out", s(&refused)];
        all.extend(args);
        let o = framerec(&all);
        assert!(
            !o.status.success() && text(&o).contains(why),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn a_fakenect_layout_export_in_fakenect_format_is_the_recordings_own_depth_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let o = framerec(&[
        "record",
        "--layout",
        "fakenect",
        "--frames",
        "4",
        "--fps",
        "0",
        "--stats-socket",
        "off",
        "--out",
        s(&dir),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = tmp.path().join("out");
    let exported = export(&dir, &out, &["--format", "fakenect"]);
    let mut recorded = files(&dir);
    recorded.retain(|n, _| n.starts_with("d-") || n == "INDEX.txt");
    assert!(
        exported == recorded,
        "names, INDEX.txt and bytes as recorded"
    );
}

/// A recording of three streams in `dir`, with its INDEX.txt as recorded.
fn recorded(dir: &Path) -> Vec<String> {
    record3(dir, "fakenect");
    index_lines(dir)
}

fn recover(dir: &Path) -> String {
    ok(&["recover", s(dir)])
}

/// `verify --json` of a fakenect-layout `dir`: frames and drops per stream.
fn verify_counts(dir: &Path) -> serde_json::Value {
    let o = framerec(&["verify", "--json", s(dir)]);
    assert!(o.status.success(), "verify: {}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v[0]["fakenect"]["streams"].clone()
}

#[test]
fn recover_removes_a_cut_last_line_and_appends_the_whole_frame_it_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let lines = recorded(&dir);
    // A crash in the middle of an append of the last two lines.
    let n = lines.len();
    let mut index = lines[..n - 2].join("\n");
    index.push('\n');
    index.push_str(&lines[n - 2]);
    index.push('\n');
    index.push_str(&lines[n - 1][..10]);
    std::fs::write(dir.join("INDEX.txt"), &index).unwrap();
    // And what an interrupted recover leaves: a new index not yet renamed into place.
    std::fs::write(dir.join(".INDEX.txt.tmp"), "d-1").unwrap();
    assert!(!framerec(&["verify", s(&dir)]).status.success());
    let out = recover(&dir);
    assert!(!dir.join(".INDEX.txt.tmp").exists(), "{out}");
    assert!(
        out.contains(&format!(
            "INDEX.txt:{n}: a last line cut short by a crash (10 bytes): removed"
        )) && out.contains(&format!("appended {}", lines[n - 1]))
            && out.contains("lost 0"),
        "{out}"
    );
    assert_eq!(
        index_lines(&dir),
        lines,
        "every frame named again, in order"
    );
    assert!(framerec(&["verify", s(&dir)]).status.success());
    let again = recover(&dir);
    assert!(again.contains("nothing to recover"), "{again}");
}

#[test]
fn recover_names_the_frames_of_missing_and_short_files_as_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let lines = recorded(&dir);
    let missing = nth_of(&dir, "d", 10);
    let short = nth_of(&dir, "r", 5);
    std::fs::remove_file(dir.join(&missing)).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(&short))
        .unwrap();
    f.set_len(100).unwrap();
    // A DROPS.txt whose last append a crash cut short: the lost frames go on a line of their
    // own after it.
    std::fs::write(
        dir.join("DROPS.txt"),
        "40 40 queue_full color\n41 41 queue_fu",
    )
    .unwrap();
    assert!(!framerec(&["verify", s(&dir)]).status.success());
    let out = recover(&dir);
    assert!(
        out.contains(&format!("lost depth seq 10: {missing} (missing)"))
            && out.contains(&format!("lost color seq 5: {short} (cut short: 100 of"))
            && out.contains("lost 2 (named in DROPS.txt as lost)"),
        "{out}"
    );
    let left: Vec<String> = lines
        .iter()
        .filter(|l| **l != missing && **l != short)
        .cloned()
        .collect();
    assert_eq!(index_lines(&dir), left);
    let drops = std::fs::read_to_string(dir.join("DROPS.txt")).unwrap();
    assert!(
        drops.starts_with("40 40 queue_full color\n41 41 queue_fu\n")
            && drops.contains("\n10 10 lost depth\n")
            && drops.contains("\n5 5 lost color\n"),
        "{drops}"
    );
    let counts = verify_counts(&dir);
    assert_eq!(counts["depth"]["frames"], FRAMES - 1);
    assert_eq!(counts["depth"]["dropped"], 1);
    assert_eq!(
        counts["color"]["dropped"], 2,
        "the one before and the lost one"
    );
    // The frames after the lost one keep their numbers.
    let out = tmp.path().join("after");
    let after = export(
        &dir,
        &out,
        &["--format", "pgm", "--from-seq", "9", "--to-seq", "11"],
    );
    let names: Vec<&str> = after.keys().map(String::as_str).collect();
    assert_eq!(names, ["0000000009.pgm", "0000000011.pgm"]);
    assert_eq!(
        after["0000000011.pgm"],
        framerec::export::pgm16(WIDTH, HEIGHT, &expected_frame(SEED, 11, WIDTH, HEIGHT))
    );
    let info = ok(&["info", s(&dir)]);
    assert!(
        info.contains("dropped: lost 1") && info.contains("intact"),
        "{info}"
    );
    assert!(recover(&dir).contains("nothing to recover"));
}

#[test]
fn recover_renames_whole_temporary_files_removes_unfinished_ones_and_leaves_what_is_unsafe() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let lines = recorded(&dir);
    let n = lines.len();
    // The last three frames were not yet named: one renamed (an orphan), one whole but not
    // renamed, one half written.
    let (orphan, whole, half) = (&lines[n - 3], &lines[n - 2], &lines[n - 1]);
    std::fs::write(dir.join("INDEX.txt"), lines[..n - 3].join("\n") + "\n").unwrap();
    std::fs::rename(dir.join(whole), dir.join(format!(".{whole}.tmp"))).unwrap();
    let bytes = std::fs::read(dir.join(half)).unwrap();
    std::fs::remove_file(dir.join(half)).unwrap();
    std::fs::write(dir.join(format!(".{half}.tmp")), &bytes[..bytes.len() / 2]).unwrap();
    // A whole frame older than the last named one, and a file cut short: neither is safe.
    let old = "d-1.000000-0.pgm";
    std::fs::copy(dir.join(nth_of(&dir, "d", 0)), dir.join(old)).unwrap();
    let cut = "d-9999999999.000000-0.pgm";
    std::fs::write(dir.join(cut), b"P5 64 48 65535\n\x01\x02").unwrap();

    let out = recover(&dir);
    assert!(
        out.contains(&format!("appended {orphan}"))
            && out.contains(&format!("appended {whole}"))
            && out.contains(&format!("renamed .{whole}.tmp"))
            && out.contains(&format!("removed .{half}.tmp: a frame never completed"))
            && out.contains(&format!("left {old}: not later than the last frame"))
            && out.contains(&format!("left {cut}: not a whole frame (cut short")),
        "{out}"
    );
    assert_eq!(index_lines(&dir), lines[..n - 1]);
    assert!(!dir.join(format!(".{whole}.tmp")).exists());
    assert!(!dir.join(format!(".{half}.tmp")).exists());
    assert!(dir.join(old).exists() && dir.join(cut).exists());
    assert!(framerec(&["verify", s(&dir)]).status.success());
}

/// `framerec args` must end by itself (no signal, no panic) with one of the given codes.
fn no_panic(args: &[&str], codes: &[i32]) -> String {
    let o = framerec(args);
    let t = text(&o);
    assert_eq!(o.status.signal(), None, "{args:?}: {t}");
    assert!(!t.contains("panicked"), "{args:?}: {t}");
    assert!(
        o.status.code().is_some_and(|c| codes.contains(&c)),
        "{args:?}: {:?} {t}",
        o.status
    );
    t
}

#[test]
fn crafted_fakenect_layouts_are_refused_or_repaired_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rec");
    let lines = recorded(&dir);
    let index = dir.join("INDEX.txt");
    let d = s(&dir);
    let out = tmp.path().join("out");
    let tools = |codes: &[i32]| {
        for args in [
            vec!["info", d],
            vec!["export", d, "--format", "pgm", "--force", "--out", s(&out)],
            vec!["recover", d],
        ] {
            no_panic(&args, codes);
        }
    };
    // A damaged line in the middle is not a crash's: recover leaves it as it is.
    let mut damaged = lines.clone();
    damaged[3] = "d-x-y.pgm".into();
    let text = damaged.join("\n") + "\n";
    std::fs::write(&index, &text).unwrap();
    let t = no_panic(&["recover", d], &[1]);
    assert!(
        t.contains("cannot recover") && t.contains("INDEX.txt:4"),
        "{t}"
    );
    assert_eq!(
        std::fs::read_to_string(&index).unwrap(),
        text,
        "left as it is"
    );
    tools(&[1, 2]);
    // Backwards drop ranges, over-long lines, headers claiming huge or zero sizes, a header of
    // another stream, a NUL-filled index: refused or repaired, never a panic.
    std::fs::write(&index, lines.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("DROPS.txt"), "9 1 lost depth\n").unwrap();
    tools(&[1, 2]);
    std::fs::write(dir.join("DROPS.txt"), "x".repeat(300)).unwrap();
    tools(&[1, 2]);
    let d0 = nth_of(&dir, "d", 0);
    for header in [
        &b"P5 8192 8192 65535\n"[..],
        b"P5 0 0 65535\n",
        b"P6 64 48 255\n",
        b"P5 64 48 65535",
        b"",
    ] {
        std::fs::write(&index, lines.join("\n") + "\n").unwrap();
        std::fs::write(dir.join("DROPS.txt"), "").unwrap();
        std::fs::write(dir.join(&d0), header).unwrap();
        tools(&[0, 1, 2]);
        // The other depth frames stay whole: one crafted file does not decide the stream.
        assert_eq!(verify_counts(&dir)["depth"]["frames"], FRAMES - 1);
    }
    std::fs::write(&index, vec![0u8; 4096]).unwrap();
    tools(&[1, 2]);
    std::fs::write(&index, "d-1.0-1.pgm\n".repeat(3) + &"9".repeat(300)).unwrap();
    tools(&[1, 2]);
}

/// Records a replay of `dump` through Debian's libfreenect fakenect into `rec`; its frames.
fn replay_through_libfreenect(dump: &Path, rec: &Path) -> u64 {
    let o = Command::new("timeout")
        .args(["60", "fakenect", s(dump)])
        .arg(env!("CARGO_BIN_EXE_framerec"))
        .args(["record", "--source", "freenect", "--stats-socket", "off"])
        .args(["--out", s(rec)])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "fakenect replay: {}", text(&o));
    let v = framerec(&["verify", "--json", s(rec)]);
    assert!(v.status.success(), "{}", text(&v));
    let v: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    v[0]["report"]["frames"].as_u64().unwrap()
}

#[test]
fn a_recovered_fakenect_layout_recording_replays_through_libfreenect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("rec");
    let o = framerec(&[
        "record",
        "--layout",
        "fakenect",
        "--frames",
        "12",
        "--fps",
        "0",
        "--stats-socket",
        "off",
        "--out",
        s(&dir),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let lines = index_lines(&dir);
    std::fs::remove_file(dir.join(&lines[4])).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(&lines[7]))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let mut index = lines[..11].join("\n") + "\n";
    index.push_str(&lines[11][..5]);
    std::fs::write(dir.join("INDEX.txt"), index).unwrap();
    let out = recover(&dir);
    assert!(
        out.contains("lost 2") && out.contains("appended 1"),
        "{out}"
    );
    assert!(framerec(&["verify", s(&dir)]).status.success());
    assert_eq!(
        replay_through_libfreenect(&dir, &tmp.path().join("replayed")),
        10
    );
}
