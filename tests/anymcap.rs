//! framerec's tools on MCAP files other writers made: the Rust `mcap` crate (records inside
//! chunks by default, unchunked, zstd, lz4, attachments, metadata) and the official Python
//! writer. verify, info and export read them; recover repairs them cut anywhere.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{framerec, text};

/// Images per file, and their size.
const IMAGES: u64 = 40;
const W: u32 = 8;
const H: u32 = 6;

/// A `foxglove.RawImage` protobuf message: an 8x6 16UC1 image whose pixels are `seq`.
fn raw_image(seq: u64) -> Vec<u8> {
    let mut m = Vec::new();
    let key = |field: u8, wire: u8| (field << 3) | wire;
    m.push(key(2, 5));
    m.extend_from_slice(&W.to_le_bytes());
    m.push(key(3, 5));
    m.extend_from_slice(&H.to_le_bytes());
    m.push(key(4, 2));
    m.push(5);
    m.extend_from_slice(b"16UC1");
    m.push(key(5, 5));
    m.extend_from_slice(&(W * 2).to_le_bytes());
    let data: Vec<u8> = (0..W * H)
        .flat_map(|_| (seq as u16).to_le_bytes())
        .collect();
    m.push(key(6, 2));
    m.push(data.len() as u8); // 96 < 128: one varint byte
    m.extend_from_slice(&data);
    m
}

/// How the Rust `mcap` crate writes a test file.
#[derive(Clone, Copy, Debug)]
enum RustLayout {
    Chunked(Option<mcap::Compression>),
    Unchunked,
}

/// A file from the Rust `mcap` crate: a `foxglove.RawImage` channel `/cam` with [`IMAGES`]
/// images, a JSON channel `/log` with one message per image, an attachment and a metadata
/// record; small chunks so there are many.
fn rust_file(dir: &Path, layout: RustLayout) -> PathBuf {
    let path = dir.join(format!("rust-{layout:?}.mcap").replace(['(', ')', ' '], ""));
    let opts = match layout {
        RustLayout::Chunked(c) => mcap::WriteOptions::new()
            .compression(c)
            .chunk_size(Some(1024)),
        RustLayout::Unchunked => mcap::WriteOptions::new().use_chunks(false),
    };
    let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w = opts.create(file).unwrap();
    let img_schema = w
        .add_schema("foxglove.RawImage", "protobuf", b"not a real descriptor")
        .unwrap();
    let cam = w
        .add_channel(img_schema, "/cam", "protobuf", &BTreeMap::new())
        .unwrap();
    let log = w.add_channel(0, "/log", "json", &BTreeMap::new()).unwrap();
    for i in 0..IMAGES {
        let t = 1_000_000_000 + i * 1_000_000;
        let header = |channel_id| mcap::records::MessageHeader {
            channel_id,
            sequence: i as u32,
            log_time: t,
            publish_time: t,
        };
        w.write_to_known_channel(&header(cam), &raw_image(i))
            .unwrap();
        w.write_to_known_channel(&header(log), format!("{{\"i\":{i}}}").as_bytes())
            .unwrap();
    }
    w.attach(&mcap::Attachment {
        log_time: 5,
        create_time: 5,
        name: "calibration.txt".into(),
        media_type: "text/plain".into(),
        data: std::borrow::Cow::Borrowed(b"fx=1"),
    })
    .unwrap();
    w.write_metadata(&mcap::records::Metadata {
        name: "site".into(),
        metadata: BTreeMap::from([("where".to_string(), "lab".to_string())]),
    })
    .unwrap();
    w.finish().unwrap();
    path
}

fn rust_layouts() -> Vec<RustLayout> {
    vec![
        RustLayout::Chunked(None),
        RustLayout::Chunked(Some(mcap::Compression::Zstd)),
        RustLayout::Chunked(Some(mcap::Compression::Lz4)),
        RustLayout::Unchunked,
    ]
}

/// Messages per topic in `bytes`, read with the `mcap` crate.
fn count_with_mcap_crate(bytes: &[u8]) -> BTreeMap<String, u64> {
    let mut n = BTreeMap::new();
    for m in mcap::MessageStream::new(bytes).unwrap() {
        *n.entry(m.unwrap().channel.topic.clone()).or_insert(0) += 1;
    }
    n
}

