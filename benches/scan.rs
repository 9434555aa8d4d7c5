//! Scanning damage is linear in the file size, whatever the damage looks like. The crafted input
//! is the worst one known for a resyncing scanner: a segment full of fake chunk headers, one every
//! 64 bytes, each with consistent lengths claiming the rest of the file and a wrong CRC, so every
//! candidate passes the framing checks and needs its CRC checked over a long range. `verify`
//! (parse + checks) and `recover` run on 16, 64 and 256 MB of it; the report is the CPU time per
//! MB at each size and its ratio to the smallest (1.0 = linear; the old scanner was quadratic:
//! 0.7 / 2.8 / 11.6 / 51.5 s on 2 / 4 / 8 / 16 MB). Rounds interleave the sizes so drift hits
//! every size alike. `cargo bench --bench scan` (`-- --quick`: 1 round, 4/16/64 MB).

use std::time::Duration;

use framerec::segment::{
    MAGIC, OP_CHUNK, OP_HEADER, RECORD_PREFIX, recover_segment, verify_segment,
};

/// Magic, a header record, then a fake chunk header every 64 bytes up to `len` bytes.
fn crafted(len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&MAGIC);
    // Header: profile "" and library "x".
    let body: Vec<u8> = [
        0u32.to_le_bytes().as_slice(),
        1u32.to_le_bytes().as_slice(),
        b"x",
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

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (sizes, rounds): (&[usize], usize) = if quick {
        (&[4, 16, 64], 1)
    } else {
        (&[16, 64, 256], 3)
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
}
