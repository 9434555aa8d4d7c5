//! Compressed chunks (zstd, lz4: what other writers use; framerec writes none): their records
//! decompressed by the `mcap` crate's sans-IO linear reader, into one buffer whose size the
//! chunk declares and that is checked against [`MAX_RECORD_BYTES`] before anything is
//! decompressed, so a lying `uncompressed_size` is damage, not an allocation.

use mcap::sans_io::{LinearReadEvent, LinearReader, LinearReaderOptions};

use super::*;

/// The records of the chunk record whose body is `body` (compression `compression`,
/// declared uncompressed size `uncompressed_size`), decompressed; `Err` says what is wrong.
/// The chunk's CRC is left to the caller (it covers the bytes returned).
pub(super) fn decompress_records(
    body: &[u8],
    compression: &str,
    uncompressed_size: u64,
) -> Result<Vec<u8>, &'static str> {
    if !matches!(compression, "zstd" | "lz4") {
        return Err("unsupported compression");
    }
    if uncompressed_size > MAX_RECORD_BYTES {
        return Err("uncompressed_size is larger than framerec reads (256 MiB)");
    }
    let limit = MAX_RECORD_BYTES as usize;
    let mut reader = LinearReader::new_with_options(
        LinearReaderOptions::default()
            .with_skip_start_magic(true)
            .with_skip_end_magic(true)
            .with_validate_chunk_crcs(false)
            .with_record_length_limit(limit),
    );
    // The linear reader reads records: give it the chunk's prefix, then its body.
    let mut prefix = [0u8; RECORD_PREFIX];
    prefix[0] = OP_CHUNK;
    prefix[1..].copy_from_slice(&(body.len() as u64).to_le_bytes());
    let mut input = [&prefix[..], body];
    // Grown as records come, not reserved: the size a chunk declares is not yet evidence.
    let mut out = Vec::new();
    while let Some(event) = reader.next_event() {
        match event.map_err(|_| "compressed records do not decompress into records")? {
            LinearReadEvent::ReadRequest(need) => {
                let n = feed(&mut input, reader.insert(need));
                reader.notify_read(n);
            }
            LinearReadEvent::Record { opcode, data } => {
                let len = RECORD_PREFIX + data.len();
                if out.len() + len > uncompressed_size as usize {
                    return Err("records are longer than uncompressed_size");
                }
                out.push(opcode);
                out.extend_from_slice(&(data.len() as u64).to_le_bytes());
                out.extend_from_slice(data);
            }
        }
    }
    if out.len() as u64 != uncompressed_size {
        return Err("records are shorter than uncompressed_size");
    }
    Ok(out)
}

/// Copies the next bytes of `input` (slices taken in order) into `dst`; returns how many.
fn feed(input: &mut [&[u8]; 2], dst: &mut [u8]) -> usize {
    let mut n = 0;
    for part in input.iter_mut() {
        let k = part.len().min(dst.len() - n);
        dst[n..n + k].copy_from_slice(&part[..k]);
        *part = &part[k..];
        n += k;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lying_uncompressed_size_is_refused_before_decompressing() {
        let e = decompress_records(b"whatever", "zstd", 1 << 40).unwrap_err();
        assert!(e.contains("uncompressed_size"), "{e}");
    }

    #[test]
    fn an_unknown_compression_is_refused() {
        assert!(decompress_records(b"", "brotli", 0).is_err());
    }

    #[test]
    fn garbage_is_damage_not_a_panic() {
        for compression in ["zstd", "lz4"] {
            assert!(decompress_records(&[0xff; 64], compression, 100).is_err());
        }
    }
}
