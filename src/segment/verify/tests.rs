//! Tests of continuity and of recordings checked within their budget.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::continuity::{Continuity, continuity};
use super::recording::MAX_RUNS_IN_RECORDING;
use super::*;
use crate::segment::decode::SeqRuns;

/// Runs of `frames` (seq, log_time) in file order, as one segment's scan makes them.
fn runs_of(frames: &[(u64, u64)]) -> Vec<SeqRun> {
    let mut r = SeqRuns::default();
    for (s, t) in frames {
        r.push(*s, *t);
    }
    r.runs().to_vec()
}

fn drops(d: &[(u64, u64, &str)]) -> Vec<(u64, u64, String)> {
    d.iter().map(|(a, b, r)| (*a, *b, r.to_string())).collect()
}

/// Continuity of frames written in this order, with these drop notices.
fn check(
    frames: &[(u64, u64)],
    d: &[(u64, u64, &str)],
    starts_at_zero: bool,
) -> (Continuity, Vec<Problem>) {
    let mut p = Problems::new(usize::MAX);
    let c = continuity(runs_of(frames), drops(d), starts_at_zero, &mut p);
    assert_eq!(p.more, 0);
    (c, p.list)
}

/// Frames 0..n, one every 10 ns.
fn steady(range: std::ops::Range<u64>) -> Vec<(u64, u64)> {
    range.map(|s| (s, s * 10)).collect()
}

#[test]
fn a_contiguous_recording_is_one_run_and_has_no_problem() {
    let frames = steady(0..1000);
    assert_eq!(runs_of(&frames).len(), 1);
    let (c, p) = check(&frames, &[], true);
    assert_eq!(p, vec![]);
    assert_eq!(
        (c.frames, c.first_seq, c.last_seq),
        (1000, Some(0), Some(999))
    );
}

#[test]
fn missing_frames_are_named_unless_a_notice_explains_them() {
    let mut frames = steady(2..5);
    frames.extend(steady(8..10));
    let (c, p) = check(&frames, &[], true);
    assert_eq!(
        p,
        vec![
            Problem::Missing { first: 0, last: 1 },
            Problem::Missing { first: 5, last: 7 }
        ]
    );
    assert_eq!(c.missing, vec![(0, 1), (5, 7)]);
    let (_, p) = check(&frames, &[(5, 7, "queue_full")], false);
    assert_eq!(p, vec![], "from its first frame, notice explaining the gap");
}

#[test]
fn a_frame_written_twice_is_a_duplicate_and_a_range_says_so_once() {
    // 0..=9, then 4 again, then 6..=8 again (a rewrite after a failed fsync, say).
    let mut frames = steady(0..10);
    frames.push((4, 40));
    frames.extend(steady(6..9));
    let (c, p) = check(&frames, &[], true);
    assert_eq!(
        p,
        vec![
            Problem::Duplicate { seq: 4, count: 2 },
            Problem::DuplicateRange {
                first: 6,
                last: 8,
                count: 2
            },
        ]
    );
    assert_eq!(c.frames, 10, "distinct frames");
    assert_eq!(
        Problem::DuplicateRange {
            first: 6,
            last: 8,
            count: 2
        }
        .to_string(),
        "frames 6..=8 are written 2 times each"
    );
}

#[test]
fn frames_dropped_twice_and_written_and_dropped() {
    let frames = steady(0..5);
    let (c, p) = check(
        &frames,
        &[(3, 6, "queue_full"), (6, 8, "lost"), (9, 9, "lost")],
        true,
    );
    assert_eq!(
        p,
        vec![
            Problem::WrittenAndDropped {
                seq: 3,
                reason: "queue_full".into()
            },
            Problem::DroppedTwice { first: 6, last: 6 },
        ]
    );
    assert_eq!(c.dropped["queue_full"], 4);
    assert_eq!(c.dropped["lost"], 4);
    assert_eq!(c.last_seq, Some(9));
}

