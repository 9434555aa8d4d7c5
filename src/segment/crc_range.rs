//! CRC-32 of any byte range of a buffer in bounded time, so a scan over damage that has to test
//! many candidate chunks (each claiming its own, possibly overlapping, range) stays linear in the
//! size of the buffer instead of hashing the same bytes once per candidate.
//!
//! One pass stores the CRC of every prefix ending at a multiple of `step` bytes. The CRC of a
//! range `a..b` then follows from the CRCs of the prefixes `..a` and `..b` (each at most `step`
//! bytes of hashing from a checkpoint) by CRC-32's linearity:
//! `crc(a..b) = crc(..b) ^ crc(..a) * x^(8 (b - a)) mod P`, the same algebra as zlib's
//! `crc32_combine`. Memory: 4 bytes per `step` bytes of input, at most ~4 MiB.

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

/// Answers `crc32(bytes[a..b])` for any range in time bounded by the checkpoint step.
pub(super) struct RangeCrc<'a> {
    bytes: &'a [u8],
    step: usize,
    /// CRC of `bytes[..i * step]`.
    prefix: Vec<u32>,
}

impl<'a> RangeCrc<'a> {
    /// One pass over `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> RangeCrc<'a> {
        let step = MIN_STEP.max(bytes.len().div_ceil(MAX_CHECKPOINTS));
        let mut prefix = Vec::with_capacity(bytes.len() / step + 1);
        prefix.push(0);
        let mut h = crc32fast::Hasher::new();
        for block in bytes.chunks_exact(step) {
            h.update(block);
            prefix.push(h.clone().finalize());
        }
        RangeCrc {
            bytes,
            step,
            prefix,
        }
    }

    /// CRC of `bytes[..at]`.
    fn prefix_crc(&self, at: usize) -> u32 {
        let i = at / self.step;
        let mut h = crc32fast::Hasher::new_with_initial(self.prefix[i]);
        h.update(&self.bytes[i * self.step..at]);
        h.finalize()
    }

    /// CRC-32 of `bytes[range]`; `range` must lie within the buffer.
    pub(super) fn crc(&self, range: std::ops::Range<usize>) -> u32 {
        if range.len() <= 2 * self.step {
            return crc32fast::hash(&self.bytes[range]);
        }
        let a = self.prefix_crc(range.start);
        let ab = self.prefix_crc(range.end);
        crc_of_suffix(a, ab, range.len() as u64)
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
            let r = RangeCrc::new(&data);
            for (a, b) in cuts {
                let (a, b) = (a % (len + 1), b % (len + 1));
                let (a, b) = (a.min(b), a.max(b));
                prop_assert_eq!(r.crc(a..b), crc32fast::hash(&data[a..b]));
            }
        }
    }
}
