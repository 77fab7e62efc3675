//! The writer thread: the only place the store is written.
//!
//! Requests arrive on a bounded queue. The thread takes the first one, drains whatever else is
//! already waiting (up to `group_commit_max`), and runs them all in one transaction, each in its
//! own savepoint so a refused command does not spoil the others. Only after the transaction has
//! committed (fsync with `synchronous = full`) does any requester get its answer: an
//! acknowledged write is a durable write, and many writers share one fsync (group commit).
//!
//! - this file: the requests, their answers and the [`Writer`] handle;
//! - [`budget`]: the byte budgets of the queue and of a batch;
//! - [`queue`]: the thread's loop, taking jobs off the queue into a batch;
//! - [`commit`]: the batch's transaction, its commit, and what is published after it;
//! - [`request`]: what one request decides, stamps and applies inside the transaction;
//! - [`exchange`]: the referral exchange's writes (refer, act, a partner's message, an ack);
//! - [`review`]: the review list of a deposed primary's tail (queue, apply, discard);
//! - [`attachment`]: `ttx attach`: an attachment's chunks and the attachment, whole or not at all;
//! - [`indexer`]: when note text is indexed for search (after the commits, in batches).

mod attachment;
pub mod budget;
mod commit;
mod exchange;
pub mod indexer;
mod publish;
mod queue;
mod request;
mod review;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use uuid::Uuid;

use super::{NodeStamp, StoreError};
use crate::config::{LimitsSection, StoreSection};
use crate::model::command::{Command, CreateTicket};
use crate::model::event::Role;
use crate::model::lifecycle::Status;
use crate::model::role::RoleState;
use crate::model::ticket::LinkKind;
use crate::wire::envelope::Envelope;
use budget::ByteBudget;
use commit::WriterState;
use queue::{Job, Pending};

pub use attachment::AttachmentAck;
pub use publish::CommitHook;
pub use request::ticket_by_number;

/// One write, as asked for by an operator (or the node itself, or a replication stream).
#[derive(Debug, Clone)]
pub struct WriteRequest {
    /// The operator the write is for (`system` for the node's own writes).
    pub actor: String,
    /// A client-chosen key: a retried request with the same key gets the first answer and
    /// is not applied again.
    pub idempotency: Option<Idempotency>,
    /// What to do.
    pub op: WriteOp,
}

/// An idempotency key and a fingerprint of the request it was first used for: the same key
/// with a different request is refused rather than answered with the first request's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's key (per operator).
    pub key: String,
    /// A fingerprint of the request as the client sent it (before relative times resolve).
    pub fingerprint: String,
}

pub use super::idempotency::IDEMPOTENCY_TTL_MS;

