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

/// A padding record filling exactly `len` bytes (`len >= RECORD_PREFIX`).
pub(super) fn write_padding(dst: &mut [u8]) {
    debug_assert!(dst.len() >= RECORD_PREFIX);
    dst[0] = OP_PADDING;
    let content = (dst.len() - RECORD_PREFIX) as u64;
    dst[1..9].copy_from_slice(&content.to_le_bytes());
    dst[9..].fill(0);
}

/// Length of a padding record that brings `len` to a multiple of ALIGN (0 if already there).
pub(super) fn padding_to_align(len: usize) -> usize {
    let rem = len % ALIGN;
    if rem == 0 {
        return 0;
    }
    let mut pad = ALIGN - rem;
    if pad < RECORD_PREFIX {
        pad += ALIGN;
    }
    pad
}

pub(super) fn append_padding(out: &mut Vec<u8>) {
    let pad = padding_to_align(out.len());
    if pad > 0 {
        let at = out.len();
        out.resize(at + pad, 0);
        write_padding(&mut out[at..]);
    }
}
