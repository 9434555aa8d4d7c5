//! The `fakenect:DIR` source: a pure-Rust reader of the dumps libfreenect's `fakenect-record`
//! writes (and `framerec export --format fakenect`), replayed at the recorded pace or unpaced.
//!
//! # The dump format
//! `DIR/INDEX.txt` lists one file per line, in capture order, LF-terminated:
//!
//! ```text
//! d-1795470472.528635-0.pgm           depth: d-<host time, s>-<device timestamp>.pgm
//! r-1795470472.530000-1000.ppm        video (RGB)
//! a-1795470472.531000-1200.dump       accelerometer state
//! ```
//!
//! A depth file is a one-line header `P5 <width> <height> 65535\n` followed by exactly
//! `width * height * 2` bytes of little-endian samples as the device delivered them. The device
//! timestamp is the Kinect's 32-bit 60 MHz counter; it is unwrapped to 64 bits here.
//! Video and accelerometer lines are validated and skipped (only depth is recorded).
//!
//! Everything is validated: a bad line, a CRLF, a blank line, a line longer than a file name can
//! be, a missing or truncated file is an error naming the file and line; nothing is read past a
//! file's end, no line is held past [`MAX_INDEX_LINE`] bytes, and an error quotes at most
//! [`MAX_QUOTED`] characters of what it read.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::frame::{FrameBuf, FrameFormat, StreamInfo, host_mono_ns};

use super::{Capture, DeviceClock, Source, SourceError};

/// Settings of the fakenect replay source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakenectConfig {
    pub dir: PathBuf,
    /// Replay at the recorded pace (true) or as fast as the pipeline takes frames.
    pub paced: bool,
    /// Start again at the first frame after the last.
    pub looped: bool,
    pub topic: String,
    pub frame_id: String,
    /// The streams to replay, in stream-table order (depth from `d-*`, colour from `r-*`,
    /// accelerometer from `a-*` lines of the index).
    pub streams: Vec<super::KinectStream>,
}

/// One depth line of `INDEX.txt`.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    line: usize,
    file: String,
    time_s: f64,
    timestamp: u32,
}

/// The longest `INDEX.txt` line: a file name, at most `NAME_MAX` bytes on Linux.
pub const MAX_INDEX_LINE: usize = 255;
/// The most characters of input an error message quotes.
pub const MAX_QUOTED: usize = 64;

/// `s` quoted for an error message, cut at [`MAX_QUOTED`] characters.
pub(crate) fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
    }
}

/// Why a dump cannot be replayed.
fn bad(dir: &Path, what: impl std::fmt::Display) -> SourceError {
    SourceError::Dump(format!("{}: {what}", dir.display()))
}

