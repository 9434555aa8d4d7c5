//! The scan itself: a segment read front to back a record at a time, damage noted and
//! skipped.

use std::io;

use bytes::BytesMut;

use super::*;
use crate::segment::source::hash_range;

/// Bytes of a chunk record before its records: prefix, times, sizes, CRC, compression, length.
pub(crate) const CHUNK_FIXED: usize = RECORD_PREFIX + 8 + 8 + 8 + 4 + 4 + 8;

/// The largest record body a scan reads into memory (a chunk holds at most one write, and a
/// frame is at most 8192 x 8192 x 2 bytes). A record that claims more is damage, not an
/// allocation.
pub const MAX_RECORD_BYTES: u64 = 256 << 20;

/// What the chunk record `record` holds when it parses cleanly on its own in a segment with
/// the channels of `like` (what a rebuilt head defines: the original's); None when it does
/// not.
pub(crate) fn clean_chunk_contents(
    record: &[u8],
    like: &SegmentContents,
) -> Option<SegmentContents> {
    let rec = read_record(record, 0).ok()?;
    if rec.opcode != OP_CHUNK || RECORD_PREFIX + rec.body.len() != record.len() {
        return None;
    }
    let mut scratch = like.same_streams();
    let clean = scan_chunk(&rec, &mut scratch, &mut Messages(&mut |_, _| {})).is_ok()
        && scratch.damage.is_empty();
    clean.then_some(scratch)
}

/// True when any intact chunk is left anywhere in `bytes`.
pub fn has_intact_chunk(bytes: &[u8]) -> bool {
    source_has_intact_chunk(bytes).unwrap_or(false)
}

/// True when any intact chunk is left anywhere in `src` (read a window at a time).
pub fn source_has_intact_chunk<S: Source + ?Sized>(src: &S) -> io::Result<bool> {
    Ok(Resync::new(src).next(0)?.is_some())
}

/// Scans a whole segment held in memory. Damage in the data section (a torn or zeroed record, a
/// chunk whose CRC fails) is noted and skipped: the scan resyncs at the next intact chunk.
pub fn parse_segment(bytes: &[u8]) -> SegmentContents {
    // Reads from a slice never fail: every range is checked against its length first.
    parse_source(bytes, &mut |_, _| {}).unwrap_or_default()
}

/// Every chunk a scan of `bytes` meets, in file order (for tests and tools that hold the
/// segment in memory anyway).
pub fn segment_chunks(bytes: &[u8]) -> Vec<ChunkInfo> {
    struct Chunks(Vec<ChunkInfo>);
    impl Visit for Chunks {
        fn chunk(&mut self, c: &ChunkInfo, _body: &[u8]) {
            self.0.push(c.clone());
        }
    }
    let mut v = Chunks(Vec::new());
    let _ = scan_source(bytes, &mut v);
    v.0
}

/// Every message other than a drop notice a scan of `bytes` meets, in file order.
pub fn segment_messages(bytes: &[u8]) -> Vec<MessageRef> {
    let mut out = Vec::new();
    let _ = parse_source(bytes, &mut |m, _| out.push(m.clone()));
    out
}

/// Scans a whole segment read from `src`, front to back, one record at a time: the body of a
/// record it parses (a chunk, a channel, a summary record) is read into one buffer that is
/// reused, and the bodies of the others are skipped unread, so memory is bounded by the
/// largest record ([`MAX_RECORD_BYTES`]) plus constant windows, whatever the size of the file.
/// `visit` sees each message other than a drop notice (as counted in
/// [`StreamContents::frames`]) with its data
/// while its chunk is in memory. Finds the same as [`parse_segment`] on the same bytes; an
/// `Err` is a failed read, never damage.
pub fn parse_source<S: Source + ?Sized>(
    src: &S,
    visit: &mut dyn FnMut(&MessageRef, &[u8]),
) -> io::Result<SegmentContents> {
    scan_source(src, &mut Messages(visit))
}

/// [`parse_source`] with a visitor that also sees every chunk as it is read (recover copies
/// the intact ones from there).
pub fn scan_source<S: Source + ?Sized>(
    src: &S,
    visit: &mut dyn Visit,
) -> io::Result<SegmentContents> {
    scan(src, visit, false)
}

