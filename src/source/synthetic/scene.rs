//! The synthetic scene: a room seen by a Kinect, rendered as 11-bit raw disparity (the
//! libfreenect `FREENECT_DEPTH_11BIT` mode) and as a matching `rgb8` image.
//!
//! The static room (floor, walls, ceiling, a doorway, a window, a cabinet) is computed once per
//! (seed, size) into a [`Scene`]; a frame copies its rows, draws the moving objects of
//! [`super::objects::moving`] over them, marks the projector's shadows, and adds noise drawn
//! from a counter-based hash of (seed, sequence, pixel), so every frame is new and still a pure
//! function of (seed, sequence, width, height).

use std::sync::{Arc, Mutex};

use super::objects::{self, Object};
use super::splitmix64;

/// The raw value of a pixel without a reading (shadow, out of range, glare).
pub const NO_READING: u16 = 2047;
/// Fixed-point fraction bits of the noise-free disparity a frame is built from.
const FRAC_BITS: u32 = 4;
/// Set in a noise-free sample whose pixel has no reading; the low bits keep its geometry.
const NO_READING_FLAG: u16 = 0x8000;
/// Kinect raw disparity: 1/z = DISP_A - DISP_B * raw (z in metres; libfreenect's and ROS
/// openni's fit), so depth steps grow with the square of the distance.
const DISP_A: f32 = 3.330_949_5;
const DISP_B: f32 = 0.003_071_101_6;
/// The range with readings, metres.
const NEAR_M: f32 = 0.5;
const FAR_M: f32 = 6.0;
/// The IR projector sits this far right of the IR camera: shadows fall left of near edges.
const BASELINE_M: f32 = 0.075;
/// Focal length in pixels at 640 columns (the Kinect's ~58 degree field of view).
const FOCAL_PX_AT_640: f32 = 580.0;
/// The camera's height above the floor and its downward pitch.
const EYE_M: f32 = 1.0;
const PITCH_RAD: f32 = 0.21;

/// A pinhole camera of `width x height` pixels pitched down by [`PITCH_RAD`]: pixel `(u, v)`
/// looks along `xn * right + yn * down + forward` with `xn = (u + 0.5 - cx) / f` (likewise
/// `yn`), so a point at ray parameter `t` is `t` metres deep.
#[derive(Debug, Clone)]
pub(super) struct Camera {
    pub width: usize,
    pub height: usize,
    f: f32,
    cx: f32,
    cy: f32,
    sin: f32,
    cos: f32,
}

/// The vertical and forward components of the rays of one row (the same for every column).
pub(super) struct RowRay {
    pub dy: f32,
    pub dz: f32,
}

impl Camera {
    fn new(width: usize, height: usize) -> Camera {
        Camera {
            width,
            height,
            f: (FOCAL_PX_AT_640 * width as f32 / 640.0).max(1.0),
            cx: width as f32 / 2.0,
            cy: height as f32 / 2.0,
            sin: PITCH_RAD.sin(),
            cos: PITCH_RAD.cos(),
        }
    }

    pub fn row(&self, v: usize) -> RowRay {
        let yn = (v as f32 + 0.5 - self.cy) / self.f;
        RowRay {
            dy: -yn * self.cos - self.sin,
            dz: -yn * self.sin + self.cos,
        }
    }

    pub fn xn(&self, u: usize) -> f32 {
        (u as f32 + 0.5 - self.cx) / self.f
    }

    /// The columns whose `xn` lies in `a..=b`.
    pub fn columns(&self, a: f32, b: f32) -> std::ops::Range<usize> {
        let lo = (self.cx + self.f * a - 0.5).ceil().max(0.0);
        let hi = (self.cx + self.f * b - 0.5).floor() + 1.0;
        let clamp = |x: f32| (x.max(0.0) as usize).min(self.width);
        clamp(lo)..clamp(hi)
    }