#[test]
fn verify_accepts_rust_mcap_files_and_names_the_checks_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for layout in rust_layouts() {
        let path = rust_file(dir.path(), layout);
        let o = framerec(&["verify", path.to_str().unwrap()]);
        let t = text(&o);
        assert!(o.status.success(), "{layout:?}: {t}");
        assert!(t.contains("not checked"), "{layout:?}: {t}");
    }
}

#[test]
fn info_lists_every_channel_of_rust_mcap_files_with_its_count() {
    let dir = tempfile::tempdir().unwrap();
    for layout in rust_layouts() {
        let path = rust_file(dir.path(), layout);
        let o = framerec(&["info", path.to_str().unwrap()]);
        let t = text(&o);
        assert!(o.status.success(), "{layout:?}: {t}");
        for topic in ["/cam", "/log"] {
            let line = t
                .lines()
                .find(|l| l.contains(topic))
                .unwrap_or_else(|| panic!("{layout:?}: no {topic} in {t}"));
            assert!(line.contains(&IMAGES.to_string()), "{layout:?}: {line}");
        }
    }
}

/// Files from the official Python writer (`tests/python/write_mcap.py`), one per compression.
fn python_files(dir: &Path) -> Vec<PathBuf> {
    ["zstd", "lz4", "none"]
        .iter()
        .map(|c| {
            let path = dir.join(format!("python-{c}.mcap"));
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/write_mcap.py");
            let o = std::process::Command::new(common::python())
                .arg(script)
                .arg(&path)
                .arg(c)
                .arg(IMAGES.to_string())
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", text(&o));
            path
        })
        .collect()
}

/// The MCAP file of a rosbag2 bag the Python `rosbags` package writes
/// (`tests/python/write_rosbag.py`): profile ros2, CDR messages on `/chatter` and `/cam`.
fn rosbags_file(dir: &Path) -> PathBuf {
    let bag = dir.join("bag");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/write_rosbag.py");
    let o = std::process::Command::new(common::python())
        .arg(script)
        .arg(&bag)
        .arg(IMAGES.to_string())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    bag.join("bag.mcap")
}

/// Every test file: the Rust crate's, the Python writer's and rosbags'.
fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = rust_layouts()
        .into_iter()
        .map(|l| rust_file(dir, l))
        .collect();
    files.extend(python_files(dir));
    files.push(rosbags_file(dir));
    files
}

#[test]
fn verify_accepts_python_mcap_files_and_names_the_checks_it_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for path in python_files(dir.path()) {
        let o = framerec(&["verify", path.to_str().unwrap()]);
        let t = text(&o);
        assert!(o.status.success(), "{}: {t}", path.display());
        assert!(t.contains("not checked: sequence continuity"), "{t}");
        let o = framerec(&["info", path.to_str().unwrap()]);
        let t = text(&o);
        assert!(t.contains("/log (json), 40 messages"), "{t}");
    }
}

