//! What a segment loses when it cannot be finished, when an fsync fails (everything not yet
//! durable), or when its file is deleted while recording (everything in it): the frames move
//! from written to dropped under their reason, and their drop notices go to a later segment.

use super::*;

/// Leaves a segment unfinished after its summary could not be written: `recover` (or the next
/// start in the directory) rebuilds it from its intact chunks.
pub(super) fn abandon(ctx: &Rc<Mcap>, seg: &Rc<Segment>, what: &str, e: io::Error) {
    tracing::error!(segment = %seg.path.display(), error = %e, "segment left unfinished ({what}); run `framerec recover`");
    ctx.st.borrow_mut().segments.retain(|s| !Rc::ptr_eq(s, seg));
    ctx.pool.failure(WriterError::Finalize {
        segment: seg.path.clone(),
        source: e,
    });
}

/// An fsync of `seg` failed. Linux may have dropped the unsynced pages while keeping them
/// readable from the cache, so nothing written since the last good fsync can be trusted: the
/// segment is cut back to its durable end, its frames after it are counted as
/// `dropped{fsync_error}` (their drop notices and those they carried go to a later write), the
/// durable watermark never passes them, and the segment is closed.
pub(super) fn fsync_failed(ctx: &Rc<Mcap>, seg: &Rc<Segment>, e: io::Error) {
    let lost = {
        let mut st = seg.st.borrow_mut();
        let at = st.durable_end.max(st.head_len);
        if st.cut.is_none_or(|(o, _)| o > at) {
            st.cut = Some((at, DropReason::FsyncError));
        }
        st.chunks.retain(|c| c.chunk_start_offset < at);
        st.written_end = at;
        st.written_seq = st.durable_seq;
        std::mem::take(&mut st.undurable)
    };
    let mut seqs: Vec<FrameKey> = Vec::new();
    let mut orders: Vec<u64> = Vec::new();
    for u in lost {
        seqs.extend(u.metas.iter().map(|m| m.key()));
        orders.extend(u.metas.iter().map(|m| m.order));
        ctx.pool.ledger.notices().restore(u.drops);
    }
    ctx.pool.ledger.revoked(&seqs, DropReason::FsyncError);
    never_durable(ctx, orders);
    ctx.pool.failure(WriterError::Fsync {
        segment: seg.path.clone(),
        frames: seqs.len() as u64,
        source: e,
    });
    seal(ctx, seg);
}

/// The file of `seg` lost its name while it was recorded (deleted, renamed away, or its
/// directory removed): nothing in it can be found. Its frames, durable ones included, move from
/// written to `dropped{segment_deleted}` (their drop notices, and those it carried, go to a later
/// segment if one can be made); the segment takes no more writes and is left as it is.
pub(super) fn segment_deleted(ctx: &Rc<Mcap>, seg: &Rc<Segment>) {
    let (durable, undurable, notices) = {
        let mut st = seg.st.borrow_mut();
        st.sealed = true;
        st.cut = Some((st.head_len, DropReason::SegmentDeleted));
        st.chunks.clear();
        (
            std::mem::take(&mut st.durable_frames),
            std::mem::take(&mut st.undurable),
            std::mem::take(&mut st.durable_notices),
        )
    };
    let mut notices = notices;
    let mut seqs: Vec<FrameMeta> = Vec::new();
    for u in undurable {
        seqs.extend(u.metas);
        notices.extend(u.drops);
    }
    ctx.st.borrow_mut().segments.retain(|s| !Rc::ptr_eq(s, seg));
    lost_with_file(ctx, &seg.path, &durable, seqs, notices);
    // Its directory may be gone with it, and the segments finished in it.
    check_finished(ctx);
}

/// Counts the frames of a segment file that is gone as `dropped{segment_deleted}` instead of
/// written: `durable` (runs of sequence numbers, per stream) and `undurable`; its drop notices
/// go to a later segment.
pub(super) fn lost_with_file(
    ctx: &Mcap,
    path: &Path,
    durable: &[(StreamId, u64, u64)],
    undurable: Vec<FrameMeta>,
    notices: Vec<segment::DropRange>,
) {
    let mut seqs: Vec<FrameKey> = undurable.iter().map(|m| m.key()).collect();
    seqs.extend(durable.iter().flat_map(|&(stream, a, b)| {
        (a..=b).map(move |s| FrameKey {
            stream,
            seq: FrameSeq(s),
        })
    }));
    ctx.pool.ledger.notices().restore(notices);
    ctx.pool.ledger.revoked(&seqs, DropReason::SegmentDeleted);
    never_durable(ctx, undurable.iter().map(|m| m.order));
    ctx.st.borrow_mut().written.retain(|p| p != path);
    ctx.pool.failure(WriterError::SegmentDeleted {
        segment: path.to_path_buf(),
        frames: seqs.len() as u64,
    });
}

/// Looks for finalized segments whose file is gone (deleted, or the directory removed) and
/// counts their frames as lost. One `stat` per finalized segment: called when a loss was seen,
/// when the directory changed, and once at the end of the run.
pub(super) fn check_finished(ctx: &Mcap) {
    use std::os::unix::fs::MetadataExt;
    let gone: Vec<FinishedSegment> = {
        let mut st = ctx.st.borrow_mut();
        let (gone, kept) = std::mem::take(&mut st.finished).into_iter().partition(|f| {
            std::fs::metadata(&f.path)
                .map(|m| (m.dev(), m.ino()) != f.id)
                .unwrap_or_else(|e| e.kind() == io::ErrorKind::NotFound)
        });
        st.finished = kept;
        gone
    };
    for f in gone {
        lost_with_file(ctx, &f.path, &f.frames, Vec::new(), f.notices);
    }
}

/// True when the recording directory is no longer the one the run started in (removed, or
/// removed and made again).
pub(super) fn directory_changed(ctx: &Mcap) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(&ctx.pool.target.dir) {
        Ok(m) => ctx.dir_id.is_some_and(|id| id != (m.dev(), m.ino())),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}
