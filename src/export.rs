//! Files for export: depth as 16-bit PGM and PNG (big-endian samples, as their specs say),
//! colour as PPM (`P6`) and RGB PNG, accelerometer readings as CSV rows. Pure code: samples
//! in, file bytes out.

pub mod colormap;

/// Little-endian `u16` samples (as recorded) to big-endian bytes (as PGM and PNG store them).
fn big_endian(samples_le: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples_le.len());
    for s in samples_le.chunks_exact(2) {
        out.extend_from_slice(&[s[1], s[0]]);
    }
    out
}

/// A binary 16-bit PGM (`P5`, maxval 65535).
pub fn pgm16(width: u32, height: u32, samples_le: &[u8]) -> Vec<u8> {
    let mut out = format!("P5\n{width} {height}\n65535\n").into_bytes();
    out.extend_from_slice(&big_endian(samples_le));
    out
}

/// A depth frame as libfreenect's `fakenect-record` dumps it: a one-line `P5` header, then the
/// samples exactly as the device delivered them (little-endian, *not* PGM's byte order).
pub fn fakenect_depth(width: u32, height: u32, samples_le: &[u8]) -> Vec<u8> {
    let mut out = format!("P5 {width} {height} 65535\n").into_bytes();
    out.extend_from_slice(samples_le);
    out
}

/// The file name fakenect gives a depth frame: `d-<host time, s>-<device timestamp>.pgm`, the
/// device timestamp in the Kinect's 60 MHz ticks (32 bits, wrapping).
pub fn fakenect_depth_name(host_real_ns: u64, device_ns: u64) -> String {
    fakenect_file_name("d", "pgm", host_real_ns, device_ns)
}

/// The file name fakenect gives a frame of the kind `prefix` (`d`, `r`, `a`) with extension
/// `ext` (`pgm`, `ppm`, `dump`): `<prefix>-<host time, s>-<device timestamp>.<ext>`.
pub fn fakenect_file_name(prefix: &str, ext: &str, host_real_ns: u64, device_ns: u64) -> String {
    let ticks = (crate::source::kinect_ns_to_ticks(device_ns) % (1 << 32)) as u32;
    format!("{prefix}-{:.6}-{ticks}.{ext}", host_real_ns as f64 / 1e9)
}

/// A 16-bit grayscale PNG.
pub fn png16(width: u32, height: u32, samples_le: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header()?;
    w.write_image_data(&big_endian(samples_le))?;
    w.finish()?;
    Ok(out)
}

/// A binary 8-bit PPM (`P6`, maxval 255) of `rgb8` samples.
pub fn ppm_rgb8(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = format!("P6\n{width} {height}\n255\n").into_bytes();
    out.extend_from_slice(rgb);
    out
}

/// An 8-bit RGB PNG of `rgb8` samples.
pub fn png_rgb8(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header()?;
    w.write_image_data(rgb)?;
    w.finish()?;
    Ok(out)
}

/// The header of an accelerometer CSV export.
pub const ACCEL_CSV_HEADER: &str =
    "seq,log_time_ns,device_ns,x_m_s2,y_m_s2,z_m_s2,tilt_degrees,tilt_status\n";

/// One CSV row of accelerometer reading `raw` (frame `seq`), in SI units as libfreenect
/// converts them; None when `raw` is not a whole reading.
pub fn accel_csv_row(seq: u64, log_time_ns: u64, device_ns: u64, raw: &[u8]) -> Option<String> {
    let r = crate::segment::accel::RawTilt::from_bytes(raw)?;
    let [x, y, z] = r.mks();
    Some(format!(
        "{seq},{log_time_ns},{device_ns},{x},{y},{z},{},{}\n",
        r.tilt_degrees(),
        r.tilt_status
    ))
}

/// One CSV row of a reading known only as acceleration (a ros2 profile's `sensor_msgs/Imu`
/// keeps no raw reading): the tilt columns are left empty.
pub fn accel_csv_row_of(seq: u64, log_time_ns: u64, device_ns: u64, [x, y, z]: [f64; 3]) -> String {
    format!("{seq},{log_time_ns},{device_ns},{x},{y},{z},,\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgm_header_and_big_endian_samples() {
        let f = pgm16(2, 1, &[0x01, 0x02, 0xff, 0x07]);
        assert_eq!(&f[..], b"P5\n2 1\n65535\n\x02\x01\x07\xff");
    }

    #[test]
    fn fakenect_files_match_fakenect_record() {
        assert_eq!(
            fakenect_depth(2, 1, &[1, 2, 3, 4]),
            b"P5 2 1 65535\n\x01\x02\x03\x04"
        );
        // 1 s of device time is 60,000,000 ticks.
        assert_eq!(
            fakenect_depth_name(1_700_000_000_250_000_000, 1_000_000_000),
            "d-1700000000.250000-60000000.pgm"
        );
    }

    #[test]
    fn png_decodes_back_to_the_samples() {
        let samples: Vec<u8> = (0..24u16).flat_map(|v| (v * 1000).to_le_bytes()).collect();
        let file = png16(6, 4, &samples).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(file))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(
            (info.width, info.height, info.bit_depth),
            (6, 4, png::BitDepth::Sixteen)
        );
        let back: Vec<u8> = buf[..info.buffer_size()]
            .chunks(2)
            .flat_map(|b| [b[1], b[0]])
            .collect();
        assert_eq!(back, samples);
    }

    #[test]
    fn colour_files_hold_the_samples_and_accel_rows_are_si_units() {
        let rgb: Vec<u8> = (0..18u8).collect();
        let f = ppm_rgb8(3, 2, &rgb);
        assert_eq!(&f[..11], b"P6\n3 2\n255\n");
        assert_eq!(&f[11..], &rgb[..]);
        let file = png_rgb8(3, 2, &rgb).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(file))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&buf[..info.buffer_size()], &rgb[..]);
        let raw = crate::segment::accel::RawTilt {
            accel: [0, 819, -819],
            tilt_angle: -3,
            tilt_status: 4,
        }
        .to_bytes();
        assert_eq!(
            accel_csv_row(7, 100, 50, &raw).unwrap(),
            "7,100,50,0,9.80665,-9.80665,-1.5,4\n"
        );
        assert_eq!(accel_csv_row(7, 100, 50, &raw[..11]), None);
    }
}
