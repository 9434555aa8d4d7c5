//! Unit tests of the synthetic source and its scene.

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
fn pattern_content_copies_the_table_for_depth_and_colour_and_keeps_the_accelerometer() {
    let cfg = SyntheticConfig {
        width: 64,
        height: 48,
        fps: 0,
        seed: 7,
        streams: vec![
            KinectStream::Depth,
            KinectStream::Color,
            KinectStream::Accel,
        ],
        content: Content::Pattern,
        ..Default::default()
    };
    let mut src = SyntheticSource::new(cfg);
    let stop = AtomicBool::new(false);
    let mut buf = FrameBuf::new(64 * 48 * 3);
    let mut seen = [0u64; 3];
    for _ in 0..12 {
        let s = src.next_stream(&stop).unwrap().index();
        src.next_frame(&mut buf, &stop).unwrap().unwrap();
        let seq = seen[s];
        let want = match s {
            0 => expected_pattern(7, seq, 64 * 48 * 2),
            1 => expected_pattern(7, seq, 64 * 48 * 3),
            _ => expected_accel(7, seq).to_vec(),
        };
        assert_eq!(buf.payload(), want.as_slice(), "stream {s} frame {seq}");
        seen[s] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0);
    assert_ne!(expected_pattern(7, 0, 1000), expected_pattern(7, 1, 1000));
    assert_ne!(expected_pattern(7, 0, 1000), expected_frame(7, 0, 25, 20));
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

fn samples(frame: &[u8]) -> Vec<u16> {
    frame
        .chunks_exact(2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .collect()
}

/// Raw disparity of a surface `z` metres deep.
fn raw_at(z: f64) -> f64 {
    (3.330_949_5 - 1.0 / z) / 0.003_071_101_6
}

#[test]
fn the_render_is_a_pure_function_of_seed_sequence_and_size() {
    assert_eq!(
        expected_frame(9, 77, 160, 120),
        expected_frame(9, 77, 160, 120)
    );
    assert_eq!(
        expected_color_frame(9, 77, 160, 120),
        expected_color_frame(9, 77, 160, 120)
    );
    // Built afresh (not shared from the cache) it is the same.
    let mut again = vec![0; 160 * 120 * 2];
    Scene::build((9, 160, 120)).render_depth(77, &mut again);
    assert_eq!(again, expected_frame(9, 77, 160, 120));
}

#[test]
fn noise_changes_every_frame_and_objects_move() {
    let a = samples(&expected_frame(1, 100, 320, 240));
    let b = samples(&expected_frame(1, 101, 320, 240));
    let noisy = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(noisy > a.len() / 5, "{noisy} of {} pixels changed", a.len());
    // Noise moves a pixel by at most one raw unit; the objects move by far more.
    let far = |x: &[u16], y: &[u16]| {
        x.iter()
            .zip(y)
            .filter(|&(&p, &q)| p.abs_diff(q) > 8)
            .count()
    };
    assert!(far(&a, &b) < a.len() / 20);
    let c = samples(&expected_frame(1, 130, 320, 240));
    assert!(far(&a, &c) > 2_000, "{} pixels moved", far(&a, &c));
    assert_ne!(
        expected_color_frame(1, 100, 64, 48),
        expected_color_frame(1, 101, 64, 48)
    );
}

#[test]
fn samples_are_in_the_kinect_range_or_no_reading() {
    for seq in [0, 45, 200] {
        let s = samples(&expected_frame(3, seq, 640, 480));
        let none = s.iter().filter(|&&x| x == NO_READING).count();
        assert!(
            none > 100 && none < s.len() / 4,
            "frame {seq}: {none} without reading"
        );
        // Between 0.5 m and 6 m, give or take a raw unit of noise.
        let (near, far) = (raw_at(0.5) as u16 - 1, raw_at(6.0) as u16 + 2);
        let bad = s
            .iter()
            .find(|&&x| x != NO_READING && !(near..=far).contains(&x));
        assert_eq!(bad, None, "frame {seq}");
    }
}

#[test]
fn no_reading_bands_lie_left_of_near_edges() {
    // A run of 2047 with a valid pixel on each side, the one on its right nearer (less
    // disparity) by far, and the run as wide as the parallax between them: the projector's
    // shadow beside an object's left edge.
    let (w, h) = (640, 480);
    let mut bands = 0;
    for seq in [0, 30, 60] {
        let s = samples(&expected_frame(1, seq, w as u32, h as u32));
        for row in s.chunks(w) {
            let mut u = 1;
            while u < w {
                if row[u] != NO_READING || row[u - 1] == NO_READING {
                    u += 1;
                    continue;
                }
                let end = (u..w).find(|&e| row[e] != NO_READING).unwrap_or(w);
                // As wide as the projector's parallax between the two surfaces: f * baseline *
                // (1/z_near - 1/z_far) = 580 * 0.075 * 0.0030711 px per raw unit.
                let parallax = |l: u16, r: u16| 0.133_59 * (l as f64 - r as f64);
                if end < w
                    && row[end] + 20 < row[u - 1]
                    && ((end - u) as f64 - parallax(row[u - 1], row[end])).abs() <= 1.5
                {
                    bands += 1;
                }
                u = end;
            }
        }
    }
    assert!(bands > 100, "{bands} shadow bands");
}

#[test]
fn a_frame_is_not_a_repeated_table() {
    // The old table-shift content compressed 5.8x with zstd-1 because of its repeats; real
    // depth with noise stays well under 20x, one frame or a chunk of consecutive ones.
    let one = expected_frame(1, 10, 640, 480);
    let chunk: Vec<u8> = (10..16)
        .flat_map(|q| expected_frame(1, q, 640, 480))
        .collect();
    for (what, bytes) in [("frame", &one), ("chunk", &chunk)] {
        for level in [1, 3] {
            let packed = zstd::bulk::compress(bytes, level).unwrap();
            let ratio = bytes.len() as f64 / packed.len() as f64;
            assert!(
                ratio > 1.5 && ratio < 20.0,
                "{what} zstd-{level}: {ratio:.1}x"
            );
        }
    }
    let colour = expected_color_frame(1, 10, 640, 480);
    let ratio = colour.len() as f64 / zstd::bulk::compress(&colour, 1).unwrap().len() as f64;
    assert!(ratio < 20.0, "colour zstd-1: {ratio:.1}x");
}

#[test]
fn tiny_and_odd_sizes_render_without_panicking() {
    for (w, h) in [(0, 0), (1, 1), (3, 1), (1, 7), (13, 5), (8, 4)] {
        let d = samples(&expected_frame(2, 5, w, h));
        assert_eq!(d.len(), (w * h) as usize);
        assert!(d.iter().all(|&x| x <= NO_READING));
        assert_eq!(expected_color_frame(2, 5, w, h).len(), (w * h * 3) as usize);
    }
}
