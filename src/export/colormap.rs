//! Depth made visible: 16-bit samples mapped through a colour map onto 8-bit RGB, so a person
//! sees the scene (11-bit Kinect values in a 16-bit PNG look black in any viewer).

/// How samples become colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Colormap {
    /// Google's Turbo: near is blue, far is red; perceptually smooth.
    Turbo,
    /// Grayscale: near is dark, far is light.
    Gray,
}

/// The samples mapped to the colour map's ends; `Auto` takes each frame's own valid span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthRange {
    Auto,
    Fixed { min: u16, max: u16 },
}

impl std::str::FromStr for DepthRange {
    type Err = String;

    /// `auto`, or `MIN:MAX` with 0 <= MIN < MAX <= 65535.
    fn from_str(s: &str) -> Result<DepthRange, String> {
        if s == "auto" {
            return Ok(DepthRange::Auto);
        }
        let bad = || format!("{s:?} is not MIN:MAX (two integers 0-65535, MIN < MAX) or auto");
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        let (min, max) = (
            a.trim().parse::<u16>().map_err(|_| bad())?,
            b.trim().parse::<u16>().map_err(|_| bad())?,
        );
        if min >= max {
            return Err(bad());
        }
        Ok(DepthRange::Fixed { min, max })
    }
}

/// Turbo at `x` in 0..=1 (Anton Mikhailov's polynomial fit of Google's Turbo colour map).
pub fn turbo(x: f64) -> [u8; 3] {
    let x = x.clamp(0.0, 1.0);
    let poly = |c: [f64; 6]| {
        let v = c[0] + x * (c[1] + x * (c[2] + x * (c[3] + x * (c[4] + x * c[5]))));
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    };
    [
        poly([
            0.13572138,
            4.61539260,
            -42.66032258,
            132.13108234,
            -152.94239396,
            59.28637943,
        ]),
        poly([
            0.09140261,
            2.19418839,
            4.84296658,
            -14.18503333,
            4.27729857,
            2.82956604,
        ]),
        poly([
            0.10667330,
            12.64194608,
            -60.58204836,
            110.36276771,
            -89.90310912,
            27.34824973,
        ]),
    ]
}

/// The span of the nonzero samples of `samples_le` (little-endian u16; 0 is "no reading" for
/// a Kinect), or None when every sample is 0.
fn valid_span(samples_le: &[u8]) -> Option<(u16, u16)> {
    samples_le
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .filter(|&v| v != 0)
        .fold(None, |span, v| match span {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// `samples_le` (little-endian u16) as 8-bit RGB through `map`: samples of 0 (no reading) are
/// black, the range's ends the map's ends, samples outside it clamped.
pub fn depth_to_rgb(samples_le: &[u8], map: Colormap, range: DepthRange) -> Vec<u8> {
    let (min, max) = match range {
        DepthRange::Fixed { min, max } => (min, max),
        DepthRange::Auto => valid_span(samples_le).unwrap_or((0, 1)),
    };
    let span = f64::from(max.saturating_sub(min).max(1));
    let mut out = Vec::with_capacity(samples_le.len() / 2 * 3);
    for p in samples_le.chunks_exact(2) {
        let v = u16::from_le_bytes([p[0], p[1]]);
        let rgb = if v == 0 {
            [0, 0, 0]
        } else {
            let x = (f64::from(v) - f64::from(min)) / span;
            match map {
                Colormap::Turbo => turbo(x),
                Colormap::Gray => {
                    let g = (x.clamp(0.0, 1.0) * 255.0).round() as u8;
                    [g, g, g]
                }
            }
        };
        out.extend_from_slice(&rgb);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turbo_runs_from_blue_through_green_to_red() {
        let [r0, _, b0] = turbo(0.15);
        let [r1, _, b1] = turbo(0.9);
        assert!(b0 > r0 && r1 > b1, "{:?} {:?}", turbo(0.15), turbo(0.9));
        assert_eq!(turbo(-5.0), turbo(0.0));
        assert_eq!(turbo(7.0), turbo(1.0));
        let [_, g, _] = turbo(0.5);
        assert!(g > 200, "green in the middle: {:?}", turbo(0.5));
    }

    #[test]
    fn samples_map_through_the_range_and_zero_stays_black() {
        let samples: Vec<u8> = [0u16, 100, 200, 300, 1000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let rgb = depth_to_rgb(
            &samples,
            Colormap::Gray,
            DepthRange::Fixed { min: 100, max: 300 },
        );
        assert_eq!(rgb.len(), 15);
        assert_eq!(&rgb[0..3], &[0, 0, 0], "no reading");
        assert_eq!(&rgb[3..6], &[0, 0, 0], "the range's low end");
        assert_eq!(&rgb[6..9], &[128, 128, 128]);
        assert_eq!(&rgb[9..12], &[255, 255, 255]);
        assert_eq!(&rgb[12..15], &[255, 255, 255], "clamped above");
        // Auto: the frame's own nonzero span.
        let auto = depth_to_rgb(&samples, Colormap::Gray, DepthRange::Auto);
        assert_eq!(&auto[3..6], &[0, 0, 0]);
        assert_eq!(&auto[12..15], &[255, 255, 255]);
        // Every sample 0, or an odd trailing byte: no panic.
        assert_eq!(
            depth_to_rgb(&[0, 0, 7], Colormap::Turbo, DepthRange::Auto),
            [0, 0, 0]
        );
    }

    #[test]
    fn ranges_parse_or_say_why_not() {
        assert_eq!("auto".parse::<DepthRange>(), Ok(DepthRange::Auto));
        assert_eq!(
            "400:1200".parse::<DepthRange>(),
            Ok(DepthRange::Fixed {
                min: 400,
                max: 1200
            })
        );
        for bad in ["", "5", "9:3", "3:3", "-1:5", "0:70000", "a:b"] {
            let e = bad.parse::<DepthRange>().unwrap_err();
            assert!(e.contains("MIN:MAX"), "{bad}: {e}");
        }
    }
}
