//! One write: laying out a batch (segment, offset, chunk encoded in place), submitting it,
//! and settling its completion in file order (written, rewritten after a failed fsync, or
//! dropped).

use super::*;

/// A write that has been laid out and is ready to submit.
pub(in crate::sink) struct PreparedWrite {
    pub(super) seg: Rc<Segment>,
    pub(super) offset: u64,
    pub(super) spans: Vec<IoSpan>,
    pub(super) metas: Vec<FrameMeta>,
    pub(super) chunks: Vec<ChunkIndexEntry>,
    pub(super) drops: Vec<segment::DropRange>,
    /// The frames of compressed chunks (by their index in `metas`): their buffers go back to
    /// the pool once the write is done, and are still there if it must be made again.
    pub(super) kept: Vec<(usize, FrameBuf)>,
}

/// Hands `batch` to the compression workers; written raw (at once, in its turn) when the
/// queue is past its high-water mark, the segments are O_DIRECT, or every worker is busy.
pub(super) fn stage(
    ctx: &Mcap,
    compressors: &Compressors,
    batch: &mut Vec<Frame>,
) -> Option<Staging> {
    let cfg = ctx.pool.cfg.compression.as_ref()?;
    let frames = std::mem::replace(batch, Vec::with_capacity(batch.capacity()));
    let queue = &ctx.pool.queue;
    let pressed = 100 * queue.len() >= usize::from(cfg.high_water_percent) * queue.capacity();
    if pressed || ctx.direct.get() {
        if pressed {
            let c = &ctx.pool.counters.compress;
            c.batches_raw_pressure.fetch_add(1, Ordering::Relaxed);
        }
        return Some(Staging::Ready(vec![Piece::Raw(frames)]));
    }
    let metas = frames.iter().map(|f| f.meta).collect();
    Some(match compressors.try_submit(frames) {
        Ok(answer) => Staging::Pending { answer, metas },
        Err(frames) => Staging::Ready(vec![Piece::Raw(frames)]),
    })
}

/// Frames `range` of a batch, and the compressed chunk that holds them (`None`: written raw).
type Part = (std::ops::Range<usize>, Option<CompressedChunk>);

/// [`prepare`] for a batch that went through the compression stage: its pieces, in order.
/// With O_DIRECT (which compressed chunks cannot align to) every piece is written raw.
pub(super) async fn prepare_pieces(ctx: &Rc<Mcap>, pieces: Vec<Piece>) -> Option<PreparedWrite> {
    let direct = ctx.direct.get();
    let mut frames = Vec::new();
    let mut parts: Vec<Part> = Vec::with_capacity(pieces.len());
    for p in pieces {
        let (run, chunk) = match p {
            Piece::Raw(run) => (run, None),
            Piece::Compressed { chunk, frames } => (frames, (!direct).then_some(chunk)),
        };
        match (parts.last_mut(), &chunk) {
            // Raw runs next to each other are one raw chunk.
            (Some((range, None)), None) => range.end += run.len(),
            _ => parts.push((frames.len()..frames.len() + run.len(), chunk)),
        }
        frames.extend(run);
    }
    prepare_parts(ctx, &mut frames, Some(parts)).await
}

/// Counts `frames` as dropped for `reason` (no segment can take them) and recycles their
/// buffers, leaving `frames` empty.
pub(super) fn discard_frames(ctx: &Mcap, frames: &mut Vec<Frame>, reason: DropReason) {
    let seqs: Vec<FrameKey> = frames.iter().map(|f| f.meta.key()).collect();
    ctx.pool.ledger.dropped(&seqs, reason);
    // Frames written again after a failed fsync were taken once already.
    never_durable(ctx, frames.iter().map(|f| f.meta.order));
    frames.clear();
}

/// Notes the clock offset of each stream the first time one of its frames is written (one per
/// run: every segment closed later records it).
fn learn_clock(ctx: &Mcap, frames: &[Frame]) {
    let mut clock = ctx.clock.borrow_mut();
    // Once every stream is known (the first frames of the run) there is nothing to learn: no
    // lookup per frame for the rest of the run.
    if clock.len() == ctx.pool.target.streams.len() {
        return;
    }
    for f in frames {
        clock
            .entry(f.meta.stream.index())
            .or_insert_with(|| segment::clock::offset_of(f.meta.publish_ns, f.meta.device_ns));
    }
}

/// Picks the segment, assigns the offset and encodes drop notices and frames in place, moving
/// the frames out of `frames` (which keeps its capacity for the next batch). Called with the
/// prepare lock held.
pub(super) async fn prepare(ctx: &Rc<Mcap>, frames: &mut Vec<Frame>) -> Option<PreparedWrite> {
    prepare_parts(ctx, frames, None).await
}

