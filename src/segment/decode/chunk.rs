//! Reading one chunk record: its records decompressed when it is compressed (zstd, lz4: see
//! `compressed`), its CRC checked, then its schema and channel records (other writers put them
//! in chunks) and its messages taken into the scan's contents one at a time, each frame handed
//! to the visitor while the chunk is in memory.

use std::borrow::Cow;

use super::compressed::decompress_records;
use super::scan::malformed;
use super::*;

/// Reads the chunk record `rec`: its CRC checked, then each message taken into `out` and
/// handed to `visit`, then the chunk itself handed to `visit` (a chunk whose CRC fails too, with
/// what its records claim). Returns the chunk's messages as (channel, log_time, offset in its
/// records), what its message index records must name. `Err` is damage; the scan resyncs
/// after it.
pub(super) fn scan_chunk(
    rec: &Rec<'_>,
    out: &mut SegmentContents,
    visit: &mut dyn Visit,
) -> Result<Vec<(u16, u64, u64)>, DecodeError> {
    let head = ChunkHead::read(rec)?;
    let calculated = crc32fast::hash(&head.records);
    let crc_ok = head.saved == 0 || head.saved == calculated;
    let mut info = ChunkInfo {
        offset: rec.offset,
        length: (RECORD_PREFIX + rec.body.len()) as u64,
        start_time: head.start_time,
        end_time: head.end_time,
        crc_ok,
        messages: 0,
        sequences: Vec::new(),
        index: Vec::new(),
        compression: head.compression,
        uncompressed_size: head.records.len() as u64,
    };
    if !crc_ok {
        out.chunks.add(info.offset, info.length);
        out.bad_crc_chunks += 1;
        info.sequences = out.damaged_chunk(info.offset, &claimed_sequences(&head.records));
        visit.chunk(&info, rec.body);
        return Err(DecodeError::BadChunkCrc {
            offset: rec.offset,
            saved: head.saved,
            calculated,
        });
    }
    chunk_messages(rec, &head, out, visit, &mut info)?;
    out.chunks.add(info.offset, info.length);
    visit.chunk(&info, rec.body);
    Ok(info.index)
}

/// Checks the message index record `body` against `index`, the messages of the chunk before
/// it (in record order, as [`scan_chunk`] returns them): every entry must name a message of the
/// index's channel at that offset with that log time.
pub(super) fn check_message_index(body: &[u8], index: &[(u16, u64, u64)]) -> R<()> {
    let mut c = Cur::new(body);
    let channel = c.u16()?;
    let entries = c.bytes32()?;
    let mut e = Cur::new(entries);
    while e.pos < entries.len() {
        let (log_time, offset) = (e.u64()?, e.u64()?);
        let found = index
            .binary_search_by_key(&offset, |m| m.2)
            .is_ok_and(|i| index[i].0 == channel && index[i].1 == log_time);
        if !found {
            return Err("message index names a message its chunk does not hold");
        }
    }
    Ok(())
}

/// Whether the compressed chunk record at `offset` whose body is `body` is intact: its
/// records decompress and hash to its saved CRC (what a resync needs to trust it).
pub(super) fn compressed_chunk_is_intact(offset: u64, body: &[u8]) -> bool {
    let rec = Rec {
        opcode: OP_CHUNK,
        offset,
        body,
    };
    ChunkHead::read(&rec)
        .is_ok_and(|head| head.saved != 0 && crc32fast::hash(&head.records) == head.saved)
}

/// The fields of a chunk record before its records, and the records.
struct ChunkHead<'a> {
    start_time: u64,
    end_time: u64,
    /// The CRC of the records the chunk saved (0: none).
    saved: u32,
    /// Offset of the records in the chunk record.
    records_at: usize,
    /// The records, decompressed when the chunk is compressed.
    records: Cow<'a, [u8]>,
    /// `""`, `"zstd"` or `"lz4"`.
    compression: &'static str,
}

