//! Finding the next intact chunk after damage, in time linear in the bytes searched.

use std::io;
use std::ops::Range;

use bytes::BytesMut;

use super::chunk::compressed_chunk_is_intact;
use super::*;
use crate::segment::crc_range::RangeCrc;

/// Finds intact chunks after damage. Candidates are tested cheapest first (opcode, framing,
/// lengths), and the CRC of a candidate's records comes from a [`RangeCrc`] built on the first
/// candidate that needs one: bounded work per candidate, so a scan over any input (even one
/// crafted to hold a fake chunk header every few bytes, each claiming the rest of the file) is
/// linear in its size. The source is read a window at a time.
///
/// A compressed candidate (another writer's zstd or lz4 chunk) can only be checked by
/// decompressing it (its CRC is of its decompressed records): that work is charged to a budget
/// of [`COMPRESSED_BUDGET_FACTOR`] times the source's length plus [`MAX_RECORD_BYTES`] (bytes
/// read plus bytes decompressed), and once it is spent no compressed candidate is taken, so a
/// crafted input of nested fake chunks still costs linear time.
pub(crate) struct Resync<'a, S: Source + ?Sized> {
    pub(crate) src: &'a S,
    crc: Option<RangeCrc<'a, S>>,
    window: BytesMut,
    fixed: BytesMut,
    /// The body of a compressed candidate.
    body: BytesMut,
    /// Bytes compressed candidates may still cost.
    budget: u64,
}

/// How many times its length a source's compressed candidates may cost in all.
pub(crate) const COMPRESSED_BUDGET_FACTOR: u64 = 8;

impl<'a, S: Source + ?Sized> Resync<'a, S> {
    pub(crate) fn new(src: &'a S) -> Resync<'a, S> {
        Resync {
            src,
            crc: None,
            window: BytesMut::new(),
            fixed: BytesMut::new(),
            body: BytesMut::new(),
            budget: src
                .len()
                .saturating_mul(COMPRESSED_BUDGET_FACTOR)
                .saturating_add(MAX_RECORD_BYTES),
        }
    }

    /// The offset of the next intact chunk at or after `from`, if any.
    pub(crate) fn next(&mut self, from: u64) -> io::Result<Option<u64>> {
        let Resync {
            src,
            crc,
            window,
            fixed,
            body,
            budget,
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
                let found = match chunk_framing(head, candidate, len) {
                    Framing::No => false,
                    Framing::Plain {
                        records,
                        crc: saved,
                    } => {
                        if crc.is_none() {
                            *crc = Some(RangeCrc::new(*src)?);
                        }
                        crc.as_ref().map_or(Ok(0), |c| c.crc(records))? == saved
                    }
                    Framing::Compressed { body_len, cost } if cost <= *budget => {
                        *budget -= cost;
                        let at = candidate + RECORD_PREFIX as u64;
                        let body = src.read(at..at + body_len, body)?;
                        compressed_chunk_is_intact(candidate, body)
                    }
                    Framing::Compressed { .. } => false,
                };
                if found {
                    return Ok(Some(candidate));
                }
            }
            at = to;
        }
        Ok(None)
    }
}

/// What the framing of a candidate chunk says.
enum Framing {
    /// Not a chunk (or one without a CRC, which cannot be told from damage).
    No,
    /// An uncompressed chunk whose records (a range of the source) must hash to `crc`.
    Plain { records: Range<u64>, crc: u32 },
    /// A compressed chunk of `body_len` bytes that checking would cost `cost` bytes of work.
    Compressed { body_len: u64, cost: u64 },
}

/// What the chunk record that may start at `at` of a source of `len` bytes is, from `head`,
/// its first [`CHUNK_FIXED`] bytes (compression names past them are read from the body).
fn chunk_framing(head: &[u8], at: u64, len: u64) -> Framing {
    if head.len() < CHUNK_FIXED || head[0] != OP_CHUNK {
        return Framing::No;
    }
    let le64 = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().unwrap_or([0; 8]));
    let body_len = le64(1);
    if body_len.saturating_add(RECORD_PREFIX as u64) > len - at
        || body_len < (CHUNK_FIXED - RECORD_PREFIX) as u64
    {
        return Framing::No;
    }
    let b = RECORD_PREFIX;
    let uncompressed_size = le64(b + 16);
    let crc = u32::from_le_bytes(head[b + 24..b + 28].try_into().unwrap_or([0; 4]));
    let compression_len = u32::from_le_bytes(head[b + 28..b + 32].try_into().unwrap_or([0; 4]));
    if crc == 0 {
        return Framing::No;
    }
    if compression_len == 0 {
        let records_len = body_len - (CHUNK_FIXED - RECORD_PREFIX) as u64;
        let start = at + CHUNK_FIXED as u64;
        return match le64(b + 32) == records_len && uncompressed_size == records_len {
            true => Framing::Plain {
                records: start..start + records_len,
                crc,
            },
            false => Framing::No,
        };
    }
    // "zstd" or "lz4": the names framerec reads; lengths checked when the body is parsed.
    if !matches!(compression_len, 3 | 4)
        || body_len > MAX_RECORD_BYTES
        || uncompressed_size > MAX_RECORD_BYTES
    {
        return Framing::No;
    }
    Framing::Compressed {
        body_len,
        cost: body_len + uncompressed_size,
    }
}
