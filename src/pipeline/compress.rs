//! The compression stage: a bounded pool of worker threads between the queue and the writers.
//!
//! A writer hands a batch it took from the queue to [`Compressors::try_submit`] and awaits the
//! answer; it never compresses on its own (io_uring) thread, and neither does the receiver. A
//! batch is cut into runs of consecutive frames whose streams share a codec (a chunk has one
//! compression, and cutting only between runs keeps the file in log-time order); each run
//! becomes a compressed chunk, or stays raw when its stream asks for none or it would not
//! shrink enough. When every worker is busy the writer gets its batch back at once and writes
//! it raw: compression falling behind costs disk space, never a frame.
//!
//! The frames stay with their chunk until it is written: their buffers (still counted in the
//! queue's budget) go back to the pool after the write, and a write that must be made again
//! still has them. Memory is therefore the queue budget plus one compressed buffer per worker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;

use crate::frame::{Frame, StreamInfo};
use crate::segment::ros2::Profile;
use crate::segment::{Codec, CompressedChunk, compress_chunk};

/// What a stage does with each stream's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressConfig {
    /// Per stream (by index): its chunks' codec, or `None` to keep them raw.
    pub codecs: Vec<Option<Codec>>,
    /// Worker threads (1 or more).
    pub threads: usize,
    /// A chunk is kept compressed only when it saves at least this percentage of its bytes.
    pub min_saving_percent: u8,
    /// While the queue holds at least this percentage of its frames, batches skip the stage
    /// and are written raw (the disk, not the CPU, must catch up).
    pub high_water_percent: u8,
}

/// A run of a batch's frames, in order, as it is to be written.
#[derive(Debug)]
pub enum Piece {
    /// Write these frames as they are (a raw chunk laid out in place).
    Raw(Vec<Frame>),
    /// Write `chunk`'s bytes; `frames` are its messages, kept until the write is done.
    Compressed {
        chunk: CompressedChunk,
        frames: Vec<Frame>,
    },
}

/// Counts of what the stage did, for the summary and the statistics surfaces.
#[derive(Debug, Default)]
pub struct CompressCounters {
    pub chunks_compressed: AtomicU64,
    /// Runs kept raw because they would not shrink enough.
    pub chunks_not_worth_it: AtomicU64,
    /// Batches written raw because every worker was busy.
    pub batches_raw_busy: AtomicU64,
    /// Batches written raw because the queue was past its high-water mark.
    pub batches_raw_pressure: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Worker time spent compressing, nanoseconds.
    pub busy_ns: AtomicU64,
}

/// [`CompressCounters`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompressionTotals {
    pub chunks_compressed: u64,
    /// Runs kept raw because they would not shrink enough.
    pub chunks_not_worth_it: u64,
    /// Batches written raw because every worker was busy.
    pub batches_raw_busy: u64,
    /// Batches written raw because the queue was past its high-water mark.
    pub batches_raw_pressure: u64,
    /// Payload bytes that went into compressed chunks, and the chunks' bytes.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Worker time spent compressing, nanoseconds.
    pub busy_ns: u64,
}

impl CompressCounters {
    pub fn totals(&self) -> CompressionTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CompressionTotals {
            chunks_compressed: get(&self.chunks_compressed),
            chunks_not_worth_it: get(&self.chunks_not_worth_it),
            batches_raw_busy: get(&self.batches_raw_busy),
            batches_raw_pressure: get(&self.batches_raw_pressure),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            busy_ns: get(&self.busy_ns),
        }
    }
}

impl CompressionTotals {
    /// True when the stage did anything at all (compression was on).
    pub fn any(&self) -> bool {
        *self != CompressionTotals::default()
    }
}

struct Job {
    frames: Vec<Frame>,
    reply: oneshot::Sender<Vec<Piece>>,
}

struct Shared {
    jobs: Mutex<Option<VecDeque<Job>>>,
    wake: Condvar,
    /// Jobs submitted and not yet answered.
    busy: AtomicUsize,
    counters: Arc<CompressCounters>,
}

/// The worker threads; dropping it lets them finish the jobs they hold and stop.
pub struct Compressors {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    limit: usize,
}

