//! The reload table against the shipped configuration file, the keys the parser accepts, what
//! a reload really does with each key, and the README.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::*;

const SHIPPED: &str = include_str!("../../../config/framerec.toml");
const README: &str = include_str!("../../../README.md");

/// Every `section.key` of the shipped file with its value (the default; for an array of
/// tables, its commented example).
fn documented() -> BTreeMap<String, toml::Value> {
    let mut file: toml::Table = SHIPPED.parse().unwrap();
    for (section, table) in commented_arrays() {
        let into = file
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        into.as_table_mut()
            .unwrap()
            .extend(table.as_table().unwrap().clone());
    }
    let mut keys = BTreeMap::new();
    for (section, table) in &file {
        let table = table
            .as_table()
            .unwrap_or_else(|| panic!("`{section}` in config/framerec.toml is not a table"));
        for (key, value) in table {
            keys.insert(format!("{section}.{key}"), value.clone());
        }
    }
    keys
}

/// The arrays of tables the shipped file documents as a commented example (absent by
/// default): a `# [[section.key]]` line and the `# name = value` lines after it, parsed.
fn commented_arrays() -> toml::Table {
    let (mut text, mut inside) = (String::new(), false);
    for line in SHIPPED.lines() {
        let body = line.strip_prefix("# ").unwrap_or("");
        inside = if body.starts_with("[[") && body.ends_with("]]") {
            true
        } else {
            inside && body.contains(" = ")
        };
        if inside {
            text += body;
            text += "\n";
        }
    }
    text.parse()
        .unwrap_or_else(|e| panic!("a commented [[...]] example in config/framerec.toml: {e}"))
}

#[test]
fn the_commented_stream_table_example_is_read_as_documented() {
    let arrays = commented_arrays();
    let streams = arrays["source"]["stream"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{arrays}");
    assert_eq!(streams[1]["format"].as_str(), Some("rgb8"));
}

#[test]
fn the_table_holds_every_documented_key_once_and_no_other() {
    let mut count = BTreeMap::new();
    for key in KEYS {
        *count.entry(key.name).or_insert(0) += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "in the reload table more than once: {twice:?}"
    );
    let table: BTreeSet<String> = count.keys().map(|k| k.to_string()).collect();
    let file: BTreeSet<String> = documented().into_keys().collect();
    let accepted: BTreeSet<String> = crate::config::accepted_keys().into_iter().collect();
    let missing: Vec<_> = file.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "documented in config/framerec.toml but not in the reload table (src/reload.rs): {missing:?}"
    );
    let unknown: Vec<_> = table.difference(&file).collect();
    assert!(
        unknown.is_empty(),
        "in the reload table but not in config/framerec.toml: {unknown:?}"
    );
    let undocumented: Vec<_> = accepted.difference(&file).collect();
    assert!(
        undocumented.is_empty(),
        "accepted by the parser but not documented in config/framerec.toml: {undocumented:?}"
    );
    let unparsed: Vec<_> = file.difference(&accepted).collect();
    assert!(
        unparsed.is_empty(),
        "documented in config/framerec.toml but not accepted by the parser: {unparsed:?}"
    );
}

/// Each kind of source, with the keys it needs to be valid: a `source.*` key is checked
/// against every kind, since each kind keeps only its own keys.
const SOURCES: &[&[(&str, &str)]] = &[
    &[("kind", "synthetic")],
    &[("kind", "fakenect"), ("path", "/dump")],
    &[("kind", "freenect")],
    &[("kind", "pipe")],
    &[("kind", "unix"), ("path", "/sock")],
];

/// A valid value of `key` other than `now`.
fn other_value(key: &str, now: &toml::Value) -> toml::Value {
    use toml::Value;
    let one_of = |names: &[&str]| {
        let other = names.iter().find(|n| now.as_str() != Some(n)).unwrap();
        Value::String(other.to_string())
    };
    match (key, now) {
        ("source.kind", _) => one_of(&["pipe", "synthetic"]),
        ("output.layout", _) => one_of(&["mcap", "fakenect"]),
        ("output.profile", _) => one_of(&["foxglove", "ros2"]),
        ("source.on-device-error", _) => one_of(&["stop", "retry"]),
        ("queue.overflow", _) => one_of(&["auto", "block"]),
        ("writer.backend", _) => one_of(&["auto", "pwrite"]),
        ("writer.io-mode", _) => one_of(&["auto", "direct"]),
        ("recovery.at-start", _) => one_of(&["recover", "leave"]),
        ("source.content", _) => one_of(&["scene", "pattern"]),
        ("compression.codec", _) => one_of(&["none", "lz4"]),
        ("compression.streams", _) => {
            let mut t = toml::Table::new();
            t.insert("depth".into(), Value::String("zstd".into()));
            Value::Table(t)
        }
        ("source.stream", _) => {
            let stream = |id: i64, name: &str, format: &str| {
                let mut t = toml::Table::new();
                t.insert("id".into(), Value::Integer(id));
                t.insert("name".into(), Value::String(name.into()));
                t.insert("format".into(), Value::String(format.into()));
                Value::Table(t)
            };
            Value::Array(vec![stream(3, "accel", "accel"), stream(4, "imu", "accel")])
        }
        ("source.streams", _) => Value::Array(vec![
            Value::String("depth".into()),
            Value::String("accel".into()),
        ]),
        (_, Value::Integer(n)) => Value::Integer(n + 1),
        (_, Value::Boolean(b)) => Value::Boolean(!b),
        (_, Value::String(s)) => Value::String(format!("{s}/other")),
        _ => panic!("{key} = {now}: name another valid value in other_value"),
    }
}

