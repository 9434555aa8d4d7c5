//! Segments of several streams, read back by the official `mcap` crate: the channel table,
//! messages of three channels interleaved in one chunk, their message indexes, the drop notices
//! of one stream, and the summary's per-channel counts.

use std::collections::BTreeMap;

use super::accel::RawTilt;
use super::*;
use crate::frame::{
    DropReason, Frame, FrameBuf, FrameFormat, FrameMeta, FrameSeq, StreamId, StreamInfo,
};

fn streams() -> Vec<StreamInfo> {
    vec![
        StreamInfo::depth("/camera/depth", "cam_d", 8, 4),
        StreamInfo::image("color", "/camera/color", "cam_c", 8, 4, FrameFormat::Rgb8),
        StreamInfo::accel("accel", "/camera/accel", "cam_a"),
    ]
}

fn payload(stream: u16, seq: u64, len: usize) -> Vec<u8> {
    if stream == 2 {
        return RawTilt {
            accel: [seq as i16, -819, 819],
            tilt_angle: -3,
            tilt_status: 4,
        }
        .to_bytes()
        .to_vec();
    }
    (0..len)
        .map(|i| (i as u64 * 7 + seq * 13 + stream as u64) as u8)
        .collect()
}

/// Frames (stream, seq) at increasing log times.
fn frames(order: &[(u16, u64)], streams: &[StreamInfo]) -> Vec<Frame> {
    order
        .iter()
        .enumerate()
        .map(|(i, &(s, seq))| {
            let len = streams[s as usize].frame_bytes();
            let mut buf = FrameBuf::new(len);
            buf.fill(len)
                .unwrap()
                .copy_from_slice(&payload(s, seq, len));
            Frame {
                meta: FrameMeta {
                    stream: StreamId(s),
                    seq: FrameSeq(seq),
                    order: i as u64,
                    len: len as u64,
                    device_ns: seq,
                    publish_ns: seq,
                    host_mono_ns: i as u64,
                    host_real_ns: 1_700_000_000_000_000_000 + i as u64 * 1_000_000,
                },
                buf,
                span: (0, 0),
            }
        })
        .collect()
}

fn build(direct: bool) -> Vec<u8> {
    // Colour frame 1 was dropped.
    let drops = [DropRange {
        stream: StreamId(1),
        first: FrameSeq(1),
        last: FrameSeq(1),
        reason: DropReason::QueueFull,
        time_ns: 1_700_000_000_010_000_000,
    }];
    build_with(direct, &drops, &streams())
}

/// The three-stream segment with drop notices `drops`, their `stream` the topics of
/// `notice_streams` (the segment's own streams, or others).
fn build_with(direct: bool, drops: &[DropRange], notice_streams: &[StreamInfo]) -> Vec<u8> {
    let streams = streams();
    let meta = SegmentMeta {
        recording_id: "r".into(),
        segment_id: 0,
        streams: streams.clone(),
    };
    let (mut file, head) = encode_segment_head(&meta, direct);
    let mut chunks = Vec::new();
    let order = [(0, 0), (1, 0), (2, 0), (2, 1), (0, 1), (2, 2), (1, 2)];
    let mut batch = frames(&order, &streams);
    let layout = encode_frame_batch(&mut batch, file.len() as u64, &streams, direct);
    for f in &batch {
        file.extend_from_slice(&f.buf.region()[f.span.0..f.span.1]);
    }
    chunks.extend(layout.chunks);
    if !drops.is_empty() {
        let (buf, span, entry) =
            encode_drop_chunk(drops, notice_streams, file.len() as u64, direct);
        file.extend_from_slice(&buf.region()[span.0..span.1]);
        chunks.push(entry);
    }
    let tail = encode_segment_tail(file.len() as u64, &chunks, &streams, &head, direct);
    file.extend_from_slice(&tail);
    file
}

