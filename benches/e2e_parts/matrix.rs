//! The I/O-mode matrix: `FRAMEREC_BENCH_MATRIX=1 cargo bench --bench e2e`.
//!
//! The disk's true ceiling is the best of a fio matrix (buffered 1 and 4 MiB; `O_DIRECT` 1 and
//! 4 MiB at queue depths 1, 2, 4 and 8 through io_uring, each with and without `fallocate`) and of
//! framerec's own modes (its defaults, `--io-mode buffered`, `--io-mode direct`, and what
//! `framerec tune` recommends for the directory). Every run writes the same bytes (4,096 frames
//! of 614,400 bytes, 2.5 GB, so that process start-up flatters nobody), made durable, after
//! `sync` and a dropped page cache (framerec's synthetic source with `--content pattern`, which
//! costs it ~20 us a frame: rendering the scene would make the source the limit); the rows run in interleaved rounds (each round every row
//! once, the order rotating and reversing) so that the disk's drift over minutes falls on every
//! row alike. Writes `matrix.md` and `matrix.json`: per row the median MB/s, its range, CPU
//! s/GiB (framerec's also less its receiver thread, which makes the synthetic frames), and per
//! round the best row and framerec's default as a fraction of it.

use std::path::Path;
use std::process::Command;

use super::{FRAME_BYTES, Row, framerec, measure, row};

/// Frames per run: 2.5 GB of 614,400-byte frames.
pub const FRAMES: u64 = 4096;

/// One fio sequential write of `total` bytes into `dir`.
fn fio(dir: &Path, name: &str, args: &[String], total: u64) -> Row {
    let file = dir.join("fio.dat");
    let _ = std::fs::remove_file(&file);
    let mut cmd = Command::new("fio");
    cmd.args(["--name=matrix", "--rw=write", "--end_fsync=1"])
        .arg("--output-format=json")
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={total}"))
        .args(args);
    let m = measure(&mut cmd);
    let _ = std::fs::remove_file(&file);
    let mut r = row("fio", name, total / FRAME_BYTES, total, m);
    r.note = args.join(" ");
    r
}

/// The fio rows: (name, arguments).
fn fio_jobs() -> Vec<(String, Vec<String>)> {
    let mut jobs = Vec::new();
    for bs in ["1m", "4m"] {
        jobs.push((
            format!("fio buffered psync {bs}"),
            vec![
                "--ioengine=psync".into(),
                format!("--bs={bs}"),
                "--fallocate=none".into(),
            ],
        ));
    }
    for bs in ["1m", "4m"] {
        for depth in [1, 2, 4, 8] {
            for fallocate in ["none", "native"] {
                jobs.push((
                    format!("fio O_DIRECT io_uring {bs} qd{depth} fallocate={fallocate}"),
                    vec![
                        "--ioengine=io_uring".into(),
                        "--direct=1".into(),
                        format!("--bs={bs}"),
                        format!("--iodepth={depth}"),
                        format!("--fallocate={fallocate}"),
                    ],
                ));
            }
        }
    }
    jobs
}

/// `framerec tune`'s recommendation for `dir`, written into a config file; `None` when this
/// build has no `tune` or it fails (the row is then left out, and said so).
fn tuned_config(bin: &Path, dir: &Path, root: &Path, small: bool) -> Option<std::path::PathBuf> {
    let config = root.join("tuned.toml");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/framerec.toml");
    std::fs::copy(shipped, &config).ok()?;
    let out = Command::new(bin)
        .args(["tune", dir.to_str()?, "--write", config.to_str()?])
        // A smoke run's tune gets the least budget (4 s); a full run's its default.
        .args(if small {
            &["--seconds", "4"][..]
        } else {
            &[][..]
        })
        .env("RUST_LOG", "warn")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "framerec tune failed; no tune row: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(config)
}