/// What a write does.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Open a ticket.
    Create(Box<CreateTicket>),
    /// A command on ticket `number`.
    Ticket {
        /// The ticket.
        number: i64,
        /// The command.
        command: Command,
    },
    /// Link ticket `number` to ticket `target`.
    Link {
        /// The ticket.
        number: i64,
        /// Kind of link.
        kind: LinkKind,
        /// The other ticket.
        target: i64,
    },
    /// Cancel, snooze or acknowledge timer `which` (its ordinal or id) of ticket `number`.
    Timer {
        /// The ticket.
        number: i64,
        /// The timer: `2` (its number on the ticket) or its id.
        which: String,
        /// What to do.
        action: crate::model::timer::TimerAction,
    },
    /// Give an operator a token.
    AddOperator {
        /// Name.
        name: String,
        /// Role.
        role: Role,
        /// SHA-256 of the token, hex.
        token_sha256: String,
    },
    /// Remove an operator.
    RemoveOperator {
        /// Name.
        name: String,
    },
    /// Set an operator's web console password (already hashed: the writer never sees it).
    SetPassword {
        /// Name.
        name: String,
        /// The argon2id PHC string.
        password_hash: String,
    },
    /// Set the queues an operator watches (`queues` as typed, comma separated).
    WatchQueues {
        /// Name.
        name: String,
        /// Comma-separated queue names; empty clears the list.
        queues: String,
    },
    /// Change the peer registry.
    Peer(crate::model::peer::PeerOp),
    /// Fire every timer that is due now.
    FireDueTimers,
    /// Apply events shipped from the site's primary, each at exactly `head + 1` (all or none).
    /// The only write a standby or a fenced node takes.
    Replicate(Vec<Envelope>),
    /// Apply what this standby's receipt spool holds past the head (its events up to the
    /// first the store refuses), before the follower subscribes again.
    ApplySpool,
    /// Make this standby the site's primary: whatever its receipt spool holds past the head is
    /// applied first, then the epoch goes up by one and an `EpochStarted` event is written
    /// with it, all in one transaction, before any write of the new epoch.
    Promote,
    /// A higher epoch was seen (in a frame or an ack from `by`): fence this node if it is the
    /// primary, durably and at once.
    Fence {
        /// The epoch seen.
        epoch: u64,
        /// The node that holds it.
        by: String,
    },
    /// A planned switchover starts (`ttx switchover`): this primary stops taking local writes
    /// and hands its role to its standby `to`, durably (`meta.role = handing-over:TO`). It
    /// becomes `to`'s standby when `to`'s new epoch reaches it.
    HandOver {
        /// The standby's node name.
        to: String,
    },
    /// The switchover is abandoned before the standby took over: primary again, same epoch.
    ResumePrimary,
    /// `ttx verify`'s position, digest and FTS5 `integrity-check` of the search indexes, of one
    /// state ([`crate::store::verify::digest_and_search_index`]; a check, not a change). The
    /// writer runs it between batches, once every note is indexed, because FTS5's check takes
    /// the write lock and compares the index with every note.
    Verify,
    /// Refer a ticket to a partner site: the referral, our ticket's move to `referred` and the
    /// `Refer` message for the outbox, in one transaction.
    Refer(Box<crate::exchange::action::ReferTicket>),
    /// An operator's action on referral `id` (its id or a unique prefix of it).
    Referral {
        /// The referral.
        id: String,
        /// What to do.
        action: crate::exchange::action::ReferralAction,
    },
    /// Messages from partner site `peer` (authenticated by the transport), consecutive on its
    /// edge as they arrived together: each decided and applied in turn with the advance of the
    /// peer's mark, all in one transaction, until one is refused for now; answered with the
    /// window's answers (see [`crate::exchange::edge::WindowAnswers`]).
    Inbound {
        /// The sending site.
        peer: String,
        /// The messages, in the order they arrived.
        messages: Vec<InboundMessage>,
        /// The peers' rate buckets (each new message takes a token from its peer's).
        rates: Arc<crate::exchange::PeerRates>,
    },
    /// Attach a file to ticket `number` (`ttx attach`).
    Attach {
        /// The ticket.
        number: i64,
        /// The file name.
        name: String,
        /// The bytes (shared: a retried request does not copy them).
        data: Arc<Vec<u8>>,
        /// Shared with partners (false: internal).
        shared: bool,
    },
    /// Change what peer `site` may see of our tickets (its sharing policy, in the registry).
    PeerSharing {
        /// The peer.
        site: String,
        /// What changes.
        change: crate::exchange::policy::SharingChange,
    },
    /// Partner site `peer` took our messages up to `up_to` (with `refused` when it consumed
    /// the last one without applying it).
    ExchangeAcked {
        /// The receiving site.
        peer: String,
        /// The highest contiguous sequence it has taken.
        up_to: u64,
        /// Why it did not apply the message, if it did not.
        refused: Option<crate::wire::exchange::ExchangeCode>,
    },
    /// Partner site `peer` answered this primary's mark probe with `mark` (protocol §5c):
    /// once per edge per epoch, this node's own messages move after the partner's mark when
    /// the partner took messages of a predecessor that this log never held
    /// ([`crate::exchange::record::ExchangeRecord::MarkLearned`]).
    ExchangeMarkLearned {
        /// The receiving site.
        peer: String,
        /// The highest sequence it has taken from this site.
        mark: u64,
    },
    /// Keep a deposed node's unshipped events (from `ttx standby rejoin`) as review items: each
    /// queued once by its original id; an event already in the site's log is not queued.
    QueueReview {
        /// The node they come from.
        node: String,
        /// Its events past the fork, in its log's order.
        envelopes: Vec<Envelope>,
    },
    /// An admin's decision on review item `number` (`ttx review apply|discard`).
    DecideReview {
        /// The item.
        number: i64,
        /// Apply or discard.
        decision: crate::model::review::ReviewDecision,
    },
}

