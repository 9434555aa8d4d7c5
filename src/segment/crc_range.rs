//! CRC-32 of any byte range of a buffer in bounded time, so a scan over damage that has to test
//! many candidate chunks (each claiming its own, possibly overlapping, range) stays linear in the
//! size of the buffer instead of hashing the same bytes once per candidate.
//!
//! One pass stores the CRC of every prefix ending at a multiple of `step` bytes. The CRC of a
//! range `a..b` then follows from the CRCs of the prefixes `..a` and `..b` (each at most `step`
//! bytes of hashing from a checkpoint) by CRC-32's linearity:
//! `crc(a..b) = crc(..b) ^ crc(..a) * x^(8 (b - a)) mod P`, the same algebra as zlib's
//! `crc32_combine`. Memory: 4 bytes per `step` bytes of input, at most ~4 MiB; the input is
//! read through a [`Source`], so a file is hashed a window at a time, never held whole.

use std::io;

use bytes::BytesMut;

use super::source::Source;

/// The reflected CRC-32 (IEEE) polynomial.
const POLY: u32 = 0xedb8_8320;

/// Checkpoints kept at most: the step grows with the input beyond this.
const MAX_CHECKPOINTS: usize = 1 << 20;
const MIN_STEP: usize = 1024;

/// `a * b mod P` in CRC-32's reflected representation.
fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        if m == 0 {
            break;
        }
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(2^k) mod P` for k in 0..64.
fn x2n_table() -> &'static [u32; 64] {
    static TABLE: std::sync::OnceLock<[u32; 64]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 64];
        let mut p = 1u32 << 30; // x^1
        t[0] = p;
        for e in t.iter_mut().skip(1) {
            p = mul_mod(p, p);
            *e = p;
        }
        t
    })
}

/// `x^(8 n) mod P`: the effect of `n` zero bytes on a CRC register.
fn x8n(mut n: u64) -> u32 {
    let t = x2n_table();
    let mut p = 1u32 << 31; // x^0
    let mut k = 3; // 8 = 2^3
    while n != 0 {
        if n & 1 != 0 {
            p = mul_mod(t[k & 63], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// CRC-32 of the bytes `b` that follow bytes whose CRC is `crc_a`, given `crc_ab`, the CRC of
/// both: the inverse of `crc32_combine`.
fn crc_of_suffix(crc_a: u32, crc_ab: u32, len_b: u64) -> u32 {
    crc_ab ^ mul_mod(x8n(len_b), crc_a)
}

/// Answers `crc32(src[a..b])` for any range in time bounded by the checkpoint step: two reads
/// of at most `step` bytes each, whatever the range.
pub(super) struct RangeCrc<'a, S: Source + ?Sized> {
    src: &'a S,
    step: u64,
    /// CRC of `src[..i * step]`.
    prefix: Vec<u32>,
}

impl<'a, S: Source + ?Sized> RangeCrc<'a, S> {
    /// One pass over `src`, a window at a time.
    pub(super) fn new(src: &'a S) -> io::Result<RangeCrc<'a, S>> {
        let len = src.len();
        let step = (MIN_STEP as u64).max(len.div_ceil(MAX_CHECKPOINTS as u64));
        let whole = len - len % step;
        // Windows hold whole steps, so every checkpoint falls on a block boundary.
        let window = step.max(src.window() as u64 / step * step);
        let mut prefix = Vec::with_capacity((len / step + 1) as usize);
        prefix.push(0);
        let mut h = crc32fast::Hasher::new();
        let mut buf = BytesMut::new();
        let mut at = 0;
        while at < whole {
            let to = whole.min(at + window);
            for block in src.read(at..to, &mut buf)?.chunks_exact(step as usize) {
                h.update(block);
                prefix.push(h.clone().finalize());
            }
            at = to;
        }
        Ok(RangeCrc { src, step, prefix })
    }

    /// CRC of `src[..at]`.
    fn prefix_crc(&self, at: u64) -> io::Result<u32> {
        let i = at / self.step;
        let mut h = crc32fast::Hasher::new_with_initial(self.prefix[i as usize]);
        let mut buf = BytesMut::new();
        h.update(self.src.read(i * self.step..at, &mut buf)?);
        Ok(h.finalize())
    }

    /// CRC-32 of `src[range]`; `range` must lie within the source.
    pub(super) fn crc(&self, range: std::ops::Range<u64>) -> io::Result<u32> {
        if range.end - range.start <= 2 * self.step {
            let mut buf = BytesMut::new();
            return Ok(crc32fast::hash(self.src.read(range, &mut buf)?));
        }
        let a = self.prefix_crc(range.start)?;
        let ab = self.prefix_crc(range.end)?;
        Ok(crc_of_suffix(a, ab, range.end - range.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suffix_inverts_combine() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let (a, b) = data.split_at(33_333);
        let got = crc_of_suffix(crc32fast::hash(a), crc32fast::hash(&data), b.len() as u64);
        assert_eq!(got, crc32fast::hash(b));
    }

    proptest! {
        #[test]
        fn any_range_matches_direct_hashing(
            len in 0usize..20_000,
            seed in any::<u64>(),
            cuts in proptest::collection::vec((any::<usize>(), any::<usize>()), 1..20),
            window in 1usize..5000,
        ) {
            let mut x = seed | 1;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let r = RangeCrc::new(&data[..]).unwrap();
            let mut file = tempfile::tempfile().unwrap();
            std::io::Write::write_all(&mut file, &data).unwrap();
            let file = super::super::source::FileSource::new(file).unwrap().with_window(window);
            let f = RangeCrc::new(&file).unwrap();
            for (a, b) in cuts {
                let (a, b) = (a % (len + 1), b % (len + 1));
                let (a, b) = (a.min(b), a.max(b));
                prop_assert_eq!(r.crc(a as u64..b as u64).unwrap(), crc32fast::hash(&data[a..b]));
                prop_assert_eq!(f.crc(a as u64..b as u64).unwrap(), crc32fast::hash(&data[a..b]));
            }
        }
    }
}
