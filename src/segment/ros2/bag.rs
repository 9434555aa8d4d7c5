//! rosbag2's description of a recording: the `rosbag2` metadata record each ros2 segment
//! carries in its tail (the segment as a one-file bag) and the directory's `metadata.yaml`
//! (every finished segment), which `ros2 bag play`, `ros2 bag info` and `rosbags` read.
//!
//! `metadata.yaml` is rebuilt from the summaries of the segments on disk (footer, channels,
//! statistics: a few KiB each), so it is the same whoever writes it: the recorder at each
//! segment close, or `recover` after a crash. It is written to a temporary file, fsync'd and
//! renamed over the old one, so a reader sees the old or the new one whole.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::super::{
    ChunkIndexEntry, MAGIC, OP_CHANNEL, OP_FOOTER, OP_SCHEMA, OP_STATISTICS, RECORD_PREFIX,
    TailMetadata, drop_channel_id, parse_segment_file_name, segment_file_name, stream_channel_id,
};
use super::{BAG_METADATA_NAME, BAG_VERSION, DROP_TYPE, IMAGE_TYPE, IMU_TYPE, SCHEMA_ENCODING};
use crate::frame::{StreamId, StreamInfo};

/// The directory's rosbag2 metadata file.
pub const METADATA_YAML: &str = "metadata.yaml";

/// Largest summary section read from a segment (framerec's are a few KiB).
const MAX_SUMMARY_BYTES: u64 = 16 << 20;

/// One file of a bag: its name, message times and counts per topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BagFile {
    pub path: String,
    pub start_ns: u64,
    pub end_ns: u64,
    /// (topic, message type, messages), by topic.
    pub topics: BTreeMap<String, (String, u64)>,
}

impl BagFile {
    fn messages(&self) -> u64 {
        self.topics.values().map(|t| t.1).sum()
    }
}

/// The YAML body of `rosbag2_bagfile_information` for `files` (in order).
pub fn bag_yaml(files: &[BagFile], indent: &str) -> String {
    let counted: Vec<&BagFile> = files.iter().filter(|f| f.messages() > 0).collect();
    let start = counted.iter().map(|f| f.start_ns).min().unwrap_or(0);
    let end = counted.iter().map(|f| f.end_ns).max().unwrap_or(0);
    let mut topics: BTreeMap<&str, (&str, u64)> = BTreeMap::new();
    for f in files {
        for (name, (ty, n)) in &f.topics {
            topics.entry(name).or_insert((ty, 0)).1 += n;
        }
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let total: u64 = files.iter().map(BagFile::messages).sum();
    let mut y = String::new();
    let mut line = |s: String| {
        y.push_str(indent);
        y.push_str(&s);
        y.push('\n');
    };
    line(format!("version: {BAG_VERSION}"));
    line("storage_identifier: mcap".into());
    line("relative_file_paths:".into());
    for f in files {
        line(format!("  - {}", q(&f.path)));
    }
    line(format!(
        "duration:\n{indent}  nanoseconds: {}",
        end.saturating_sub(start)
    ));
    line(format!(
        "starting_time:\n{indent}  nanoseconds_since_epoch: {start}"
    ));
    line(format!("message_count: {total}"));
    line("topics_with_message_count:".into());
    let qos = super::offered_qos_profiles();
    for (name, (ty, n)) in &topics {
        line(format!(
            "  - topic_metadata:\n{indent}      name: {}",
            q(name)
        ));
        line(format!("      type: {}", q(ty)));
        line("      serialization_format: cdr".into());
        // Version 9 holds the profiles as a YAML sequence (rosbag2 decodes a vector of QoS).
        line("      offered_qos_profiles:".into());
        for l in qos.lines() {
            line(format!("        {l}"));
        }
        line("      type_description_hash: \"\"".into());
        line(format!("    message_count: {n}"));
    }
    line("compression_format: \"\"".into());
    line("compression_mode: \"\"".into());
    line("files:".into());
    for f in files {
        let s = if f.messages() > 0 { f.start_ns } else { 0 };
        line(format!("  - path: {}", q(&f.path)));
        line(format!(
            "    starting_time:\n{indent}      nanoseconds_since_epoch: {s}"
        ));
        line(format!(
            "    duration:\n{indent}      nanoseconds: {}",
            f.end_ns.saturating_sub(s)
        ));
        line(format!("    message_count: {}", f.messages()));
    }
    line("custom_data: {}".into());
    line("ros_distro: \"\"".into());
    y
}

/// The `rosbag2` metadata record of segment `segment_id` holding `chunks`.
pub fn segment_metadata(
    segment_id: u64,
    streams: &[StreamInfo],
    chunks: &[ChunkIndexEntry],
) -> TailMetadata {
    let mut file = BagFile {
        path: segment_file_name(segment_id),
        start_ns: chunks.iter().map(|c| c.start_time).min().unwrap_or(0),
        end_ns: chunks.iter().map(|c| c.end_time).max().unwrap_or(0),
        topics: BTreeMap::new(),
    };
    let mut channels: Vec<(u16, &str, &str)> = streams
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ty = if s.format.is_image() {
                IMAGE_TYPE
            } else {
                IMU_TYPE
            };
            (stream_channel_id(StreamId(i as u16)), s.topic.as_str(), ty)
        })
        .collect();
    channels.push((
        drop_channel_id(streams.len()),
        super::super::DROP_TOPIC,
        DROP_TYPE,
    ));
    for (id, topic, ty) in channels {
        let n = chunks
            .iter()
            .flat_map(|c| &c.channels)
            .filter(|c| c.0 == id)
            .map(|c| c.1)
            .sum();
        file.topics.insert(topic.to_string(), (ty.to_string(), n));
    }
    TailMetadata {
        name: BAG_METADATA_NAME.into(),
        entries: vec![("serialized_metadata".into(), bag_yaml(&[file], ""))],
    }
}