/// [`prepare`] of `frames` cut into `parts` (`None`: one raw chunk).
async fn prepare_parts(
    ctx: &Rc<Mcap>,
    frames: &mut Vec<Frame>,
    parts: Option<Vec<Part>>,
) -> Option<PreparedWrite> {
    let mut drops = ctx.pool.ledger.notices().take();
    let frame_bytes = |range: std::ops::Range<usize>| -> u64 {
        frames[range]
            .iter()
            .map(|f| f.buf.region().len() as u64)
            .sum()
    };
    let data: u64 = match &parts {
        None => frame_bytes(0..frames.len()),
        Some(parts) => parts
            .iter()
            .map(|(range, chunk)| match chunk {
                Some(c) => c.bytes.len() as u64,
                None => frame_bytes(range.clone()),
            })
            .sum(),
    };
    let estimate = data + 4096 * (1 + drops.len() as u64 / 16);
    // The disk refused a segment or space a moment ago: do not ask again for every batch
    // (drop notices alone still go to the open segment, which keeps room for them).
    let notices_only = frames.is_empty();
    let paused = ctx
        .st
        .borrow()
        .retry_at
        .filter(|(until, _)| Instant::now() < *until && !notices_only);
    let seg = match paused {
        Some((_, reason)) => Err(reason),
        None => segment_for(ctx, estimate, notices_only).await,
    };
    let seg = match seg {
        Ok(s) => s,
        Err(reason) => {
            ctx.pool.ledger.notices().restore(drops);
            discard_frames(ctx, frames, reason);
            return None;
        }
    };
    if let Err(e) = reserve(ctx, &seg, estimate, frames.len()).await {
        space_refused(ctx, &seg, drops, frames, e);
        return None;
    }
    learn_clock(ctx, frames);
    let direct = seg.direct;
    let mut st = seg.st.borrow_mut();
    let offset = st.next_offset;
    let mut at = offset;
    let mut spans = Vec::with_capacity(frames.len() + 1);
    let mut chunks = Vec::new();
    if !drops.is_empty() {
        // The notices go before this batch in the file, and the batch may hold frames taken
        // before a drop was noticed: a notice's log time may not pass the batch's first frame,
        // or the file leaves log-time order (`mcap doctor --strict-message-order`).
        if let Some(first) = frames.first() {
            for d in &mut drops {
                d.time_ns = d.time_ns.min(first.meta.host_real_ns);
            }
        }
        let target = &ctx.pool.target;
        let (buf, span, entry) = encode_drops(&drops, &target.streams, target.profile, at, direct);
        at += (span.1 - span.0) as u64;
        spans.push(IoSpan::new(buf, span, false));
        chunks.push(entry);
    }
    let metas: Vec<_> = frames.iter().map(|f| f.meta).collect();
    {
        let mut pool = ctx.st.borrow_mut();
        for m in &metas {
            pool.watermark.taken(m.order, m.host_mono_ns);
        }
    }
    let parts = parts.unwrap_or_else(|| vec![(0..frames.len(), None)]);
    let kept = lay_out(ctx, frames, parts, direct, &mut at, &mut spans, &mut chunks);
    st.next_offset = at;
    st.in_flight += 1;
    st.has_data = true;
    st.pending.push_back(PendingWrite {
        offset,
        end: at,
        finished: None,
    });
    drop(st);
    Some(PreparedWrite {
        seg,
        offset,
        spans,
        metas,
        chunks,
        drops,
        kept,
    })
}

/// Encodes `frames` at file offset `*at`, part by part (a raw part in place, a compressed one
/// as its chunk's bytes, which O_DIRECT cannot take: those go raw), moving them into `spans`
/// and their chunks into `chunks`; returns the buffers of compressed frames (by frame index).
fn lay_out(
    ctx: &Mcap,
    frames: &mut Vec<Frame>,
    parts: Vec<Part>,
    direct: bool,
    at: &mut u64,
    spans: &mut Vec<IoSpan>,
    chunks: &mut Vec<ChunkIndexEntry>,
) -> Vec<(usize, FrameBuf)> {
    let target = &ctx.pool.target;
    let mut kept = Vec::new();
    let mut taken = 0;
    for (range, chunk) in parts {
        debug_assert_eq!(range.start, taken);
        let n = range.len();
        match chunk.filter(|_| !direct) {
            None => {
                let run = &mut frames[..n];
                let layout = encode_frames(run, *at, &target.streams, target.profile, direct);
                *at += layout.len;
                chunks.extend(layout.chunks);
                spans.extend(frames.drain(..n).map(|f| IoSpan::new(f.buf, f.span, true)));
            }
            Some(c) => {
                chunks.push(c.entry.moved_by(*at));
                *at += c.bytes.len() as u64;
                spans.push(IoSpan::of_bytes(c.bytes));
                let bufs = frames
                    .drain(..n)
                    .enumerate()
                    .map(|(i, f)| (taken + i, f.buf));
                kept.extend(bufs);
            }
        }
        taken = range.end;
    }
    kept
}

