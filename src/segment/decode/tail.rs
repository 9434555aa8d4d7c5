//! A finished segment's Metadata records found through its summary (footer, then the
//! MetadataIndex records), without scanning the data section: how a reader learns what the tail
//! records (e.g. [`crate::segment::clock`]'s offsets) before it walks the messages.

use std::collections::BTreeMap;

use bytes::BytesMut;

use super::super::{MAGIC, OP_FOOTER, OP_METADATA, OP_METADATA_INDEX};
use super::source::Source;
use super::{Cur, string_map};

/// Footer record: opcode, length, summary_start, summary_offset_start, summary_crc.
const FOOTER_LEN: u64 = 1 + 8 + 8 + 8 + 4;
/// Largest record read here (a MetadataIndex or the Metadata record it points at).
const MAX_READ: u64 = 1 << 20;

/// The key-value pairs of the Metadata record named `name`, by the summary's MetadataIndex;
/// None when the file has no footer or summary, no such record, or any of it is damaged.
/// Reads records one at a time, each at most 1 MiB; linear in the summary's size.
pub fn indexed_metadata(
    src: &(impl Source + ?Sized),
    name: &str,
) -> Option<BTreeMap<String, String>> {
    let mut buf = BytesMut::new();
    let len = src.len();
    let magic = MAGIC.len() as u64;
    let footer_at = len.checked_sub(magic + FOOTER_LEN)?;
    if footer_at < magic || src.read(len - magic..len, &mut buf).ok()? != MAGIC {
        return None;
    }
    let footer = src.read(footer_at..footer_at + FOOTER_LEN, &mut buf).ok()?;
    let mut c = Cur::new(footer);
    if c.u8().ok()? != OP_FOOTER || c.u64().ok()? != FOOTER_LEN - 9 {
        return None;
    }
    let summary_start = c.u64().ok()?;
    if summary_start < magic || summary_start > footer_at {
        return None;
    }
    let mut at = summary_start;
    while at + 9 <= footer_at {
        let head = src.read(at..at + 9, &mut buf).ok()?;
        let mut c = Cur::new(head);
        let (opcode, body_len) = (c.u8().ok()?, c.u64().ok()?);
        let next = at.checked_add(9)?.checked_add(body_len)?;
        if next > footer_at {
            return None;
        }
        if opcode == OP_METADATA_INDEX && body_len <= MAX_READ {
            let body = src.read(at + 9..next, &mut buf).ok()?;
            let mut c = Cur::new(body);
            let (offset, length) = (c.u64().ok()?, c.u64().ok()?);
            if c.str().ok()? == name {
                return metadata_at(src, offset, length, name, len);
            }
        }
        at = next;
    }
    None
}

/// The Metadata record `name` at `offset` (`length` bytes with opcode and length prefix).
fn metadata_at(
    src: &(impl Source + ?Sized),
    offset: u64,
    length: u64,
    name: &str,
    file_len: u64,
) -> Option<BTreeMap<String, String>> {
    if !(9..=MAX_READ).contains(&length) || offset.checked_add(length)? > file_len {
        return None;
    }
    let mut buf = BytesMut::new();
    let bytes = src.read(offset..offset + length, &mut buf).ok()?;
    let mut c = Cur::new(bytes);
    if c.u8().ok()? != OP_METADATA || c.u64().ok()? != length - 9 || c.str().ok()? != name {
        return None;
    }
    string_map(&mut c).ok()
}
