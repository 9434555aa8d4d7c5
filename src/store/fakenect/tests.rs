use super::*;
use crate::frame::{DropReason, FrameSeq};

fn frame(kind: KinectStream) -> DumpFrame {
    DumpFrame {
        file: String::new(),
        line: 1,
        kind,
        time_ns: 0,
        timestamp: 0,
        device_ns: 0,
        seq: u64::MAX,
        header_bytes: 0,
        bytes: 0,
        state: FileState::Whole,
    }
}

fn drop_line(stream: &str, first: u64, last: u64) -> DropLine {
    DropLine {
        stream: stream.into(),
        first: FrameSeq(first),
        last: FrameSeq(last),
        reason: DropReason::QueueFull,
    }
}

#[test]
fn sequence_numbers_skip_each_streams_own_drops() {
    use KinectStream::{Accel, Color, Depth};
    let mut frames: Vec<DumpFrame> = [Depth, Color, Depth, Accel, Depth, Color, Depth]
        .into_iter()
        .map(frame)
        .collect();
    // Unsorted and overlapping ranges, a range of another stream, one of a stream not there.
    let drops = [
        drop_line("depth", 4, 4),
        drop_line("depth", 1, 2),
        drop_line("depth", 2, 3),
        drop_line("color", 0, 0),
        drop_line("pipe0", 0, 9),
        drop_line("accel", 5, 6),
    ];
    assign_seqs(&mut frames, &drops);
    let seqs: Vec<(KinectStream, u64)> = frames.iter().map(|f| (f.kind, f.seq)).collect();
    assert_eq!(
        seqs,
        [
            (Depth, 0),
            (Color, 1),
            (Depth, 5),
            (Accel, 0),
            (Depth, 6),
            (Color, 2),
            (Depth, 7)
        ]
    );
    // A range up to the last number saturates instead of wrapping.
    let mut two = vec![frame(Depth), frame(Depth)];
    assign_seqs(&mut two, &[drop_line("depth", 1, u64::MAX)]);
    assert_eq!((two[0].seq, two[1].seq), (0, u64::MAX));
}

fn write_dump(dir: &Path, index: &[u8], files: &[(&str, Vec<u8>)]) {
    std::fs::write(dir.join(INDEX), index).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

fn depth_file(w: u32, h: u32, samples: usize) -> Vec<u8> {
    let mut f = format!("P5 {w} {h} 65535\n").into_bytes();
    f.extend((0..samples * 2).map(|i| i as u8));
    f
}

#[test]
fn each_named_file_is_whole_missing_short_or_bad_and_a_cut_last_line_is_set_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let names = [
        "d-1.000001-0.pgm",
        "a-1.000002-0.dump",
        "d-1.000003-10.pgm",
        "d-1.000004-20.pgm",
        "d-1.000005-30.pgm",
        "d-1.000006-40.pgm",
    ];
    let mut index = names.join("\n").into_bytes();
    index.extend_from_slice(b"\nd-1.0000");
    write_dump(
        d,
        &index,
        &[
            (names[0], depth_file(4, 2, 8)),
            (names[1], vec![0; 12]),
            (names[2], depth_file(4, 2, 7)),
            // names[3] missing.
            (names[4], depth_file(2, 4, 8)),
            (names[5], depth_file(4, 2, 9)),
        ],
    );
    std::fs::write(d.join(DROPS), "1 1 queue_full depth\n").unwrap();
    let dump = Dump::open(d).unwrap();
    assert_eq!(dump.end, IndexEnd::Cut { line: 7, bytes: 8 });
    let states: Vec<&FileState> = dump.frames.iter().map(|f| &f.state).collect();
    assert_eq!(states[0], &FileState::Whole);
    assert_eq!(states[1], &FileState::Whole);
    assert_eq!(
        states[2],
        &FileState::Short {
            bytes: 13 + 14,
            expected: 13 + 16
        }
    );
    assert_eq!(states[3], &FileState::Missing);
    assert!(
        matches!(states[4], FileState::Bad(why) if why.contains("is 2x4")),
        "{states:?}"
    );
    assert!(matches!(states[5], FileState::Long { .. }), "{states:?}");
    let seqs: Vec<u64> = dump.frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [0, 0, 2, 3, 4, 5]);
    assert_eq!(
        dump.streams,
        [
            DumpStream {
                kind: KinectStream::Depth,
                width: 4,
                height: 2
            },
            DumpStream {
                kind: KinectStream::Accel,
                width: 0,
                height: 0
            }
        ]
    );
    let mut buf = Vec::new();
    dump.read_payload(&dump.frames[0], &mut buf).unwrap();
    assert_eq!(buf, &depth_file(4, 2, 8)[13..]);
    assert!(dump.read_payload(&dump.frames[2], &mut buf).is_err());
    assert_eq!(dump.frames[2].device_ns, 166, "10 ticks of 60 MHz");

    // A middle line that is no frame's is damage, not a crash's cut.
    std::fs::write(d.join(INDEX), "d-1.000001-0.pgm\nbad\nd-1.000003-10.pgm\n").unwrap();
    assert!(matches!(Dump::open(d), Err(DumpError::Index(_))));
    // A DROPS.txt larger than any framerec writes is refused before it is read.
    std::fs::write(d.join(INDEX), "d-1.000001-0.pgm\n").unwrap();
    let drops = std::fs::File::create(d.join(DROPS)).unwrap();
    drops.set_len(MAX_DROPS_BYTES + 1).unwrap();
    assert!(matches!(
        Dump::open(d),
        Err(DumpError::DropsTooLarge { .. })
    ));
}
