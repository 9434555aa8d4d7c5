//! End-to-end benchmark runner: framerec against the disk's ceiling and the baselines a user
//! would otherwise write, side by side in one run on one filesystem, same frame size, same
//! total bytes, everything made durable. Every figure is reported as a ratio to the ceiling
//! (the best fio run) or to the baseline, because absolute times drift on shared machines.
//!
//! `cargo bench --bench e2e` (2000 frames of 614,400 bytes, about 1.2 GB per run, and a frame
//! size sweep); `FRAMEREC_BENCH_DIR` picks the filesystem (default `target/bench-e2e`).
//! `FRAMEREC_BENCH_COMPARE=OLD_BINARY cargo bench --bench e2e` runs only the one-stream
//! framerec rows, this build against OLD_BINARY in the same rounds (8 of them, pairs in turn;
//! `FRAMEREC_BENCH_FRAMES` sets the frames per run), and writes `compare.md`.
//! Writes `report.md`, `report.json` and `report.svg` there. Under `cargo test` it runs a
//! small smoke version that checks every runner works, and asserts nothing about speed.
//!
//! Rows:
//! - fio sequential writes (psync and io_uring; buffered with 4 MiB blocks, framerec's
//!   `max-write-bytes`; `O_DIRECT` with 1 MiB blocks; `end_fsync=1`): the ceiling;
//! - framerec unpaced, synthetic source: default settings, `--direct-io`, without
//!   preallocation (buffered and direct), writers 1..16;
//! - a blocking `std::fs` writer thread fed by a channel, fsync at the end;
//! - Node.js: 5 concurrent writes, one file per frame, each fdatasync'd;
//! - framerec's per-frame-file layout (`--layout fakenect`), each frame fdatasync'd;
//! - libfreenect's `fakenect-record` and framerec (`--source freenect --layout fakenect`)
//!   replaying the same dump through the fakenect library.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[path = "e2e_parts/codecs.rs"]
mod codecs;
#[path = "e2e_parts/matrix.rs"]
mod matrix;

const FRAME_BYTES: u64 = 614_400;

/// One measured run of a child process.
#[derive(Debug, Clone, Default, serde::Serialize)]
struct Row {
    group: String,
    name: String,
    frames: u64,
    bytes: u64,
    seconds: f64,
    mb_per_s: f64,
    frames_per_s: f64,
    cpu_s_per_gib: f64,
    /// framerec: CPU per GiB less its receiver thread's (the synthetic source making frames,
    /// which fio does not do): what the writing costs.
    writing_cpu_s_per_gib: Option<f64>,
    peak_rss_mb: f64,
    /// Write latency and capture-to-written p99, ms, where the program reports them.
    write_p50_ms: Option<f64>,
    write_p99_ms: Option<f64>,
    capture_to_written_p99_ms: Option<f64>,
    /// framerec: bytes of its segment files, and chunks compressed / left raw.
    bytes_on_disk: Option<u64>,
    chunks_compressed: Option<u64>,
    chunks_not_compressed: Option<u64>,
    note: String,
}

/// Runs `cmd` to completion and returns (wall seconds, user+sys seconds, peak RSS MB, stdout).
// The child is reaped by `wait4` (for its resource usage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn measure(cmd: &mut Command) -> (f64, f64, f64, String) {
    // SAFETY: libc::sync has no preconditions; flushing other runs' dirty pages first keeps
    // their writeback out of this run.
    unsafe { libc::sync() };
    // And every run starts with the same, empty page cache: a run right after an O_DIRECT run
    // (which leaves the cache empty) measured slower than one after a buffered run, whichever
    // build it was, so the run before decided a row (`--writers 1` read 0.72 twice that way).
    // Needs root; without it runs start from whatever cache the last one left.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "1");
    use std::io::Read;
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read_all(Box::new(child.stdout.take().expect("piped")));
    let err = read_all(Box::new(child.stderr.take().expect("piped")));
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child (never waited for elsewhere); `status` and `usage` are
    // valid out-pointers. The rusage covers the child and the descendants it waited for.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_secs_f64();
    assert!(r == pid, "wait4 failed");
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "{cmd:?} failed (status {status}): {stderr}");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    (wall, cpu, usage.ru_maxrss as f64 / 1024.0, stdout)
}

