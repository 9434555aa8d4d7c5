//! Tests of parsing and validation.

use super::*;

#[test]
fn empty_file_gives_defaults() {
    let c = parse("", "f.toml").unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.writer.writers, 2);
    assert_eq!(c.queue.overflow, None, "auto");
}

#[test]
fn values_are_read() {
    let c = parse(
        "[writer]\nwriters = 8\ndirect-io = true\n[queue]\noverflow = \"block\"\n[segment]\nmax-duration-s = 0\n",
        "f.toml",
    )
    .unwrap();
    assert_eq!(c.writer.writers, 8);
    assert_eq!(
        c.writer.io_mode,
        IoMode::Direct,
        "the deprecated key still works"
    );
    assert_eq!(c.queue.overflow, Some(OverflowPolicy::Block));
    assert_eq!(c.segment.max_duration, None);
}

#[test]
fn io_mode_defaults_to_auto_and_reads_each_value() {
    assert_eq!(parse("", "f.toml").unwrap().writer.io_mode, IoMode::Auto);
    for (text, want) in [
        ("io-mode = \"auto\"", IoMode::Auto),
        ("io-mode = \"buffered\"", IoMode::Buffered),
        ("io-mode = \"direct\"", IoMode::Direct),
        ("direct-io = false", IoMode::Buffered),
        ("io-mode = \"direct\"\ndirect-io = true", IoMode::Direct),
        (
            "io-mode = \"buffered\"\ndirect-io = false",
            IoMode::Buffered,
        ),
    ] {
        let c = parse(&format!("[writer]\n{text}\n"), "f.toml").unwrap();
        assert_eq!(c.writer.io_mode, want, "{text}");
    }
    let err = parse("[writer]\nio-mode = \"fast\"\n", "f.toml")
        .unwrap_err()
        .0;
    assert_eq!((err[0].line, err[0].col), (2, 11), "{err:#?}");
}

#[test]
fn io_mode_conflicting_with_direct_io_is_an_error_at_the_old_key() {
    for text in [
        "io-mode = \"buffered\"\ndirect-io = true",
        "io-mode = \"direct\"\ndirect-io = false",
        "io-mode = \"auto\"\ndirect-io = true",
    ] {
        let errs = parse(&format!("[writer]\n{text}\n"), "f.toml")
            .unwrap_err()
            .0;
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].line, errs[0].col), (3, 1), "{text}");
        assert!(
            errs[0].message.contains("conflicts with writer.direct-io"),
            "{}",
            errs[0].message
        );
    }
}

