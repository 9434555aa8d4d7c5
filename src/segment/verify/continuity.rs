//! Sequence continuity over runs of frames and drop notices: duplicates, time going back,
//! frames both written and dropped, dropped twice, and missing.

use super::*;

/// What the continuity check found besides its problems.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Continuity {
    /// Distinct frames written.
    pub(super) frames: u64,
    pub(super) dropped: BTreeMap<String, u64>,
    pub(super) first_seq: Option<u64>,
    pub(super) last_seq: Option<u64>,
    pub(super) missing: Vec<(u64, u64)>,
}

/// Continuity over runs of written frames (any order) and drop notices (first, last, reason):
/// every frame number from the start (0 when `starts_at_zero`) to the highest is written once
/// or named in exactly one drop notice, and log times do not go back as frame numbers go up.
/// Problems come in this order: frames written more than once, times going back, frames both
/// written and dropped, frames dropped twice, frames missing; each kind in frame order.
///
/// Where runs overlap (a frame written twice), the log times of the frames they share are not
/// compared: the duplicate is the problem reported.
pub(super) fn continuity<R: Ord + AsRef<str>>(
    mut runs: Vec<SeqRun>,
    mut drops: Vec<(u64, u64, R)>,
    starts_at_zero: bool,
    problems: &mut Problems,
) -> Continuity {
    runs.sort_unstable_by_key(|r| (r.first, r.last, r.first_time));
    drops.sort_unstable();

    duplicates(&runs, problems);
    times_at_joins(&runs, problems);
    let written = written_ranges(&runs);
    drop(runs);
    let frames = written.iter().map(|(a, b)| b - a + 1).sum();
    let dropped = check_drops(&drops, &written, problems);
    let (first_seq, last_seq, missing) = missing(&written, &drops, starts_at_zero, problems);
    Continuity {
        frames,
        dropped,
        first_seq,
        last_seq,
        missing,
    }
}

/// Frames written more than once: how many runs hold each frame, by a sweep over the starts
/// and ends of each cluster of overlapping runs (`runs` sorted; a run that overlaps none needs
/// none).
fn duplicates(runs: &[SeqRun], problems: &mut Problems) {
    let mut dup: Option<(u64, u64, i64)> = None;
    let mut events: Vec<(u64, i64)> = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        let mut reach = runs[i].last;
        let mut j = i + 1;
        while j < runs.len() && runs[j].first <= reach {
            reach = reach.max(runs[j].last);
            j += 1;
        }
        if j - i > 1 {
            events.clear();
            for r in &runs[i..j] {
                events.push((r.first, 1));
                if let Some(end) = r.last.checked_add(1) {
                    events.push((end, -1));
                }
            }
            events.sort_unstable();
            let mut depth = 0i64;
            let mut e = 0;
            while e < events.len() {
                let at = events[e].0;
                while e < events.len() && events[e].0 == at {
                    depth += events[e].1;
                    e += 1;
                }
                // Frames at..next are held by `depth` runs.
                let Some(&(next, _)) = events.get(e) else {
                    break;
                };
                if depth >= 2 {
                    dup = match dup {
                        Some((a, b, n)) if n == depth && b + 1 == at => Some((a, next - 1, n)),
                        Some(d) => {
                            problems.push(duplicate(d));
                            Some((at, next - 1, depth))
                        }
                        None => Some((at, next - 1, depth)),
                    };
                }
            }
        }
        i = j;
    }
    drop(events);
    if let Some(d) = dup {
        problems.push(duplicate(d));
    }
}

/// Log times going back at the joins of runs that do not overlap (within a run they never go
/// back).
fn times_at_joins(runs: &[SeqRun], problems: &mut Problems) {
    let mut prev: Option<SeqRun> = None;
    for r in runs {
        if let Some(p) = prev
            && r.first > p.last
            && r.first_time < p.last_time
        {
            problems.push(Problem::TimeGoesBack {
                seq: r.first,
                log_time: r.first_time,
                prev_seq: p.last,
                prev_log_time: p.last_time,
            });
        }
        prev = match prev {
            Some(p) if p.last >= r.last => Some(p),
            _ => Some(*r),
        };
    }
}

