//! A fault-injecting FUSE filesystem for the fault tests: it passes every operation through to
//! a backing directory and, as the test's [`Plan`] says, delays writes, fails writes or fsyncs
//! with EIO, runs out of space after a byte budget (ENOSPC, with a short write for the part
//! that fits, and `statfs` telling the truth about it), or returns short writes. The recorder's
//! io_uring and `pwrite` writes reach it through the kernel like writes to any filesystem.
//!
//! Faults touch only data files (`*.mcap`, the fakenect layout's `*.pgm.tmp`): the interval
//! log, indexes and directories stay healthy.
//!
//! The kernel splits a large write into requests of at most 128 KiB, so "fail N writes" means
//! N requests: a burst long enough to cover one of the recorder's writes fails that write.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

/// What the filesystem does wrong, changed by the test while the recorder runs.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Every `n`th write request waits this long first.
    pub delay: Option<(Duration, u64)>,
    /// The next this-many write requests fail with EIO (`u64::MAX`: every one).
    pub fail_writes: u64,
    /// The next this-many fsyncs of files fail with EIO (`u64::MAX`: every one).
    pub fail_fsyncs: u64,
    /// Bytes the files may hold in total; writes beyond it get ENOSPC.
    pub capacity: Option<u64>,
    /// Every `n`th write request writes only half of its bytes.
    pub short_every: Option<u64>,
}

/// What the filesystem saw, for the test to check its faults really happened.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub writes: u64,
    pub failed_writes: u64,
    pub enospc: u64,
    pub short_writes: u64,
    pub delayed_writes: u64,
    pub fsyncs: u64,
    pub failed_fsyncs: u64,
}

#[derive(Default)]
struct State {
    plan: Plan,
    seen: Seen,
    /// Bytes held by the files (their sizes), for `capacity`.
    used: u64,
}