impl Compressors {
    /// Starts `cfg.threads` workers for a recording of `streams` in `profile`.
    pub fn start(
        cfg: CompressConfig,
        streams: Arc<[StreamInfo]>,
        profile: Profile,
        counters: Arc<CompressCounters>,
    ) -> std::io::Result<Compressors> {
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Some(VecDeque::new())),
            wake: Condvar::new(),
            busy: AtomicUsize::new(0),
            counters,
        });
        let cfg = Arc::new(cfg);
        let mut threads = Vec::new();
        for i in 0..cfg.threads.max(1) {
            let (shared, cfg, streams) = (shared.clone(), cfg.clone(), streams.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("framerec-compress-{i}"))
                    .spawn(move || work(&shared, &cfg, &streams, profile))?,
            );
        }
        Ok(Compressors {
            shared,
            // One batch compressing and one waiting per worker: a writer with a batch in hand
            // does not find them all busy just because another handed one in a moment before.
            limit: 2 * threads.len(),
            threads,
        })
    }

    /// Hands `frames` (a batch, in log-time order) to a free worker and returns where its
    /// pieces will come; gives the batch back at once when every worker is busy.
    pub fn try_submit(
        &self,
        frames: Vec<Frame>,
    ) -> Result<oneshot::Receiver<Vec<Piece>>, Vec<Frame>> {
        let busy = &self.shared.busy;
        if busy.fetch_add(1, Ordering::AcqRel) >= self.limit {
            busy.fetch_sub(1, Ordering::AcqRel);
            let c = &self.shared.counters;
            c.batches_raw_busy.fetch_add(1, Ordering::Relaxed);
            return Err(frames);
        }
        let (reply, answer) = oneshot::channel();
        let mut jobs = self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
        match jobs.as_mut() {
            Some(jobs) => jobs.push_back(Job { frames, reply }),
            None => {
                busy.fetch_sub(1, Ordering::AcqRel);
                return Err(frames);
            }
        }
        drop(jobs);
        self.shared.wake.notify_one();
        Ok(answer)
    }
}

impl Drop for Compressors {
    fn drop(&mut self) {
        // Jobs no worker took yet go back raw; workers finish the one they hold, then stop.
        let left = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        for job in left {
            answer(&self.shared, job.reply, vec![Piece::Raw(job.frames)]);
        }
        self.shared.wake.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn answer(shared: &Shared, reply: oneshot::Sender<Vec<Piece>>, pieces: Vec<Piece>) {
    shared.busy.fetch_sub(1, Ordering::AcqRel);
    // A writer that stopped waiting drops the frames with the pieces: its batch was accounted
    // for by whoever abandoned it.
    let _ = reply.send(pieces);
}

fn work(shared: &Shared, cfg: &CompressConfig, streams: &[StreamInfo], profile: Profile) {
    loop {
        let job = {
            let mut jobs = shared.jobs.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                match jobs.as_mut() {
                    None => return,
                    Some(q) if !q.is_empty() => break q.pop_front().expect("not empty"),
                    Some(_) => {
                        jobs = shared.wake.wait(jobs).unwrap_or_else(|p| p.into_inner());
                    }
                }
            }
        };
        let started = Instant::now();
        let pieces = compress_batch(job.frames, cfg, streams, profile, &shared.counters);
        let c = &shared.counters;
        c.busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        answer(shared, job.reply, pieces);
    }
}

/// Cuts `frames` into runs of one codec and compresses each run that has one.
pub fn compress_batch(
    frames: Vec<Frame>,
    cfg: &CompressConfig,
    streams: &[StreamInfo],
    profile: Profile,
    counters: &CompressCounters,
) -> Vec<Piece> {
    let codec_of = |f: &Frame| cfg.codecs.get(f.meta.stream.index()).copied().flatten();
    let mut pieces = Vec::new();
    let mut run: Vec<Frame> = Vec::new();
    let mut run_codec = None;
    let flush = |run: &mut Vec<Frame>, codec: Option<Codec>, pieces: &mut Vec<Piece>| {
        if run.is_empty() {
            return;
        }
        let mut frames = std::mem::take(run);
        let Some(codec) = codec else {
            pieces.push(Piece::Raw(frames));
            return;
        };
        let raw: u64 = frames.iter().map(|f| f.payload_len() as u64).sum();
        let min_saving = f64::from(cfg.min_saving_percent) / 100.0;
        match compress_chunk(&mut frames, streams, profile, codec, min_saving) {
            Some(chunk) => {
                counters.chunks_compressed.fetch_add(1, Ordering::Relaxed);
                counters.bytes_in.fetch_add(raw, Ordering::Relaxed);
                counters
                    .bytes_out
                    .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
                pieces.push(Piece::Compressed { chunk, frames });
            }
            None => {
                counters.chunks_not_worth_it.fetch_add(1, Ordering::Relaxed);
                pieces.push(Piece::Raw(frames));
            }
        }
    };
    for f in frames {
        let codec = codec_of(&f);
        if !run.is_empty() && codec != run_codec {
            flush(&mut run, run_codec, &mut pieces);
        }
        run_codec = codec;
        run.push(f);
    }
    flush(&mut run, run_codec, &mut pieces);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameBuf, FrameMeta, FrameSeq, StreamId};

