//! The streams of a segment as a scan learns them: each channel's role from its schema name,
//! its stream name from its metadata, and per stream the runs of frames and the drop notices
//! that name it, within caps on their totals.

use std::collections::BTreeMap;

use super::fields::ChannelRecord;
use super::*;
use crate::segment::{accel, ros2};

/// What the messages of a stream channel are, learned from its schema name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StreamKind {
    /// `foxglove.RawImage` (depth `16UC1`, colour `rgb8`).
    Image,
    /// `framerec.Accelerometer`.
    Accel,
}

/// The name of a stream whose channel has no `stream` metadata: a format v1 file, whose only
/// stream is depth.
pub const V1_STREAM_NAME: &str = "depth";

/// The role of a channel, from the name of its schema (or, when the schema record is gone,
/// its topic and message encoding).
enum Role {
    Drops,
    Stream(StreamKind),
    /// Another writer's channel: its messages are counted, not read.
    Other,
}

fn role(schema: Option<&str>, topic: &str, encoding: &str) -> Role {
    match schema {
        Some(DROP_SCHEMA_NAME | ros2::DROP_TYPE) => Role::Drops,
        Some(accel::SCHEMA_NAME | ros2::IMU_TYPE) => Role::Stream(StreamKind::Accel),
        Some(DEPTH_SCHEMA_NAME | ros2::IMAGE_TYPE) => Role::Stream(StreamKind::Image),
        Some(_) => Role::Other,
        None if topic == DROP_TOPIC && matches!(encoding, "json" | "cdr") => Role::Drops,
        None => Role::Stream(StreamKind::Image),
    }
}

/// What a scan found of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamContents {
    pub channel: u16,
    /// The channel's `stream` metadata ([`V1_STREAM_NAME`] when absent).
    pub name: String,
    pub topic: String,
    pub kind: StreamKind,
    /// Sequence numbers of its messages.
    pub frames: SeqRuns,
    /// Its first message.
    pub first_message: Option<MessageRef>,
    /// Drop notices naming it, a notice that continues the last one (same reason, next frame)
    /// merged into it.
    pub drops: Vec<DropNotice>,
    /// Drop notices read after [`MAX_DROPS`] were kept over all streams: only counted, here.
    pub drops_not_kept: u64,
    /// Frames those notices name, by reason (at most `MAX_REASONS` reasons; others counted
    /// under `OTHER_REASONS`).
    pub dropped_not_kept: BTreeMap<String, u64>,
    /// The highest frame a drop notice names, kept or not.
    pub max_dropped: Option<u64>,
    /// The lowest frame a drop notice names, kept or not.
    pub min_dropped: Option<u64>,
    /// Its messages read.
    pub messages: u64,
}

impl StreamContents {
    pub fn new(channel: u16, name: &str, topic: &str, kind: StreamKind) -> StreamContents {
        StreamContents {
            channel,
            name: name.to_string(),
            topic: topic.to_string(),
            kind,
            frames: SeqRuns::default(),
            first_message: None,
            drops: Vec::new(),
            drops_not_kept: 0,
            dropped_not_kept: BTreeMap::new(),
            max_dropped: None,
            min_dropped: None,
            messages: 0,
        }
    }

    /// Whether every run of frames and every drop notice was kept.
    pub fn complete(&self) -> bool {
        self.frames.not_kept() == 0 && self.drops_not_kept == 0
    }

    /// Counts notice `d` as one not kept, its frames under its reason (or `OTHER_REASONS`).
    fn count_not_kept(&mut self, d: &DropNotice) {
        self.drops_not_kept += 1;
        let key = if self.dropped_not_kept.contains_key(d.reason.as_str())
            || self.dropped_not_kept.len() < MAX_REASONS
        {
            d.reason.as_str().to_string()
        } else {
            OTHER_REASONS.to_string()
        };
        *self.dropped_not_kept.entry(key).or_insert(0) +=
            d.last.0.saturating_sub(d.first.0).saturating_add(1);
    }

    /// Keeps the counts, frees the runs and the notices.
    pub fn forget(&mut self) {
        self.frames.forget();
        for d in std::mem::take(&mut self.drops) {
            self.count_not_kept(&d);
        }
    }

