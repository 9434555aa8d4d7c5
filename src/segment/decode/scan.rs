//! The scan itself: a segment read front to back a record at a time, damage noted and
//! skipped.

use std::io;

use bytes::BytesMut;

use super::chunk::{check_message_index, scan_chunk, take_message};
use super::*;
use crate::segment::source::hash_range;

/// Bytes of a chunk record before its records: prefix, times, sizes, CRC, compression, length.
pub(crate) const CHUNK_FIXED: usize = RECORD_PREFIX + 8 + 8 + 8 + 4 + 4 + 8;

/// Attachment records (other writers'; framerec writes none), in the data section, and their
/// index records in the summary.
pub(crate) const OP_ATTACHMENT: u8 = 0x09;
pub(crate) const OP_ATTACHMENT_INDEX: u8 = 0x0A;

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
    let mut scan = Scan::new(src);
    if !scan.starts_with_magic()? {
        scan.out.damage.push(DecodeError::BadMagic);
        return Ok(scan.out);
    }
    // One buffer for the bodies of every record parsed, reused: the scan's largest allocation.
    let mut body_buf = BytesMut::new();
    let mut at = MAGIC.len() as u64;
    scan.out.data_end = at;
    scan.out.head_end = at;
    loop {
        match scan.step(at, head_only, visit, &mut body_buf)? {
            Step::Read(next) => {
                at = next;
                if !scan.in_summary {
                    scan.out.data_end = at;
                }
            }
            Step::Resynced(next) => at = next,
            Step::Stop => break,
        }
    }
    Ok(scan.finish())
}

/// Where a scan goes after the record at an offset.
enum Step {
    /// The record was read; the next starts here.
    Read(u64),
    /// The record was damaged and skipped; the next intact chunk starts here.
    Resynced(u64),
    /// Nothing more to read: the footer, the end of the file, or the end of the head.
    Stop,
}

/// A scan under way: what it found so far, where it is (in the head, in the summary), and
/// the small buffer and the resync it reuses.
struct Scan<'s, S: Source + ?Sized> {
    src: &'s S,
    len: u64,
    out: SegmentContents,
    summary: SummaryInfo,
    small: BytesMut,
    resync: Resync<'s, S>,
    in_head: bool,
    in_summary: bool,
    /// The messages of the last chunk read, which the message index records after it name.
    chunk_index: Vec<(u16, u64, u64)>,
    /// The footer says there is no summary.
    no_summary: bool,
}

impl<'s, S: Source + ?Sized> Scan<'s, S> {
    fn new(src: &'s S) -> Self {
        Scan {
            src,
            len: src.len(),
            out: SegmentContents::default(),
            summary: SummaryInfo::default(),
            small: BytesMut::new(),
            resync: Resync::new(src),
            in_head: true,
            in_summary: false,
            chunk_index: Vec::new(),
            no_summary: false,
        }
    }

    fn starts_with_magic(&mut self) -> io::Result<bool> {
        let n = MAGIC.len() as u64;
        Ok(self.len >= n && self.src.read(0..n, &mut self.small)? == MAGIC)
    }

    fn finish(mut self) -> SegmentContents {
        // A footer whose summary_start is 0 says the file has no summary (a recovered foreign
        // file, a writer that keeps none): there is nothing to compare.
        if self.in_summary && !self.no_summary {
            self.out.summary = Some(self.summary);
        }
        self.out
    }

