//! Statistics on vs off, end to end: unpaced synthetic recordings with the latency histograms,
//! interval log and statistics socket on, alternated with recordings with counters only
//! (`stats.histograms = false`), in one run on one filesystem. Reports the ratio of median
//! throughput and of median CPU time (user + system of the process) per GB; target: within 2%.
//!
//! `cargo bench --bench stats_overhead` (8 pairs of 1500 frames of 614,400 bytes). Under
//! `cargo test` it runs one small pair as a smoke test and asserts nothing about timing.
//! `FRAMEREC_BENCH_DIR` chooses the filesystem (default `target/bench-stats`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use framerec::config::{Config, SourceConfig, StatsSocket};
use framerec::observe::cpu_time;
use framerec::pipeline::receiver::Limits;
use framerec::recorder::record;
use framerec::source::SyntheticConfig;
use nix::sys::resource::UsageWho;

struct Sample {
    mb_per_s: f64,
    cpu_s_per_gb: f64,
}

fn one(dir: &Path, frames: u64, stats: bool) -> Sample {
    let _ = std::fs::remove_dir_all(dir);
    let mut cfg = Config {
        output_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.source = SourceConfig::Synthetic(SyntheticConfig {
        fps: 0,
        ..SyntheticConfig::default()
    });
    cfg.stats.log_interval = None;
    if stats {
        cfg.stats.socket = StatsSocket::At(dir.with_extension("sock"));
        cfg.stats.interval_log = Some(Duration::from_secs(1));
    } else {
        cfg.stats.socket = StatsSocket::Off;
        cfg.stats.histograms = false;
    }
    let cpu = cpu_time(UsageWho::RUSAGE_SELF);
    let r = record(
        &cfg,
        Limits {
            frames: Some(frames),
            duration: None,
        },
        Arc::new(AtomicBool::new(false)),
    )
    .expect("recording starts");
    let cpu = (cpu_time(UsageWho::RUSAGE_SELF) - cpu).as_secs_f64();
    assert!(r.failure.is_none(), "{:?}", r.failure);
    assert_eq!(r.totals.written_frames, frames);
    let _ = std::fs::remove_dir_all(dir);
    Sample {
        mb_per_s: r.mb_per_s(),
        cpu_s_per_gb: cpu / (r.totals.written_bytes as f64 / 1e9),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (pairs, frames) = if bench { (8, 1500) } else { (1, 60) };
    let root = std::env::var_os("FRAMEREC_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-stats"));
    std::fs::create_dir_all(&root).expect("bench directory");
    let dir = root.join("rec");
    // Warm up the page cache and the disk once, unmeasured.
    one(&dir, frames / 2, true);
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which goes first, so drift over the run hits both alike.
        let (a, b) = if i % 2 == 0 {
            (true, false)
        } else {
            (false, true)
        };
        for stats in [a, b] {
            let s = one(&dir, frames, stats);
            println!(
                "pair {i} stats {:<3}: {:>7.1} MB/s, {:.3} CPU s/GB",
                if stats { "on" } else { "off" },
                s.mb_per_s,
                s.cpu_s_per_gb
            );
            if stats { &mut on } else { &mut off }.push(s);
        }
    }
    let m = |v: &[Sample], f: fn(&Sample) -> f64| median(v.iter().map(f).collect());
    let (on_mb, off_mb) = (m(&on, |s| s.mb_per_s), m(&off, |s| s.mb_per_s));
    let (on_cpu, off_cpu) = (m(&on, |s| s.cpu_s_per_gb), m(&off, |s| s.cpu_s_per_gb));
    println!(
        "median of {pairs} pair(s) of {frames} frames in {}:",
        root.display()
    );
    println!(
        "  throughput  on {on_mb:.1} MB/s, off {off_mb:.1} MB/s, on/off = {:.3}",
        on_mb / off_mb
    );
    println!(
        "  CPU per GB  on {on_cpu:.3} s, off {off_cpu:.3} s, on/off = {:.3}",
        on_cpu / off_cpu
    );
    // Within each pair the two runs are seconds apart: the median of per-pair ratios.
    let paired =
        |f: fn(&Sample) -> f64| median(on.iter().zip(&off).map(|(a, b)| f(a) / f(b)).collect());
    println!(
        "  per-pair median ratios: throughput on/off = {:.3}, CPU per GB on/off = {:.3}",
        paired(|s| s.mb_per_s),
        paired(|s| s.cpu_s_per_gb)
    );
}
