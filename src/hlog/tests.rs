/// Found by the fuzzer: counters in a crafted log overflowed the drop total (a panic in
/// debug builds, a wrapped total otherwise).
#[test]
fn crafted_drop_counters_saturate() {
    let iv = Interval {
        start: 0.0,
        length: 1.0,
        histograms: BTreeMap::new(),
        counters: [
            ("dropped.lost".to_string(), u64::MAX),
            ("dropped.io_error".to_string(), 5),
        ]
        .into_iter()
        .collect(),
        streams: Vec::new(),
    };
    assert_eq!(iv.dropped_total(), u64::MAX);
}

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;

use super::decode::{V2_COMPRESSED_COOKIE, V2_COOKIE};
use super::*;
use crate::observe::{
    Counters, HIGHEST_TRACKABLE, Histograms, SIGNIFICANT_DIGITS, Snapshot, record,
};

fn snapshot(received: u64) -> Snapshot {
    let tally = crate::ledger::Tally {
        received_frames: received,
        written_frames: received,
        ..Default::default()
    };
    Snapshot::take(
        &Counters::default(),
        &tally,
        &Histograms::default(),
        1.0,
        None,
    )
}

#[test]
fn written_intervals_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IntervalLogWriter::create(dir.path(), 3, "rec").unwrap();
    let mut h = Histograms::default();
    for v in 1..=100u64 {
        record(&mut h.write_latency_ns, v * 1000);
    }
    w.write_interval(&h, &snapshot(10)).unwrap();
    h.reset();
    record(&mut h.write_latency_ns, 5_000_000);
    let path = w.finish(&h, &snapshot(25), "frame limit").unwrap();
    assert_eq!(path.file_name().unwrap(), "framerec-0000000000000003.hlog");

    let mut merged = ByTag::new();
    let (runs, damage) = read_log(&path, &mut merged).unwrap();
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(merged["write"].len(), 101);
    assert_eq!(merged["write"].max(), h_max(5_000_000));
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.ended.as_deref(), Some("frame_limit"));
    assert_eq!(run.intervals.len(), 2);
    let first = &run.intervals[0].histograms["write"];
    assert_eq!(first.count, 100);
    assert_eq!(first.max, h_max(100_000));
    assert_eq!(run.intervals[1].histograms["write"].count, 1);
    assert_eq!(run.intervals[0].counters["received"], 10);
    assert_eq!(run.intervals[1].counters["received"], 25);
    assert_eq!(run.intervals[1].histograms.len(), 8);
}

fn h_max(v: u64) -> u64 {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
    h.record(v).unwrap();
    h.max()
}

proptest::proptest! {
    #[test]
    fn any_bytes_read_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.hlog");
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_log(&path, &mut ByTag::new()).unwrap();
    }

    #[test]
    fn mangled_lines_of_a_real_log_read_without_panicking(cut in 0usize..4000, byte in proptest::num::u8::ANY) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
        let mut h = Histograms::default();
        record(&mut h.write_latency_ns, 1234);
        w.write_interval(&h, &snapshot(1)).unwrap();
        let path = w.path().to_path_buf();
        drop(w);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = cut % bytes.len();
        bytes[at] = byte;
        bytes.truncate(at + 1 + cut / 3);
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_log(&path, &mut ByTag::new()).unwrap();
    }
}

/// A V2 histogram header as HdrHistogram encodes it, with no counts after it.
fn v2_header(payload: u32, digits: u32, lowest: u64, highest: u64) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&V2_COOKIE.to_be_bytes());
    b.extend_from_slice(&payload.to_be_bytes());
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&digits.to_be_bytes());
    b.extend_from_slice(&lowest.to_be_bytes());
    b.extend_from_slice(&highest.to_be_bytes());
    b.extend_from_slice(&1.0f64.to_be_bytes());
    b
}