    /// Reads the record at `at` (its body into `body_buf` if it is one the scan parses) and
    /// takes in what it holds.
    fn step(
        &mut self,
        at: u64,
        head_only: bool,
        visit: &mut dyn Visit,
        body_buf: &mut BytesMut,
    ) -> io::Result<Step> {
        if at >= self.len {
            self.out.damage.push(DecodeError::Unfinished);
            return Ok(Step::Stop);
        }
        let (opcode, body_len) = match self.head_at(at)? {
            Ok(head) => head,
            Err(e) => return self.damaged(at, e),
        };
        let next = at + RECORD_PREFIX as u64 + body_len;
        // An attachment too large to read is skipped unread, not damage (it is opaque).
        let parsed =
            self.parses(opcode) && !(opcode == OP_ATTACHMENT && body_len > MAX_RECORD_BYTES);
        if parsed && body_len > MAX_RECORD_BYTES {
            let what = "record is larger than framerec reads (256 MiB)";
            return self.damaged(
                at,
                DecodeError::Malformed {
                    offset: at,
                    opcode,
                    what,
                },
            );
        }
        let src = self.src;
        let body = if parsed {
            src.read(at + RECORD_PREFIX as u64..next, body_buf)?
        } else {
            &[]
        };
        self.leaves_head(opcode, at);
        // Other writers define channels inside chunks: the head then reads on until some
        // channel is known.
        if head_only && !self.in_head && !self.out.channels.is_empty() {
            return Ok(Step::Stop);
        }
        let rec = Rec {
            opcode,
            offset: at,
            body,
        };
        self.take_in(&rec, next, visit)
    }

    /// The opcode and body length of the record at `at`, or what is wrong with it: it runs
    /// past the end, or (in the data section) it is not a record framerec writes.
    fn head_at(&mut self, at: u64) -> io::Result<Result<(u8, u64), DecodeError>> {
        Ok(match record_head(self.src, at, &mut self.small)? {
            Ok((opcode, _)) if !self.in_summary && is_garbage(opcode) => {
                // Zeroed or foreign bytes where a record should start.
                Err(DecodeError::Malformed {
                    offset: at,
                    opcode,
                    what: "not a record framerec writes in the data section",
                })
            }
            head => head,
        })
    }

    /// Whether the scan reads the body of a record of `opcode` (the others it skips unread).
    fn parses(&self, opcode: u8) -> bool {
        match opcode {
            OP_SCHEMA | OP_CHANNEL | OP_METADATA | OP_MESSAGE | OP_ATTACHMENT
            | OP_MESSAGE_INDEX => !self.in_summary,
            OP_HEADER | OP_DATA_END => !self.in_summary,
            OP_CHUNK | OP_CHUNK_INDEX | OP_STATISTICS | OP_FOOTER => true,
            _ => false,
        }
    }

    /// Notes `e` at `at`: in the data section the scan resyncs at the next intact chunk, in
    /// the summary it stops (nothing after a damaged summary record can be trusted).
    fn damaged(&mut self, at: u64, e: DecodeError) -> io::Result<Step> {
        self.out.damage.push(e);
        if self.in_summary {
            return Ok(Step::Stop);
        }
        self.resync_after(at)
    }

    /// Skips damage at `at`: notes the skipped range and goes on at the next intact chunk, or
    /// stops (the rest of the file is unreadable; the segment is unfinished).
    fn resync_after(&mut self, at: u64) -> io::Result<Step> {
        Ok(match self.resync.next(at + 1)? {
            Some(next) => {
                self.out.skip(at..next);
                Step::Resynced(next)
            }
            None => {
                self.out.skip(at..self.len);
                self.out.damage.push(DecodeError::Unfinished);
                Step::Stop
            }
        })
    }

    /// True at the first record after the head (header, schemas, channels, metadata), whose
    /// offset is then where the head ends.
    fn leaves_head(&mut self, opcode: u8, at: u64) -> bool {
        let head = matches!(
            opcode,
            OP_HEADER | OP_SCHEMA | OP_CHANNEL | OP_METADATA | OP_PADDING
        );
        if !self.in_head || head {
            return false;
        }
        self.in_head = false;
        self.out.head_end = at;
        true
    }

