//! Fuzzes a recording directory as a new run finds it after a crash: 1-3 segment files (and
//! what an interrupted repair leaves beside them) go through `repair::finish_interrupted`,
//! `repair::repair`, `repair::resume_point` and verify, as `record` with
//! `recovery.at-start = "recover"` and `framerec recover DIR` do.
//!
//! The input is a flags byte, then up to three files split at [`SEP`]. Flags: bit 0, the first
//! segment id is 0 (else 7); bit 1, the damaged originals are deleted (else kept aside); bit 2,
//! the last file is the `.damaged` original of the segment before it; bit 3, the last file is
//! the `.recovering` side file of an interrupted repair of the segment before it (bit 2 wins).
//! Arbitrary bytes must never panic; every segment repair says it rebuilt is a finalized segment
//! with no structural damage, a second repair finds nothing more to rebuild, and (when
//! originals are kept) the resume point is past every segment id.
#![no_main]

#[path = "alloc_limit.rs"]
mod alloc_limit;

use std::path::{Path, PathBuf};

use framerec::repair::{Outcome, finish_interrupted, repair, resume_point};
use framerec::segment::{parse_segment, segment_file_name, verify_recording, verify_segment};
use framerec::sink::existing_segments;
use libfuzzer_sys::fuzz_target;

const SEP: &[u8] = b"<<framerec-segment>>";

fn scratch() -> PathBuf {
    let dir = Path::new("/dev/shm").join(format!("framerec-fuzz-recording-{}", std::process::id()));
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

fn listed(dir: &Path) -> Vec<PathBuf> {
    existing_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut files = split(rest, SEP);
    files.truncate(3);
    let first_id = if flags & 1 == 1 { 0 } else { 7 };
    let discard = flags & 2 == 2;
    let side = if files.len() >= 2 && flags & 4 == 4 {
        Some(".damaged")
    } else if files.len() >= 2 && flags & 8 == 8 {
        Some(".recovering")
    } else {
        None
    };
    let dir = scratch();
    let segments = files.len() - usize::from(side.is_some());
    let mut last_id = first_id;
    for (i, bytes) in files.iter().enumerate() {
        let name = if i < segments {
            last_id = first_id + i as u64;
            segment_file_name(last_id)
        } else {
            format!("{}{}", segment_file_name(last_id), side.unwrap_or_default())
        };
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    let _ = finish_interrupted(&dir, None).unwrap();
    let paths = listed(&dir);
    let starts_at_zero = first_id == 0;
    let outcomes = repair(&paths, starts_at_zero, discard).unwrap();
    for o in &outcomes {
        if let Outcome::Recovered { path, .. } = o {
            let c = parse_segment(&std::fs::read(path).unwrap());
            assert!(
                c.finalized && c.damage.is_empty(),
                "repair left {} damaged: {:?}",
                path.display(),
                c.damage
            );
        }
    }
    let again = repair(&listed(&dir), starts_at_zero, discard).unwrap();
    assert!(
        !again
            .iter()
            .any(|o| matches!(o, Outcome::Recovered { .. } | Outcome::Emptied { .. })),
        "a second repair rebuilt again: {again:?}"
    );

    let reports = listed(&dir)
        .iter()
        .map(|p| verify_segment(&p.display().to_string(), &std::fs::read(p).unwrap()))
        .collect();
    let _ = verify_recording(reports, starts_at_zero);
    let resume = resume_point(&dir).unwrap();
    // A segment with no intact chunk that repair deleted (`discard`) leaves no trace to avoid.
    if !discard {
        let next = resume.map_or(0, |r| r.next_segment_id);
        assert!(next > last_id, "resuming at segment {next} reuses an id");
    }
    let _ = std::fs::remove_dir_all(&dir);
});