#[test]
fn ros2_refuses_explicit_direct_but_not_auto() {
    let err = parse(
        "[output]\nprofile = \"ros2\"\n[writer]\nio-mode = \"direct\"\n",
        "f.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("O_DIRECT"), "{err}");
    let c = parse("[output]\nprofile = \"ros2\"\n", "f.toml").unwrap();
    assert_eq!(c.writer.io_mode, IoMode::Auto);
}

#[test]
fn every_error_is_reported_with_its_place() {
    let text = "[writer]\nwriters = 0\nbogus = 1\n\n[queue]\nmax-frames = \"many\"\noverflow = \"sometimes\"\n";
    let errs = parse(text, "f.toml").unwrap_err().0;
    let places: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(places, vec![(2, 11), (3, 1), (6, 14), (7, 12)], "{errs:#?}");
    assert!(
        errs[0].message.contains("out of range"),
        "{}",
        errs[0].message
    );
    assert!(
        errs[1].message.contains("unknown field `bogus`"),
        "{}",
        errs[1].message
    );
    assert!(
        errs[2].message.contains("invalid type"),
        "{}",
        errs[2].message
    );
    assert!(
        errs[3].message.contains("unknown variant `sometimes`"),
        "{}",
        errs[3].message
    );
    assert!(errs[0].to_string().starts_with("f.toml:2:11: "));
}

/// The input is also the config fuzz target's regression (fuzz/regressions/config/):
/// blanking a bad value holding multi-byte characters moved every later offset, so later
/// errors named the wrong place, or one inside a character and `check-config` panicked.
#[test]
fn errors_after_a_multibyte_value_keep_their_place() {
    let text = "[queue]\nmax-bytes = \"\u{20ac}\"\n[writer]\n# \u{e9}\nbogus = 1\n";
    let e = parse(text, "f.toml").unwrap_err();
    let places: Vec<(usize, usize)> = e.0.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(places, vec![(2, 13), (5, 1)], "{e}");
    assert_eq!(
        include_str!("../../fuzz/regressions/config/multibyte-value-moves-later-errors.toml"),
        text
    );
}

/// Every value a command-line enum flag accepts is spelled the same in the config file and
/// means the same there: the file and the flags share one enum, not two lists of strings.
#[test]
fn config_and_flags_spell_every_enum_value_alike() {
    use clap::ValueEnum;
    /// Parses `text(name)` for every name the flag accepts; `check` sees the value and
    /// the configuration the file gave.
    fn both<T>(text: impl Fn(&str) -> String, check: impl Fn(&T, Config))
    where
        T: ValueEnum + 'static,
    {
        for v in T::value_variants() {
            let text = text(v.to_possible_value().unwrap().get_name());
            check(
                v,
                parse(&text, "f.toml").unwrap_or_else(|e| panic!("{text}: {e}")),
            );
        }
    }
    both(
        |n| format!("[writer]\nbackend = {n:?}\n"),
        |v: &BackendChoice, c| assert_eq!(c.writer.backend, *v),
    );
    both(
        |n| format!("[output]\nlayout = {n:?}\n"),
        |v: &Layout, c| assert_eq!(c.layout, *v),
    );
    both(
        |n| format!("[queue]\noverflow = {n:?}\n"),
        |v: &OverflowPolicy, c| assert_eq!(c.queue.overflow, Some(*v)),
    );
    both(
        |n| format!("[source]\nkind = \"freenect\"\non-device-error = {n:?}\n"),
        |v: &OnDeviceError, c| match c.source {
            SourceConfig::Freenect(f) => assert_eq!(f.on_device_error, *v),
            other => panic!("{other:?}"),
        },
    );
}

/// `auto` is a value of its own, not a fallback: the file and the flag both accept it and
/// each named policy, and reject anything else naming every accepted value.
#[test]
fn auto_or_a_policy_and_nothing_else() {
    let overflow = |v: &str| parse(&format!("[queue]\noverflow = {v:?}\n"), "f.toml");
    assert_eq!(overflow("auto").unwrap().queue.overflow, None);
    assert_eq!(
        overflow("drop-oldest").unwrap().queue.overflow,
        Some(OverflowPolicy::DropOldest)
    );
    let e = overflow("Block").unwrap_err().0;
    assert_eq!((e[0].line, e[0].col), (2, 12), "{e:?}");
    assert_eq!(
        e[0].message,
        "unknown variant `Block`, expected one of `auto`, `drop-newest`, `drop-oldest`, `block`"
    );
    let e = parse("[queue]\noverflow = 3\n", "f.toml").unwrap_err().0;
    assert!(e[0].message.contains("expected one of `auto`"), "{e:?}");

    #[derive(clap::Parser, Debug)]
    struct Flag {
        #[arg(long, value_parser = AutoOr::<OverflowPolicy>::value_parser())]
        overflow: AutoOr<OverflowPolicy>,
    }
    let flag = |v: &str| {
        <Flag as clap::Parser>::try_parse_from(["x", "--overflow", v]).map(|f| f.overflow)
    };
    assert_eq!(flag("auto").unwrap(), AutoOr::Auto);
    assert_eq!(
        flag("drop-newest").unwrap(),
        AutoOr::Set(OverflowPolicy::DropNewest)
    );
    let err = flag("sometimes").unwrap_err().to_string();
    assert!(
        err.contains("[possible values: auto, drop-newest, drop-oldest, block]"),
        "{err}"
    );
}

#[test]
fn unknown_section_is_reported() {
    let errs = parse("[wrtier]\nwriters = 3\n", "f.toml").unwrap_err().0;
    assert_eq!((errs[0].line, errs[0].col), (1, 2), "{errs:#?}");
    assert!(errs[0].message.contains("unknown field `wrtier`"));
}

#[test]
fn syntax_errors_are_located() {
    let errs = parse("[writer]\nwriters = = 3\n", "f.toml").unwrap_err().0;
    assert_eq!(errs[0].line, 2, "{errs:#?}");
}

#[test]
fn queue_too_small_for_two_frames_is_rejected() {
    let errs = parse("[queue]\nmax-bytes = 1048576\n", "f.toml")
        .unwrap_err()
        .0;
    assert_eq!((errs[0].line, errs[0].col), (2, 1));
    assert!(errs[0].message.contains("fewer than two"));
}

#[test]
fn the_queue_must_hold_two_frames_of_every_stream() {
    // 2 MiB holds two 640x480 depth frames, not two of depth and two of colour as well.
    let text =
        "[source]\nstreams = [\"depth\", \"color\", \"accel\"]\n[queue]\nmax-bytes = 2097152\n";
    let errs = parse(text, "f.toml").unwrap_err().0;
    assert_eq!(errs[0].line, 4, "{errs:#?}");
    assert!(
        errs[0].message.contains("614400+921600+12 bytes"),
        "{errs:#?}"
    );
    assert!(parse("[queue]\nmax-bytes = 2097152\n", "f.toml").is_ok());
}

#[test]
fn shipped_config_file_is_valid_and_matches_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/framerec.toml");
    let c = load(Path::new(path)).unwrap();
    assert_eq!(c, Config::default());
}

