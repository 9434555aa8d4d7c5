//! Where a recording keeps each stream's raw device time.
//!
//! A message's `publish_time` is the device clock anchored to host realtime at the stream's
//! first frame of the run (see [`FrameMeta::publish_ns`](crate::frame::FrameMeta)): an absolute
//! time with the device's spacing, as the MCAP specification asks. The offset that anchored it
//! (`publish_time - device time`, one per stream and run) is written at every segment's close
//! in a Metadata record named [`CLOCK_METADATA_NAME`], one entry per stream that has frames by
//! then, keyed by the stream's name, its value the offset in nanoseconds as a signed decimal.
//! So the raw device time of a message is `publish_time - offset`.
//!
//! A segment whose tail a crash cut off has no such record (`recover` cannot know the offset):
//! its publish times still keep the device's spacing. Files written before this record
//! existed have no `publish_time` key in their head's `framerec` metadata, and their
//! `publish_time` is the raw device time itself.

use std::collections::BTreeMap;

use crate::frame::StreamInfo;

use super::TailMetadata;

/// Name of the Metadata record holding each stream's clock offset.
pub const CLOCK_METADATA_NAME: &str = "framerec.clock";
/// Key of the head's `framerec` metadata that says what `publish_time` holds, and its value.
pub const PUBLISH_TIME_KEY: &str = "publish_time";
pub const PUBLISH_TIME_ANCHORED: &str = "device clock anchored to host realtime at first frame";

/// How a segment's publish times give a stream's raw device time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceClock {
    /// Written before publish times were anchored: `publish_time` is the device time.
    Raw,
    /// `publish_time - offset` is the device time.
    Offset(i64),
    /// Anchored, and the offset is lost (a segment cut by a crash): `publish_time` keeps the
    /// device's spacing but not its origin.
    Unknown,
}

impl DeviceClock {
    /// What `head_metadata` (the head's `framerec` record) and the segment's clock record
    /// (`offsets`, see [`read_offsets`]) say of `stream`.
    pub fn of(
        head_metadata: &BTreeMap<String, String>,
        offsets: &BTreeMap<String, i64>,
        stream: &str,
    ) -> DeviceClock {
        match (
            head_metadata.contains_key(PUBLISH_TIME_KEY),
            offsets.get(stream),
        ) {
            (false, _) => DeviceClock::Raw,
            (true, Some(&o)) => DeviceClock::Offset(o),
            (true, None) => DeviceClock::Unknown,
        }
    }

    /// The device time of a message published at `publish_ns` (the publish time itself when
    /// the offset is unknown).
    pub fn device_ns(self, publish_ns: u64) -> u64 {
        match self {
            DeviceClock::Offset(o) => {
                (publish_ns as i128 - o as i128).clamp(0, u64::MAX as i128) as u64
            }
            DeviceClock::Raw | DeviceClock::Unknown => publish_ns,
        }
    }
}

/// The clock offsets a finished segment's tail records, by stream name (empty when it has no
/// clock record, or no summary to find it by).
pub fn read_offsets(src: &(impl super::Source + ?Sized)) -> BTreeMap<String, i64> {
    super::decode::indexed_metadata(src, CLOCK_METADATA_NAME).map_or_else(BTreeMap::new, |m| {
        parse_clock(m.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    })
}

/// `publish_ns - device_ns` of a frame, saturated to the `i64` range.
pub fn offset_of(publish_ns: u64, device_ns: u64) -> i64 {
    (publish_ns as i128 - device_ns as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The clock record for `offsets` (by stream index), or None when no stream has one yet.
pub fn clock_metadata(
    streams: &[StreamInfo],
    offsets: &BTreeMap<usize, i64>,
) -> Option<TailMetadata> {
    let entries: Vec<(String, String)> = offsets
        .iter()
        .filter_map(|(&i, offset)| Some((streams.get(i)?.name.clone(), offset.to_string())))
        .collect();
    (!entries.is_empty()).then(|| TailMetadata {
        name: CLOCK_METADATA_NAME.to_string(),
        entries,
    })
}

/// The offsets a clock record names, by stream name; entries that are no integer are skipped.
pub fn parse_clock<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, i64> {
    entries
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse::<i64>().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_by_stream_name() {
        let streams = vec![
            StreamInfo::depth("/camera/depth", "camera_depth", 640, 480),
            StreamInfo::depth("/camera/other", "other", 640, 480),
        ];
        let mut offsets = BTreeMap::new();
        assert_eq!(clock_metadata(&streams, &offsets), None);
        offsets.insert(0, offset_of(1_796_000_000_000_000_000, 5_000));
        offsets.insert(7, 1); // a stream the table does not have: left out
        let record = clock_metadata(&streams, &offsets).unwrap();
        assert_eq!(record.name, CLOCK_METADATA_NAME);
        let parsed = parse_clock(record.entries.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[&streams[0].name], 1_796_000_000_000_000_000 - 5_000);
        assert_eq!(offset_of(0, u64::MAX), i64::MIN);
        assert!(
            parse_clock([("depth", "x"), ("color", "-12")])
                == BTreeMap::from([("color".to_string(), -12)])
        );
    }

    #[test]
    fn the_device_time_comes_back_from_the_publish_time() {
        let anchored = BTreeMap::from([(PUBLISH_TIME_KEY.to_string(), "x".to_string())]);
        let offsets = BTreeMap::from([("depth".to_string(), 1_000i64)]);
        let clock = DeviceClock::of(&anchored, &offsets, "depth");
        assert_eq!(clock, DeviceClock::Offset(1_000));
        assert_eq!(clock.device_ns(1_500), 500);
        assert_eq!(clock.device_ns(10), 0, "clamped, never wrapping");
        assert_eq!(
            DeviceClock::of(&anchored, &offsets, "color"),
            DeviceClock::Unknown
        );
        assert_eq!(
            DeviceClock::of(&BTreeMap::new(), &offsets, "depth"),
            DeviceClock::Raw
        );
        assert_eq!(DeviceClock::Raw.device_ns(77), 77);
    }

    #[test]
    fn a_written_segment_yields_its_offsets_and_damage_yields_none() {
        let bytes = crate::segment::tests::segment_with_clock();
        let offsets = read_offsets(&bytes[..]);
        assert_eq!(offsets.get("depth"), Some(&-42));
        for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_offsets(&bytes[..cut]).is_empty(), "cut at {cut}");
        }
        // Every single flipped byte of the tail: an answer or none, never a panic.
        for i in bytes.len().saturating_sub(400)..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0xff;
            let _ = read_offsets(&bad[..]);
        }
    }
}
