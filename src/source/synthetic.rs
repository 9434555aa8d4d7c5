//! The synthetic source: deterministic Kinect-like streams (depth, and optionally colour and
//! accelerometer), paced on an absolute schedule.
//!
//! # Frame content
//! Depth frame `seq` of a source with seed `seed` is `width * height` little-endian `u16`
//! samples; sample `i` is
//!
//! ```text
//! T[(i + seq * 7919) mod 65521],   T[j] = splitmix64(seed ^ j) mod 2048
//! ```
//!
//! so a test can re-derive every byte of every frame from `(seed, seq)` with [`expected_frame`],
//! and values stay in the Kinect's 11-bit range. Filling a frame is a handful of `memcpy`s.
//!
//! Colour frame `seq` (`rgb8`, `width * height * 3` bytes) is the first `width * height * 3`
//! bytes of depth frame `seq` of a source with seed `seed + 1` and `width * height * 3 / 2`
//! samples, read as bytes ([`expected_color_frame`]).
//!
//! Accelerometer reading `seq` ([`expected_accel`]) is, with `r = splitmix64(seed ^ 0xACCE1 ^
//! seq)`: `accelerometer_x/y/z` = the low, middle and high 16-bit words of `r`, each taken mod
//! 1639 minus 819 (within +-1 g), `tilt_angle` = `seq mod 61 - 30`, `tilt_status` = 0.
//!
//! # Schedule
//! Stream `s` has a rate: `fps` for depth and colour, `accel_rate` for the accelerometer. Its
//! frame `k` (counted from the run's first) is due `k / rate` seconds after the start; frames go
//! out in due order, the lower stream index first on a tie. Unpaced (`fps = 0`), the same order
//! holds with a nominal 30 fps for the images.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::frame::{FrameBuf, FrameFormat, StreamId, StreamInfo, host_mono_ns};
use crate::segment::accel::{RAW_BYTES, RawTilt};

use super::{Capture, KinectStream, Source, SourceError};

/// Length of the sample table, a prime so consecutive frames shift by a different phase.
const TABLE_LEN: usize = 65_521;
/// Per-frame shift of the table, in samples.
const SHIFT_PER_FRAME: u64 = 7_919;

/// Settings of the synthetic source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticConfig {
    pub width: u32,
    pub height: u32,
    /// Frames per second; 0 means unpaced (as fast as the receiver takes them).
    pub fps: u32,
    pub seed: u64,
    pub topic: String,
    pub frame_id: String,
    /// The streams to make, in this order (the stream table); `depth` alone by default.
    pub streams: Vec<KinectStream>,
    /// Readings per second of the accelerometer stream.
    pub accel_rate: u32,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            width: 640,
            height: 480,
            fps: 30,
            seed: 1,
            topic: "/camera/depth".into(),
            frame_id: "camera_depth".into(),
            streams: KinectStream::default_table(),
            accel_rate: 100,
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The sample table for `seed`, as little-endian bytes.
fn table_bytes(seed: u64) -> Vec<u8> {
    (0..TABLE_LEN as u64)
        .flat_map(|j| ((splitmix64(seed ^ j) % 2048) as u16).to_le_bytes())
        .collect()
}

fn fill(table: &[u8], seq: u64, out: &mut [u8]) {
    let mut k = ((seq % TABLE_LEN as u64) * SHIFT_PER_FRAME % TABLE_LEN as u64) as usize * 2;
    let mut at = 0;
    while at < out.len() {
        let n = (table.len() - k).min(out.len() - at);
        out[at..at + n].copy_from_slice(&table[k..k + n]);
        at += n;
        k = 0;
    }
}

/// The payload of colour frame `seq`, computed from the definition.
pub fn expected_color_frame(seed: u64, seq: u64, width: u32, height: u32) -> Vec<u8> {
    let len = width as usize * height as usize * 3;
    let mut out = expected_frame(seed.wrapping_add(1), seq, len.div_ceil(2) as u32, 1);
    out.truncate(len);
    out
}

/// Accelerometer reading `seq`, computed from the definition.
pub fn expected_accel(seed: u64, seq: u64) -> [u8; RAW_BYTES] {
    let r = splitmix64(seed ^ 0xACCE1 ^ seq);
    let word = |shift: u32| ((r >> shift) as u16 % 1639) as i16 - 819;
    RawTilt {
        accel: [word(0), word(16), word(32)],
        tilt_angle: (seq % 61) as i8 - 30,
        tilt_status: 0,
    }
    .to_bytes()
}