/// The test's handle on a mounted fault filesystem.
pub struct FaultFs {
    state: Arc<Mutex<State>>,
    pub mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl FaultFs {
    /// Mounts a pass-through of `backing` (created if missing) on `mountpoint`.
    pub fn mount(backing: &Path, mountpoint: &Path) -> FaultFs {
        std::fs::create_dir_all(backing).unwrap();
        std::fs::create_dir_all(mountpoint).unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let fs = Passthrough {
            state: state.clone(),
            inner: Mutex::new(Inner {
                paths: HashMap::from([(1, backing.to_path_buf())]),
                inos: HashMap::from([(backing.to_path_buf(), 1)]),
                next_ino: 2,
                files: HashMap::new(),
                next_fh: 1,
            }),
        };
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            fuser::MountOption::FSName("framerec-faultfs".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount(fs, mountpoint, &cfg).expect(
            "mount the fault filesystem (needs /dev/fuse and root, or fusermount3 from fuse3)",
        );
        FaultFs {
            state,
            mountpoint: mountpoint.to_path_buf(),
            session: Some(session),
        }
    }

    /// Changes the plan.
    pub fn plan(&self, f: impl FnOnce(&mut Plan)) {
        f(&mut self.state.lock().unwrap().plan);
    }

    pub fn seen(&self) -> Seen {
        self.state.lock().unwrap().seen
    }

    /// Bytes the files hold now.
    pub fn used(&self) -> u64 {
        self.state.lock().unwrap().used
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
        // If the unmount failed (a test panicked with the recorder still holding files), do
        // not leave a dead mount behind.
        crate::common::umount(&self.mountpoint, true);
    }
}

struct Inner {
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    files: HashMap<u64, (File, PathBuf)>,
    next_fh: u64,
}

impl Inner {
    fn ino_for(&mut self, path: PathBuf) -> u64 {
        if let Some(&ino) = self.inos.get(&path) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.paths.insert(ino, path.clone());
        self.inos.insert(path, ino);
        ino
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn path(&self, ino: INodeNo) -> Result<PathBuf, Errno> {
        self.paths.get(&ino.0).cloned().ok_or(Errno::ENOENT)
    }

    /// The attributes of `path`, under its inode number (given one if new).
    fn attr_of(&mut self, path: &Path) -> Result<FileAttr, Errno> {
        let ino = self.ino_for(path.to_path_buf());
        attr(ino, path)
    }

    /// `path` no longer exists: its inode number is retired.
    fn forget(&mut self, path: &Path) {
        if let Some(ino) = self.inos.remove(path) {
            self.paths.remove(&ino);
        }
    }

    /// A handle for `file`, opened at `path`.
    fn add_file(&mut self, file: File, path: PathBuf) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.files.insert(fh, (file, path));
        fh
    }

    /// The file behind handle `fh` (a clone of it), and whether it is a data file.
    fn file(&self, fh: FileHandle) -> Result<(File, bool), Errno> {
        let (f, p) = self.files.get(&fh.0).ok_or(Errno::EBADF)?;
        Ok((f.try_clone().map_err(errno)?, is_segment(p)))
    }
}

struct Passthrough {
    state: Arc<Mutex<State>>,
    inner: Mutex<Inner>,
}

const TTL: Duration = Duration::ZERO;

fn errno(e: std::io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

fn attr(ino: u64, path: &Path) -> Result<FileAttr, Errno> {
    let m = std::fs::symlink_metadata(path).map_err(errno)?;
    let kind = if m.is_dir() {
        FileType::Directory
    } else if m.file_type().is_symlink() {
        FileType::Symlink
    } else {
        FileType::RegularFile
    };
    Ok(FileAttr {
        ino: INodeNo(ino),
        size: m.size(),
        blocks: m.blocks(),
        atime: time(m.atime(), m.atime_nsec()),
        mtime: time(m.mtime(), m.mtime_nsec()),
        ctime: time(m.ctime(), m.ctime_nsec()),
        crtime: time(m.ctime(), m.ctime_nsec()),
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    })
}

/// A recording's data file: an MCAP segment, or a frame file of the fakenect layout being
/// written (`.d-*.pgm.tmp`).
fn is_segment(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "mcap")
        || p.to_str().is_some_and(|s| s.ends_with(".pgm.tmp"))
}

/// Counts down a "fail the next n" budget; `u64::MAX` never runs out.
fn take_fault(n: &mut u64) -> bool {
    match *n {
        0 => false,
        u64::MAX => true,
        _ => {
            *n -= 1;
            true
        }
    }
}

impl Filesystem for Passthrough {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut inner = self.inner.lock().unwrap();
        let r = inner.child(parent, name).and_then(|p| {
            std::fs::symlink_metadata(&p).map_err(errno)?;
            inner.attr_of(&p)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let r = self
            .inner
            .lock()
            .unwrap()
            .path(ino)
            .and_then(|p| attr(ino.0, &p));
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let path = match self.inner.lock().unwrap().path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let r = (|| {
            if let Some(mode) = mode {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            if let Some(size) = size {
                let old = std::fs::metadata(&path)?.len();
                OpenOptions::new().write(true).open(&path)?.set_len(size)?;
                let mut st = self.state.lock().unwrap();
                st.used = (st.used + size).saturating_sub(old);
            }
            Ok(())
        })();
        match r.map_err(errno).and_then(|()| attr(ino.0, &path)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut inner = self.inner.lock().unwrap();
        let r = inner.child(parent, name).and_then(|p| {
            std::fs::create_dir(&p).map_err(errno)?;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
            inner.attr_of(&p)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut inner = self.inner.lock().unwrap();
        let r = inner.child(parent, name).and_then(|p| {
            let len = std::fs::metadata(&p).map_err(errno)?.len();
            std::fs::remove_file(&p).map_err(errno)?;
            inner.forget(&p);
            let mut st = self.state.lock().unwrap();
            st.used = st.used.saturating_sub(len);
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut inner = self.inner.lock().unwrap();
        let r = (|| {
            let from = inner.child(parent, name)?;
            let to = inner.child(newparent, newname)?;
            let replaced = std::fs::metadata(&to).map(|m| m.len()).unwrap_or(0);
            std::fs::rename(&from, &to).map_err(errno)?;
            inner.forget(&to);
            if let Some(ino) = inner.inos.remove(&from) {
                inner.paths.insert(ino, to.clone());
                inner.inos.insert(to, ino);
            }
            let mut st = self.state.lock().unwrap();
            st.used = st.used.saturating_sub(replaced);
            Ok(())
        })();
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut inner = self.inner.lock().unwrap();
        let r = inner.path(ino).and_then(|p| {
            let acc = flags.0 & libc::O_ACCMODE;
            let f = OpenOptions::new()
                .read(true)
                .write(acc != libc::O_RDONLY)
                .open(&p)
                .map_err(errno)?;
            Ok(inner.add_file(f, p))
        });
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut inner = self.inner.lock().unwrap();
        let r = inner.child(parent, name).and_then(|p| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(flags & libc::O_TRUNC != 0)
                .custom_flags(flags & libc::O_EXCL)
                .mode(mode)
                .open(&p)
                .map_err(errno)?;
            let a = inner.attr_of(&p)?;
            Ok((a, inner.add_file(f, p)))
        });
        match r {
            Ok((a, fh)) => {
                reply.created(&TTL, &a, Generation(0), FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let f = match self.inner.lock().unwrap().file(fh) {
            Ok((f, _)) => f,
            Err(e) => return reply.error(e),
        };
        let r = (|| {
            let mut buf = vec![0u8; size as usize];
            let mut n = 0;
            while n < buf.len() {
                match f.read_at(&mut buf[n..], offset + n as u64)? {
                    0 => break,
                    k => n += k,
                }
            }
            buf.truncate(n);
            Ok::<_, std::io::Error>(buf)
        })();
        match r {
            Ok(b) => reply.data(&b),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (file, segment) = match self.inner.lock().unwrap().file(fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let mut len = data.len();
        let delay = {
            let mut st = self.state.lock().unwrap();
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            if !segment {
                st.used += (offset + len as u64).saturating_sub(size);
                drop(st);
                return match file.write_all_at(data, offset) {
                    Ok(()) => reply.written(len as u32),
                    Err(e) => reply.error(errno(e)),
                };
            }
            st.seen.writes += 1;
            let n = st.seen.writes;
            if take_fault(&mut st.plan.fail_writes) {
                st.seen.failed_writes += 1;
                return reply.error(Errno::EIO);
            }
            let growth = (offset + len as u64).saturating_sub(size);
            if let Some(cap) = st.plan.capacity {
                let room = cap.saturating_sub(st.used);
                if growth > room {
                    // Like a real filesystem: write what fits, then ENOSPC.
                    let fits = (size + room).saturating_sub(offset) as usize;
                    if fits == 0 || offset > size {
                        st.seen.enospc += 1;
                        return reply.error(Errno::ENOSPC);
                    }
                    len = fits.min(len);
                }
            }
            if st.plan.short_every.is_some_and(|k| n.is_multiple_of(k)) && len > 1 {
                st.seen.short_writes += 1;
                len /= 2;
            }
            st.used += (offset + len as u64).saturating_sub(size);
            match st.plan.delay {
                Some((d, every)) if n.is_multiple_of(every.max(1)) => {
                    st.seen.delayed_writes += 1;
                    Some(d)
                }
                _ => None,
            }
        };
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        match file.write_all_at(&data[..len], offset) {
            Ok(()) => reply.written(len as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.inner.lock().unwrap().files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let (file, segment) = match self.inner.lock().unwrap().file(fh) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        if segment {
            let mut st = self.state.lock().unwrap();
            st.seen.fsyncs += 1;
            if take_fault(&mut st.plan.fail_fsyncs) {
                st.seen.failed_fsyncs += 1;
                return reply.error(Errno::EIO);
            }
        }
        match file.sync_data() {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut inner = self.inner.lock().unwrap();
        let dir = match inner.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    let kind = match e.file_type() {
                        Ok(t) if t.is_dir() => FileType::Directory,
                        _ => FileType::RegularFile,
                    };
                    let child = inner.ino_for(e.path());
                    entries.push((child, kind, e.file_name()));
                }
            }
            Err(e) => return reply.error(errno(e)),
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let r = self.inner.lock().unwrap().path(ino);
        match r.and_then(|p| File::open(p).and_then(|f| f.sync_all()).map_err(errno)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let st = self.state.lock().unwrap();
        let (blocks, free) = match st.plan.capacity {
            Some(cap) => (cap / 4096, cap.saturating_sub(st.used) / 4096),
            None => (1 << 30, 1 << 29),
        };
        reply.statfs(blocks, free, free, 1 << 20, 1 << 19, 4096, 255, 4096);
    }
}
