//! MCAP segment files: creation (open-ahead, preallocation, the head made durable),
//! the choice of the segment a write goes to, rotation, finalizing (summary, footer, cut-back)
//! and fsync. What a failed fsync or a deleted file loses is in [`super::lost`].

use super::*;

/// A write that was issued to a segment, in file order.
pub(super) struct PendingWrite {
    pub(super) offset: u64,
    pub(super) end: u64,
    /// Set when the write completed; it is accounted for once every write before it is.
    pub(super) finished: Option<Finished>,
}

/// A completed write, waiting for the writes before it in the file to complete.
pub(super) struct Finished {
    pub(super) result: io::Result<()>,
    pub(super) metas: Vec<FrameMeta>,
    pub(super) chunks: Vec<ChunkIndexEntry>,
    pub(super) drops: Vec<segment::DropRange>,
}

/// Frames (and drop notices) written to a segment that no fsync has made durable yet, kept
/// until one does so that a failed fsync can name them.
pub(super) struct Undurable {
    pub(super) end: u64,
    /// The write's own list, moved here (no copy per write).
    pub(super) metas: Vec<FrameMeta>,
    pub(super) drops: Vec<segment::DropRange>,
}

pub(super) struct SegState {
    pub(super) next_offset: u64,
    pub(super) opened_at: Instant,
    pub(super) has_data: bool,
    pub(super) chunks: Vec<ChunkIndexEntry>,
    pub(super) pending: VecDeque<PendingWrite>,
    pub(super) undurable: VecDeque<Undurable>,
    /// End of the contiguous prefix of accounted writes, and the last frame in it.
    pub(super) written_end: u64,
    pub(super) written_seq: Option<u64>,
    pub(super) durable_end: u64,
    pub(super) durable_seq: Option<u64>,
    /// Frames (as runs of sequence numbers) and drop notices already durable in the segment:
    /// what is lost if its file is deleted.
    pub(super) durable_frames: Vec<(StreamId, u64, u64)>,
    pub(super) durable_notices: Vec<segment::DropRange>,
    /// Disk space is reserved (`fallocate`) up to here.
    pub(super) allocated_end: u64,
    pub(super) in_flight: usize,
    pub(super) sealed: bool,
    /// Where the segment is cut back to when it closes, and why: the offset of its first
    /// failed write, or its durable end after a failed fsync. Nothing from there on counts as
    /// written.
    pub(super) cut: Option<(u64, DropReason)>,
    pub(super) head_len: u64,
    pub(super) head: TailStats,
}

pub(super) struct Segment {
    pub(super) id: u64,
    pub(super) path: PathBuf,
    pub(super) file: SegFile,
    pub(super) direct: bool,
    pub(super) st: RefCell<SegState>,
    /// Notified when the last in-flight write of a sealed segment completes.
    pub(super) idle: Notify,
}

impl Segment {
    pub(super) fn finish(&self, offset: u64, finished: Finished) {
        let mut st = self.st.borrow_mut();
        if let Some(w) = st.pending.iter_mut().find(|w| w.offset == offset) {
            w.finished = Some(finished);
        }
    }
}

/// Disk space kept reserved past a segment's data for its summary and footer: a base for the
/// fixed records plus room for each chunk's index entry.
pub(super) fn tail_reserve(chunks: usize) -> u64 {
    (64 << 10) + 256 * chunks as u64
}

/// Room kept past the tail for drop notices, so that frames dropped because the disk is full
/// can still be named in the file.
pub(super) const NOTICE_RESERVE: u64 = 64 << 10;

/// A finalized segment, remembered so that its loss (the file or the whole directory deleted
/// while recording went on) is counted, not reported as written.
pub(super) struct FinishedSegment {
    pub(super) path: PathBuf,
    pub(super) id: (u64, u64),
    pub(super) frames: Vec<(StreamId, u64, u64)>,
    pub(super) notices: Vec<segment::DropRange>,
}

