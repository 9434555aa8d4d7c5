//! The live status line of `record` on a terminal: elapsed time, frames per stream, write
//! rate, queue fill, drops by reason, how far the durable watermark trails, free space; redrawn
//! four times a second on stderr. Nothing of it when stderr is no terminal or under `--quiet`
//! (logs stay as they are).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use framerec::observe::Snapshot;
use framerec::serve::SnapshotFn;

/// Redraws per second.
const EVERY: Duration = Duration::from_millis(250);

/// A status line drawn by a thread of its own until dropped.
pub struct StatusLine {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StatusLine {
    /// Starts drawing the run that `snapshot` describes; `queue_frames` is the queue's length.
    pub fn start(snapshot: SnapshotFn, queue_frames: u64) -> StatusLine {
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name("status".into())
            .spawn(move || draw(&snapshot, queue_frames, &stop))
            .ok();
        StatusLine { done, thread }
    }
}

impl Drop for StatusLine {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn draw(snapshot: &SnapshotFn, queue_frames: u64, done: &AtomicBool) {
    let bar = indicatif::ProgressBar::with_draw_target(
        None,
        indicatif::ProgressDrawTarget::stderr_with_hz(8),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut last: Option<(Instant, u64)> = None;
    let mut rate = 0.0;
    while !done.load(Ordering::Relaxed) {
        let s = snapshot();
        let now = Instant::now();
        if let Some((t, bytes)) = last {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.0 {
                // Smoothed over about a second.
                let instant = s.written_bytes.saturating_sub(bytes) as f64 / dt;
                rate = 0.75 * rate + 0.25 * instant;
            }
        }
        last = Some((now, s.written_bytes));
        bar.set_message(line(&s, queue_frames, rate));
        bar.tick();
        std::thread::sleep(EVERY);
    }
    bar.finish_and_clear();
}

/// The status line of snapshot `s` (written at `rate` bytes a second).
pub fn line(s: &Snapshot, queue_frames: u64, rate: f64) -> String {
    let mut out = format!("{:.1}s", s.uptime_s);
    if s.streams.len() > 1 {
        for st in &s.streams {
            out += &format!("  {} {}", st.name, st.written_frames);
        }
    } else {
        out += &format!("  {} frames", s.written_frames);
    }
    out += &format!(
        "  {:.1} MB/s  queue {}/{}",
        rate / 1e6,
        s.queue_depth,
        queue_frames
    );
    let dropped: Vec<String> = s
        .dropped
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    out += &if dropped.is_empty() {
        "  dropped 0".to_string()
    } else {
        format!("  dropped {}", dropped.join(", "))
    };
    // How many frames taken are not yet known durable: written, accepted and not on disk.
    let durable = s.durable_seq.map_or(0, |d| d + 1);
    out += &format!("  durable lag {}", s.written_frames.saturating_sub(durable));
    if let Some(free) = s.free_bytes {
        out += &format!("  free {:.1} GB", free as f64 / 1e9);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_what_a_user_watches() {
        let mut s = Snapshot {
            uptime_s: 12.34,
            written_frames: 370,
            queue_depth: 3,
            durable_seq: Some(359),
            free_bytes: Some(12_300_000_000),
            ..Snapshot::default()
        };
        s.dropped.insert("queue_full".into(), 5);
        s.dropped.insert("disk_full".into(), 0);
        let l = line(&s, 256, 61_200_000.0);
        assert_eq!(
            l,
            "12.3s  370 frames  61.2 MB/s  queue 3/256  dropped queue_full 5  durable lag 10  free 12.3 GB"
        );
    }
}
