//! Scanning damage is linear in the file size, whatever the damage looks like. The crafted input
//! is the worst one known for a resyncing scanner: a segment full of fake chunk headers, one every
//! 64 bytes, each with consistent lengths claiming the rest of the file and a wrong CRC, so every
//! candidate passes the framing checks and needs its CRC checked over a long range. `verify`
//! (parse + checks) and `recover` run on 16, 64 and 256 MB of it; the report is the CPU time per
//! MB at each size and its ratio to the smallest (1.0 = linear; the old scanner was quadratic:
//! 0.7 / 2.8 / 11.6 / 51.5 s on 2 / 4 / 8 / 16 MB). Rounds interleave the sizes so drift hits
//! every size alike. `cargo bench --bench scan` (`-- --quick`: 1 round, 4/16/64 MB); under
//! `cargo test` a smoke run on 1-2 MB that asserts the outcomes, not the times.
//!
//! The `pipe:` source's resynchronisation gets the same treatment: a stream of almost-valid
//! headers (`FRF1` and a wrong version, over and over) of 2, 8 and 32 MB, read by the source for
//! 640x480 frames (its buffer then holds ~680 KB). The old buffer shifted its whole content for
//! every byte skipped: 1.4 s of CPU per MB.

use std::time::Duration;

use framerec::segment::{
    MAGIC, OP_CHUNK, OP_HEADER, RECORD_PREFIX, recover_segment, verify_segment,
};

/// Magic, a header record, then a fake chunk header every 64 bytes up to `len` bytes.
fn crafted(len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&MAGIC);
    // Header: profile "" and library "framerec" (framerec's file: recover rebuilds it, or puts
    // it aside when no chunk is intact; another writer's would be copied as it is).
    let body: Vec<u8> = [
        0u32.to_le_bytes().as_slice(),
        8u32.to_le_bytes().as_slice(),
        b"framerec",
    ]
    .concat();
    b.push(OP_HEADER);
    b.extend_from_slice(&(body.len() as u64).to_le_bytes());
    b.extend_from_slice(&body);
    const FIXED: usize = 8 + 8 + 8 + 4 + 4 + 8;
    while b.len() + 64 <= len {
        let at = b.len();
        // The chunk claims every byte to the end of the file.
        let records = (len - at - RECORD_PREFIX - FIXED) as u64;
        b.push(OP_CHUNK);
        b.extend_from_slice(&(FIXED as u64 + records).to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes()); // start time
        b.extend_from_slice(&0u64.to_le_bytes()); // end time
        b.extend_from_slice(&records.to_le_bytes()); // uncompressed size
        b.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes()); // wrong CRC
        b.extend_from_slice(&0u32.to_le_bytes()); // no compression
        b.extend_from_slice(&records.to_le_bytes());
        b.resize(at + 64, 0x55);
    }
    b.resize(len, 0x55);
    b
}

fn cpu() -> Duration {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let t =
        |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
    t(u.user_time()) + t(u.system_time())
}

/// CPU seconds per MB the `pipe:` source takes to read `bytes` (no valid frame in it).
fn pipe_resync(bytes: &[u8], dir: &std::path::Path) -> f64 {
    use framerec::socket_path::SocketAccess;
    use framerec::source::{PipeConfig, PipeEndpoint, PipeSource, Source};
    let path = dir.join("almost");
    std::fs::write(&path, bytes).unwrap();
    let cfg = PipeConfig {
        endpoint: PipeEndpoint::Fifo(path),
        width: 640,
        height: 480,
        topic: "/t".into(),
        frame_id: "f".into(),
        streams: Vec::new(),
        access: SocketAccess::OWNER_ONLY,
    };
    let mut src = PipeSource::open(cfg, Default::default()).unwrap();
    let mut buf = framerec::frame::FrameBuf::new(640 * 480 * 2);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let t = cpu();
    while src.next_frame(&mut buf, &stop).unwrap().is_some() {}
    (cpu() - t).as_secs_f64() / (bytes.len() as f64 / (1 << 20) as f64)
}

fn main() {
    // `cargo bench` passes --bench; under `cargo test` this is a smoke run of every path.
    let bench = std::env::args().any(|a| a == "--bench");
    let quick = std::env::args().any(|a| a == "--quick");
    let (sizes, rounds): (&[usize], usize) = match (bench, quick) {
        (false, _) => (&[1, 2], 1),
        (true, true) => (&[4, 16, 64], 1),
        (true, false) => (&[16, 64, 256], 3),
    };
    let files: Vec<Vec<u8>> = sizes.iter().map(|mb| crafted(mb << 20)).collect();
    // seconds per MB, per size and operation, summed over rounds
    let mut verify_s = vec![Vec::new(); sizes.len()];
    let mut recover_s = vec![Vec::new(); sizes.len()];
    for round in 0..rounds {
        for k in 0..sizes.len() {
            let i = (k + round) % sizes.len();
            let t = cpu();
            let r = verify_segment("crafted", &files[i]);
            verify_s[i].push((cpu() - t).as_secs_f64() / sizes[i] as f64);
            assert!(!r.ok(), "a crafted file must not verify");
            let t = cpu();
            let rec = recover_segment(&files[i], &[]);
            recover_s[i].push((cpu() - t).as_secs_f64() / sizes[i] as f64);
            assert!(rec.is_err(), "a crafted file holds no intact chunk");
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let tmp = std::env::temp_dir().join(format!("framerec-scan-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let pipe_sizes: &[usize] = match (bench, quick) {
        (false, _) => &[1],
        (true, true) => &[1, 4],
        (true, false) => &[2, 8, 32],
    };
    let almost: Vec<Vec<u8>> = pipe_sizes
        .iter()
        .map(|mb| b"FRF1\x02\x00".repeat((mb << 20) / 6))
        .collect();
    let mut pipe_s = vec![Vec::new(); pipe_sizes.len()];
    for round in 0..rounds {
        for k in 0..pipe_sizes.len() {
            let i = (k + round) % pipe_sizes.len();
            pipe_s[i].push(pipe_resync(&almost[i], &tmp));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("| size MB | verify ms/MB | ratio | recover ms/MB | ratio |");
    println!("|---|---|---|---|---|");
    let v0 = median(&mut verify_s[0].clone());
    let r0 = median(&mut recover_s[0].clone());
    for i in 0..sizes.len() {
        let v = median(&mut verify_s[i]);
        let r = median(&mut recover_s[i]);
        println!(
            "| {} | {:.3} | {:.2} | {:.3} | {:.2} |",
            sizes[i],
            v * 1e3,
            v / v0,
            r * 1e3,
            r / r0
        );
    }
    println!();
    println!("| pipe: almost-valid headers MB | ms/MB | ratio |");
    println!("|---|---|---|");
    let p0 = median(&mut pipe_s[0].clone());
    for i in 0..pipe_sizes.len() {
        let p = median(&mut pipe_s[i]);
        println!("| {} | {:.3} | {:.2} |", pipe_sizes[i], p * 1e3, p / p0);
    }
}