/// Reads only the head of the segment in `src` (header, schemas, channels, metadata): its
/// streams and channels, no frame. What a tool needs to pick a stream before it scans.
pub fn scan_head<S: Source + ?Sized>(src: &S) -> io::Result<SegmentContents> {
    scan(src, &mut Messages(&mut |_, _| {}), true)
}

fn scan<S: Source + ?Sized>(
    src: &S,
    visit: &mut dyn Visit,
    head_only: bool,
) -> io::Result<SegmentContents> {
    let len = src.len();
    let mut out = SegmentContents::default();
    let mut body_buf = BytesMut::new();
    let mut small = BytesMut::new();
    if len < MAGIC.len() as u64 || src.read(0..MAGIC.len() as u64, &mut small)? != MAGIC {
        out.damage.push(DecodeError::BadMagic);
        return Ok(out);
    }
    let mut at = MAGIC.len() as u64;
    let mut in_head = true;
    let mut in_summary = false;
    let mut summary = SummaryInfo::default();
    out.data_end = at;
    out.head_end = at;
    let mut scan = Resync::new(src);
    loop {
        if at >= len {
            out.damage.push(DecodeError::Unfinished);
            break;
        }
        let (opcode, body_len) = match record_head(src, at, &mut small)? {
            Ok((opcode, _)) if !in_summary && is_garbage(opcode) => {
                // Zeroed or foreign bytes where a record should start.
                out.damage.push(DecodeError::Malformed {
                    offset: at,
                    opcode,
                    what: "not a record framerec writes in the data section",
                });
                match skip_damage(&mut scan, at, &mut out)? {
                    Some(next) => {
                        at = next;
                        continue;
                    }
                    None => break,
                }
            }
            Ok(head) => head,
            Err(e) => {
                out.damage.push(e);
                if in_summary {
                    break;
                }
                match skip_damage(&mut scan, at, &mut out)? {
                    Some(next) => {
                        at = next;
                        continue;
                    }
                    None => break,
                }
            }
        };
        let next = at + RECORD_PREFIX as u64 + body_len;
        let parsed = match opcode {
            OP_SCHEMA | OP_CHANNEL | OP_METADATA => !in_summary,
            OP_CHUNK | OP_CHUNK_INDEX | OP_STATISTICS | OP_FOOTER => true,
            _ => false,
        };
        if parsed && body_len > MAX_RECORD_BYTES {
            out.damage.push(DecodeError::Malformed {
                offset: at,
                opcode,
                what: "record is larger than framerec reads (256 MiB)",
            });
            if in_summary {
                break;
            }
            match skip_damage(&mut scan, at, &mut out)? {
                Some(next) => {
                    at = next;
                    continue;
                }
                None => break,
            }
        }
        let body = if parsed {
            src.read(at + RECORD_PREFIX as u64..next, &mut body_buf)?
        } else {
            &[]
        };
        let rec = Rec {
            opcode,
            offset: at,
            body,
        };
        let malformed = |what| DecodeError::Malformed {
            offset: rec.offset,
            opcode: rec.opcode,
            what,
        };
        if in_head
            && !matches!(
                rec.opcode,
                OP_HEADER | OP_SCHEMA | OP_CHANNEL | OP_METADATA | OP_PADDING
            )
        {
            in_head = false;
            out.head_end = at;
            if head_only {
                break;
            }
        }
        match rec.opcode {
            OP_SCHEMA if !in_summary => match schema(rec.body) {
                Ok((id, name)) => {
                    out.schemas.insert(id, name);
                }
                Err(w) => out.damage.push(malformed(w)),
            },
            OP_CHANNEL if !in_summary => match channel(rec.body) {
                Ok(record) => out.channel_record(record),
                Err(w) => out.damage.push(malformed(w)),
            },
            OP_METADATA if !in_summary => {
                let mut c = Cur::new(rec.body);
                match c.str().and_then(|name| Ok((name, string_map(&mut c)?))) {
                    Ok((METADATA_NAME, map)) => {
                        out.metadata = map;
                        out.metadata_record = Some((rec.offset, next - at));
                    }
                    Ok(_) => {}
                    Err(w) => out.damage.push(malformed(w)),
                }
            }
            OP_CHUNK => {
                if let Err(e) = scan_chunk(&rec, &mut out, visit) {
                    // Its length field may be damaged too: resync rather than trust it.
                    out.damage.push(e);
                    match skip_damage(&mut scan, at, &mut out)? {
                        Some(next) => {
                            at = next;
                            continue;
                        }
                        None => break,
                    }
                }
            }
            OP_DATA_END => {
                in_summary = true;
            }
            OP_CHUNK_INDEX => {
                let mut c = Cur::new(rec.body);
                let r = (|| -> R<(u64, u64, u64, u64)> {
                    c.u64()?;
                    c.u64()?;
                    Ok((c.u64()?, c.u64()?, 0, 0))
                })();
                match r {
                    Ok((offset, length, ..)) => summary.chunk_indexes.add(offset, length),
                    Err(w) => out.damage.push(malformed(w)),
                }
            }
            OP_STATISTICS => {
                let mut c = Cur::new(rec.body);
                let r = (|| -> R<()> {
                    summary.message_count = Some(c.u64()?);
                    c.u16()?;
                    c.u32()?;
                    c.u32()?;
                    c.u32()?;
                    summary.chunk_count = Some(c.u32()?);
                    c.u64()?;
                    c.u64()?;
                    let map = c.bytes32()?;
                    let mut m = Cur::new(map);
                    while m.pos < map.len() {
                        let id = m.u16()?;
                        summary.channel_message_counts.insert(id, m.u64()?);
                    }
                    Ok(())
                })();
                if let Err(w) = r {
                    out.damage.push(malformed(w));
                }
            }
            OP_FOOTER => {
                let mut c = Cur::new(rec.body);
                let r = (|| -> R<(u64, u32)> {
                    let summary_start = c.u64()?;
                    c.u64()?;
                    Ok((summary_start, c.u32()?))
                })();
                match r {
                    Ok((summary_start, saved)) => {
                        let tail_ok = len == next + MAGIC.len() as u64
                            && src.read(next..len, &mut small)? == MAGIC;
                        if !tail_ok {
                            out.damage.push(malformed(
                                "footer is not followed by the magic at end of file",
                            ));
                        } else if summary_start != 0 && saved != 0 {
                            let from = summary_start;
                            let to = rec.offset + RECORD_PREFIX as u64 + 16;
                            if from <= to {
                                let calculated = hash_range(src, from..to)?;
                                if calculated != saved {
                                    out.damage.push(DecodeError::BadSummaryCrc {
                                        offset: rec.offset,
                                        saved,
                                        calculated,
                                    });
                                }
                            } else {
                                out.damage
                                    .push(malformed("summary_start is past the footer"));
                            }
                        }
                        out.finalized = tail_ok;
                    }
                    Err(w) => out.damage.push(malformed(w)),
                }
                break;
            }
            _ => {} // header, schemas, indexes, padding: skipped unread
        }
        at = next;
        if !in_summary {
            out.data_end = at;
        }
    }
    if in_summary {
        out.summary = Some(summary);
    }
    Ok(out)
}