/// The answer to a write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WriteOutcome {
    /// A ticket was created or changed.
    Ticket(TicketAck),
    /// An operator was added or removed.
    Operator {
        /// The operator.
        operator: String,
    },
    /// The peer registry changed (or did not need to).
    Peer {
        /// The site.
        site: String,
        /// Whether anything changed.
        changed: bool,
    },
    /// Events applied (timers fired, events replicated).
    Applied {
        /// How many events were new.
        applied: usize,
    },
    /// This node is now the primary of `epoch`; its `EpochStarted` event is at `position`.
    Promoted {
        /// The new epoch.
        epoch: u64,
        /// The position of the epoch-start event.
        position: i64,
    },
    /// The role after a fence request.
    Role {
        /// Role and epoch.
        role: RoleState,
    },
    /// What [`WriteOp::Verify`] found (without `quick_check`, which `Store::verify` adds).
    Verified(Box<crate::store::verify::Verification>),
    /// A referral was made or moved.
    Referral(ReferralAck),
    /// The answers to partners' messages (one window: cumulative acks, refusals in place).
    Exchange {
        /// What the partner is told, in order.
        answers: Vec<crate::wire::exchange::Answer>,
    },
    /// Review items queued from a deposed node's tail.
    Reviewed {
        /// New items.
        queued: u32,
        /// Items already on the list (or events already in the log).
        known: u32,
    },
    /// A review item was decided.
    Review(ReviewAck),
    /// A file was attached.
    Attachment(AttachmentAck),
}

/// What a decision on a review item answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewAck {
    /// The item's number.
    pub item: i64,
    /// `applied` or `discarded`.
    pub review_state: String,
    /// What applying did, or why it was discarded.
    pub outcome: Option<String>,
    /// The ticket applying it wrote to (its number).
    pub ticket: Option<i64>,
    /// Site positions of the events written.
    pub events: Vec<i64>,
}

/// One partner message as it arrived: decoded, with its encoded size (the per-peer size cap is
/// on the bytes the peer sent).
#[derive(Debug, Clone)]
pub struct InboundMessage {
    /// Its encoded size.
    pub bytes: usize,
    /// The message.
    pub message: crate::wire::exchange::Message,
}

/// What a referral write answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferralAck {
    /// The referral id.
    pub referral: Uuid,
    /// The partner site.
    pub peer: String,
    /// Our ticket's number.
    pub ticket: i64,
    /// The referral's state after the write.
    pub referral_state: String,
    /// Site positions of the events written.
    pub events: Vec<i64>,
}

/// What a ticket write answers: the ticket's number, id, status, and the site positions of the
/// events it wrote (empty when there was nothing to change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketAck {
    /// Per-site number.
    pub number: i64,
    /// Stable id.
    pub id: Uuid,
    /// Status after the write.
    pub status: Status,
    /// Site positions of the events written.
    pub events: Vec<i64>,
    /// What changed, one line per event (`status new -> open`).
    #[serde(default)]
    pub changes: Vec<String>,
    /// True when this answer was replayed for a repeated idempotency key.
    #[serde(default)]
    pub replayed: bool,
}

/// Counters the writer keeps for `ttx status` and the benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// The most bytes (as the budgets count them) any one batch held.
    pub max_batch_bytes: AtomicU64,
}

