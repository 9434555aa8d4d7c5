//! Checks that span several keys, run once the file has parsed.

use super::*;

/// Checks that span several keys.
pub(super) fn validate(cfg: FileConfig, text: &str, file: &str) -> Result<Config, ConfigErrors> {
    let mut errors = pipe_streams::problems(&cfg.source, text, file);
    if let Some(message) = cfg.writer.io_mode_conflict() {
        let (line, col) = key_position(text, "writer", "direct-io");
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            col,
            message,
        });
    }
    let config = cfg.into_config();
    // Two buffers of each stream, as the pools are made (src/recorder/start.rs).
    let frames = config.source.frames_bytes();
    let need: u64 = frames
        .iter()
        .map(|f| 2 * (crate::frame::round_up(*f as usize, crate::frame::ALIGN) as u64 + 8192))
        .sum();
    let frame = frames
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("+");
    if config.queue.max_bytes < need {
        let (line, col) = key_position(text, "queue", "max-bytes");
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            col,
            message: format!(
                "queue.max-bytes = {} holds fewer than two frames of each stream ({frame} bytes); use at least {need}",
                config.queue.max_bytes
            ),
        });
    }
    if config.profile == Profile::Ros2 && config.writer.io_mode.is_direct() {
        let (line, col) = key_position(text, "output", "profile");
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            col,
            message: format!(
                "output.profile = \"ros2\" with writer.io-mode = \"direct\": {}",
                crate::segment::ros2::DIRECT_IO_REFUSED
            ),
        });
    }
    if let Some(message) = super::compression_problem(&config) {
        let (line, col) = key_position(text, "compression", "codec");
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            col,
            message,
        });
    }
    if let SourceConfig::Pipe(PipeConfig {
        endpoint: PipeEndpoint::Unix(p),
        ..
    }) = &config.source
        && p.as_os_str().is_empty()
    {
        let (line, col) = key_position(text, "source", "kind");
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            col,
            message: "source.kind = \"unix\" needs source.path, the socket to listen on".into(),
        });
    }
    if let Some(message) = streams_problem(&config.source) {
        let (line, col) = key_position(text, "source", "streams");
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            col,
            message,
        });
    }
    if let SourceConfig::Fakenect(f) = &config.source
        && f.dir.as_os_str().is_empty()
    {
        let (line, col) = key_position(text, "source", "kind");
        errors.push(ConfigError {
            file: file.to_string(),
            line,
            col,
            message: "source.kind = \"fakenect\" needs source.path, the dump directory".into(),
        });
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// What is wrong with the source's stream table, if anything.
pub fn streams_problem(source: &SourceConfig) -> Option<String> {
    let streams = source.kinect_streams()?;
    if streams.is_empty() {
        return Some("source.streams is empty; name at least one of depth, color, accel".into());
    }
    if let Some(k) = streams
        .iter()
        .enumerate()
        .find_map(|(i, k)| streams[..i].contains(k).then_some(k))
    {
        return Some(format!(
            "source.streams names {:?} twice; each of depth, color, accel at most once",
            k.as_str()
        ));
    }
    None
}

/// Line and column of `section.key` in `text`, or of the file start when absent.
pub(super) fn key_position(text: &str, section: &str, key: &str) -> (usize, usize) {
    if let Ok(doc) = toml::de::DeTable::parse(text)
        && let Some(toml::de::DeValue::Table(t)) = doc.get_ref().get(section).map(|v| v.get_ref())
        && let Some((k, _)) = t.get_key_value(key)
    {
        return line_col(text, k.span().start);
    }
    (1, 1)
}
