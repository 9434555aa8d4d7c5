//! Buffered or `O_DIRECT`: the [`IoMode`] a recording asks for, and what `auto` means on an
//! output directory. The rule is [`decide`], a pure function of the filesystem's kind, a probe
//! of the directory and whether the recording's format allows direct writes; [`auto`] gathers
//! those facts (statfs, a probe file) and applies it.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How segments are written (config `writer.io-mode`, `--io-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum IoMode {
    /// Direct where the output filesystem is a local block filesystem that accepts an aligned
    /// `O_DIRECT` write and fdatasync in the directory, buffered elsewhere (tmpfs, FUSE,
    /// network and overlay filesystems, the ros2 profile, the fakenect layout): [`decide`].
    #[default]
    Auto,
    /// Through the page cache, released once durable.
    Buffered,
    /// `O_DIRECT` (falls back to buffered, with a warning, where the filesystem refuses it).
    Direct,
}

impl IoMode {
    pub fn as_str(self) -> &'static str {
        match self {
            IoMode::Auto => "auto",
            IoMode::Buffered => "buffered",
            IoMode::Direct => "direct",
        }
    }

    /// Whether segments are opened with `O_DIRECT`; `Auto` is resolved when a recording starts
    /// and counts as buffered until then.
    pub fn is_direct(self) -> bool {
        self == IoMode::Direct
    }
}

