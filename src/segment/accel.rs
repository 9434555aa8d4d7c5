//! The accelerometer stream: a raw Kinect tilt-state reading and its `framerec.Accelerometer`
//! message.
//!
//! A frame of an accelerometer stream is the 12 bytes of libfreenect's `freenect_raw_tilt_state`
//! exactly as fakenect's `a-*.dump` files hold them (x86-64 layout):
//!
//! ```text
//! RawTilt { accelerometer_x: i16 LE, accelerometer_y: i16 LE, accelerometer_z: i16 LE,
//!           tilt_angle: i8, pad: u8 (0), tilt_status: u32 LE }
//! ```
//!
//! The message (proto3, package `framerec`) written for it carries the reading in SI units
//! beside the raw bytes, so a reader needs neither libfreenect nor its constants:
//!
//! ```text
//! message Accelerometer {
//!   google.protobuf.Timestamp timestamp = 1;  // host realtime at capture (the log time)
//!   string frame_id = 2;
//!   double x = 3;             // m/s^2: raw / 819 counts per g * 9.80665
//!   double y = 4;
//!   double z = 5;
//!   double tilt_degrees = 6;  // tilt_angle / 2
//!   uint32 tilt_status = 7;   // 0 stopped, 1 at its limit, 4 moving
//!   bytes raw = 8;            // the 12 raw bytes above, written last
//! }
//! ```

/// Bytes of one raw reading.
pub const RAW_BYTES: usize = 12;
/// Accelerometer counts per g (libfreenect's `FREENECT_COUNTS_PER_G`).
pub const COUNTS_PER_G: f64 = 819.0;
/// Standard gravity, m/s^2 (libfreenect's `GRAVITY`).
pub const GRAVITY: f64 = 9.80665;
pub const SCHEMA_NAME: &str = "framerec.Accelerometer";

/// One raw tilt-state reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawTilt {
    pub accel: [i16; 3],
    pub tilt_angle: i8,
    pub tilt_status: u32,
}

impl RawTilt {
    /// The reading in `bytes`, which must be [`RAW_BYTES`] long.
    pub fn from_bytes(bytes: &[u8]) -> Option<RawTilt> {
        let b: &[u8; RAW_BYTES] = bytes.try_into().ok()?;
        let i16_at = |i: usize| i16::from_le_bytes([b[i], b[i + 1]]);
        Some(RawTilt {
            accel: [i16_at(0), i16_at(2), i16_at(4)],
            tilt_angle: b[6] as i8,
            tilt_status: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    pub fn to_bytes(&self) -> [u8; RAW_BYTES] {
        let mut b = [0u8; RAW_BYTES];
        for (i, v) in self.accel.iter().enumerate() {
            b[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        b[6] = self.tilt_angle as u8;
        b[8..12].copy_from_slice(&self.tilt_status.to_le_bytes());
        b
    }

    /// Acceleration in m/s^2 along x, y, z (`freenect_get_mks_accel`).
    pub fn mks(&self) -> [f64; 3] {
        self.accel.map(|c| c as f64 / COUNTS_PER_G * GRAVITY)
    }

    /// Tilt in degrees (`freenect_get_tilt_degs`).
    pub fn tilt_degrees(&self) -> f64 {
        self.tilt_angle as f64 / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_readings_round_trip_and_convert_as_libfreenect_does() {
        let r = RawTilt {
            accel: [-12, 819, -819],
            tilt_angle: -31,
            tilt_status: 4,
        };
        let b = r.to_bytes();
        assert_eq!(RawTilt::from_bytes(&b), Some(r));
        assert_eq!(b[7], 0, "the pad byte is zero");
        assert_eq!(r.mks()[1], GRAVITY);
        assert_eq!(r.mks()[2], -GRAVITY);
        assert_eq!(r.tilt_degrees(), -15.5);
        assert_eq!(RawTilt::from_bytes(&b[..11]), None);
    }
}