fn row(group: &str, name: &str, frames: u64, bytes: u64, m: (f64, f64, f64, String)) -> Row {
    let (seconds, cpu, rss, _) = m;
    Row {
        group: group.into(),
        name: name.into(),
        frames,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
        frames_per_s: frames as f64 / seconds,
        cpu_s_per_gib: cpu / (bytes as f64 / (1u64 << 30) as f64),
        peak_rss_mb: rss,
        ..Row::default()
    }
}

fn framerec_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/framerec");
    let ok = Command::new("cargo")
        .args(["build", "--release", "--quiet", "--bin", "framerec"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok && bin.exists(), "cannot build the release framerec");
    bin
}

/// `framerec record` unpaced into `out` with `args`; reads its JSON summary.
fn framerec(bin: &Path, out: &Path, frames: u64, wh: (u32, u32), args: &[&str]) -> Row {
    let _ = std::fs::remove_dir_all(out);
    let mut cmd = Command::new(bin);
    cmd.args(["record", "--fps", "0", "--json", "--stats-socket", "off"])
        .args(["--width", &wh.0.to_string(), "--height", &wh.1.to_string()])
        .args([
            "--frames",
            &frames.to_string(),
            "--out",
            out.to_str().unwrap(),
        ])
        .args(args)
        .env("RUST_LOG", "warn");
    let m = measure(&mut cmd);
    let summary: serde_json::Value = serde_json::from_str(&m.3).expect("framerec --json");
    let totals = &summary["totals"];
    // `--frames` counts the first (depth) stream; other streams add their frames and bytes.
    // (Builds before several streams report no `streams`.)
    let first = totals["streams"][0]["written_frames"]
        .as_u64()
        .or(totals["written_frames"].as_u64());
    assert_eq!(first, Some(frames), "{summary}");
    let written = totals["written_frames"].as_u64().expect("written_frames");
    let bytes = totals["written_bytes"].as_u64().expect("written_bytes");
    let cpu = m.1;
    let mut r = row("framerec", "", written, bytes, m);
    r.writing_cpu_s_per_gib = summary["receiver_cpu_s"]
        .as_f64()
        .map(|rx| (cpu - rx) / (bytes as f64 / (1u64 << 30) as f64));
    // Percentiles of an empty histogram (statistics off) are absent, not zero.
    let ms = |h: &serde_json::Value, q: &str| {
        (h["count"].as_u64() > Some(0))
            .then(|| h[q].as_f64().map(|ns| ns / 1e6))
            .flatten()
    };
    r.write_p50_ms = ms(&summary["write_latency_ns"], "p50");
    r.write_p99_ms = ms(&summary["write_latency_ns"], "p99");
    r.capture_to_written_p99_ms = ms(&summary["capture_to_written_ns"], "p99");
    r.bytes_on_disk = std::fs::read_dir(out).ok().map(|d| {
        d.flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "mcap"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    });
    let c = &summary["totals"]["compression"];
    r.chunks_compressed = c["chunks_compressed"].as_u64();
    r.chunks_not_compressed = c["chunks_not_worth_it"].as_u64();
    let _ = std::fs::remove_dir_all(out);
    r
}