#[test]
fn verify_and_info_read_a_rosbags_bag_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = rosbags_file(dir.path());
    let o = framerec(&["verify", path.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("not checked: sequence continuity"), "{t}");
    let o = framerec(&["info", path.to_str().unwrap()]);
    let t = text(&o);
    for topic in ["/chatter", "/cam"] {
        assert!(t.contains(&format!("{topic} (cdr), 40 messages")), "{t}");
    }
    // The bag directory itself (metadata.yaml and bag.mcap): its MCAP files are read.
    let bag = path.parent().unwrap().to_str().unwrap();
    let o = framerec(&["verify", bag]);
    assert!(o.status.success(), "{}", text(&o));
    let o = framerec(&["info", bag]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("/cam (cdr), 40 messages"), "{t}");
    // rosbag2 leaves every sequence number 0: the frames are counted by place, not as one.
    assert!(t.contains("/cam: 40 frames (seq 0..=39)"), "{t}");
    // stats reads interval logs: an MCAP file is refused with a sentence, not read as lines.
    let o = framerec(&["stats", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("is an MCAP recording, not an interval log"),
        "{}",
        text(&o)
    );
    assert!(
        !text(&o).contains("skipped an unreadable line"),
        "{}",
        text(&o)
    );
}

#[test]
fn export_writes_the_raw_image_channel_of_any_file_and_refuses_others_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<PathBuf> = rust_layouts()
        .into_iter()
        .map(|l| rust_file(dir.path(), l))
        .collect();
    files.extend(python_files(dir.path()));
    for path in files {
        let out = dir.path().join("out");
        let _ = std::fs::remove_dir_all(&out);
        let args = ["export", "--format", "pgm", "--out", out.to_str().unwrap()];
        let o = framerec(&[&args[..], &[path.to_str().unwrap()]].concat());
        assert!(o.status.success(), "{}: {}", path.display(), text(&o));
        let mut names: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len() as u64, IMAGES, "{}", path.display());
        // The last image: P5 header, then 16-bit big-endian pixels whose value is its number.
        let last = std::fs::read(out.join(names.last().unwrap())).unwrap();
        let pixels = &last[last.len() - (W * H * 2) as usize..];
        assert!(
            pixels
                .chunks(2)
                .all(|p| p == (IMAGES as u16 - 1).to_be_bytes()),
            "{}",
            path.display()
        );

        let _ = std::fs::remove_dir_all(&out);
        let args = ["export", "--stream", "/log", "--format", "pgm", "--out"];
        let o = framerec(&[&args[..], &[out.to_str().unwrap(), path.to_str().unwrap()]].concat());
        assert!(!o.status.success());
        assert!(
            text(&o).contains("not one framerec exports"),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn export_numbers_another_writers_frames_by_place_when_their_sequence_numbers_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq0.mcap");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/write_mcap.py");
    let o = std::process::Command::new(common::python())
        .arg(script)
        .arg(&path)
        .args(["zstd", &IMAGES.to_string(), "seq0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = dir.path().join("out");
    let args = ["export", "--format", "pgm", "--out", out.to_str().unwrap()];
    let o = framerec(&[&args[..], &[path.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let files = std::fs::read_dir(&out).unwrap().count() as u64;
    assert_eq!(files, IMAGES, "every frame in a file of its own");
    let last = std::fs::read(out.join(format!("{:010}.pgm", IMAGES - 1))).unwrap();
    let pixels = &last[last.len() - (W * H * 2) as usize..];
    assert!(
        pixels
            .chunks(2)
            .all(|p| p == (IMAGES as u16 - 1).to_be_bytes())
    );
}

/// Messages the `mcap` crate reads from the records of `full` that end at or before `cut`:
/// those outside chunks, and those of every chunk complete before the cut.
fn complete_before(full: &[u8], cut: usize) -> u64 {
    let summary = mcap::Summary::read(full).unwrap().unwrap();
    let mut in_chunk = BTreeMap::new();
    for idx in &summary.chunk_indexes {
        let n = summary.stream_chunk(full, idx).unwrap().count() as u64;
        in_chunk.insert(idx.chunk_start_offset, n);
    }
    let (mut at, mut n) = (8, 0);
    while at + 9 <= full.len() {
        let len = u64::from_le_bytes(full[at + 1..at + 9].try_into().unwrap()) as usize;
        let end = at + 9 + len;
        if end > cut {
            break;
        }
        match full[at] {
            0x05 => n += 1,
            0x06 => n += in_chunk[&(at as u64)],
            0x0f => break,
            _ => {}
        }
        at = end;
    }
    n
}

/// splitmix64: the cut offsets, the same on every run.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn recover_of_any_file_cut_anywhere_keeps_every_complete_chunk_and_passes_mcap_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 17;
    for path in all_files(dir.path()) {
        let full = std::fs::read(&path).unwrap();
        for i in 0..10 {
            let cut = 8 + (next(&mut seed) % (full.len() as u64 - 8)) as usize;
            let cut_path = dir.path().join(format!("cut-{i}.mcap"));
            std::fs::write(&cut_path, &full[..cut]).unwrap();
            let what = format!("{} cut at {cut}", path.display());
            let o = framerec(&["recover", "--discard-damaged", cut_path.to_str().unwrap()]);
            assert!(o.status.success(), "{what}: {}", text(&o));
            if !cut_path.exists() {
                // Cut inside the header: nothing says what the file was, nothing is whole.
                assert!(
                    text(&o).contains("holds no intact chunk"),
                    "{what}: {}",
                    text(&o)
                );
                assert_eq!(complete_before(&full, cut), 0, "{what}");
                continue;
            }
            let doctor = common::mcap_doctor(&cut_path);
            let said = text(&doctor);
            assert!(doctor.status.success(), "{what}: {said}");
            assert!(!said.to_lowercase().contains("warning"), "{what}: {said}");
            let v = framerec(&["verify", cut_path.to_str().unwrap()]);
            assert!(v.status.success(), "{what}: verify: {}", text(&v));
            let rebuilt = std::fs::read(&cut_path).unwrap();
            let kept: u64 = count_with_mcap_crate(&rebuilt).values().sum();
            assert_eq!(kept, complete_before(&full, cut), "{what}");
        }
    }
}

#[test]
fn recover_of_a_damaged_chunk_in_the_middle_keeps_every_other_chunk() {
    let dir = tempfile::tempdir().unwrap();
    use mcap::Compression::{Lz4, Zstd};
    for layout in [
        RustLayout::Chunked(None),
        RustLayout::Chunked(Some(Zstd)),
        RustLayout::Chunked(Some(Lz4)),
    ] {
        let path = rust_file(dir.path(), layout);
        let full = std::fs::read(&path).unwrap();
        let summary = mcap::Summary::read(&full).unwrap().unwrap();
        let chunks = &summary.chunk_indexes;
        assert!(chunks.len() > 3, "{layout:?}");
        // A byte in the middle of the third chunk: its records are damaged.
        let hit = &chunks[2];
        let mut bytes = full.clone();
        bytes[(hit.chunk_start_offset + hit.chunk_length / 2) as usize] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let o = framerec(&["recover", "--discard-damaged", path.to_str().unwrap()]);
        assert!(o.status.success(), "{layout:?}: {}", text(&o));
        let doctor = common::mcap_doctor(&path);
        assert!(doctor.status.success(), "{layout:?}: {}", text(&doctor));
        assert!(!text(&doctor).to_lowercase().contains("warning"));
        let v = framerec(&["verify", path.to_str().unwrap()]);
        assert!(v.status.success(), "{layout:?}: verify: {}", text(&v));
        let lost = summary.stream_chunk(&full, hit).unwrap().count() as u64;
        let kept: u64 = count_with_mcap_crate(&std::fs::read(&path).unwrap())
            .values()
            .sum();
        assert_eq!(kept, 2 * IMAGES - lost, "{layout:?}");
    }
}

#[test]
fn a_byte_changed_outside_chunks_fails_the_data_section_crc() {
    let dir = tempfile::tempdir().unwrap();
    let path = rust_file(dir.path(), RustLayout::Chunked(None));
    let mut bytes = std::fs::read(&path).unwrap();
    // The attachment's data: covered by no chunk CRC, only by the data section's.
    let at = bytes.windows(4).position(|w| w == b"fx=1").unwrap();
    bytes[at + 3] = b'2';
    std::fs::write(&path, &bytes).unwrap();
    let o = framerec(&["verify", path.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("data section CRC saved"), "{t}");
}

#[test]
fn an_attachment_claiming_a_huge_name_is_damage_not_an_allocation() {
    // The segment fuzz target's find: the `mcap` crate's record parser allocated the length the
    // attachment's name claims.
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions/segment/attachment-name-claims-a-huge-length.mcap");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 524288; exec {} verify {}",
            env!("CARGO_BIN_EXE_framerec"),
            input.display()
        ))
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("opcode 0x09"), "{t}");
}

/// The offset of the first chunk record of `bytes`.
fn first_chunk(bytes: &[u8]) -> usize {
    let mut at = 8;
    while bytes[at] != 0x06 {
        at += 9 + u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
    }
    at
}

#[test]
fn a_chunk_lying_about_its_uncompressed_size_is_damage_found_fast() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [mcap::Compression::Zstd, mcap::Compression::Lz4] {
        let path = rust_file(dir.path(), RustLayout::Chunked(Some(compression)));
        let mut bytes = std::fs::read(&path).unwrap();
        // uncompressed_size: after the prefix, start and end times.
        let at = first_chunk(&bytes) + 9 + 16;
        bytes[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let started = std::time::Instant::now();
        // 1 GiB of address space: an allocation of the size claimed would abort.
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -v 1048576; exec {} verify {}",
                env!("CARGO_BIN_EXE_framerec"),
                path.display()
            ))
            .output()
            .unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(t.contains("uncompressed_size is larger than"), "{t}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
