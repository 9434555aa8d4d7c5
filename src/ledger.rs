//! The accounting of frames: every frame a source delivers is, at any moment, in exactly one
//! place (queued, in a writer, written, or dropped under a reason), and the ledger is the only
//! thing that moves it. Its counts are private; the pipeline tells it what happened with a verb
//! ([`Ledger::queued`], [`Ledger::taken`], [`Ledger::written`], [`Ledger::dropped`],
//! [`Ledger::revoked`], ...), each of which moves frames from one place to another, so
//!
//! > received = written + dropped + queued + in writers
//!
//! holds after every verb, for every stream of the recording on its own (each stream has its
//! own sequence numbers and its own counts; [`Ledger::tally`] is their sum); it is checked here (a debug assertion after each verb, and
//! [`Tally::check`]) and nowhere else. Every drop is also put in the [`DropLog`], from which
//! the writers take the drop notices they write into the recording: a frame cannot be counted
//! dropped without being named in the file.
//!
//! # Threading
//! The receiver (or a device callback) and the writers call the verbs; statistics read a
//! [`Tally`], which is consistent by construction (one lock, taken once per verb: per frame on
//! the receive side, per batch on the write side).

use std::sync::Mutex;

use serde::Serialize;

use crate::frame::{DropReason, Frame, FrameKey, FrameMeta, FrameSeq, StreamId, host_real_ns};
use crate::pipeline::queue::DropLog;

/// Where every frame is, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub received_frames: u64,
    pub received_bytes: u64,
    /// Accepted into the queue, not yet taken by a writer.
    pub queued: u64,
    /// Taken by a writer, not yet written or dropped.
    pub in_writers: u64,
    pub written_frames: u64,
    /// Payload bytes written (not taken back when written frames are revoked).
    pub written_bytes: u64,
    pub(crate) dropped: [u64; DropReason::ALL.len()],
    /// Arrived while the recorder was paused: skipped on purpose, not dropped.
    pub paused: u64,
}

impl Tally {
    /// The sum of `tallies`, field by field.
    pub fn sum<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> Tally {
        let mut t = Tally::default();
        for s in tallies {
            t.received_frames += s.received_frames;
            t.received_bytes += s.received_bytes;
            t.queued += s.queued;
            t.in_writers += s.in_writers;
            t.written_frames += s.written_frames;
            t.written_bytes += s.written_bytes;
            t.paused += s.paused;
            for (a, b) in t.dropped.iter_mut().zip(s.dropped) {
                *a += b;
            }
        }
        t
    }

    /// Frames dropped under `reason` (for [`DropReason::Paused`], the paused frames).
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Paused => self.paused,
            r => self.dropped.get(r.index()).copied().unwrap_or(0),
        }
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// The invariant: every frame received is in exactly one place.
    pub fn check(&self) -> Result<(), String> {
        let placed = [
            self.written_frames,
            self.dropped_total(),
            self.paused,
            self.queued,
            self.in_writers,
        ]
        .iter()
        .try_fold(0u64, |a, b| a.checked_add(*b));
        if placed == Some(self.received_frames) {
            Ok(())
        } else {
            Err(format!(
                "frames unaccounted for: received {} != written {} + dropped {} + paused {} + queued {} + in writers {}",
                self.received_frames,
                self.written_frames,
                self.dropped_total(),
                self.paused,
                self.queued,
                self.in_writers
            ))
        }
    }
}

/// Counts `n` frames dropped under `reason` in `t` (a paused frame is not a drop).
fn add_dropped(t: &mut Tally, reason: DropReason, n: u64) {
    match t.dropped.get_mut(reason.index()) {
        Some(d) => *d += n,
        None => t.paused += n,
    }
}

/// Moves `n` frames out of `from`. More than it holds is a bug in the pipeline: a debug build
/// stops there; a release build keeps counting (saturating) and the invariant check reports it.
fn take(from: &mut u64, n: u64, what: &str) {
    debug_assert!(
        *from >= n,
        "ledger: {n} frames leave {what}, which holds {from}"
    );
    *from = from.saturating_sub(n);
}

