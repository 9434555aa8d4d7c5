//! Waiting for room without polling: a thread that must wait (the receiver under
//! `overflow = "block"`) sleeps on a condition variable until whoever frees room (a buffer
//! returned to its pool, a frame popped from the queue) wakes it. Freeing room costs one atomic
//! load when nobody waits.

use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Wakes threads waiting for a condition another thread makes true.
///
/// # Threading
/// Any thread may wait or notify.
#[derive(Debug, Default)]
pub struct Wake {
    waiting: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Wake {
    /// The condition may have become true: wakes the waiters, if any.
    pub fn notify(&self) {
        // Pairs with the fence in `wait_for`: either the waiter sees the change when it checks
        // again, or this sees the waiter and wakes it.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.cv.notify_all();
        }
    }

    /// `ready()`'s value as soon as it has one, waiting at most about `timeout` for it (the
    /// caller checks its own reasons to stop between calls).
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if let Some(v) = ready() {
            return Some(v);
        }
        let deadline = Instant::now() + timeout;
        let mut held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.waiting.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // A wake-up may be for a change another caller already took: look again until the
        // deadline.
        let got = loop {
            if let Some(v) = ready() {
                break Some(v);
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            held = self
                .cv
                .wait_timeout(held, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        drop(held);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_waiter_wakes_when_notified_not_at_its_timeout() {
        let wake = Arc::new(Wake::default());
        let flag = Arc::new(AtomicBool::new(false));
        let (w, f) = (wake.clone(), flag.clone());
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            f.store(true, Ordering::SeqCst);
            w.notify();
        });
        let started = Instant::now();
        let got = wake.wait_for(Duration::from_secs(10), || {
            flag.load(Ordering::SeqCst).then_some(())
        });
        assert_eq!(got, Some(()));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        t.join().unwrap();
    }

    #[test]
    fn without_a_notification_it_gives_up_at_the_timeout() {
        let wake = Wake::default();
        let started = Instant::now();
        assert_eq!(
            wake.wait_for(Duration::from_millis(30), || None::<()>),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn no_wakeup_is_lost_between_many_threads() {
        // A producer frees room 10,000 times, one unit at a time; the consumer takes each as it
        // comes. A lost wake-up would cost the whole 10 s timeout.
        let wake = Arc::new(Wake::default());
        let room = Arc::new(AtomicUsize::new(0));
        let (w, r) = (wake.clone(), room.clone());
        let producer = std::thread::spawn(move || {
            for _ in 0..10_000 {
                while r.load(Ordering::SeqCst) > 0 {
                    std::hint::spin_loop();
                }
                r.fetch_add(1, Ordering::SeqCst);
                w.notify();
            }
        });
        let started = Instant::now();
        for _ in 0..10_000 {
            let got = wake.wait_for(Duration::from_secs(10), || {
                room.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .ok()
            });
            assert!(got.is_some());
        }
        producer.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
