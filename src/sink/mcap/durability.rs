//! The durable watermark as a pure state machine: which frames are durable, whatever order
//! writes, fsyncs and segment finalizations complete in.
//!
//! A frame enters when a write takes it ([`Watermark::taken`]) and leaves when an fsync that
//! covers its bytes succeeded ([`Watermark::durable`]) or when it is counted as dropped
//! ([`Watermark::dropped`]). The watermark is the highest sequence number `s` such that every
//! frame taken with a number up to `s` has left: so it never names a frame that is still only in
//! the page cache, even when a later segment finishes its fsync before an earlier one.
//!
//! Invariants:
//! - frames are taken in increasing sequence order, except that a frame taken again (written a
//!   second time after a failed fsync) keeps its place;
//! - the watermark never goes back, and never passes a frame that is neither durable nor dropped;
//! - each frame's capture stamp is handed back once, when it becomes durable (capture-to-durable).

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Durable,
    Dropped,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    captured_ns: u64,
    state: State,
}

/// Frames between "taken by a write" and "durable or dropped", in sequence order.
#[derive(Debug, Default)]
pub(crate) struct Watermark {
    entries: VecDeque<Entry>,
    /// Highest sequence number ever taken.
    high: Option<u64>,
    /// The watermark last reported by [`Watermark::advance`].
    mark: Option<u64>,
}

impl Watermark {
    fn find(&self, seq: u64) -> Option<usize> {
        self.entries.binary_search_by_key(&seq, |e| e.seq).ok()
    }

    /// A write took frame `seq` (captured at `captured_ns`). Taking a frame that is already
    /// pending (a rewrite) changes nothing.
    pub(crate) fn taken(&mut self, seq: u64, captured_ns: u64) {
        if self.high.is_some_and(|h| seq <= h) {
            // A rewrite: the frame keeps its place (if it is still tracked, it is pending).
            return;
        }
        self.high = Some(seq);
        self.entries.push_back(Entry {
            seq,
            captured_ns,
            state: State::Pending,
        });
    }

    /// An fsync that started after frame `seq`'s write completed succeeded. Returns the frame's
    /// capture stamp the first time (for capture-to-durable), None if it was not pending.
    pub(crate) fn durable(&mut self, seq: u64) -> Option<u64> {
        let i = self.find(seq)?;
        let e = &mut self.entries[i];
        if e.state != State::Pending {
            return None;
        }
        e.state = State::Durable;
        Some(e.captured_ns)
    }

    /// Frame `seq` is counted as dropped: it will never be durable, and the watermark may pass it.
    pub(crate) fn dropped(&mut self, seq: u64) {
        if let Some(i) = self.find(seq) {
            self.entries[i].state = State::Dropped;
        }
    }

    /// Moves the watermark over every frame at the front that has left; returns the new
    /// watermark when it moved.
    pub(crate) fn advance(&mut self) -> Option<u64> {
        let mut moved = None;
        while let Some(e) = self.entries.front()
            && e.state != State::Pending
        {
            moved = Some(e.seq);
            self.entries.pop_front();
        }
        let moved = moved?;
        // Every frame below the first pending one has left: the watermark is just below it
        // (the numbers between were never taken: dropped before a write took them).
        let mark = match self.entries.front() {
            Some(e) => e.seq.checked_sub(1).filter(|m| *m >= moved),
            None => self.high,
        }
        .unwrap_or(moved);
        if self.mark.is_some_and(|m| m >= mark) {
            return None;
        }
        self.mark = Some(mark);
        Some(mark)
    }

    /// The watermark: every frame taken with a number up to it is durable or dropped.
    #[cfg(test)]
    pub(crate) fn mark(&self) -> Option<u64> {
        self.mark
    }

    /// Frames taken and neither durable nor dropped yet.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.state == State::Pending)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_later_segment_synced_first_does_not_move_the_watermark() {
        let mut w = Watermark::default();
        for s in 0..20 {
            w.taken(s, s * 10);
        }
        // Segment B (frames 14..20) finishes its fsync before segment A (7..14).
        for s in 0..7 {
            w.durable(s);
        }
        for s in 14..20 {
            w.durable(s);
        }
        assert_eq!(w.advance(), Some(6));
        assert_eq!(w.mark(), Some(6));
        for s in 7..14 {
            assert_eq!(w.durable(s), Some(s * 10));
        }
        assert_eq!(w.advance(), Some(19));
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn dropped_frames_are_passed_but_rewrites_are_waited_for() {
        let mut w = Watermark::default();
        for s in 0..6 {
            w.taken(s, 0);
        }
        w.dropped(0);
        w.durable(1);
        w.durable(2);
        // Frame 3's write was in flight when an fsync failed: it is written again.
        w.taken(3, 0);
        w.durable(4);
        w.durable(5);
        assert_eq!(w.advance(), Some(2));
        w.durable(3);
        assert_eq!(w.advance(), Some(5));
        // Numbers never taken (dropped in the queue) are passed once later ones are durable.
        w.taken(9, 0);
        assert_eq!(w.advance(), None);
        w.durable(9);
        assert_eq!(w.advance(), Some(9));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Resolve the frame at this index of those still pending (mod their count).
        Durable(usize),
        Dropped(usize),
        /// Take the frame at this index again (a rewrite after a failed fsync).
        Again(usize),
        Advance,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<usize>().prop_map(Op::Durable),
            1 => any::<usize>().prop_map(Op::Dropped),
            1 => any::<usize>().prop_map(Op::Again),
            2 => Just(Op::Advance),
        ]
    }

    proptest! {
        /// Against a model (a set of frames taken, a set durable or dropped): whatever order
        /// completions come in, the watermark never passes a frame that has not left, never
        /// goes back, and reaches the last frame once all have left.
        #[test]
        fn never_ahead_of_fsync(
            gaps in proptest::collection::vec(1u64..4, 1..60),
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut w = Watermark::default();
            let mut seq = 0;
            let mut taken = Vec::new();
            for g in gaps {
                seq += g;
                w.taken(seq, seq);
                taken.push(seq);
            }
            let mut left = std::collections::BTreeSet::new();
            let mut last_mark = None;
            for op in ops {
                let pending: Vec<u64> =
                    taken.iter().copied().filter(|s| !left.contains(s)).collect();
                match op {
                    Op::Durable(i) if !pending.is_empty() => {
                        let s = pending[i % pending.len()];
                        prop_assert_eq!(w.durable(s), Some(s));
                        left.insert(s);
                    }
                    Op::Dropped(i) if !pending.is_empty() => {
                        let s = pending[i % pending.len()];
                        w.dropped(s);
                        left.insert(s);
                    }
                    Op::Again(i) if !pending.is_empty() => {
                        // Taking a pending frame again changes nothing.
                        w.taken(pending[i % pending.len()], 0);
                    }
                    Op::Advance => {
                        if let Some(m) = w.advance() {
                            prop_assert!(last_mark.is_none_or(|l| m > l));
                            for s in taken.iter().filter(|s| **s <= m) {
                                prop_assert!(left.contains(s), "mark {} passes pending {}", m, s);
                            }
                            last_mark = Some(m);
                        }
                    }
                    _ => {}
                }
            }
            for s in taken.clone() {
                if !left.contains(&s) {
                    w.durable(s);
                }
            }
            w.advance();
            prop_assert_eq!(w.mark(), taken.last().copied());
        }
    }
}