/// What kind of filesystem holds the output directory, for the `auto` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// A local filesystem on a block device, where `O_DIRECT` bypasses the page cache.
    LocalBlock(&'static str),
    /// Memory (tmpfs, ramfs): `O_DIRECT`, where accepted, saves no copy.
    Memory(&'static str),
    /// FUSE, network, overlay filesystems: `O_DIRECT` is passed on, emulated or refused.
    Elsewhere(&'static str),
    /// A filesystem the rule does not know (its `f_type`).
    Unknown(u32),
}

impl FsKind {
    /// The kind of filesystem of `f_type` (`statfs(2)`, `linux/magic.h`).
    pub fn of_magic(magic: u32) -> FsKind {
        match magic {
            0xEF53 => FsKind::LocalBlock("ext4"),
            0x5846_5342 => FsKind::LocalBlock("xfs"),
            0x9123_683E => FsKind::LocalBlock("btrfs"),
            0xF2F5_2010 => FsKind::LocalBlock("f2fs"),
            0x3153_464A => FsKind::LocalBlock("jfs"),
            0xCA45_1A4E => FsKind::LocalBlock("bcachefs"),
            0x0102_1994 => FsKind::Memory("tmpfs"),
            0x8584_58F6 => FsKind::Memory("ramfs"),
            0x6573_5546 => FsKind::Elsewhere("FUSE"),
            0x6969 => FsKind::Elsewhere("NFS"),
            0xFF53_4D42 => FsKind::Elsewhere("CIFS"),
            0xFE53_4D42 => FsKind::Elsewhere("SMB2"),
            0x794C_7630 => FsKind::Elsewhere("overlayfs"),
            0x2FC1_2FC1 => FsKind::Elsewhere("ZFS"),
            other => FsKind::Unknown(other),
        }
    }

    /// The kind of filesystem holding `dir`.
    pub fn of_dir(dir: &Path) -> io::Result<FsKind> {
        let st = nix::sys::statfs::statfs(dir).map_err(io::Error::from)?;
        // f_type is a signed word on some ABIs; the magic numbers are 32 bits.
        Ok(FsKind::of_magic(st.filesystem_type().0 as u32))
    }

    fn name(self) -> String {
        match self {
            FsKind::LocalBlock(n) | FsKind::Memory(n) | FsKind::Elsewhere(n) => n.to_string(),
            FsKind::Unknown(magic) => format!("filesystem type {magic:#x}"),
        }
    }
}

/// The probe file's name in the output directory (removed after the probe).
const PROBE_NAME: &str = ".framerec-direct-probe";
/// Bytes of the probe's write: one page, aligned, as the writers' direct writes are.
const PROBE_BYTES: usize = 4096;

/// Whether an aligned `O_DIRECT` write and fdatasync work in `dir`: a small file is created,
/// written, synced and removed (also when a step fails).
pub fn probe_direct(dir: &Path) -> io::Result<()> {
    let path = dir.join(format!("{PROBE_NAME}.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)?;
        let room = vec![0x5au8; 2 * PROBE_BYTES];
        let at = room.as_ptr().align_offset(PROBE_BYTES);
        let page = room.get(at..at + PROBE_BYTES).ok_or(io::ErrorKind::Other)?;
        file.write_all(page)?;
        file.sync_data()
    })();
    let removed = std::fs::remove_file(&path);
    match (result, removed) {
        (Err(e), _) | (Ok(()), Err(e)) if e.kind() != io::ErrorKind::NotFound => Err(e),
        (r, _) => r,
    }
}

/// The `auto` rule: the mode for a directory on `fs`, given the probe's result and, when the
/// recording cannot be written direct (ros2 profile, fakenect layout), why. Returns the mode
/// and the reason, as logged: `io mode direct (auto: ext4 accepts O_DIRECT)`.
pub fn decide(fs: FsKind, probe: &Result<(), String>, refusal: Option<&str>) -> (IoMode, String) {
    if let Some(why) = refusal {
        return (IoMode::Buffered, why.to_string());
    }
    let name = fs.name();
    match (fs, probe) {
        (FsKind::LocalBlock(_), Ok(())) => (IoMode::Direct, format!("{name} accepts O_DIRECT")),
        (FsKind::LocalBlock(_), Err(e)) => (
            IoMode::Buffered,
            format!("{name}, but the O_DIRECT probe failed: {e}"),
        ),
        (FsKind::Memory(_), _) => (
            IoMode::Buffered,
            format!("{name} is memory; O_DIRECT saves nothing"),
        ),
        (FsKind::Elsewhere(_), _) => (
            IoMode::Buffered,
            format!("{name} is not a local block filesystem"),
        ),
        (FsKind::Unknown(_), _) => (IoMode::Buffered, format!("{name} is not known to gain")),
    }
}

/// What `auto` means for `dir` (which exists): the filesystem's kind, then, only where direct
/// could be chosen, the probe; see [`decide`].
pub fn auto(dir: &Path, refusal: Option<&str>) -> (IoMode, String) {
    let fs = match FsKind::of_dir(dir) {
        Ok(fs) => fs,
        Err(e) => return (IoMode::Buffered, format!("statfs failed: {e}")),
    };
    let probe = if refusal.is_none() && matches!(fs, FsKind::LocalBlock(_)) {
        probe_direct(dir).map_err(|e| e.to_string())
    } else {
        Ok(())
    };
    decide(fs, &probe, refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_rule() {
        let ok = Ok(());
        let failed = Err("Invalid argument (os error 22)".to_string());
        let ext4 = FsKind::of_magic(0xEF53);
        assert_eq!(decide(ext4, &ok, None).0, IoMode::Direct);
        assert_eq!(decide(ext4, &ok, None).1, "ext4 accepts O_DIRECT");
        let (mode, why) = decide(ext4, &failed, None);
        assert_eq!(mode, IoMode::Buffered);
        assert!(
            why.contains("probe failed") && why.contains("os error 22"),
            "{why}"
        );
        assert_eq!(
            decide(ext4, &ok, Some("the ros2 profile refuses O_DIRECT")),
            (IoMode::Buffered, "the ros2 profile refuses O_DIRECT".into())
        );
        for magic in [
            0x0102_1994,
            0x8584_58F6,
            0x6573_5546,
            0x6969,
            0x794C_7630,
            0x1234,
        ] {
            let (mode, why) = decide(FsKind::of_magic(magic), &ok, None);
            assert_eq!(mode, IoMode::Buffered, "{magic:#x}: {why}");
        }
        assert_eq!(
            decide(FsKind::of_magic(0x5846_5342), &ok, None).0,
            IoMode::Direct
        );
    }

    #[test]
    fn the_probe_leaves_the_directory_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let _ = probe_direct(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(probe_direct(&dir.path().join("missing")).is_err());
    }
}
