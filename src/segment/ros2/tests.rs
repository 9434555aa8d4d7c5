//! A ros2 segment built as the writer lays it out, read back by framerec's scanner and by the
//! `mcap` crate: payloads in place after their CDR prefix, notices in CDR, the rosbag2 record
//! in the tail and in the summary's metadata index.

use super::super::*;
use super::*;
use crate::frame::{DropReason, Frame, FrameBuf, FrameMeta, FrameSeq, HEADROOM, StreamId};
use crate::frame::{FrameFormat, StreamInfo};

fn frame(stream: u16, seq: u64, len: usize) -> Frame {
    let mut buf = FrameBuf::new(len);
    for (i, b) in buf.fill(len).unwrap().iter_mut().enumerate() {
        *b = (seq as usize * 31 + i) as u8;
    }
    Frame {
        meta: FrameMeta {
            stream: StreamId(stream),
            seq: FrameSeq(seq),
            order: seq,
            len: len as u64,
            publish_ns: 1_700_000_000_000_000_000 + seq,
            host_real_ns: 1_700_000_000_000_000_000 + seq * 1000 + u64::from(stream),
            ..FrameMeta::default()
        },
        buf,
        span: (0, 0),
    }
}

fn streams() -> Vec<StreamInfo> {
    vec![
        StreamInfo::image("depth", "/camera/depth", "cam", 4, 3, FrameFormat::Depth16),
        StreamInfo::accel("accel", "/camera/accel", "imu"),
    ]
}

/// A segment of three depth frames and two readings, a notice before them; with the bytes of
/// each depth payload and the frames (their spans) as laid out.
fn build() -> (Vec<u8>, Vec<Frame>) {
    let streams = streams();
    let meta = SegmentMeta {
        recording_id: "r".into(),
        segment_id: 7,
        streams: streams.clone(),
    };
    let (mut file, head) = encode_head(&meta, Profile::Ros2, false);
    let drop = DropRange {
        stream: StreamId(0),
        first: FrameSeq(3),
        last: FrameSeq(5),
        reason: DropReason::QueueFull,
        time_ns: 1_700_000_000_000_000_000,
    };
    let (buf, span, entry) =
        encode_drops(&[drop], &streams, Profile::Ros2, file.len() as u64, false);
    file.extend_from_slice(&buf.region()[span.0..span.1]);
    let mut chunks = vec![entry];
    let raw = accel::RawTilt {
        accel: [819, -819, 0],
        ..Default::default()
    }
    .to_bytes();
    let mut frames = vec![
        frame(0, 0, 24),
        frame(1, 0, 12),
        frame(0, 1, 24),
        frame(0, 2, 24),
    ];
    frames[1].buf.fill(12).unwrap().copy_from_slice(&raw);
    let layout = encode_frames(
        &mut frames,
        file.len() as u64,
        &streams,
        Profile::Ros2,
        false,
    );
    for f in &frames {
        file.extend_from_slice(&f.buf.region()[f.span.0..f.span.1]);
    }
    chunks.extend(layout.chunks);
    let extra = [bag::segment_metadata(7, &streams, &chunks)];
    let tail = encode_tail(file.len() as u64, &chunks, &streams, &head, &extra, false);
    file.extend_from_slice(&tail);
    (file, frames)
}

#[test]
fn image_payloads_stay_in_place_after_their_cdr_prefix() {
    let (file, frames) = build();
    let msgs = segment_messages(&file);
    let images: Vec<_> = msgs
        .iter()
        .filter(|m| m.kind == StreamKind::Image)
        .collect();
    assert_eq!(images.len(), 3);
    for (m, f) in images
        .iter()
        .zip(frames.iter().filter(|f| f.meta.stream.0 == 0))
    {
        let data = &file[m.data.clone()];
        // 4 (encapsulation) + stamp 8 + "cam" 4+4 + height, width 8 + "16UC1" 4+6 + 1 +
        // pad 1 + step 4 + data length 4.
        let prefix = 4 + 8 + 8 + 8 + 10 + 2 + 4 + 4;
        assert_eq!(data.len(), prefix + 24);
        assert_eq!(
            &data[prefix..],
            f.buf.payload(),
            "payload follows the prefix"
        );
        // Zero copy: the message's data ends its prefix exactly where the buffer's payload
        // starts, and the payload is written from the frame's own region.
        let region = f.buf.region();
        assert_eq!(&region[HEADROOM - prefix..HEADROOM], &data[..prefix]);
        assert!(f.span.0 < HEADROOM - prefix && f.span.1 >= HEADROOM + 24);
        let img = decode_raw_image(data).unwrap();
        assert_eq!(
            (img.width, img.height, img.step, img.encoding),
            (4, 3, 8, "16UC1")
        );
        assert_eq!(img.timestamp_ns, f.meta.publish_ns);
    }
    let accel: Vec<_> = msgs
        .iter()
        .filter(|m| m.kind == StreamKind::Accel)
        .collect();
    assert_eq!(accel.len(), 1);
    let a = decode_accel(&file[accel[0].data.clone()]).unwrap();
    assert!((a.x - accel::GRAVITY).abs() < 1e-9 && (a.y + accel::GRAVITY).abs() < 1e-9);
}

