//! Storing a recommendation in a configuration file, its comments and layout kept
//! (`toml_edit`), and the result validated as `check-config` does.

use toml_edit::{DocumentMut, Item, Table, value};

use super::Candidate;
use crate::config::ConfigErrors;

/// Why the settings could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{file} is not TOML")]
    Syntax {
        file: String,
        #[source]
        source: toml_edit::TomlError,
    },
    #[error("{file}: [writer] is not a table")]
    WriterNotTable { file: String },
    #[error("the file would not be valid with the settings")]
    Invalid(#[source] ConfigErrors),
}

/// `text` (the contents of `file`) with `[writer]`'s `io-mode`, `max-write-bytes` and
/// `writers` set to `c`'s (and the deprecated `direct-io`, which could contradict them,
/// removed); every other line as it was.
pub fn write_settings(text: &str, file: &str, c: &Candidate) -> Result<String, SettingsError> {
    let mut doc: DocumentMut = text.parse().map_err(|source| SettingsError::Syntax {
        file: file.to_string(),
        source,
    })?;
    let writer = doc
        .entry("writer")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_mut()
        .ok_or_else(|| SettingsError::WriterNotTable {
            file: file.to_string(),
        })?;
    writer.remove("direct-io");
    writer["io-mode"] = value(c.io_mode.as_str());
    writer["max-write-bytes"] = value(c.max_write_bytes as i64);
    writer["writers"] = value(c.writers as i64);
    let out = doc.to_string();
    crate::config::parse(&out, file).map_err(SettingsError::Invalid)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::IoMode;

    #[test]
    fn settings_are_stored_with_the_comments_kept() {
        let text = "# mine\n[output]\ndir = \"/rec\" # here\n\n[writer]\n# how many\nwriters = 2\ndirect-io = false\nlinger-us = 5\n";
        let c = Candidate {
            io_mode: IoMode::Direct,
            max_write_bytes: 1 << 20,
            writers: 4,
        };
        let out = write_settings(text, "f.toml", &c).unwrap();
        for kept in [
            "# mine",
            "dir = \"/rec\" # here",
            "# how many",
            "linger-us = 5",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        assert!(!out.contains("direct-io"), "{out}");
        let cfg = crate::config::parse(&out, "f.toml").unwrap();
        assert_eq!(cfg.writer.io_mode, IoMode::Direct);
        assert_eq!(cfg.writer.writers, 4);
        assert_eq!(cfg.writer.max_write_bytes, 1 << 20);

        let fresh = write_settings("", "f.toml", &c).unwrap();
        assert!(fresh.contains("[writer]"), "{fresh}");
        assert!(write_settings("writer = 1\n", "f.toml", &c).is_err());
        assert!(write_settings("[writer\n", "f.toml", &c).is_err());
    }
}