    /// Where point `p` (world axes, relative to the camera) appears: (column, row), or None
    /// when it is not well in front of the camera.
    pub fn project(&self, p: [f32; 3]) -> Option<(f32, f32)> {
        let y = -p[1] * self.cos - p[2] * self.sin;
        let z = -p[1] * self.sin + p[2] * self.cos;
        (z > 0.3).then(|| {
            (
                self.cx + self.f * p[0] / z - 0.5,
                self.cy + self.f * y / z - 0.5,
            )
        })
    }

    /// The projector's column for a pixel at column `u` with noise-free sample `s`, less a
    /// constant (`f * baseline * DISP_A`): `u - f * baseline / z`.
    fn projector_column(&self, u: usize, s: u16) -> f32 {
        let per_unit = self.f * BASELINE_M * DISP_B / (1 << FRAC_BITS) as f32;
        u as f32 + per_unit * (s & !NO_READING_FLAG) as f32
    }
}

/// The noise-free sample of a surface at 1/z `inv_z`: disparity in 1/16 raw units, flagged
/// when outside the range with readings.
fn sample(inv_z: f32) -> u16 {
    const PER_INV_Z: f32 = (1 << FRAC_BITS) as f32 / DISP_B;
    let fx =
        ((DISP_A - inv_z) * PER_INV_Z).clamp(0.0, ((NO_READING - 1) << FRAC_BITS) as f32) as u16;
    let in_range = (1.0 / FAR_M..=1.0 / NEAR_M).contains(&inv_z);
    if in_range { fx } else { fx | NO_READING_FLAG }
}

/// Flags the samples of `row[lo..hi]` the projector cannot light: scanning right to left, a
/// pixel whose projector column is at or right of one already seen to its right is behind
/// that surface as the projector sees it. `min_right` is the least projector column right of
/// `hi`. Returns the least projector column of `row[lo..]`.
fn shadow(cam: &Camera, row: &mut [u16], lo: usize, hi: usize, mut min_right: f32) -> f32 {
    for u in (lo..hi).rev() {
        let p = cam.projector_column(u, row[u]);
        if p >= min_right {
            row[u] |= NO_READING_FLAG;
        } else {
            min_right = p;
        }
    }
    min_right
}

/// Murmur3's 64-bit finaliser: a counter-based hash, cheap enough for one call per 8 pixels.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// The static room of one (seed, size): noise-free samples, colours, and the shadow scan's
/// starting points, computed once.
pub(super) struct Scene {
    key: (u64, usize, usize),
    seed: u64,
    pub cam: Camera,
    /// Per pixel: the noise-free sample of the room.
    room: Vec<u16>,
    /// Per pixel: the least projector column at or right of it in its row, in the room.
    room_min_right: Vec<f32>,
    /// Per pixel: the room's colour, `rgb8`.
    room_rgb: Vec<u8>,
    /// Where in their cycles the moving objects start, from the seed.
    phases: [f32; 4],
}

/// The scenes built last, so tests that re-derive frame after frame build each room once.
static SCENES: Mutex<Vec<Arc<Scene>>> = Mutex::new(Vec::new());
const SCENES_KEPT: usize = 4;

impl Scene {
    /// The scene of (seed, width, height), built or shared.
    pub fn get(seed: u64, width: u32, height: u32) -> Arc<Scene> {
        let key = (seed, width as usize, height as usize);
        let mut kept = SCENES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = kept.iter().find(|s| s.key == key) {
            return s.clone();
        }
        let scene = Arc::new(Scene::build(key));
        if kept.len() >= SCENES_KEPT {
            kept.remove(0);
        }
        kept.push(scene.clone());
        scene
    }

