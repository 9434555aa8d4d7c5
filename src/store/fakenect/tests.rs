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
    assert!(matches!(
        dump.read_payload(&dump.frames[2], &mut buf),
        Err(DumpError::NotWhole { .. })
    ));
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

/// What a crash (and later damage) does to a recording of `n` frames, for the model test.
#[derive(Debug, Clone)]
struct Damage {
    /// Depth (true) or accelerometer frames, in receive order.
    depth: Vec<bool>,
    /// Lines named before the crash; the line after them is cut at `cut_at` bytes (0: none).
    named: usize,
    cut_at: usize,
    /// Per named frame: 0 intact, 1 file deleted, 2 file cut short.
    harm: Vec<u8>,
    /// Per unnamed frame: 0 renamed (an orphan), 1 whole `.tmp`, 2 half-written `.tmp`.
    unnamed: Vec<u8>,
}

fn damage() -> impl proptest::strategy::Strategy<Value = Damage> {
    use proptest::prelude::*;
    proptest::collection::vec(any::<bool>(), 1..10).prop_flat_map(|depth| {
        let n = depth.len();
        (0..=n).prop_flat_map(move |named| {
            (
                Just(depth.clone()),
                Just(named),
                0..20usize,
                proptest::collection::vec(
                    prop_oneof![6 => Just(0u8), 1 => Just(1), 1 => Just(2)],
                    named,
                ),
                proptest::collection::vec(0..3u8, n - named),
            )
                .prop_map(|(depth, named, cut_at, harm, unnamed)| Damage {
                    depth,
                    named,
                    cut_at,
                    harm,
                    unnamed,
                })
        })
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// After recover: INDEX.txt names only whole frames and ends whole, every whole frame file
    /// is named, each named frame damaged is listed `lost` under its number, and a second
    /// recover has nothing to do.
    #[test]
    fn recover_keeps_every_whole_frame_and_names_the_rest_lost(d in damage()) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let names: Vec<String> = d
            .depth
            .iter()
            .enumerate()
            .map(|(i, depth)| {
                let (k, ext) = if *depth { ("d", "pgm") } else { ("a", "dump") };
                format!("{k}-1000.{:06}-{i}.{ext}", i + 1)
            })
            .collect();
        let body = |depth: bool| if depth { depth_file(2, 2, 4) } else { vec![7; 12] };
        let mut index = String::new();
        for (i, name) in names.iter().enumerate() {
            let bytes = body(d.depth[i]);
            if i < d.named {
                index.push_str(name);
                index.push('\n');
                match d.harm[i] {
                    0 => std::fs::write(dir.join(name), &bytes).unwrap(),
                    1 => {}
                    _ => std::fs::write(dir.join(name), &bytes[..bytes.len() - 1]).unwrap(),
                }
            } else {
                match d.unnamed[i - d.named] {
                    0 => std::fs::write(dir.join(name), &bytes).unwrap(),
                    1 => std::fs::write(dir.join(format!(".{name}.tmp")), &bytes).unwrap(),
                    _ => std::fs::write(dir.join(format!(".{name}.tmp")), &bytes[..5]).unwrap(),
                }
            }
        }
        if let Some(next) = names.get(d.named) {
            index.push_str(&next[..d.cut_at.min(next.len() - 6)]);
        }
        std::fs::write(dir.join(INDEX), &index).unwrap();

        let p = recover::plan(dir).unwrap();
        recover::apply(dir, &p).unwrap();
        let after = Dump::open(dir).unwrap();
        proptest::prop_assert_eq!(after.end, IndexEnd::Whole);
        proptest::prop_assert!(after.frames.iter().all(DumpFrame::is_whole));
        let want: Vec<&String> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                if *i < d.named { d.harm[*i] == 0 } else { d.unnamed[*i - d.named] < 2 }
            })
            .map(|(_, n)| n)
            .collect();
        let got: Vec<&String> = after.frames.iter().map(|f| &f.file).collect();
        proptest::prop_assert_eq!(got, want);
        let mut want_lost = Vec::new();
        for kind in KINDS {
            let mut seq = 0;
            for i in 0..d.named {
                let k = if d.depth[i] { KinectStream::Depth } else { KinectStream::Accel };
                if k == kind {
                    if d.harm[i] != 0 {
                        want_lost.push((kind.as_str().to_string(), seq));
                    }
                    seq += 1;
                }
            }
        }
        proptest::prop_assert_eq!(
            crate::sink::fakenect::dropped_frames(&after.drops),
            want_lost.len() as u64
        );
        // Ranges merge consecutive numbers: each wanted one lies in a listed range.
        for (stream, seq) in &want_lost {
            proptest::prop_assert!(after
                .drops
                .iter()
                .any(|l| &l.stream == stream
                    && l.reason == DropReason::Lost
                    && l.first.0 <= *seq
                    && *seq <= l.last.0));
        }
        proptest::prop_assert!(recover::plan(dir).unwrap().is_empty());
    }
}