    /// Takes in what the record `rec` holds; `next` is where the record after it starts.
    /// A data section record outside chunks that is intact is handed to `visit`.
    fn take_in(&mut self, rec: &Rec<'_>, next: u64, visit: &mut dyn Visit) -> io::Result<Step> {
        if self.in_summary {
            return self.take_in_summary(rec, next);
        }
        let intact = match rec.opcode {
            OP_HEADER if rec.offset == MAGIC.len() as u64 => self.header(rec),
            OP_SCHEMA => schema(rec.body).map(|(id, name)| {
                self.out.schemas.insert(id, name);
            }),
            OP_CHANNEL => channel(rec.body).map(|record| self.out.channel_record(record)),
            OP_METADATA => self.metadata(rec, next),
            OP_MESSAGE => {
                // Outside chunks: an unchunked file's messages.
                let offset = rec.offset as usize;
                if let Err(e) = take_message(rec, rec.body, offset, &mut self.out, visit) {
                    self.out.damage.push(e);
                    return Ok(Step::Read(next));
                }
                Ok(())
            }
            OP_ATTACHMENT => attachment(rec.body),
            OP_CHUNK => {
                match scan_chunk(rec, &mut self.out, visit) {
                    Ok(index) => self.chunk_index = index,
                    Err(e) => {
                        // Its length field may be damaged too: resync rather than trust it.
                        self.out.damage.push(e);
                        self.chunk_index.clear();
                        return self.resync_after(rec.offset);
                    }
                }
                return Ok(Step::Read(next));
            }
            OP_MESSAGE_INDEX => {
                if let Err(w) = check_message_index(rec.body, &self.chunk_index) {
                    self.out.damage.push(malformed(rec, w));
                }
                return Ok(Step::Read(next));
            }
            OP_DATA_END => {
                self.in_summary = true;
                self.data_end(rec)?;
                return Ok(Step::Read(next));
            }
            OP_FOOTER => return self.take_in_summary(rec, next),
            _ => return Ok(Step::Read(next)), // indexes, padding: skipped unread
        };
        match intact {
            Ok(()) if rec.opcode == OP_HEADER => {}
            Ok(()) => visit.record(rec.offset, rec.opcode, rec.body),
            Err(w) => self.out.damage.push(malformed(rec, w)),
        }
        Ok(Step::Read(next))
    }

    /// Takes in a summary section record (and the footer, wherever it is).
    fn take_in_summary(&mut self, rec: &Rec<'_>, next: u64) -> io::Result<Step> {
        match rec.opcode {
            OP_CHUNK_INDEX => match chunk_index(rec.body) {
                Ok((offset, length)) => self.summary.chunk_indexes.add(offset, length),
                Err(w) => self.out.damage.push(malformed(rec, w)),
            },
            OP_STATISTICS => {
                if let Err(w) = statistics(rec.body, &mut self.summary) {
                    self.out.damage.push(malformed(rec, w));
                }
            }
            OP_FOOTER => {
                self.footer(rec, next)?;
                return Ok(Step::Stop);
            }
            _ => {} // schemas, channels, indexes, offsets: skipped unread
        }
        Ok(Step::Read(next))
    }

    /// The header record: its profile and library.
    fn header(&mut self, rec: &Rec<'_>) -> R<()> {
        let mut c = Cur::new(rec.body);
        let (profile, library) = (c.str()?, c.str()?);
        self.out.profile = profile.chars().take(64).collect();
        self.out.library = library.chars().take(64).collect();
        Ok(())
    }

    /// The data end record: its data section CRC (when nonzero: framerec writes none) over
    /// every byte before it. One more pass over the data section, sequential.
    fn data_end(&mut self, rec: &Rec<'_>) -> io::Result<()> {
        let saved = match Cur::new(rec.body).u32() {
            Ok(v) => v,
            Err(w) => {
                self.out.damage.push(malformed(rec, w));
                return Ok(());
            }
        };
        if saved == 0 {
            return Ok(());
        }
        let calculated = hash_range(self.src, 0..rec.offset)?;
        if calculated != saved {
            self.out.damage.push(DecodeError::BadDataCrc {
                offset: rec.offset,
                saved,
                calculated,
            });
        }
        Ok(())
    }

