//! Reading the fields of records and messages: a bounds-checked cursor, records, the
//! `foxglove.RawImage` and drop notice messages, string maps and channel records.

use std::collections::BTreeMap;

use crate::frame::FrameSeq;

use super::*;

/// A bounds-checked little-endian reader over one record's body.
pub(crate) struct Cur<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

pub(crate) type R<T> = Result<T, &'static str>;

impl<'a> Cur<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cur { buf, pos: 0 }
    }
    pub(crate) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or("length overflows")?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or("field runs past the record")?;
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().unwrap_or([0; 2]),
        ))
    }
    pub(crate) fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().unwrap_or([0; 4]),
        ))
    }
    pub(crate) fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().unwrap_or([0; 8]),
        ))
    }
    pub(crate) fn bytes32(&mut self) -> R<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub(crate) fn str(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.bytes32()?).map_err(|_| "string is not UTF-8")
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        s
    }
    pub(crate) fn varint(&mut self) -> R<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }
}

/// One record: opcode, body, and the offset of its opcode byte.
pub(crate) struct Rec<'a> {
    pub(crate) opcode: u8,
    pub(crate) offset: u64,
    pub(crate) body: &'a [u8],
}

/// Reads the record at `at`; `Err` when its length runs past the end.
pub(crate) fn read_record(bytes: &[u8], at: usize) -> Result<Rec<'_>, DecodeError> {
    let available = (bytes.len() - at) as u64;
    let opcode = bytes[at];
    if available < RECORD_PREFIX as u64 {
        return Err(DecodeError::Truncated {
            offset: at as u64,
            opcode,
            needed: RECORD_PREFIX as u64,
            available,
        });
    }
    let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap_or([0; 8]));
    let needed = len.saturating_add(RECORD_PREFIX as u64);
    if needed > available {
        return Err(DecodeError::Truncated {
            offset: at as u64,
            opcode,
            needed,
            available,
        });
    }
    let start = at + RECORD_PREFIX;
    Ok(Rec {
        opcode,
        offset: at as u64,
        body: &bytes[start..start + len as usize],
    })
}

/// The fields of a `foxglove.RawImage` that verify and export need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawImageRef<'a> {
    pub width: u32,
    pub height: u32,
    pub step: u32,
    pub encoding: &'a str,
    pub frame_id: &'a str,
    pub timestamp_ns: u64,
    pub data: &'a [u8],
}

/// Decodes a `foxglove.RawImage` protobuf message (any field order, unknown fields skipped),
/// or a ros2 profile's CDR `sensor_msgs/msg/Image`.
pub fn decode_raw_image(msg: &[u8]) -> Result<RawImageRef<'_>, &'static str> {
    if super::ros2::is_cdr(msg) {
        return super::ros2::decode_image(msg);
    }
    let mut c = Cur::new(msg);
    let mut img = RawImageRef {
        width: 0,
        height: 0,
        step: 0,
        encoding: "",
        frame_id: "",
        timestamp_ns: 0,
        data: &[],
    };
    while c.pos < msg.len() {
        let key = c.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                c.varint()?;
            }
            1 => {
                c.take(8)?;
            }
            5 => {
                let v = c.u32()?;
                match field {
                    2 => img.width = v,
                    3 => img.height = v,
                    5 => img.step = v,
                    _ => {}
                }
            }
            2 => {
                let n = usize::try_from(c.varint()?).map_err(|_| "length too large")?;
                let v = c.take(n)?;
                match field {
                    1 => img.timestamp_ns = timestamp(v)?,
                    4 => img.encoding = std::str::from_utf8(v).map_err(|_| "encoding not UTF-8")?,
                    7 => img.frame_id = std::str::from_utf8(v).map_err(|_| "frame_id not UTF-8")?,
                    6 => img.data = v,
                    _ => {}
                }
            }
            _ => return Err("unsupported protobuf wire type"),
        }
    }
    Ok(img)
}

/// A drop notice and the topic of the stream it names (None: a notice without one).
pub(crate) fn parse_drop(json: &[u8]) -> Option<(DropNotice, Option<String>)> {
    if super::ros2::is_cdr(json) {
        return super::ros2::parse_drop(json);
    }
    #[derive(serde::Deserialize)]
    struct Drop {
        #[serde(default)]
        stream: Option<String>,
        reason: String,
        first_seq: u64,
        last_seq: u64,
    }
    let d: Drop = serde_json::from_slice(json).ok()?;
    if d.last_seq < d.first_seq {
        return None;
    }
    let notice = DropNotice {
        first: FrameSeq(d.first_seq),
        last: FrameSeq(d.last_seq),
        reason: NoticeReason::from_name(&d.reason),
        log_time: 0,
    };
    Some((notice, d.stream))
}

