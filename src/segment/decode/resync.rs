//! Finding the next intact chunk after damage, in time linear in the bytes searched.

use std::io;
use std::ops::Range;

use bytes::BytesMut;

use super::*;
use crate::segment::crc_range::RangeCrc;

/// Finds intact chunks after damage. Candidates are tested cheapest first (opcode, framing,
/// lengths), and the CRC of a candidate's records comes from a [`RangeCrc`] built on the first
/// candidate that needs one: bounded work per candidate, so a scan over any input (even one
/// crafted to hold a fake chunk header every few bytes, each claiming the rest of the file) is
/// linear in its size. The source is read a window at a time.
pub(crate) struct Resync<'a, S: Source + ?Sized> {
    pub(crate) src: &'a S,
    crc: Option<RangeCrc<'a, S>>,
    window: BytesMut,
    fixed: BytesMut,
}

impl<'a, S: Source + ?Sized> Resync<'a, S> {
    pub(crate) fn new(src: &'a S) -> Resync<'a, S> {
        Resync {
            src,
            crc: None,
            window: BytesMut::new(),
            fixed: BytesMut::new(),
        }
    }

    /// The offset of the next intact chunk at or after `from`, if any.
    pub(crate) fn next(&mut self, from: u64) -> io::Result<Option<u64>> {
        let Resync {
            src,
            crc,
            window,
            fixed,
        } = self;
        let len = src.len();
        let mut at = from;
        while at < len {
            let to = len.min(at.saturating_add(src.window() as u64));
            let w = src.read(at..to, window)?;
            let mut i = 0;
            while let Some(p) = w[i..].iter().position(|b| *b == OP_CHUNK) {
                let candidate = at + (i + p) as u64;
                i += p + 1;
                if len - candidate < CHUNK_FIXED as u64 {
                    continue;
                }
                // A header that runs past the window is read on its own.
                let head = if candidate + CHUNK_FIXED as u64 <= to {
                    &w[i - 1..i - 1 + CHUNK_FIXED]
                } else {
                    src.read(candidate..candidate + CHUNK_FIXED as u64, fixed)?
                };
                if intact_chunk_at(head, candidate, len, |r| {
                    if crc.is_none() {
                        *crc = Some(RangeCrc::new(*src)?);
                    }
                    crc.as_ref().map_or(Ok(0), |c| c.crc(r))
                })? {
                    return Ok(Some(candidate));
                }
            }
            at = to;
        }
        Ok(None)
    }
}

/// True when a chunk record that checks out (framing, no compression, CRC) starts at `at` of a
/// source of `len` bytes; `head` is its first [`CHUNK_FIXED`] bytes, `hash` hashes a range.
fn intact_chunk_at(
    head: &[u8],
    at: u64,
    len: u64,
    hash: impl FnOnce(Range<u64>) -> io::Result<u32>,
) -> io::Result<bool> {
    if head.len() < CHUNK_FIXED || head[0] != OP_CHUNK {
        return Ok(false);
    }
    let le64 = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    let body_len = le64(1);
    if body_len.saturating_add(RECORD_PREFIX as u64) > len - at
        || body_len < (CHUNK_FIXED - RECORD_PREFIX) as u64
    {
        return Ok(false);
    }
    let b = RECORD_PREFIX;
    let crc = u32::from_le_bytes(head[b + 24..b + 28].try_into().unwrap_or([0; 4]));
    let compression_len = u32::from_le_bytes(head[b + 28..b + 32].try_into().unwrap_or([0; 4]));
    let records_len = body_len - (CHUNK_FIXED - RECORD_PREFIX) as u64;
    let start = at + CHUNK_FIXED as u64;
    Ok(compression_len == 0
        && le64(b + 32) == records_len
        && le64(b + 16) == records_len
        && crc != 0
        && hash(start..start + records_len)? == crc)
}
