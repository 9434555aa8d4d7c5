//! Observation, beside the data path: counters and gauges as atomics, latency histograms owned
//! by whoever records into them, and the snapshot that merges them off the hot path.
//!
//! The hot path touches only [`Counters`] (relaxed atomics) and a [`Histograms`] owned by
//! one writer task. Everything else (merging, formatting, serving) happens elsewhere.

mod counters;
mod histograms;
mod prometheus;
mod snapshot;

pub use counters::{ControlCounters, ControlReject, Counters};
pub use histograms::{
    HIGHEST_TRACKABLE, Histograms, Percentiles, Published, SIGNIFICANT_DIGITS, SharedHistograms,
    record,
};
pub use prometheus::{FRAMES_PER_WRITE_BUCKETS, LATENCY_BUCKETS_S, prometheus_text};
pub use snapshot::{Snapshot, StreamStats, fmt_ns};

/// CPU time (user + system) used so far by `who`: the process (`RUSAGE_SELF`) or the calling
/// thread (`RUSAGE_THREAD`); zero if the kernel will not say.
pub fn cpu_time(who: nix::sys::resource::UsageWho) -> std::time::Duration {
    let tv = |t: nix::sys::time::TimeVal| {
        std::time::Duration::new(t.tv_sec().max(0) as u64, t.tv_usec().max(0) as u32 * 1000)
    };
    nix::sys::resource::getrusage(who).map_or(std::time::Duration::ZERO, |u| {
        tv(u.user_time()) + tv(u.system_time())
    })
}

#[cfg(test)]
mod tests {
    use super::histograms::histogram;
    use super::*;

    #[test]
    fn durable_seq_starts_unset() {
        let c = Counters::default();
        assert_eq!(c.durable_seq(), None);
        c.set_durable_seq(0);
        assert_eq!(c.durable_seq(), Some(0));
    }

    #[test]
    fn percentiles_of_known_values() {
        let mut h = histogram();
        for v in 1..=1000u64 {
            record(&mut h, v * 1000);
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((499_000..=501_000).contains(&p.p50), "{p:?}");
        assert!(p.max >= 999_000, "{p:?}");
        assert_eq!(fmt_ns(1_500_000), "1.5ms");
    }

    /// The stats_reply fuzz target's regression (fuzz/regressions/stats_reply/): a reply whose
    /// drop counts add past u64::MAX made `framerec stats` panic (debug) or print a wrapped total.
    #[test]
    fn a_crafted_reply_does_not_overflow_the_drop_total() {
        let reply =
            include_bytes!("../../fuzz/regressions/stats_reply/dropped-total-overflows.json");
        let s = crate::serve::parse_snapshot(reply).unwrap();
        assert_eq!(s.dropped_total(), u64::MAX);
        assert!(s.log_line(None).contains("dropped 18446744073709551615"));
    }
}
