//! The static room of the synthetic scene: floor, walls and ceiling as planes, a doorway onto
//! a corridor beyond the Kinect's range, a window whose glare the Kinect cannot read, and a
//! cabinet; their colours lit by one ceiling lamp.

use super::objects::Shape;
use super::scene::Camera;
use super::splitmix64;

const CEILING_M: f32 = 2.6;
/// The doorway in the back wall (x from the camera, height from the floor) and the corridor
/// wall it opens onto, this far behind the back wall.
const DOOR_X: (f32, f32) = (-1.5, -0.6);
const DOOR_TOP_M: f32 = 2.0;
const CORRIDOR_M: f32 = 6.0;
/// The window in the right wall (z, height from the floor).
const WINDOW_Z: (f32, f32) = (1.8, 3.2);
const WINDOW_Y: (f32, f32) = (0.9, 2.0);
const PLANK_M: f32 = 0.15;

/// The room's size, metres from the camera (walls) or the floor (`eye_m`, the camera's
/// height).
pub(super) struct Room {
    pub back_m: f32,
    pub left_m: f32,
    pub right_m: f32,
    pub eye_m: f32,
    pub seed: u64,
}

/// A room surface hit by a ray.
#[derive(Clone, Copy, PartialEq)]
enum Surface {
    Floor,
    Ceiling,
    Back,
    Left,
    Right,
}

impl Room {
    /// Renders row `v`: per column 1/z, whether the Kinect has no reading there, and colour.
    pub fn render_row(
        &self,
        cam: &Camera,
        v: usize,
        inv_z: &mut [f32],
        no_reading: &mut [bool],
        rgb: &mut [u8],
    ) {
        let ray = cam.row(v);
        for u in 0..cam.width {
            let d = [cam.xn(u), ray.dy, ray.dz];
            let (t, surface) = self.nearest(d);
            let p = d.map(|c| c * t);
            let (mut t, mut albedo, mut flag) = (t, self.albedo(surface, p), false);
            let y = p[1] + self.eye_m;
            if surface == Surface::Back && (DOOR_X.0..DOOR_X.1).contains(&p[0]) && y < DOOR_TOP_M {
                t = (self.back_m + CORRIDOR_M) / d[2];
                albedo = [0.12, 0.10, 0.09];
            } else if surface == Surface::Right
                && (WINDOW_Z.0..WINDOW_Z.1).contains(&p[2])
                && (WINDOW_Y.0..WINDOW_Y.1).contains(&y)
            {
                flag = true;
                albedo = [1.0, 1.0, 1.0];
            }
            let shade = if flag { 0.92 } else { self.light(surface, p) };
            inv_z[u] = 1.0 / t;
            no_reading[u] = flag;
            for (c, a) in rgb[u * 3..u * 3 + 3].iter_mut().zip(albedo) {
                *c = (a * shade * 255.0).clamp(0.0, 255.0) as u8;
            }
        }
        let floor = -self.eye_m;
        let cabinet = Shape::Box {
            min: [-self.left_m, floor, 1.8],
            max: [-self.left_m + 0.5, floor + 0.9, 2.9],
        };
        cabinet.for_each_hit(cam, &ray, |run, iz, step, shade| {
            let c = [0.40, 0.26, 0.16].map(|a| (a * (0.3 + shade) * 255.0).min(255.0) as u8);
            for (k, u) in run.enumerate() {
                let iz = iz + step * k as f32;
                if iz > inv_z[u] {
                    inv_z[u] = iz;
                    no_reading[u] = false;
                    rgb[u * 3..u * 3 + 3].copy_from_slice(&c);
                }
            }
        });
    }

    /// The nearest room surface along direction `d` from the camera.
    fn nearest(&self, d: [f32; 3]) -> (f32, Surface) {
        let mut best = (f32::INFINITY, Surface::Back);
        let mut consider = |t: f32, s: Surface| {
            if t > 0.0 && t < best.0 {
                best = (t, s);
            }
        };
        consider(-self.eye_m / d[1], Surface::Floor);
        consider((CEILING_M - self.eye_m) / d[1], Surface::Ceiling);
        consider(self.back_m / d[2], Surface::Back);
        consider(-self.left_m / d[0], Surface::Left);
        consider(self.right_m / d[0], Surface::Right);
        best
    }

    fn albedo(&self, surface: Surface, p: [f32; 3]) -> [f32; 3] {
        let y = p[1] + self.eye_m;
        match surface {
            Surface::Floor => {
                let x = (p[0] + 10.0) / PLANK_M;
                let plank = x.floor();
                let tone = 0.8 + 0.35 * (splitmix64(self.seed ^ plank as u64) % 1000) as f32 / 1e3;
                let grain = 1.0 + 0.06 * (p[2] * 23.0 + plank * 1.7).sin();
                let gap = if x - plank < 0.05 { 0.45 } else { 1.0 };
                [0.55, 0.38, 0.22].map(|c| c * tone * grain * gap)
            }
            _ if y < 0.08 => [0.9, 0.9, 0.88],
            Surface::Ceiling => [0.9, 0.9, 0.9],
            Surface::Back => [0.82, 0.80, 0.72],
            Surface::Left => [0.70, 0.76, 0.80],
            Surface::Right => [0.80, 0.74, 0.66],
        }
    }

    /// Ambient light plus a lamp under the ceiling, falling off with distance.
    fn light(&self, surface: Surface, p: [f32; 3]) -> f32 {
        let normal = match surface {
            Surface::Floor => [0.0, 1.0, 0.0],
            Surface::Ceiling => [0.0, -1.0, 0.0],
            Surface::Back => [0.0, 0.0, -1.0],
            Surface::Left => [1.0, 0.0, 0.0],
            Surface::Right => [-1.0, 0.0, 0.0],
        };
        let lamp = [0.3, CEILING_M - 0.1 - self.eye_m, 2.2];
        let to = [lamp[0] - p[0], lamp[1] - p[1], lamp[2] - p[2]];
        let dist2 = to[0] * to[0] + to[1] * to[1] + to[2] * to[2];
        let cos = (normal[0] * to[0] + normal[1] * to[1] + normal[2] * to[2]) / dist2.sqrt();
        (0.3 + 0.7 * cos.max(0.0) * 2.0 / (1.0 + 0.25 * dist2)).min(1.0)
    }
}
