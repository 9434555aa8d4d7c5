//! Raw against zstd against lz4: `FRAMEREC_BENCH_CODECS=1 cargo bench --bench e2e`.
//!
//! framerec unpaced on the synthetic scene (realistic to compress), 614,400-byte depth frames,
//! everything durable, with `--compression none`, `zstd` (level 1) and `lz4`, beside fio's
//! `O_DIRECT` 1 MiB qd8 write of the same bytes (the disk's raw ceiling), in interleaved rounds.
//! Rows: input MB/s (payload over wall time), bytes on disk, ratio, CPU s/GiB of input, chunks
//! compressed and written raw. The scene costs the receiver ~0.5 ms of CPU a frame: on a
//! machine with few cores the source competes with the compressors, which the CPU column shows.

use std::path::Path;

use super::{FRAME_BYTES, Row, framerec, measure, row};

struct Run {
    row: Row,
    on_disk: u64,
    compressed: u64,
    raw: u64,
}

fn framerec_codec(bin: &Path, scratch: &Path, frames: u64, codec: &str) -> Run {
    let args = ["--compression", codec, "--segment-bytes", "4294967296"];
    let mut r = framerec(bin, &scratch.join("rec"), frames, (640, 480), &args);
    r.name = format!("framerec --compression {codec}");
    Run {
        on_disk: r.bytes_on_disk.unwrap_or(0),
        compressed: r.chunks_compressed.unwrap_or(0),
        raw: r.chunks_not_compressed.unwrap_or(0),
        row: r,
    }
}

/// Runs the rows in `rounds` rounds; writes `codecs.md` in `root`.
pub fn run(bin: &Path, root: &Path, frames: u64, rounds: usize) {
    let scratch = root.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let total = frames * FRAME_BYTES;
    let codecs = ["none", "zstd", "lz4"];
    let mut runs: Vec<Vec<Run>> = (0..=codecs.len()).map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..=codecs.len() {
            let i = (k + round) % (codecs.len() + 1);
            let r = if i == codecs.len() {
                let file = scratch.join("fio.dat");
                let mut cmd = std::process::Command::new("fio");
                cmd.args(["--name=ceiling", "--rw=write", "--end_fsync=1"])
                    .args([
                        "--ioengine=io_uring",
                        "--direct=1",
                        "--bs=1m",
                        "--iodepth=8",
                    ])
                    .arg(format!("--filename={}", file.display()))
                    .arg(format!("--size={total}"));
                let m = measure(&mut cmd);
                let _ = std::fs::remove_file(&file);
                let row = row("fio", "fio O_DIRECT io_uring 1m qd8", frames, total, m);
                Run {
                    row,
                    on_disk: total,
                    compressed: 0,
                    raw: 0,
                }
            } else {
                framerec_codec(bin, &scratch, frames, codecs[i])
            };
            eprintln!(
                "round {} {}: {:.1} MB/s",
                round + 1,
                r.row.name,
                r.row.mb_per_s
            );
            runs[i].push(r);
        }
    }
    let mut s = format!(
        "Compression, side by side: {frames} depth frames of {FRAME_BYTES} bytes of the synthetic scene per run, unpaced, \
         everything durable, {rounds} interleaved rounds (medians by MB/s).\n\n\
         | run | input MB/s | bytes on disk | ratio | CPU s/GiB of input | chunks compressed / left raw (not worth it) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    for r in runs.iter_mut() {
        r.sort_by(|a, b| a.row.mb_per_s.total_cmp(&b.row.mb_per_s));
        let m = &r[r.len() / 2];
        s.push_str(&format!(
            "| {} | {:.1} | {} | {:.2} | {:.2} | {} / {} |\n",
            m.row.name,
            m.row.mb_per_s,
            m.on_disk,
            m.row.bytes as f64 / m.on_disk.max(1) as f64,
            m.row.cpu_s_per_gib,
            m.compressed,
            m.raw
        ));
    }
    println!("{s}");
    std::fs::write(root.join("codecs.md"), &s).unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}