#[test]
fn three_streams_are_three_channels_that_the_official_reader_takes_apart() {
    for direct in [false, true] {
        let file = build(direct);
        let summary = mcap::read::Summary::read(&file).unwrap().unwrap();
        let topics: BTreeMap<u16, (String, String)> = summary
            .channels
            .iter()
            .map(|(id, c)| {
                let schema = c.schema.as_ref().map_or(String::new(), |s| s.name.clone());
                (*id, (c.topic.clone(), schema))
            })
            .collect();
        let want: BTreeMap<u16, (String, String)> = [
            (1, ("/camera/depth", "foxglove.RawImage")),
            (2, ("/camera/color", "foxglove.RawImage")),
            (3, ("/camera/accel", "framerec.Accelerometer")),
            (4, ("/framerec/drops", "framerec.Drop")),
        ]
        .into_iter()
        .map(|(id, (t, s))| (id, (t.to_string(), s.to_string())))
        .collect();
        assert_eq!(topics, want, "direct {direct}");
        assert_eq!(summary.channels[&2].metadata["encoding"], "rgb8");
        assert_eq!(summary.channels[&3].metadata["stream"], "accel");
        let stats = summary.stats.as_ref().unwrap();
        let counts: Vec<(u16, u64)> = stats
            .channel_message_counts
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        assert_eq!(counts, [(1, 2), (2, 2), (3, 3), (4, 1)], "direct {direct}");
        assert_eq!((stats.schema_count, stats.channel_count), (3, 4));

        // Every chunk's message indexes name its channels, and point at their messages.
        let mut indexed = 0;
        for ci in &summary.chunk_indexes {
            for (channel, entries) in summary.read_message_indexes(&file, ci).unwrap() {
                assert!(ci.message_index_offsets.contains_key(&channel.id));
                indexed += entries.len();
            }
        }
        assert_eq!(indexed, 8, "direct {direct}");

        // In file order: log time never goes back, each stream's payloads are whole.
        let streams = streams();
        let mut last_time = 0;
        let mut seen = Vec::new();
        for m in mcap::MessageStream::new(&file).unwrap() {
            let m = m.unwrap();
            assert!(m.log_time >= last_time);
            last_time = m.log_time;
            let id = m.channel.id;
            if id == 4 {
                let notice: serde_json::Value = serde_json::from_slice(&m.data).unwrap();
                assert_eq!(notice["stream"], "/camera/color");
                assert_eq!(notice["first_seq"], 1);
                continue;
            }
            let s = id - 1;
            let want = payload(s, m.sequence as u64, streams[s as usize].frame_bytes());
            // The payload field's content (with O_DIRECT, slack fields follow it).
            let got = if s == 2 {
                decode_accel(&m.data).unwrap().raw
            } else {
                decode_raw_image(&m.data).unwrap().data
            };
            assert_eq!(got, want, "stream {s} frame {}", m.sequence);
            seen.push((s, m.sequence));
        }
        assert_eq!(
            seen,
            [(0, 0), (1, 0), (2, 0), (2, 1), (0, 1), (2, 2), (1, 2)]
        );
    }
}

#[test]
fn an_accelerometer_message_decodes_with_its_schema_to_si_units() {
    use prost::Message as _;
    // The message as a protobuf reader sees it, decoded with a hand-written mirror of the
    // schema the segment carries.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Accelerometer {
        #[prost(string, tag = "2")]
        frame_id: String,
        #[prost(double, tag = "3")]
        x: f64,
        #[prost(double, tag = "4")]
        y: f64,
        #[prost(double, tag = "5")]
        z: f64,
        #[prost(double, tag = "6")]
        tilt_degrees: f64,
        #[prost(uint32, tag = "7")]
        tilt_status: u32,
        #[prost(bytes = "vec", tag = "8")]
        raw: Vec<u8>,
    }
    let file = build(false);
    let m = mcap::MessageStream::new(&file)
        .unwrap()
        .map(|m| m.unwrap())
        .find(|m| m.channel.id == 3)
        .unwrap();
    let a = Accelerometer::decode(&m.data[..]).unwrap();
    assert_eq!(a.frame_id, "cam_a");
    assert_eq!(a.x, 0.0);
    assert_eq!(a.y, -accel::GRAVITY);
    assert_eq!(a.z, accel::GRAVITY);
    assert_eq!((a.tilt_degrees, a.tilt_status), (-1.5, 4));
    assert_eq!(a.raw, payload(2, 0, 12));
    let schema = m.channel.schema.as_ref().unwrap();
    let set = prost_types::FileDescriptorSet::decode(&schema.data[..]).unwrap();
    assert_eq!(set.file[1].message_type[0].name(), "Accelerometer");
}