/// What the summary of a finished ros2 segment says; `None` for an unfinished segment or one
/// of another profile.
pub fn read_bag_file(path: &Path) -> io::Result<Option<BagFile>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let tail_len = (RECORD_PREFIX + 20 + MAGIC.len()) as u64;
    if len < MAGIC.len() as u64 + tail_len {
        return Ok(None);
    }
    let mut tail = [0u8; RECORD_PREFIX + 20 + 8];
    f.seek(SeekFrom::Start(len - tail_len))?;
    f.read_exact(&mut tail)?;
    if tail[0] != OP_FOOTER || tail[tail.len() - 8..] != MAGIC {
        return Ok(None);
    }
    let summary_start = u64::from_le_bytes(tail[9..17].try_into().unwrap_or_default());
    let summary_end = len - tail_len;
    if summary_start == 0
        || summary_start > summary_end
        || summary_end - summary_start > MAX_SUMMARY_BYTES
    {
        return Ok(None);
    }
    let mut summary = vec![0u8; (summary_end - summary_start) as usize];
    f.seek(SeekFrom::Start(summary_start))?;
    f.read_exact(&mut summary)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(parse_summary(&summary, name))
}

/// A bag file from the records of a summary section; `None` without ros2 schemas.
fn parse_summary(summary: &[u8], path: String) -> Option<BagFile> {
    let mut schemas: BTreeMap<u16, String> = BTreeMap::new();
    let mut channels: Vec<(u16, u16, String)> = Vec::new();
    let mut file = BagFile {
        path,
        ..BagFile::default()
    };
    let mut counts: BTreeMap<u16, u64> = BTreeMap::new();
    let mut at = 0usize;
    while summary.len() - at >= RECORD_PREFIX {
        let op = summary[at];
        let n = u64::from_le_bytes(summary[at + 1..at + 9].try_into().ok()?);
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= summary.len() - at - RECORD_PREFIX)?;
        let mut c = Cur(&summary[at + RECORD_PREFIX..at + RECORD_PREFIX + n]);
        at += RECORD_PREFIX + n;
        match op {
            OP_SCHEMA => {
                let id = c.u16()?;
                let name = c.str()?;
                if c.str()? == SCHEMA_ENCODING {
                    schemas.insert(id, name.to_string());
                }
            }
            OP_CHANNEL => {
                let id = c.u16()?;
                let schema = c.u16()?;
                channels.push((id, schema, c.str()?.to_string()));
            }
            OP_STATISTICS => {
                c.take(8 + 2 + 4 + 4 + 4 + 4)?;
                file.start_ns = c.u64()?;
                file.end_ns = c.u64()?;
                let n = c.u32()? as usize;
                let mut m = Cur(c.take(n)?);
                while !m.0.is_empty() {
                    let id = m.u16()?;
                    counts.insert(id, m.u64()?);
                }
            }
            _ => {}
        }
    }
    if schemas.is_empty() {
        return None;
    }
    for (id, schema, topic) in channels {
        let ty = schemas.get(&schema)?.clone();
        file.topics
            .insert(topic, (ty, counts.get(&id).copied().unwrap_or(0)));
    }
    Some(file)
}

/// A little-endian reader over a record body.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
}

/// Rewrites `dir`'s `metadata.yaml` from its finished ros2 segments (temporary file, fsync,
/// rename, fsync of the directory). Returns whether it wrote one: a directory without a
/// finished ros2 segment is left alone.
pub fn write_metadata_yaml(dir: &Path) -> io::Result<bool> {
    // Two segments may finalize at once (the open one and the one opened ahead): one rewrite
    // at a time, so the last rename is of the last look at the directory and no two share the
    // temporary file.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let mut ids: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_segment_file_name(e.file_name().to_str()?))
        .collect();
    ids.sort_unstable();
    let mut files = Vec::new();
    for id in ids {
        match read_bag_file(&dir.join(segment_file_name(id))) {
            Ok(Some(f)) => files.push(f),
            Ok(None) => {}
            // Deleted by retention in between: it is no longer part of the bag.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if files.is_empty() {
        return Ok(false);
    }
    let text = format!("rosbag2_bagfile_information:\n{}", bag_yaml(&files, "  "));
    let tmp = dir.join(".metadata.yaml.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(METADATA_YAML))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(true)
}
