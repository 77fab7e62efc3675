//! The batch's transaction: run every request of the batch, commit once, answer everyone,
//! and publish what changed (head, timers, operators, peers) only after the commit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{watch, Notify};

use super::indexer::Indexer;
use super::publish::{self, HookSlot, Shipped};
use super::queue::Pending;
use super::request::InBatch;
use super::{WriteOutcome, WriterStats};
use crate::config::{LimitsSection, StoreSection};
use crate::model::event::EventKind;
use crate::model::role::RoleState;
use crate::store::idempotency;
use crate::store::site_log::{self, SiteLog};
use crate::store::{NodeStamp, StoreError};

/// A failure after which the writer cannot go on: the message says why.
#[derive(Debug)]
pub(super) struct Fatal(pub(super) String);

pub(super) struct WriterState {
    pub(super) conn: Connection,
    pub(super) stamp: NodeStamp,
    pub(super) cfg: StoreSection,
    pub(super) limits: LimitsSection,
    /// Head, counters, role and epoch as last committed.
    pub(super) log: SiteLog,
    /// Shipped events were applied since the counters (this node's next origin sequence, the
    /// next ticket number) were last read: they are re-read, inside the transaction, before
    /// the next request that is not more shipped events, not after every applied batch (a
    /// standby applies batch after batch and stamps nothing).
    pub(super) counters_stale: bool,
    pub(super) head_tx: Option<watch::Sender<i64>>,
    pub(super) role_tx: Option<watch::Sender<RoleState>>,
    pub(super) timers_changed: Arc<Notify>,
    pub(super) operators_generation: Arc<AtomicU64>,
    pub(super) peers_changed: Arc<Notify>,
    pub(super) outbox_changed: Arc<Notify>,
    pub(super) stats: Arc<WriterStats>,
    /// Where committed envelopes go for shipping (see [`publish`]).
    pub(super) hook: HookSlot,
    /// When note text is indexed.
    pub(super) indexer: Indexer,
    /// The standby's receipt spool, drained by a promotion and by `ApplySpool`.
    pub(super) spool: Arc<crate::store::spool::Spool>,
    #[cfg(test)]
    pub(super) faults: Arc<super::Faults>,
}

/// What a job changed besides the tables, published after commit.
#[derive(Default)]
pub(super) struct Effects {
    pub(super) timers: bool,
    pub(super) operators: bool,
    pub(super) peers: bool,
    /// Events from elsewhere were applied: ticket numbers and sequence numbers must be re-read.
    pub(super) replicated: bool,
    /// The role or epoch changed.
    pub(super) role: bool,
    /// Messages were queued for a partner.
    pub(super) exchange: bool,
    /// The envelopes of the events written here, for shipping.
    pub(super) shipped: Shipped,
    /// Notes added, whose text the indexer has to index.
    pub(super) notes: usize,
}

impl Effects {
    /// Records what an applied event changes besides its tables.
    pub(super) fn note(&mut self, kind: &EventKind) {
        self.timers |= matches!(
            kind,
            EventKind::TimerSet { .. } | EventKind::TimerSnoozed { .. }
        );
        self.operators |= matches!(
            kind,
            EventKind::OperatorAdded { .. }
                | EventKind::OperatorRemoved { .. }
                | EventKind::OperatorPasswordSet { .. }
        );
        self.peers |= matches!(
            kind,
            EventKind::PeerUpserted { .. } | EventKind::PeerRemoved { .. }
        );
        self.notes += usize::from(matches!(kind, EventKind::NoteAdded { .. }));
    }

    fn merge(&mut self, other: Effects) {
        self.replicated |= other.replicated;
        self.role |= other.role;
        self.timers |= other.timers;
        self.operators |= other.operators;
        self.peers |= other.peers;
        self.exchange |= other.exchange;
        self.shipped.envelopes.extend(other.shipped.envelopes);
        self.notes += other.notes;
    }
}
impl WriterState {
    pub(super) fn load(
        conn: Connection,
        stamp: NodeStamp,
        cfg: StoreSection,
        limits: LimitsSection,
        spool: Arc<crate::store::spool::Spool>,
    ) -> Result<Self, StoreError> {
        site_log::claim(&conn, &stamp)?;
        let log = SiteLog::load(&conn, &stamp)?;
        let indexer = Indexer::load(&conn)?;
        Ok(WriterState {
            conn,
            stamp,
            cfg,
            limits,
            log,
            counters_stale: false,
            head_tx: None,
            role_tx: None,
            timers_changed: Arc::new(Notify::new()),
            operators_generation: Arc::new(AtomicU64::new(0)),
            peers_changed: Arc::new(Notify::new()),
            outbox_changed: Arc::new(Notify::new()),
            stats: Arc::new(WriterStats::default()),
            hook: HookSlot::default(),
            indexer,
            spool,
            #[cfg(test)]
            faults: Arc::default(),
        })
    }

