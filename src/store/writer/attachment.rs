//! The writer's attachment write: `ttx attach N FILE`. The chunks and the attachment are
//! decided (pure, `model::attachment`) and applied in the request's transaction, so the
//! attachment exists whole or not at all; the chunks are site events (they stay out of the
//! ticket's history), the attachment is a ticket event.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::request::{ticket_by_number, InBatch};
use super::WriteOutcome;
use crate::model::attachment::{decide_attach, AttachmentRecord};
use crate::model::clock::Millis;
use crate::model::command::CommandError;
use crate::model::event::EventKind;
use crate::store::StoreError;

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