/// Creates segment `id`: file, head, directory entry made durable. A file left half-made by a
/// failure is removed.
pub(super) async fn open_segment(ctx: Rc<Mcap>, id: u64) -> Result<Rc<Segment>, WriterError> {
    let path = ctx.pool.target.dir.join(segment::segment_file_name(id));
    let r = create_segment(&ctx, &path, id).await;
    // Remove what this attempt made, never a file that was there before it (`create_new`
    // failed: someone else's file stands in the way, and it is theirs).
    let not_ours = matches!(&r, Err(WriterError::CreateSegment { source, .. })
        if source.kind() == io::ErrorKind::AlreadyExists);
    if r.is_err() && !not_ours && path.exists() {
        let _ = std::fs::remove_file(&path);
    }
    r
}

pub(super) async fn create_segment(
    ctx: &Rc<Mcap>,
    path: &Path,
    id: u64,
) -> Result<Rc<Segment>, WriterError> {
    let create_err = |source| WriterError::CreateSegment {
        path: path.to_path_buf(),
        source,
    };
    let mut direct = ctx.direct.get();
    let file = match SegFile::create(path, direct, ctx.pool.backend) {
        Err(e) if direct && e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "the filesystem refuses O_DIRECT; using buffered I/O");
            ctx.direct.set(false);
            direct = false;
            SegFile::create(path, false, ctx.pool.backend)
        }
        r => r,
    }
    .map_err(create_err)?;
    let meta = SegmentMeta {
        recording_id: ctx.pool.target.recording_id.clone(),
        segment_id: id,
        streams: ctx.pool.target.streams.clone(),
    };
    let (head, head_stats) = segment::encode_head(&meta, ctx.pool.target.profile, direct);
    let head_len = head.len() as u64;
    // Reserve room for the head, an empty segment's tail and drop notices first: a segment
    // that could be created can always be closed.
    let allocated_end = if ctx.preallocate.get() {
        let want = head_len + tail_reserve(0) + NOTICE_RESERVE;
        preallocate(ctx, &file, 0, want).await.map_err(create_err)?
    } else {
        0
    };
    let mut buf = crate::frame::FrameBuf::new(head.len());
    buf.region_mut()[..head.len()].copy_from_slice(&head);
    let (res, _) = file
        .write_all_at(vec![IoSpan::new(buf, (0, head.len()), false)], 0)
        .await;
    res.map_err(create_err)?;
    let dir = ctx.pool.target.dir.clone();
    file::blocking(move || sync_dir(&dir))
        .await
        .map_err(create_err)?;
    Ok(Rc::new(Segment {
        id,
        path: path.to_path_buf(),
        file,
        direct,
        st: RefCell::new(SegState {
            next_offset: head_len,
            opened_at: Instant::now(),
            has_data: false,
            chunks: Vec::new(),
            pending: VecDeque::new(),
            undurable: VecDeque::new(),
            written_end: head_len,
            written_seq: None,
            durable_end: 0,
            durable_seq: None,
            durable_frames: Vec::new(),
            durable_notices: Vec::new(),
            allocated_end,
            in_flight: 0,
            sealed: false,
            cut: None,
            head_len,
            head: head_stats,
        }),
        idle: Notify::new(),
    }))
}

/// The filesystem cannot preallocate (`EOPNOTSUPP`: FUSE, some network filesystems).
pub(super) fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

/// Reserves `from..to` of `file`; returns how far space is reserved now. Where the filesystem
/// cannot preallocate that is `from`, and preallocation is off for the rest of the run.
pub(super) async fn preallocate(ctx: &Mcap, file: &SegFile, from: u64, to: u64) -> io::Result<u64> {
    match file.preallocate(from, to - from).await {
        Ok(()) => Ok(to),
        Err(e) if unsupported(&e) => {
            if ctx.preallocate.replace(false) {
                tracing::warn!(error = %e, "the filesystem cannot preallocate segments; a full disk will be found by a failing write instead");
            }
            Ok(from)
        }
        Err(e) => Err(e),
    }
}

