//! Configuration errors, each at a line and column of its file.

use super::*;

/// One configuration error at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Every error found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// Blanks the key/value entry that contains `at` (a space per byte, keeping newlines, so every
/// other offset and line stays put). Returns false when no entry contains it.
pub(super) fn blank_entry(text: &mut String, at: usize) -> bool {
    use toml::de::{DeTable, DeValue};
    let Ok(doc) = DeTable::parse(text) else {
        return false;
    };
    fn find(table: &DeTable<'_>, at: usize) -> Option<Range<usize>> {
        for (k, v) in table.iter() {
            let (ks, vs) = (k.span(), v.span());
            let whole = ks.start.min(vs.start)..ks.end.max(vs.end);
            if let DeValue::Table(t) = v.get_ref() {
                if let Some(r) = find(t, at) {
                    return Some(r);
                }
                if ks.contains(&at) || whole.contains(&at) {
                    return Some(whole);
                }
            } else if whole.contains(&at) || ks.start == at {
                return Some(whole);
            }
        }
        None
    }
    let Some(range) = find(doc.get_ref(), at) else {
        return false;
    };
    drop(doc);
    // One space per byte: a multi-byte character must not move the offsets after it.
    let blanked: String = text[range.clone()]
        .chars()
        .map(|c| {
            if c == '\n' {
                "\n"
            } else {
                &"    "[..c.len_utf8()]
            }
        })
        .collect();
    // Keep a blanked table header parseable: `[name]` becomes blank, children stay valid keys.
    text.replace_range(range, &blanked);
    true
}