/// (frames, first, last, dropped) of each stream of a report, by name.
fn per_stream(r: &[StreamReport]) -> BTreeMap<String, (u64, Option<u64>, Option<u64>, u64)> {
    r.iter()
        .map(|s| {
            let dropped = s.dropped.values().sum();
            (s.name.clone(), (s.frames, s.first_seq, s.last_seq, dropped))
        })
        .collect()
}

#[test]
fn a_colour_notice_covers_the_colour_gap_and_each_stream_counts_its_own() {
    let file = build(false);
    let seg = verify_segment("s", &file);
    assert!(seg.ok(), "{:?}", seg.problems);
    let want: BTreeMap<String, _> = [
        ("depth", (2, Some(0), Some(1), 0)),
        ("color", (2, Some(0), Some(2), 1)),
        ("accel", (3, Some(0), Some(2), 0)),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(per_stream(&seg.streams), want);
    let r = verify_recording(vec![seg], true);
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!((r.frames, r.first_seq, r.last_seq), (7, Some(0), Some(1)));
    assert_eq!(r.dropped.get("queue_full"), Some(&1));
    let names: Vec<&str> = r.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["depth", "color", "accel"]);
    assert_eq!(r.streams[1].topic, "/camera/color");
    assert_eq!(r.streams[2].kind, StreamKind::Accel);
}

#[test]
fn a_gap_in_colour_only_is_reported_for_colour_only() {
    let file = build_with(false, &[], &streams());
    let r = verify_recording(vec![verify_segment("s", &file)], true);
    assert!(!r.ok);
    assert_eq!(
        r.problems,
        vec![Problem::InStream {
            stream: "color".into(),
            problem: Box::new(Problem::Missing { first: 1, last: 1 }),
        }]
    );
    assert_eq!(
        r.problems[0].to_string(),
        "stream color: frames 1..=1 are missing and no drop notice explains them"
    );
    assert_eq!(r.missing["color"], vec![(1, 1)]);
    assert!(r.missing["depth"].is_empty() && r.missing["accel"].is_empty());
}

#[test]
fn a_notice_naming_a_topic_no_channel_has_is_a_problem_not_a_panic() {
    let mut others = streams();
    others[1].topic = "/camera/ir".into();
    let drops = [DropRange {
        stream: StreamId(1),
        first: FrameSeq(1),
        last: FrameSeq(1),
        reason: DropReason::QueueFull,
        time_ns: 1_700_000_000_010_000_000,
    }];
    let file = build_with(false, &drops, &others);
    let seg = verify_segment("s", &file);
    assert!(
        seg.problems.iter().any(|p| matches!(
            p,
            Problem::Damage(DecodeError::NoticeForUnknownStream { topic, .. }) if topic == "/camera/ir"
        )),
        "{:?}",
        seg.problems
    );
    // The notice explains nothing: colour's gap stays a gap.
    let r = verify_recording(vec![seg], true);
    assert!(r.missing["color"] == vec![(1, 1)]);
}

