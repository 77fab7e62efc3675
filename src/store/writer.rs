//! The writer thread: the only place the store is written.
//!
//! Requests arrive on a bounded queue. The thread takes the first one, drains whatever else is
//! already waiting (up to `group_commit_max`), and runs them all in one transaction, each in its
//! own savepoint so a refused command does not spoil the others. Only after the transaction has
//! committed (fsync with `synchronous = full`) does any requester get its answer: an
//! acknowledged write is a durable write, and many writers share one fsync (group commit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use uuid::Uuid;

use super::apply::{apply_event, apply_event_on};
use super::{NodeStamp, StoreError};
use crate::config::{LimitsSection, StoreSection};
use crate::model::clock::{self, Millis};
use crate::model::command::{self, Command, CommandError, Context, CreateTicket};
use crate::model::event::{Event, EventKind, Role};
use crate::model::lifecycle::Status;
use crate::model::ticket::{LinkKind, Ticket};

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

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MS: Millis = 24 * 60 * 60 * 1000;

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
    /// Change the peer registry.
    Peer(crate::model::peer::PeerOp),
    /// Fire every timer that is due now.
    FireDueTimers,
    /// Apply events written elsewhere (a standby replaying its primary), each at most once.
    Replicate(Vec<Event>),
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
}

/// What a ticket write answers: the ticket's number, id, status, and the log positions of the
/// events it wrote (empty when there was nothing to change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TicketAck {
    /// Per-site number.
    pub number: i64,
    /// Stable id.
    pub id: Uuid,
    /// Status after the write.
    pub status: Status,
    /// Log positions of the events written.
    pub events: Vec<i64>,
    /// True when this answer was replayed for a repeated idempotency key.
    #[serde(default)]
    pub replayed: bool,
}

/// A queued write and where its answer goes.
type Pending = (
    Box<WriteRequest>,
    oneshot::Sender<Result<WriteOutcome, StoreError>>,
);

enum Job {
    Write(
        Box<WriteRequest>,
        oneshot::Sender<Result<WriteOutcome, StoreError>>,
    ),
    Shutdown,
}

/// Counters the writer keeps for `ttx status` and the benchmarks.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
}

