//! systemd integration: the notify protocol (`READY=1`, `STATUS=`, `WATCHDOG=1`,
//! `RELOADING=1`, `STOPPING=1`), driven by the recorder's supervision loop. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call does nothing.
//!
//! The watchdog is fed by the writers' progress, not by a timer: a ping goes out only if a
//! write completed since the previous ping, or the writers have nothing to do. If
//! the writers are stuck (a hung disk), the pings stop and systemd's `WatchdogSec=` fires.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// What the watchdog looks at: whether the writers moved since last time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Writes completed so far.
    pub completed: u64,
    /// Nothing queued, nothing in the writers' hands, nothing in flight.
    pub idle: bool,
}

/// How often `STATUS=` is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

pub struct Notifier {
    enabled: bool,
    ready: bool,
    stopping: bool,
    /// Ping period (half of `WatchdogSec=`), when the watchdog is on.
    ping_every: Option<Duration>,
    last_ping: Instant,
    /// Completed count at the last ping.
    last_completed: u64,
    last_status: Option<Instant>,
    withheld: bool,
}

impl Notifier {
    /// A notifier for this process: on when `$NOTIFY_SOCKET` is set, watchdog per
    /// `$WATCHDOG_USEC` (and `$WATCHDOG_PID`).
    pub fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        Notifier {
            enabled,
            ready: false,
            stopping: false,
            ping_every: sd_notify::watchdog_enabled()
                .filter(|_| enabled)
                .map(|d| (d / 2).max(Duration::from_millis(10))),
            last_ping: Instant::now(),
            last_completed: 0,
            last_status: None,
            withheld: false,
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// `READY=1` with a first status, once.
    pub fn ready(&mut self, status: &str) {
        if self.ready {
            return;
        }
        self.ready = true;
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_status = Some(Instant::now());
        self.last_ping = Instant::now();
    }

    /// `STATUS=` when the last one is older than [`STATUS_EVERY`]; `status` is only built then.
    pub fn status(&mut self, status: impl FnOnce() -> String) {
        if !self.enabled || !self.ready {
            return;
        }
        if self.last_status.is_some_and(|t| t.elapsed() < STATUS_EVERY) {
            return;
        }
        self.send(&[NotifyState::Status(&status())]);
        self.last_status = Some(Instant::now());
    }

    /// Pings the watchdog if it is due and the writers made progress (or had nothing to do).
    pub fn watchdog(&mut self, p: Progress) {
        let Some(every) = self.ping_every else {
            return;
        };
        if !self.ready || self.last_ping.elapsed() < every {
            return;
        }
        if p.completed != self.last_completed || p.idle {
            self.send(&[NotifyState::Watchdog]);
            self.last_completed = p.completed;
            self.last_ping = Instant::now();
            if std::mem::take(&mut self.withheld) {
                tracing::info!("the writers are making progress again; watchdog pings resumed");
            }
        } else if !self.withheld {
            self.withheld = true;
            tracing::warn!(
                stalled_for = ?self.last_ping.elapsed(),
                "the writers made no progress since the last watchdog ping; withholding pings (systemd restarts the service when WatchdogSec= passes)"
            );
        }
    }

    pub fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        if let Ok(now) = NotifyState::monotonic_usec_now() {
            states.push(now);
        }
        self.send(&states);
    }

    /// `READY=1` after a reload, with the new status.
    pub fn reloaded(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_status = Some(Instant::now());
    }

    /// `STOPPING=1`, once.
    pub fn stopping(&mut self, status: &str) {
        if std::mem::replace(&mut self.stopping, true) {
            return;
        }
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }
}