#[test]
fn recover_rebuilds_every_channel_and_names_each_streams_lost_frames() {
    let file = build(false);
    // Torn after the frames: the summary and the drop notice are gone.
    let chunks = segment_chunks(&file);
    let cut = (chunks[0].offset + chunks[0].length) as usize;
    let torn = &file[..cut + 40];
    let mut lost = LostRanges::new();
    lost.insert("accel".into(), vec![(3, 4)]);
    let c = parse_segment(torn);
    let mut out = Vec::new();
    let rec = recover_to(torn, &c, &lost, &mut out).unwrap().unwrap();
    let by_name: BTreeMap<&str, &RecoveredStream> =
        rec.streams.iter().map(|s| (s.name.as_str(), s)).collect();
    assert_eq!(
        by_name["color"].lost_ranges,
        vec![(1, 1)],
        "the gap is named"
    );
    assert_eq!(
        by_name["accel"].lost_ranges,
        vec![(3, 4)],
        "the caller's range"
    );
    assert!(by_name["depth"].lost_ranges.is_empty());
    assert_eq!(rec.kept_frames, 7);

    let summary = mcap::read::Summary::read(&out).unwrap().unwrap();
    let mut topics: Vec<(u16, String)> = summary
        .channels
        .iter()
        .map(|(id, c)| (*id, c.topic.clone()))
        .collect();
    topics.sort();
    assert_eq!(
        topics,
        [
            (1, "/camera/depth".to_string()),
            (2, "/camera/color".to_string()),
            (3, "/camera/accel".to_string()),
            (4, "/framerec/drops".to_string())
        ]
    );
    assert_eq!(summary.channels[&2].metadata["encoding"], "rgb8");
    assert_eq!(summary.channels[&3].metadata["frame_id"], "cam_a");
    let messages = mcap::MessageStream::new(&out).unwrap().count();
    assert_eq!(
        messages,
        7 + 2,
        "every frame and a notice per stream with losses"
    );
    let r = verify_recording(vec![verify_segment("rebuilt", &out)], true);
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!(
        r.streams[2].last_seq,
        Some(4),
        "accel's lost frames are named"
    );
}

#[test]
fn a_format_v1_segment_reads_as_one_depth_stream_and_recovers_in_v1_layout() {
    // Written before streams existed (kept in tests/fixtures/v1): channel 1 depth with no
    // `stream` metadata, 2 drops.
    let v1 = include_bytes!("../../tests/fixtures/v1/four-frames.mcap");
    let c = parse_segment(v1);
    assert!(!c.channel_metadata[&1].contains_key("stream"));
    let seg = verify_segment("v1", v1);
    assert!(seg.ok(), "{:?}", seg.problems);
    let names: Vec<(&str, &str)> = seg
        .streams
        .iter()
        .map(|s| (s.name.as_str(), s.topic.as_str()))
        .collect();
    assert_eq!(names, [("depth", "/camera/depth")]);
    assert_eq!(c.drop_channel, Some(DROP_CHANNEL_ID));

    let torn = include_bytes!("../../tests/fixtures/v1/torn-tail.mcap");
    let rec = recover_segment(torn, &[]).unwrap();
    let summary = mcap::read::Summary::read(&rec.bytes).unwrap().unwrap();
    let mut topics: Vec<(u16, String)> = summary
        .channels
        .iter()
        .map(|(id, c)| (*id, c.topic.clone()))
        .collect();
    topics.sort();
    assert_eq!(topics[0].0, DEPTH_CHANNEL_ID);
    assert_eq!(topics[1], (DROP_CHANNEL_ID, DROP_TOPIC.to_string()));
    assert_eq!(rec.streams.len(), 1);
    assert!(verify_segment("rebuilt", &rec.bytes).ok());
}

#[test]
fn a_segment_with_private_padding_records_still_reads() {
    // Written with O_DIRECT before its slack moved into spec records (kept in
    // tests/fixtures/padded): 0x80 padding records around every chunk and before the tail.
    let old = include_bytes!("../../tests/fixtures/padded/three-frames-direct-io.mcap");
    let mut at = MAGIC.len();
    let mut paddings = 0;
    while at + RECORD_PREFIX <= old.len() - MAGIC.len() {
        paddings += usize::from(old[at] == OP_PADDING);
        at += RECORD_PREFIX + u64::from_le_bytes(old[at + 1..at + 9].try_into().unwrap()) as usize;
    }
    assert!(paddings >= 3, "the fixture has padding records: {paddings}");
    let seg = verify_segment("padded", old);
    assert!(seg.ok(), "{:?}", seg.problems);
    assert!(seg.finalized);
    assert_eq!(seg.frames, 3);
    let seqs: Vec<u32> = segment_messages(old).iter().map(|m| m.sequence).collect();
    assert_eq!(seqs, [0, 1, 2]);
    for m in &segment_messages(old) {
        let img = decode_raw_image(&old[m.data.clone()]).unwrap();
        assert_eq!(
            (img.width, img.height, img.data.len()),
            (32, 24, 32 * 24 * 2)
        );
    }
}