/// The accounting. See the module docs.
#[derive(Debug)]
pub struct Ledger {
    /// One tally per stream, by [`StreamId`].
    tallies: Mutex<Vec<Tally>>,
    notices: DropLog,
}

impl Default for Ledger {
    /// The ledger of a one-stream recording.
    fn default() -> Ledger {
        Ledger::new(1)
    }
}

impl Ledger {
    /// The ledger of a recording of `streams` streams.
    pub fn new(streams: usize) -> Ledger {
        Ledger {
            tallies: Mutex::new(vec![Tally::default(); streams.max(1)]),
            notices: DropLog::default(),
        }
    }

    fn apply(&self, stream: StreamId, f: impl FnOnce(&mut Tally)) {
        let mut all = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let Some(t) = all.get_mut(stream.index()) else {
            debug_assert!(false, "ledger: no stream {}", stream.0);
            return;
        };
        f(t);
        debug_assert_eq!(t.check(), Ok(()));
    }

    fn name(&self, stream: StreamId, first: FrameSeq, last: FrameSeq, reason: DropReason) {
        self.notices
            .add(stream, first, last, reason, host_real_ns());
    }

    /// Where every frame of every stream is now (the sum of [`Ledger::streams`]).
    pub fn tally(&self) -> Tally {
        Tally::sum(
            self.tallies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter(),
        )
    }