#[test]
fn frames_out_of_order_are_fine_while_time_goes_forward() {
    // Written 0..=4, 8..=9, 5..=7: three runs, sequence order restores the times.
    let mut frames = steady(0..5);
    frames.extend(steady(8..10));
    frames.extend(steady(5..8));
    assert_eq!(runs_of(&frames).len(), 3);
    let (c, p) = check(&frames, &[], true);
    assert_eq!(p, vec![]);
    assert_eq!(c.frames, 10);
}

#[test]
fn time_going_back_is_found_inside_a_run_and_between_runs() {
    // Frame 3 goes back in time (a run splits there); frame 7, in a later segment, too.
    let frames = vec![(0, 0), (1, 10), (2, 20), (3, 15), (4, 30)];
    let later = vec![(5, 40), (6, 50)];
    let again = vec![(7, 45)];
    let mut runs = runs_of(&frames);
    assert_eq!(runs.len(), 2, "{runs:?}");
    runs.extend(runs_of(&later));
    runs.extend(runs_of(&again));
    let mut p = Problems::new(usize::MAX);
    continuity::<String>(runs, vec![], true, &mut p);
    assert_eq!(
        p.list,
        vec![
            Problem::TimeGoesBack {
                seq: 3,
                log_time: 15,
                prev_seq: 2,
                prev_log_time: 20
            },
            Problem::TimeGoesBack {
                seq: 7,
                log_time: 45,
                prev_seq: 6,
                prev_log_time: 50
            },
        ]
    );
}

#[test]
fn problems_past_the_bound_are_counted_not_listed() {
    // Every other frame missing: 1000 gaps.
    let frames: Vec<(u64, u64)> = (0..1000).map(|s| (2 * s + 1, s)).collect();
    let mut p = Problems::new(MAX_LISTED);
    let c = continuity::<String>(runs_of(&frames), vec![], true, &mut p);
    assert_eq!(p.list.len(), MAX_LISTED);
    assert_eq!(p.more, 1000 - MAX_LISTED as u64);
    assert_eq!(c.missing.len(), 1000, "a repair still gets every gap");
}

/// What the per-frame check (the one before runs) finds: written frames one by one.
#[derive(Debug, Default)]
struct Model {
    frames: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    dropped: BTreeMap<String, u64>,
    /// (seq, times written) of each frame written more than once.
    duplicates: Vec<(u64, usize)>,
    time_back: Vec<Problem>,
    written_and_dropped: Vec<Problem>,
    /// Frames named by more than one notice.
    dropped_twice: BTreeSet<u64>,
    missing: Vec<(u64, u64)>,
}

fn model(frames: &[(u64, u64)], drops: &[(u64, u64, String)], starts_at_zero: bool) -> Model {
    let mut m = Model::default();
    let mut written: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (s, t) in frames {
        written.entry(*s).or_default().push(*t);
    }
    m.frames = written.len() as u64;
    m.duplicates = written
        .iter()
        .filter(|(_, t)| t.len() > 1)
        .map(|(s, t)| (*s, t.len()))
        .collect();
    let firsts: Vec<(u64, u64)> = written
        .iter()
        .map(|(s, t)| (*s, *t.iter().min().unwrap()))
        .collect();
    for w in firsts.windows(2) {
        if w[1].1 < w[0].1 {
            m.time_back.push(Problem::TimeGoesBack {
                seq: w[1].0,
                log_time: w[1].1,
                prev_seq: w[0].0,
                prev_log_time: w[0].1,
            });
        }
    }
    let mut drops = drops.to_vec();
    drops.sort_unstable();
    let mut named: BTreeMap<u64, usize> = BTreeMap::new();
    for (a, b, reason) in &drops {
        *m.dropped.entry(reason.clone()).or_insert(0) += b - a + 1;
        if let Some(s) = (*a..=*b).find(|s| written.contains_key(s)) {
            m.written_and_dropped.push(Problem::WrittenAndDropped {
                seq: s,
                reason: reason.clone(),
            });
        }
        for s in *a..=*b {
            *named.entry(s).or_insert(0) += 1;
        }
    }
    m.dropped_twice = named
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    let covered: BTreeSet<u64> = written.keys().chain(named.keys()).copied().collect();
    m.first_seq = covered.first().copied();
    m.last_seq = covered.last().copied();
    if let Some(last) = m.last_seq {
        let start = if starts_at_zero {
            0
        } else {
            m.first_seq.unwrap()
        };
        for s in start..=last {
            if covered.contains(&s) {
                continue;
            }
            match m.missing.last_mut() {
                Some(r) if r.1 + 1 == s => r.1 = s,
                _ => m.missing.push((s, s)),
            }
        }
    }
    m
}

