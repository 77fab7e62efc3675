//! When the writer indexes note text ([`crate::store::note_index`]): after the commits that
//! added notes, in one transaction for many of them, between batches.
//!
//! The writer indexes once its queue has stayed empty for [`IDLE_WAIT`] (so an idle node's
//! index is current a moment after each commit), at once when a search waits for it, and under
//! load once [`MAX_PENDING_NOTES`] notes wait or the oldest has waited [`MAX_LAG`], whichever
//! comes first. It does not index at every moment the queue is empty: with many clients the
//! queue is empty for a moment between nearly every two group commits, and an index transaction
//! per commit (an FTS5 segment flush, its merges and their pages) cost about a fifth of the
//! writer's time per note. The index transaction runs with
//! `synchronous = normal` (no fsync of its own; the next durable commit or checkpoint syncs
//! it): it holds nothing that is not already durable in `notes`, and a crash that loses it only
//! moves the watermark back, so the writer indexes those notes again at start.
//!
//! Readers never see the lag: [`super::Writer::search_index_ready`] waits until every note
//! committed before the call is indexed, and search calls it first.

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::watch;

use super::commit::Fatal;
use crate::config::Synchronous;
use crate::store::{note_index, StoreError};

/// Index once this many notes wait, even if the queue is never empty.
pub const MAX_PENDING_NOTES: usize = 2048;
/// Index once the oldest waiting note has waited this long, even if the queue is never empty.
pub const MAX_LAG: Duration = Duration::from_millis(50);
/// Index once the queue has stayed empty this long (a quiet moment, not a gap between two
/// group commits under load).
pub const IDLE_WAIT: Duration = Duration::from_millis(2);
/// After a failed index transaction, wait this long before the next try (the failure is
/// logged once per try).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How far the index is: commits that added notes, and how many of them the index covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexProgress {
    /// Commits that added notes so far (counted from the writer's start).
    pub written: u64,
    /// Of those, the commits whose notes are all in the index.
    pub indexed: u64,
}

/// The writer's indexing state.
pub(super) struct Indexer {
    pending: usize,
    oldest: Option<Instant>,
    retry_at: Option<Instant>,
    progress: watch::Sender<IndexProgress>,
}

impl Indexer {
    /// Checks the watermark; the first [`Self::index`] catches up with whatever is after it.
    pub(super) fn load(conn: &Connection) -> Result<Indexer, StoreError> {
        // A store whose watermark cannot be read is not opened.
        note_index::watermark(conn)?;
        // The catch-up counts as one commit to index, so a search at start waits for it.
        let (progress, _) = watch::channel(IndexProgress {
            written: 1,
            indexed: 0,
        });
        Ok(Indexer {
            // Unknown until indexed: a crash may have left notes after the watermark.
            pending: 1,
            oldest: Some(Instant::now()),
            retry_at: None,
            progress,
        })
    }

    /// How far the index is, for readers to wait on.
    pub(super) fn subscribe(&self) -> watch::Receiver<IndexProgress> {
        self.progress.subscribe()
    }

    /// A batch that added `notes` notes has committed (called before its requesters are
    /// answered, so a search after an answer waits for that batch's notes).
    pub(super) fn committed(&mut self, notes: usize) {
        if notes == 0 {
            return;
        }
        self.pending += notes;
        self.oldest.get_or_insert_with(Instant::now);
        self.progress.send_modify(|p| p.written += 1);
    }

    /// Whether to index now: something waits, and the queue is quiet or a search waits
    /// (`now`), or too much waits or for too long. Not while backing off after a failure.
    pub(super) fn due(&self, now: bool) -> bool {
        if self.pending == 0 || self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        now || self.pending >= MAX_PENDING_NOTES
            || self.oldest.is_some_and(|t| t.elapsed() >= MAX_LAG)
    }

    /// How long the writer may wait on an empty queue before it indexes: `None` when nothing
    /// waits to be indexed (wait for the next job for as long as it takes), else at most
    /// [`IDLE_WAIT`] and never past the oldest note's [`MAX_LAG`] (or the end of a back-off
    /// after a failure).
    pub(super) fn idle_wait(&self) -> Option<Duration> {
        if self.pending == 0 {
            return None;
        }
        let now = Instant::now();
        if let Some(t) = self.retry_at.filter(|t| now < *t) {
            return Some(t - now);
        }
        let lag_left = self
            .oldest
            .map_or(Duration::ZERO, |t| MAX_LAG.saturating_sub(now - t));
        Some(lag_left.min(IDLE_WAIT))
    }

    /// Indexes every note after the watermark in one transaction. A failure is logged and
    /// tried again later; the notes stay durable and unsearched meanwhile.
    ///
    /// Fatal only if the connection cannot be put back to `synchronous = full`: it must not go
    /// on committing writes that are not durable.
    pub(super) fn index(&mut self, conn: &mut Connection, sync: Synchronous) -> Result<(), Fatal> {
        if self.pending == 0 {
            return Ok(());
        }
        let written = self.progress.borrow().written;
        let relaxed = matches!(sync, Synchronous::Full);
        if relaxed {
            if let Err(e) = conn.pragma_update(None, "synchronous", "normal") {
                tracing::error!(error = %e, "cannot index note text; search misses the newest notes until it can");
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
                return Ok(());
            }
        }
        let indexed = index_in_own_transaction(conn);
        if relaxed {
            conn.pragma_update(None, "synchronous", "full")
                .map_err(|e| {
                    Fatal(format!(
                        "cannot set synchronous = full again after indexing notes: {e}"
                    ))
                })?;
        }
        match indexed {
            Ok(_) => {
                self.pending = 0;
                self.oldest = None;
                self.retry_at = None;
                self.progress.send_modify(|p| p.indexed = written);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot index note text; search misses the newest notes until it can");
                self.retry_at = Some(Instant::now() + RETRY_AFTER);
            }
        }
        Ok(())
    }
}

/// One index transaction. It reads the watermark inside the transaction (not the writer's copy),
/// so a COMMIT reported failed that was durable after all cannot index a note twice.
fn index_in_own_transaction(conn: &mut Connection) -> Result<i64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let after = note_index::watermark(&tx)?;
    let (watermark, _) = note_index::index_after(&tx, after)?;
    tx.commit()?;
    Ok(watermark)
}

#[cfg(test)]
#[path = "indexer_tests.rs"]
mod tests;
