//! Little-endian record building: a bounded scratch writer, whole records, and padding.

use super::*;

/// A little-endian writer into a fixed scratch array (record headers are small and bounded).
pub(super) struct Scratch {
    buf: [u8; 512],
    pub(super) len: usize,
}

pub(super) trait Put {
    fn put(&mut self, bytes: &[u8]);
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.put(s.as_bytes());
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.u8(v as u8);
    }
}

impl Put for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Put for Scratch {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

impl Scratch {
    pub(super) fn new() -> Scratch {
        Scratch {
            buf: [0; 512],
            len: 0,
        }
    }
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Appends a whole record: opcode, length, body.
pub(super) fn record(out: &mut Vec<u8>, opcode: u8, body: &[u8]) {
    out.u8(opcode);
    out.u64(body.len() as u64);
    out.put(body);
}

/// Key of the slack field: field 15, length-delimited. Neither `foxglove.RawImage` nor
/// `framerec.Accelerometer` declares field 15, so protobuf readers skip it as unknown.
pub(super) const SLACK_KEY: u8 = (15 << 3) | 2;

/// Bytes of a varint of `v`.
fn varint_len(v: usize) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// Fills `dst` exactly with slack: unknown protobuf fields ([`SLACK_KEY`]) of zero bytes. Any
/// length but 1 can be filled (see [`slack_len`]).
pub(super) fn write_slack(dst: &mut [u8]) {
    debug_assert!(dst.len() != 1, "one byte cannot hold a protobuf field");
    let total = dst.len();
    // The width of the content length's varint for one field of `total` bytes. None where the
    // content length would need the next width (130 bytes, 16387, ...): then an empty field
    // (2 bytes) goes first and one field fills the rest.
    let width = (1..=10).find(|w| total > *w && varint_len(total - 1 - w) == *w);
    let (first, width) = match width {
        Some(w) => (total, w),
        None if total >= 2 => (2, 1),
        None => return,
    };
    let mut field = Scratch::new();
    field.u8(SLACK_KEY);
    field.varint((first - 1 - width) as u64);
    dst[..field.len].copy_from_slice(field.bytes());
    dst[field.len..first].fill(0);
    if first < total {
        write_slack(&mut dst[first..]);
    }
}

/// Bytes of slack that take `len` to a multiple of ALIGN: never 1 (no field is that small).
pub(super) fn slack_len(len: usize) -> usize {
    match (ALIGN - len % ALIGN) % ALIGN {
        1 => 1 + ALIGN,
        n => n,
    }
}
