//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use framerec::config::{Config, SourceConfig};
use framerec::pipeline::receiver::Limits;
use framerec::recorder::{RunReport, record};
use framerec::segment::{RecordingReport, verify_recording, verify_segment};
use framerec::sink::existing_segments;
use framerec::source::SyntheticConfig;

/// `foxglove.RawImage`, decoded independently of framerec's own decoder.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawImage {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types::Timestamp>,
    #[prost(string, tag = "7")]
    pub frame_id: String,
    #[prost(fixed32, tag = "2")]
    pub width: u32,
    #[prost(fixed32, tag = "3")]
    pub height: u32,
    #[prost(string, tag = "4")]
    pub encoding: String,
    #[prost(fixed32, tag = "5")]
    pub step: u32,
    #[prost(bytes = "vec", tag = "6")]
    pub data: Vec<u8>,
}

/// A config recording `width`x`height` unpaced synthetic frames into `dir`.
pub fn config(dir: &Path, width: u32, height: u32) -> Config {
    let mut cfg = Config {
        output_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.source = SourceConfig::Synthetic(SyntheticConfig {
        width,
        height,
        fps: 0,
        seed: 7,
        ..SyntheticConfig::default()
    });
    cfg
}

pub fn synthetic(cfg: &Config) -> &SyntheticConfig {
    let SourceConfig::Synthetic(s) = &cfg.source else {
        panic!("a synthetic config")
    };
    s
}

/// Records `frames` frames per `cfg`; the report may hold a failure.
pub fn record_frames(cfg: &Config, frames: u64) -> RunReport {
    record(
        cfg,
        Limits {
            frames: Some(frames),
            duration: None,
        },
        Arc::new(AtomicBool::new(false)),
    )
    .expect("recording starts")
}

/// Records `frames` frames per `cfg`, which must succeed.
pub fn run(cfg: &Config, frames: u64) -> RunReport {
    let report = record_frames(cfg, frames);
    assert!(
        report.failure.is_none(),
        "recording failed: {:?}",
        report.failure
    );
    report
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    existing_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

/// framerec's own verification of a recording directory.
pub fn verify_dir(dir: &Path) -> RecordingReport {
    let reports = segments(dir)
        .iter()
        .map(|p| verify_segment(&p.display().to_string(), &std::fs::read(p).unwrap()))
        .collect();
    verify_recording(reports, true)
}

/// Every depth message in the recording, read with the `mcap` crate: (sequence, log_time,
/// publish_time, raw device time, decoded image), in file order. The device time is the
/// publish time less the clock offset the segment's tail records (`framerec.clock`).
pub fn read_with_mcap_crate(dir: &Path) -> Vec<(u32, u64, u64, u64, RawImage)> {
    use prost::Message as _;
    let mut out = Vec::new();
    for path in segments(dir) {
        let bytes = std::fs::read(&path).unwrap();
        let summary = mcap::Summary::read(&bytes)
            .unwrap()
            .expect("segment has a summary");
        let stats = summary.stats.expect("summary has statistics");
        let device = device_clock(&bytes);
        let mut count = 0;
        for msg in mcap::MessageStream::new(&bytes).unwrap() {
            let msg = msg.unwrap();
            if msg.channel.topic != "/camera/depth" {
                continue;
            }
            assert_eq!(
                msg.channel.schema.as_ref().unwrap().name,
                "foxglove.RawImage"
            );
            let img = RawImage::decode(&msg.data[..]).unwrap();
            out.push((
                msg.sequence,
                msg.log_time,
                msg.publish_time,
                device(&msg),
                img,
            ));
            count += 1;
        }
        assert_eq!(
            stats.channel_message_counts.get(&1).copied().unwrap_or(0),
            count,
            "{}",
            path.display()
        );
    }
    out
}

/// Runs the `framerec` binary with `RUST_LOG=warn`.
pub fn framerec(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("framerec runs")
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The last durable watermark a recorder logged (`RUST_LOG=framerec=debug`).
pub fn last_durable(log: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| l.split("durable_seq=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .next_back()
}

/// The Python interpreter of the virtual environment `tests/run` prepares (with the packages of
/// `tests/python/requirements.txt`): `$FRAMEREC_PYTHON`, else `.venv/bin/python3` in the
/// checkout. Panics with the command to run when there is neither.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FRAMEREC_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    assert!(
        venv.exists(),
        "{} does not exist: run `tests/run --python-only` to create the tests' Python \
         environment (or set FRAMEREC_PYTHON to an interpreter with \
         tests/python/requirements.txt installed)",
        venv.display()
    );
    venv
}

/// CRC-32 of synthetic image `seq` of `stream` (`depth`, else colour), from framerec's definition.
pub fn synthetic_crc(stream: &str, seed: u64, seq: u64, width: u32, height: u32) -> u32 {
    use framerec::source::synthetic::{expected_color_frame, expected_frame};
    let bytes = match stream {
        "depth" | "16UC1" => expected_frame(seed, seq, width, height),
        _ => expected_color_frame(seed, seq, width, height),
    };
    crc32fast::hash(&bytes)
}

/// Checks the `[stream, seq, crc32]` triples a Python reader reported against the synthetic
/// definition; returns how many it checked.
pub fn check_image_crcs(images: &serde_json::Value, seed: u64, width: u32, height: u32) -> usize {
    let images = images.as_array().expect("a list of images");
    for i in images {
        let (stream, seq, crc) = (
            i[0].as_str().unwrap(),
            i[1].as_u64().unwrap(),
            i[2].as_u64().unwrap(),
        );
        assert_eq!(
            u64::from(synthetic_crc(stream, seed, seq, width, height)),
            crc,
            "{stream} frame {seq}: bytes differ from the synthetic definition"
        );
    }
    images.len()
}

/// Sequence numbers of the frames the official Python reader reads from `dir`, after each
/// image it read was checked byte-exact (by CRC-32) against the synthetic definition for
/// `seed`.
pub fn python_frames(dir: &Path, seed: u64, width: u32, height: u32) -> Vec<u64> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/read_recording.py"
    );
    let py = std::process::Command::new(python())
        .args([script, dir.to_str().unwrap()])
        .args([seed.to_string(), width.to_string(), height.to_string()])
        .output()
        .expect("the tests' python runs");
    assert!(py.status.success(), "python reader: {}", text(&py));
    let r: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    check_image_crcs(&r["images"], seed, width, height);
    r["seqs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// Starts the `framerec` binary with `args` (given as groups, concatenated), `RUST_LOG` set to
/// `rust_log`, and the given stdout and stderr.
pub fn spawn_framerec(
    args: &[&[&str]],
    rust_log: &str,
    stdout: impl Into<std::process::Stdio>,
    stderr: impl Into<std::process::Stdio>,
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(args.concat())
        .env("RUST_LOG", rust_log)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("framerec starts")
}

/// A mount that is undone on drop, so a failing test leaves nothing mounted. `args` are
/// `mount`'s arguments before the mount point (e.g. `["-o", "loop", image]`).
pub struct Mounted(pub PathBuf);

impl Mounted {
    pub fn new(args: &[&str], at: &Path) -> Mounted {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(args)
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount {args:?} (these tests run as root): {}",
            text(&out)
        );
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    /// A recorder killed a moment ago can still hold its files open: the kernel tears an
    /// io_uring instance down after the process is gone. Retry for 10 s, then detach lazily;
    /// an unmount that is given up on leaks the loop device and its image.
    fn drop(&mut self) {
        for _ in 0..100 {
            if umount(&self.0, false) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!(
            "{} stayed busy for 10 s: detaching it lazily",
            self.0.display()
        );
        umount(&self.0, true);
    }
}

/// `umount [-l] at`; whether it succeeded.
pub fn umount(at: &Path, lazy: bool) -> bool {
    let mut c = std::process::Command::new("umount");
    if lazy {
        c.arg("-l");
    }
    c.arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A child's log, read line by line on a thread of its own as it is written, so that a test can
/// wait for a line (an address the child chose, say) and still show the whole log on failure.
pub struct LogLines {
    lines: Arc<std::sync::Mutex<Vec<String>>>,
    added: std::sync::mpsc::Receiver<()>,
}

impl LogLines {
    pub fn follow(from: impl std::io::Read + Send + 'static) -> LogLines {
        use std::io::BufRead;
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, added) = std::sync::mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                kept.lock().unwrap().push(line);
                let _ = tx.send(());
            }
        });
        LogLines { lines, added }
    }

    /// The first `pick(line)` that is `Some`, waiting up to `timeout` for lines to come;
    /// `None` when none came in time or the log ended.
    pub fn wait_for<T>(
        &self,
        timeout: std::time::Duration,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = 0;
        loop {
            {
                let lines = self.lines.lock().unwrap();
                for line in &lines[seen..] {
                    if let Some(t) = pick(line) {
                        return Some(t);
                    }
                }
                seen = lines.len();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.added.recv_timeout(left).is_err() {
                return None;
            }
        }
    }

    /// The address a recorder logged it serves Prometheus metrics on (`--metrics-addr
    /// 127.0.0.1:0` makes it pick a port), waiting up to 10 s for the line.
    pub fn metrics_addr(&self) -> Option<String> {
        self.wait_for(std::time::Duration::from_secs(10), |line| {
            let rest = line.split("serving Prometheus metrics").nth(1)?;
            let addr = rest.split("addr=").nth(1)?.split_whitespace().next()?;
            Some(addr.trim_matches('"').to_string())
        })
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

/// The official MCAP command-line tool: `$FRAMEREC_MCAP_CLI`, else the script in
/// `contrib/mcap-cli` that builds it from the vendored source once (`tests/run` does that
/// before the tests).
pub fn mcap_cli() -> PathBuf {
    match std::env::var_os("FRAMEREC_MCAP_CLI") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/mcap-cli/mcap"),
    }
}

/// `mcap doctor --strict-message-order FILE`: its exit status and what it printed.
pub fn mcap_doctor(file: &Path) -> std::process::Output {
    let cli = mcap_cli();
    std::process::Command::new(&cli)
        .args(["doctor", "--strict-message-order"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", cli.display()))
}

/// The raw device time of a message of the segment `bytes`: its publish time less its stream's
/// clock offset, as the segment's tail records it (see `framerec::segment::clock`). Panics when
/// the segment has no clock record for the stream.
pub fn device_clock(bytes: &[u8]) -> impl Fn(&mcap::Message) -> u64 + use<> {
    let offsets = framerec::segment::clock::read_offsets(bytes);
    move |m: &mcap::Message| {
        let stream = m
            .channel
            .metadata
            .get("stream")
            .map_or("depth", String::as_str);
        let offset = offsets
            .get(stream)
            .unwrap_or_else(|| panic!("no clock offset for {stream}: {offsets:?}"));
        (m.publish_time as i128 - *offset as i128) as u64
    }
}