/// Reserves disk space in `seg` for a write of `len` bytes carrying `frames` frames at its next
/// offset, plus its tail and (for frames) room for drop notices, `preallocate-bytes` at a time.
/// `Err` when the filesystem is full: the write must not be made, and the segment can still
/// be closed.
pub(super) async fn reserve(
    ctx: &Rc<Mcap>,
    seg: &Rc<Segment>,
    len: u64,
    frames: usize,
) -> io::Result<()> {
    if !ctx.preallocate.get() {
        return Ok(());
    }
    let (need, have) = {
        let st = seg.st.borrow();
        let notices = if frames > 0 { NOTICE_RESERVE } else { 0 };
        // At most a chunk per frame (direct I/O) and one of drop notices.
        let chunks = st.chunks.len() + frames + 1;
        let need = st.next_offset + len + tail_reserve(chunks) + notices;
        (need, st.allocated_end)
    };
    if need <= have {
        return Ok(());
    }
    let step = ctx.pool.cfg.preallocate_bytes.max(1);
    let want = (need + step).div_ceil(4096) * 4096;
    // Not a whole step's room left: at least what this write needs.
    let end = match preallocate(ctx, &seg.file, have, want).await {
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            preallocate(ctx, &seg.file, have, need).await?
        }
        r => r?,
    };
    seg.st.borrow_mut().allocated_end = end;
    Ok(())
}

/// The id of the next segment to create.
pub(super) fn take_segment_id(ctx: &Mcap) -> u64 {
    let mut st = ctx.st.borrow_mut();
    st.next_id += 1;
    st.next_id - 1
}

pub(super) fn open_next_ahead(ctx: &Rc<Mcap>) {
    let id = take_segment_id(ctx);
    ctx.st.borrow_mut().next = Some(spawn_local(open_segment(ctx.clone(), id)));
}