/// The longest a search waits for the index to catch up with the commits before it runs.
pub const SEARCH_INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    budget: ByteBudget,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    /// Notified when a timer is set, so the alarm clock re-reads the next due time.
    pub timers_changed: Arc<Notify>,
    /// Bumped whenever operators change, so token caches know to reload.
    pub operators_generation: Arc<AtomicU64>,
    /// Notified when the peer registry changes, so the transport reloads its policy and pins.
    pub peers_changed: Arc<Notify>,
    /// Notified (all waiters) when messages are queued for partners, so the outbox workers
    /// look at their peer's outbox.
    pub outbox_changed: Arc<Notify>,
    /// The site position of the last committed event.
    pub head: watch::Receiver<i64>,
    /// The node's role and epoch as last committed. Read it with [`Writer::role_now`]: a
    /// borrow kept while borrowing again can deadlock with the writer (see there).
    pub role: watch::Receiver<RoleState>,
    /// Commit counters.
    pub stats: Arc<WriterStats>,
    /// How far the full-text index of note text is behind the commits
    /// ([`Writer::search_index_ready`] waits on it).
    pub search_index: watch::Receiver<indexer::IndexProgress>,
    /// Why the writer thread failed, once it has (see [`Writer::failed`]).
    failed: watch::Receiver<Option<String>>,
    /// The commit hook, shared with the thread.
    hook: publish::HookSlot,
    /// Faults a unit test injects into the thread.
    #[cfg(test)]
    pub(crate) faults: Arc<Faults>,
}

/// Faults a unit test can inject into the writer thread. Compiled only into the crate's own
/// unit tests (`cfg(test)`): no build of `ttx` that runs anywhere has them.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The next COMMIT fails as SQLite's does on `SQLITE_BUSY`: an error, the transaction
    /// still open.
    pub(crate) fail_next_commit: std::sync::atomic::AtomicBool,
    /// The next batch panics inside its transaction, after its requests ran.
    pub(crate) panic_next_batch: std::sync::atomic::AtomicBool,
}

impl Writer {
    /// Starts the writer thread on an open, migrated connection.
    pub fn start(
        conn: Connection,
        stamp: NodeStamp,
        cfg: StoreSection,
        limits: LimitsSection,
        spool: Arc<crate::store::spool::Spool>,
    ) -> Result<Writer, StoreError> {
        let (queue, rx) = mpsc::channel(cfg.write_queue);
        let budget = ByteBudget::new(cfg.write_queue_bytes);
        let timers_changed = Arc::new(Notify::new());
        let operators_generation = Arc::new(AtomicU64::new(0));
        let peers_changed = Arc::new(Notify::new());
        let outbox_changed = Arc::new(Notify::new());
        let stats = Arc::new(WriterStats::default());
        // Room for every statement of the applier and the writer: none is prepared twice.
        conn.set_prepared_statement_cache_capacity(64);
        let mut state = WriterState::load(conn, stamp, cfg, limits, spool)?;
        let (head_tx, head) = watch::channel(state.log.head);
        let (role_tx, role) = watch::channel(state.log.role.clone());
        state.head_tx = Some(head_tx);
        state.role_tx = Some(role_tx);
        state.timers_changed = timers_changed.clone();
        state.operators_generation = operators_generation.clone();
        state.peers_changed = peers_changed.clone();
        state.outbox_changed = outbox_changed.clone();
        state.stats = stats.clone();
        let hook = state.hook.clone();
        let search_index = state.indexer.subscribe();
        #[cfg(test)]
        let faults = state.faults.clone();
        let (failed_tx, failed) = watch::channel(None);
        let thread = std::thread::Builder::new()
            .name("ttx-writer".into())
            .spawn(move || state.run(rx, failed_tx))
            .map_err(|e| StoreError::Schema(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            queue,
            budget,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
            timers_changed,
            operators_generation,
            peers_changed,
            outbox_changed,
            head,
            role,
            stats,
            search_index,
            failed,
            hook,
            #[cfg(test)]
            faults,
        })
    }