/// Parses `INDEX.txt`: the depth entries, in order.
fn read_index(dir: &Path) -> Result<Vec<Entry>, SourceError> {
    let path = dir.join("INDEX.txt");
    let file = File::open(&path).map_err(|e| bad(dir, format!("cannot open INDEX.txt: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut entries = Vec::new();
    let mut raw = Vec::new();
    let mut n = 0;
    loop {
        raw.clear();
        // At most one byte past the longest line, so a file with no newline (or /dev/zero)
        // costs no more than that.
        let read = (&mut reader)
            .take(MAX_INDEX_LINE as u64 + 1)
            .read_until(b'\n', &mut raw)
            .map_err(|e| bad(dir, format!("reading INDEX.txt: {e}")))?;
        if read == 0 {
            break;
        }
        n += 1;
        let at = |what: String| bad(dir, format!("INDEX.txt:{n}: {what}"));
        if raw.last() == Some(&b'\n') {
            raw.pop();
        } else if raw.len() > MAX_INDEX_LINE {
            return Err(at(format!(
                "a line longer than {MAX_INDEX_LINE} bytes, the longest a file name can be"
            )));
        }
        if raw.last() == Some(&b'\r') {
            return Err(at(
                "CRLF line ending (libfreenect reads LF-terminated lines only)".into(),
            ));
        }
        let line = std::str::from_utf8(&raw).map_err(|_| at("not UTF-8".into()))?;
        if line.trim().is_empty() {
            return Err(at("blank line".into()));
        }
        let entry = parse_line(line).map_err(at)?;
        if entry.0 == 'd' {
            entries.push(Entry {
                line: n,
                file: line.to_string(),
                time_s: entry.1,
                timestamp: entry.2,
            });
        }
    }
    if entries.is_empty() {
        return Err(bad(dir, "INDEX.txt lists no depth frames (d-*.pgm)"));
    }
    Ok(entries)
}

/// The latest time an INDEX.txt entry may carry, in seconds since the epoch.
const MAX_TIME_S: f64 = 1e10;

/// `d-<time>-<timestamp>.pgm` (or `r-...ppm`, `a-...dump`) to (kind, time, timestamp).
fn parse_line(line: &str) -> Result<(char, f64, u32), String> {
    let quote = quoted(line);
    if line.contains('/') || line.contains('\\') || line.starts_with('.') {
        return Err(format!("{quote} is not a file name in the dump directory"));
    }
    let mut parts = line.splitn(3, '-');
    let kind = parts.next().unwrap_or_default();
    let (time, rest) = (parts.next(), parts.next());
    let (Some(time), Some(rest)) = (time, rest) else {
        return Err(format!(
            "{quote} is not <kind>-<time>-<timestamp>.<ext> (e.g. d-1795470472.528635-0.pgm)"
        ));
    };
    let (timestamp, ext) = rest
        .split_once('.')
        .ok_or_else(|| format!("{quote} has no file extension"))?;
    let kind = match (kind, ext) {
        ("d", "pgm") => 'd',
        ("r", "ppm") => 'r',
        ("a", "dump") => 'a',
        _ => {
            return Err(format!("{quote}: expected d-...pgm, r-...ppm or a-...dump"));
        }
    };
    let time: f64 = time
        .parse()
        .ok()
        // Seconds since the epoch, as libfreenect's recorder writes them: up to 1e10 (the year
        // 2286); beyond that a time is no clock's, and would overflow the pacing.
        .filter(|t: &f64| t.is_finite() && (0.0..=MAX_TIME_S).contains(t))
        .ok_or_else(|| {
            format!(
                "{quote}: the time {} is not a number of seconds",
                quoted(time)
            )
        })?;
    let timestamp: u32 = timestamp.parse().map_err(|_| {
        format!(
            "{quote}: the device timestamp {} is not a 32-bit unsigned number",
            quoted(timestamp)
        )
    })?;
    Ok((kind, time, timestamp))
}

/// Reads a depth file's header line: (width, height, header length).
fn read_header(file: &mut File, name: &str) -> Result<(u32, u32, usize), String> {
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < head.len() {
        let n = file
            .read(&mut head[got..])
            .map_err(|e| format!("{name}: {e}"))?;
        if n == 0 {
            break;
        }
        got += n;
        if head[..got].contains(&b'\n') {
            break;
        }
    }
    let end = head[..got]
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| format!("{name}: no `P5 <width> <height> 65535` header line"))?;
    let text = std::str::from_utf8(&head[..end]).map_err(|_| format!("{name}: bad header"))?;
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    let dims = |s: &str| s.parse::<u32>().ok().filter(|v| (1..=8192).contains(v));
    match fields.as_slice() {
        ["P5", w, h, "65535"] => match (dims(w), dims(h)) {
            (Some(w), Some(h)) => Ok((w, h, end + 1)),
            _ => Err(format!("{name}: bad size in header {text:?}")),
        },
        _ => Err(format!(
            "{name}: header {text:?} is not `P5 <width> <height> 65535`"
        )),
    }
}

pub struct FakenectSource {
    cfg: FakenectConfig,
    stream: StreamInfo,
    entries: Vec<Entry>,
    next: usize,
    clock: DeviceClock,
    /// Replay start: `Instant`, the same moment on the host monotonic clock, and the recorded
    /// time it corresponds to.
    start: Option<(Instant, u64, f64)>,
    /// Recorded seconds added per completed loop, so pacing continues across loops.
    loop_offset: f64,
}

impl FakenectSource {
    /// Opens the dump: reads and validates `INDEX.txt` and the first depth header.
    pub fn open(cfg: FakenectConfig) -> Result<FakenectSource, SourceError> {
        let entries = read_index(&cfg.dir)?;
        let first = &entries[0];
        let mut f = File::open(cfg.dir.join(&first.file)).map_err(|e| {
            bad(
                &cfg.dir,
                format!("INDEX.txt:{}: cannot open {}: {e}", first.line, first.file),
            )
        })?;
        let (width, height, _) = read_header(&mut f, &first.file)
            .map_err(|e| bad(&cfg.dir, format!("INDEX.txt:{}: {e}", first.line)))?;
        Ok(FakenectSource {
            stream: StreamInfo {
                name: "depth".into(),
                topic: cfg.topic.clone(),
                frame_id: cfg.frame_id.clone(),
                width,
                height,
                format: FrameFormat::Depth16,
            },
            cfg,
            entries,
            next: 0,
            clock: DeviceClock::default(),
            start: None,
            loop_offset: 0.0,
        })
    }

    /// The depth files `INDEX.txt` names, in order.
    pub fn depth_files(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.file.as_str())
    }

    /// Frames (depth entries) in one pass of the dump.
    pub fn frames(&self) -> usize {
        self.entries.len()
    }

    fn read_frame(&self, e: &Entry, buf: &mut FrameBuf) -> Result<(), SourceError> {
        let at = |what: String| bad(&self.cfg.dir, format!("INDEX.txt:{}: {what}", e.line));
        let path = self.cfg.dir.join(&e.file);
        let mut f =
            File::open(&path).map_err(|err| at(format!("cannot open {}: {err}", e.file)))?;
        let size = f
            .metadata()
            .map_err(|err| at(format!("{}: {err}", e.file)))?
            .len();
        let (w, h, header) = read_header(&mut f, &e.file).map_err(at)?;
        if (w, h) != (self.stream.width, self.stream.height) {
            return Err(at(format!(
                "{} is {w}x{h}; the dump started at {}x{}",
                e.file, self.stream.width, self.stream.height
            )));
        }
        let len = self.stream.frame_bytes();
        if size != (header + len) as u64 {
            return Err(at(format!(
                "{} holds {} bytes of depth after its header, expected {len} ({}x{}x2){}",
                e.file,
                size.saturating_sub(header as u64),
                w,
                h,
                if size < (header + len) as u64 {
                    ": truncated"
                } else {
                    ""
                }
            )));
        }
        let capacity = buf.capacity();
        let payload = buf
            .fill(len)
            .map_err(|_| SourceError::FrameTooLarge { len, capacity })?;
        // The header read may have taken payload bytes with it: read from the payload start.
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(header as u64))
            .and_then(|_| f.read_exact(payload))
            .map_err(|err| at(format!("reading {}: {err}", e.file)))
    }
}

