//! The shapes of the synthetic scene (axis-aligned boxes and spheres, in metres, relative to
//! the camera) and the pixels each covers on one image row, with the depth and shading there;
//! and the moving objects, placed as functions of the frame's sequence number.

use super::scene::{Camera, RowRay};

/// Columns of one row.
pub(super) type Run = std::ops::Range<usize>;

/// A shape, in world axes (x right, y up, z forward) relative to the camera's centre.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    Box { min: [f32; 3], max: [f32; 3] },
    Sphere { centre: [f32; 3], radius: f32 },
}

/// A shape and its colour (linear 0..1 albedo).
#[derive(Debug, Clone, Copy)]
pub(super) struct Object {
    pub shape: Shape,
    pub albedo: [f32; 3],
}

/// The direction light comes from, normalised: above, behind and right of the camera.
const LIGHT: [f32; 3] = [0.267, 0.802, -0.535];

/// Columns of a sphere drawn with 1/z interpolated between exact ones.
const SPHERE_RUN: usize = 4;

/// The `t > 0` for which `t * d` lies in `lo..=hi` (one axis of a ray from the origin).
fn slab(lo: f32, hi: f32, d: f32) -> Option<(f32, f32)> {
    if d == 0.0 {
        return (lo <= 0.0 && 0.0 <= hi).then_some((0.0, f32::INFINITY));
    }
    let (a, b) = if d > 0.0 {
        (lo / d, hi / d)
    } else {
        (hi / d, lo / d)
    };
    (b > 0.0).then_some((a.max(0.0), b))
}

impl Shape {
    /// Calls `hit(columns, inv_z, step, shade)` for the runs of pixels of row `ray` the shape
    /// covers: 1/z of the surface (z along the optical axis, metres) at the run's first column
    /// and its change per column (1/z is affine along a face), and the lighting factor (0..1).
    pub fn for_each_hit(
        &self,
        cam: &Camera,
        ray: &RowRay,
        mut hit: impl FnMut(Run, f32, f32, f32),
    ) {
        match *self {
            Shape::Box { min, max } => box_hits(cam, ray, min, max, &mut hit),
            Shape::Sphere { centre, radius } => sphere_hits(cam, ray, centre, radius, &mut hit),
        }
    }

    /// The columns and rows the shape can cover (a bounding box, clamped to the image), or
    /// None when it is off the image or not wholly in front of the camera.
    pub fn bounds(&self, cam: &Camera) -> Option<[usize; 4]> {
        let (min, max) = match *self {
            Shape::Box { min, max } => (min, max),
            Shape::Sphere {
                centre: c,
                radius: r,
            } => (
                [c[0] - r, c[1] - r, c[2] - r],
                [c[0] + r, c[1] + r, c[2] + r],
            ),
        };
        let mut b = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ];
        for i in 0..8 {
            let p = [
                if i & 1 == 0 { min[0] } else { max[0] },
                if i & 2 == 0 { min[1] } else { max[1] },
                if i & 4 == 0 { min[2] } else { max[2] },
            ];
            let (u, v) = cam.project(p)?;
            b = [b[0].min(u), b[1].max(u), b[2].min(v), b[3].max(v)];
        }
        let clamp = |x: f32, n: usize| (x.max(0.0) as usize).min(n);
        let (u0, u1) = (
            clamp(b[0].floor(), cam.width),
            clamp(b[1].ceil() + 1.0, cam.width),
        );
        let (v0, v1) = (
            clamp(b[2].floor(), cam.height),
            clamp(b[3].ceil() + 1.0, cam.height),
        );
        (u0 < u1 && v0 < v1).then_some([u0, u1, v0, v1])
    }
}

/// The visible faces of a box: the near face (z = min), the top when the camera is above it,
/// the side facing the camera. Each face's 1/z is affine along the row.
fn box_hits(
    cam: &Camera,
    ray: &RowRay,
    min: [f32; 3],
    max: [f32; 3],
    hit: &mut impl FnMut(Run, f32, f32, f32),
) {
    // The near face: constant depth along the row.
    if min[2] > 0.0 && ray.dz > 0.0 {
        let t = min[2] / ray.dz;
        let y = t * ray.dy;
        if (min[1]..=max[1]).contains(&y) {
            hit(cam.columns(min[0] / t, max[0] / t), 1.0 / t, 0.0, 0.55);
        }
    }
    // The top, seen from above.
    if max[1] < 0.0 && ray.dy < 0.0 {
        let t = max[1] / ray.dy;
        if (min[2]..=max[2]).contains(&(t * ray.dz)) {
            hit(cam.columns(min[0] / t, max[0] / t), 1.0 / t, 0.0, 0.85);
        }
    }
    // The side facing the camera: x = min (box on the right) or x = max (on the left).
    let (x, shade) = if min[0] > 0.0 {
        (min[0], 0.35)
    } else if max[0] < 0.0 {
        (max[0], 0.7)
    } else {
        return;
    };
    let (Some(ty), Some(tz)) = (slab(min[1], max[1], ray.dy), slab(min[2], max[2], ray.dz)) else {
        return;
    };
    let (t0, t1) = (ty.0.max(tz.0), ty.1.min(tz.1));
    if t0 >= t1 {
        return;
    }
    let (a, b) = if x > 0.0 {
        (x / t1, x / t0)
    } else {
        (x / t0, x / t1)
    };
    let run = cam.columns(a, b);
    let step = (cam.xn(1) - cam.xn(0)) / x;
    hit(run.clone(), cam.xn(run.start) / x, step, shade);
}