/// One fio sequential write of `total` bytes: `job` is (name, engine, O_DIRECT, block size,
/// queue depth, fdatasync every N writes or 0).
fn fio(dir: &Path, job: (&str, &str, bool, &str, u32, u32), total: u64) -> Row {
    let (name, engine, direct, bs, depth, sync_every) = job;
    let file = dir.join("fio.dat");
    let _ = std::fs::remove_file(&file);
    let mut cmd = Command::new("fio");
    if sync_every > 0 {
        cmd.arg(format!("--fdatasync={sync_every}"));
    }
    cmd.args([
        "--name=ceiling",
        "--rw=write",
        "--end_fsync=1",
        "--output-format=json",
        // No preallocation: framerec appends to new files; unwritten extents would make fio
        // pay for their conversion at writeback.
        "--fallocate=none",
    ])
    .arg(format!("--filename={}", file.display()))
    .arg(format!("--ioengine={engine}"))
    .arg(format!("--iodepth={depth}"))
    .arg(format!("--direct={}", direct as u8))
    .arg(format!("--bs={bs}"))
    .arg(format!("--size={total}"));
    let m = measure(&mut cmd);
    let _ = std::fs::remove_file(&file);
    let mut r = row("ceiling", name, total / FRAME_BYTES, total, m);
    r.note = format!(
        "fio {engine}, bs {bs}, depth {depth}{}",
        if sync_every > 0 {
            format!(", fdatasync every {sync_every} writes")
        } else {
            String::new()
        }
    );
    r
}

/// The baseline a user would write: one blocking std::fs writer thread fed by a channel,
/// one file, fsync at the end. Runs in a child process (this binary, re-executed).
fn baseline_std(out: &Path, frames: u64, frame_bytes: usize) {
    use std::io::Write;
    std::fs::create_dir_all(out).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(64);
    let path = out.join("frames.raw");
    let writer = std::thread::spawn(move || {
        let mut f = std::fs::File::create(&path).unwrap();
        let mut lat = Vec::new();
        for frame in rx {
            let t = Instant::now();
            f.write_all(&frame).unwrap();
            lat.push(t.elapsed().as_nanos() as u64);
        }
        f.sync_all().unwrap();
        lat
    });
    for seq in 0..frames {
        tx.send(vec![(seq % 251) as u8; frame_bytes]).unwrap();
    }
    drop(tx);
    let mut lat = writer.join().unwrap();
    lat.sort_unstable();
    let q = |p: f64| lat[((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "{}",
        serde_json::json!({ "p50": q(0.5), "p99": q(0.99), "p999": q(0.999) })
    );
}

/// `FRAMEREC_BENCH_COMPARE=OLD_BINARY`: this build against another, the one-depth-stream rows
/// only, each pair in the same rounds; writes `compare.md` with the ratios new / old.
fn compare(new: &Path, old: &Path, root: &Path, (frames, rounds): (u64, usize)) {
    let scratch = root.join("scratch");
    let configs: [(&str, (u32, u32), Vec<&str>); 5] = [
        ("default (2 writers, buffered)", (640, 480), vec![]),
        ("--direct-io", (640, 480), vec!["--direct-io"]),
        ("--writers 1", (640, 480), vec!["--writers", "1"]),
        ("--writers 4", (640, 480), vec!["--writers", "4"]),
        ("16 KiB frames (128x64)", (128, 64), vec![]),
    ];
    let mut jobs = Rounds::default();
    for (name, wh, extra) in &configs {
        // 16 KiB frames: the same bytes as the 614,400-byte rows.
        let n = frames * FRAME_BYTES / (wh.0 as u64 * wh.1 as u64 * 2);
        for bin in [new, old] {
            let scratch = &scratch;
            jobs.add(move || {
                let mut r = framerec(bin, scratch, n, *wh, extra);
                r.name = name.to_string();
                r
            });
        }
    }
    // Three streams (this build only): depth, colour and accelerometer, the depth frames above.
    let three = ["--streams", "depth,color,accel"];
    jobs.add(|| {
        let mut r = framerec(new, &scratch, frames, (640, 480), &three);
        r.name = "--streams depth,color,accel (new only)".into();
        r
    });
    let mut rows = jobs.run_paired(rounds);
    let single = rows.pop().expect("the three-stream row");
    let mut s = format!(
        "framerec {} against {}: {frames} frames of {FRAME_BYTES} bytes (16 KiB rows: the same bytes), \
         medians of {rounds} rounds, each round running every pair in turn, the build that goes first alternating.\n\n\
         | run | new MB/s | old MB/s | new / old MB/s | new CPU s/GiB | old CPU s/GiB | new / old CPU | new write p99 ms | old write p99 ms |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        new.display(),
        old.display()
    );
    let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    for pair in rows.chunks(2) {
        let (n, o) = (&pair[0], &pair[1]);
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.3} | {:.2} | {:.2} | {:.3} | {} | {} |\n",
            n.name,
            n.mb_per_s,
            o.mb_per_s,
            n.mb_per_s / o.mb_per_s,
            n.cpu_s_per_gib,
            o.cpu_s_per_gib,
            n.cpu_s_per_gib / o.cpu_s_per_gib,
            opt(n.write_p99_ms),
            opt(o.write_p99_ms),
        ));
    }
    s.push_str(&format!(
        "\n{}: {:.1} MB/s ({} frames of all three streams, {:.0} MB), {:.2} CPU s/GiB, write p99 {} ms\n",
        single.name,
        single.mb_per_s,
        single.frames,
        single.bytes as f64 / 1e6,
        single.cpu_s_per_gib,
        opt(single.write_p99_ms),
    ));
    print!("{s}");
    std::fs::write(root.join("compare.md"), &s).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}