    pub(super) fn build(key: (u64, usize, usize)) -> Scene {
        let (seed, width, height) = key;
        let cam = Camera::new(width, height);
        let unit = |i: u64| (splitmix64(seed ^ i) % 10_000) as f32 / 10_000.0;
        let room = super::room::Room {
            back_m: 4.3 + 0.6 * unit(0x100),
            left_m: 1.9 + 0.4 * unit(0x101),
            right_m: 2.1 + 0.4 * unit(0x102),
            eye_m: EYE_M,
            seed,
        };
        let n = width * height;
        let (mut samples, mut rgb) = (vec![0u16; n], vec![0u8; n * 3]);
        let mut min_right = vec![0f32; n];
        let (mut inv_z, mut no_reading) = (vec![0f32; width], vec![false; width]);
        for v in 0..height {
            let row = &mut samples[v * width..(v + 1) * width];
            let row_rgb = &mut rgb[v * width * 3..(v + 1) * width * 3];
            room.render_row(&cam, v, &mut inv_z, &mut no_reading, row_rgb);
            for ((s, &iz), &flag) in row.iter_mut().zip(&inv_z).zip(&no_reading) {
                *s = sample(iz) | if flag { NO_READING_FLAG } else { 0 };
            }
            let mut m = f32::INFINITY;
            for u in (0..width).rev() {
                m = shadow(&cam, row, u, u + 1, m);
                min_right[v * width + u] = m;
            }
        }
        let tau = std::f32::consts::TAU;
        Scene {
            key,
            seed,
            cam,
            room: samples,
            room_min_right: min_right,
            room_rgb: rgb,
            phases: [unit(1) * tau, unit(2) * tau, unit(3) * tau, unit(4) * tau],
        }
    }

    fn objects(&self, seq: u64) -> [Object; 4] {
        objects::moving(seq, EYE_M, self.phases)
    }