/// True when `key` is another kind's stream table, which `source` refuses: a configuration
/// giving it is an error, not a reload.
fn refused(key: &str, source: &[(&str, &str)]) -> bool {
    let pipe = matches!(source[0].1, "pipe" | "unix");
    (key == "source.streams" && pipe) || (key == "source.stream" && !pipe)
}

fn parse(file: &toml::Table) -> Config {
    let text = toml::to_string(file).unwrap();
    crate::config::parse(&text, "reload.toml").unwrap_or_else(|e| {
        panic!("{e}\n{text}\n(a new key with named values? name another one in other_value)")
    })
}

/// Runs `f` and returns what it logged at INFO and above.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::default());
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

/// For every key: a configuration differing from the running one in that key alone is
/// reported, applied and logged as the table says, and nothing that changed goes unreported.
#[test]
fn a_change_to_each_key_alone_is_applied_or_left_for_a_restart_per_the_table() {
    let defaults = documented();
    for key in KEYS {
        let (section, name) = key.name.split_once('.').unwrap();
        let sources = if section == "source" {
            SOURCES
        } else {
            &SOURCES[..1]
        };
        let mut reported = 0;
        for source in sources {
            let mut file = toml::Table::new();
            let mut source_table = toml::Table::new();
            for (k, v) in *source {
                source_table.insert(k.to_string(), toml::Value::String(v.to_string()));
            }
            file.insert("source".into(), toml::Value::Table(source_table));
            let running_file = file.clone();
            let table = file
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap();
            let now = table.get(name).unwrap_or(&defaults[key.name]).clone();
            table.insert(name.into(), other_value(key.name, &now));
            if refused(key.name, source) {
                let text = toml::to_string(&file).unwrap();
                assert!(
                    crate::config::parse(&text, "reload.toml").is_err(),
                    "{} accepted for {source:?}",
                    key.name
                );
                continue;
            }
            let (before, after) = (parse(&running_file), parse(&file));
            let mut running = before.clone();
            let (changes, log) = logged(|| apply(&mut running, &after, &LiveSettings::default()));
            let context = format!(
                "{} changed, source {source:?}: {changes:?}\n{log}",
                key.name
            );
            if changes == Changes::default() {
                // Only a key this kind of source does not have may go unreported.
                assert_eq!(before, after, "{context}");
                assert!(log.contains("nothing changed"), "{context}");
                continue;
            }
            reported += 1;
            assert!(!log.contains("nothing changed"), "{context}");
            match key.reload {
                Reload::Live => {
                    // Live means something running re-reads it: the writer pool's settings
                    // or the summary log's interval.
                    assert!(
                        live_of(&before) != live_of(&after)
                            || before.stats.log_interval != after.stats.log_interval,
                        "marked live, but nothing running reads it: {context}"
                    );
                    assert_eq!(changes.live, [key.name], "{context}");
                    assert!(changes.restart.is_empty(), "{context}");
                    assert_eq!(running, after, "applied: {context}");
                    assert!(!log.contains("takes a restart"), "{context}");
                }
                Reload::Restart => {
                    assert_eq!(changes.restart, [key.name], "{context}");
                    assert!(changes.live.is_empty(), "{context}");
                    assert_eq!(running, before, "kept: {context}");
                    assert!(
                        log.contains("takes a restart") && log.contains(key.name),
                        "{context}"
                    );
                }
            }
        }
        assert!(
            reported > 0,
            "a configuration differing only in {} reloads with no change reported",
            key.name
        );
    }
}

#[test]
fn an_unchanged_configuration_reloads_with_nothing_changed() {
    let mut running = Config::default();
    let (changes, log) =
        logged(|| apply(&mut running, &Config::default(), &LiveSettings::default()));
    assert_eq!(changes, Changes::default());
    assert_eq!(running, Config::default());
    assert!(
        log.contains("configuration reloaded: nothing changed"),
        "{log}"
    );
}

/// The README's reload paragraph names exactly the keys the table applies live (`section.*`
/// standing for a whole section).
#[test]
fn the_readme_names_the_live_keys() {
    let paragraph = README
        .split("- **Reload**")
        .nth(1)
        .and_then(|rest| rest.split("\n- ").next())
        .expect("README.md has a **Reload** item");
    let sections: BTreeSet<&str> = KEYS
        .iter()
        .map(|k| k.name.split_once('.').unwrap().0)
        .collect();
    let mut named = BTreeSet::new();
    for word in paragraph.split('`').skip(1).step_by(2) {
        let Some((section, key)) = word.split_once('.') else {
            continue;
        };
        if !sections.contains(section) {
            continue;
        }
        let matching: Vec<&str> = KEYS
            .iter()
            .map(|k| k.name)
            .filter(|n| *n == word || (key == "*" && n.starts_with(&format!("{section}."))))
            .collect();
        assert!(
            !matching.is_empty(),
            "the README names `{word}`, which is no key"
        );
        named.extend(matching);
    }
    let live: BTreeSet<&str> = KEYS
        .iter()
        .filter(|k| k.reload == Reload::Live)
        .map(|k| k.name)
        .collect();
    assert_eq!(
        named, live,
        "keys the README says reload live, and the table's"
    );
}