/// Frames in file order, where the first segment ends, drop notices, starts at zero.
type Inputs = (Vec<(u64, u64)>, usize, Vec<(u64, u64, String)>, bool);

fn inputs() -> impl Strategy<Value = Inputs> {
    let any_order = prop::collection::vec((0u64..60, 0u64..100), 0..80);
    // Distinct frames, mostly in order and mostly forward in time.
    let distinct = prop::collection::btree_set(0u64..80, 0..70)
        .prop_flat_map(|set| {
            let n = set.len();
            (
                Just(set),
                prop::collection::vec(0u64..4, n),
                prop::collection::vec(any::<bool>(), n),
            )
        })
        .prop_map(|(set, jitter, swap)| {
            let mut v: Vec<(u64, u64)> = set
                .iter()
                .zip(&jitter)
                .map(|(s, j)| (*s, s * 3 + j))
                .collect();
            for (i, sw) in swap.iter().enumerate() {
                if *sw && i + 1 < v.len() && i % 7 == 0 {
                    v.swap(i, i + 1);
                }
            }
            v
        });
    let drops = prop::collection::vec(
        (
            0u64..80,
            0u64..6,
            prop::sample::select(vec!["lost", "queue_full"]),
        ),
        0..6,
    )
    .prop_map(|d| {
        d.into_iter()
            .map(|(a, n, r)| (a, a + n, r.to_string()))
            .collect::<Vec<_>>()
    });
    (
        prop_oneof![any_order, distinct],
        any::<prop::sample::Index>(),
        drops,
        any::<bool>(),
    )
        .prop_map(|(f, i, d, z)| {
            let split = i.index(f.len() + 1);
            (f, split, d, z)
        })
}

proptest! {
    #[test]
    fn runs_find_what_the_per_frame_check_finds((frames, split, drops, z) in inputs()) {
        let mut runs = runs_of(&frames[..split]);
        runs.extend(runs_of(&frames[split..]));
        let mut p = Problems::new(usize::MAX);
        let c = continuity(runs, drops.clone(), z, &mut p);
        let m = model(&frames, &drops, z);
        prop_assert_eq!(c.frames, m.frames);
        prop_assert_eq!(c.first_seq, m.first_seq);
        prop_assert_eq!(c.last_seq, m.last_seq);
        prop_assert_eq!(&c.dropped, &m.dropped);
        prop_assert_eq!(&c.missing, &m.missing);

        let kind = |p: &Problem| match p {
            Problem::Duplicate { .. } | Problem::DuplicateRange { .. } => 0,
            Problem::TimeGoesBack { .. } => 1,
            Problem::WrittenAndDropped { .. } => 2,
            Problem::DroppedTwice { .. } => 3,
            Problem::Missing { .. } => 4,
            _ => 5,
        };
        let kinds: Vec<u8> = p.list.iter().map(kind).collect();
        prop_assert!(kinds.windows(2).all(|w| w[0] <= w[1]), "in order: {:?}", p.list);
        let mut duplicates = Vec::new();
        let mut time_back = Vec::new();
        let mut written_and_dropped = Vec::new();
        let mut dropped_twice = BTreeSet::new();
        let mut missing = Vec::new();
        for q in &p.list {
            match q {
                Problem::Duplicate { seq, count } => duplicates.push((*seq, *count)),
                Problem::DuplicateRange { first, last, count } => {
                    prop_assert!(first < last);
                    duplicates.extend((*first..=*last).map(|s| (s, *count)));
                }
                Problem::TimeGoesBack { .. } => time_back.push(q.clone()),
                Problem::WrittenAndDropped { .. } => written_and_dropped.push(q.clone()),
                Problem::DroppedTwice { first, last } => dropped_twice.extend(*first..=*last),
                Problem::Missing { first, last } => missing.push((*first, *last)),
                other => prop_assert!(false, "unexpected {other:?}"),
            }
        }
        prop_assert_eq!(&duplicates, &m.duplicates);
        // Where frames are written twice, the duplicate is the problem: times are compared
        // only where each frame is written once.
        if m.duplicates.is_empty() {
            prop_assert_eq!(&time_back, &m.time_back);
        }
        prop_assert_eq!(&written_and_dropped, &m.written_and_dropped);
        prop_assert_eq!(&dropped_twice, &m.dropped_twice);
        prop_assert_eq!(&missing, &m.missing);
    }
}