/// `v2` deflated behind the compressed cookie, in base64: what an interval line carries.
pub(crate) fn compressed_base64(v2: &[u8]) -> String {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(v2).unwrap();
    let z = z.finish().unwrap();
    let mut b = V2_COMPRESSED_COOKIE.to_be_bytes().to_vec();
    b.extend_from_slice(&u32::try_from(z.len()).unwrap().to_be_bytes());
    b.extend_from_slice(&z);
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn a_histogram_claiming_a_huge_payload_is_refused_before_allocating() {
    // What the deserializer would resize its buffer to: 4 GB.
    let header = v2_header(u32::MAX - 15, 3, 1, HIGHEST_TRACKABLE);
    let claimed = u32::MAX - 15;
    let want = HistogramError::PayloadLength {
        claimed,
        max: MAX_PAYLOAD_BYTES,
    };
    assert_eq!(
        decode_histogram(&compressed_base64(&header)).unwrap_err(),
        want
    );
    let plain = base64::engine::general_purpose::STANDARD.encode(&header);
    assert_eq!(decode_histogram(&plain).unwrap_err(), want);
    // The whole 216-byte line, as `framerec stats` reads it.
    let line = format!("Tag=write,0.000,1.000,0.0,{}", compressed_base64(&header));
    let (runs, damage) = parse_log(&line, Path::new("x.hlog"), &mut ByTag::new());
    assert!(runs.is_empty());
    let [Damage::BadLine { line: 1, why, .. }] = &damage[..] else {
        panic!("{damage:?}")
    };
    assert_eq!(why, &LineError::Histogram(want));
}

#[test]
fn a_histogram_wider_or_finer_than_framerecs_is_refused() {
    // 5 digits over the widest range: a counts array of gigabytes per line.
    let b64 = compressed_base64(&v2_header(0, 5, 1, u64::MAX / 2));
    assert_eq!(
        decode_histogram(&b64).unwrap_err(),
        HistogramError::SignificantDigits {
            claimed: 5,
            max: SIGNIFICANT_DIGITS
        }
    );
    let b64 = compressed_base64(&v2_header(0, 3, 1, u64::MAX / 2));
    assert!(
        matches!(
            decode_histogram(&b64),
            Err(HistogramError::Range { highest, .. }) if highest == u64::MAX / 2
        ),
        "{:?}",
        decode_histogram(&b64)
    );
    let b64 = compressed_base64(&v2_header(0, 3, 0, 1000));
    assert!(matches!(
        decode_histogram(&b64),
        Err(HistogramError::Range { lowest: 0, .. })
    ));
    // The compressed length claims more bytes than the line holds.
    let mut raw = base64::engine::general_purpose::STANDARD
        .decode(compressed_base64(&v2_header(0, 3, 1, 1000)))
        .unwrap();
    raw[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    assert!(matches!(
        decode_histogram(&b64),
        Err(HistogramError::CompressedLength {
            claimed: u32::MAX,
            ..
        })
    ));
    let b64 =
        base64::engine::general_purpose::STANDARD.encode([0x1c, 0x84, 0x93, 0x03, 0, 0, 0, 0]);
    assert_eq!(
        decode_histogram(&b64).unwrap_err(),
        HistogramError::Cookie(0x1c84_9303)
    );
}

#[test]
fn framerecs_own_histograms_decode_at_the_bounds() {
    use hdrhistogram::serialization::Serializer as _;
    // Every bucket in use with a large, random count: the longest payload framerec's
    // histograms can produce (8-byte varints that hardly compress).
    let mut h = crate::observe::Histograms::default().write_latency_ns;
    let (mut v, mut x) = (1u64, 0x9e37_79b9_7f4a_7c15u64);
    while v <= HIGHEST_TRACKABLE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        h.record_n(v, (1 << 47) | (x >> 17)).unwrap();
        v = h.next_non_equivalent(v);
    }
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(&h, &mut bytes)
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    assert!(b64.len() < MAX_LINE_BYTES, "{}", b64.len());
    eprintln!("largest histogram: {} base64 bytes", b64.len());
    let back = decode_histogram(&b64).unwrap();
    assert_eq!(back, h);
}

#[test]
fn tags_past_the_bound_are_refused_not_merged() {
    let b64 = compressed_base64(&v2_header(0, 3, 1, HIGHEST_TRACKABLE));
    let log: String = (0..MAX_TAGS + 5)
        .map(|i| format!("Tag=t{i},0.000,1.000,0.0,{b64}\n"))
        .collect();
    let mut merged = ByTag::new();
    let (runs, damage) = parse_log(&log, Path::new("x.hlog"), &mut merged);
    assert_eq!(merged.len(), MAX_TAGS);
    assert_eq!(runs[0].intervals[0].histograms.len(), MAX_TAGS);
    assert_eq!(damage.len(), 5);
    assert!(damage.iter().all(|d| matches!(
        d,
        Damage::BadLine {
            why: LineError::TooManyTags { max: MAX_TAGS },
            ..
        }
    )));
}

#[test]
fn an_overlong_line_is_skipped_unread_and_the_rest_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
    let mut h = Histograms::default();
    record(&mut h.write_latency_ns, 1000);
    w.write_interval(&h, &snapshot(1)).unwrap();
    let path = w.path().to_path_buf();
    drop(w);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"Tag=write,1.000,1.000,5.0,").unwrap();
    f.write_all(&vec![b'A'; 3 * MAX_LINE_BYTES]).unwrap();
    f.write_all(b"\n#framerec-end reason=done\n").unwrap();
    let (runs, damage) = read_log(&path, &mut ByTag::new()).unwrap();
    assert_eq!(runs[0].intervals.len(), 1);
    assert_eq!(runs[0].ended.as_deref(), Some("done"));
    let [Damage::BadLine { why, .. }] = &damage[..] else {
        panic!("{damage:?}")
    };
    assert_eq!(
        why,
        &LineError::TooLong {
            max: MAX_LINE_BYTES
        }
    );
}

