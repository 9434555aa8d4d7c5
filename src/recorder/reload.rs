//! What a SIGHUP changes: ONE table of every configuration key, named as
//! `config/framerec.toml` names it, saying whether a reload applies it live or it takes a
//! restart, and how to tell that it changed. The recorder calls [`apply`]; nothing else decides
//! key by key. Tests check the table against the shipped file, the keys the parser accepts, and
//! the README's list of live keys.

use crate::config::{Config, SourceConfig, SourceKind};
use crate::sink::{Live, LiveSettings};
use crate::source::PipeEndpoint;

/// When a changed key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reload {
    /// Applied to the running recorder by the reload.
    Live,
    /// Logged as needing a restart; the running value stays.
    Restart,
}

/// One row of [`KEYS`].
pub(crate) struct Key {
    /// `section.key`, as in `config/framerec.toml`.
    pub name: &'static str,
    pub reload: Reload,
    /// True when the two configurations differ in this key (for a `source.*` key of one kind of
    /// source only: `false` unless both sources have it).
    changed: fn(&Config, &Config) -> bool,
    /// [`Reload::Live`]: copies the key's value from the new configuration into the running one.
    apply: fn(&mut Config, &Config),
}

/// A key held in a field of [`Config`]: `key!(Live, "writer.writers", writer.writers)`.
macro_rules! key {
    (Live, $name:literal, $($field:ident).+) => {
        Key {
            name: $name,
            reload: Reload::Live,
            changed: |a, b| a.$($field).+ != b.$($field).+,
            apply: |running, new| running.$($field).+ = new.$($field).+.clone(),
        }
    };
    (Restart, $name:literal, $($field:ident).+) => {
        Key {
            name: $name,
            reload: Reload::Restart,
            changed: |a, b| a.$($field).+ != b.$($field).+,
            apply: |_, _| {},
        }
    };
}

/// A `source.*` key, read by `$get` from the sources that have it (`None` from the others).
/// Every source key takes a restart: the source is opened once.
macro_rules! source_key {
    ($name:literal, |$s:ident| $get:expr) => {
        Key {
            name: $name,
            reload: Reload::Restart,
            changed: |a, b| {
                let get = |$s: &SourceConfig| $get;
                match (get(&a.source), get(&b.source)) {
                    (Some(x), Some(y)) => x != y,
                    _ => false,
                }
            },
            apply: |_, _| {},
        }
    };
}

/// The `source.kind` a typed source came from.
fn source_kind(s: &SourceConfig) -> SourceKind {
    match s {
        SourceConfig::Synthetic(_) => SourceKind::Synthetic,
        SourceConfig::Fakenect(_) => SourceKind::Fakenect,
        SourceConfig::Freenect(_) => SourceKind::Freenect,
        SourceConfig::Pipe(p) if matches!(p.endpoint, PipeEndpoint::Unix(_)) => SourceKind::Unix,
        SourceConfig::Pipe(_) => SourceKind::Pipe,
    }
}

/// `source.topic` and `source.frame-id`, which every source has.
fn source_names(s: &SourceConfig) -> (&String, &String) {
    match s {
        SourceConfig::Synthetic(c) => (&c.topic, &c.frame_id),
        SourceConfig::Fakenect(c) => (&c.topic, &c.frame_id),
        SourceConfig::Freenect(c) => (&c.topic, &c.frame_id),
        SourceConfig::Pipe(c) => (&c.topic, &c.frame_id),
    }
}

/// `source.width` and `source.height`, of the sources whose frame size is configured.
fn source_size(s: &SourceConfig) -> Option<(u32, u32)> {
    match s {
        SourceConfig::Synthetic(c) => Some((c.width, c.height)),
        SourceConfig::Pipe(c) => Some((c.width, c.height)),
        SourceConfig::Fakenect(_) | SourceConfig::Freenect(_) => None,
    }
}