/// A segment's scan with one stream, depth (as format v1's), and nothing found yet.
fn depth_only() -> SegmentContents {
    let mut c = SegmentContents::default();
    c.add_stream(1, "depth", "/camera/depth", StreamKind::Image);
    c
}

/// A drop notice for frames `first..=last`.
fn notice(first: u64, last: u64, reason: &str) -> super::super::decode::DropNotice {
    super::super::decode::DropNotice {
        first: crate::frame::FrameSeq(first),
        last: crate::frame::FrameSeq(last),
        reason: super::super::decode::NoticeReason::from_name(reason),
        log_time: 0,
    }
}

#[test]
fn a_recording_of_many_fragmented_segments_keeps_no_more_than_one_budget() {
    use super::super::decode::MAX_RUNS;
    // Segments each under their own cap (MAX_RUNS / 2 runs: alternating numbers), more of
    // them than the recording's budget holds.
    let per = MAX_RUNS as u64 / 2;
    let segments = 2 * (MAX_RUNS_IN_RECORDING as u64 / per) + 2;
    let mut budget = RecordingBudget::default();
    let mut reports = Vec::new();
    let mut kept = 0usize;
    for k in 0..segments {
        let mut c = depth_only();
        for i in 0..per {
            let seq = k * per + (i ^ 1);
            c.push_frame(0, seq, seq);
        }
        c.drop_notice(
            0,
            notice(
                10 * segments * per + k,
                10 * segments * per + k,
                "queue_full",
            ),
        );
        let mut r = report("t", 0, c, Bounded::default());
        budget.admit(&mut r);
        kept += r.contents.streams[0].frames.runs().len();
        reports.push(r);
    }
    assert!(kept <= MAX_RUNS_IN_RECORDING, "{kept} runs kept");
    let r = verify_recording(reports, true);
    assert!(!r.ok);
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::Fragmented { .. })),
        "{:?}",
        r.problems
    );
    assert_eq!(r.frames, segments * per, "frames still counted exactly");
    assert_eq!(r.dropped.get("queue_full"), Some(&segments));
    assert_eq!(r.first_seq, Some(0));
    assert_eq!(r.last_seq, Some(10 * segments * per + segments - 1));
}

