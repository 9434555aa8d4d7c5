//! Writing one run's interval log: its header, an interval at a time, and its end line.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};

use super::counters::counters_line;
use super::{END, LEGEND, file_name};
use crate::observe::{Histograms, Snapshot};

/// Writes one run's interval log.
pub struct IntervalLogWriter {
    file: File,
    path: PathBuf,
    started: Instant,
    /// End of the last interval written, from the start.
    last: Duration,
    serializer: V2DeflateSerializer,
    buf: Vec<u8>,
}

impl IntervalLogWriter {
    /// Opens (appending) the log `dir/file_name(first_segment_id)` and writes the header.
    pub fn create(
        dir: &Path,
        first_segment_id: u64,
        recording_id: &str,
    ) -> io::Result<IntervalLogWriter> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(file_name(first_segment_id));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let now = SystemTime::now();
        let mut w = IntervalLogWriter {
            file,
            path,
            started: Instant::now(),
            last: Duration::ZERO,
            serializer: V2DeflateSerializer::new(),
            buf: Vec::new(),
        };
        IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "framerec interval log: recording {recording_id}, first segment {first_segment_id}; values in nanoseconds except frames-per-write (frames)"
            ))
            .with_start_time(now)
            .with_base_time(now)
            .begin_log_with(&mut w.buf, &mut w.serializer)?;
        w.buf.extend_from_slice(LEGEND.as_bytes());
        w.flush_buf()?;
        // The header and the file's name survive a power cut from here on.
        w.file.sync_data()?;
        File::open(dir)?.sync_all()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second handle on the log for making it durable from another thread (`fdatasync` can
    /// take as long as the disk wants; whoever writes intervals should not wait for it).
    pub fn sync_handle(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the interval from the last one's end to now: every histogram in `h`, then the
    /// counters of `s` (per stream too when it has several).
    pub fn write_interval(&mut self, h: &Histograms, s: &Snapshot) -> io::Result<()> {
        let now = self.started.elapsed();
        let (start, length) = (self.last, now.saturating_sub(self.last));
        {
            let mut log = IntervalLogWriterBuilder::new()
                .begin_log_with(&mut self.buf, &mut self.serializer)?;
            for (tag, hist) in h.tagged() {
                log.write_histogram(hist, start, length, Tag::new(tag))
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        let line = counters_line(now.as_secs_f64(), s);
        self.buf.extend_from_slice(line.as_bytes());
        self.last = now;
        self.flush_buf()
    }

    /// Writes the last interval and the end line, and makes the log durable.
    pub fn finish(mut self, h: &Histograms, s: &Snapshot, reason: &str) -> io::Result<PathBuf> {
        self.write_interval(h, s)?;
        let reason: String = reason
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        self.buf
            .extend_from_slice(format!("{END}reason={reason}\n").as_bytes());
        self.flush_buf()?;
        self.file.sync_data()?;
        Ok(self.path)
    }
}
