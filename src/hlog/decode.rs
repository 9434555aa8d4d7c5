//! Decoding one histogram of an interval line, its header checked against framerec's own
//! bounds before anything is allocated from it.

use std::io;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;

use super::reader::MAX_LINE_BYTES;
use crate::observe::{HIGHEST_TRACKABLE, SIGNIFICANT_DIGITS};

/// The largest uncompressed histogram payload a reader accepts (framerec's own are at most
/// 33,792 counts of at most 9 bytes each, about 304 KB).
pub const MAX_PAYLOAD_BYTES: u32 = 512 * 1024;
/// `V2` and `V2` + DEFLATE histogram encodings (HdrHistogram's cookies).
pub(super) const V2_COOKIE: u32 = 0x1c84_9313;
pub(super) const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9314;
/// cookie, payload length, normalizing offset, significant digits (u32 each), lowest and
/// highest trackable value (u64 each), integer-to-double ratio (f64).
const V2_HEADER_BYTES: usize = 40;

/// Why an encoded histogram was refused: checked before anything is allocated from it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HistogramError {
    #[error("{len} bytes of base64, over the {max} a histogram can take")]
    TooLong { len: usize, max: usize },
    #[error("not base64")]
    Base64,
    #[error("shorter than a histogram header")]
    Truncated,
    #[error("cookie {0:#010x} is not an HdrHistogram V2 encoding")]
    Cookie(u32),
    #[error("the compressed payload claims {claimed} bytes, {available} follow")]
    CompressedLength { claimed: u32, available: usize },
    #[error("the payload claims {claimed} bytes, over the {max} a histogram can take")]
    PayloadLength { claimed: u32, max: u32 },
    #[error("normalizing offset {0} is not supported")]
    NormalizingOffset(u32),
    #[error("it claims {claimed} significant digits; framerec keeps {max}")]
    SignificantDigits { claimed: u32, max: u8 },
    #[error(
        "its range {lowest}..={highest} is not within 1..={max} that framerec's histograms track"
    )]
    Range { lowest: u64, highest: u64, max: u64 },
    #[error("the counts do not decode: {0}")]
    Counts(String),
}

/// A base64 HdrHistogram V2 encoding (compressed or not) to its histogram. The header is
/// checked against what framerec writes before the `hdrhistogram` deserializer sees it, as
/// that allocates whatever payload and counts array the header claims.
pub fn decode_histogram(base64: &str) -> Result<Histogram<u64>, HistogramError> {
    use std::io::Read as _;
    let max = MAX_LINE_BYTES;
    if base64.len() > max {
        return Err(HistogramError::TooLong {
            len: base64.len(),
            max,
        });
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .map_err(|_| HistogramError::Base64)?;
    let u32_at = |b: &[u8], at: usize| u32::from_be_bytes(b[at..at + 4].try_into().unwrap());
    if bytes.len() < 8 {
        return Err(HistogramError::Truncated);
    }
    let mut header = [0u8; V2_HEADER_BYTES];
    match u32_at(&bytes, 0) {
        V2_COOKIE => header.copy_from_slice(
            bytes
                .get(..V2_HEADER_BYTES)
                .ok_or(HistogramError::Truncated)?,
        ),
        V2_COMPRESSED_COOKIE => {
            let claimed = u32_at(&bytes, 4);
            let available = bytes.len() - 8;
            if usize::try_from(claimed).map_or(true, |c| c > available) {
                return Err(HistogramError::CompressedLength { claimed, available });
            }
            flate2::read::ZlibDecoder::new(&bytes[8..])
                .read_exact(&mut header)
                .map_err(|_| HistogramError::Truncated)?;
        }
        other => return Err(HistogramError::Cookie(other)),
    }
    let cookie = u32_at(&header, 0);
    if cookie != V2_COOKIE {
        return Err(HistogramError::Cookie(cookie));
    }
    let claimed = u32_at(&header, 4);
    if claimed > MAX_PAYLOAD_BYTES {
        return Err(HistogramError::PayloadLength {
            claimed,
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let offset = u32_at(&header, 8);
    if offset != 0 {
        return Err(HistogramError::NormalizingOffset(offset));
    }
    let digits = u32_at(&header, 12);
    if digits > u32::from(SIGNIFICANT_DIGITS) {
        return Err(HistogramError::SignificantDigits {
            claimed: digits,
            max: SIGNIFICANT_DIGITS,
        });
    }
    let lowest = u64::from_be_bytes(header[16..24].try_into().unwrap());
    let highest = u64::from_be_bytes(header[24..32].try_into().unwrap());
    if lowest == 0 || lowest > highest || highest > HIGHEST_TRACKABLE {
        return Err(HistogramError::Range {
            lowest,
            highest,
            max: HIGHEST_TRACKABLE,
        });
    }
    Deserializer::new()
        .deserialize(&mut io::Cursor::new(bytes))
        .map_err(|e| HistogramError::Counts(e.to_string()))
}