fn sphere_hits(
    cam: &Camera,
    ray: &RowRay,
    c: [f32; 3],
    r: f32,
    hit: &mut impl FnMut(Run, f32, f32, f32),
) {
    // |t d - c| = r with d = (xn, dy, dz): real roots where disc(xn) >= 0, a quadratic in xn.
    let k = c[0] * c[0] + c[1] * c[1] + c[2] * c[2] - r * r;
    let e = ray.dy * c[1] + ray.dz * c[2];
    let g = ray.dy * ray.dy + ray.dz * ray.dz;
    let (qa, qb, qc) = (c[0] * c[0] - k, 2.0 * c[0] * e, e * e - k * g);
    let q = qb * qb - 4.0 * qa * qc;
    if k <= 0.0 || qa >= 0.0 || q <= 0.0 {
        return;
    }
    let (x0, x1) = ((-qb + q.sqrt()) / (2.0 * qa), (-qb - q.sqrt()) / (2.0 * qa));
    let per_r = 1.0 / r;
    // 1/z and shading at column u (beyond the silhouette: at the limb).
    let at = |u: usize| {
        let xn = cam.xn(u);
        let b = xn * c[0] + e;
        let dd = xn * xn + g;
        let near = b - (b * b - dd * k).max(0.0).sqrt();
        // t = near / dd; the normal there is (t d - c) / r.
        let t = near / dd;
        let n = [
            (t * xn - c[0]) * per_r,
            (t * ray.dy - c[1]) * per_r,
            (t * ray.dz - c[2]) * per_r,
        ];
        let lambert = n[0] * LIGHT[0] + n[1] * LIGHT[1] + n[2] * LIGHT[2];
        (dd / near, 0.25 + 0.75 * lambert.max(0.0))
    };
    // Exact every SPHERE_RUN columns, 1/z linear in between: a quarter of the square roots
    // and divisions, and the depth error stays far below a raw unit except at the limb.
    let run = cam.columns(x0.min(x1), x0.max(x1));
    let (mut u, mut here) = (run.start, at(run.start));
    while u < run.end {
        let next = (u + SPHERE_RUN).min(run.end);
        let there = at(next);
        hit(
            u..next,
            here.0,
            (there.0 - here.0) / (next - u) as f32,
            here.1,
        );
        (u, here) = (next, there);
    }
}

/// Position `seq` of a motion that repeats every `period` frames, as an angle (radians).
fn phase(seq: u64, period: u64, offset: f32) -> f32 {
    (seq % period) as f32 / period as f32 * std::f32::consts::TAU + offset
}

/// The moving objects of frame `seq`, relative to the camera (`eye_m` above the floor):
/// a crate sliding left and right, a ball circling on the floor, a ball swinging in the air
/// near the camera, and a tall figure walking across at the back. `phases` come from the seed.
pub(super) fn moving(seq: u64, eye_m: f32, phases: [f32; 4]) -> [Object; 4] {
    let floor = -eye_m;
    let a = phase(seq, 240, phases[0]);
    let crate_x = -0.1 + 1.1 * a.sin();
    let b = phase(seq, 180, phases[1]);
    let (ball_x, ball_z) = (0.4 + 0.7 * b.cos(), 2.6 + 0.6 * b.sin());
    let c = phase(seq, 90, phases[2]);
    let (swing_x, swing_y) = (-0.45 + 0.45 * c.sin(), 0.1 - 0.08 * (2.0 * c).cos());
    // A triangle wave: the figure walks right, then back left.
    let w = (seq.wrapping_add((phases[3] * 100.0) as u64) % 840) as f32 / 420.0;
    let walk_x = -1.7 + 3.4 * if w < 1.0 { w } else { 2.0 - w };
    [
        Object {
            shape: Shape::Box {
                min: [crate_x - 0.25, floor, 3.0],
                max: [crate_x + 0.25, floor + 0.4, 3.5],
            },
            albedo: [0.75, 0.22, 0.12],
        },
        Object {
            shape: Shape::Sphere {
                centre: [ball_x, floor + 0.22, ball_z],
                radius: 0.22,
            },
            albedo: [0.15, 0.35, 0.85],
        },
        Object {
            shape: Shape::Sphere {
                centre: [swing_x, swing_y, 1.6],
                radius: 0.14,
            },
            albedo: [0.9, 0.8, 0.15],
        },
        Object {
            shape: Shape::Box {
                min: [walk_x - 0.2, floor, 3.8],
                max: [walk_x + 0.2, floor + 1.7, 4.1],
            },
            albedo: [0.2, 0.6, 0.3],
        },
    ]
}