    fn reload_counters(&mut self) -> Result<(), StoreError> {
        self.log = SiteLog::load(&self.conn, &self.stamp)?;
        self.counters_stale = false;
        Ok(())
    }

    /// Forgets idempotency keys expired as of the log's last event (at start and now and then).
    fn prune_idempotency(&self) {
        if let Err(e) = idempotency::prune(&self.conn) {
            tracing::warn!(error = %e, "cannot prune old idempotency keys");
        }
    }

    /// Runs and commits one batch, answers every requester, publishes the effects.
    pub(super) fn commit_batch(&mut self, batch: &mut Vec<Pending>) -> Result<(), Fatal> {
        if self
            .stats
            .commits
            .load(Ordering::Relaxed)
            .is_multiple_of(4096)
        {
            self.prune_idempotency();
        }
        if batch
            .iter()
            .any(|p| matches!(p.req.op, super::WriteOp::Verify))
        {
            self.answer_verifications(batch)?;
            if batch.is_empty() {
                return Ok(());
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut effects = Effects::default();
        let committed = self.run_batch(batch, &mut results, &mut effects);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let bytes: usize = batch.iter().map(|p| p.reserved.bytes).sum();
        self.stats
            .max_batch_bytes
            .fetch_max(bytes as u64, Ordering::Relaxed);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "group commit failed; {} writes refused", batch.len());
            if !self.conn.is_autocommit() {
                // The transaction is still open after its rollback failed: whatever the
                // connection did next could make the refused writes durable. Stop.
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(StoreError::Closed));
                }
                return Err(Fatal(format!(
                    "a failed batch could not be rolled back ({e}): this writer cannot continue"
                )));
            }
            let _ = self.reload_counters();
        } else {
            self.indexer.committed(effects.notes);
            if let Some(tx) = &self.head_tx {
                tx.send_replace(self.log.head);
            }
            if let (Some(tx), true) = (&self.role_tx, effects.role) {
                tx.send_replace(self.log.role.clone());
            }
            if effects.timers {
                self.timers_changed.notify_one();
            }
            if effects.operators {
                self.operators_generation.fetch_add(1, Ordering::SeqCst);
            }
            if effects.peers {
                self.peers_changed.notify_waiters();
                self.peers_changed.notify_one();
                // A peer added again resumes its orphaned referrals.
                self.outbox_changed.notify_waiters();
            }
            if effects.exchange {
                self.outbox_changed.notify_waiters();
            }
            publish::publish(&self.hook, std::mem::take(&mut effects.shipped.envelopes));
        }
        for (p, result) in batch.drain(..).zip(results) {
            let answer = match &committed {
                Ok(()) => result,
                Err(e) => Err(StoreError::Schema(format!(
                    "the write was not committed: {e}"
                ))),
            };
            let _ = p.reply.send(answer);
        }
        Ok(())
    }

    /// Takes the [`super::WriteOp::Verify`] requests out of `batch` and answers them, before
    /// the rest of the batch runs: every note indexed first (the check compares the index with
    /// the notes), then the digest and the check of one state on a connection of their own.
    fn answer_verifications(&mut self, batch: &mut Vec<Pending>) -> Result<(), Fatal> {
        self.index_notes()?;
        let path = self.conn.path().map(std::path::PathBuf::from);
        let (checks, rest): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .partition(|p| matches!(p.req.op, super::WriteOp::Verify));
        *batch = rest;
        let found = match &path {
            Some(path) => crate::store::verify::digest_and_search_index(path),
            None => Err(StoreError::Schema("the store has no file to verify".into())),
        };
        for p in checks {
            let answer = match &found {
                Ok(v) => Ok(WriteOutcome::Verified(Box::new(v.clone()))),
                Err(e) => Err(StoreError::Stale(format!("cannot verify: {e}"))),
            };
            let _ = p.reply.send(answer);
        }
        Ok(())
    }

    /// Indexes the text of every note not yet in the full-text index ([`Indexer::index`]).
    pub(super) fn index_notes(&mut self) -> Result<(), Fatal> {
        self.indexer.index(&mut self.conn, self.cfg.synchronous)
    }

    /// Runs a batch in one transaction. Optimistic: the requests first run without a
    /// savepoint each (a savepoint is not free: FTS5 flushes its pending index at every one);
    /// if any request fails, that whole attempt is rolled back and the batch runs again with
    /// one savepoint per request, so the failed request spoils none of the others.
    fn run_batch(
        &mut self,
        batch: &[Pending],
        results: &mut Vec<Result<WriteOutcome, StoreError>>,
        effects: &mut Effects,
    ) -> Result<(), StoreError> {
        if self.try_batch(batch, results, effects, false)? {
            return Ok(());
        }
        results.clear();
        *effects = Effects::default();
        self.try_batch(batch, results, effects, true)?;
        Ok(())
    }

    /// One attempt at a batch, with or without a savepoint per request. Without savepoints it
    /// stops at the first failed request, rolls back and returns `false`.
    fn try_batch(
        &mut self,
        batch: &[Pending],
        results: &mut Vec<Result<WriteOutcome, StoreError>>,
        effects: &mut Effects,
        savepoints: bool,
    ) -> Result<bool, StoreError> {
        let (stamp, limits, spool) = (&self.stamp, &self.limits, &*self.spool);
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counters = self.log.clone();
        let mut stale = self.counters_stale;
        let collect = self.hook.get().is_some();
        let leased = self.hook.get().is_none_or(|h| h.may_take_writes());
        for Pending { req, .. } in batch {
            let replicate = matches!(req.op, super::WriteOp::Replicate(_));
            if stale && !replicate {
                // The transaction sees its own applied rows: the counters as of now.
                counters = SiteLog::load(&tx, stamp)?;
                stale = false;
            }
            let before = counters.clone();
            let handle = |conn: &Connection, log: &mut SiteLog| {
                let mut job = InBatch {
                    conn,
                    stamp,
                    limits,
                    log,
                    effects: Effects {
                        shipped: Shipped::new(collect),
                        ..Effects::default()
                    },
                    leased,
                    spool,
                };
                let result = job.handle(req);
                (result, job.effects)
            };
            let (result, job_effects) = if savepoints {
                let mut sp = tx.savepoint()?;
                let (result, job_effects) = handle(&sp, &mut counters);
                if result.is_ok() {
                    sp.commit()?;
                } else {
                    sp.rollback()?;
                }
                (result, job_effects)
            } else {
                handle(&tx, &mut counters)
            };
            match result {
                Ok(out) => {
                    stale |= job_effects.replicated;
                    effects.merge(job_effects);
                    results.push(Ok(out));
                }
                Err(e) if savepoints => {
                    counters = before;
                    results.push(Err(e));
                }
                Err(_) => {
                    tx.rollback()?;
                    return Ok(false);
                }
            }
        }
        #[cfg(test)]
        if self.faults.panic_next_batch.swap(false, Ordering::SeqCst) {
            panic!("injected writer panic (test hook)");
        }
        #[cfg(test)]
        let fail = self.faults.fail_next_commit.swap(false, Ordering::SeqCst);
        #[cfg(not(test))]
        let fail = false;
        commit_or_roll_back(tx, fail)?;
        self.log = counters;
        self.counters_stale = stale;
        Ok(true)
    }
}

/// Commits the batch's transaction, or rolls it back explicitly when the COMMIT fails.
///
/// A failed COMMIT can leave the transaction open (`SQLITE_BUSY`), and every requester is
/// about to be told that its write failed: nothing may make it durable later, so the
/// transaction is rolled back here and now. (The transaction's drop behaviour stays
/// rusqlite's default, roll back, so an early return or a panic anywhere in the batch rolls
/// back too.) Whether the rollback took is checked by the caller on the connection.
/// `fail` is the unit tests' injected COMMIT failure; it is always `false` outside them.
fn commit_or_roll_back(tx: Transaction<'_>, fail: bool) -> Result<(), StoreError> {
    let committed = if fail {
        Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("injected COMMIT failure (test hook)".into()),
        ))
    } else {
        tx.execute_batch("COMMIT")
    };
    if let Err(e) = committed {
        if let Err(rollback) = tx.rollback() {
            tracing::error!(error = %rollback, "cannot roll back the failed batch");
        }
        return Err(e.into());
    }
    Ok(())
}