    /// Renders depth frame `seq` into `out` (`width * height` little-endian u16).
    pub fn render_depth(&self, seq: u64, out: &mut [u8]) {
        let (w, h) = (self.cam.width, self.cam.height);
        let objects = self.objects(seq);
        let bounds = objects.map(|o| o.shape.bounds(&self.cam));
        let key = splitmix64(self.seed ^ 0xDE97 ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut row = vec![0u16; w];
        for v in 0..h {
            row.copy_from_slice(&self.room[v * w..(v + 1) * w]);
            let ray = self.cam.row(v);
            // Per object on this row: the columns the projector's shadow scan must cover.
            let mut windows = [(0usize, 0usize); 4];
            let mut n = 0;
            for (o, b) in objects.iter().zip(&bounds) {
                if !b.is_some_and(|[_, _, v0, v1]| (v0..v1).contains(&v)) {
                    continue;
                }
                let (mut lo, mut hi, mut nearest) = (w, 0, 0f32);
                o.shape
                    .for_each_hit(&self.cam, &ray, |run, inv_z, step, _| {
                        if run.is_empty() {
                            return;
                        }
                        (lo, hi) = (lo.min(run.start), hi.max(run.end));
                        let last = inv_z + step * (run.len() - 1) as f32;
                        nearest = nearest.max(inv_z).max(last);
                        if step == 0.0 {
                            draw_run(&mut row[run], sample(inv_z));
                        } else {
                            for (k, u) in run.enumerate() {
                                draw_run(&mut row[u..u + 1], sample(inv_z + step * k as f32));
                            }
                        }
                    });
                if lo < hi {
                    // Its shadow reaches at most this far left of it.
                    let reach = (self.cam.f * BASELINE_M * nearest) as usize + 2;
                    windows[n] = (lo.saturating_sub(reach), hi);
                    n += 1;
                }
            }
            self.shadow_windows(v, &mut row, &mut windows[..n]);
            emit_depth_row(
                &row,
                key ^ ((v as u64) << 40),
                &mut out[v * w * 2..(v + 1) * w * 2],
            );
        }
    }

    /// Flags the pixels of `row` (row `v`) in `windows` that the projector cannot light, with
    /// the objects drawn: windows are scanned right to left, each starting from the least
    /// projector column right of it (the room's, or a window's already scanned). Pixels
    /// outside every window are the room's, whose shadows are already flagged.
    fn shadow_windows(&self, v: usize, row: &mut [u16], windows: &mut [(usize, usize)]) {
        let w = self.cam.width;
        windows.sort_unstable();
        let mut merged: [(usize, usize); 4] = [(0, 0); 4];
        let mut n = 0;
        for &(a, b) in windows.iter() {
            if n > 0 && a <= merged[n - 1].1 {
                merged[n - 1].1 = merged[n - 1].1.max(b);
            } else {
                merged[n] = (a, b);
                n += 1;
            }
        }
        let mut scanned = f32::INFINITY;
        for &(a, b) in merged[..n].iter().rev() {
            let room = if b < w {
                self.room_min_right[v * w + b]
            } else {
                f32::INFINITY
            };
            scanned = shadow(&self.cam, row, a, b, room.min(scanned));
        }
    }

    /// Renders colour frame `seq` into `out` (`width * height * 3` bytes, `rgb8`).
    pub fn render_color(&self, seq: u64, out: &mut [u8]) {
        let (w, h) = (self.cam.width, self.cam.height);
        let objects = self.objects(seq);
        let bounds = objects.map(|o| o.shape.bounds(&self.cam));
        let key = splitmix64(self.seed ^ 0xC010 ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut depth = vec![0u16; w];
        for v in 0..h {
            let row = &mut out[v * w * 3..(v + 1) * w * 3];
            row.copy_from_slice(&self.room_rgb[v * w * 3..(v + 1) * w * 3]);
            depth.copy_from_slice(&self.room[v * w..(v + 1) * w]);
            let ray = self.cam.row(v);
            for (o, b) in objects.iter().zip(&bounds) {
                if !b.is_some_and(|[_, _, v0, v1]| (v0..v1).contains(&v)) {
                    continue;
                }
                o.shape
                    .for_each_hit(&self.cam, &ray, |run, inv_z, step, shade| {
                        let c = o.albedo.map(|a| (a * shade * 255.0) as u8);
                        for (k, u) in run.enumerate() {
                            let s = sample(inv_z + step * k as f32) & !NO_READING_FLAG;
                            if s < depth[u] & !NO_READING_FLAG {
                                depth[u] = s;
                                row[u * 3..u * 3 + 3].copy_from_slice(&c);
                            }
                        }
                    });
            }
            add_colour_noise(row, key ^ ((v as u64) << 40));
        }
    }
}

/// Draws a surface of sample `s` over the pixels of `row` it is nearer than (nearer is less
/// disparity in raw units).
fn draw_run(row: &mut [u16], s: u16) {
    for p in row {
        if s & !NO_READING_FLAG < *p & !NO_READING_FLAG {
            *p = s;
        }
    }
}

/// Writes a row of noise-free samples as raw values: each is rounded after adding noise of
/// -15/16..15/16 raw units (triangular, sd 0.4: the Kinect's sub-pixel disparity jitter), one
/// hash of (frame key, column / 8) giving 8 pixels their noise; flagged ones become 2047.
fn emit_depth_row(row: &[u16], key: u64, out: &mut [u8]) {
    for (g, (px, o)) in row.chunks(8).zip(out.chunks_mut(16)).enumerate() {
        let noise = mix(key ^ g as u64).to_le_bytes();
        let mut s = [-1i16; 8];
        for (s, &p) in s.iter_mut().zip(px) {
            // The flag is the sign bit: a sample without reading is negative.
            *s = p as i16;
        }
        let mut raw = [0u8; 16];
        for k in 0..8 {
            let n = (noise[k] & 15) as i16 + (noise[k] >> 4) as i16 - 7;
            let noisy = ((s[k].wrapping_add(n) >> FRAC_BITS).max(0)).min(NO_READING as i16 - 1);
            let v = if s[k] < 0 { NO_READING as i16 } else { noisy };
            raw[2 * k..2 * k + 2].copy_from_slice(&v.to_le_bytes());
        }
        o.copy_from_slice(&raw[..o.len()]);
    }
}

/// Adds sensor noise of -7..=7 levels (triangular) to each byte of a colour row.
fn add_colour_noise(row: &mut [u8], key: u64) {
    for (g, px) in row.chunks_mut(8).enumerate() {
        let noise = mix(key ^ g as u64).to_le_bytes();
        for (c, b) in px.iter_mut().zip(noise) {
            let n = (b & 7) as i16 + ((b >> 4) & 7) as i16 - 7;
            *c = (*c as i16 + n).clamp(0, 255) as u8;
        }
    }
}