fn median_of(rows: Vec<Row>) -> Row {
    let mut rows = rows;
    rows.sort_by(|a, b| a.mb_per_s.total_cmp(&b.mb_per_s));
    rows[rows.len() / 2].clone()
}

/// Runs that are compared with each other, run round-robin (every run once, then every run
/// again, each round starting at another row) so that the disk's drift over minutes falls on
/// all of them alike rather than on whichever ran last; each keeps its median.
#[derive(Default)]
struct Rounds<'a> {
    jobs: Vec<Box<dyn FnMut() -> Row + 'a>>,
}

impl<'a> Rounds<'a> {
    fn add(&mut self, f: impl FnMut() -> Row + 'a) {
        self.jobs.push(Box::new(f));
    }

    fn run(mut self, rounds: usize) -> Vec<Row> {
        let n = self.jobs.len();
        let mut runs: Vec<Vec<Row>> = vec![Vec::new(); n];
        for round in 0..rounds {
            // Each round starts further along the list, and every other round goes through it
            // backwards, so that no row always runs right after the same one (a run can leave
            // the disk slower for the next): in a paired comparison the new build runs before
            // the old one in half the rounds and after it in the other half.
            let start = round * n / rounds.max(1);
            let order: Vec<usize> = if round % 2 == 0 {
                (0..n).map(|i| (start + i) % n).collect()
            } else {
                (0..n).map(|i| (start + n - i) % n).collect()
            };
            for i in order {
                runs[i].push((self.jobs[i])());
            }
        }
        runs.into_iter().map(median_of).collect()
    }