/// The disk is full: the segment stays open (its tail and drop notices have room); the frames
/// of `frames` are dropped, and space is looked for again after a pause.
fn space_refused(
    ctx: &Mcap,
    seg: &Segment,
    drops: Vec<segment::DropRange>,
    frames: &mut Vec<Frame>,
    e: io::Error,
) {
    let reason = DropReason::of_write_error(&e);
    ctx.st.borrow_mut().retry_at = Some((Instant::now() + RETRY_OPEN_AFTER, reason));
    ctx.pool.ledger.notices().restore(drops);
    let n = frames.len() as u64;
    discard_frames(ctx, frames, reason);
    ctx.pool.failure(WriterError::Reserve {
        segment: seg.path.clone(),
        frames: n,
        source: e,
    });
}

/// Submits a prepared write, awaits it, and hands it to [`settle`].
pub(super) async fn complete(ctx: &Rc<Mcap>, w: PreparedWrite, h: &RefCell<Histograms>) {
    ctx.pool
        .counters
        .writes_in_flight
        .fetch_add(1, Ordering::Relaxed);
    if !ctx.pool.cfg.write_delay.is_zero() {
        tokio::time::sleep(ctx.pool.cfg.write_delay).await;
    }
    let started = Instant::now();
    let (result, spans) = w.seg.file.write_all_at(w.spans, w.offset).await;
    let elapsed = started.elapsed().as_nanos() as u64;
    ctx.pool
        .counters
        .writes_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    if result.is_ok() && ctx.pool.record_histograms {
        let mut h = h.borrow_mut();
        record(&mut h.write_latency_ns, elapsed);
        record(&mut h.frames_per_write, w.metas.len() as u64);
    }
    let mut metas = w.metas;
    let mut spans = spans;
    let mut kept = w.kept;
    if matches!(
        w.seg.st.borrow().cut,
        Some((_, DropReason::FsyncError | DropReason::SegmentDeleted))
    ) {
        spans = rewrite_later(ctx, &mut metas, spans, std::mem::take(&mut kept));
    }
    // Each frame's buffer goes back to the pool as its span (or kept buffer) drops.
    drop(spans);
    drop(kept);
    w.seg.finish(
        w.offset,
        Finished {
            result,
            metas,
            chunks: w.chunks,
            drops: w.drops,
        },
    );
    settle(ctx, &w.seg, h);
    let idle = {
        let mut st = w.seg.st.borrow_mut();
        st.in_flight -= 1;
        st.in_flight == 0
    };
    if idle {
        w.seg.idle.notify_one();
    }
}

/// An fsync of this write's segment failed while the write was in flight: its frames are still
/// in memory, so they are written again (to the next segment) instead of being dropped, once.
/// Takes them out of `metas` and `spans` (and `kept`, the buffers of compressed frames); gives
/// back the spans that are not frames.
pub(super) fn rewrite_later(
    ctx: &Mcap,
    metas: &mut Vec<FrameMeta>,
    spans: Vec<IoSpan>,
    kept: Vec<(usize, FrameBuf)>,
) -> Vec<IoSpan> {
    let again = {
        let st = ctx.st.borrow();
        metas.iter().any(|m| st.rewritten.contains(&m.order))
    };
    if metas.is_empty() || again {
        return spans;
    }
    let mut rest = Vec::new();
    // Each frame's buffer: a compressed frame's from `kept`, the others' from their spans, in
    // order.
    let mut bufs: Vec<Option<FrameBuf>> = (0..metas.len()).map(|_| None).collect();
    for (i, buf) in kept {
        if let Some(slot) = bufs.get_mut(i) {
            *slot = Some(buf);
        }
    }
    let mut free = bufs.iter_mut().filter(|b| b.is_none());
    for s in spans {
        if s.pooled
            && let Some(slot) = free.next()
        {
            *slot = s.into_frame_buf();
        } else {
            rest.push(s);
        }
    }
    let frames: Vec<Frame> = metas
        .iter()
        .zip(bufs)
        .filter_map(|(meta, buf)| {
            buf.map(|buf| Frame {
                meta: *meta,
                buf,
                span: (0, 0),
            })
        })
        .collect();
    // They stay pending in the watermark until their second write is durable.
    let seqs: Vec<FrameKey> = metas.iter().map(|m| m.key()).collect();
    ctx.pool
        .counters
        .frames_rewritten
        .fetch_add(frames.len() as u64, Ordering::Relaxed);
    tracing::warn!(
        frames = frames.len(),
        stream = seqs[0].stream.0,
        first = seqs[0].seq.0,
        "an fsync failed while these frames were being written; they are still in memory and are written again to the next segment"
    );
    {
        let mut st = ctx.st.borrow_mut();
        st.rewritten.extend(metas.iter().map(|m| m.order));
        st.rewrite.extend(frames);
    }
    metas.clear();
    ctx.pool.queue.wake();
    rest
}

