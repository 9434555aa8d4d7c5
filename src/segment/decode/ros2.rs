//! Reading the ros2 profile's CDR messages (see [`crate::segment::ros2`]): an Image's fields
//! and pixels, an Imu's acceleration, a drop notice. The protobuf and JSON readers hand a
//! message here when it starts with the CDR encapsulation header, which neither a protobuf
//! message of ours (its first key is never 0) nor a JSON object starts with.

use crate::frame::FrameSeq;
use crate::segment::ros2::cdr::ENCAPSULATION;

use super::fields::{AccelRef, Cur, R, RawImageRef};
use super::{DropNotice, NoticeReason};

/// Whether `msg` is little-endian CDR.
pub(crate) fn is_cdr(msg: &[u8]) -> bool {
    msg.starts_with(&ENCAPSULATION)
}

/// A CDR reader: alignment counts from after the encapsulation header.
struct Cdr<'a>(Cur<'a>);

impl<'a> Cdr<'a> {
    fn new(msg: &'a [u8]) -> R<Self> {
        let body = msg.get(4..).ok_or("CDR message shorter than its header")?;
        Ok(Cdr(Cur::new(body)))
    }
    fn align(&mut self, n: usize) -> R<()> {
        let pad = (n - self.0.pos % n) % n;
        self.0.take(pad).map(|_| ())
    }
    fn u32(&mut self) -> R<u32> {
        self.align(4)?;
        self.0.u32()
    }
    fn u64(&mut self) -> R<u64> {
        self.align(8)?;
        self.0.u64()
    }
    fn f64(&mut self) -> R<f64> {
        self.u64().map(f64::from_bits)
    }
    fn string(&mut self) -> R<&'a str> {
        let n = self.u32()? as usize;
        let s = self.0.take(n)?;
        let s = s.strip_suffix(&[0]).ok_or("CDR string without its NUL")?;
        std::str::from_utf8(s).map_err(|_| "string is not UTF-8")
    }
    /// A `std_msgs/Header`: stamp in nanoseconds and frame id.
    fn header(&mut self) -> R<(u64, &'a str)> {
        let sec = self.u32()? as i32;
        let nanosec = self.u32()?;
        let ns = u64::try_from(sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(nanosec));
        Ok((ns, self.string()?))
    }
}

/// A `sensor_msgs/msg/Image` in CDR.
pub(crate) fn decode_image(msg: &[u8]) -> R<RawImageRef<'_>> {
    let mut c = Cdr::new(msg)?;
    let (timestamp_ns, frame_id) = c.header()?;
    let height = c.u32()?;
    let width = c.u32()?;
    let encoding = c.string()?;
    let _is_bigendian = c.0.u8()?;
    let step = c.u32()?;
    let n = c.u32()? as usize;
    let data = c.0.take(n)?;
    Ok(RawImageRef {
        width,
        height,
        step,
        encoding,
        frame_id,
        timestamp_ns,
        data,
    })
}

/// A `sensor_msgs/msg/Imu` in CDR: its linear acceleration. It has no raw reading, tilt
/// angle or status: `raw` is empty, the tilt 0.
pub(crate) fn decode_imu(msg: &[u8]) -> R<AccelRef<'_>> {
    let mut c = Cdr::new(msg)?;
    let (timestamp_ns, frame_id) = c.header()?;
    // orientation (4), its covariance (9), angular velocity (3), its covariance (9).
    for _ in 0..25 {
        c.f64()?;
    }
    let (x, y, z) = (c.f64()?, c.f64()?, c.f64()?);
    for _ in 0..9 {
        c.f64()?;
    }
    Ok(AccelRef {
        timestamp_ns,
        frame_id,
        x,
        y,
        z,
        tilt_degrees: 0.0,
        tilt_status: 0,
        raw: &[],
    })
}

/// A `framerec_msgs/msg/Drop` in CDR and the topic it names.
pub(crate) fn parse_drop(msg: &[u8]) -> Option<(DropNotice, Option<String>)> {
    let mut c = Cdr::new(msg).ok()?;
    let stream = c.string().ok()?.to_string();
    let reason = c.string().ok()?;
    let first = c.u64().ok()?;
    let last = c.u64().ok()?;
    if last < first {
        return None;
    }
    let notice = DropNotice {
        first: FrameSeq(first),
        last: FrameSeq(last),
        reason: NoticeReason::from_name(reason),
        log_time: 0,
    };
    Some((notice, Some(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::ros2::cdr;

    #[test]
    fn what_the_encoder_writes_reads_back() {
        let f = cdr::ImageFields {
            stamp_ns: 3_000_000_007,
            frame_id: "depth_frame",
            height: 2,
            width: 3,
            encoding: "16UC1",
            step: 6,
        };
        let mut msg = Vec::new();
        cdr::image_prefix(&mut msg, &f, 12);
        msg.extend(0..12u8);
        let img = decode_image(&msg).unwrap();
        assert_eq!(img.timestamp_ns, 3_000_000_007);
        assert_eq!((img.frame_id, img.encoding), ("depth_frame", "16UC1"));
        assert_eq!((img.width, img.height, img.step), (3, 2, 6));
        assert_eq!(img.data, &(0..12u8).collect::<Vec<_>>()[..]);

        let mut s = cdr::Scratch::default();
        cdr::imu(&mut s, 9, "a", [1.5, -2.0, 9.8]);
        let a = decode_imu(s.bytes()).unwrap();
        assert_eq!(
            (a.x, a.y, a.z, a.frame_id, a.timestamp_ns),
            (1.5, -2.0, 9.8, "a", 9)
        );

        let mut d = Vec::new();
        cdr::drop_notice(&mut d, "/camera/depth", "queue_full", 4, 9);
        let (n, topic) = parse_drop(&d).unwrap();
        assert_eq!((n.first, n.last), (FrameSeq(4), FrameSeq(9)));
        assert_eq!(n.reason.as_str(), "queue_full");
        assert_eq!(topic.as_deref(), Some("/camera/depth"));
    }

    #[test]
    fn cut_or_lying_messages_are_errors_not_panics() {
        let f = cdr::ImageFields {
            stamp_ns: 1,
            frame_id: "f",
            height: 1,
            width: 1,
            encoding: "16UC1",
            step: 2,
        };
        let mut msg = Vec::new();
        cdr::image_prefix(&mut msg, &f, 2);
        msg.extend([1, 2]);
        for cut in 0..msg.len() {
            assert!(decode_image(&msg[..cut]).is_err(), "cut at {cut}");
            let _ = decode_imu(&msg[..cut]);
            let _ = parse_drop(&msg[..cut]);
        }
        // A data length past the end.
        let at = msg.len() - 6;
        msg[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_image(&msg).is_err());
    }
}