    /// The node's role and epoch now, as a copy whose borrow of [`Writer::role`] has already
    /// ended. A `watch` borrow holds the role's read lock until it is dropped, and that lock
    /// admits no new reader while a writer waits for it: a second borrow made while the first
    /// is alive (two fields of one struct literal, say) blocks for ever once the writer thread
    /// starts to publish a role change (a fencing, a promotion) between the two, and the
    /// writer waits for ever on the first. Read the role once through this wherever more than
    /// one of its fields is needed, and never call out while a borrow is alive.
    pub fn role_now(&self) -> RoleState {
        self.role.borrow().clone()
    }

    /// Installs the hook that receives each committed batch's envelopes (the replication
    /// primary's backlog). Only one hook per writer: a second is refused (returns `false`).
    /// Batches already committing when it is installed may not reach it; the hook must
    /// tolerate a first batch that does not follow the head it started from.
    pub fn set_commit_hook(&self, hook: std::sync::Arc<dyn CommitHook>) -> bool {
        self.hook.set(hook).is_ok()
    }

    /// Sends a write and waits for its durable answer. Waits first for room in the queue's
    /// byte budget, then for a place in the queue.
    pub async fn write(&self, req: WriteRequest) -> Result<WriteOutcome, StoreError> {
        let reserved = self.budget.reserve(budget::request_bytes(&req)).await?;
        let (reply, rx) = oneshot::channel();
        let job = Job::Write(Pending {
            req: Box::new(req),
            reply,
            reserved,
        });
        self.queue.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Sends a write and waits for its durable answer, blocking the calling thread.
    pub fn write_blocking(&self, req: WriteRequest) -> Result<WriteOutcome, StoreError> {
        let reserved = self.budget.reserve_blocking(budget::request_bytes(&req))?;
        let (reply, rx) = oneshot::channel();
        let job = Job::Write(Pending {
            req: Box::new(req),
            reply,
            reserved,
        });
        self.queue
            .blocking_send(job)
            .map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Waits until every note committed before the call is in the full-text index, so a
    /// search after an acknowledged note finds it. The writer indexes within
    /// [`indexer::MAX_LAG`] under load, and at once when asked (this asks); this waits at most
    /// [`SEARCH_INDEX_WAIT`] (then the search runs on the index as it is, and says so in the log).
    pub async fn search_index_ready(&self) {
        let mut rx = self.search_index.clone();
        let target = rx.borrow().written;
        self.ask_for_index(rx.borrow().indexed < target);
        let ready = rx.wait_for(|p| p.indexed >= target);
        if tokio::time::timeout(SEARCH_INDEX_WAIT, ready)
            .await
            .is_err()
        {
            tracing::warn!("the search index is behind the last commits; searching it as it is");
        }
    }

    /// Asks the writer to index what is pending now (when `behind`), instead of at its next
    /// quiet moment. A full queue drops the request: the writer is busy then and indexes within
    /// [`indexer::MAX_LAG`] anyway.
    fn ask_for_index(&self, behind: bool) {
        if behind {
            let _ = self.queue.try_send(Job::IndexNow);
        }
    }

    /// [`Self::search_index_ready`], blocking the calling thread (tools and tests).
    pub fn search_index_ready_blocking(&self) {
        let target = self.search_index.borrow().written;
        self.ask_for_index(self.search_index.borrow().indexed < target);
        let deadline = std::time::Instant::now() + SEARCH_INDEX_WAIT;
        while self.search_index.borrow().indexed < target {
            if std::time::Instant::now() >= deadline || self.search_index.has_changed().is_err() {
                tracing::warn!(
                    "the search index is behind the last commits; searching it as it is"
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }

    /// Waits until the writer thread has failed (a panic, or a transaction it could not roll
    /// back) and returns why; never returns while the writer is healthy or after a clean
    /// shutdown. The node stops when this returns: a node whose writer is gone must not go on
    /// serving reads with every write refused.
    pub async fn failed(&self) -> String {
        let mut failed = self.failed.clone();
        let reason = match failed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The thread ended cleanly (shutdown): it never fails after that.
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Finishes the writes already queued, commits them, and stops the thread.
    /// Later writes fail with [`StoreError::Closed`].
    pub fn shutdown(&self) {
        let _ = self.queue.blocking_send(Job::Shutdown);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests;
