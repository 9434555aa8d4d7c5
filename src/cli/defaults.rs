//! `record --help` names each flag's default and the configuration key it overrides, read from
//! the shipped `config/framerec.toml` (whose values are the defaults: a config test holds it to
//! `Config::default()`), so help, manual page and configuration cannot disagree. The flags are
//! `Option`s without clap defaults on purpose: a flag given overrides the file, one not given
//! leaves the file's value.

use clap::Command;

/// `record` flag id → `section.key` of the configuration it overrides.
const RECORD_FLAGS: &[(&str, &str)] = &[
    ("source", "source.kind"),
    ("device_index", "source.device-index"),
    ("on_device_error", "source.on-device-error"),
    ("streams", "source.streams"),
    ("accel_rate", "source.accel-rate"),
    ("fps", "source.fps"),
    ("width", "source.width"),
    ("height", "source.height"),
    ("seed", "source.seed"),
    ("writers", "writer.writers"),
    ("io_mode", "writer.io-mode"),
    ("preallocate_bytes", "writer.preallocate-bytes"),
    ("backend", "writer.backend"),
    ("segment_bytes", "segment.max-bytes"),
    ("queue_bytes", "queue.max-bytes"),
    ("queue_frames", "queue.max-frames"),
    ("overflow", "queue.overflow"),
    ("layout", "output.layout"),
    ("interval_log_s", "stats.interval-log-s"),
];

/// The default of `section.key`, as the shipped file writes it (strings unquoted, lists
/// comma-separated), or None when the file has no such key.
fn default_of(key: &str) -> Option<String> {
    let file: toml::Table = toml::from_str(super::assets::DEFAULT_CONFIG).ok()?;
    let (section, name) = key.split_once('.')?;
    let value = file.get(section)?.as_table()?.get(name)?;
    Some(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    })
}

/// `cmd` with each mapped `record` flag's help ending in `[default: V; config: KEY]`.
pub fn annotate(cmd: Command) -> Command {
    cmd.mut_subcommand("record", |mut record| {
        for &(id, key) in RECORD_FLAGS {
            let Some(value) = default_of(key) else {
                continue;
            };
            let note = format!(" [default: {value}; config: {key}]");
            record = record.mut_arg(id, |arg| {
                let help = arg.get_help().map(|h| format!("{h}{note}"));
                let long = arg.get_long_help().map(|h| format!("{h}{note}"));
                let arg = match help {
                    Some(h) => arg.help(h),
                    None => arg,
                };
                match long {
                    Some(h) => arg.long_help(h),
                    None => arg,
                }
            });
        }
        record
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_mapped_flag_exists_and_has_a_default_in_the_shipped_config() {
        let cmd = super::super::Cli::command();
        let record = cmd.find_subcommand("record").unwrap();
        for &(id, key) in RECORD_FLAGS {
            assert!(
                record.get_arguments().any(|a| a.get_id() == id),
                "flag {id}"
            );
            assert!(default_of(key).is_some(), "{key} in config/framerec.toml");
        }
        assert_eq!(default_of("source.fps").as_deref(), Some("30"));
        assert_eq!(default_of("source.streams").as_deref(), Some("depth"));
        assert_eq!(default_of("queue.overflow").as_deref(), Some("auto"));
    }

    #[test]
    fn record_help_shows_the_defaults() {
        let mut cmd = annotate(super::super::Cli::command());
        let record = cmd.find_subcommand_mut("record").unwrap();
        let help = record.render_long_help().to_string();
        assert!(
            help.contains("[default: 2; config: writer.writers]"),
            "{help}"
        );
        assert!(
            help.contains("[default: 268435456; config: queue.max-bytes]"),
            "{help}"
        );
    }
}
