//! The synthetic source: deterministic Kinect-like depth frames, paced on an absolute schedule.
//!
//! # Frame content
//! Frame `seq` of a source with seed `seed` is `width * height` little-endian `u16` samples;
//! sample `i` is
//!
//! ```text
//! T[(i + seq * 7919) mod 65521],   T[j] = splitmix64(seed ^ j) mod 2048
//! ```
//!
//! so a test can re-derive every byte of every frame from `(seed, seq)` with [`expected_frame`],
//! and values stay in the Kinect's 11-bit range. Filling a frame is a handful of `memcpy`s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::frame::{FrameBuf, PixelFormat, StreamInfo, host_mono_ns};

use super::{Capture, Source, SourceError};

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
    stream: StreamInfo,
    cfg: SyntheticConfig,
    table: Vec<u8>,
    /// Sequence number of the next frame, and of the first (a resumed recording continues).
    seq: u64,
    first_seq: u64,
    /// When the first frame was taken: `Instant` and the same moment as `host_mono_ns`.
    start: Option<(Instant, u64)>,
}

impl SyntheticSource {
    pub fn new(cfg: SyntheticConfig) -> SyntheticSource {
        SyntheticSource::starting_at(cfg, 0)
    }

    /// A source whose first frame is frame `first_seq` of the definition.
    pub fn starting_at(cfg: SyntheticConfig, first_seq: u64) -> SyntheticSource {
        SyntheticSource {
            stream: StreamInfo {
                topic: cfg.topic.clone(),
                frame_id: cfg.frame_id.clone(),
                width: cfg.width,
                height: cfg.height,
                format: PixelFormat::Depth16,
            },
            table: table_bytes(cfg.seed),
            cfg,
            seq: first_seq,
            first_seq,
            start: None,
        }
    }

    /// When frame `seq` is due, from the start: `seq / fps` seconds, computed without drift.
    fn due(&self, seq: u64) -> Duration {
        let fps = self.cfg.fps as u128;
        Duration::from_nanos((seq as u128 * 1_000_000_000 / fps) as u64)
    }
}

impl Source for SyntheticSource {
    fn stream(&self) -> &StreamInfo {
        &self.stream
    }

    /// Unpaced, frames are made on demand; paced, the source stands in for a live device.
    fn can_wait(&self) -> bool {
        self.cfg.fps == 0
    }

    fn next_frame(
        &mut self,
        buf: &mut FrameBuf,
        stop: &AtomicBool,
    ) -> Result<Option<Capture>, SourceError> {
        let (start, start_mono) = *self
            .start
            .get_or_insert_with(|| (Instant::now(), host_mono_ns()));
        let device_ns = if self.cfg.fps > 0 {
            let due = self.due(self.seq - self.first_seq);
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
        let len = self.stream.frame_bytes();
        let capacity = buf.capacity();
        let payload = buf
            .fill(len)
            .map_err(|capacity| SourceError::FrameTooLarge { len, capacity })?;
        debug_assert!(capacity >= len);
        fill(&self.table, self.seq, payload);
        self.seq += 1;
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
