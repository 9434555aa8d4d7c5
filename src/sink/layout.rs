//! The seam between the writer pool and the files on disk. The pool (`pool.rs`) owns every
//! policy that does not depend on the files: writer tasks at the live writer count, intake
//! order, batching, the free-space floor, the failed and degraded state, publishing. A layout
//! (MCAP segments in `mcap/`, one file per frame in `fakenect/`) only lays a batch out, writes and
//! settles it, syncs, and closes.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::frame::{DropReason, Frame};
use crate::observe::Histograms;

use super::{BatchLimits, Live};
use crate::frame::FrameMeta;
use crate::pipeline::compress::Piece;

/// A batch in a layout's stage.
pub(super) enum Staging {
    /// Its pieces, at once (written raw).
    Ready(Vec<Piece>),
    /// Its pieces come from a worker; `metas` are its frames, to count if none ever come.
    Pending {
        answer: tokio::sync::oneshot::Receiver<Vec<Piece>>,
        metas: Vec<FrameMeta>,
    },
}

/// How a layout puts batches of frames into files. A layout holds its pool (`Rc<Pool>`) for
/// the shared parts (queue, ledger, counters, the failed state).
///
/// # Threading
/// Every method runs on the writer thread, inside its single-threaded runtime: none may block
/// (slow file-system work goes to `file::blocking`); the `async` ones may await I/O.
pub(super) trait Layout: 'static {
    /// A batch laid out under the intake lock, to be written outside it.
    type Write;

    /// Before the first write: creates what the recording starts with and starts the layout's
    /// own tasks. A failure fails the pool (`Pool::fail`); the writers then discard.
    async fn open(self: &Rc<Self>);

    /// How much one write may carry (asked before each batch).
    fn batch_limits(&self) -> BatchLimits;

    /// Moves the frames the layout holds to write again, ahead of anything queued, into
    /// `batch`; returns their payload bytes. They were taken already (they are in the writers).
    fn take_held(&self, batch: &mut Vec<Frame>) -> usize;

    /// True while the layout holds frames to write again: the pool is not drained yet.
    fn holds_frames(&self) -> bool;

    /// Lays out `batch` under the intake lock, so the order of writes is the order of intake,
    /// moving its frames out (the vector keeps its capacity). `None` when the frames were
    /// dropped instead (the layout counted them).
    async fn prepare(self: &Rc<Self>, batch: &mut Vec<Frame>) -> Option<Self::Write>;

    /// Under the intake lock: hands `batch` to the layout's stage (compression), which works on
    /// it outside the lock; `None` (the default) to [`Layout::prepare`] it at once.
    fn stage(&self, batch: &mut Vec<Frame>) -> Option<Staging> {
        let _ = batch;
        None
    }

    /// Lays out a batch that went through the stage, its turn come (batches are laid out in
    /// the order they were taken).
    async fn prepare_staged(self: &Rc<Self>, pieces: Vec<Piece>) -> Option<Self::Write> {
        let _ = pieces;
        unreachable!("a layout without a stage stages nothing")
    }

    /// Submits a prepared write, awaits it and settles it (written or dropped), outside the
    /// lock, so up to the writer count of writes are in flight. `h` is the writer task's own
    /// histograms.
    async fn complete(self: &Rc<Self>, write: Self::Write, h: &RefCell<Histograms>);

    /// Counts the frames of `batch` as dropped for `reason` (the recording failed), leaving it
    /// empty.
    fn discard(&self, batch: &mut Vec<Frame>, reason: DropReason);

    /// New live settings; the pool applied the writer count, the rest is the layout's.
    fn apply_live(&self, live: Live);

    /// Once per supervision round (`APPLY_EVERY`; `round` counts from 1): housekeeping such as
    /// retention.
    async fn tick(self: &Rc<Self>, round: u64);

    /// After every writer task ended: settles, syncs and closes what is open, and ends the
    /// layout's own tasks. Returns the files written, in order.
    async fn close(self: &Rc<Self>) -> Vec<PathBuf>;

    /// Whether the files were written with `O_DIRECT` (for the report).
    fn direct_io(&self) -> bool;
}