impl<'a> ChunkHead<'a> {
    fn read(rec: &Rec<'a>) -> Result<ChunkHead<'a>, DecodeError> {
        let bad = |what| malformed(rec, what);
        let mut c = Cur::new(rec.body);
        let start_time = c.u64().map_err(bad)?;
        let end_time = c.u64().map_err(bad)?;
        let uncompressed_size = c.u64().map_err(bad)?;
        let saved = c.u32().map_err(bad)?;
        let compression = c.str().map_err(bad)?;
        let records_len = c.u64().map_err(bad)?;
        let records_at = RECORD_PREFIX + c.pos;
        let stored = c.rest();
        if stored.len() as u64 != records_len {
            return Err(bad("records length disagrees with the record length"));
        }
        let (records, compression) = match compression {
            "" => (Cow::Borrowed(stored), ""),
            "zstd" | "lz4" => (
                Cow::Owned(
                    decompress_records(rec.body, compression, uncompressed_size).map_err(bad)?,
                ),
                if compression == "zstd" { "zstd" } else { "lz4" },
            ),
            _ => {
                return Err(DecodeError::UnsupportedCompression {
                    offset: rec.offset,
                    compression: compression.chars().take(32).collect(),
                });
            }
        };
        Ok(ChunkHead {
            start_time,
            end_time,
            saved,
            records_at,
            records,
            compression,
        })
    }
}

/// Takes in every message of an intact chunk's records, in order: a drop notice as a notice,
/// any other as a frame of its stream (handed to `visit` with its data), each noted in `info`.
fn chunk_messages(
    rec: &Rec<'_>,
    head: &ChunkHead<'_>,
    out: &mut SegmentContents,
    visit: &mut dyn Visit,
    info: &mut ChunkInfo,
) -> Result<(), DecodeError> {
    let records = &head.records[..];
    // File offset of the chunk's records (of a compressed chunk: of its stored bytes, and a
    // message's data range is then the chunk's records offset plus its offset in the
    // decompressed records, not a place in the file).
    let base = rec.offset as usize + head.records_at;
    let mut at = 0;
    while at < records.len() {
        let inner = read_record(records, at)
            .map_err(|_| malformed(rec, "a record inside runs past the chunk"))?;
        match inner.opcode {
            OP_SCHEMA => {
                let (id, name) = schema(inner.body).map_err(|w| malformed(rec, w))?;
                out.schemas.insert(id, name);
            }
            OP_CHANNEL => out.channel_record(channel(inner.body).map_err(|w| malformed(rec, w))?),
            _ => {}
        }
        if inner.opcode == OP_MESSAGE {
            let m = take_message(rec, inner.body, base + at, out, visit)?;
            info.sequences.extend(m.stream_sequence);
            info.messages += 1;
            info.index.push((m.channel, m.log_time, at as u64));
        }
        at += RECORD_PREFIX + inner.body.len();
    }
    Ok(())
}

/// What [`take_message`] read of a message.
pub(super) struct Taken {
    pub(super) channel: u16,
    pub(super) log_time: u64,
    /// Its sequence, when it is a frame of a stream.
    pub(super) stream_sequence: Option<u32>,
}

/// Takes in the message record whose body is `body`, at file offset `offset`, in the record
/// `rec` (a chunk, or the message itself outside chunks): a drop notice as a notice, a frame of
/// a stream as a frame (handed to `visit` with its data), another writer's message counted on
/// its channel. A message on a channel no record defined is damage.
pub(super) fn take_message(
    rec: &Rec<'_>,
    body: &[u8],
    offset: usize,
    out: &mut SegmentContents,
    visit: &mut dyn Visit,
) -> Result<Taken, DecodeError> {
    let m = Message::read(body).map_err(|w| malformed(rec, w))?;
    let mut stream_sequence = None;
    if out.is_drop_channel(m.channel) {
        let Some((mut d, topic)) = parse_drop(m.data) else {
            return Err(malformed(rec, "drop notice is not valid JSON"));
        };
        d.log_time = m.log_time;
        out.notice_message(m.channel, offset as u64, d, topic);
    } else if out.stream_index(m.channel).is_none() && out.channels.contains_key(&m.channel) {
        out.other_message(m.channel, m.log_time);
    } else {
        let chunk_offset = if rec.opcode == OP_CHUNK {
            rec.offset
        } else {
            offset as u64
        };
        let mref = m.stream_message(out, offset, chunk_offset)?;
        stream_sequence = Some(m.sequence);
        visit.message(&mref, m.data);
        out.message(mref.stream, &mref);
    }
    Ok(Taken {
        channel: m.channel,
        log_time: m.log_time,
        stream_sequence,
    })
}

/// A message record's fields.
struct Message<'a> {
    channel: u16,
    sequence: u32,
    log_time: u64,
    publish_time: u64,
    /// Offset of the data in the message record's body.
    data_at: usize,
    data: &'a [u8],
}

