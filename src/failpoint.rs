//! Failpoints: a test seam that kills the process at a named step, to prove that every step of
//! a multi-step change on disk (repair, for one) leaves something the next run can finish.
//!
//! `FRAMEREC_FAILPOINT=NAME` (or `NAME@N`, the N-th time it is reached, from 1) makes [`hit`]
//! send SIGKILL to the process at that point: no destructor, no flush, as in a crash. Unset, a
//! failpoint costs one load of a cached value.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Armed {
    name: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let v = std::env::var("FRAMEREC_FAILPOINT").ok()?;
            let (name, nth) = match v.split_once('@') {
                Some((n, k)) => (n, k.parse().ok()?),
                None => (v.as_str(), 1),
            };
            Some(Armed {
                name: name.to_string(),
                nth,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Kills the process here if `FRAMEREC_FAILPOINT` names this point (and this is the N-th hit).
pub(crate) fn hit(name: &str) {
    if let Some(a) = armed()
        && a.name == name
        && a.seen.fetch_add(1, Ordering::Relaxed) + 1 == a.nth
    {
        tracing::warn!(failpoint = name, "failpoint: killing the process");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
