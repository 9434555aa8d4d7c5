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
/// intake lock held.
pub(super) async fn prepare(ctx: &Rc<Mcap>, frames: &mut Vec<Frame>) -> Option<PreparedWrite> {
    let mut drops = ctx.pool.ledger.notices().take();
    let estimate: u64 = frames
        .iter()
        .map(|f| f.buf.region().len() as u64)
        .sum::<u64>()
        + 4096 * (1 + drops.len() as u64 / 16);
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
    let target = &ctx.pool.target;
    let layout = encode_frames(frames, at, &target.streams, target.profile, direct);
    at += layout.len;
    chunks.extend(layout.chunks);
    let metas: Vec<_> = frames.iter().map(|f| f.meta).collect();
    {
        let mut pool = ctx.st.borrow_mut();
        for m in &metas {
            pool.watermark.taken(m.order, m.host_mono_ns);
        }
    }
    spans.extend(frames.drain(..).map(|f| IoSpan::new(f.buf, f.span, true)));
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
    })
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
    if matches!(
        w.seg.st.borrow().cut,
        Some((_, DropReason::FsyncError | DropReason::SegmentDeleted))
    ) {
        spans = rewrite_later(ctx, &mut metas, spans);
    }
    // Each frame's buffer goes back to the pool as its span drops.
    drop(spans);
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
/// Takes them out of `metas` and `spans`; gives back the spans that are not frames.
pub(super) fn rewrite_later(
    ctx: &Mcap,
    metas: &mut Vec<FrameMeta>,
    spans: Vec<IoSpan>,
) -> Vec<IoSpan> {
    let again = {
        let st = ctx.st.borrow();
        metas.iter().any(|m| st.rewritten.contains(&m.order))
    };
    if metas.is_empty() || again {
        return spans;
    }
    let mut rest = Vec::new();
    let mut frames = Vec::with_capacity(metas.len());
    let mut it = metas.iter();
    for s in spans {
        if s.pooled
            && let Some(meta) = it.next()
        {
            frames.push(Frame {
                meta: *meta,
                buf: s.buf,
                span: (0, 0),
            });
        } else {
            rest.push(s);
        }
    }
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
    let w = prepare(ctx, frames).await;
    drop(guard);
    if let Some(w) = w {
        complete(ctx, w, h).await;
    }
}