/// Runs the matrix in `rounds` rounds on `root`'s filesystem; writes the reports there.
pub fn run(bin: &Path, root: &Path, frames: u64, rounds: usize) {
    let scratch = root.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let total = frames * FRAME_BYTES;
    let tuned = tuned_config(bin, &scratch, root, frames < FRAMES);
    let mut jobs: Vec<(String, Box<dyn Fn() -> Row + '_>)> = Vec::new();
    for (name, args) in fio_jobs() {
        let scratch = &scratch;
        jobs.push((
            name.clone(),
            Box::new(move || fio(scratch, &name, &args, total)),
        ));
    }
    let mut framerec_rows: Vec<(&str, Vec<String>)> = vec![
        ("framerec default", vec![]),
        (
            "framerec --io-mode buffered",
            vec!["--io-mode".into(), "buffered".into()],
        ),
        (
            "framerec --io-mode direct",
            vec!["--io-mode".into(), "direct".into()],
        ),
    ];
    if let Some(config) = &tuned {
        framerec_rows.push((
            "framerec, tune's choice",
            vec!["--config".into(), config.display().to_string()],
        ));
    }
    for (name, args) in framerec_rows {
        let scratch = &scratch;
        jobs.push((
            name.to_string(),
            Box::new(move || {
                // The pattern content: rendering the scene (~0.5 ms a frame) would make the
                // source, not the disk, the limit.
                let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
                args.extend(["--content", "pattern"]);
                let mut r = framerec(bin, &scratch.join("rec"), frames, (640, 480), &args);
                r.name = name.to_string();
                r
            }),
        ));
    }
    let n = jobs.len();
    let mut runs: Vec<Vec<Row>> = vec![Vec::new(); n];
    for round in 0..rounds {
        let start = round * n / rounds.max(1);
        for k in 0..n {
            let i = if round % 2 == 0 {
                (start + k) % n
            } else {
                (start + n - k) % n
            };
            let r = (jobs[i].1)();
            eprintln!("round {} {}: {:.1} MB/s", round + 1, jobs[i].0, r.mb_per_s);
            runs[i].push(r);
        }
    }
    let report = render(
        &jobs.iter().map(|j| j.0.clone()).collect::<Vec<_>>(),
        &runs,
        frames,
        tuned.is_some(),
    );
    println!("{report}");
    std::fs::write(root.join("matrix.md"), &report).unwrap();
    std::fs::write(
        root.join("matrix.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "names": jobs.iter().map(|j| &j.0).collect::<Vec<_>>(), "runs": runs })).unwrap(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The report: rows by median MB/s, then each round's best and the default's share of it.
fn render(names: &[String], runs: &[Vec<Row>], frames: u64, tuned: bool) -> String {
    let rounds = runs[0].len();
    let mut s = format!(
        "framerec I/O-mode matrix: {frames} frames of {FRAME_BYTES} bytes ({:.2} GB) per run, everything \
         durable, {rounds} interleaved rounds, `sync` and a dropped page cache before every run; MB/s \
         is bytes over the process's wall time.{}\n\n\
         | run | median MB/s | min | max | CPU s/GiB | writing CPU s/GiB |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
        (frames * FRAME_BYTES) as f64 / 1e9,
        if tuned {
            ""
        } else {
            " (no `framerec tune` row: this build has no tune, or it failed)"
        }
    );
    let mut order: Vec<usize> = (0..names.len()).collect();
    let med = |i: usize| median(&mut runs[i].iter().map(|r| r.mb_per_s).collect::<Vec<_>>());
    order.sort_by(|a, b| med(*b).total_cmp(&med(*a)));
    for i in order {
        let v: Vec<f64> = runs[i].iter().map(|r| r.mb_per_s).collect();
        let cpu = median(&mut runs[i].iter().map(|r| r.cpu_s_per_gib).collect::<Vec<_>>());
        let writing = runs[i]
            .iter()
            .filter_map(|r| r.writing_cpu_s_per_gib)
            .collect::<Vec<_>>();
        s.push_str(&format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.2} | {} |\n",
            names[i],
            med(i),
            v.iter().copied().fold(f64::MAX, f64::min),
            v.iter().copied().fold(0.0, f64::max),
            cpu,
            if writing.is_empty() {
                "-".to_string()
            } else {
                format!("{:.2}", median(&mut writing.clone()))
            }
        ));
    }
    let default = names.iter().position(|n| n == "framerec default");
    s.push_str("\n| round | best run | best MB/s | default MB/s | default / best |\n| ---: | --- | ---: | ---: | ---: |\n");
    let per_round: Vec<Vec<f64>> = (0..rounds)
        .map(|r| runs.iter().map(|row| row[r].mb_per_s).collect())
        .collect();
    for (round, mbs) in per_round.iter().enumerate() {
        let best = (0..mbs.len())
            .max_by(|a, b| mbs[*a].total_cmp(&mbs[*b]))
            .unwrap();
        let d = default.map(|d| mbs[d]).unwrap_or(f64::NAN);
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.2} |\n",
            round + 1,
            names[best],
            mbs[best],
            d,
            d / mbs[best]
        ));
    }
    let best_fio_cpu = (0..names.len())
        .filter(|i| names[*i].starts_with("fio"))
        .map(|i| median(&mut runs[i].iter().map(|r| r.cpu_s_per_gib).collect::<Vec<_>>()))
        .fold(f64::MAX, f64::min);
    if let Some(d) = default {
        let all = median(&mut runs[d].iter().map(|r| r.cpu_s_per_gib).collect::<Vec<_>>());
        let writing = median(
            &mut runs[d]
                .iter()
                .filter_map(|r| r.writing_cpu_s_per_gib)
                .collect::<Vec<_>>(),
        );
        s.push_str(&format!(
            "\nCPU per GiB, framerec default / fio's cheapest row: {:.2} (writing only, less the receiver thread: {:.2})\n",
            all / best_fio_cpu,
            writing / best_fio_cpu
        ));
    }
    s
}
