//! The writer's attachment write: `ttx attach N FILE`. The chunks and the attachment are
//! decided (pure, `model::attachment`) and applied in the request's transaction, so the
//! attachment exists whole or not at all; the chunks are site events (they stay out of the
//! ticket's history), the attachment is a ticket event.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::request::{ticket_by_number, InBatch};
use super::WriteOutcome;
use crate::exchange::attachment::{self as ex, ChunkDecision};
use crate::exchange::forward;
use crate::exchange::referral::{self, Referral};
use crate::model::attachment::{decide_attach, sha256_hex, AttachmentMeta, AttachmentRecord};
use crate::model::clock::Millis;
use crate::model::command::CommandError;
use crate::model::event::EventKind;
use crate::store::attachment::{chunks, partial_bytes_of_peer, partials_of_referral, written_len};
use crate::store::exchange as tables;
use crate::store::StoreError;
use crate::wire::exchange::{Body, ExchangeCode};
use crate::wire::exchange_v2::AttachmentChunk;

/// What `ttx attach` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentAck {
    /// The attachment's id.
    pub attachment: Uuid,
    /// The ticket's number.
    pub ticket_number: i64,
    /// File name.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Shared with partners.
    pub shared: bool,
    /// Site positions of the events written (chunks, then the attachment).
    pub events: Vec<i64>,
}

impl InBatch<'_> {
    /// Attaches `data` as `name` to ticket `number`.
    pub(super) fn attach(
        &mut self,
        number: i64,
        name: &str,
        data: &[u8],
        shared: bool,
        actor: &str,
        now: Millis,
    ) -> Result<WriteOutcome, StoreError> {
        let t = ticket_by_number(self.conn, number)?
            .ok_or_else(|| crate::store::query::no_such_ticket(number))?;
        if t.status.is_final() {
            return Err(CommandError::Refused(format!(
                "ticket {number} is {}: reopen it to attach files",
                t.status
            ))
            .into());
        }
        let (attachment, events) = decide_attach(
            &self.stamp.site,
            name,
            data,
            shared,
            self.limits.max_attachment_bytes,
        )?;
        let mut positions = Vec::with_capacity(events.len());
        let mut added = None;
        for kind in events {
            let on_ticket = match &kind {
                EventKind::Attachment {
                    record: AttachmentRecord::Added(m),
                } => {
                    added = Some(m.clone());
                    Some(t.id)
                }
                _ => None,
            };
            positions.push(self.emit(on_ticket, kind, actor, now)?);
        }
        let m = added.ok_or_else(|| StoreError::Corrupt("attachment without its event".into()))?;
        if m.shared && crate::store::exchange::has_referrals(self.conn, t.id)? {
            positions.extend(self.send_attachment(t.id, &m, actor, now)?);
        }
        Ok(WriteOutcome::Attachment(AttachmentAck {
            attachment,
            ticket_number: number,
            name: m.name,
            size: m.size,
            sha256: m.sha256,
            shared: m.shared,
            events: positions,
        }))
    }
}