    /// Frames dropped by reason: the kept notices' and the counted ones'.
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        let mut dropped = BTreeMap::new();
        for d in &self.drops {
            *dropped.entry(d.reason.as_str().to_string()).or_insert(0) +=
                (d.last.0 - d.first.0).saturating_add(1);
        }
        for (reason, n) in &self.dropped_not_kept {
            *dropped.entry(reason.clone()).or_insert(0) += n;
        }
        dropped
    }
}

impl SegmentContents {
    /// Notes a channel record: its role from its schema's name, and as a stream its name.
    pub(crate) fn channel_record(&mut self, record: ChannelRecord) {
        let (id, schema_id, topic, encoding, meta) = record;
        let schema = self.schemas.get(&schema_id).map(String::as_str);
        // Schema id 0 is "no schema": never one of framerec's channels.
        let role = match schema_id {
            0 => Role::Other,
            _ => role(schema, &topic, &encoding),
        };
        match role {
            Role::Drops => {
                self.drop_channel.get_or_insert(id);
            }
            Role::Stream(kind) => {
                // No `stream` metadata: format v1's depth, or another writer's channel named
                // by its topic.
                let unnamed = match self.library.starts_with("framerec") || self.library.is_empty()
                {
                    true => V1_STREAM_NAME,
                    false => topic.as_str(),
                };
                let name = meta.get("stream").map_or(unnamed, String::as_str);
                self.add_stream(id, name, &topic, kind);
            }
            Role::Other => {}
        }
        self.channels.insert(id, (topic, encoding));
        self.channel_metadata.insert(id, meta);
    }

    /// Whether messages on `channel` are drop notices. Without a drop channel record (a
    /// damaged head), v1's drop channel id is taken for one unless a stream has it.
    pub(crate) fn is_drop_channel(&self, channel: u16) -> bool {
        match self.drop_channel {
            Some(id) => id == channel,
            None => channel == DROP_CHANNEL_ID && !self.channels.contains_key(&channel),
        }
    }

    /// A scan with this one's schemas, channels and streams and nothing found yet.
    pub(crate) fn same_streams(&self) -> SegmentContents {
        let mut out = SegmentContents {
            schemas: self.schemas.clone(),
            channels: self.channels.clone(),
            channel_metadata: self.channel_metadata.clone(),
            drop_channel: self.drop_channel,
            ..SegmentContents::default()
        };
        for s in &self.streams {
            out.add_stream(s.channel, &s.name, &s.topic, s.kind);
        }
        out
    }

    /// Adds a stream on channel `channel` (a channel defined twice keeps its first stream) and
    /// returns its index in [`SegmentContents::streams`].
    pub fn add_stream(&mut self, channel: u16, name: &str, topic: &str, kind: StreamKind) -> usize {
        if let Some(i) = self.stream_index(channel) {
            return i;
        }
        let i = self.streams.len();
        self.streams
            .push(StreamContents::new(channel, name, topic, kind));
        self.by_channel.insert(channel, i);
        self.by_topic.entry(topic.to_string()).or_insert(i);
        i
    }

    /// The index of the stream on channel `channel`.
    pub fn stream_index(&self, channel: u16) -> Option<usize> {
        self.by_channel.get(&channel).copied()
    }

    /// The index of the stream whose topic is `topic` (what a drop notice names).
    pub fn stream_of_topic(&self, topic: &str) -> Option<usize> {
        self.by_topic.get(topic).copied()
    }