pub(crate) fn string_map(c: &mut Cur<'_>) -> R<BTreeMap<String, String>> {
    let body = c.bytes32()?;
    let mut m = Cur::new(body);
    let mut out = BTreeMap::new();
    while m.pos < body.len() {
        let k = m.str()?;
        let v = m.str()?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// A channel record: id, schema id, topic, message encoding, metadata.
pub(crate) type ChannelRecord = (u16, u16, String, String, BTreeMap<String, String>);

pub(crate) fn channel(body: &[u8]) -> R<ChannelRecord> {
    let mut c = Cur::new(body);
    let id = c.u16()?;
    let schema = c.u16()?;
    let topic = c.str()?.to_string();
    let encoding = c.str()?.to_string();
    let metadata = string_map(&mut c)?;
    Ok((id, schema, topic, encoding, metadata))
}

/// A schema record's id and name.
pub(crate) fn schema(body: &[u8]) -> R<(u16, String)> {
    let mut c = Cur::new(body);
    let id = c.u16()?;
    Ok((id, c.str()?.to_string()))
}

/// The fields of a `framerec.Accelerometer` message (see [`crate::segment::accel`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccelRef<'a> {
    pub timestamp_ns: u64,
    pub frame_id: &'a str,
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub tilt_degrees: f64,
    pub tilt_status: u32,
    /// The raw reading, checked to be [`accel::RAW_BYTES`](crate::segment::accel::RAW_BYTES)
    /// long.
    pub raw: &'a [u8],
}

/// Decodes a `framerec.Accelerometer` protobuf message (any field order, unknown fields
/// skipped); its raw reading must be present and whole. A ros2 profile's CDR
/// `sensor_msgs/msg/Imu` has none: its `raw` is empty.
pub fn decode_accel(msg: &[u8]) -> Result<AccelRef<'_>, &'static str> {
    if super::ros2::is_cdr(msg) {
        return super::ros2::decode_imu(msg);
    }
    let mut c = Cur::new(msg);
    let mut a = AccelRef {
        timestamp_ns: 0,
        frame_id: "",
        x: 0.0,
        y: 0.0,
        z: 0.0,
        tilt_degrees: 0.0,
        tilt_status: 0,
        raw: &[],
    };
    while c.pos < msg.len() {
        let key = c.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = c.varint()?;
                if field == 7 {
                    a.tilt_status = u32::try_from(v).map_err(|_| "tilt_status too large")?;
                }
            }
            1 => {
                let v = f64::from_bits(c.u64()?);
                match field {
                    3 => a.x = v,
                    4 => a.y = v,
                    5 => a.z = v,
                    6 => a.tilt_degrees = v,
                    _ => {}
                }
            }
            5 => {
                c.u32()?;
            }
            2 => {
                let n = usize::try_from(c.varint()?).map_err(|_| "length too large")?;
                let v = c.take(n)?;
                match field {
                    1 => a.timestamp_ns = timestamp(v)?,
                    2 => a.frame_id = std::str::from_utf8(v).map_err(|_| "frame_id not UTF-8")?,
                    8 => a.raw = v,
                    _ => {}
                }
            }
            _ => return Err("unsupported protobuf wire type"),
        }
    }
    if a.raw.len() != crate::segment::accel::RAW_BYTES {
        return Err("raw reading is not 12 bytes");
    }
    Ok(a)
}

/// A `google.protobuf.Timestamp` message, in nanoseconds.
fn timestamp(v: &[u8]) -> Result<u64, &'static str> {
    let mut t = Cur::new(v);
    let (mut secs, mut nanos) = (0u64, 0u64);
    while t.pos < v.len() {
        let k = t.varint()?;
        match (k >> 3, k & 7) {
            (1, 0) => secs = t.varint()?,
            (2, 0) => nanos = t.varint()?,
            (_, 0) => {
                t.varint()?;
            }
            _ => return Err("unexpected wire type in timestamp"),
        }
    }
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// Checks an attachment record: its fields, and its CRC when it has one. (Read here with the
/// bounds-checked cursor: the `mcap` crate's parser allocates the lengths a string claims.)
pub(crate) fn attachment(body: &[u8]) -> R<()> {
    let mut c = Cur::new(body);
    c.u64()?; // log time
    c.u64()?; // create time
    c.str()?; // name
    c.str()?; // media type
    let len = c.u64()?;
    c.take(usize::try_from(len).map_err(|_| "attachment length overflows")?)?;
    let covered = c.pos;
    let saved = c.u32()?;
    if c.pos != body.len() {
        return Err("attachment record has bytes after its CRC");
    }
    if saved != 0 && crc32fast::hash(&body[..covered]) != saved {
        return Err("attachment CRC differs from its bytes");
    }
    Ok(())
}