/// The opcode and body length of the record at `at`; `Err` when its length runs past the end.
fn record_head<S: Source + ?Sized>(
    src: &S,
    at: u64,
    buf: &mut BytesMut,
) -> io::Result<Result<(u8, u64), DecodeError>> {
    let available = src.len() - at;
    let head = src.read(at..at + available.min(RECORD_PREFIX as u64), buf)?;
    let opcode = head[0];
    if available < RECORD_PREFIX as u64 {
        return Ok(Err(DecodeError::Truncated {
            offset: at,
            opcode,
            needed: RECORD_PREFIX as u64,
            available,
        }));
    }
    let len = u64::from_le_bytes(head[1..9].try_into().unwrap_or([0; 8]));
    let needed = len.saturating_add(RECORD_PREFIX as u64);
    if needed > available {
        return Ok(Err(DecodeError::Truncated {
            offset: at,
            opcode,
            needed,
            available,
        }));
    }
    Ok(Ok((opcode, len)))
}

/// Opcodes framerec never writes at the top level of a data section (0x00 is zeroed space).
fn is_garbage(opcode: u8) -> bool {
    !matches!(
        opcode,
        OP_HEADER
            | OP_SCHEMA
            | OP_CHANNEL
            | OP_METADATA
            | OP_CHUNK
            | OP_MESSAGE_INDEX
            | OP_DATA_END
            | OP_PADDING
            | OP_FOOTER
            | OP_CHUNK_INDEX
            | OP_STATISTICS
            | OP_METADATA_INDEX
            | OP_SUMMARY_OFFSET
    )
}