/// A handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
    /// Notified when a timer is set, so the alarm clock re-reads the next due time.
    pub timers_changed: Arc<Notify>,
    /// Bumped whenever operators change, so token caches know to reload.
    pub operators_generation: Arc<AtomicU64>,
    /// Notified when the peer registry changes, so the transport reloads its policy and pins.
    pub peers_changed: Arc<Notify>,
    /// The log position of the last committed event.
    pub head: watch::Receiver<i64>,
    /// Commit counters.
    pub stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer thread on an open, migrated connection.
    pub fn start(
        conn: Connection,
        stamp: NodeStamp,
        cfg: StoreSection,
        limits: LimitsSection,
    ) -> Result<Writer, StoreError> {
        let (queue, rx) = mpsc::channel(cfg.write_queue);
        let timers_changed = Arc::new(Notify::new());
        let operators_generation = Arc::new(AtomicU64::new(0));
        let peers_changed = Arc::new(Notify::new());
        let stats = Arc::new(WriterStats::default());
        // Room for every statement of the applier and the writer: none is prepared twice.
        conn.set_prepared_statement_cache_capacity(64);
        let mut state = WriterState::load(conn, stamp, cfg, limits)?;
        let (head_tx, head) = watch::channel(state.head()?);
        state.head_tx = Some(head_tx);
        state.timers_changed = timers_changed.clone();
        state.operators_generation = operators_generation.clone();
        state.peers_changed = peers_changed.clone();
        state.stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("ttx-writer".into())
            .spawn(move || state.run(rx))
            .map_err(|e| StoreError::Schema(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            queue,
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
            timers_changed,
            operators_generation,
            peers_changed,
            head,
            stats,
        })
    }

    /// Sends a write and waits for its durable answer.
    pub async fn write(&self, req: WriteRequest) -> Result<WriteOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Job::Write(Box::new(req), tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Sends a write and waits for its durable answer, blocking the calling thread.
    pub fn write_blocking(&self, req: WriteRequest) -> Result<WriteOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .blocking_send(Job::Write(Box::new(req), tx))
            .map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
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

struct WriterState {
    conn: Connection,
    stamp: NodeStamp,
    cfg: StoreSection,
    limits: LimitsSection,
    epoch: u64,
    next_seq: u64,
    next_number: i64,
    head_tx: Option<watch::Sender<i64>>,
    timers_changed: Arc<Notify>,
    operators_generation: Arc<AtomicU64>,
    peers_changed: Arc<Notify>,
    stats: Arc<WriterStats>,
}

/// What a job changed besides the tables, published after commit.
#[derive(Default)]
struct Effects {
    timers: bool,
    operators: bool,
    peers: bool,
    /// Events from elsewhere were applied: ticket numbers and sequence numbers must be re-read.
    replicated: bool,
}

impl Effects {
    /// Records what an applied event changes besides its tables.
    fn note(&mut self, kind: &EventKind) {
        self.timers |= matches!(kind, EventKind::TimerSet { .. });
        self.operators |= matches!(
            kind,
            EventKind::OperatorAdded { .. } | EventKind::OperatorRemoved { .. }
        );
        self.peers |= matches!(
            kind,
            EventKind::PeerUpserted { .. } | EventKind::PeerRemoved { .. }
        );
    }

    fn merge(&mut self, other: Effects) {
        self.replicated |= other.replicated;
        self.timers |= other.timers;
        self.operators |= other.operators;
        self.peers |= other.peers;
    }
}

impl WriterState {
    fn load(
        conn: Connection,
        stamp: NodeStamp,
        cfg: StoreSection,
        limits: LimitsSection,
    ) -> Result<Self, StoreError> {
        let meta = |k: &str| -> Result<Option<String>, StoreError> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()?)
        };
        match meta("site")? {
            Some(site) if site != stamp.site => {
                return Err(StoreError::Schema(format!(
                    "this store belongs to site {site:?}, not {:?}",
                    stamp.site
                )))
            }
            Some(_) => {}
            None => {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                for (k, v) in [
                    ("site", stamp.site.as_str()),
                    ("node", stamp.node.as_str()),
                    ("epoch", "1"),
                ] {
                    conn.execute(
                        "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                        [k, v],
                    )?;
                }
                conn.execute_batch("COMMIT")?;
            }
        }
        let epoch = meta("epoch")?.and_then(|e| e.parse().ok()).unwrap_or(1);
        let mut state = WriterState {
            conn,
            stamp,
            cfg,
            limits,
            epoch,
            next_seq: 0,
            next_number: 0,
            head_tx: None,
            timers_changed: Arc::new(Notify::new()),
            operators_generation: Arc::new(AtomicU64::new(0)),
            peers_changed: Arc::new(Notify::new()),
            stats: Arc::new(WriterStats::default()),
        };
        state.reload_counters()?;
        Ok(state)
    }

    fn reload_counters(&mut self) -> Result<(), StoreError> {
        self.next_number = self.conn.query_row(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM tickets",
            [],
            |r| r.get(0),
        )?;
        let seq: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(origin_seq), 0) + 1 FROM events WHERE origin_site = ?1 AND origin_node = ?2",
            [&self.stamp.site, &self.stamp.node],
            |r| r.get(0),
        )?;
        self.next_seq = seq as u64;
        Ok(())
    }

    fn head(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?)
    }

    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(self.cfg.group_commit_max);
        loop {
            let Some(first) = rx.blocking_recv() else {
                return;
            };
            let mut stop = false;
            for job in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match job {
                    Job::Write(req, reply) => batch.push((req, reply)),
                    Job::Shutdown => {
                        stop = true;
                        break;
                    }
                }
                if batch.len() >= self.cfg.group_commit_max {
                    break;
                }
            }
            if !batch.is_empty() {
                self.commit_batch(&mut batch);
            }
            if stop {
                rx.close();
                // Answer anything that raced in behind the shutdown.
                while let Ok(Job::Write(_, reply)) = rx.try_recv() {
                    let _ = reply.send(Err(StoreError::Closed));
                }
                return;
            }
        }
    }

    /// Forgets idempotency keys older than [`IDEMPOTENCY_TTL_MS`] (at start and now and then).
    fn prune_idempotency(&self) {
        let cutoff = clock::now() - IDEMPOTENCY_TTL_MS;
        if let Err(e) = self
            .conn
            .execute("DELETE FROM idempotency WHERE at < ?1", [cutoff])
        {
            tracing::warn!(error = %e, "cannot prune old idempotency keys");
        }
    }

    fn commit_batch(&mut self, batch: &mut Vec<Pending>) {
        if self
            .stats
            .commits
            .load(Ordering::Relaxed)
            .is_multiple_of(4096)
        {
            self.prune_idempotency();
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut effects = Effects::default();
        let committed = self.run_batch(batch, &mut results, &mut effects);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "group commit failed; {} writes refused", batch.len());
            let _ = self.reload_counters();
        } else {
            if let (Some(tx), Ok(head)) = (&self.head_tx, self.head()) {
                tx.send_replace(head);
            }
            if effects.timers {
                self.timers_changed.notify_one();
            }
            if effects.operators {
                self.operators_generation.fetch_add(1, Ordering::SeqCst);
            }
            if effects.replicated {
                if let Err(e) = self.reload_counters() {
                    tracing::error!(error = %e, "cannot re-read counters after replicated events");
                }
            }
            if effects.peers {
                self.peers_changed.notify_waiters();
                self.peers_changed.notify_one();
            }
        }
        for ((_, reply), result) in batch.drain(..).zip(results) {
            let answer = match &committed {
                Ok(()) => result,
                Err(e) => Err(StoreError::Schema(format!(
                    "the write was not committed: {e}"
                ))),
            };
            let _ = reply.send(answer);
        }
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
        let (stamp, limits, epoch) = (&self.stamp, &self.limits, self.epoch);
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut counters = (self.next_seq, self.next_number);
        for (req, _) in batch {
            let before = counters;
            let handle = |conn: &Connection, counters: &mut (u64, i64)| {
                let mut job = InBatch {
                    conn,
                    stamp,
                    limits,
                    epoch,
                    next_seq: &mut counters.0,
                    next_number: &mut counters.1,
                    effects: Effects::default(),
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
        tx.set_drop_behavior(rusqlite::DropBehavior::Commit);
        tx.commit()?;
        (self.next_seq, self.next_number) = counters;
        Ok(true)
    }
}

/// One request being handled inside the batch's transaction (or its own savepoint).
struct InBatch<'a> {
    conn: &'a Connection,
    stamp: &'a NodeStamp,
    limits: &'a LimitsSection,
    epoch: u64,
    next_seq: &'a mut u64,
    next_number: &'a mut i64,
    effects: Effects,
}