/// The payload of frame `seq`, computed from the definition (for tests and verification).
pub fn expected_frame(seed: u64, seq: u64, width: u32, height: u32) -> Vec<u8> {
    let n = width as usize * height as usize;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n as u64 {
        let j = (i + seq.wrapping_mul(SHIFT_PER_FRAME)) % TABLE_LEN as u64;
        out.extend_from_slice(&((splitmix64(seed ^ j) % 2048) as u16).to_le_bytes());
    }
    out
}

pub struct SyntheticSource {
    streams: Vec<StreamInfo>,
    kinds: Vec<KinectStream>,
    cfg: SyntheticConfig,
    /// The sample tables of the depth and colour definitions.
    table: Vec<u8>,
    color_table: Vec<u8>,
    /// Per stream: sequence number of the next frame, and of the first (a resumed recording
    /// continues).
    seq: Vec<u64>,
    first_seq: Vec<u64>,
    /// When the first frame was taken: `Instant` and the same moment as `host_mono_ns`.
    start: Option<(Instant, u64)>,
}

impl SyntheticSource {
    pub fn new(cfg: SyntheticConfig) -> SyntheticSource {
        SyntheticSource::starting_at(cfg, &[])
    }

    /// A source whose first frame of stream `s` is frame `first_seq[s]` of the definition (0
    /// for streams `first_seq` does not reach).
    pub fn starting_at(cfg: SyntheticConfig, first_seq: &[u64]) -> SyntheticSource {
        let mut kinds = cfg.streams.clone();
        if kinds.is_empty() {
            kinds.push(KinectStream::Depth);
        }
        let streams = kinds
            .iter()
            .map(|k| match k {
                KinectStream::Depth => {
                    StreamInfo::depth(&cfg.topic, &cfg.frame_id, cfg.width, cfg.height)
                }
                KinectStream::Color => StreamInfo::image(
                    "color",
                    "/camera/color",
                    "camera_color",
                    cfg.width,
                    cfg.height,
                    FrameFormat::Rgb8,
                ),
                KinectStream::Accel => StreamInfo::accel("accel", "/camera/accel", "camera_accel"),
            })
            .collect::<Vec<_>>();
        let first: Vec<u64> = (0..streams.len())
            .map(|i| first_seq.get(i).copied().unwrap_or(0))
            .collect();
        let color_table = if kinds.contains(&KinectStream::Color) {
            table_bytes(cfg.seed.wrapping_add(1))
        } else {
            Vec::new()
        };
        SyntheticSource {
            streams,
            table: table_bytes(cfg.seed),
            color_table,
            kinds,
            cfg,
            seq: first.clone(),
            first_seq: first,
            start: None,
        }
    }

    /// Frames per second of stream `s` (a nominal 30 for images when unpaced).
    fn rate(&self, s: usize) -> u64 {
        match self.kinds[s] {
            KinectStream::Accel => self.cfg.accel_rate.max(1) as u64,
            _ if self.cfg.fps == 0 => 30,
            _ => self.cfg.fps as u64,
        }
    }

    /// When frame `k` (from the run's first) of a stream of `rate` is due, from the start,
    /// computed without drift.
    fn due_at(k: u64, rate: u64) -> Duration {
        Duration::from_nanos((k as u128 * 1_000_000_000 / rate as u128) as u64)
    }

    /// When frame `seq` of the first stream is due.
    #[cfg(test)]
    fn due(&self, seq: u64) -> Duration {
        Self::due_at(seq, self.rate(0))
    }

    /// The stream whose next frame is due first (the lower index on a tie), and when.
    fn next(&self) -> (usize, Duration) {
        (0..self.streams.len())
            .map(|s| {
                (
                    s,
                    Self::due_at(self.seq[s] - self.first_seq[s], self.rate(s)),
                )
            })
            .min_by_key(|&(s, due)| (due, s))
            .unwrap_or((0, Duration::ZERO))
    }

    fn fill_frame(&self, s: usize, payload: &mut [u8]) {
        let seq = self.seq[s];
        match self.kinds[s] {
            KinectStream::Depth => fill(&self.table, seq, payload),
            KinectStream::Color => fill(&self.color_table, seq, payload),
            KinectStream::Accel => payload.copy_from_slice(&expected_accel(self.cfg.seed, seq)),
        }
    }
}

impl Source for SyntheticSource {
    fn streams(&self) -> &[StreamInfo] {
        &self.streams
    }

    /// Unpaced, frames are made on demand; paced, the source stands in for a live device.
    fn can_wait(&self) -> bool {
        self.cfg.fps == 0
    }

    fn next_stream(&mut self, _stop: &AtomicBool) -> Result<StreamId, SourceError> {
        Ok(StreamId(self.next().0 as u16))
    }

