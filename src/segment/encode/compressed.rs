//! Compressed chunks: a batch's message records, placed as for a raw chunk, streamed through
//! zstd or LZ4 (frame format, as MCAP readers expect) into a chunk record of its own buffer,
//! its message indexes after it. Built on a compression worker, off the writer thread; the
//! bytes are position-independent (message indexes point into the uncompressed records), so
//! the writer only moves the index entry to the file offset it writes them at.

use std::io::Write;

use bytes::Bytes;

use super::chunk::{CHUNK_HEADER_LEN, chunk_header, message_indexes_len, place_records};
use super::*;
use crate::segment::ros2::Profile;

/// A chunk compression (MCAP's names: `zstd`, `lz4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// zstd at `level` (1-22; negative levels are faster still).
    Zstd { level: i32 },
    /// LZ4 frame format.
    Lz4,
}

impl Codec {
    /// The chunk record's `compression` field.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Zstd { .. } => "zstd",
            Codec::Lz4 => "lz4",
        }
    }
}

/// A compressed chunk, ready to write.
#[derive(Debug, Clone)]
pub struct CompressedChunk {
    /// The chunk record followed by its message indexes.
    pub bytes: Bytes,
    /// Its index entry as if written at file offset 0: see [`ChunkIndexEntry::moved_by`].
    pub entry: ChunkIndexEntry,
}

impl ChunkIndexEntry {
    /// The entry of the same chunk written `offset` bytes further into the file.
    pub fn moved_by(mut self, offset: u64) -> ChunkIndexEntry {
        self.chunk_start_offset += offset;
        for c in &mut self.channels {
            c.2 += offset;
        }
        self
    }
}

/// Compresses `frames` (in log-time order, at most [`MAX_FRAMES_PER_CHUNK`], not empty) into
/// one chunk with `codec`. `None` when the compressed records would not be at least
/// `min_saving` (a fraction, e.g. 0.02) smaller than the raw ones: such a chunk is better
/// written raw (foxglove/mcap#228), and the frames are left ready for [`encode_frames`].
pub fn compress_chunk(
    frames: &mut [Frame],
    streams: &[StreamInfo],
    profile: Profile,
    codec: Codec,
    min_saving: f64,
) -> Option<CompressedChunk> {
    let placed = place_records(frames, streams, profile, false);
    let spans = frames.iter().map(|f| &f.buf.region()[f.span.0..f.span.1]);
    let limit = (placed.len as f64 * (1.0 - min_saving)) as u64;
    let compressed = compress(spans, placed.len, codec)?;
    if compressed.len() as u64 > limit {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(
        CHUNK_HEADER_LEN + 4 + compressed.len() + message_indexes_len(placed.count, MAX_STREAMS),
    );
    chunk_header(
        &mut out,
        (placed.start_time, placed.end_time),
        placed.len,
        placed.crc,
        (codec.name(), compressed.len() as u64),
    );
    out.extend_from_slice(&compressed);
    let compressed_size = compressed.len() as u64;
    drop(compressed);
    let chunk_length = out.len() as u64;
    let mut channels = placed.channels();
    placed.put_message_indexes(&mut channels, chunk_length, |b| out.extend_from_slice(b));
    Some(CompressedChunk {
        entry: ChunkIndexEntry {
            start_time: placed.start_time,
            end_time: placed.end_time,
            chunk_start_offset: 0,
            chunk_length,
            message_index_length: out.len() as u64 - chunk_length,
            channels,
            uncompressed_size: placed.len,
            compression: codec.name(),
            compressed_size,
        },
        bytes: Bytes::from(out),
    })
}

/// `parts` (`len` bytes in all) through `codec`; `None` if the encoder fails (it writes to
/// memory, so only on a bug), which leaves the chunk raw.
fn compress<'a>(parts: impl Iterator<Item = &'a [u8]>, len: u64, codec: Codec) -> Option<Vec<u8>> {
    let out = Vec::with_capacity(len as usize / 2);
    let res = match codec {
        Codec::Zstd { level } => (|| {
            let mut z = zstd::stream::Encoder::new(out, level)?;
            z.set_pledged_src_size(Some(len))?;
            z.include_contentsize(true)?;
            for p in parts {
                z.write_all(p)?;
            }
            z.finish()
        })(),
        Codec::Lz4 => (|| {
            let mut info = lz4_flex::frame::FrameInfo::new();
            info.content_size = Some(len);
            let mut z = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            for p in parts {
                z.write_all(p)?;
            }
            z.finish().map_err(std::io::Error::other)
        })(),
    };
    match res {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, codec = codec.name(), "cannot compress a chunk; writing it raw");
            None
        }
    }
}
