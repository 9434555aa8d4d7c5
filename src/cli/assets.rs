//! `framerec man` and `framerec completions`: the manual pages and shell completions, generated
//! from the command line's own definitions (and `framerec.toml(5)` from the documented default
//! configuration), so they can never disagree with what the binary accepts. The Debian package
//! (`contrib/deb/build`) ships what these write.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

/// The documented default configuration: the source of `framerec.toml(5)`.
pub(super) const DEFAULT_CONFIG: &str = include_str!("../../config/framerec.toml");

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created): framerec.1, one framerec-COMMAND.1 per
    /// subcommand, and framerec.toml.5.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; the script goes to standard output.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn man(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let cmd = super::command();
    clap_mangen::generate_to(cmd, &args.out)
        .with_context(|| format!("cannot write the manual pages into {}", args.out.display()))?;
    write_config_page(&args.out.join("framerec.toml.5"))?;
    Ok(ExitCode::SUCCESS)
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "framerec", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(super::StdoutError)?;
    Ok(ExitCode::SUCCESS)
}

fn write_config_page(path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, config_page(DEFAULT_CONFIG))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `framerec.toml(5)` in roff: the file's opening comment is the description; each `[table]` a
/// section; each key, with its default, a tagged paragraph holding the comment above it.
pub fn config_page(config: &str) -> String {
    use roff::{Roff, bold, roman};
    let mut page = Roff::new();
    let version = env!("CARGO_PKG_VERSION");
    page.control(
        "TH",
        ["FRAMEREC.TOML", "5", "", &format!("framerec {version}")],
    );
    page.control("SH", ["NAME"]);
    page.text([roman(
        "framerec.toml - configuration of the framerec recorder",
    )]);
    page.control("SH", ["SYNOPSIS"]);
    page.text([roman(
        "/etc/framerec/framerec.toml (the packaged service's), or any file given to \
         framerec record --config FILE",
    )]);
    page.control("SH", ["DESCRIPTION"]);
    let mut comment: Vec<String> = Vec::new();
    let mut in_preamble = true;
    for line in config.lines() {
        let line = line.trim_end();
        if let Some(text) = line.strip_prefix('#') {
            comment.push(text.strip_prefix(' ').unwrap_or(text).to_string());
        } else if let Some(table) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            flush_paragraph(&mut page, &mut comment);
            in_preamble = false;
            page.control("SH", [format!("[{table}]").as_str()]);
        } else if let Some((key, value)) = line.split_once('=') {
            page.control("TP", []);
            page.text([bold(key.trim()), roman(" = "), roman(value.trim())]);
            flush_paragraph(&mut page, &mut comment);
        } else if line.is_empty() && in_preamble {
            flush_paragraph(&mut page, &mut comment);
        }
    }
    flush_paragraph(&mut page, &mut comment);
    page.control("SH", ["SEE ALSO"]);
    page.text([roman(
        "framerec(1), framerec-record(1), framerec-check-config(1)",
    )]);
    page.render()
}

/// The comment lines gathered so far as one paragraph (their line breaks kept where a line
/// starts a list item or an indented continuation).
fn flush_paragraph(page: &mut roff::Roff, comment: &mut Vec<String>) {
    if comment.is_empty() {
        return;
    }
    for (i, line) in comment.drain(..).enumerate() {
        if i > 0 && (line.starts_with(' ') || line.starts_with('"')) {
            page.control("br", []);
        }
        page.text([roff::roman(line.trim_start().to_string())]);
    }
    page.control("PP", []);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_page_documents_every_key_of_the_default_config() {
        let page = config_page(DEFAULT_CONFIG);
        let table: toml::Table = toml::from_str(DEFAULT_CONFIG).unwrap();
        let mut keys = 0;
        for (name, section) in &table {
            assert!(page.contains(&format!("[{name}]")), "section {name}");
            for key in section.as_table().unwrap().keys() {
                // roff escapes '-' as '\-'.
                let escaped = key.replace('-', "\\-");
                assert!(
                    page.contains(&format!("\\fB{escaped}\\fR")),
                    "key {name}.{key}"
                );
                keys += 1;
            }
        }
        assert!(keys > 20, "{keys} keys");
        assert!(page.contains("\n.TH FRAMEREC.TOML 5 "), "{}", &page[..80]);
        assert!(
            page.contains("Free\\-space floor"),
            "a key's comment is its text"
        );
    }
}