    fn streams() -> Arc<[StreamInfo]> {
        vec![
            StreamInfo::depth("/camera/depth", "cam", 64, 48),
            StreamInfo::accel("accel", "/camera/accel", "cam"),
        ]
        .into()
    }

    /// Frames of `order` (stream, seq): depth a compressible ramp, accel 12 bytes.
    fn frames(order: &[(u16, u64)], streams: &[StreamInfo]) -> Vec<Frame> {
        order
            .iter()
            .enumerate()
            .map(|(i, &(s, seq))| {
                let len = streams[s as usize].frame_bytes().max(12);
                let mut buf = FrameBuf::new(len);
                for (k, b) in buf.fill(len).unwrap().iter_mut().enumerate() {
                    *b = (k / 64) as u8 ^ seq as u8;
                }
                buf.seal_crc();
                Frame {
                    meta: FrameMeta {
                        stream: StreamId(s),
                        seq: FrameSeq(seq),
                        order: i as u64,
                        len: len as u64,
                        host_real_ns: 1_700_000_000_000_000_000 + i as u64,
                        ..FrameMeta::default()
                    },
                    buf,
                    span: (0, 0),
                }
            })
            .collect()
    }

    fn config(threads: usize, level: i32) -> CompressConfig {
        CompressConfig {
            codecs: vec![Some(Codec::Zstd { level }), None],
            threads,
            min_saving_percent: 2,
            high_water_percent: 50,
        }
    }

    fn order_of(pieces: &[Piece]) -> Vec<(u16, u64, bool)> {
        pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Raw(f) => f
                    .iter()
                    .map(|f| (f.meta.stream.0, f.meta.seq.0, false))
                    .collect::<Vec<_>>(),
                Piece::Compressed { frames, .. } => frames
                    .iter()
                    .map(|f| (f.meta.stream.0, f.meta.seq.0, true))
                    .collect(),
            })
            .collect()
    }

    #[test]
    fn a_batch_is_cut_into_runs_of_one_codec_in_order() {
        let s = streams();
        let batch = frames(&[(0, 0), (1, 0), (0, 1), (0, 2), (1, 1)], &s);
        let counters = CompressCounters::default();
        let pieces = compress_batch(batch, &config(1, 1), &s, Profile::Foxglove, &counters);
        assert_eq!(pieces.len(), 4);
        assert_eq!(
            order_of(&pieces),
            vec![
                (0, 0, true),
                (1, 0, false),
                (0, 1, true),
                (0, 2, true),
                (1, 1, false)
            ]
        );
        assert_eq!(counters.chunks_compressed.load(Ordering::Relaxed), 2);
        let (i, o) = (
            counters.bytes_in.load(Ordering::Relaxed),
            counters.bytes_out.load(Ordering::Relaxed),
        );
        assert_eq!(i, 3 * s[0].frame_bytes() as u64);
        assert!(o > 0 && o < i / 4, "{o} of {i}");
    }

    #[test]
    fn a_busy_pool_gives_the_batch_back_at_once_and_counts_it() {
        let s = streams();
        let counters = Arc::new(CompressCounters::default());
        let pool = Compressors::start(
            config(1, 19),
            s.clone(),
            Profile::Foxglove,
            counters.clone(),
        )
        .unwrap();
        // zstd -19 on 200 frames takes far longer than the submissions after it.
        let order: Vec<(u16, u64)> = (0..200).map(|q| (0, q)).collect();
        let first = pool.try_submit(frames(&order, &s)).expect("a free worker");
        let second = pool.try_submit(frames(&order, &s)).expect("room to wait");
        let back = pool
            .try_submit(frames(&[(0, 500)], &s))
            .expect_err("every worker busy");
        assert_eq!(back.len(), 1);
        assert_eq!(counters.batches_raw_busy.load(Ordering::Relaxed), 1);
        // Dropping the pool lets the worker finish what it holds and gives back, raw, what
        // no worker took: no frame is lost either way.
        drop(pool);
        let pieces = first.blocking_recv().expect("answered");
        assert_eq!(order_of(&pieces).len(), 200);
        assert!(matches!(pieces[0], Piece::Compressed { .. }));
        let pieces = second.blocking_recv().expect("answered");
        assert_eq!(order_of(&pieces).len(), 200);
        assert!(matches!(pieces[..], [Piece::Raw(_)]));
    }
}