    /// A metadata record: framerec's is kept, others are only checked.
    fn metadata(&mut self, rec: &Rec<'_>, next: u64) -> R<()> {
        let mut c = Cur::new(rec.body);
        let (name, map) = c.str().and_then(|name| Ok((name, string_map(&mut c)?)))?;
        if name == METADATA_NAME {
            self.out.metadata = map;
            self.out.metadata_record = Some((rec.offset, next - rec.offset));
        }
        Ok(())
    }

    /// The footer: the magic must end the file right after it, and the summary's CRC (when
    /// the footer has one) must match.
    fn footer(&mut self, rec: &Rec<'_>, next: u64) -> io::Result<()> {
        let mut c = Cur::new(rec.body);
        let fields = (|| -> R<(u64, u32)> {
            let summary_start = c.u64()?;
            c.u64()?;
            Ok((summary_start, c.u32()?))
        })();
        let (summary_start, saved) = match fields {
            Ok(f) => f,
            Err(w) => {
                self.out.damage.push(malformed(rec, w));
                return Ok(());
            }
        };
        self.no_summary = summary_start == 0;
        let tail_ok = self.len == next + MAGIC.len() as u64
            && self.src.read(next..self.len, &mut self.small)? == MAGIC;
        if !tail_ok {
            let what = "footer is not followed by the magic at end of file";
            self.out.damage.push(malformed(rec, what));
        } else if summary_start != 0 && saved != 0 {
            self.check_summary_crc(rec, summary_start, saved)?;
        }
        self.out.finalized = tail_ok;
        Ok(())
    }

    /// The CRC of the summary section, from `summary_start` through the footer's fields before
    /// its CRC, against the one the footer `rec` saved.
    fn check_summary_crc(
        &mut self,
        rec: &Rec<'_>,
        summary_start: u64,
        saved: u32,
    ) -> io::Result<()> {
        let to = rec.offset + RECORD_PREFIX as u64 + 16;
        if summary_start > to {
            let what = "summary_start is past the footer";
            self.out.damage.push(malformed(rec, what));
            return Ok(());
        }
        let calculated = hash_range(self.src, summary_start..to)?;
        if calculated != saved {
            self.out.damage.push(DecodeError::BadSummaryCrc {
                offset: rec.offset,
                saved,
                calculated,
            });
        }
        Ok(())
    }
}

/// Damage `what` in the record `rec`.
pub(super) fn malformed(rec: &Rec<'_>, what: &'static str) -> DecodeError {
    DecodeError::Malformed {
        offset: rec.offset,
        opcode: rec.opcode,
        what,
    }
}

/// The offset and length of the chunk a chunk index record names.
fn chunk_index(body: &[u8]) -> R<(u64, u64)> {
    let mut c = Cur::new(body);
    c.u64()?; // message start time
    c.u64()?; // message end time
    Ok((c.u64()?, c.u64()?))
}

/// Reads a statistics record into `summary`: as far as it parses, what it has read is kept.
fn statistics(body: &[u8], summary: &mut SummaryInfo) -> R<()> {
    let mut c = Cur::new(body);
    summary.message_count = Some(c.u64()?);
    c.u16()?; // schema count
    c.u32()?; // channel count
    c.u32()?; // attachment count
    c.u32()?; // metadata count
    summary.chunk_count = Some(c.u32()?);
    c.u64()?; // message start time
    c.u64()?; // message end time
    let map = c.bytes32()?;
    let mut m = Cur::new(map);
    while m.pos < map.len() {
        let id = m.u16()?;
        summary.channel_message_counts.insert(id, m.u64()?);
    }
    Ok(())
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
            | OP_MESSAGE
            | OP_MESSAGE_INDEX
            | OP_ATTACHMENT
            | OP_ATTACHMENT_INDEX
            | OP_DATA_END
            | OP_PADDING
            | OP_FOOTER
            | OP_CHUNK_INDEX
            | OP_STATISTICS
            | OP_METADATA_INDEX
            | OP_SUMMARY_OFFSET
    )
}