    /// Like [`Rounds::run`] for jobs added in pairs (new build, old build; a job left over
    /// at the end runs last in every round): the pairs take turns going first, and which
    /// member of a pair runs first alternates from round to round and from pair to pair. So
    /// over an even number of rounds each build of a row follows the other build of that row
    /// in half the rounds and the row before in the other half. (With the rows merely
    /// rotated, the new `--writers 1` run followed an O_DIRECT run in 4 of 7 rounds and the
    /// old one never did; runs after an O_DIRECT run measured slower for either build, and the
    /// row read 0.72-0.74 three times while 8 alternating rounds by hand gave 1.0.)
    fn run_paired(mut self, rounds: usize) -> Vec<Row> {
        let n = self.jobs.len();
        let pairs = n / 2;
        let mut runs: Vec<Vec<Row>> = vec![Vec::new(); n];
        for round in 0..rounds {
            let start = round * pairs / rounds.max(1);
            let mut order = Vec::with_capacity(n);
            for k in (0..pairs).map(|k| (start + k) % pairs) {
                let (a, b) = (2 * k, 2 * k + 1);
                if (round + k) % 2 == 0 {
                    order.extend([a, b]);
                } else {
                    order.extend([b, a]);
                }
            }
            order.extend(2 * pairs..n);
            for i in order {
                runs[i].push((self.jobs[i])());
            }
        }
        runs.into_iter().map(median_of).collect()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--baseline-std") {
        let frames = args[3].parse().unwrap();
        let bytes = args[4].parse().unwrap();
        baseline_std(Path::new(&args[2]), frames, bytes);
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let (frames, repeats) = if full { (2000u64, 3) } else { (40, 1) };
    let total = frames * FRAME_BYTES;
    let root = std::env::var_os("FRAMEREC_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-e2e"));
    std::fs::create_dir_all(&root).unwrap();
    let scratch = root.join("scratch");
    let bin = framerec_bin();
    let me = std::env::current_exe().unwrap();
    let node_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/node_writer.js");
    if let Some(old) = std::env::var_os("FRAMEREC_BENCH_COMPARE") {
        // Longer runs and more rounds than the full run's rows: the two builds differ by little.
        // An even number of rounds, so each build goes first in half of them.
        let n = std::env::var("FRAMEREC_BENCH_FRAMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(frames);
        compare(
            &bin,
            Path::new(&old),
            &root,
            if full { (n, 8) } else { (n, 1) },
        );
        return;
    }
    if std::env::var_os("FRAMEREC_BENCH_CODECS").is_some() {
        codecs::run(
            &bin,
            &root,
            if full { 4096 } else { 40 },
            if full { 3 } else { 1 },
        );
        return;
    }
    if std::env::var_os("FRAMEREC_BENCH_MATRIX").is_some() {
        let (frames, rounds) = if full { (matrix::FRAMES, 3) } else { (40, 1) };
        matrix::run(&bin, &root, frames, rounds);
        return;
    }
    let mut streaming = Rounds::default();
    let have = |tool: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };

    // 1. The ceiling.
    if have("fio") {
        std::fs::create_dir_all(&scratch).unwrap();
        // The ceiling is the best of these: buffered with one fsync at the end, buffered
        // with periodic fdatasync (writeback overlaps the writes, as framerec's fsync
        // interval makes it), and O_DIRECT at shallow and deep queues.
        for job in [
            ("fio psync buffered", "psync", false, "4m", 1, 0),
            ("fio io_uring buffered", "io_uring", false, "4m", 4, 0),
            (
                "fio psync buffered, periodic fdatasync",
                "psync",
                false,
                "4m",
                1,
                16,
            ),
            ("fio psync O_DIRECT", "psync", true, "1m", 1, 0),
            ("fio io_uring O_DIRECT", "io_uring", true, "1m", 4, 0),
            (
                "fio io_uring O_DIRECT, 4 MiB, depth 16",
                "io_uring",
                true,
                "4m",
                16,
                0,
            ),
        ] {
            let scratch = &scratch;
            streaming.add(move || fio(scratch, job, total));
        }
    } else {
        eprintln!("fio is not installed (apt install fio): no ceiling rows");
    }

