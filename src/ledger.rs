//! The accounting of frames: every frame a source delivers is, at any moment, in exactly one
//! place (queued, in a writer, written, or dropped under a reason), and the ledger is the only
//! thing that moves it. Its counts are private; the pipeline tells it what happened with a verb
//! ([`Ledger::queued`], [`Ledger::taken`], [`Ledger::written`], [`Ledger::dropped`],
//! [`Ledger::revoked`], ...), each of which moves frames from one place to another, so
//!
//! > received = written + dropped + queued + in writers
//!
//! holds after every verb; it is checked here (a debug assertion after each verb, and
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

use crate::frame::{DropReason, FrameSeq, host_real_ns};
use crate::queue::DropLog;

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
}

impl Tally {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()]
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// The invariant: every frame received is in exactly one place.
    pub fn check(&self) -> Result<(), String> {
        let placed = [
            self.written_frames,
            self.dropped_total(),
            self.queued,
            self.in_writers,
        ]
        .iter()
        .try_fold(0u64, |a, b| a.checked_add(*b));
        if placed == Some(self.received_frames) {
            Ok(())
        } else {
            Err(format!(
                "frames unaccounted for: received {} != written {} + dropped {} + queued {} + in writers {}",
                self.received_frames,
                self.written_frames,
                self.dropped_total(),
                self.queued,
                self.in_writers
            ))
        }
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
#[derive(Debug, Default)]
pub struct Ledger {
    tally: Mutex<Tally>,
    notices: DropLog,
}

impl Ledger {
    fn apply(&self, f: impl FnOnce(&mut Tally)) {
        let mut t = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t);
        debug_assert_eq!(t.check(), Ok(()));
    }

    fn name(&self, first: FrameSeq, last: FrameSeq, reason: DropReason) {
        self.notices.add(first, last, reason, host_real_ns());
    }

    /// Where every frame is now.
    pub fn tally(&self) -> Tally {
        *self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The drop notices not yet written into the recording (writers take and restore them).
    pub fn notices(&self) -> &DropLog {
        &self.notices
    }

    /// A frame of `bytes` arrived and is being queued.
    pub fn queued(&self, bytes: u64) {
        self.apply(|t| {
            t.received_frames += 1;
            t.received_bytes += bytes;
            t.queued += 1;
        });
    }

    /// Frames `first..=last` (of `bytes` in all) arrived, or were lost before arriving, and were
    /// dropped there: no room, the disk under its floor, a source's loss or reject.
    pub fn refused(&self, first: FrameSeq, last: FrameSeq, bytes: u64, reason: DropReason) {
        let n = last.0.saturating_sub(first.0) + 1;
        self.apply(|t| {
            t.received_frames += n;
            t.received_bytes += bytes;
            t.dropped[reason.index()] += n;
        });
        self.name(first, last, reason);
    }

    /// A queued frame left the queue without reaching a writer: evicted for a newer one, the
    /// queue had no room after all, or no writer was left to take it.
    pub fn unqueued(&self, seq: FrameSeq, reason: DropReason) {
        self.apply(|t| {
            take(&mut t.queued, 1, "the queue");
            t.dropped[reason.index()] += 1;
        });
        self.name(seq, seq, reason);
    }

    /// A writer took `n` queued frames.
    pub fn taken(&self, n: u64) {
        if n == 0 {
            return;
        }
        self.apply(|t| {
            take(&mut t.queued, n, "the queue");
            t.in_writers += n;
        });
    }

    /// A writer wrote `n` frames holding `bytes` of payload.
    pub fn written(&self, n: u64, bytes: u64) {
        self.apply(|t| {
            take(&mut t.in_writers, n, "the writers");
            t.written_frames += n;
            t.written_bytes += bytes;
        });
    }

    /// A writer could not write these frames.
    pub fn dropped(&self, seqs: &[FrameSeq], reason: DropReason) {
        if seqs.is_empty() {
            return;
        }
        let n = seqs.len() as u64;
        self.apply(|t| {
            take(&mut t.in_writers, n, "the writers");
            t.dropped[reason.index()] += n;
        });
        for s in seqs {
            self.name(*s, *s, reason);
        }
    }

    /// Frames counted written are not on disk after all (a failed fsync cut them off, their
    /// file was deleted).
    pub fn revoked(&self, seqs: &[FrameSeq], reason: DropReason) {
        if seqs.is_empty() {
            return;
        }
        let n = seqs.len() as u64;
        self.apply(|t| {
            take(&mut t.written_frames, n, "the written frames");
            t.dropped[reason.index()] += n;
        });
        for s in seqs {
            self.name(*s, *s, reason);
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

    proptest! {
        /// Frames moved through the pipeline in any order the pipeline allows: after every verb
        /// the ledger balances, and its counts are the model's, reason by reason; every drop is
        /// named in the notices exactly once.
        #[test]
        fn the_ledger_matches_a_model_of_every_frame(
            steps in prop::collection::vec((step(), reasons()), 1..200)
        ) {
            let ledger = Ledger::default();
            let mut frames: Vec<(Place, Option<DropReason>)> = Vec::new();
            let (mut rx_bytes, mut wr_bytes) = (0u64, 0u64);
            let in_place = |frames: &[(Place, Option<DropReason>)], p: Place| -> Vec<usize> {
                frames.iter().enumerate().filter(|(_, f)| f.0 == p).map(|(i, _)| i).collect()
            };
            for (s, reason) in steps {
                match s {
                    Step::Arrive { bytes, refuse } => {
                        let seq = FrameSeq(frames.len() as u64);
                        rx_bytes += bytes;
                        if refuse {
                            ledger.refused(seq, seq, bytes, reason);
                            frames.push((Place::Dropped, Some(reason)));
                        } else {
                            ledger.queued(bytes);
                            frames.push((Place::Queued, None));
                        }
                    }
                    Step::SourceLoss(n) => {
                        let first = FrameSeq(frames.len() as u64);
                        ledger.refused(first, FrameSeq(first.0 + n - 1), 0, reason);
                        frames.extend((0..n).map(|_| (Place::Dropped, Some(reason))));
                    }
                    Step::Evict => {
                        if let Some(&i) = in_place(&frames, Place::Queued).first() {
                            ledger.unqueued(FrameSeq(i as u64), reason);
                            frames[i] = (Place::Dropped, Some(reason));
                        }
                    }
                    Step::Take(k) => {
                        let q = in_place(&frames, Place::Queued);
                        let k = k.min(q.len());
                        for &i in &q[..k] {
                            frames[i].0 = Place::InWriter;
                        }
                        ledger.taken(k as u64);
                    }
                    Step::Write(k) => {
                        let w = in_place(&frames, Place::InWriter);
                        let k = k.min(w.len());
                        for &i in &w[..k] {
                            frames[i].0 = Place::Written;
                        }
                        wr_bytes += 10 * k as u64;
                        ledger.written(k as u64, 10 * k as u64);
                    }
                    Step::Drop(k) | Step::Revoke(k) => {
                        let from = if matches!(s, Step::Drop(_)) { Place::InWriter } else { Place::Written };
                        let picked: Vec<usize> = in_place(&frames, from).into_iter().take(k).collect();
                        let seqs: Vec<FrameSeq> = picked.iter().map(|&i| FrameSeq(i as u64)).collect();
                        for &i in &picked {
                            frames[i] = (Place::Dropped, Some(reason));
                        }
                        if from == Place::InWriter {
                            ledger.dropped(&seqs, reason);
                        } else {
                            ledger.revoked(&seqs, reason);
                        }
                    }
                }
                let t = ledger.tally();
                prop_assert_eq!(t.check(), Ok(()));
                prop_assert_eq!(t.received_frames, frames.len() as u64);
                prop_assert_eq!(t.queued as usize, in_place(&frames, Place::Queued).len());
                prop_assert_eq!(t.in_writers as usize, in_place(&frames, Place::InWriter).len());
                prop_assert_eq!(t.written_frames as usize, in_place(&frames, Place::Written).len());
                for r in DropReason::ALL {
                    let want = frames.iter().filter(|f| f.1 == Some(r)).count() as u64;
                    prop_assert_eq!(t.dropped(r), want, "{:?}", r);
                }
                prop_assert_eq!((t.received_bytes, t.written_bytes), (rx_bytes, wr_bytes));
            }
            // Every dropped frame is named once in the notices, under its reason.
            let mut named: Vec<Option<DropReason>> = vec![None; frames.len()];
            for r in ledger.notices().take() {
                for s in r.first.0..=r.last.0 {
                    prop_assert!(named[s as usize].is_none(), "frame {} named twice", s);
                    named[s as usize] = Some(r.reason);
                }
            }
            let want: Vec<Option<DropReason>> = frames.iter().map(|f| f.1).collect();
            prop_assert_eq!(named, want);
        }
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
            e.contains("received 3 != written 1 + dropped 0 + queued 1 + in writers 0"),
            "{e}"
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "leave the writers")]
    fn writing_more_than_was_taken_is_caught() {
        let ledger = Ledger::default();
        ledger.queued(10);
        ledger.taken(1);
        ledger.written(2, 20);
    }
}
