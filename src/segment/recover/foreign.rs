//! Recovery of another writer's MCAP file (the `mcap` crate, the Python writer, rosbag2):
//! unlike framerec's segments, its channels may be defined inside chunks, its chunks
//! compressed, its messages outside chunks, and its message sequence numbers mean nothing to
//! framerec, so nothing is rebuilt: what is intact is copied as it is.
//!
//! The rebuilt file is:
//!
//! ```text
//! magic
//! header            the original's profile and library ("unknown (recovered by framerec)"
//!                   when unreadable)
//! { record }        in file order, every intact record of the data section: each chunk whose
//!                   CRC checks, whose records decompress and parse and whose messages' channels
//!                   are defined before them; and outside chunks each schema, channel, metadata,
//!                   attachment record and message on a defined channel
//! data end          data section CRC 0 (not computed)
//! footer            no summary: summary_start 0, summary_offset_start 0, CRC 0
//! magic
//! ```
//!
//! Message index records are not copied (readers do not need them; a file without a summary
//! is read linearly), nor attachments over 256 MiB (the scan skips them unread). A chunk or
//! message that needs a channel defined only in a lost chunk is lost too, so that every reader
//! accepts the result (`mcap doctor` checks this).

use std::io::{self, Write};

use super::super::decode::{ChunkInfo, DecodeError, SegmentContents, Visit, scan_source};
use super::super::source::Source;
use super::super::*;
use super::{Counting, RecoverError, Recovered};

/// Rebuilds the other writer's file read from `src`, whose scan is `c`, into `out`: see the
/// module doc. `Err` is a failed read or write.
pub(super) fn recover_foreign<S: Source + ?Sized, W: Write>(
    src: &S,
    c: &SegmentContents,
    out: W,
) -> io::Result<Result<Recovered, RecoverError>> {
    if c.damage.contains(&DecodeError::BadMagic) {
        return Ok(Err(RecoverError::HeadDamaged("no MCAP magic".into())));
    }
    let mut out = Counting { out, at: 0 };
    out.write_all(&MAGIC)?;
    let library = match c.library.as_str() {
        "" => "unknown (recovered by framerec)",
        l => l,
    };
    let mut header = Vec::new();
    put_str(&mut header, &c.profile);
    put_str(&mut header, library);
    write_record(&mut out, OP_HEADER, &header)?;

    let mut copy = CopyIntact {
        out,
        error: None,
        kept_chunks: 0,
        kept_messages: 0,
    };
    scan_source(src, &mut copy)?;
    if let Some(e) = copy.error {
        return Err(e);
    }
    let CopyIntact {
        mut out,
        kept_chunks,
        kept_messages,
        ..
    } = copy;
    write_record(&mut out, OP_DATA_END, &0u32.to_le_bytes())?;
    let mut footer = Vec::with_capacity(20);
    footer.extend_from_slice(&0u64.to_le_bytes()); // summary_start
    footer.extend_from_slice(&0u64.to_le_bytes()); // summary_offset_start
    footer.extend_from_slice(&0u32.to_le_bytes()); // summary_crc
    write_record(&mut out, OP_FOOTER, &footer)?;
    out.write_all(&MAGIC)?;
    out.out.flush()?;
    Ok(Ok(Recovered {
        bytes: Vec::new(),
        kept_frames: kept_messages,
        kept_ranges: Vec::new(),
        lost_ranges: Vec::new(),
        streams: Vec::new(),
        kept_chunks,
        damaged_chunks: c.bad_crc_chunks as usize,
        skipped_bytes: c.skipped_bytes,
        damage: c.damage.items().to_vec(),
        more_damage: c.damage.more(),
        lost_not_named: false,
        foreign: true,
    }))
}

/// A [`Visit`] that copies every intact record and chunk it is shown, keeping the first write
/// error (the scan cannot stop for it).
struct CopyIntact<W: Write> {
    out: Counting<W>,
    error: Option<io::Error>,
    kept_chunks: usize,
    /// Messages kept, in chunks or outside them.
    kept_messages: u64,
}

