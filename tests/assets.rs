//! The manual pages and shell completions the package ships (`framerec man`, `framerec
//! completions`) cover every flag of `record`.

use std::process::Command;

fn framerec(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_framerec"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The long flags `record --help` lists.
fn record_flags() -> Vec<String> {
    let help = String::from_utf8(framerec(&["record", "--help"]).stdout).unwrap();
    let mut flags: Vec<String> = help
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-")
                .and_then(|r| r.split_once(", "))
                .map_or(l, |(_, r)| r);
            let flag = l.strip_prefix("--")?.split([' ', '=', '<']).next()?;
            (!flag.is_empty()).then(|| flag.to_string())
        })
        .collect();
    flags.dedup();
    flags
}

#[test]
fn every_record_flag_is_in_the_manual_page_and_every_completion_script() {
    let flags = record_flags();
    for expected in ["out", "frames", "streams", "direct-io", "config", "help"] {
        assert!(
            flags.iter().any(|f| f == expected),
            "--{expected} in {flags:?}"
        );
    }
    assert!(flags.len() > 25, "{flags:?}");

    let dir = tempfile::tempdir().unwrap();
    framerec(&["man", "--out", dir.path().to_str().unwrap()]);
    let page = std::fs::read_to_string(dir.path().join("framerec-record.1")).unwrap();
    for f in &flags {
        // roff writes a '-' as "\-".
        let roff = format!("\\-\\-{}", f.replace('-', "\\-"));
        assert!(
            page.contains(&roff),
            "--{f} missing from framerec-record(1)"
        );
    }
    for name in ["framerec.1", "framerec-verify.1", "framerec.toml.5"] {
        assert!(dir.path().join(name).exists(), "{name}");
    }

    for shell in ["bash", "zsh", "fish"] {
        let script = String::from_utf8(framerec(&["completions", shell]).stdout).unwrap();
        for f in &flags {
            let found = match shell {
                // fish: `complete -c framerec ... -l out`
                "fish" => {
                    script.contains(&format!("-l {f} ")) || script.ends_with(&format!("-l {f}"))
                }
                _ => script.contains(&format!("--{f}")),
            };
            assert!(found, "--{f} missing from the {shell} completions");
        }
    }
}

#[test]
fn version_names_the_commit() {
    let out = String::from_utf8(framerec(&["--version"]).stdout).unwrap();
    assert!(
        out.starts_with(concat!("framerec ", env!("CARGO_PKG_VERSION"), " (commit ")),
        "{out}"
    );
}