/// Accounts for the completed writes at the front of `seg`, in file order: their frames are
/// written while every write before them succeeded; from the first failed write on, the
/// segment will be cut back there, so they are dropped, under that write's reason.
pub(super) fn settle(ctx: &Rc<Mcap>, seg: &Rc<Segment>, h: &RefCell<Histograms>) {
    loop {
        let w = {
            let mut st = seg.st.borrow_mut();
            if st.pending.front().is_none_or(|w| w.finished.is_none()) {
                return;
            }
            st.pending.pop_front().expect("checked")
        };
        let Finished {
            result,
            metas,
            chunks,
            drops,
        } = w.finished.expect("checked");
        let cut = seg.st.borrow().cut;
        match (result, cut) {
            (Ok(()), None) => {
                written(ctx, seg, w.end, metas, chunks, drops, h);
            }
            (Err(e), None) => {
                let reason = DropReason::of_write_error(&e);
                seg.st.borrow_mut().cut = Some((w.offset, reason));
                lose(ctx, &metas, drops, reason);
                ctx.pool.failure(WriterError::Write {
                    segment: seg.path.clone(),
                    offset: w.offset,
                    len: w.end - w.offset,
                    frames: metas.len() as u64,
                    source: e,
                });
                seal(ctx, seg);
            }
            (_, Some((_, reason))) => lose(ctx, &metas, drops, reason),
        }
    }
}

/// Counts a settled write's frames as written.
#[allow(clippy::too_many_arguments)]
pub(super) fn written(
    ctx: &Rc<Mcap>,
    seg: &Segment,
    end: u64,
    metas: Vec<FrameMeta>,
    chunks: Vec<ChunkIndexEntry>,
    drops: Vec<segment::DropRange>,
    h: &RefCell<Histograms>,
) {
    if ctx.pool.record_histograms {
        let now = host_mono_ns();
        let mut h = h.borrow_mut();
        for m in &metas {
            record(
                &mut h.capture_to_written_ns,
                now.saturating_sub(m.host_mono_ns),
            );
        }
    }
    let n = metas.len() as u64;
    ctx.pool.counters.writes.fetch_add(1, Ordering::Relaxed);
    ctx.pool.ledger.written_by_meta(&metas);
    ctx.pool.succeeded();
    {
        let mut st = seg.st.borrow_mut();
        st.chunks.extend(chunks);
        st.written_end = end;
        if let Some(m) = metas.last() {
            st.written_seq = Some(m.order);
        }
        st.undurable.push_back(Undurable { end, metas, drops });
    }
    let mut st = ctx.st.borrow_mut();
    st.frames_since_sync += n;
    if ctx
        .dur
        .borrow()
        .fsync_every_frames
        .is_some_and(|k| st.frames_since_sync >= k)
    {
        ctx.sync_wake.notify_one();
    }
}

/// Counts a settled write's frames as dropped for `reason`; its drop notices go to a later write.
pub(super) fn lose(
    ctx: &Mcap,
    metas: &[FrameMeta],
    drops: Vec<segment::DropRange>,
    reason: DropReason,
) {
    ctx.pool.ledger.notices().restore(drops);
    let keys: Vec<FrameKey> = metas.iter().map(|m| m.key()).collect();
    ctx.pool.ledger.dropped(&keys, reason);
    never_durable(ctx, metas.iter().map(|m| m.order));
}

/// Dropped frames will never be durable: the watermark may pass them (and capture-to-durable
/// never counts them).
pub(super) fn never_durable(ctx: &Mcap, orders: impl IntoIterator<Item = u64>) {
    let mut st = ctx.st.borrow_mut();
    for o in orders {
        st.watermark.dropped(o);
    }
}

/// Writes a batch (possibly only pending drop notices) outside the writer tasks.
pub(super) async fn write_batch(ctx: &Rc<Mcap>, frames: &mut Vec<Frame>, h: &RefCell<Histograms>) {
    let guard = ctx.pool.intake.lock().await;
    let w = {
        let _prepare = ctx.pool.prepare.lock().await;
        prepare(ctx, frames).await
    };
    drop(guard);
    if let Some(w) = w {
        complete(ctx, w, h).await;
    }
}