#[test]
fn a_torn_last_line_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
    let mut h = Histograms::default();
    record(&mut h.write_latency_ns, 1000);
    w.write_interval(&h, &snapshot(1)).unwrap();
    let path = w.path().to_path_buf();
    drop(w);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(b"Tag=write,1.000,1.000,5.0,HISTFAAAA").unwrap();
    let (runs, damage) = read_log(&path, &mut ByTag::new()).unwrap();
    assert_eq!(runs[0].intervals.len(), 1);
    assert_eq!(runs[0].ended, None);
    assert_eq!(damage.len(), 1, "{damage:?}");
}

/// A snapshot of two streams: `depth`, and one whose name needs escaping in a key.
fn two_streams(received: u64, lost: u64) -> Snapshot {
    let mut s = snapshot(2 * received);
    let stream = |name: &str, topic: &str, lost: u64| {
        let mut st = crate::observe::StreamStats {
            name: name.into(),
            topic: topic.into(),
            received_frames: received,
            written_frames: received - lost,
            ..Default::default()
        };
        for r in crate::frame::DropReason::ALL {
            st.dropped.insert(r.as_str().to_string(), 0);
        }
        st.dropped.insert("lost".into(), lost);
        st
    };
    s.streams = vec![
        stream("depth", "/camera/depth", 0),
        stream("left cam=2%.dropped.x", "/camera/left", lost),
    ];
    s
}

#[test]
fn per_stream_counters_are_written_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
    let h = Histograms::default();
    w.write_interval(&h, &two_streams(10, 1)).unwrap();
    let path = w.finish(&h, &two_streams(25, 4), "done").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(" stream.depth.received=10 stream.depth.written=10 "),
        "{text}"
    );
    assert!(
        text.contains(" stream.left%20cam%3D2%25.dropped.x.dropped.lost=1"),
        "{text}"
    );

    let (runs, damage) = read_log(&path, &mut ByTag::new()).unwrap();
    assert!(damage.is_empty(), "{damage:?}");
    let last = &runs[0].intervals[1];
    assert_eq!(last.counters["received"], 50);
    let names: Vec<&str> = last.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["depth", "left cam=2%.dropped.x"]);
    let left = &last.streams[1];
    assert_eq!((left.received, left.written), (25, 21));
    assert_eq!(left.dropped["lost"], 4);
    assert_eq!(left.dropped.len(), crate::frame::DropReason::ALL.len());
    assert_eq!(left.dropped_total(), 4);

    // `framerec stats`: per interval what each stream added, and over the whole log.
    let (report, _) = Report::read(dir.path()).unwrap();
    let second = &report.intervals[1].streams[1];
    assert_eq!(
        (second.received, second.written, second.dropped),
        (15, 12, 3)
    );
    let want = [
        StreamFrames {
            name: "depth".into(),
            received: 25,
            written: 25,
            dropped: 0,
        },
        StreamFrames {
            name: "left cam=2%.dropped.x".into(),
            received: 25,
            written: 21,
            dropped: 4,
        },
    ];
    assert_eq!(report.streams, want);
    assert_eq!(
        report.stream_lines()[1],
        "left cam=2%.dropped.x: received 25, written 21, dropped 4"
    );
}