    // 2. framerec, unpaced synthetic source.
    let wh = (640, 480);
    let (bin_ref, scratch_ref) = (&bin, &scratch);
    // The pattern content: the synthetic scene costs ~0.5 ms of CPU a frame to render and
    // would make the source, not the disk, the limit of an unpaced run.
    let fr = |name: String, mut extra: Vec<&'static str>| {
        extra.extend(["--content", "pattern"]);
        move || {
            let mut r = framerec(bin_ref, scratch_ref, frames, wh, &extra);
            r.name = name.clone();
            r
        }
    };
    streaming.add(fr("framerec default (2 writers, buffered)".into(), vec![]));
    streaming.add(fr("framerec --direct-io".into(), vec!["--direct-io"]));
    // Preallocation (on by default, 64 MiB steps) against none, buffered and direct.
    streaming.add(fr(
        "framerec --preallocate-bytes 0".into(),
        vec!["--preallocate-bytes", "0"],
    ));
    streaming.add(fr(
        "framerec --direct-io --preallocate-bytes 0".into(),
        vec!["--direct-io", "--preallocate-bytes", "0"],
    ));
    for w in ["1", "4", "8", "16"] {
        streaming.add(fr(format!("framerec --writers {w}"), vec!["--writers", w]));
    }
    streaming.add(fr(
        "framerec --no-histograms".into(),
        vec!["--no-histograms"],
    ));
    // Depth, colour and accelerometer: the same depth frames, 2.5 times the bytes.
    streaming.add(fr(
        "framerec --streams depth,color,accel".into(),
        vec!["--streams", "depth,color,accel"],
    ));

    // 3. Baselines.
    streaming.add(|| {
        let _ = std::fs::remove_dir_all(&scratch);
        let m = measure(Command::new(&me).args([
            "--baseline-std",
            scratch.to_str().unwrap(),
            &frames.to_string(),
            &FRAME_BYTES.to_string(),
        ]));
        let lat: serde_json::Value = serde_json::from_str(&m.3).unwrap();
        let mut r = row(
            "baseline",
            "std::fs writer thread + channel",
            frames,
            total,
            m,
        );
        r.write_p50_ms = lat["p50"].as_f64().map(|v| v / 1e6);
        r.write_p99_ms = lat["p99"].as_f64().map(|v| v / 1e6);
        r.note = "one file, fsync at the end".into();
        r
    });
    let file_frames = if full { 1000 } else { 20 };
    if have("node") {
        streaming.add(|| {
            let _ = std::fs::remove_dir_all(&scratch);
            let m = measure(Command::new("node").args([
                node_script.to_str().unwrap(),
                scratch.to_str().unwrap(),
                &file_frames.to_string(),
                &FRAME_BYTES.to_string(),
            ]));
            let lat: serde_json::Value = serde_json::from_str(&m.3).unwrap();
            let mut r = row(
                "per-frame files",
                "Node.js, 5 concurrent writes",
                file_frames,
                file_frames * FRAME_BYTES,
                m,
            );
            r.write_p50_ms = lat["p50"].as_f64().map(|v| v / 1e6);
            r.write_p99_ms = lat["p99"].as_f64().map(|v| v / 1e6);
            r.note = "open, write, fdatasync, close per frame".into();
            r
        });
    }
    streaming.add(|| {
        let mut r = framerec(&bin, &scratch, file_frames, wh, &["--layout", "fakenect"]);
        r.group = "per-frame files".into();
        r.name = "framerec --layout fakenect (2 writers)".into();
        r.note = "write, fdatasync, rename per frame; INDEX.txt fsync'd".into();
        r
    });
    streaming.add(|| {
        let mut r = framerec(
            &bin,
            &scratch,
            file_frames,
            wh,
            &["--layout", "fakenect", "--writers", "5"],
        );
        r.group = "per-frame files".into();
        r.name = "framerec --layout fakenect --writers 5".into();
        r
    });
    let mut rows = streaming.run(repeats);

    // 4. Replaying one dump through libfreenect's fakenect library.
    if have("fakenect") && have("fakenect-record") {
        rows.extend(replay_rows(&bin, &root, file_frames, repeats));
    }

    // 5. Frame-size sweep: the same bytes in frames of 16 KiB to 4 MiB.
    let mut sizes = Rounds::default();
    for (w, h) in [
        (128, 64),
        (256, 128),
        (512, 256),
        (640, 480),
        (1024, 512),
        (2048, 1024),
    ] {
        let n = (total / (w * h * 2) as u64).max(4);
        let (bin, scratch) = (&bin, &scratch);
        sizes.add(move || {
            let mut r = framerec(bin, scratch, n, (w, h), &[]);
            r.group = "frame size".into();
            r.name = format!("{} bytes ({w}x{h})", w * h * 2);
            r
        });
    }
    let sweep = sizes.run(repeats);
    let _ = std::fs::remove_dir_all(&scratch);

    if !full {
        // The smoke run also checks that the codec and I/O-mode runners work.
        codecs::run(&bin, &root, 40, 1);
        matrix::run(&bin, &root, 40, 1);
    }
    let report = render(&rows, &sweep, frames, full);
    println!("{report}");
    std::fs::write(root.join("report.md"), &report).unwrap();
    std::fs::write(
        root.join("report.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "rows": rows, "sweep": sweep })).unwrap(),
    )
    .unwrap();
    match plot(&rows, &root.join("report.svg")) {
        Ok(()) => eprintln!("wrote {}", root.join("report.svg").display()),
        Err(e) => eprintln!("no plot: {e}"),
    }
}