impl Source for FakenectSource {
    fn streams(&self) -> &[StreamInfo] {
        std::slice::from_ref(&self.stream)
    }

    fn can_wait(&self) -> bool {
        true
    }

    fn next_frame(
        &mut self,
        buf: &mut FrameBuf,
        stop: &AtomicBool,
    ) -> Result<Option<Capture>, SourceError> {
        if self.next == self.entries.len() {
            if !self.cfg.looped {
                return Ok(None);
            }
            let (first, last) = (&self.entries[0], &self.entries[self.entries.len() - 1]);
            // One more frame period after the last frame, then the first again.
            let period = if self.entries.len() > 1 {
                (last.time_s - first.time_s) / (self.entries.len() - 1) as f64
            } else {
                1.0 / 30.0
            };
            self.loop_offset += last.time_s - first.time_s + period;
            self.next = 0;
        }
        let e = self.entries[self.next].clone();
        let t = e.time_s + self.loop_offset;
        let (start, start_mono, t0) = *self
            .start
            .get_or_insert_with(|| (Instant::now(), host_mono_ns(), t));
        // Times are bounded when INDEX.txt is read; looping adds at most their span per lap.
        let due = Duration::try_from_secs_f64((t - t0).max(0.0)).unwrap_or(Duration::MAX);
        if self.cfg.paced {
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let elapsed = start.elapsed();
                if elapsed >= due {
                    break;
                }
                std::thread::sleep((due - elapsed).min(Duration::from_millis(50)));
            }
        }
        self.read_frame(&e, buf)?;
        self.next += 1;
        Ok(Some(Capture {
            device_ns: self.clock.unwrap_ns(e.timestamp),
            host_mono_ns: self.cfg.paced.then(|| {
                start_mono.saturating_add(u64::try_from(due.as_nanos()).unwrap_or(u64::MAX))
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::KinectStream;

    fn cfg(dir: &Path) -> FakenectConfig {
        FakenectConfig {
            dir: dir.to_path_buf(),
            paced: false,
            looped: false,
            topic: "/camera/depth".into(),
            frame_id: "camera_depth".into(),
            streams: KinectStream::default_table(),
        }
    }

    fn dump(dir: &Path, frames: &[(u32, Vec<u8>)]) {
        let mut index = String::new();
        for (i, (ts, data)) in frames.iter().enumerate() {
            let name = format!("d-{}.{:06}-{ts}.pgm", 1000 + i, i);
            let mut bytes = b"P5 4 2 65535\n".to_vec();
            bytes.extend_from_slice(data);
            std::fs::write(dir.join(&name), bytes).unwrap();
            index.push_str(&name);
            index.push('\n');
            index.push_str(&format!("a-{}.{:06}-{ts}.dump\n", 1000 + i, i + 1));
        }
        std::fs::write(dir.join("INDEX.txt"), index).unwrap();
    }

    fn frame(i: u8) -> Vec<u8> {
        (0..16).map(|b| b ^ i).collect()
    }

    fn read_all(src: &mut FakenectSource) -> Result<Vec<(Vec<u8>, u64)>, SourceError> {
        let stop = AtomicBool::new(false);
        let mut out = Vec::new();
        let mut buf = FrameBuf::new(64);
        while let Some(c) = src.next_frame(&mut buf, &stop)? {
            out.push((buf.payload().to_vec(), c.device_ns));
        }
        Ok(out)
    }

    #[test]
    fn replays_every_depth_frame_and_unwraps_the_device_clock() {
        let tmp = tempfile::tempdir().unwrap();
        dump(
            tmp.path(),
            &[(u32::MAX - 59, frame(1)), (0, frame(2)), (60, frame(3))],
        );
        let mut src = FakenectSource::open(cfg(tmp.path())).unwrap();
        assert_eq!((src.streams()[0].width, src.streams()[0].height), (4, 2));
        let got = read_all(&mut src).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0, frame(2));
        // 60 ticks of the 60 MHz clock apart = 1 µs, across the 32-bit wrap.
        assert_eq!(got[1].1 - got[0].1, 1000);
        assert_eq!(got[2].1 - got[1].1, 1000);
    }

    #[test]
    fn a_looped_replay_continues_after_the_last_frame() {
        let tmp = tempfile::tempdir().unwrap();
        dump(tmp.path(), &[(0, frame(1)), (100, frame(2))]);
        let mut c = cfg(tmp.path());
        c.looped = true;
        let mut src = FakenectSource::open(c).unwrap();
        let stop = AtomicBool::new(false);
        let mut buf = FrameBuf::new(64);
        let mut last = None;
        for i in 0..5u8 {
            let cap = src.next_frame(&mut buf, &stop).unwrap().unwrap();
            assert_eq!(buf.payload(), frame(1 + i % 2).as_slice());
            assert!(
                last.is_none_or(|l| cap.device_ns > l),
                "device time moves on"
            );
            last = Some(cap.device_ns);
        }
    }

    /// Found by the fuzzer: a time no clock gives (1e300 s) made the paced replay panic
    /// converting it to a Duration; such a line is now refused when INDEX.txt is read.
    #[test]
    fn a_time_beyond_any_clock_is_refused_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["d-1.0-0.pgm", "d-1e300-5.pgm"] {
            let mut bytes = b"P5 4 2 65535\n".to_vec();
            bytes.extend_from_slice(&frame(1));
            std::fs::write(tmp.path().join(name), bytes).unwrap();
        }
        std::fs::write(tmp.path().join("INDEX.txt"), "d-1.0-0.pgm\nd-1e300-5.pgm\n").unwrap();
        let mut c = cfg(tmp.path());
        c.paced = true;
        let e = match FakenectSource::open(c).and_then(|mut s| read_all(&mut s)) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains("is not a number of seconds"), "{e}");
    }

    fn error_of(tmp: &Path) -> String {
        match FakenectSource::open(cfg(tmp)).and_then(|mut s| read_all(&mut s)) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn bad_dumps_are_errors_with_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        dump(tmp.path(), &[(0, frame(1)), (1, frame(2))]);
        let index = std::fs::read_to_string(tmp.path().join("INDEX.txt")).unwrap();
        let second = index.lines().nth(2).unwrap().to_string();

        std::fs::write(tmp.path().join("INDEX.txt"), index.replace('\n', "\r\n")).unwrap();
        assert!(
            error_of(tmp.path()).contains("INDEX.txt:1: CRLF"),
            "{}",
            error_of(tmp.path())
        );

        std::fs::write(tmp.path().join("INDEX.txt"), format!("\n{index}")).unwrap();
        assert!(error_of(tmp.path()).contains("INDEX.txt:1: blank line"));

        std::fs::write(
            tmp.path().join("INDEX.txt"),
            format!("{index}d-1.0-x.pgm\n"),
        )
        .unwrap();
        assert!(
            error_of(tmp.path()).contains("INDEX.txt:5: "),
            "{}",
            error_of(tmp.path())
        );

        std::fs::write(
            tmp.path().join("INDEX.txt"),
            format!("{index}../etc/passwd\n"),
        )
        .unwrap();
        assert!(error_of(tmp.path()).contains("not a file name"));

        std::fs::write(tmp.path().join("INDEX.txt"), &index).unwrap();
        let path = tmp.path().join(&second);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let e = error_of(tmp.path());
        assert!(e.contains("INDEX.txt:3") && e.contains("truncated"), "{e}");

        std::fs::remove_file(&path).unwrap();
        assert!(error_of(tmp.path()).contains("cannot open"));

        std::fs::write(&path, b"P6 4 2 255\n0123456789abcdef").unwrap();
        assert!(error_of(tmp.path()).contains("is not `P5"));

        std::fs::write(tmp.path().join("INDEX.txt"), "a-1.0-5.dump\n").unwrap();
        assert!(error_of(tmp.path()).contains("no depth frames"));
    }

    #[test]
    fn an_index_without_newlines_is_an_error_after_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        dump(tmp.path(), &[(0, frame(1))]);
        let index = tmp.path().join("INDEX.txt");
        std::fs::remove_file(&index).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &index).unwrap();
        let e = error_of(tmp.path());
        assert!(
            e.contains("INDEX.txt:1: a line longer than 255 bytes"),
            "{e}"
        );
        std::fs::remove_file(&index).unwrap();
        // A valid first line, then 64 MiB with no newline.
        let mut text = b"d-1000.000000-0.pgm\n".to_vec();
        text.resize(64 << 20, b'd');
        std::fs::write(&index, &text).unwrap();
        let e = error_of(tmp.path());
        assert!(
            e.contains("INDEX.txt:2: a line longer than 255 bytes"),
            "{e}"
        );
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn errors_quote_a_bounded_part_of_a_line() {
        let tmp = tempfile::tempdir().unwrap();
        dump(tmp.path(), &[(0, frame(1))]);
        let long = format!("d-1.0-{}.pgm\n", "9".repeat(240));
        std::fs::write(tmp.path().join("INDEX.txt"), &long).unwrap();
        let e = error_of(tmp.path());
        assert!(e.contains("is not a 32-bit unsigned number"), "{e}");
        assert!(
            e.contains(&format!("{}\"... (240 bytes)", "9".repeat(10))),
            "{e}"
        );
        assert!(!e.contains(&"9".repeat(MAX_QUOTED + 1)), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_index_line_parses_or_errors(line in "\\PC{0,40}") {
            let _ = parse_line(&line);
        }
    }
}
