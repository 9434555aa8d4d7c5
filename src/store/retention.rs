//! Which files of a recording directory retention deletes: pure code, the policy in one place.
//!
//! The oldest files go first, in (segment id, side files before their segment) order, while
//! everything listed (segments *and* the damaged originals repair kept aside, which hold disk
//! space too) holds more than the byte limit, or while the oldest was last written longer ago
//! than the age limit. Never deleted: any file of a segment still open (id at or after the
//! first open one) and the newest segment, whatever the limits; the walk stops at the first of
//! them, so what remains is always the newest part of the recording.

use std::time::{Duration, SystemTime};

use super::FileKind;

/// Retention limits; None is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_total_bytes: Option<u64>,
    pub max_age: Option<Duration>,
}

/// One file as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub id: u64,
    pub kind: FileKind,
    pub len: u64,
    pub modified: SystemTime,
}

/// Indices into `files` of what to delete, in the order to delete them. `first_open` is the
/// lowest id of a segment still open (`u64::MAX` when none is); `now` is the time ages are
/// measured at.
#[must_use]
pub fn to_delete(files: &[Entry], limits: Limits, first_open: u64, now: SystemTime) -> Vec<usize> {
    if limits.max_total_bytes.is_none() && limits.max_age.is_none() {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| (files[i].id, files[i].kind));
    let newest_segment = files
        .iter()
        .filter(|f| f.kind == FileKind::Segment)
        .map(|f| f.id)
        .max();
    let mut total: u64 = files.iter().map(|f| f.len).fold(0, u64::saturating_add);
    let mut out = Vec::new();
    for i in order {
        let f = &files[i];
        if f.id >= first_open || (f.kind == FileKind::Segment && Some(f.id) == newest_segment) {
            break;
        }
        let too_big = limits.max_total_bytes.is_some_and(|b| total > b);
        let too_old = limits
            .max_age
            .is_some_and(|a| now.duration_since(f.modified).is_ok_and(|age| age > a));
        if !(too_big || too_old) {
            break;
        }
        total = total.saturating_sub(f.len);
        out.push(i);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        T0 + Duration::from_secs(s)
    }

    fn seg(id: u64, len: u64) -> Entry {
        Entry {
            id,
            kind: FileKind::Segment,
            len,
            modified: at(100 + id),
        }
    }

    fn side(id: u64, len: u64) -> Entry {
        Entry {
            kind: FileKind::Side,
            ..seg(id, len)
        }
    }

    fn bytes(b: u64) -> Limits {
        Limits {
            max_total_bytes: Some(b),
            max_age: None,
        }
    }

    #[test]
    fn side_files_count_and_go_before_their_segment() {
        // 0, 0.damaged, 1, 1.damaged, 2: 50 bytes; the limit 30 leaves 2 and 1.
        let files = [seg(0, 10), side(0, 10), seg(1, 10), side(1, 10), seg(2, 10)];
        let del = to_delete(&files, bytes(30), u64::MAX, at(0));
        assert_eq!(del, vec![1, 0], "0.damaged then 0");
        let del = to_delete(&files, bytes(20), u64::MAX, at(0));
        assert_eq!(del, vec![1, 0, 3], "then 1.damaged, before its segment");
    }

    #[test]
    fn a_side_file_alone_still_counts() {
        // Segment 1 was emptied by repair: only its damaged original is left.
        let files = [seg(0, 10), side(1, 50), seg(2, 10)];
        let del = to_delete(&files, bytes(20), u64::MAX, at(0));
        assert_eq!(del, vec![0, 1]);
    }

    #[test]
    fn open_segments_and_the_newest_stay() {
        let files = [side(0, 100), seg(0, 100), seg(1, 100), seg(2, 100)];
        assert_eq!(to_delete(&files, bytes(0), 1, at(0)), vec![0, 1]);
        assert_eq!(to_delete(&files, bytes(0), u64::MAX, at(0)), vec![0, 1, 2]);
        assert_eq!(to_delete(&files, bytes(0), 0, at(0)), Vec::<usize>::new());
    }

    #[test]
    fn age_deletes_the_old_ones_only() {
        let files = [side(0, 1), seg(0, 1), seg(1, 1), seg(2, 1)];
        let limits = Limits {
            max_total_bytes: None,
            max_age: Some(Duration::from_secs(10)),
        };
        // Modified at 100, 100, 101, 102; at 112 the first three are older than 10 s.
        assert_eq!(to_delete(&files, limits, u64::MAX, at(112)), vec![0, 1, 2]);
        assert_eq!(to_delete(&files, limits, u64::MAX, at(111)), vec![0, 1]);
        assert!(to_delete(&files, Limits::default(), u64::MAX, at(999)).is_empty());
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (0u64..8, any::<bool>(), 0u64..1000, 0u64..100).prop_map(|(id, is_side, len, m)| Entry {
            id,
            kind: if is_side {
                FileKind::Side
            } else {
                FileKind::Segment
            },
            len,
            modified: at(m),
        })
    }

    proptest! {
        #[test]
        fn deletes_an_oldest_first_prefix_that_respects_the_limits(
            files in proptest::collection::vec(entry(), 0..24),
            limit in proptest::option::of(0u64..6000),
            age in proptest::option::of(0u64..100),
            first_open in prop_oneof![Just(u64::MAX), 0u64..9],
        ) {
            let limits = Limits { max_total_bytes: limit, max_age: age.map(Duration::from_secs) };
            let now = at(100);
            let del = to_delete(&files, limits, first_open, now);
            let key = |i: usize| (files[i].id, files[i].kind);
            // No index twice; deleted in (id, side-before-segment) order.
            prop_assert!(del.windows(2).all(|w| key(w[0]) <= key(w[1]) && w[0] != w[1]));
            let gone: std::collections::HashSet<usize> = del.iter().copied().collect();
            let newest = files.iter().filter(|f| f.kind == FileKind::Segment).map(|f| f.id).max();
            for &i in &del {
                let f = &files[i];
                prop_assert!(f.id < first_open, "an open segment's file");
                prop_assert!(!(f.kind == FileKind::Segment && Some(f.id) == newest), "the newest segment");
            }
            // A prefix: everything that sorts before a deleted file is deleted too.
            if let Some(&last) = del.last() {
                for i in 0..files.len() {
                    if key(i) < key(last) {
                        prop_assert!(gone.contains(&i), "{i} sorts before a deleted file");
                    }
                }
            }
            // Every side file of a deleted segment is deleted with it.
            for &i in &del {
                if files[i].kind == FileKind::Segment {
                    for (j, f) in files.iter().enumerate() {
                        if f.kind == FileKind::Side && f.id <= files[i].id {
                            prop_assert!(gone.contains(&j));
                        }
                    }
                }
            }
            // It stopped for a reason: nothing left, a protected file, or within both limits.
            let kept: u64 = (0..files.len()).filter(|i| !gone.contains(i)).map(|i| files[i].len).sum();
            let next = (0..files.len()).filter(|i| !gone.contains(i)).min_by_key(|&i| key(i));
            if let Some(n) = next {
                let f = &files[n];
                let protected = f.id >= first_open
                    || (f.kind == FileKind::Segment && Some(f.id) == newest);
                let old = limits.max_age.is_some_and(|a| now.duration_since(f.modified).is_ok_and(|x| x > a));
                let big = limits.max_total_bytes.is_some_and(|b| kept > b);
                prop_assert!(protected || !(old || big) || (limit.is_none() && age.is_none()));
            }
            if limits.max_total_bytes.is_none() && limits.max_age.is_none() {
                prop_assert!(del.is_empty());
            }
        }
    }
}
