//! The review list's writes, inside the batch's transaction: a deposed node's tail queued as
//! items (idempotent by the original event id), and an admin's decision on one item (apply:
//! re-enacted as new events of the current epoch, then the decision; discard: the decision
//! alone). Nothing is written when an item cannot be applied.

use uuid::Uuid;

use super::request::InBatch;
use super::{ReviewAck, WriteOutcome};
use crate::model::clock::{self, Millis};
use crate::model::command::{self, CommandError, Context};
use crate::model::event::EventKind;
use crate::model::review::{self, Plan, ReviewDecision, ReviewItem, ReviewRecord};
use crate::model::ticket::Ticket;
use crate::store::review::{self as table, ReviewRow};
use crate::store::StoreError;
use crate::wire::envelope::Envelope;

/// The longest reason a discard may carry.
const MAX_REASON_BYTES: usize = 4096;

fn refused(msg: impl Into<String>) -> StoreError {
    StoreError::Command(CommandError::Refused(msg.into()))
}

impl InBatch<'_> {
    fn review_event(
        &mut self,
        ticket: Option<Uuid>,
        record: ReviewRecord,
        actor: &str,
        now: Millis,
    ) -> Result<i64, StoreError> {
        self.emit(ticket, EventKind::Review { record }, actor, now)
    }

    /// Queues each envelope of `node`'s tail that is neither on the list nor in the log.
    pub(super) fn queue_review(
        &mut self,
        node: &str,
        envelopes: &[Envelope],
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let (mut queued, mut known) = (0, 0);
        for env in envelopes {
            if env.origin_site != self.stamp.site {
                return Err(refused(format!(
                    "event at position {} is of site {:?}, not {:?}: only this site's events are reviewed",
                    env.position, env.origin_site, self.stamp.site
                )));
            }
            let id = Uuid::from_bytes(env.id);
            let in_log = crate::store::ship::has_event(self.conn, id)?;
            if in_log || table::has_item(self.conn, id)? {
                known += 1;
                continue;
            }
            let body = String::from_utf8(env.body.clone()).map_err(|_| {
                refused(format!(
                    "event {id} at position {}: its body is not UTF-8 JSON",
                    env.position
                ))
            })?;
            let item = ReviewItem {
                id,
                position: env.position,
                epoch: env.epoch,
                node: node.to_string(),
                at: env.at,
                actor: env.actor.clone(),
                ticket: env.ticket.map(Uuid::from_bytes),
                kind: env.kind.clone(),
                body,
            };
            let number = table::next_number(self.conn)?;
            self.review_event(None, ReviewRecord::Queued { number, item }, actor, now)?;
            queued += 1;
        }
        Ok(WriteOutcome::Reviewed { queued, known })
    }

    /// `ttx review apply|discard N`.
    pub(super) fn decide_review(
        &mut self,
        number: i64,
        decision: &ReviewDecision,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let row = table::get(self.conn, number)?.ok_or_else(|| {
            StoreError::Command(CommandError::NotFound(format!(
                "no review item {number} (see `ttx review list`)"
            )))
        })?;
        if row.state != "pending" {
            return Err(refused(format!(
                "review item {number} was already {} by {} at {}: an item is decided once",
                row.state,
                row.decided_by.as_deref().unwrap_or("?"),
                clock::format(row.decided_at.unwrap_or(0))
            )));
        }
        match decision {
            ReviewDecision::Discard { reason } => {
                if let Some(r) = reason {
                    if r.len() > MAX_REASON_BYTES || r.chars().any(char::is_control) {
                        return Err(StoreError::Command(CommandError::Invalid(format!(
                            "the reason must be one line of at most {MAX_REASON_BYTES} bytes"
                        ))));
                    }
                }
                let ticket = row.ticket_number.and(row.item.ticket);
                let record = ReviewRecord::Discarded {
                    number,
                    reason: reason.clone(),
                };
                let position = self.review_event(ticket, record, actor, now)?;
                Ok(WriteOutcome::Review(ReviewAck {
                    item: number,
                    review_state: "discarded".into(),
                    outcome: reason.clone(),
                    ticket: row.ticket_number,
                    events: vec![position],
                }))
            }
            ReviewDecision::Apply => self.apply_review(&row, actor, now),
        }
    }

    /// The ticket an item is about, as it is here: the same ticket, or the one its tail's
    /// `created` item was applied as.
    fn review_ticket(&self, row: &ReviewRow) -> Result<Ticket, StoreError> {
        let gone = || {
            refused(format!(
                "review item {}: its ticket is not on this node (it was opened in the deposed tail: apply that ticket's `created` item first, or discard this one)",
                row.number
            ))
        };
        let original = row.item.ticket.ok_or_else(gone)?;
        if let Some(t) = crate::store::apply::load_ticket(self.conn, original)? {
            return Ok(t);
        }
        let number = table::recreated_ticket(self.conn, original)?.ok_or_else(gone)?;
        super::request::ticket_by_number(self.conn, number)?.ok_or_else(gone)
    }

    fn apply_review(
        &mut self,
        row: &ReviewRow,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let item = &row.item;
        let by = item.actor.as_str();
        let plan =
            review::plan(item).map_err(|e| refused(format!("review item {}: {e}", row.number)))?;
        let mut events = Vec::new();
        let (ticket, outcome) = match plan {
            Plan::Create {
                number: was,
                ticket,
            } => {
                let kinds = [EventKind::TicketCreated {
                    number: self.log.next_number,
                    ticket: *ticket,
                }];
                crate::store::facts::check_create(self.conn, by, &kinds)?;
                let [kind] = kinds;
                let number = self.log.next_number;
                self.log.next_number += 1;
                let id = Uuid::now_v7();
                events.push(self.emit(Some(id), kind, by, now)?);
                (
                    (id, number),
                    format!(
                        "opened as ticket {number} (ticket {was} on {} in epoch {})",
                        item.node, item.epoch
                    ),
                )
            }
            Plan::Command(cmd) => {
                let t = self.review_ticket(row)?;
                let ctx = Context {
                    actor: by,
                    now,
                    limits: self.limits,
                };
                let kinds = command::decide(&t, &cmd, &ctx).map_err(|e| {
                    refused(format!(
                        "review item {} no longer applies to ticket {}: {e}",
                        row.number, t.number
                    ))
                })?;
                let (id, number) = (t.id, t.number);
                let what = item.kind.clone();
                if let WriteOutcome::Ticket(ack) =
                    self.ticket_write(t, Some(&cmd), kinds, by, now)?
                {
                    events.extend(ack.events);
                }
                ((id, number), format!("{what} written to ticket {number}"))
            }
            Plan::Status { from, to } => {
                let t = self.review_ticket(row)?;
                if t.status != from {
                    return Err(refused(format!(
                        "review item {} no longer applies: ticket {} is {} now, not {from} (the item moved it {from} -> {to})",
                        row.number, t.number, t.status
                    )));
                }
                t.status
                    .check_transition(to)
                    .map_err(|e| refused(format!("review item {}: {e}", row.number)))?;
                let (id, number) = (t.id, t.number);
                let kinds = vec![EventKind::StatusChanged { from, to }];
                if let WriteOutcome::Ticket(ack) = self.ticket_write(t, None, kinds, by, now)? {
                    events.extend(ack.events);
                }
                (
                    (id, number),
                    format!("status {from} -> {to} on ticket {number}"),
                )
            }
        };
        let ((id, number), outcome) = (ticket, outcome);
        let record = ReviewRecord::Applied {
            number: row.number,
            outcome: outcome.clone(),
            ticket: Some(number),
        };
        events.push(self.review_event(Some(id), record, actor, now)?);
        Ok(WriteOutcome::Review(ReviewAck {
            item: row.number,
            review_state: "applied".into(),
            outcome: Some(outcome),
            ticket: Some(number),
            events,
        }))
    }
}
