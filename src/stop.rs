//! Why a run stops early. The user asks (a signal, or a caller setting the flag it handed the
//! recorder), or the writers cannot go on (the disk failed). Both stop the receiver the same
//! way, through one flag that sources poll, but the run reports which it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::pipeline::receiver::StopReason;

/// The stop request of one run. See the module docs.
///
/// # Threading
/// Set from any thread (signal handlers set the flag directly); read by the receiver, the
/// source and the supervision loop.
#[derive(Debug)]
pub struct Stop {
    /// Shared with the signal handlers and the caller; set by [`Stop::disk_failed`] too.
    flag: Arc<AtomicBool>,
    disk_failed: AtomicBool,
}

impl Stop {
    /// A stop request behind `flag`, which the caller (and its signal handlers) may set.
    pub fn new(flag: Arc<AtomicBool>) -> Arc<Stop> {
        Arc::new(Stop {
            flag,
            disk_failed: AtomicBool::new(false),
        })
    }

    /// The flag a source polls while it waits.
    pub fn flag(&self) -> &AtomicBool {
        &self.flag
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// The writers cannot go on: stop receiving.
    pub fn disk_failed(&self) {
        self.disk_failed.store(true, Ordering::Release);
        self.flag.store(true, Ordering::Release);
    }

    /// Why the run was asked to stop, once it was.
    pub fn reason(&self) -> StopReason {
        if self.disk_failed.load(Ordering::Acquire) {
            StopReason::DiskFailure
        } else {
            StopReason::Signal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_failure_is_told_apart_from_a_signal() {
        let flag = Arc::new(AtomicBool::new(false));
        let stop = Stop::new(flag.clone());
        assert!(!stop.is_set());
        flag.store(true, Ordering::Relaxed);
        assert!(stop.is_set());
        assert_eq!(stop.reason(), StopReason::Signal);
        let stop = Stop::new(Arc::new(AtomicBool::new(false)));
        stop.disk_failed();
        assert!(stop.is_set() && stop.flag().load(Ordering::Relaxed));
        assert_eq!(stop.reason(), StopReason::DiskFailure);
    }
}