    fn next_frame(
        &mut self,
        buf: &mut FrameBuf,
        stop: &AtomicBool,
    ) -> Result<Option<Capture>, SourceError> {
        let (start, start_mono) = *self
            .start
            .get_or_insert_with(|| (Instant::now(), host_mono_ns()));
        let (s, due) = self.next();
        let device_ns = if self.cfg.fps > 0 {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let elapsed = start.elapsed();
                if elapsed >= due {
                    break;
                }
                std::thread::sleep((due - elapsed).min(Duration::from_millis(50)));
            }
            due.as_nanos() as u64
        } else {
            start.elapsed().as_nanos() as u64
        };
        let len = self.streams[s].frame_bytes();
        let payload = buf
            .fill(len)
            .map_err(|capacity| SourceError::FrameTooLarge { len, capacity })?;
        self.fill_frame(s, payload);
        self.seq[s] += 1;
        Ok(Some(Capture {
            device_ns,
            // Paced: the frame was due at its slot, however late the receiver asked for it.
            host_mono_ns: (self.cfg.fps > 0).then(|| start_mono + device_ns),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_fill_matches_the_definition() {
        let cfg = SyntheticConfig {
            width: 320,
            height: 240,
            fps: 0,
            seed: 42,
            ..Default::default()
        };
        let mut src = SyntheticSource::new(cfg);
        let stop = AtomicBool::new(false);
        let mut buf = FrameBuf::new(320 * 240 * 2);
        for seq in 0..5 {
            src.next_frame(&mut buf, &stop).unwrap().unwrap();
            assert_eq!(
                buf.payload(),
                expected_frame(42, seq, 320, 240).as_slice(),
                "frame {seq}"
            );
        }
        assert!(
            buf.payload()
                .chunks(2)
                .all(|s| u16::from_le_bytes([s[0], s[1]]) < 2048)
        );
    }

    #[test]
    fn several_streams_interleave_by_due_time_and_match_their_definitions() {
        let cfg = SyntheticConfig {
            width: 8,
            height: 4,
            fps: 0,
            seed: 7,
            streams: vec![
                KinectStream::Depth,
                KinectStream::Color,
                KinectStream::Accel,
            ],
            accel_rate: 90,
            ..Default::default()
        };
        let mut src = SyntheticSource::new(cfg);
        let stop = AtomicBool::new(false);
        let mut buf = FrameBuf::new(8 * 4 * 3);
        let mut order = Vec::new();
        let mut seqs = [0u64; 3];
        for _ in 0..10 {
            let s = src.next_stream(&stop).unwrap().index();
            src.next_frame(&mut buf, &stop).unwrap().unwrap();
            let want = match s {
                0 => expected_frame(7, seqs[0], 8, 4),
                1 => expected_color_frame(7, seqs[1], 8, 4),
                _ => expected_accel(7, seqs[2]).to_vec(),
            };
            assert_eq!(
                buf.payload(),
                want.as_slice(),
                "stream {s} frame {}",
                seqs[s]
            );
            seqs[s] += 1;
            order.push(s);
        }
        // 30 fps images and 90 Hz readings: d c a, a, a, d c a, a, ...
        assert_eq!(order, [0, 1, 2, 2, 2, 0, 1, 2, 2, 2]);
        assert_eq!(src.streams()[1].frame_bytes(), 96);
        assert_eq!(src.streams()[2].frame_bytes(), RAW_BYTES);
    }

    #[test]
    fn frames_differ_and_seeds_differ() {
        assert_ne!(expected_frame(1, 0, 64, 8), expected_frame(1, 1, 64, 8));
        assert_ne!(expected_frame(1, 0, 64, 8), expected_frame(2, 0, 64, 8));
    }

    #[test]
    fn schedule_has_no_drift() {
        let src = SyntheticSource::new(SyntheticConfig {
            fps: 30,
            ..Default::default()
        });
        // One hour of frames at 30 fps is due exactly at 3600 s.
        assert_eq!(src.due(30 * 3600), Duration::from_secs(3600));
    }

    #[test]
    fn stop_interrupts_a_paced_wait() {
        let mut src = SyntheticSource::new(SyntheticConfig {
            fps: 1,
            width: 4,
            height: 4,
            ..Default::default()
        });
        let mut buf = FrameBuf::new(32);
        let stop = AtomicBool::new(false);
        assert!(src.next_frame(&mut buf, &stop).unwrap().is_some());
        stop.store(true, Ordering::Relaxed);
        let t = Instant::now();
        assert!(src.next_frame(&mut buf, &stop).unwrap().is_none());
        assert!(t.elapsed() < Duration::from_millis(500));
    }
}