#[test]
fn the_scanner_reads_frames_and_cdr_notices() {
    let (file, _) = build();
    let c = parse_segment(&file);
    assert!(c.finalized && c.damage.is_empty(), "{:?}", c.damage);
    let depth = c.stream("depth").unwrap();
    assert_eq!(depth.frames.frames(), 3);
    assert_eq!(depth.drops.len(), 1);
    assert_eq!(
        (depth.drops[0].first, depth.drops[0].last),
        (FrameSeq(3), FrameSeq(5))
    );
    assert_eq!(c.stream("accel").unwrap().kind, StreamKind::Accel);
}

#[test]
fn the_mcap_crate_reads_the_profile_and_the_rosbag2_record() {
    let (file, _) = build();
    let summary = mcap::Summary::read(&file).unwrap().unwrap();
    let names: Vec<&str> = summary
        .metadata_indexes
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["framerec", BAG_METADATA_NAME]);
    let index = &summary.metadata_indexes[1];
    let meta = mcap::read::metadata(&file, index).unwrap();
    let yaml = &meta.metadata["serialized_metadata"];
    assert!(
        yaml.contains("relative_file_paths:\n  - \"0000000000000007.mcap\""),
        "{yaml}"
    );
    assert!(yaml.contains("message_count: 5\n"), "{yaml}");
    assert_eq!(summary.stats.as_ref().unwrap().metadata_count, 2);
    let types: Vec<(String, String)> = summary
        .channels
        .values()
        .map(|c| {
            let s = c.schema.as_ref().unwrap();
            assert_eq!(
                (s.encoding.as_str(), c.message_encoding.as_str()),
                ("ros2msg", "cdr")
            );
            assert!(c.metadata.contains_key("offered_qos_profiles"));
            (c.topic.clone(), s.name.clone())
        })
        .collect();
    assert!(types.contains(&("/framerec/drops".into(), DROP_TYPE.into())));
    assert!(types.contains(&("/camera/accel".into(), IMU_TYPE.into())));
    let msgs = mcap::MessageStream::new(&file)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(msgs.len(), 5);
}

#[test]
fn recover_rebuilds_a_cut_ros2_segment_in_its_profile() {
    let (file, _) = build();
    // Cut inside the tail: no summary, no footer.
    let cut = &file[..file.len() - 200];
    let rec = recover_segment(cut, &[]).unwrap();
    let bytes = rec.bytes;
    let header = mcap::read::LinearReader::new(&bytes)
        .unwrap()
        .find_map(|r| match r.unwrap() {
            mcap::records::Record::Header(h) => Some(h),
            _ => None,
        })
        .unwrap();
    assert_eq!(header.profile, "ros2");
    let summary = mcap::Summary::read(&bytes).unwrap().unwrap();
    assert!(
        summary
            .schemas
            .values()
            .all(|s| s.encoding == SCHEMA_ENCODING)
    );
    let names: Vec<&str> = summary
        .metadata_indexes
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["framerec", BAG_METADATA_NAME]);
    let c = parse_segment(&bytes);
    assert!(c.finalized && c.damage.is_empty(), "{:?}", c.damage);
    assert_eq!(c.stream("depth").unwrap().frames.frames(), 3);
    assert_eq!(
        Profile::of_schemas(["foxglove.RawImage"].into_iter()),
        Profile::Foxglove
    );
}

#[test]
fn metadata_yaml_comes_from_the_summaries_and_damage_does_not_panic() {
    let (file, _) = build();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(segment_file_name(7));
    std::fs::write(&path, &file).unwrap();
    // A segment of the default profile beside it is not part of the bag.
    std::fs::write(tmp.path().join(segment_file_name(3)), b"not a segment").unwrap();
    assert!(bag::write_metadata_yaml(tmp.path()).unwrap());
    let yaml = std::fs::read_to_string(tmp.path().join(bag::METADATA_YAML)).unwrap();
    assert!(
        yaml.starts_with("rosbag2_bagfile_information:\n  version: 9\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  relative_file_paths:\n    - \"0000000000000007.mcap\"\n"));
    assert!(!yaml.contains("0000000000000003.mcap"), "{yaml}");
    assert!(yaml.contains("  message_count: 5\n"), "{yaml}");
    assert!(
        yaml.contains("      type: \"sensor_msgs/msg/Imu\"\n"),
        "{yaml}"
    );
    // rosbag2 (version 9) decodes the profiles as a sequence of QoS, not a string; an empty
    // custom_data as a map.
    assert!(
        yaml.contains("        offered_qos_profiles:\n          - history: keep_last\n"),
        "{yaml}"
    );
    assert!(yaml.contains("  custom_data: {}\n"), "{yaml}");
    // Any byte of the summary and footer changed: a description or none, never a panic.
    let summary_from = file.len() - 600;
    for at in summary_from..file.len() {
        let mut bad = file.clone();
        bad[at] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let _ = bag::read_bag_file(&path).unwrap();
    }
    std::fs::write(&path, &file[..file.len() / 2]).unwrap();
    assert_eq!(
        bag::read_bag_file(&path).unwrap(),
        None,
        "unfinished: not described"
    );
}