/// The segment a write of about `len` bytes goes to, rotating first if the current one is
/// full, old or failed. `Err` (the reason to drop the write's frames) when no segment can be
/// had; `prepare` then waits [`RETRY_OPEN_AFTER`] before asking again. A full segment is sealed
/// only once its successor exists: until then it stays open for drop notices (`notices_only`
/// writes), so frames dropped because no new segment can be created (a directory made
/// read-only, a full disk) are still named in the recording. Called with the intake lock.
pub(super) async fn segment_for(
    ctx: &Rc<Mcap>,
    len: u64,
    notices_only: bool,
) -> Result<Rc<Segment>, DropReason> {
    let current = ctx.current();
    if let Some(current) = &current {
        let (sealed, rotate) = {
            let st = current.st.borrow();
            let limits = ctx.seg_cfg.borrow();
            let due = st.has_data
                && (st.next_offset + len > limits.max_bytes
                    || (!notices_only && ctx.pool.live.split_asked())
                    || limits
                        .max_duration
                        .is_some_and(|d| st.opened_at.elapsed() >= d));
            (st.sealed, st.sealed || due)
        };
        if !rotate || (notices_only && !sealed) {
            return Ok(current.clone());
        }
    }
    let ahead = ctx.st.borrow_mut().next.take();
    let opened = match ahead {
        Some(h) => match h.await {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
        None => open_segment(ctx.clone(), take_segment_id(ctx)).await,
    };
    match opened {
        Ok(next) => {
            if let Some(current) = &current {
                seal(ctx, current);
                ctx.pool.live.split_done(SplitDone {
                    closed: current.id,
                    closed_path: current.path.clone(),
                    opened: next.id,
                    opened_path: next.path.clone(),
                });
            }
            tracing::info!(segment = %next.path.display(), "segment opened");
            became_current(ctx, &next);
            // Its age counts from now, not from when it was opened ahead.
            next.st.borrow_mut().opened_at = Instant::now();
            let mut st = ctx.st.borrow_mut();
            st.retry_at = None;
            st.segments.push_back(next.clone());
            drop(st);
            open_next_ahead(ctx);
            Ok(next)
        }
        Err(e) => {
            let reason = e.drop_reason();
            ctx.st.borrow_mut().retry_at = Some((Instant::now() + RETRY_OPEN_AFTER, reason));
            ctx.pool.failure(e);
            Err(reason)
        }
    }
}

/// Closes `seg` to new writes and finalizes it once its writes complete.
pub(super) fn seal(ctx: &Rc<Mcap>, seg: &Rc<Segment>) {
    if std::mem::replace(&mut seg.st.borrow_mut().sealed, true) {
        return;
    }
    let handle = spawn_local(finalize(ctx.clone(), seg.clone()));
    ctx.st.borrow_mut().finalizers.push(handle);
}

/// `seg` takes new frames from now on: counted, and told to the listeners.
pub(super) fn became_current(ctx: &Mcap, seg: &Segment) {
    ctx.pool
        .counters
        .segments_opened
        .fetch_add(1, Ordering::Relaxed);
    for l in ctx.pool.listeners.iter() {
        l.opened(seg.id, &seg.path);
    }
}

/// Writes the summary and footer of a sealed segment once its writes are done, cutting it back
/// first if a write or fsync failed, and makes it durable.
pub(super) async fn finalize(ctx: Rc<Mcap>, seg: Rc<Segment>) {
    loop {
        if seg.st.borrow().in_flight == 0 {
            break;
        }
        seg.idle.notified().await;
    }
    let end;
    // A failed fsync cuts the segment back to its durable end: then the tail is written again.
    // A tail the disk refused (full) is tried again until the recorder stops.
    let mut fsync_failures = 0;
    let mut tries = 0;
    loop {
        tries += 1;
        let (tail, at, cut) = {
            let st = seg.st.borrow();
            let at = st.cut.map_or(st.next_offset, |(o, _)| o);
            let target = &ctx.pool.target;
            let mut extra = target
                .profile
                .tail_metadata(seg.id, &target.streams, &st.chunks);
            extra.extend(segment::clock::clock_metadata(
                &target.streams,
                &ctx.clock.borrow(),
            ));
            let tail = segment::encode_tail(
                at,
                &st.chunks,
                &target.streams,
                &st.head,
                &extra,
                seg.direct,
            );
            (tail, at, st.cut.is_some())
        };
        if (cut || tries > 1)
            && let Err(e) = seg.file.set_len(at).await
        {
            abandon(&ctx, &seg, "cannot cut it back after a failure", e);
            return;
        }
        let res = write_tail(&seg, &tail, at).await;
        if let Err(e) = res {
            if ctx.stopping.get() {
                abandon(&ctx, &seg, "cannot write its summary", e);
                return;
            }
            ctx.pool.failure(WriterError::Finalize {
                segment: seg.path.clone(),
                source: e,
            });
            tokio::time::sleep(RETRY_OPEN_AFTER).await;
            continue;
        }
        match fsync(&ctx, &seg).await {
            Ok(()) if seg.file.entry_gone(&seg.path) => {
                segment_deleted(&ctx, &seg);
                return;
            }
            Ok(()) => {
                end = at + tail.len() as u64;
                break;
            }
            Err(e) if fsync_failures > 0 => {
                abandon(&ctx, &seg, "fsync failed twice", e);
                return;
            }
            Err(e) => {
                fsync_failures += 1;
                fsync_failed(&ctx, &seg, e);
            }
        }
    }
    finalized(&ctx, seg, end).await;
}

/// Writes `tail` at `at`. With O_DIRECT the write is whole pages, zero-filled past the tail's
/// closing magic, and the file is then cut back to the tail's end: readers find the footer and
/// magic at the very end.
async fn write_tail(seg: &Segment, tail: &[u8], at: u64) -> io::Result<()> {
    let len = if seg.direct {
        tail.len().next_multiple_of(crate::frame::ALIGN)
    } else {
        tail.len()
    };
    let mut buf = crate::frame::FrameBuf::new(len);
    buf.region_mut()[..tail.len()].copy_from_slice(tail);
    buf.region_mut()[tail.len()..len].fill(0);
    let (res, _) = seg
        .file
        .write_all_at(vec![IoSpan::new(buf, (0, len), false)], at)
        .await;
    res?;
    if len > tail.len() {
        seg.file.set_len(at + tail.len() as u64).await?;
    }
    Ok(())
}

/// `seg`'s tail is durable up to `end`: its space and page cache given back, its frames durable,
/// it is remembered as finished (so its loss is counted) and the listeners are told.
async fn finalized(ctx: &Rc<Mcap>, seg: Rc<Segment>, end: u64) {
    let allocated = seg.st.borrow().allocated_end;
    if allocated > end {
        // Give back the space reserved past the end (tmpfs keeps it otherwise).
        seg.file.release_space(end, allocated - end).await;
    }
    if !seg.direct && ctx.dur.borrow().release_page_cache {
        seg.file.release_cache(end);
    }
    let made = std::mem::take(&mut seg.st.borrow_mut().undurable);
    ctx.made_durable(&seg, made);
    {
        let (frames, notices) = {
            let mut s = seg.st.borrow_mut();
            (
                std::mem::take(&mut s.durable_frames),
                std::mem::take(&mut s.durable_notices),
            )
        };
        let mut st = ctx.st.borrow_mut();
        st.segments.retain(|s| !Rc::ptr_eq(s, &seg));
        st.written.push(seg.path.clone());
        if let Some(id) = seg.file.identity() {
            st.finished.push(FinishedSegment {
                path: seg.path.clone(),
                id,
                frames,
                notices,
            });
        }
    }
    ctx.update_durable();
    tracing::info!(segment = %seg.path.display(), bytes = end, "segment finalized");
    if ctx.pool.target.profile == Profile::Ros2 {
        let dir = ctx.pool.target.dir.clone();
        let res = file::blocking(move || segment::ros2::bag::write_metadata_yaml(&dir)).await;
        if let Err(e) = res {
            // The segments are whole; `framerec recover` rebuilds the file from them.
            tracing::warn!(error = %e, "cannot update the recording's metadata.yaml");
        }
    }
    for l in ctx.pool.listeners.iter() {
        l.finalized(seg.id, &seg.path);
    }
    // The finalized segment may still be referenced by the syncer's snapshot; close via drop.
    if let Ok(seg) = Rc::try_unwrap(seg)
        && let Err(e) = seg.file.close().await
    {
        tracing::warn!(error = %e, "closing a finalized segment failed");
    }
}

/// One fdatasync of `seg`, timed into the fsync histogram and counted when it succeeds.
pub(super) async fn fsync(ctx: &Mcap, seg: &Segment) -> io::Result<()> {
    let t = Instant::now();
    let r = seg.file.sync_data().await;
    record(
        &mut ctx.pool.histograms().fsync_latency_ns,
        t.elapsed().as_nanos() as u64,
    );
    if r.is_ok() {
        ctx.pool.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    r
}

pub(super) async fn sync_segment(ctx: &Rc<Mcap>, seg: &Rc<Segment>) {
    let (end, seq) = {
        let st = seg.st.borrow();
        if st.cut.is_some() || st.written_end <= st.durable_end {
            return;
        }
        (st.written_end, st.written_seq)
    };
    match fsync(ctx, seg).await {
        Ok(()) if seg.file.entry_gone(&seg.path) => segment_deleted(ctx, seg),
        Ok(()) => {
            let mut st = seg.st.borrow_mut();
            if st.cut.is_some() {
                // A write failed meanwhile; its segment's own close decides what is durable.
                return;
            }
            st.durable_end = st.durable_end.max(end);
            if seq.is_some() {
                st.durable_seq = seq.max(st.durable_seq);
            }
            let mut made = Vec::new();
            while st.undurable.front().is_some_and(|u| u.end <= end) {
                made.extend(st.undurable.pop_front());
            }
            drop(st);
            ctx.made_durable(seg, made);
            if !seg.direct && ctx.dur.borrow().release_page_cache {
                seg.file.release_cache(end);
            }
        }
        Err(e) => fsync_failed(ctx, seg, e),
    }
}