    /// Notes frame `seq` of stream `stream` (an index), within [`MAX_RUNS`] runs over all
    /// streams.
    pub fn push_frame(&mut self, stream: usize, seq: u64, log_time: u64) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        let before = s.frames.runs().len();
        let room = MAX_RUNS - (self.runs_kept - before);
        s.frames.push_within(seq, log_time, room);
        self.runs_kept = self.runs_kept - before + s.frames.runs().len();
    }

    /// Notes a message at `log_time` on `channel`, a channel that is neither a stream nor
    /// the drop channel.
    pub(super) fn other_message(&mut self, channel: u16, log_time: u64) {
        *self.channel_messages.entry(channel).or_insert(0) += 1;
        let t = self
            .channel_times
            .entry(channel)
            .or_insert((log_time, log_time));
        *t = (t.0.min(log_time), t.1.max(log_time));
        self.start_time_ns = Some(self.start_time_ns.map_or(log_time, |t| t.min(log_time)));
        self.end_time_ns = Some(self.end_time_ns.map_or(log_time, |t| t.max(log_time)));
    }

    pub(super) fn message(&mut self, stream: usize, m: &MessageRef) {
        // Another writer's frames are numbered by their place in the stream: their MCAP
        // sequence numbers need not be unique (rosbag2 and many writers leave them 0).
        let foreign = self.is_foreign();
        if let Some(s) = self.streams.get_mut(stream) {
            let seq = if foreign {
                s.messages
            } else {
                m.sequence as u64
            };
            s.messages += 1;
            if s.first_message.is_none() {
                s.first_message = Some(m.clone());
            }
            self.push_frame(stream, seq, m.log_time);
        }
        *self.channel_messages.entry(m.channel).or_insert(0) += 1;
        self.start_time_ns = Some(self.start_time_ns.map_or(m.log_time, |t| t.min(m.log_time)));
        self.end_time_ns = Some(self.end_time_ns.map_or(m.log_time, |t| t.max(m.log_time)));
    }

    /// Notes notice `d` read on drop channel `channel` at `offset`, for the stream of topic
    /// `topic`: one no channel has is damage (a notice naming no stream is the first stream's,
    /// as v1 wrote only depth).
    pub(super) fn notice_message(
        &mut self,
        channel: u16,
        offset: u64,
        d: DropNotice,
        topic: Option<String>,
    ) {
        *self.channel_messages.entry(channel).or_insert(0) += 1;
        let stream = match topic {
            Some(t) => self.stream_of_topic(&t).ok_or(t),
            None => Ok(0),
        };
        match stream {
            Ok(i) => self.drop_notice(i, d),
            Err(mut topic) => {
                let mut end = topic.len().min(MAX_REASON_BYTES);
                while !topic.is_char_boundary(end) {
                    end -= 1;
                }
                topic.truncate(end);
                self.damage
                    .push(DecodeError::NoticeForUnknownStream { offset, topic });
            }
        }
    }

    /// Notes what the damaged chunk at `offset` claims to hold, (channel, sequence) per
    /// message: per stream, its lowest and highest number and count. Returns the sequence
    /// numbers of those on stream channels.
    pub(super) fn damaged_chunk(&mut self, offset: u64, claims: &[(u16, u32)]) -> Vec<u32> {
        let mut sequences = Vec::new();
        let mut claimed: BTreeMap<usize, (u64, u64, usize)> = BTreeMap::new();
        for &(channel, seq) in claims {
            let Some(stream) = self.stream_index(channel) else {
                continue;
            };
            sequences.push(seq);
            let seq = seq as u64;
            let e = claimed.entry(stream).or_insert((seq, seq, 0));
            *e = (e.0.min(seq), e.1.max(seq), e.2 + 1);
        }
        for (stream, (first, last, count)) in claimed {
            self.damaged_chunks.push(DamagedChunk {
                offset,
                stream,
                first,
                last,
                count,
            });
        }
        sequences
    }

    /// Notes a drop notice of stream `stream` (an index), within [`MAX_DROPS`] notices over all
    /// streams; past them only its frames are counted, by reason.
    pub fn drop_notice(&mut self, stream: usize, d: DropNotice) {
        let full = self.drops_kept >= MAX_DROPS;
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        s.max_dropped = Some(s.max_dropped.map_or(d.last.0, |m| m.max(d.last.0)));
        s.min_dropped = Some(s.min_dropped.map_or(d.first.0, |m| m.min(d.first.0)));
        if s.drops_not_kept > 0 || full {
            s.count_not_kept(&d);
            return;
        }
        if let Some(last) = s.drops.last_mut()
            && last.reason == d.reason
            && last.last.0.checked_add(1) == Some(d.first.0)
        {
            last.last = d.last;
            return;
        }
        s.drops.push(d);
        self.drops_kept += 1;
    }
}