/// The frames written, as sorted disjoint ranges (`runs` sorted).
fn written_ranges(runs: &[SeqRun]) -> Vec<(u64, u64)> {
    let mut written: Vec<(u64, u64)> = Vec::new();
    for r in runs {
        match written.last_mut() {
            Some(w) if r.first <= w.1.saturating_add(1) => w.1 = w.1.max(r.last),
            _ => written.push((r.first, r.last)),
        }
    }

    written
}

/// The frames dropped, by reason; a frame both written and dropped, and a frame dropped
/// twice, are problems (`drops` sorted by first).
fn check_drops<R: AsRef<str>>(
    drops: &[(u64, u64, R)],
    written: &[(u64, u64)],
    problems: &mut Problems,
) -> BTreeMap<String, u64> {
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for (first, last, reason) in drops {
        let n = (last - first).saturating_add(1);
        match dropped.get_mut(reason.as_ref()) {
            Some(d) => *d += n,
            None => {
                dropped.insert(reason.as_ref().to_string(), n);
            }
        }
        let lo = written.partition_point(|w| w.1 < *first);
        if let Some(w) = written.get(lo).filter(|w| w.0 <= *last) {
            problems.push(Problem::WrittenAndDropped {
                seq: w.0.max(*first),
                reason: reason.as_ref().to_string(),
            });
        }
    }
    // Drop notices must not overlap: a frame is dropped once. (`drops` is sorted by first.)
    let mut reach: Option<u64> = None;
    for (first, last, _) in drops {
        if let Some(r) = reach
            && *first <= r
        {
            problems.push(Problem::DroppedTwice {
                first: *first,
                last: (*last).min(r),
            });
        }
        reach = Some(reach.map_or(*last, |r| r.max(*last)));
    }
    dropped
}

/// Walks the sequence space (written and dropped ranges merged): every number from the start
/// is written or dropped; a gap is missing. Returns the first and last frame numbers seen and
/// the gaps.
fn missing<R>(
    written: &[(u64, u64)],
    drops: &[(u64, u64, R)],
    starts_at_zero: bool,
    problems: &mut Problems,
) -> (Option<u64>, Option<u64>, Vec<(u64, u64)>) {
    // Frames written and frames dropped, both sorted: merged as they are walked.
    let intervals = Merged {
        a: written.iter().copied().peekable(),
        b: drops.iter().map(|(a, b, _)| (*a, *b)).peekable(),
    };
    let first_seq = match (written.first(), drops.first()) {
        (Some(w), Some(d)) => Some(w.0.min(d.0)),
        (w, d) => w.map(|w| w.0).or(d.map(|d| d.0)),
    };
    let last_seq = written
        .last()
        .map(|w| w.1)
        .into_iter()
        .chain(drops.iter().map(|d| d.1))
        .max();
    let mut missing = Vec::new();
    let mut next = if starts_at_zero { Some(0) } else { first_seq };
    for (a, b) in intervals {
        if let Some(n) = next
            && a > n
        {
            problems.push(Problem::Missing {
                first: n,
                last: a - 1,
            });
            missing.push((n, a - 1));
        }
        let after = b.saturating_add(1);
        next = Some(next.map_or(after, |n| n.max(after)));
    }
    (first_seq, last_seq, missing)
}

/// Two sorted iterators of ranges, walked as one sorted one.
struct Merged<A: Iterator<Item = (u64, u64)>, B: Iterator<Item = (u64, u64)>> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = (u64, u64)>, B: Iterator<Item = (u64, u64)>> Iterator for Merged<A, B> {
    type Item = (u64, u64);
    fn next(&mut self) -> Option<(u64, u64)> {
        match (self.a.peek(), self.b.peek()) {
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

/// The problem for frames `first..=last`, each written `count` times.
pub(super) fn duplicate((first, last, count): (u64, u64, i64)) -> Problem {
    let count = count as usize;
    if first == last {
        Problem::Duplicate { seq: first, count }
    } else {
        Problem::DuplicateRange { first, last, count }
    }
}
