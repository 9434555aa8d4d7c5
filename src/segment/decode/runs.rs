//! Bounded lists and runs of sequence numbers: what a scan keeps of a segment in memory that
//! does not grow with its size.

/// How many entries a bounded list keeps; the rest are only counted.
pub const MAX_LISTED: usize = 100;

/// The first [`MAX_LISTED`] items pushed, and a count of the others: what a scan of a crafted
/// file with a million damaged chunks keeps of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounded<T> {
    items: Vec<T>,
    more: u64,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded {
            items: Vec::new(),
            more: 0,
        }
    }
}

impl<T> Bounded<T> {
    pub fn push(&mut self, item: T) {
        if self.items.len() < MAX_LISTED {
            self.items.push(item);
        } else {
            self.more += 1;
        }
    }
    /// The items kept, in the order pushed.
    pub fn items(&self) -> &[T] {
        &self.items
    }
    /// How many items were pushed but not kept.
    pub fn more(&self) -> u64 {
        self.more
    }
    /// How many items were pushed.
    pub fn total(&self) -> u64 {
        self.items.len() as u64 + self.more
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<T: PartialEq> Bounded<T> {
    /// Whether `item` is among the items kept.
    pub fn contains(&self, item: &T) -> bool {
        self.items.contains(item)
    }
}

impl<'a, T> IntoIterator for &'a Bounded<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// Frames written one after another (in file order) with consecutive sequence numbers and log
/// times that never go back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRun {
    pub first: u64,
    pub last: u64,
    /// Log time of the first frame.
    pub first_time: u64,
    /// Log time of the last frame.
    pub last_time: u64,
}

impl SeqRun {
    pub fn frames(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// How many runs of frames a scan of one segment keeps ([`SeqRuns`]), and how many drop
/// notices ([`StreamContents::drops`](super::StreamContents::drops)), over all its streams:
/// past them it only counts (guarantee 6: a crafted file whose sequence numbers alternate
/// makes one run per frame). 2^18 runs (32 bytes each) and
/// 2^18 notices keep a segment's scan under ~30 MiB.
pub const MAX_RUNS: usize = 1 << 18;
/// See [`MAX_RUNS`].
pub const MAX_DROPS: usize = 1 << 18;

/// The sequence numbers of written frames as runs, merged as they come: a frame extends the
/// last run when its number is one above the run's last and its log time is not before the
/// run's last; anything else (a gap, a number not above the last: a duplicate or a frame out
/// of order, a time going back) starts a new run. A recording is one run per segment but for
/// its gaps, so memory follows the gaps, not the frames; at most [`MAX_RUNS`] runs are kept,
/// the frames after them only counted ([`SeqRuns::not_kept`]), their lowest and highest number
/// still exact.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqRuns {
    runs: Vec<SeqRun>,
    frames: u64,
    min: Option<u64>,
    max: Option<u64>,
    not_kept: u64,
}

impl SeqRuns {
    pub fn push(&mut self, seq: u64, log_time: u64) {
        self.push_within(seq, log_time, MAX_RUNS);
    }

    /// [`SeqRuns::push`] keeping at most `cap` runs (a share of [`MAX_RUNS`] left by other
    /// streams).
    pub fn push_within(&mut self, seq: u64, log_time: u64, cap: usize) {
        self.frames += 1;
        self.min = Some(self.min.map_or(seq, |m| m.min(seq)));
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
        if self.not_kept > 0 {
            self.not_kept += 1;
            return;
        }
        if let Some(r) = self.runs.last_mut()
            && r.last.checked_add(1) == Some(seq)
            && log_time >= r.last_time
        {
            r.last = seq;
            r.last_time = log_time;
            return;
        }
        if self.runs.len() >= cap {
            self.not_kept = 1;
            return;
        }
        self.runs.push(SeqRun {
            first: seq,
            last: seq,
            first_time: log_time,
            last_time: log_time,
        });
    }
    /// The runs kept: all of them unless [`SeqRuns::not_kept`] is above 0.
    pub fn runs(&self) -> &[SeqRun] {
        &self.runs
    }
    pub fn into_runs(self) -> Vec<SeqRun> {
        self.runs
    }
    /// Frames pushed (a duplicate counts each time).
    pub fn frames(&self) -> u64 {
        self.frames
    }
    /// Frames pushed after [`MAX_RUNS`] runs were kept (or after [`SeqRuns::forget`]): in
    /// no run.
    pub fn not_kept(&self) -> u64 {
        self.not_kept
    }
    /// Keeps the counts, frees the runs: every frame is then one not kept.
    pub fn forget(&mut self) {
        self.not_kept = self.frames;
        self.runs = Vec::new();
    }
    pub fn min(&self) -> Option<u64> {
        self.min
    }
    pub fn max(&self) -> Option<u64> {
        self.max
    }
    /// Whether no frame was pushed.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }
}