impl<'a> Message<'a> {
    fn read(body: &'a [u8]) -> R<Message<'a>> {
        let mut m = Cur::new(body);
        let channel = m.u16()?;
        let sequence = m.u32()?;
        let log_time = m.u64()?;
        let publish_time = m.u64()?;
        Ok(Message {
            channel,
            sequence,
            log_time,
            publish_time,
            data_at: m.pos,
            data: m.rest(),
        })
    }

    /// This message, a frame of a stream of `out`, as found at file offset `offset` in the
    /// chunk at `chunk_offset`; a channel no stream has is damage.
    fn stream_message(
        &self,
        out: &SegmentContents,
        offset: usize,
        chunk_offset: u64,
    ) -> Result<MessageRef, DecodeError> {
        let Some(stream) = out.stream_index(self.channel) else {
            return Err(DecodeError::UnknownChannel {
                offset: offset as u64,
                channel: self.channel,
            });
        };
        let data_at = offset + RECORD_PREFIX + self.data_at;
        Ok(MessageRef {
            channel: self.channel,
            stream,
            kind: out.streams[stream].kind,
            sequence: self.sequence,
            log_time: self.log_time,
            publish_time: self.publish_time,
            data: data_at..data_at + self.data.len(),
            chunk_offset,
        })
    }
}

/// The (channel, sequence) of every message a damaged chunk's records claim, read without
/// trusting them.
fn claimed_sequences(records: &[u8]) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let Ok(inner) = read_record(records, at) else {
            break;
        };
        if inner.opcode == OP_MESSAGE && inner.body.len() >= 6 {
            let channel = u16::from_le_bytes([inner.body[0], inner.body[1]]);
            let seq = u32::from_le_bytes(inner.body[2..6].try_into().unwrap_or([0; 4]));
            out.push((channel, seq));
        }
        at += RECORD_PREFIX + inner.body.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::parse_segment;
    use super::*;

    /// A file from the `mcap` crate: schema and channel records inside its chunks, `n`
    /// messages on a JSON channel, each chunk followed by its message index.
    fn crate_file(compression: Option<mcap::Compression>, n: u64) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        let opts = mcap::WriteOptions::new()
            .compression(compression)
            .chunk_size(Some(256));
        let mut w = opts.create(&mut out).unwrap();
        let ch = w.add_channel(0, "/log", "json", &BTreeMap::new()).unwrap();
        for i in 0..n {
            let header = mcap::records::MessageHeader {
                channel_id: ch,
                sequence: i as u32,
                log_time: 10 + i,
                publish_time: 10 + i,
            };
            w.write_to_known_channel(&header, b"{\"a\": 1}").unwrap();
        }
        w.finish().unwrap();
        drop(w);
        out.into_inner()
    }

    #[test]
    fn records_inside_compressed_and_plain_chunks_are_read() {
        use mcap::Compression::{Lz4, Zstd};
        for compression in [None, Some(Zstd), Some(Lz4)] {
            let c = parse_segment(&crate_file(compression, 50));
            assert!(c.damage.is_empty(), "{compression:?}: {:?}", c.damage);
            assert!(c.finalized && c.chunks.count > 1, "{compression:?}");
            assert_eq!(c.channels.len(), 1);
            assert!(c.streams.is_empty() && c.drop_channel.is_none());
            assert_eq!(c.channel_messages.values().sum::<u64>(), 50);
            assert_eq!(c.channel_times.values().next(), Some(&(10, 59)));
            assert!(!c.is_framerec() && c.is_foreign());
        }
    }

    #[test]
    fn a_message_index_naming_a_message_its_chunk_lacks_is_damage() {
        let mut bytes = crate_file(None, 20);
        // The first message index record: its first entry's log time is made wrong.
        let mut at = MAGIC.len();
        while bytes[at] != OP_MESSAGE_INDEX {
            let len = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap());
            at += RECORD_PREFIX + len as usize;
        }
        let log_time = at + RECORD_PREFIX + 2 + 4;
        bytes[log_time] ^= 0xff;
        let c = parse_segment(&bytes);
        let what = "message index names a message its chunk does not hold";
        assert!(
            c.damage.iter().any(|d| matches!(
                d,
                DecodeError::Malformed { offset, what: w, .. } if *offset == at as u64 && *w == what
            )),
            "{:?}",
            c.damage
        );
    }
}
