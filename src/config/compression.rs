//! `[compression]`: MCAP chunk compression, for every stream or per stream, on worker threads
//! off the writers' path (see [`crate::pipeline::compress`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::values::Int;
use super::{Config, Layout};
use crate::pipeline::compress::CompressConfig;
use crate::segment::Codec;

/// A chunk compression by its name in the configuration and on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CodecName {
    /// Chunks stay raw.
    #[default]
    None,
    /// zstd at `compression.level`.
    Zstd,
    /// LZ4 (frame format).
    Lz4,
}

/// `[compression]` as the file says it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub(super) struct CompressionSection {
    /// Every stream's codec unless `streams` names it. Default `none`.
    codec: CodecName,
    /// zstd level. Default 1, range 1-22.
    level: Int<1, 22>,
    /// Per stream, by name: its codec, over `codec`.
    streams: BTreeMap<String, CodecName>,
    /// Worker threads; 0 = one less than the CPUs (at least 1). Default 0, range 0-64.
    threads: Int<0, 64>,
    /// Keep a chunk compressed only when it saves this many percent. Default 2, range 0-99.
    min_saving_percent: Int<0, 99>,
    /// Queue fill (percent of queue.max-frames) from which batches are written raw. Default
    /// 50, range 1-100.
    high_water_percent: Int<1, 100>,
}

impl Default for CompressionSection {
    fn default() -> Self {
        let d = Compression::default();
        CompressionSection {
            codec: d.codec,
            level: Int(d.level as i64),
            streams: d.streams,
            threads: Int(d.threads as i64),
            min_saving_percent: Int(d.min_saving_percent as i64),
            high_water_percent: Int(d.high_water_percent as i64),
        }
    }
}

impl CompressionSection {
    pub(super) fn into_compression(self) -> Compression {
        Compression {
            codec: self.codec,
            level: self.level.0 as i32,
            streams: self.streams,
            threads: self.threads.0 as usize,
            min_saving_percent: self.min_saving_percent.0 as u8,
            high_water_percent: self.high_water_percent.0 as u8,
        }
    }
}

/// Chunk compression settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    pub codec: CodecName,
    pub level: i32,
    pub streams: BTreeMap<String, CodecName>,
    /// 0 = one less than the CPUs, at least 1.
    pub threads: usize,
    pub min_saving_percent: u8,
    pub high_water_percent: u8,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            codec: CodecName::None,
            level: 1,
            streams: BTreeMap::new(),
            threads: 0,
            min_saving_percent: 2,
            high_water_percent: 50,
        }
    }
}

impl Compression {
    fn codec_of(&self, stream: &str) -> Option<Codec> {
        match self.streams.get(stream).copied().unwrap_or(self.codec) {
            CodecName::None => None,
            CodecName::Zstd => Some(Codec::Zstd { level: self.level }),
            CodecName::Lz4 => Some(Codec::Lz4),
        }
    }

    /// True when any stream is compressed.
    pub fn any(&self) -> bool {
        self.codec != CodecName::None || self.streams.values().any(|c| *c != CodecName::None)
    }

    /// The stage's settings for streams `names` (in stream-table order); `None` when none of
    /// them is compressed.
    pub fn for_streams(&self, names: &[String]) -> Option<CompressConfig> {
        let codecs: Vec<Option<Codec>> = names.iter().map(|n| self.codec_of(n)).collect();
        codecs.iter().any(Option::is_some).then(|| CompressConfig {
            codecs,
            threads: match self.threads {
                0 => std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1),
                n => n,
            },
            min_saving_percent: self.min_saving_percent,
            high_water_percent: self.high_water_percent,
        })
    }
}

/// Why `cfg`'s compression cannot be: a stream it names that the source does not record, or a
/// layout or I/O mode that cannot write compressed chunks.
pub fn compression_problem(cfg: &Config) -> Option<String> {
    let c = &cfg.compression;
    let names = cfg.source.stream_names();
    if let Some(n) = c.streams.keys().find(|n| !names.contains(n)) {
        return Some(format!(
            "compression.streams names {n:?}, which the source does not record (its streams: {})",
            names.join(", ")
        ));
    }
    if !c.any() {
        return None;
    }
    if cfg.layout == Layout::Fakenect {
        return Some(
            "compression with output.layout = \"fakenect\": that layout writes one PGM file per frame, not MCAP chunks"
                .into(),
        );
    }
    if cfg.writer.io_mode.is_direct() {
        return Some(
            "compression with writer.io-mode = \"direct\": a compressed chunk's length cannot be padded to O_DIRECT's alignment; use io-mode \"auto\" (which then writes buffered) or \"buffered\""
                .into(),
        );
    }
    None
}
