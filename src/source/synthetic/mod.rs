//! The synthetic source: deterministic Kinect-like streams (depth, and optionally colour and
//! accelerometer), paced on an absolute schedule.
//!
//! # Frame content
//! Every frame is a pure function of (seed, sequence, width, height), so a test re-derives
//! each byte with [`expected_frame`], [`expected_color_frame`] and [`expected_accel`].
//!
//! Depth frame `seq` is `width * height` little-endian `u16` samples of 11-bit raw Kinect
//! disparity (libfreenect's `FREENECT_DEPTH_11BIT`; 1/z = 3.3309495 - 0.0030711016 * raw, z
//! in metres), row-major, rendering a room seen by a Kinect 1 m above the floor, pitched 12
//! degrees down, with a 58 degree horizontal field of view at any size (`scene.rs`):
//! - floor, walls and ceiling (depth grows toward the top of the image on the floor; walls are
//!   planes), a cabinet, a doorway onto a corridor beyond range and a window whose glare has
//!   no reading; the room's size varies a little with the seed;
//! - moving objects placed by `seq` (`objects.rs`): a crate sliding left and right, a
//!   ball circling on the floor, a ball swinging near the camera, a tall figure walking across
//!   at the back (cycles of 240, 180, 90 and 840 frames, started at seed-chosen phases);
//! - the IR projector's shadow: a pixel the projector (7.5 cm right of the camera) cannot light
//!   has no reading, so bands without readings lie left of near edges;
//! - quantisation to whole raw units, after per-pixel noise of up to +-15/16 raw unit (sd 0.4)
//!   from a hash of (seed, seq, row, column / 8), new in every frame;
//! - 2047 where there is no reading (shadow, beyond 6 m or nearer than 0.5 m, glare); every
//!   other sample lies in 0..=2046.
//!
//! Colour frame `seq` (`rgb8`, `width * height * 3` bytes) is the same scene seen by a colour
//! camera at the IR camera's place: lit surfaces (wooden floor, painted walls, the doorway
//! dark, the window bright), the objects in their colours with their shading, and sensor noise
//! of up to +-7 levels per byte from a hash of (seed, seq, row, byte / 8). The projector's
//! shadows are no part of it.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::frame::{FrameBuf, FrameFormat, StreamId, StreamInfo, host_mono_ns};
use crate::segment::accel::{RAW_BYTES, RawTilt};

use super::{Capture, KinectStream, Source, SourceError};

mod objects;
mod room;
mod scene;
#[cfg(test)]
mod tests;

pub use scene::NO_READING;
use scene::Scene;

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
    /// What the image frames show.
    pub content: Content,
}

/// What synthetic image frames show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Content {
    /// A room as a Kinect sees it (see [`scene`]): realistic to compress, about half a
    /// millisecond of CPU to render a 640x480 frame.
    #[default]
    Scene,
    /// A random table copied at a shifting offset ([`expected_pattern`]): no realism, about
    /// 20 us a frame, for I/O benchmarks that must not measure the source.
    Pattern,
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
            content: Content::Scene,
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Samples in the pattern's table: a prime, so the shifted copies do not line up.
const PATTERN_TABLE: usize = 65_521;
/// Samples the pattern shifts by from one frame to the next.
const PATTERN_SHIFT: u64 = 7_919;

/// The table of random 11-bit samples for `seed`, as little-endian bytes.
fn pattern_table(seed: u64) -> Vec<u8> {
    (0..PATTERN_TABLE as u64)
        .flat_map(|j| ((splitmix64(seed ^ j) % 2048) as u16).to_le_bytes())
        .collect()
}

fn fill_pattern(table: &[u8], seq: u64, out: &mut [u8]) {
    let mut k = ((seq % PATTERN_TABLE as u64) * PATTERN_SHIFT % PATTERN_TABLE as u64) as usize * 2;
    let mut at = 0;
    while at < out.len() {
        let n = (table.len() - k).min(out.len() - at);
        out[at..at + n].copy_from_slice(&table[k..k + n]);
        at += n;
        k = 0;
    }
}

/// `len` bytes of frame `seq` in [`Content::Pattern`] (any image stream): the seed's table of
/// 65,521 random 11-bit samples, little-endian, read from sample `seq * 7919 mod 65521` on,
/// wrapping.
pub fn expected_pattern(seed: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    fill_pattern(&pattern_table(seed), seq, &mut out);
    out
}

/// The payload of colour frame `seq`, computed from the definition.
pub fn expected_color_frame(seed: u64, seq: u64, width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0; width as usize * height as usize * 3];
    Scene::get(seed, width, height).render_color(seq, &mut out);
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
    let mut out = vec![0; width as usize * height as usize * 2];
    Scene::get(seed, width, height).render_depth(seq, &mut out);
    out
}

pub struct SyntheticSource {
    streams: Vec<StreamInfo>,
    kinds: Vec<KinectStream>,
    cfg: SyntheticConfig,
    /// The static room every depth and colour frame is drawn over.
    scene: Arc<Scene>,
    /// With [`Content::Pattern`]: the table image frames are copied from.
    pattern: Option<Vec<u8>>,
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
        SyntheticSource {
            streams,
            scene: Scene::get(cfg.seed, cfg.width, cfg.height),
            pattern: (cfg.content == Content::Pattern).then(|| pattern_table(cfg.seed)),
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
        if let (Some(table), KinectStream::Depth | KinectStream::Color) =
            (&self.pattern, self.kinds[s])
        {
            return fill_pattern(table, seq, payload);
        }
        match self.kinds[s] {
            KinectStream::Depth => self.scene.render_depth(seq, payload),
            KinectStream::Color => self.scene.render_color(seq, payload),
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