/// fakenect-record and framerec replaying the same dump (frame times all equal, so the
/// fakenect library does not pace the replay).
fn replay_rows(bin: &Path, root: &Path, frames: u64, repeats: usize) -> Vec<Row> {
    let rec = root.join("replay-source");
    let dump = root.join("replay-dump");
    let _ = std::fs::remove_dir_all(&rec);
    let _ = std::fs::remove_dir_all(&dump);
    let ok = Command::new(bin)
        .args([
            "record",
            "--fps",
            "0",
            "--frames",
            &frames.to_string(),
            "--stats-socket",
            "off",
        ])
        .args(["--out", rec.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new(bin)
            .args([
                "export",
                rec.to_str().unwrap(),
                "--format",
                "fakenect",
                "--out",
            ])
            .arg(&dump)
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(ok, "cannot make the replay dump");
    // One recorded time for every frame: the replay runs as fast as its reader.
    let index = std::fs::read_to_string(dump.join("INDEX.txt")).unwrap();
    let mut lines = String::new();
    for line in index.lines() {
        let ts = line.rsplit('-').next().unwrap();
        let name = format!("d-1000.000000-{ts}");
        std::fs::rename(dump.join(line), dump.join(&name)).unwrap();
        lines.push_str(&name);
        lines.push('\n');
    }
    std::fs::write(dump.join("INDEX.txt"), lines).unwrap();
    let out = root.join("replay-out");
    let bytes = frames * FRAME_BYTES;
    let mut rounds = Rounds::default();
    rounds.add(|| {
        let _ = std::fs::remove_dir_all(&out);
        let m = measure(Command::new("fakenect").args([
            dump.to_str().unwrap(),
            "fakenect-record",
            out.to_str().unwrap(),
        ]));
        let mut r = row(
            "fakenect replay",
            "libfreenect fakenect-record",
            frames,
            bytes,
            m,
        );
        r.note = "writes d-*.pgm and a-*.dump, no fsync".into();
        r
    });
    rounds.add(|| {
        let _ = std::fs::remove_dir_all(&out);
        let m = measure(
            Command::new("fakenect")
                .args([dump.to_str().unwrap(), bin.to_str().unwrap(), "record"])
                .args([
                    "--source",
                    "freenect",
                    "--layout",
                    "fakenect",
                    "--stats-socket",
                    "off",
                ])
                .args(["--out", out.to_str().unwrap()])
                .env("RUST_LOG", "warn"),
        );
        let mut r = row(
            "fakenect replay",
            "framerec --source freenect --layout fakenect",
            frames,
            bytes,
            m,
        );
        r.note = "every frame fdatasync'd before INDEX.txt names it".into();
        r
    });
    let rows = rounds.run(repeats);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&rec);
    let _ = std::fs::remove_dir_all(&dump);
    rows
}

fn render(rows: &[Row], sweep: &[Row], frames: u64, full: bool) -> String {
    let ceiling = rows
        .iter()
        .filter(|r| r.group == "ceiling")
        .map(|r| r.mb_per_s)
        .fold(f64::NAN, f64::max);
    let ceiling_cpu = |name: &str| {
        rows.iter()
            .find(|r| r.name == name)
            .map(|r| r.cpu_s_per_gib)
    };
    let node = rows
        .iter()
        .find(|r| r.name.starts_with("Node"))
        .map(|r| r.frames_per_s);
    let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    let mut s = format!(
        "framerec end-to-end benchmark ({}): {frames} frames of {FRAME_BYTES} bytes per streaming run, \
         medians of {} rounds (each round runs every row once, starting at a different row), one filesystem, \
         everything fsync'd.\n\n",
        if full { "full" } else { "smoke" },
        if full { 3 } else { 1 }
    );
    s.push_str("| group | run | MB/s | x ceiling | frames/s | x Node | CPU s/GiB | writing CPU s/GiB | peak RSS MB | write p50 ms | write p99 ms | capture-to-written p99 ms | note |\n");
    s.push_str(
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in rows.iter().chain(sweep) {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {} | {:.1} | {} | {:.2} | {} | {:.0} | {} | {} | {} | {} |\n",
            r.group,
            r.name,
            r.mb_per_s,
            if ceiling.is_nan() {
                "-".into()
            } else {
                format!("{:.2}", r.mb_per_s / ceiling)
            },
            r.frames_per_s,
            match (node, r.group.as_str()) {
                (Some(n), "framerec" | "per-frame files" | "fakenect replay") =>
                    format!("{:.2}", r.frames_per_s / n),
                _ => "-".into(),
            },
            r.cpu_s_per_gib,
            opt(r.writing_cpu_s_per_gib),
            r.peak_rss_mb,
            opt(r.write_p50_ms),
            opt(r.write_p99_ms),
            opt(r.capture_to_written_p99_ms),
            r.note
        ));
    }
    let pick = |n: &str| rows.iter().find(|r| r.name.starts_with(n));
    if let (Some(def), Some(direct)) = (pick("framerec default"), pick("framerec --direct-io")) {
        s.push_str(&format!(
            "\nframerec default / ceiling = {:.2}; --direct-io / ceiling = {:.2}; CPU per GiB, default / fio psync buffered with periodic fdatasync = {}; --direct-io / fio psync O_DIRECT = {}\n",
            def.mb_per_s / ceiling,
            direct.mb_per_s / ceiling,
            ceiling_cpu("fio psync buffered, periodic fdatasync").map_or("-".into(), |c| format!("{:.2}", def.cpu_s_per_gib / c)),
            ceiling_cpu("fio psync O_DIRECT").map_or("-".into(), |c| format!("{:.2}", direct.cpu_s_per_gib / c)),
        ));
        let writing = |r: &Row, fio: &str| match (r.writing_cpu_s_per_gib, ceiling_cpu(fio)) {
            (Some(w), Some(c)) => format!("{:.2}", w / c),
            _ => "-".into(),
        };
        s.push_str(&format!(
            "writing CPU per GiB (less the receiver thread, which runs the synthetic source), default / fio psync buffered with periodic fdatasync = {}; --direct-io / fio psync O_DIRECT = {}\n",
            writing(def, "fio psync buffered, periodic fdatasync"),
            writing(direct, "fio psync O_DIRECT"),
        ));
        if let Some(n) = node {
            s.push_str(&format!(
                "framerec default / Node.js 5 concurrent writes (frames/s, everything durable) = {:.2}\n",
                def.frames_per_s / n
            ));
        }
    }
    if let (Some(on), Some(off)) = (pick("framerec default"), pick("framerec --no-histograms")) {
        s.push_str(&format!(
            "statistics on / off (MB/s) = {:.3}\n",
            on.mb_per_s / off.mb_per_s
        ));
    }
    let big = sweep.iter().find(|r| r.name.starts_with("614400"));
    if let (Some(small), Some(big)) = (sweep.first(), big) {
        s.push_str(&format!(
            "16 KiB frames / 614,400-byte frames (MB/s) = {:.2}\n",
            small.mb_per_s / big.mb_per_s
        ));
    }
    s
}

fn plot(rows: &[Row], out: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    framerec::plot::load_font().map_err(|e| e.to_string())?;
    let root = SVGBackend::new(out, (1000, 40 + 28 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max = rows.iter().map(|r| r.mb_per_s).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("MB/s, same disk, same run", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(330)
        .build_cartesian_2d(0f64..max, (0..rows.len()).into_segmented())
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    chart
        .configure_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("MB/s")
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            let colour = match r.group.as_str() {
                "ceiling" => RGBColor(150, 150, 150),
                "framerec" => RGBColor(31, 119, 180),
                "baseline" => RGBColor(255, 127, 14),
                _ => RGBColor(44, 160, 44),
            };
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (r.mb_per_s, SegmentValue::Exact(i + 1)),
                ],
                colour.filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
