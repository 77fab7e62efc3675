//! One request inside the batch's transaction: the role check, its idempotency record, the
//! events its command decides, stamped with this node's origin and the next site positions and
//! applied through the one applier; shipped envelopes, promotion and fencing.

use rusqlite::{Connection, OptionalExtension};
use uuid::Uuid;

use super::commit::Effects;
use super::{TicketAck, WriteOp, WriteOutcome, WriteRequest};
use crate::config::LimitsSection;
use crate::model::clock::{self, Millis};
use crate::model::command::{self, Command, CommandError, Context};
use crate::model::event::{Event, EventKind};
use crate::model::role::RoleState;
use crate::model::ticket::Ticket;
use crate::store::apply::{apply_event_on, event_body};
use crate::store::idempotency::{self, Lookup};
use crate::store::site_log::SiteLog;
use crate::store::{NodeStamp, StoreError};
use crate::wire::envelope::Envelope;

/// One request being handled inside the batch's transaction (or its own savepoint).
pub(super) struct InBatch<'a> {
    pub(super) conn: &'a Connection,
    pub(super) stamp: &'a NodeStamp,
    pub(super) limits: &'a LimitsSection,
    /// Head, counters, role and epoch, as this request leaves them.
    pub(super) log: &'a mut SiteLog,
    pub(super) effects: Effects,
    /// Whether the commit hook lets this primary take writes (the witness's lease), as of
    /// the batch's start.
    pub(super) leased: bool,
    /// The standby's receipt spool, drained by a promotion and by `ApplySpool`.
    pub(super) spool: &'a crate::store::spool::Spool,
}

use crate::store::query::no_such_ticket as not_found_ticket;

/// Loads a ticket by its number.
pub fn ticket_by_number(conn: &Connection, number: i64) -> Result<Option<Ticket>, StoreError> {
    use crate::store::apply::{ticket_columns, ticket_from_columns, TICKET_COLUMNS};
    let row = conn
        .prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE number = ?1"
        ))?
        .query_row([number], ticket_columns)
        .optional()?;
    row.map(ticket_from_columns).transpose()
}

