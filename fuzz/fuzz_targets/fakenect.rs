//! Fuzzes the fakenect dump reader behind `--source fakenect:DIR` and `verify` of a
//! fakenect-layout directory: `INDEX.txt` lines, the `P5` header of each depth file and
//! `DROPS.txt`. The input is a flags byte (bit 0: looped replay), then sections split at
//! [`SEP`]: `INDEX.txt`, `DROPS.txt`, then the contents of the files the index names, in order.
//! Arbitrary bytes must never panic; every frame replayed has exactly the dump's frame size,
//! and a drop line names a range, first <= last. The same directory is then read as a
//! recording (`info`, `export`: every whole frame read is its stream's size) and recovered
//! (`recover`): after a repair, `INDEX.txt` ends whole and names only whole frames, and a
//! second repair finds nothing to do.
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use framerec::frame::FrameBuf;
use framerec::source::{FakenectConfig, FakenectSource, Source};
use framerec::sink::fakenect::{DROPS, INDEX, dropped_frames, read_drops};
use framerec::store::fakenect::{Dump, IndexEnd, recover};
use libfuzzer_sys::fuzz_target;

const SEP: &[u8] = b"\n--8<--\n";
/// Frame files written per input, and frames read (a looped replay never ends by itself).
const MAX_FILES: usize = 8;
const MAX_FRAMES: usize = 24;

fn scratch() -> PathBuf {
    let dir = Path::new("/dev/shm").join(format!("framerec-fuzz-fakenect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn split<'a>(mut data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(at) = data.windows(sep.len()).position(|w| w == sep) {
        out.push(&data[..at]);
        data = &data[at + sep.len()..];
    }
    out.push(data);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let sections = split(rest, SEP);
    let dir = scratch();
    let index = sections[0];
    std::fs::write(dir.join(INDEX), index).unwrap();
    let drops = sections.get(1).copied().unwrap_or_default();
    std::fs::write(dir.join(DROPS), drops).unwrap();
    let names = index
        .split(|b| *b == b'\n')
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|n| {
            !n.is_empty()
                && n.len() <= 100
                && !n.contains(['/', '\0'])
                && *n != "."
                && *n != ".."
                && *n != INDEX
                && *n != DROPS
        });
    for (name, body) in names.zip(sections.iter().skip(2)).take(MAX_FILES) {
        let _ = std::fs::write(dir.join(name), body);
    }

    if let Ok(listed) = read_drops(drops) {
        for d in &listed {
            assert!(d.first <= d.last, "DROPS.txt range {:?}..={:?}", d.first, d.last);
        }
        let _ = dropped_frames(&listed);
    }

    let cfg = FakenectConfig {
        dir: dir.clone(),
        paced: false,
        looped: flags & 1 == 1,
        topic: "/camera/depth".into(),
        frame_id: "camera_depth".into(),
        // Every stream the index has lines of.
        streams: framerec::source::dump_streams(&dir).unwrap_or_default(),
    };
    if let Ok(mut src) = FakenectSource::open(cfg) {
        assert!(src.frames() >= 1);
        let sizes: Vec<usize> = src.streams().iter().map(|s| s.frame_bytes()).collect();
        let stop = AtomicBool::new(false);
        let mut buf = FrameBuf::new(sizes.iter().copied().max().unwrap_or(0));
        for _ in 0..MAX_FRAMES {
            let Ok(s) = src.next_stream(&stop) else { break };
            match src.next_frame(&mut buf, &stop) {
                Ok(Some(_)) => assert_eq!(buf.payload().len(), sizes[s.index()]),
                Ok(None) | Err(_) => break,
            }
        }
    }
    if let Ok(dump) = Dump::open(&dir) {
        let mut buf = Vec::new();
        for f in dump.frames.iter().filter(|f| f.is_whole()).take(MAX_FRAMES) {
            if dump.read_payload(f, &mut buf).is_ok() {
                let s = dump.stream(f.kind).expect("a whole frame's stream");
                assert_eq!(buf.len() as u64, s.frame_bytes());
            }
        }
    }
    if let Ok(plan) = recover::plan(&dir)
        && recover::apply(&dir, &plan).is_ok()
    {
        let after = Dump::open(&dir).expect("a recovered recording reads");
        assert_eq!(after.end, IndexEnd::Whole);
        assert!(after.frames.iter().all(|f| f.is_whole()));
        assert!(recover::plan(&dir).expect("it plans again").is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
});