impl InBatch<'_> {
    /// Queues a shared attachment of `ticket` for every partner a shared note of it would go
    /// to (the same policy: internal attachments never get here), as chunks without their
    /// bytes (read from the store when they leave).
    fn send_attachment(
        &mut self,
        ticket: Uuid,
        m: &AttachmentMeta,
        actor: &str,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        let edges = self.edges_of(ticket, None)?;
        let mut events = Vec::new();
        for target in forward::targets(&edges, None, &m.origin_site, false) {
            let Some(r) = tables::referral(self.conn, target)? else {
                continue;
            };
            for chunk in ex::chunks_to_send(m, actor, now) {
                match referral::act(&r, Body::Attachment(chunk), now) {
                    Ok(step) => events.extend(self.write_step(step, Some(&r), actor, now)?),
                    // A referral that takes no more messages (final) is skipped, as for notes.
                    Err(_) => break,
                }
            }
        }
        Ok(events)
    }

    /// Checks a partner's chunk against the attachment being received on `ticket` before
    /// anything of the message is written: `Some(code)` refuses it for good, after dropping
    /// the chunks kept so far (nothing of a refused attachment stays).
    ///
    /// The bytes of the attachments `r`'s peer has started and not finished are bounded
    /// (`limits.max_partial_attachment_bytes`): a chunk that would take them over is refused
    /// `TooLarge`, unless it finishes its attachment (which frees what it held).
    pub(super) fn check_partner_chunk(
        &mut self,
        r: &Referral,
        c: &AttachmentChunk,
        now: Millis,
    ) -> Result<Option<ExchangeCode>, StoreError> {
        let id = ex::receiving_id(r.ticket, c);
        let written = written_len(self.conn, id)?;
        let complete = crate::store::attachment::meta(self.conn, id)?.is_some();
        let code = match ex::decide_chunk(c, written, complete, self.limits.max_attachment_bytes) {
            ChunkDecision::AlreadyHave => None,
            ChunkDecision::Take { last: false } => {
                let held = partial_bytes_of_peer(self.conn, &r.peer)?;
                let limit = self.limits.max_partial_attachment_bytes as u64;
                let over = held.saturating_add(c.bytes.len() as u64) > limit;
                if over {
                    tracing::warn!(
                        peer = %r.peer,
                        held,
                        limit,
                        attachment = %c.name,
                        "refused an attachment chunk: the peer's unfinished attachments would pass limits.max_partial_attachment_bytes"
                    );
                }
                over.then_some(ExchangeCode::TooLarge)
            }
            ChunkDecision::Take { last: true } => {
                let mut all = chunks(self.conn, id)?;
                all.extend_from_slice(&c.bytes);
                (sha256_hex(&all) != hex::encode(c.sha256)).then_some(ExchangeCode::BadAttachment)
            }
            ChunkDecision::Refuse(code) => Some(code),
        };
        if code.is_some() && written > 0 {
            let kind = EventKind::Attachment {
                record: AttachmentRecord::Discarded { attachment_id: id },
            };
            self.emit(None, kind, "system", now)?;
        }
        Ok(code)
    }

    /// Keeps a partner's chunk (checked by [`Self::check_partner_chunk`]) and, with the last
    /// one, adds the attachment to our ticket as shared (it came from a partner).
    pub(super) fn partner_chunk(
        &mut self,
        r: &Referral,
        c: AttachmentChunk,
        actor: &str,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        let id = ex::receiving_id(r.ticket, &c);
        let written = written_len(self.conn, id)?;
        let complete = crate::store::attachment::meta(self.conn, id)?.is_some();
        let ChunkDecision::Take { last } =
            ex::decide_chunk(&c, written, complete, self.limits.max_attachment_bytes)
        else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        if c.offset == 0 {
            let kind = EventKind::Attachment {
                record: AttachmentRecord::Receiving {
                    attachment_id: id,
                    peer: r.peer.clone(),
                    referral: r.id,
                },
            };
            events.push(self.emit(None, kind, actor, now)?);
        }
        let kind = EventKind::Attachment {
            record: AttachmentRecord::Chunk {
                attachment_id: id,
                offset: c.offset,
                data: c.bytes,
            },
        };
        events.push(self.emit(None, kind, actor, now)?);
        if last {
            let kind = EventKind::Attachment {
                record: AttachmentRecord::Added(AttachmentMeta {
                    attachment_id: id,
                    name: c.name,
                    size: c.total,
                    sha256: hex::encode(c.sha256),
                    shared: true,
                    origin_site: c.origin_site,
                    origin_id: Uuid::from_bytes(c.origin_id),
                }),
            };
            events.push(self.emit(Some(r.ticket), kind, actor, now)?);
        }
        Ok(events)
    }

    /// Drops the attachments partner messages started on referral `referral` and never
    /// finished: the referral has ended (closed, cancelled or rejected), so no more of them
    /// can arrive.
    pub(super) fn drop_partial_attachments(
        &mut self,
        referral: Uuid,
        now: Millis,
    ) -> Result<Vec<i64>, StoreError> {
        let mut events = Vec::new();
        for attachment_id in partials_of_referral(self.conn, referral)? {
            let kind = EventKind::Attachment {
                record: AttachmentRecord::Discarded { attachment_id },
            };
            events.push(self.emit(None, kind, "system", now)?);
        }
        Ok(events)
    }
}