#[test]
fn a_one_stream_recording_logs_no_stream_keys() {
    let dir = tempfile::tempdir().unwrap();
    let w = IntervalLogWriter::create(dir.path(), 0, "rec").unwrap();
    let mut s = two_streams(10, 0);
    s.streams.truncate(1);
    let path = w.finish(&Histograms::default(), &s, "done").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("#framerec-counters t="), "{text}");
    assert!(!text.contains("stream."), "{text}");
    let (report, _) = Report::read(&path).unwrap();
    assert!(report.streams.is_empty());
    assert!(report.intervals[0].streams.is_empty());
}

/// One interval (a valid histogram line) followed by `counters`, as a log's text.
fn log_with_counters(counters: &str) -> String {
    let b64 = compressed_base64(&v2_header(0, 3, 1, HIGHEST_TRACKABLE));
    format!(
        "#[StartTime: 1795467600.000 (seconds since epoch)]\n\
         #[BaseTime: 1795467600.000 (seconds since epoch)]\n\
         Tag=write,0.000,1.000,0.0,{b64}\n\
         #framerec-counters {counters}\n"
    )
}

#[test]
fn a_counters_line_of_an_older_framerec_still_reads() {
    let text = log_with_counters(
        "t=1.000 received=3 written=2 queued=0 in_writers=0 durable=1 dropped.lost=1",
    );
    let (runs, damage) = parse_log(&text, Path::new("x.hlog"), &mut ByTag::new());
    assert!(damage.is_empty(), "{damage:?}");
    let iv = &runs[0].intervals[0];
    assert_eq!(iv.counters["received"], 3);
    assert_eq!(iv.counters["durable"], 1);
    assert_eq!(iv.dropped_total(), 1);
    assert!(iv.streams.is_empty());
}

#[test]
fn crafted_stream_counters_are_refused_or_ignored_never_a_panic() {
    let read = |counters: &str| {
        let text = log_with_counters(counters);
        let (runs, damage) = parse_log(&text, Path::new("x.hlog"), &mut ByTag::new());
        (runs[0].intervals[0].clone(), damage)
    };
    let refused = |counters: &str| {
        let (iv, damage) = read(counters);
        assert!(
            iv.counters.is_empty() && iv.streams.is_empty(),
            "{counters}"
        );
        assert!(
            matches!(
                &damage[..],
                [Damage::BadLine {
                    line: 4,
                    why: LineError::BadCounters,
                    ..
                }]
            ),
            "{counters}: {damage:?}"
        );
    };
    // A value that is no count, or too large for one: the line is refused.
    refused("received=1 stream.a.received=99999999999999999999999");
    refused("received=1 stream.a.written=-1");
    refused("received=1 stream.a.dropped.lost=x");
    // More keys or streams than framerec writes: refused before they are stored.
    refused(
        &(0..MAX_COUNTER_KEYS + 1)
            .map(|i| format!("k{i}=1"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    refused(
        &(0..MAX_LOG_STREAMS + 1)
            .map(|i| format!("stream.s{i}.received=1"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    // Keys of a form framerec does not write are skipped; the rest of the line reads.
    let (iv, damage) = read(
        "received=7 stream.a.bogus=1 stream..received=1 stream.%ZZ.received=1 stream.%C3.written=1 \
         stream.b.dropped.=1 stream.b.dropped.x.y=1 stream.b.received=18446744073709551615",
    );
    assert!(damage.is_empty(), "{damage:?}");
    assert_eq!(iv.counters["received"], 7);
    assert_eq!(iv.streams.len(), 1, "{:?}", iv.streams);
    assert_eq!(
        (iv.streams[0].name.as_str(), iv.streams[0].received),
        ("b", u64::MAX)
    );
    assert!(iv.streams[0].dropped.is_empty());
}