impl<W: Write> CopyIntact<W> {
    fn copy(&mut self, opcode: u8, body: &[u8]) {
        if self.error.is_none()
            && let Err(e) = write_record(&mut self.out, opcode, body)
        {
            self.error = Some(e);
        }
    }
}

impl<W: Write> Visit for CopyIntact<W> {
    fn chunk(&mut self, c: &ChunkInfo, body: &[u8]) {
        if c.crc_ok {
            self.copy(OP_CHUNK, body);
            self.kept_chunks += 1;
            self.kept_messages += c.messages as u64;
        }
    }

    fn record(&mut self, _offset: u64, opcode: u8, body: &[u8]) {
        self.copy(opcode, body);
        if opcode == OP_MESSAGE {
            self.kept_messages += 1;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_record<W: Write>(out: &mut Counting<W>, opcode: u8, body: &[u8]) -> io::Result<()> {
    out.write_all(&[opcode])?;
    out.write_all(&(body.len() as u64).to_le_bytes())?;
    out.write_all(body)
}

#[cfg(test)]
mod tests {
    use super::super::super::decode::parse_segment;
    use super::super::recover_segment;

    /// `bytes` (a recovered file) scanned: finished, with no damage.
    fn reads_whole(bytes: &[u8]) -> crate::segment::SegmentContents {
        let again = parse_segment(bytes);
        assert!(
            again.finalized && again.damage.is_empty(),
            "{:?}",
            again.damage
        );
        again
    }

    /// The segment fuzz target's third find: an attachment whose name claims a huge length,
    /// which the `mcap` crate's record parser allocated (past the fuzz allocation limit).
    #[test]
    fn an_attachment_is_checked_without_trusting_its_lengths() {
        let input: &[u8] = include_bytes!(
            "../../../fuzz/regressions/segment/attachment-name-claims-a-huge-length.mcap"
        );
        let c = parse_segment(input);
        assert!(
            c.damage
                .iter()
                .any(|d| d.to_string().contains("opcode 0x09")),
            "{:?}",
            c.damage
        );
        let rec = recover_segment(input, &[(0, 3)]).unwrap();
        reads_whole(&rec.bytes);
    }

    /// The segment fuzz target's second find: the Rust crate's file whose header names
    /// framerec as its library. Its `/log` channel is still no channel of framerec's.
    #[test]
    fn a_file_with_a_channel_framerec_never_writes_is_copied_whatever_its_header_says() {
        let input: &[u8] = include_bytes!(
            "../../../fuzz/regressions/segment/framerec-header-with-a-foreign-channel.mcap"
        );
        let c = parse_segment(input);
        assert!(c.library.starts_with("framerec") && c.has_other_channels());
        let rec = recover_segment(input, &[(0, 3)]).unwrap();
        assert!(rec.foreign && rec.kept_chunks > 0);
        reads_whole(&rec.bytes);
    }

    /// The segment fuzz target's find (fuzz/regressions/segment/): the Rust crate's file with
    /// its header damaged, whose `/log` channel 2 framerec's rebuild took for its drop channel
    /// (the rebuilt file then held "drop notices" that are not JSON). Another writer's file is
    /// known by its channels too, and copied as it is.
    #[test]
    fn a_foreign_file_with_its_header_damaged_is_copied_not_rebuilt_as_framerec() {
        let input: &[u8] = include_bytes!(
            "../../../fuzz/regressions/segment/foreign-header-damaged-channel-2-not-drops.mcap"
        );
        let c = parse_segment(input);
        assert!(c.library.is_empty() && c.is_foreign());
        let rec = recover_segment(input, &[(0, 3)]).unwrap();
        assert!(rec.foreign && rec.kept_chunks > 0);
        let again = reads_whole(&rec.bytes);
        assert!(!again.is_framerec());
    }
}