/// Skips damage at `at`: notes the skipped range and returns where the next intact chunk
/// starts, or `None` (the rest of the file is unreadable; the segment is unfinished).
fn skip_damage<S: Source + ?Sized>(
    scan: &mut Resync<'_, S>,
    at: u64,
    out: &mut SegmentContents,
) -> io::Result<Option<u64>> {
    Ok(match scan.next(at + 1)? {
        Some(next) => {
            out.skip(at..next);
            Some(next)
        }
        None => {
            out.skip(at..scan.src.len());
            out.damage.push(DecodeError::Unfinished);
            None
        }
    })
}

fn scan_chunk(
    rec: &Rec<'_>,
    out: &mut SegmentContents,
    visit: &mut dyn Visit,
) -> Result<(), DecodeError> {
    let malformed = |what| DecodeError::Malformed {
        offset: rec.offset,
        opcode: OP_CHUNK,
        what,
    };
    let mut c = Cur::new(rec.body);
    let start_time = c.u64().map_err(malformed)?;
    let end_time = c.u64().map_err(malformed)?;
    let _uncompressed_size = c.u64().map_err(malformed)?;
    let saved = c.u32().map_err(malformed)?;
    let compression = c.str().map_err(malformed)?;
    if !compression.is_empty() {
        return Err(DecodeError::UnsupportedCompression {
            offset: rec.offset,
            compression: compression.to_string(),
        });
    }
    let records_len = c.u64().map_err(malformed)?;
    let records_at = RECORD_PREFIX + c.pos;
    let records = c.rest();
    if records.len() as u64 != records_len {
        return Err(malformed("records length disagrees with the record length"));
    }
    let calculated = crc32fast::hash(records);
    let crc_ok = saved == 0 || saved == calculated;
    let mut info = ChunkInfo {
        offset: rec.offset,
        length: (RECORD_PREFIX + rec.body.len()) as u64,
        start_time,
        end_time,
        crc_ok,
        messages: 0,
        sequences: Vec::new(),
        index: Vec::new(),
    };
    if !crc_ok {
        out.chunks.add(info.offset, info.length);
        out.bad_crc_chunks += 1;
        info.sequences = out.damaged_chunk(info.offset, &claimed_sequences(records));
        visit.chunk(&info, rec.body);
        return Err(DecodeError::BadChunkCrc {
            offset: rec.offset,
            saved,
            calculated,
        });
    }
    let base = rec.offset as usize + records_at;
    let mut at = 0;
    while at < records.len() {
        let inner = read_record(records, at)
            .map_err(|_| malformed("a record inside runs past the chunk"))?;
        let next = at + RECORD_PREFIX + inner.body.len();
        if inner.opcode == OP_MESSAGE {
            let mut m = Cur::new(inner.body);
            let channel = m.u16().map_err(malformed)?;
            let sequence = m.u32().map_err(malformed)?;
            let log_time = m.u64().map_err(malformed)?;
            let publish_time = m.u64().map_err(malformed)?;
            let data_at = base + at + RECORD_PREFIX + m.pos;
            let data = m.rest();
            if out.is_drop_channel(channel) {
                let Some((mut d, topic)) = parse_drop(data) else {
                    return Err(malformed("drop notice is not valid JSON"));
                };
                d.log_time = log_time;
                out.notice_message(channel, (base + at) as u64, d, topic);
            } else {
                let Some(stream) = out.stream_index(channel) else {
                    return Err(DecodeError::UnknownChannel {
                        offset: (base + at) as u64,
                        channel,
                    });
                };
                info.sequences.push(sequence);
                let m = MessageRef {
                    channel,
                    stream,
                    kind: out.streams[stream].kind,
                    sequence,
                    log_time,
                    publish_time,
                    data: data_at..data_at + data.len(),
                    chunk_offset: rec.offset,
                };
                visit.message(&m, data);
                out.message(stream, &m);
            }
            info.messages += 1;
            info.index.push((channel, log_time, at as u64));
        }
        at = next;
    }
    out.chunks.add(info.offset, info.length);
    visit.chunk(&info, rec.body);
    Ok(())
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