    /// Where every frame is now, stream by stream (one consistent instant).
    pub fn streams(&self) -> Vec<Tally> {
        self.tallies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The drop notices not yet written into the recording (writers take and restore them).
    pub fn notices(&self) -> &DropLog {
        &self.notices
    }

    /// A frame of `bytes` of `stream` arrived and is being queued.
    pub fn queued(&self, stream: StreamId, bytes: u64) {
        self.apply(stream, |t| {
            t.received_frames += 1;
            t.received_bytes += bytes;
            t.queued += 1;
        });
    }

    /// Frames `first..=last` of `stream` (of `bytes` in all) arrived, or were lost before
    /// arriving, and were dropped there: no room, the disk under its floor, a source's loss or
    /// reject.
    pub fn refused(
        &self,
        stream: StreamId,
        first: FrameSeq,
        last: FrameSeq,
        bytes: u64,
        reason: DropReason,
    ) {
        let n = last.0.saturating_sub(first.0) + 1;
        self.apply(stream, |t| {
            t.received_frames += n;
            t.received_bytes += bytes;
            add_dropped(t, reason, n);
        });
        self.name(stream, first, last, reason);
    }

    /// Frame `seq` of `stream` (`bytes` of payload) arrived while the recorder was paused: it
    /// is counted as paused, and the recording names it (a notice with reason `paused`).
    pub fn paused(&self, stream: StreamId, seq: FrameSeq, bytes: u64) {
        self.apply(stream, |t| {
            t.received_frames += 1;
            t.received_bytes += bytes;
            t.paused += 1;
        });
        self.name(stream, seq, seq, DropReason::Paused);
    }

    /// A queued frame left the queue without reaching a writer: evicted for a newer one, the
    /// queue had no room after all, or no writer was left to take it.
    pub fn unqueued(&self, frame: FrameKey, reason: DropReason) {
        self.apply(frame.stream, |t| {
            take(&mut t.queued, 1, "the queue");
            add_dropped(t, reason, 1);
        });
        self.name(frame.stream, frame.seq, frame.seq, reason);
    }

    /// A writer took `n` queued frames of `stream`.
    pub fn taken(&self, stream: StreamId, n: u64) {
        if n == 0 {
            return;
        }
        self.apply(stream, |t| {
            take(&mut t.queued, n, "the queue");
            t.in_writers += n;
        });
    }

    /// A writer took these queued frames (one lock for the batch).
    pub fn taken_frames(&self, frames: &[Frame]) {
        let each = frames
            .iter()
            .map(|f| (f.meta.stream, f.payload_len() as u64));
        self.per_stream(each, |t, n, _| {
            take(&mut t.queued, n, "the queue");
            t.in_writers += n;
        });
    }

    /// A writer wrote `n` frames of `stream` holding `bytes` of payload.
    pub fn written(&self, stream: StreamId, n: u64, bytes: u64) {
        self.apply(stream, |t| {
            take(&mut t.in_writers, n, "the writers");
            t.written_frames += n;
            t.written_bytes += bytes;
        });
    }

    /// A writer wrote the frames of `metas`.
    pub fn written_by_meta(&self, metas: &[FrameMeta]) {
        self.per_stream(metas.iter().map(|m| (m.stream, m.len)), |t, n, bytes| {
            take(&mut t.in_writers, n, "the writers");
            t.written_frames += n;
            t.written_bytes += bytes;
        });
    }

    /// Applies `f(tally, frames, payload bytes)` for each stream of `frames` (stream, payload
    /// bytes), under one lock.
    fn per_stream(
        &self,
        frames: impl IntoIterator<Item = (StreamId, u64)>,
        mut f: impl FnMut(&mut Tally, u64, u64),
    ) {
        // A batch holds few streams: count them in one pass.
        let mut counts: Vec<(StreamId, u64, u64)> = Vec::new();
        for (stream, bytes) in frames {
            match counts.iter_mut().find(|c| c.0 == stream) {
                Some(c) => {
                    c.1 += 1;
                    c.2 += bytes;
                }
                None => counts.push((stream, 1, bytes)),
            }
        }
        let mut all = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        for (stream, n, bytes) in counts {
            match all.get_mut(stream.index()) {
                Some(t) => {
                    f(t, n, bytes);
                    debug_assert_eq!(t.check(), Ok(()));
                }
                None => debug_assert!(false, "ledger: no stream {}", stream.0),
            }
        }
    }

    /// A writer could not write these frames.
    pub fn dropped(&self, frames: &[FrameKey], reason: DropReason) {
        self.lost(frames, reason, |t| &mut t.in_writers, "the writers");
    }

    /// Frames counted written are not on disk after all (a failed fsync cut them off, their
    /// file was deleted).
    pub fn revoked(&self, frames: &[FrameKey], reason: DropReason) {
        self.lost(
            frames,
            reason,
            |t| &mut t.written_frames,
            "the written frames",
        );
    }

    fn lost(
        &self,
        frames: &[FrameKey],
        reason: DropReason,
        from: impl Fn(&mut Tally) -> &mut u64,
        what: &str,
    ) {
        if frames.is_empty() {
            return;
        }
        {
            let mut all = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
            for k in frames {
                match all.get_mut(k.stream.index()) {
                    Some(t) => {
                        take(from(t), 1, what);
                        add_dropped(t, reason, 1);
                        debug_assert_eq!(t.check(), Ok(()));
                    }
                    None => debug_assert!(false, "ledger: no stream {}", k.stream.0),
                }
            }
        }
        for k in frames {
            self.name(k.stream, k.seq, k.seq, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Where a frame of the model is.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Place {
        Queued,
        InWriter,
        Written,
        Dropped,
    }

    #[derive(Debug, Clone)]
    enum Step {
        Arrive { bytes: u64, refuse: bool },
        SourceLoss(u64),
        Evict,
        Take(usize),
        Write(usize),
        Drop(usize),
        Revoke(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u64..1000, any::<bool>()).prop_map(|(bytes, refuse)| Step::Arrive { bytes, refuse }),
            (1u64..5).prop_map(Step::SourceLoss),
            Just(Step::Evict),
            (1usize..8).prop_map(Step::Take),
            (1usize..8).prop_map(Step::Write),
            (1usize..8).prop_map(Step::Drop),
            (1usize..8).prop_map(Step::Revoke),
        ]
    }

    fn reasons() -> impl Strategy<Value = DropReason> {
        prop::sample::select(DropReason::ALL.to_vec())
    }

    const STREAMS: usize = 3;

    /// A frame of the model: its stream, number there, place, and drop reason.
    #[derive(Debug, Clone, Copy)]
    struct Model {
        key: FrameKey,
        place: Place,
        reason: Option<DropReason>,
        bytes: u64,
    }

    fn key(stream: usize, seq: u64) -> FrameKey {
        FrameKey {
            stream: StreamId(stream as u16),
            seq: FrameSeq(seq),
        }
    }

    /// Applies one step to the ledger and the model (frames of `stream` where a step has one).
    /// One match arm per verb, each the ledger call and the model's mirror of it side by side:
    /// long as the list of verbs is.
    fn apply(ledger: &Ledger, frames: &mut Vec<Model>, s: Step, reason: DropReason, stream: usize) {
        let next = frames
            .iter()
            .filter(|f| f.key.stream.index() == stream)
            .count() as u64;
        let in_place = |frames: &[Model], p: Place| -> Vec<usize> {
            frames
                .iter()
                .enumerate()
                .filter(|(_, f)| f.place == p)
                .map(|(i, _)| i)
                .collect()
        };
        let id = StreamId(stream as u16);
        match s {
            Step::Arrive { bytes, refuse } => {
                let k = key(stream, next);
                if refuse {
                    ledger.refused(id, k.seq, k.seq, bytes, reason);
                } else {
                    ledger.queued(id, bytes);
                }
                let (place, reason) = if refuse {
                    (Place::Dropped, Some(reason))
                } else {
                    (Place::Queued, None)
                };
                frames.push(Model {
                    key: k,
                    place,
                    reason,
                    bytes,
                });
            }
            Step::SourceLoss(n) => {
                ledger.refused(id, FrameSeq(next), FrameSeq(next + n - 1), 0, reason);
                frames.extend((0..n).map(|i| Model {
                    key: key(stream, next + i),
                    place: Place::Dropped,
                    reason: Some(reason),
                    bytes: 0,
                }));
            }
            Step::Evict => {
                if let Some(&i) = in_place(frames, Place::Queued).first() {
                    ledger.unqueued(frames[i].key, reason);
                    frames[i].place = Place::Dropped;
                    frames[i].reason = Some(reason);
                }
            }
            Step::Take(k) => {
                let q = in_place(frames, Place::Queued);
                for &i in q.iter().take(k) {
                    frames[i].place = Place::InWriter;
                    ledger.taken(frames[i].key.stream, 1);
                }
            }
            Step::Write(k) => {
                let w: Vec<usize> = in_place(frames, Place::InWriter)
                    .into_iter()
                    .take(k)
                    .collect();
                let metas: Vec<FrameMeta> = w
                    .iter()
                    .map(|&i| FrameMeta {
                        stream: frames[i].key.stream,
                        seq: frames[i].key.seq,
                        len: frames[i].bytes,
                        ..FrameMeta::default()
                    })
                    .collect();
                for &i in &w {
                    frames[i].place = Place::Written;
                }
                ledger.written_by_meta(&metas);
            }
            Step::Drop(k) | Step::Revoke(k) => {
                let from = if matches!(s, Step::Drop(_)) {
                    Place::InWriter
                } else {
                    Place::Written
                };
                let picked: Vec<usize> = in_place(frames, from).into_iter().take(k).collect();
                let keys: Vec<FrameKey> = picked.iter().map(|&i| frames[i].key).collect();
                for &i in &picked {
                    frames[i].place = Place::Dropped;
                    frames[i].reason = Some(reason);
                }
                if from == Place::InWriter {
                    ledger.dropped(&keys, reason);
                } else {
                    ledger.revoked(&keys, reason);
                }
            }
        }
    }

    proptest! {
        /// Frames of several streams moved through the pipeline in any order the pipeline
        /// allows: after every verb each stream's tally balances and matches the model's,
        /// reason by reason; every drop is named in the notices exactly once, under its stream.
        #[test]
        fn the_ledger_matches_a_model_of_every_frame(
            steps in prop::collection::vec((step(), reasons(), 0..STREAMS), 1..200)
        ) {
            let ledger = Ledger::new(STREAMS);
            let mut frames: Vec<Model> = Vec::new();
            for (s, reason, stream) in steps {
                apply(&ledger, &mut frames, s, reason, stream);
                let all = ledger.streams();
                prop_assert_eq!(all.len(), STREAMS);
                for (i, t) in all.iter().enumerate() {
                    let mine: Vec<&Model> = frames.iter().filter(|f| f.key.stream.index() == i).collect();
                    let count = |p: Place| mine.iter().filter(|f| f.place == p).count() as u64;
                    prop_assert_eq!(t.check(), Ok(()));
                    prop_assert_eq!(t.received_frames, mine.len() as u64);
                    prop_assert_eq!(t.queued, count(Place::Queued));
                    prop_assert_eq!(t.in_writers, count(Place::InWriter));
                    prop_assert_eq!(t.written_frames, count(Place::Written));
                    for r in DropReason::ALL {
                        let want = mine.iter().filter(|f| f.reason == Some(r)).count() as u64;
                        prop_assert_eq!(t.dropped(r), want, "{:?}", r);
                    }
                    prop_assert_eq!(t.received_bytes, mine.iter().map(|f| f.bytes).sum::<u64>());
                }
                prop_assert_eq!(ledger.tally(), Tally::sum(all.iter()));
            }
            // Every dropped frame is named once in the notices, under its stream and reason.
            let mut named: std::collections::HashMap<FrameKey, DropReason> = Default::default();
            for r in ledger.notices().take() {
                for s in r.first.0..=r.last.0 {
                    let k = FrameKey { stream: r.stream, seq: FrameSeq(s) };
                    prop_assert!(named.insert(k, r.reason).is_none(), "{:?} named twice", k);
                }
            }
            let want: std::collections::HashMap<FrameKey, DropReason> =
                frames.iter().filter_map(|f| f.reason.map(|r| (f.key, r))).collect();
            prop_assert_eq!(named, want);
        }
    }

    #[test]
    fn paused_frames_are_counted_apart_from_drops_and_named() {
        let l = Ledger::new(2);
        l.queued(StreamId(0), 10);
        l.paused(StreamId(1), FrameSeq(4), 10);
        l.paused(StreamId(1), FrameSeq(5), 10);
        let t = l.streams();
        assert_eq!((t[1].received_frames, t[1].paused), (2, 2));
        assert_eq!(t[1].dropped_total(), 0, "a pause is not a drop");
        assert_eq!(t[1].dropped(DropReason::Paused), 2);
        assert_eq!(l.tally().check(), Ok(()));
        let notices = l.notices().take();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(
            (notices[0].reason, notices[0].first, notices[0].last),
            (DropReason::Paused, FrameSeq(4), FrameSeq(5))
        );
    }

    #[test]
    fn an_unbalanced_tally_is_reported() {
        let t = Tally {
            received_frames: 3,
            written_frames: 1,
            queued: 1,
            ..Tally::default()
        };
        let e = t.check().unwrap_err();
        assert!(
            e.contains("received 3 != written 1 + dropped 0 + paused 0 + queued 1 + in writers 0"),
            "{e}"
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "leave the writers")]
    fn writing_more_than_was_taken_is_caught() {
        let ledger = Ledger::default();
        ledger.queued(StreamId(0), 10);
        ledger.taken(StreamId(0), 1);
        ledger.written(StreamId(0), 2, 20);
    }
}