fn not_found_ticket(number: i64) -> StoreError {
    StoreError::Command(CommandError::NotFound(format!("no ticket {number}")))
}

/// Loads a ticket by its number.
pub fn ticket_by_number(conn: &Connection, number: i64) -> Result<Option<Ticket>, StoreError> {
    use super::apply::{ticket_columns, ticket_from_columns, TICKET_COLUMNS};
    let row = conn
        .prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE number = ?1"
        ))?
        .query_row([number], ticket_columns)
        .optional()?;
    row.map(ticket_from_columns).transpose()
}

impl InBatch<'_> {
    fn handle(&mut self, req: &WriteRequest) -> Result<WriteOutcome, StoreError> {
        let now = clock::now();
        let key = req
            .idempotency
            .as_ref()
            .map(|i| (format!("{}:{}", req.actor, i.key), &i.fingerprint));
        if let Some((key, fingerprint)) = &key {
            let stored: Option<(String, String, Millis)> = self
                .conn
                .prepare_cached(
                    "SELECT response, request_sha256, at FROM idempotency WHERE key = ?1",
                )?
                .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            match stored {
                Some((_, stored_fp, _)) if &stored_fp != *fingerprint => {
                    return Err(CommandError::Refused(
                        "this Idempotency-Key was already used for a different request: use a new key".into(),
                    )
                    .into())
                }
                Some((stored, _, at)) if at > now - IDEMPOTENCY_TTL_MS => {
                    let mut out: WriteOutcome = serde_json::from_str(&stored)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    if let WriteOutcome::Ticket(ack) = &mut out {
                        ack.replayed = true;
                    }
                    return Ok(out);
                }
                Some(_) => {
                    self.conn.execute("DELETE FROM idempotency WHERE key = ?1", [key])?;
                }
                None => {}
            }
        }
        let out = self.handle_op(&req.actor, &req.op, now)?;
        if let Some((key, fingerprint)) = &key {
            let response =
                serde_json::to_string(&out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            self.conn
                .prepare_cached(
                    "INSERT INTO idempotency (key, response, at, request_sha256) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![key, response, now, fingerprint])?;
        }
        Ok(out)
    }

    /// Stamps and applies one event written here.
    fn emit(
        &mut self,
        ticket: Option<Uuid>,
        kind: EventKind,
        actor: &str,
        at: Millis,
    ) -> Result<i64, StoreError> {
        self.emit_on(ticket, kind, actor, at, None)
    }

    /// [`Self::emit`] with the ticket as projected before the event, when the caller has it
    /// (saves the applier loading and parsing it again).
    fn emit_on(
        &mut self,
        ticket: Option<Uuid>,
        kind: EventKind,
        actor: &str,
        at: Millis,
        before: Option<&Ticket>,
    ) -> Result<i64, StoreError> {
        self.effects.note(&kind);
        let event = Event {
            id: Uuid::now_v7(),
            origin_site: self.stamp.site.clone(),
            origin_node: self.stamp.node.clone(),
            epoch: self.epoch,
            seq: *self.next_seq,
            at,
            actor: actor.to_string(),
            ticket,
            kind,
        };
        let pos = apply_event_on(self.conn, &event, before)?.ok_or_else(|| {
            StoreError::Corrupt(format!("fresh event {} already in the log", event.id))
        })?;
        *self.next_seq += 1;
        Ok(pos)
    }

    fn ticket_events(
        &mut self,
        mut t: Ticket,
        events: Vec<EventKind>,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let mut positions = Vec::with_capacity(events.len());
        for kind in events {
            let before = t.clone();
            t.apply(&kind, now);
            positions.push(self.emit_on(Some(t.id), kind, actor, now, Some(&before))?);
        }
        Ok(WriteOutcome::Ticket(TicketAck {
            number: t.number,
            id: t.id,
            status: t.status,
            events: positions,
            replayed: false,
        }))
    }

    fn handle_op(
        &mut self,
        actor: &str,
        op: &WriteOp,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let ctx = Context {
            actor,
            now,
            limits: self.limits,
        };
        match op {
            WriteOp::Create(req) => {
                let (new, description) = command::decide_create(req, &ctx)?;
                let number = *self.next_number;
                *self.next_number += 1;
                let id = Uuid::now_v7();
                let t = Ticket::created(id, &self.stamp.site, number, &new, actor, now);
                let mut events = vec![EventKind::TicketCreated {
                    number,
                    ticket: new,
                }];
                if let Some(text) = description {
                    events.push(EventKind::NoteAdded {
                        note_id: Uuid::now_v7(),
                        text,
                        shared: false,
                        happened_at: None,
                    });
                }
                let mut positions = Vec::new();
                for kind in events {
                    positions.push(self.emit(Some(id), kind, actor, now)?);
                }
                Ok(WriteOutcome::Ticket(TicketAck {
                    number,
                    id,
                    status: t.status,
                    events: positions,
                    replayed: false,
                }))
            }
            WriteOp::Ticket { number, command } => {
                let t = ticket_by_number(self.conn, *number)?
                    .ok_or_else(|| not_found_ticket(*number))?;
                if let Command::Timer { .. } = command {
                    let pending: i64 = self.conn.query_row(
                        "SELECT COUNT(*) FROM timers WHERE ticket_id = ?1 AND fired_at IS NULL",
                        [t.id.as_bytes()],
                        |r| r.get(0),
                    )?;
                    if pending as usize >= self.limits.max_timers_per_ticket {
                        return Err(CommandError::Refused(format!(
                            "ticket {number} already has {pending} pending timers (limits.max_timers_per_ticket)"
                        ))
                        .into());
                    }
                }
                let events = command::decide(&t, command, &ctx)?;
                self.ticket_events(t, events, actor, now)
            }
            WriteOp::Link {
                number,
                kind,
                target,
            } => {
                let t = ticket_by_number(self.conn, *number)?
                    .ok_or_else(|| not_found_ticket(*number))?;
                let other = ticket_by_number(self.conn, *target)?
                    .ok_or_else(|| not_found_ticket(*target))?;
                let events = command::decide_link(&t, *kind, &other)?;
                self.ticket_events(t, events, actor, now)
            }
            WriteOp::AddOperator {
                name,
                role,
                token_sha256,
            } => {
                let exists: bool = self
                    .conn
                    .query_row("SELECT 1 FROM operators WHERE name = ?1", [name], |_| {
                        Ok(true)
                    })
                    .optional()?
                    .unwrap_or(false);
                if exists {
                    return Err(CommandError::Refused(format!(
                        "operator {name:?} exists: remove it first to issue a new token"
                    ))
                    .into());
                }
                for kind in command::decide_add_operator(name, *role, token_sha256.clone())? {
                    self.emit(None, kind, actor, now)?;
                }
                Ok(WriteOutcome::Operator {
                    operator: name.clone(),
                })
            }
            WriteOp::RemoveOperator { name } => {
                let role: Option<String> = self
                    .conn
                    .query_row("SELECT role FROM operators WHERE name = ?1", [name], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let role =
                    role.ok_or_else(|| CommandError::NotFound(format!("no operator {name:?}")))?;
                let admins: i64 = self.conn.query_row(
                    "SELECT COUNT(*) FROM operators WHERE role = 'admin'",
                    [],
                    |r| r.get(0),
                )?;
                if role == "admin" && admins <= 1 {
                    return Err(CommandError::Refused(format!(
                        "operator {name:?} is the last admin: add another admin first"
                    ))
                    .into());
                }
                self.emit(
                    None,
                    EventKind::OperatorRemoved { name: name.clone() },
                    actor,
                    now,
                )?;
                Ok(WriteOutcome::Operator {
                    operator: name.clone(),
                })
            }
            WriteOp::Peer(op) => {
                let site = op.site().to_string();
                let current = super::query::peer(self.conn, &site)?;
                let event = crate::model::peer::decide(current.as_ref(), op.clone(), now)?;
                let changed = event.is_some();
                if let Some(kind) = event {
                    self.emit(None, kind, actor, now)?;
                }
                Ok(WriteOutcome::Peer { site, changed })
            }
            WriteOp::FireDueTimers => {
                let due: Vec<(Uuid, Uuid)> = self
                    .conn
                    .prepare("SELECT id, ticket_id FROM timers WHERE fired_at IS NULL AND due_at <= ?1 ORDER BY due_at LIMIT 1000")?
                    .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                for &(timer_id, ticket) in &due {
                    let kind = EventKind::TimerFired { timer_id };
                    self.emit(Some(ticket), kind, "system", now)?;
                }
                self.effects.timers |= !due.is_empty();
                Ok(WriteOutcome::Applied { applied: due.len() })
            }
            WriteOp::Replicate(events) => {
                let mut applied = 0;
                for e in events {
                    if apply_event(self.conn, e)?.is_some() {
                        applied += 1;
                        self.effects.note(&e.kind);
                        self.effects.replicated = true;
                    }
                }
                Ok(WriteOutcome::Applied { applied })
            }
        }
    }
}
