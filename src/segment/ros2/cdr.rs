//! CDR encoding (little endian, XCDR1 as ROS 2 uses it) of the messages the ros2 profile
//! writes: a 4-byte encapsulation header `00 01 00 00`, then the fields, each primitive aligned
//! to its size counted from after that header; a string is a u32 length (with its NUL), its
//! bytes and a NUL; a sequence a u32 count and its elements.

/// The encapsulation header of little-endian plain CDR.
pub const ENCAPSULATION: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Where CDR bytes go: a growable buffer, or a bounded scratch for the hot path.
pub trait Out {
    fn put(&mut self, bytes: &[u8]);
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A fixed scratch (the bytes before an image's payload, a whole Imu message).
pub struct Scratch {
    buf: [u8; 1024],
    len: usize,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            buf: [0; 1024],
            len: 0,
        }
    }
}

impl Scratch {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Out for Scratch {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

/// A CDR writer: counts the bytes after the encapsulation header to align each field.
pub struct Cdr<'a, O: Out> {
    out: &'a mut O,
    pos: usize,
}

impl<'a, O: Out> Cdr<'a, O> {
    /// Starts a message: writes the encapsulation header.
    pub fn new(out: &'a mut O) -> Self {
        out.put(&ENCAPSULATION);
        Cdr { out, pos: 0 }
    }

    fn align(&mut self, n: usize) {
        let pad = (n - self.pos % n) % n;
        self.out.put(&[0u8; 8][..pad]);
        self.pos += pad;
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.put(bytes);
        self.pos += bytes.len();
    }

    pub fn u8(&mut self, v: u8) {
        self.raw(&[v]);
    }
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.raw(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.align(4);
        self.raw(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.align(8);
        self.raw(&v.to_le_bytes());
    }
    pub fn f64(&mut self, v: f64) {
        self.align(8);
        self.raw(&v.to_le_bytes());
    }
    pub fn string(&mut self, s: &str) {
        self.u32(s.len() as u32 + 1);
        self.raw(s.as_bytes());
        self.raw(&[0]);
    }
    /// A `std_msgs/Header`: stamp (host realtime `ns`) and frame id.
    pub fn header(&mut self, ns: u64, frame_id: &str) {
        let sec = i32::try_from(ns / 1_000_000_000).unwrap_or(i32::MAX);
        self.i32(sec);
        self.u32((ns % 1_000_000_000) as u32);
        self.string(frame_id);
    }
}

/// The fields of a `sensor_msgs/msg/Image` other than its pixels.
#[derive(Debug, Clone, Copy)]
pub struct ImageFields<'a> {
    pub stamp_ns: u64,
    pub frame_id: &'a str,
    pub height: u32,
    pub width: u32,
    pub encoding: &'a str,
    pub step: u32,
}

/// A `sensor_msgs/msg/Image` up to and including the length of its `data`: the `data_len`
/// pixel bytes that follow complete the message.
pub fn image_prefix<O: Out>(out: &mut O, f: &ImageFields<'_>, data_len: usize) {
    let mut c = Cdr::new(out);
    c.header(f.stamp_ns, f.frame_id);
    c.u32(f.height);
    c.u32(f.width);
    c.string(f.encoding);
    c.u8(0); // is_bigendian
    c.u32(f.step);
    c.u32(data_len as u32);
}

/// A whole `sensor_msgs/msg/Imu` holding linear acceleration `accel` (m/s^2) only.
pub fn imu<O: Out>(out: &mut O, stamp_ns: u64, frame_id: &str, accel: [f64; 3]) {
    let mut c = Cdr::new(out);
    c.header(stamp_ns, frame_id);
    let no_estimate = |c: &mut Cdr<'_, O>| {
        c.f64(-1.0);
        for _ in 1..9 {
            c.f64(0.0);
        }
    };
    for v in [0.0, 0.0, 0.0, 1.0] {
        c.f64(v); // orientation: identity, not an estimate
    }
    no_estimate(&mut c);
    for _ in 0..3 {
        c.f64(0.0); // angular_velocity
    }
    no_estimate(&mut c);
    for v in accel {
        c.f64(v);
    }
    for _ in 0..9 {
        c.f64(0.0); // linear_acceleration_covariance: unknown
    }
}

/// A whole `framerec_msgs/msg/Drop`.
pub fn drop_notice(out: &mut Vec<u8>, stream: &str, reason: &str, first: u64, last: u64) {
    let mut c = Cdr::new(out);
    c.string(stream);
    c.string(reason);
    c.u64(first);
    c.u64(last);
    c.u64(last.saturating_sub(first).saturating_add(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_prefix_is_what_rosbags_serializes() {
        // rosbags' serialize_cdr of Image(stamp 1 s 2 ns, frame_id "cam", 2x2 16UC1, step 4,
        // data 0..8): this prefix, then the 8 data bytes.
        let mut out = Vec::new();
        let f = ImageFields {
            stamp_ns: 1_000_000_002,
            frame_id: "cam",
            height: 2,
            width: 2,
            encoding: "16UC1",
            step: 4,
        };
        image_prefix(&mut out, &f, 8);
        let want = "0001000001000000020000000400000063616d0002000000020000000600000031365543310000000400000008000000";
        assert_eq!(hex(&out), want);
    }

    #[test]
    fn fields_align_from_after_the_encapsulation_header() {
        // Offsets count from after the 4-byte header: "ab" ends at 7, the reason's NUL at 13, so the
        // first u64 is padded to 16 (20 in the buffer).
        let mut out = Vec::new();
        drop_notice(&mut out, "ab", "", 5, 7);
        assert_eq!(&out[..4], &ENCAPSULATION);
        assert_eq!(&out[4..11], b"\x03\0\0\0ab\0");
        assert_eq!(
            &out[11..16],
            b"\0\x01\0\0\0",
            "pad 1, then reason's length 1"
        );
        assert_eq!(&out[16..17], b"\0", "reason's NUL");
        assert_eq!(
            &out[17..20],
            &[0u8; 3],
            "pad to 16 after the header, 20 in the buffer"
        );
        assert_eq!(u64::from_le_bytes(out[20..28].try_into().unwrap()), 5);
        assert_eq!(u64::from_le_bytes(out[36..44].try_into().unwrap()), 3);
        assert_eq!(out.len(), 44);
    }

    #[test]
    fn imu_is_fixed_size_for_a_frame_id() {
        let mut s = Scratch::default();
        imu(&mut s, 5, "accel", [1.0, 2.0, 3.0]);
        // 4 + header (8 + 4 + 6 = 18, padded to 24) + 4 + 9 + 3 + 9 + 3 + 9 doubles.
        assert_eq!(s.bytes().len(), 4 + 24 + 8 * 37);
        let at = 4 + 24 + 8 * (4 + 9 + 3 + 9);
        let x = f64::from_le_bytes(s.bytes()[at..at + 8].try_into().unwrap());
        assert_eq!(x, 1.0);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }
}