/// Every configuration key, once, in the order of `config/framerec.toml`.
pub(crate) const KEYS: &[Key] = &[
    key!(Restart, "output.dir", output_dir),
    key!(Restart, "output.layout", layout),
    key!(Restart, "output.profile", profile),
    key!(Restart, "output.min-free-bytes", writer.min_free_bytes),
    key!(Restart, "output.min-free-percent", writer.min_free_percent),
    key!(Restart, "output.max-total-bytes", writer.retain_bytes),
    key!(Restart, "output.max-age-s", writer.retain_age),
    Key {
        name: "source.kind",
        reload: Reload::Restart,
        changed: |a, b| source_kind(&a.source) != source_kind(&b.source),
        apply: |_, _| {},
    },
    source_key!("source.width", |s| source_size(s).map(|(w, _)| w)),
    source_key!("source.height", |s| source_size(s).map(|(_, h)| h)),
    source_key!("source.fps", |s| match s {
        SourceConfig::Synthetic(c) => Some(c.fps),
        _ => None,
    }),
    source_key!("source.seed", |s| match s {
        SourceConfig::Synthetic(c) => Some(c.seed),
        _ => None,
    }),
    source_key!("source.content", |s| match s {
        SourceConfig::Synthetic(c) => Some(c.content),
        _ => None,
    }),
    source_key!("source.streams", |s| s.kinect_streams().cloned()),
    source_key!("source.accel-rate", |s| match s {
        SourceConfig::Synthetic(c) => Some(c.accel_rate),
        SourceConfig::Freenect(c) => Some(c.accel_rate),
        _ => None,
    }),
    source_key!("source.device-index", |s| match s {
        SourceConfig::Freenect(c) => Some(c.device_index),
        _ => None,
    }),
    source_key!("source.library", |s| match s {
        SourceConfig::Freenect(c) => Some(c.library.clone()),
        _ => None,
    }),
    source_key!("source.on-device-error", |s| match s {
        SourceConfig::Freenect(c) => Some(c.on_device_error),
        _ => None,
    }),
    source_key!("source.path", |s| match s {
        SourceConfig::Fakenect(c) => Some(c.dir.clone()),
        SourceConfig::Pipe(c) => Some(match &c.endpoint {
            PipeEndpoint::Stdin => "-".into(),
            PipeEndpoint::Fifo(p) | PipeEndpoint::Unix(p) => p.clone(),
        }),
        _ => None,
    }),
    source_key!("source.paced", |s| match s {
        SourceConfig::Fakenect(c) => Some(c.paced),
        _ => None,
    }),
    source_key!("source.loop", |s| match s {
        SourceConfig::Fakenect(c) => Some(c.looped),
        _ => None,
    }),
    source_key!("source.socket-mode", |s| match s {
        SourceConfig::Pipe(c) => Some(c.access.mode),
        _ => None,
    }),
    source_key!("source.socket-gid", |s| match s {
        SourceConfig::Pipe(c) => Some(c.access.group),
        _ => None,
    }),
    source_key!("source.topic", |s| Some(source_names(s).0.clone())),
    source_key!("source.frame-id", |s| Some(source_names(s).1.clone())),
    source_key!("source.stream", |s| match s {
        SourceConfig::Pipe(c) => Some(c.streams.clone()),
        _ => None,
    }),
    key!(Restart, "queue.max-frames", queue.max_frames),
    key!(Restart, "queue.max-bytes", queue.max_bytes),
    key!(Restart, "queue.overflow", queue.overflow),
    key!(Restart, "writer.backend", writer.backend),
    key!(Live, "writer.writers", writer.writers),
    key!(Restart, "writer.io-mode", writer.io_mode),
    key!(Restart, "writer.max-write-bytes", writer.max_write_bytes),
    key!(Restart, "writer.linger-us", writer.linger),
    key!(
        Restart,
        "writer.preallocate-bytes",
        writer.preallocate_bytes
    ),
    key!(
        Restart,
        "writer.max-consecutive-failures",
        writer.max_consecutive_failures
    ),
    key!(
        Restart,
        "writer.exit-when-degraded",
        writer.exit_when_degraded
    ),
    key!(Restart, "writer.fail-on-io-loss", writer.fail_on_io_loss),
    key!(Restart, "writer.stop-timeout-s", writer.stop_timeout),
    key!(Live, "segment.max-bytes", segment.max_bytes),
    key!(Live, "segment.max-duration-s", segment.max_duration),
    key!(
        Live,
        "durability.fsync-interval-ms",
        durability.fsync_interval
    ),
    key!(
        Live,
        "durability.fsync-every-frames",
        durability.fsync_every_frames
    ),
    key!(
        Live,
        "durability.release-page-cache",
        durability.release_page_cache
    ),
    key!(Restart, "recovery.at-start", recovery),
    key!(Restart, "stats.socket", stats.socket),
    key!(Restart, "stats.control-socket", stats.control_socket),
    key!(Live, "stats.log-interval-s", stats.log_interval),
    key!(Restart, "stats.metrics-addr", stats.metrics_addr),
    key!(Restart, "stats.histograms", stats.histograms),
    key!(Restart, "stats.interval-log-s", stats.interval_log),
    key!(Restart, "stats.interval-log-dir", stats.interval_log_dir),
    key!(Restart, "compression.codec", compression.codec),
    key!(Restart, "compression.level", compression.level),
    key!(Restart, "compression.streams", compression.streams),
    key!(Restart, "compression.threads", compression.threads),
    key!(
        Restart,
        "compression.min-saving-percent",
        compression.min_saving_percent
    ),
    key!(
        Restart,
        "compression.high-water-percent",
        compression.high_water_percent
    ),
];

/// The settings the writer pool takes while it runs.
pub(crate) fn live_of(cfg: &Config) -> Live {
    Live {
        writers: cfg.writer.writers,
        segment: cfg.segment.clone(),
        durability: cfg.durability.clone(),
    }
}

/// The keys a reload found changed, by what it did with them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Applied to the running configuration.
    pub live: Vec<&'static str>,
    /// Left at their running values until a restart.
    pub restart: Vec<&'static str>,
}

/// Applies the live keys of `new` to `running` (and the writer pool's through `live`), logs
/// each changed key that takes a restart, and says which keys changed.
pub(crate) fn apply(running: &mut Config, new: &Config, live: &LiveSettings) -> Changes {
    let (old_live, old_log_interval) = (live_of(running), running.stats.log_interval);
    let mut changes = Changes::default();
    for key in KEYS {
        if !(key.changed)(running, new) {
            continue;
        }
        match key.reload {
            Reload::Live => {
                (key.apply)(running, new);
                changes.live.push(key.name);
            }
            Reload::Restart => changes.restart.push(key.name),
        }
    }
    for name in &changes.restart {
        tracing::warn!(
            setting = name,
            "changed in the configuration, but takes a restart; keeping the running value"
        );
    }
    let new_live = live_of(running);
    if new_live != old_live {
        tracing::info!(
            writers = new_live.writers,
            segment_max_bytes = new_live.segment.max_bytes,
            segment_max_duration = ?new_live.segment.max_duration,
            fsync_interval = ?new_live.durability.fsync_interval,
            fsync_every_frames = ?new_live.durability.fsync_every_frames,
            "applying the reloaded writer, segment and durability settings"
        );
        live.set(new_live);
    }
    if running.stats.log_interval != old_log_interval {
        tracing::info!(every = ?running.stats.log_interval, "new summary log interval");
    }
    if changes.live.is_empty() && changes.restart.is_empty() {
        tracing::info!("configuration reloaded: nothing changed");
    }
    changes
}

#[cfg(test)]
mod tests;