impl InBatch<'_> {
    pub(super) fn handle(&mut self, req: &WriteRequest) -> Result<WriteOutcome, StoreError> {
        let now = clock::now();
        match &req.op {
            WriteOp::Replicate(_)
            | WriteOp::ApplySpool
            | WriteOp::Promote
            | WriteOp::Fence { .. }
            | WriteOp::HandOver { .. }
            | WriteOp::ResumePrimary => {}
            // A partner is answered with the exchange's own codes (not primary, fenced).
            WriteOp::Inbound { .. } => {}
            WriteOp::Verify => return Err(between_batches()),
            // Only the primary decides: every other write is refused, naming the primary,
            // and refused while a primary with a witness does not hold the lease.
            _ => {
                self.log.role.may_write().map_err(StoreError::NotPrimary)?;
                if !self.leased {
                    return Err(StoreError::NoLease);
                }
            }
        }
        if let Some(idem) = &req.idempotency {
            if let Lookup::Replay(out) = idempotency::lookup(self.conn, &req.actor, idem, now)? {
                return Ok(out);
            }
        }
        let out = self.handle_op(&req.actor, &req.op, now)?;
        if let Some(idem) = &req.idempotency {
            let kind = idempotency::answered(idem, &out)?;
            self.emit(None, kind, &req.actor, now)?;
        }
        Ok(out)
    }

    /// Moves to `next` (a role change without an event: the epoch stays), durably in this
    /// transaction, and answers the role.
    fn change_role(&mut self, next: RoleState, why: &str) -> Result<WriteOutcome, StoreError> {
        if next != self.log.role {
            tracing::warn!(role = %next.role, epoch = next.epoch, "{why}");
            self.log.set_role(self.conn, next)?;
            self.effects.role = true;
        }
        Ok(WriteOutcome::Role {
            role: self.log.role.clone(),
        })
    }

    /// Stamps and applies one event written here.
    pub(super) fn emit(
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
        let body = event_body(&kind)?;
        let event = Event {
            id: Uuid::now_v7(),
            origin_site: self.stamp.site.clone(),
            origin_node: self.stamp.node.clone(),
            epoch: self.log.role.epoch,
            seq: self.log.next_seq,
            at,
            actor: actor.to_string(),
            ticket,
            kind,
        };
        let position = self.log.head + 1;
        apply_event_on(self.conn, position, &event, &body, before)?;
        self.effects.shipped.push(position, &event, &body);
        self.log.head = position;
        self.log.next_seq += 1;
        Ok(position)
    }

    /// Writes the events a command (or `None`: a link, a status move) decided for ticket `t`,
    /// with what the ticket rules add, and tells partners of a referred ticket in the same
    /// transaction.
    pub(super) fn ticket_write(
        &mut self,
        t: Ticket,
        command: Option<&Command>,
        events: Vec<EventKind>,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let events = crate::store::facts::complete(self.conn, actor, &t, command, events)?;
        // Partners hear of shared notes and status moves of referred tickets, in this
        // same transaction (the check is one index probe for tickets never referred).
        let told = crate::store::exchange::has_referrals(self.conn, t.id)?.then(|| events.clone());
        let id = t.id;
        let out = self.ticket_events(t, events, actor, now)?;
        if let Some(kinds) = told {
            self.after_ticket_command(id, &kinds, actor, now)?;
        }
        Ok(out)
    }

    fn ticket_events(
        &mut self,
        mut t: Ticket,
        events: Vec<EventKind>,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let mut positions = Vec::with_capacity(events.len());
        let mut changes = Vec::with_capacity(events.len());
        for kind in events {
            let before = t.clone();
            changes.push(crate::model::summary::describe(&kind, &before));
            t.apply(&kind, now);
            positions.push(self.emit_on(Some(t.id), kind, actor, now, Some(&before))?);
        }
        Ok(WriteOutcome::Ticket(TicketAck {
            number: t.number,
            id: t.id,
            status: t.status,
            events: positions,
            changes,
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
                let number = self.log.next_number;
                self.log.next_number += 1;
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
                crate::store::facts::check_create(self.conn, actor, &events)?;
                let mut positions = Vec::new();
                for kind in events {
                    positions.push(self.emit(Some(id), kind, actor, now)?);
                }
                Ok(WriteOutcome::Ticket(TicketAck {
                    number,
                    id,
                    status: t.status,
                    events: positions,
                    changes: vec!["opened".into()],
                    replayed: false,
                }))
            }
            WriteOp::Ticket { number, command } => {
                let t = ticket_by_number(self.conn, *number)?
                    .ok_or_else(|| not_found_ticket(*number))?;
                if let Command::Timer { .. } = command {
                    let pending: i64 = self.conn.query_row(
                        "SELECT COUNT(*) FROM timers
                         WHERE ticket_id = ?1 AND fired_at IS NULL AND cancelled_at IS NULL",
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
                self.ticket_write(t, Some(command), events, actor, now)
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
                let events = crate::store::facts::complete(self.conn, actor, &t, None, events)?;
                self.ticket_events(t, events, actor, now)
            }
            WriteOp::Timer {
                number,
                which,
                action,
            } => {
                let t = ticket_by_number(self.conn, *number)?
                    .ok_or_else(|| not_found_ticket(*number))?;
                let events = crate::store::facts::timer_action(self.conn, &t, which, *action, now)?;
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
            WriteOp::SetPassword {
                name,
                password_hash,
            } => {
                if super::super::query::operator_login(self.conn, name)?.is_none() {
                    return Err(CommandError::NotFound(format!("no operator {name:?}")).into());
                }
                let kind = EventKind::OperatorPasswordSet {
                    name: name.clone(),
                    password_hash: password_hash.clone(),
                };
                self.emit(None, kind, actor, now)?;
                Ok(WriteOutcome::Operator {
                    operator: name.clone(),
                })
            }
            WriteOp::WatchQueues { name, queues } => {
                if super::super::query::operator_login(self.conn, name)?.is_none() {
                    return Err(CommandError::NotFound(format!("no operator {name:?}")).into());
                }
                for kind in command::decide_watch(name, queues)? {
                    self.emit(None, kind, actor, now)?;
                }
                Ok(WriteOutcome::Operator {
                    operator: name.clone(),
                })
            }
            WriteOp::Peer(op) => {
                let site = op.site().to_string();
                let current = crate::store::query::peer(self.conn, &site)?;
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
                    .prepare("SELECT id, ticket_id FROM timers WHERE fired_at IS NULL AND cancelled_at IS NULL AND due_at <= ?1 ORDER BY due_at LIMIT 1000")?
                    .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                for &(timer_id, ticket) in &due {
                    let kind = EventKind::TimerFired { timer_id };
                    self.emit(Some(ticket), kind, "system", now)?;
                }
                self.effects.timers |= !due.is_empty();
                Ok(WriteOutcome::Applied { applied: due.len() })
            }
            WriteOp::Replicate(envelopes) => {
                self.replicate(envelopes)?;
                Ok(WriteOutcome::Applied {
                    applied: envelopes.len(),
                })
            }
            WriteOp::ApplySpool => {
                let applied = if self.log.role.follows() {
                    self.drain_spool()?
                } else {
                    0
                };
                Ok(WriteOutcome::Applied { applied })
            }
            WriteOp::Promote => {
                // Refused as it would be below before the spool is read (a primary, a fenced
                // node); the role is decided again after the spool's events.
                self.log.role.promote().map_err(StoreError::NotPrimary)?;
                self.drain_spool()?;
                let next = self.log.role.promote().map_err(StoreError::NotPrimary)?;
                // The epoch-start event is the first event of the new epoch; meta records the
                // epoch and role in the same transaction, before any other write of the epoch.
                self.log.set_role(self.conn, next.clone())?;
                let kind = EventKind::EpochStarted {
                    epoch: next.epoch,
                    primary: self.stamp.node.clone(),
                };
                let position = self.emit(None, kind, actor, now)?;
                self.effects.role = true;
                tracing::warn!(
                    epoch = next.epoch,
                    position,
                    "promoted: this node is the site's primary"
                );
                Ok(WriteOutcome::Promoted {
                    epoch: next.epoch,
                    position,
                })
            }
            WriteOp::Fence { epoch, by } => {
                if let Some(next) = self.log.role.observe(*epoch, by) {
                    tracing::error!(epoch, by = %by, role = %next.role, "a higher epoch was seen: fenced");
                    self.log.set_role(self.conn, next)?;
                    self.effects.role = true;
                }
                Ok(WriteOutcome::Role {
                    role: self.log.role.clone(),
                })
            }
            WriteOp::HandOver { to } => {
                let next = self
                    .log
                    .role
                    .hand_over(to)
                    .map_err(StoreError::NotPrimary)?;
                self.change_role(
                    next,
                    "switchover: handing the primary role over; local writes pause",
                )
            }
            WriteOp::ResumePrimary => {
                let next = self.log.role.resume().map_err(StoreError::NotPrimary)?;
                self.change_role(next, "switchover abandoned: primary again")
            }
            WriteOp::Verify => Err(between_batches()),
            WriteOp::Refer(req) => self.refer(req, actor, now),
            WriteOp::Referral { id, action } => self.act_on_referral(id, action, actor, now),
            WriteOp::Inbound {
                peer,
                messages,
                rates,
            } => self.inbound(peer, messages, rates, now),
            WriteOp::ExchangeAcked {
                peer,
                up_to,
                refused,
            } => self.acked(peer, *up_to, *refused, now),
            WriteOp::ExchangeMarkLearned { peer, mark } => self.mark_learned(peer, *mark, now),
            WriteOp::PeerSharing { site, change } => self.set_sharing(site, change, actor, now),
            WriteOp::QueueReview { node, envelopes } => {
                self.queue_review(node, envelopes, actor, now)
            }
            WriteOp::DecideReview { number, decision } => {
                self.decide_review(*number, decision, actor, now)
            }
            WriteOp::Attach {
                number,
                name,
                data,
                shared,
            } => self.attach(*number, name, data, *shared, actor, now),
        }
    }
}

impl InBatch<'_> {
    /// Applies shipped events, each at exactly `head + 1` (all or none: the caller's
    /// savepoint).
    fn replicate(&mut self, envelopes: &[Envelope]) -> Result<(), StoreError> {
        let role = self.log.role.clone();
        for env in envelopes {
            self.apply_one(env).inspect_err(|e| {
                tracing::error!(position = env.position, error = %e, "shipped events refused; none of the batch applied")
            })?;
        }
        self.effects.role |= self.log.role != role;
        Ok(())
    }

    /// Applies one shipped event at `head + 1` and notes what it changes besides its tables.
    fn apply_one(&mut self, env: &Envelope) -> Result<(), StoreError> {
        let kind = crate::store::ship::apply_shipped(self.conn, &self.stamp.site, self.log, env)?;
        self.effects.note(&kind);
        self.effects.replicated = true;
        Ok(())
    }

    /// Applies what the receipt spool holds past the head (acknowledged to the primary as
    /// durable, maybe not applied yet: before a promotion, and before a standby subscribes
    /// again), each event in a savepoint of its own up to the first the store refuses, then
    /// re-reads the counters the applied events moved. A refused event and what follows it
    /// stay in the spool (logged: a primary that ships what it could not apply is broken; the
    /// follower moves the spool aside). A spool that cannot be read refuses the write:
    /// promoting without it could lose acknowledged writes. How many events were applied.
    fn drain_spool(&mut self) -> Result<usize, StoreError> {
        let pending = self.spool.pending_after(self.log.head as u64)?;
        let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
            return Ok(0);
        };
        tracing::warn!(
            from = first.position,
            to = last.position,
            "applying the receipt spool's events"
        );
        let role = self.log.role.clone();
        let mut applied = 0;
        for env in &pending {
            self.conn.execute_batch("SAVEPOINT spooled")?;
            match self.apply_one(env) {
                Ok(()) => {
                    self.conn.execute_batch("RELEASE spooled")?;
                    applied += 1;
                }
                Err(e) => {
                    self.conn
                        .execute_batch("ROLLBACK TO spooled; RELEASE spooled")?;
                    tracing::error!(position = env.position, error = %e, "the receipt spool holds an event the store refuses: it and what follows are not applied");
                    break;
                }
            }
        }
        // The refused event may have moved the in-memory log before it failed: read it again.
        *self.log = crate::store::site_log::SiteLog::load(self.conn, self.stamp)?;
        self.effects.role |= self.log.role != role;
        Ok(applied)
    }
}

/// [`WriteOp::Verify`] is answered by the writer between batches
/// ([`super::commit::WriterState::commit_batch`]), never inside one.
fn between_batches() -> StoreError {
    StoreError::Stale("a verification runs between the writer's batches, not in one".into())
}
