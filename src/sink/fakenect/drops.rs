//! Reading `DROPS.txt`, the fakenect layout's list of dropped frames, for `verify` and tests:
//! bounded lines, a torn last line skipped, damage reported.

use crate::frame::{DropReason, FrameSeq};

use super::DROPS;

/// The longest `DROPS.txt` line a reader takes: framerec's are two 20-digit numbers, a reason
/// and a stream name.
pub const MAX_DROPS_LINE: usize = 128;

/// Why a `DROPS.txt` cannot be trusted (its lines are 1-based).
#[derive(Debug, thiserror::Error)]
pub enum DropsError {
    #[error("cannot read {DROPS}: {0}")]
    Io(#[from] std::io::Error),
    #[error("{DROPS}:{line}: a line longer than {MAX_DROPS_LINE} bytes (not written by framerec)")]
    TooLong { line: usize },
    #[error("{DROPS}:{line}: the range {first}..={last} runs backwards")]
    Inverted { line: usize, first: u64, last: u64 },
}

/// One `DROPS.txt` line: frames `first..=last` of `stream` dropped for `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropLine {
    /// The stream's name; `depth` for a line without one (written before streams).
    pub stream: String,
    pub first: FrameSeq,
    pub last: FrameSeq,
    pub reason: DropReason,
}

/// The drop ranges a `DROPS.txt` lists (`<first seq> <last seq> <reason> [<stream>]`). A line
/// that does not parse (a torn last line after a crash) is skipped; an over-long line or a range
/// that runs backwards is damage.
pub fn read_drops(mut reader: impl std::io::BufRead) -> Result<Vec<DropLine>, DropsError> {
    use std::io::{BufRead as _, Read as _};
    let mut out = Vec::new();
    let mut raw = Vec::new();
    for line in 1.. {
        raw.clear();
        let read = (&mut reader)
            .take(MAX_DROPS_LINE as u64 + 1)
            .read_until(b'\n', &mut raw)?;
        if read == 0 {
            break;
        }
        if raw.last() != Some(&b'\n') && raw.len() > MAX_DROPS_LINE {
            return Err(DropsError::TooLong { line });
        }
        let Ok(text) = std::str::from_utf8(&raw) else {
            continue;
        };
        // A torn line has no newline: its stream name may be cut short.
        if raw.last() != Some(&b'\n') {
            continue;
        }
        let mut f = text.split_whitespace();
        let (Some(first), Some(last), Some(reason)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let stream = f.next().unwrap_or("depth").to_string();
        let (Ok(first), Ok(last), Some(reason)) = (
            first.parse::<u64>(),
            last.parse::<u64>(),
            DropReason::from_name(reason),
        ) else {
            continue;
        };
        if last < first {
            return Err(DropsError::Inverted { line, first, last });
        }
        out.push(DropLine {
            stream,
            first: FrameSeq(first),
            last: FrameSeq(last),
            reason,
        });
    }
    Ok(out)
}

/// Frames in `ranges` (inclusive), saturating rather than wrapping.
pub fn dropped_frames<'a>(ranges: impl IntoIterator<Item = &'a DropLine>) -> u64 {
    ranges.into_iter().fold(0u64, |sum, d| {
        sum.saturating_add((d.last.0 - d.first.0).saturating_add(1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_ranges_that_run_backwards_or_overflow_are_caught() {
        let read = |text: &str| read_drops(text.as_bytes());
        let d = read("3 5 queue_full\n7 7 disk_full color\n9 1").unwrap();
        assert_eq!(d.len(), 2, "the torn last line is skipped");
        assert_eq!(dropped_frames(&d), 4);
        assert_eq!(
            (d[0].stream.as_str(), d[1].stream.as_str()),
            ("depth", "color"),
            "a line without a stream (the old form) is depth's"
        );
        // A last line torn inside the stream name is not taken for another stream's.
        let torn = read("3 5 queue_full accel\n6 6 queue_full acc").unwrap();
        assert_eq!(torn.len(), 1);
        assert!(matches!(
            read("3 5 queue_full\n5 3 queue_full\n"),
            Err(DropsError::Inverted {
                line: 2,
                first: 5,
                last: 3
            })
        ));
        let all = read(&format!("0 {} queue_full\n1 2 queue_full\n", u64::MAX)).unwrap();
        assert_eq!(dropped_frames(&all), u64::MAX);
        let long = format!("1 2 queue_full{}\n", " ".repeat(MAX_DROPS_LINE));
        assert!(matches!(read(&long), Err(DropsError::TooLong { line: 1 })));
    }
}