#[test]
fn a_scan_past_its_caps_keeps_exact_counts_and_verify_reports_one_problem() {
    use super::super::decode::{MAX_DROPS, MAX_REASONS, MAX_RUNS, OTHER_REASONS};
    let mut c = depth_only();
    // Numbers alternating (1, 0, 3, 2, ...): each frame starts a run.
    let n = MAX_RUNS as u64 + 1000;
    for i in 0..n {
        c.push_frame(0, i ^ 1, i);
    }
    assert_eq!(c.streams[0].frames.runs().len(), MAX_RUNS);
    assert_eq!(c.streams[0].frames.frames(), n);
    assert_eq!(c.streams[0].frames.not_kept(), 1000);
    assert_eq!(
        (c.streams[0].frames.min(), c.streams[0].frames.max()),
        (Some(0), Some(n - 1))
    );
    // Then one notice per other number: half queue_full, half reasons of other writers,
    // more of them than are named one by one.
    let m = MAX_DROPS as u64 + 2 * MAX_REASONS as u64 + 10;
    let reason = |k: u64| {
        if k.is_multiple_of(2) {
            "queue_full".to_string()
        } else {
            format!("other-writer-{k}")
        }
    };
    for k in 0..m {
        c.drop_notice(0, notice(n + 2 * k, n + 2 * k, &reason(k)));
    }
    assert_eq!(c.streams[0].drops.len(), MAX_DROPS);
    assert_eq!(c.streams[0].drops_not_kept, m - MAX_DROPS as u64);
    assert_eq!(
        c.streams[0].dropped_not_kept.len(),
        MAX_REASONS + 1,
        "others lumped"
    );
    assert!(!c.complete());
    let mut want = BTreeMap::new();
    for k in 0..m {
        let r = if k < MAX_DROPS as u64 || c.streams[0].dropped_not_kept.contains_key(&reason(k)) {
            reason(k)
        } else {
            OTHER_REASONS.to_string()
        };
        *want.entry(r).or_insert(0u64) += 1;
    }
    let segment = report("t", 0, c, Bounded::default());
    assert!(segment.ok(), "{:?}", segment.problems);
    assert_eq!(segment.dropped, want);
    assert_eq!(segment.dropped.values().sum::<u64>(), m);

    let r = verify_recording(vec![segment], true);
    assert!(!r.ok);
    assert_eq!(
        r.problems,
        vec![Problem::Fragmented {
            runs: MAX_RUNS,
            notices: MAX_DROPS
        }]
    );
    assert!(
        r.problems[0]
            .to_string()
            .contains("sequence continuity not checked past 262144 runs")
    );
    assert_eq!(r.frames, n);
    assert_eq!(r.dropped, want);
    assert_eq!(r.first_seq, Some(0));
    assert_eq!(r.last_seq, Some(n + 2 * (m - 1)));
    assert!(r.missing.is_empty());
    assert!(r.segments[0].contents.streams[0].frames.runs().is_empty());
}

#[test]
fn a_scan_within_its_caps_is_checked_as_before() {
    let mut c = depth_only();
    for i in 0..1000u64 {
        c.push_frame(0, i ^ 1, i);
    }
    c.drop_notice(0, notice(1000, 1000, "queue_full"));
    assert!(c.complete());
    let r = verify_recording(vec![report("t", 0, c, Bounded::default())], true);
    // 0 after 1: a time going back at each join, not fragmentation.
    assert!(
        !r.problems
            .iter()
            .any(|p| matches!(p, Problem::Fragmented { .. }))
    );
    assert_eq!((r.frames, r.last_seq), (1000, Some(1000)));
}

#[test]
fn a_notice_reason_is_small_and_an_unknown_one_bounded() {
    use super::super::decode::{DropNotice, MAX_REASON_BYTES};
    assert!(std::mem::size_of::<DropNotice>() <= 40);
    assert_eq!(
        NoticeReason::from_name("queue_full"),
        NoticeReason::Known(crate::frame::DropReason::QueueFull)
    );
    let long = "é".repeat(MAX_REASON_BYTES);
    let r = NoticeReason::from_name(&long);
    assert!(matches!(r, NoticeReason::Other(_)));
    assert!(r.as_str().len() <= MAX_REASON_BYTES && long.starts_with(r.as_str()));
    // Ordered as names, as the strings they replace were.
    assert!(NoticeReason::from_name("lost") < NoticeReason::from_name("other"));
    assert!(NoticeReason::from_name("other") < NoticeReason::from_name("queue_full"));
}