/// Keys still read but no longer documented as settings (their successor's comment names them).
pub(crate) const DEPRECATED_KEYS: &[&str] = &["writer.direct-io"];

/// Every `section.key` the parser accepts, from the sections' serde derives (so a key added
/// to a section struct shows up here without anyone listing it), less [`DEPRECATED_KEYS`].
#[cfg(test)]
pub(crate) fn accepted_keys() -> Vec<String> {
    /// A deserializer that only notes the field names of the struct asked of it.
    struct Fields(&'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for &mut Fields {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("fields noted"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    fn fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
        let mut f = Fields(&[]);
        let _ = T::deserialize(&mut f);
        f.0
    }
    let mut keys = Vec::new();
    for section in fields::<FileConfig>() {
        let names = match *section {
            "output" => fields::<OutputSection>(),
            "source" => fields::<SourceSection>(),
            "queue" => fields::<QueueSection>(),
            "writer" => fields::<WriterSection>(),
            "segment" => fields::<SegmentSection>(),
            "durability" => fields::<DurabilitySection>(),
            "recovery" => fields::<RecoverySection>(),
            "stats" => fields::<StatsSection>(),
            "compression" => fields::<compression::CompressionSection>(),
            other => panic!("a new section [{other}]: name its struct in accepted_keys"),
        };
        keys.extend(
            names
                .iter()
                .map(|k| format!("{section}.{k}"))
                .filter(|k| !DEPRECATED_KEYS.contains(&k.as_str())),
        );
    }
    keys
}

#[test]
fn the_control_socket_defaults_to_framerec_ctl_beside_the_statistics_socket() {
    use std::path::{Path, PathBuf};
    let mut stats = Config::default().stats;
    stats.socket = StatsSocket::At(PathBuf::from("/run/x/stats.sock"));
    let out = Path::new("/data/rec");
    assert_eq!(
        stats.control_socket_path(out),
        Some(PathBuf::from("/run/x/framerec.ctl"))
    );
    stats.control_socket = StatsSocket::At(PathBuf::from("/tmp/c.ctl"));
    assert_eq!(
        stats.control_socket_path(out),
        Some(PathBuf::from("/tmp/c.ctl"))
    );
    stats.control_socket = StatsSocket::Off;
    assert_eq!(stats.control_socket_path(out), None);
    let cfg = parse("[stats]\ncontrol-socket = \"off\"\n", "f.toml").unwrap();
    assert_eq!(cfg.stats.control_socket, StatsSocket::Off);
}
