//! The one applier: appends an event to the log and updates the projections derived from it,
//! inside the caller's transaction. Applying an event that is already in the log is a no-op.
//!
//! Operator commands (through the writer) and replicated events (on a standby) both come here,
//! so a standby replaying a primary's log ends with the same tickets, notes, links and timers.

use rusqlite::{named_params, params, OptionalExtension};
use uuid::Uuid;

use super::StoreError;
use crate::model::event::{Event, EventKind};
use crate::model::ticket::Ticket;

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Loads the projected ticket with this id.
pub fn load_ticket(tx: &rusqlite::Connection, id: Uuid) -> Result<Option<Ticket>, StoreError> {
    let row = tx
        .prepare_cached(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"
        ))?
        .query_row([id.as_bytes()], ticket_columns)
        .optional()?;
    row.map(ticket_from_columns).transpose()
}

/// The columns a projected ticket is read from: the document, and the two values a note
/// changes, which live in columns only so that appending a note rewrites no document.
pub(crate) const TICKET_COLUMNS: &str = "doc, notes, updated_at";

/// Reads [`TICKET_COLUMNS`].
pub(crate) fn ticket_columns(r: &rusqlite::Row) -> rusqlite::Result<(String, u32, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

/// Builds the ticket from [`TICKET_COLUMNS`].
pub(crate) fn ticket_from_columns(
    (doc, notes, updated_at): (String, u32, i64),
) -> Result<Ticket, StoreError> {
    let mut t: Ticket = serde_json::from_str(&doc)
        .map_err(|e| StoreError::Corrupt(format!("ticket document: {e}")))?;
    t.notes = notes;
    t.updated_at = updated_at;
    Ok(t)
}

/// Writes the projected ticket's columns and document, and re-indexes its subject and header
/// text for search when either changed from `before` (or `before` is not known).
fn save_ticket(
    tx: &rusqlite::Connection,
    t: &Ticket,
    before: Option<&Ticket>,
) -> Result<(), StoreError> {
    let header = t.header_text();
    let reindex = before.is_none_or(|b| b.subject != t.subject || b.header_text() != header);
    // FTS5's external-content rule: a delete must name exactly what was indexed, which is
    // what the row's index columns hold before this update.
    let rowid = if reindex {
        let (rowid, subject, old_header): (i64, String, String) = tx
            .prepare_cached("SELECT rowid, subject, header FROM tickets WHERE id = ?1")?
            .query_row([t.id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?
            .ok_or_else(|| StoreError::Corrupt(format!("ticket {} vanished", t.id)))?;
        tx.prepare_cached(
            "INSERT INTO ticket_fts (ticket_fts, rowid, subject, header)
             VALUES ('delete', ?1, ?2, ?3)",
        )?
        .execute(params![rowid, subject, old_header])?;
        tx.prepare_cached("UPDATE tickets SET header = ?2 WHERE rowid = ?1")?
            .execute(params![rowid, header])?;
        Some(rowid)
    } else {
        None
    };
    let doc = json(t)?;
    let changed = tx
        .prepare_cached(
            "UPDATE tickets SET status = :status, priority = :priority, severity = :severity,
             queue = :queue, owner = :owner, type = :type, subject = :subject,
             updated_at = :updated_at, notes = :notes, doc = :doc
         WHERE id = :id",
        )?
        .execute(named_params! {
            ":status": t.status.as_str(), ":priority": t.priority, ":severity": t.severity,
            ":queue": t.queue, ":owner": t.owner, ":type": t.ticket_type.as_str(),
            ":subject": t.subject, ":updated_at": t.updated_at, ":notes": t.notes, ":doc": doc,
            ":id": t.id.as_bytes(),
        })?;
    if changed == 0 {
        return Err(StoreError::Corrupt(format!("ticket {} vanished", t.id)));
    }
    if let Some(rowid) = rowid {
        tx.prepare_cached("INSERT INTO ticket_fts (rowid, subject, header) VALUES (?1, ?2, ?3)")?
            .execute(params![rowid, t.subject, header])?;
    }
    Ok(())
}

/// Why an event was not applied. On the shipped path every one of these refuses the whole
/// batch (nothing of it is applied); on the local path they would be bugs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// An event of another site: this store holds only its own site's log.
    #[error("event {id} is from site {site:?}: this store holds only the log of site {local:?}")]
    ForeignSite {
        /// The event.
        id: Uuid,
        /// Its site.
        site: String,
        /// This store's site.
        local: String,
    },
    /// A position other than `head + 1`.
    #[error("event {id} is at position {got}: this store's head is {head}, so it accepts only position {}", head + 1)]
    OutOfOrder {
        /// The event.
        id: Uuid,
        /// Its position.
        got: i64,
        /// This store's head.
        head: i64,
    },
    /// A gap or repeat in the writing node's own sequence.
    #[error(
        "event {id} from node {node:?} has origin seq {got}: the next from that node is {expected}"
    )]
    OriginSeqGap {
        /// The event.
        id: Uuid,
        /// Writing node.
        node: String,
        /// Its origin seq.
        got: u64,
        /// The one expected.
        expected: u64,
    },
    /// An event id already in the log (at another position).
    #[error("event {id} is already in the log")]
    Duplicate {
        /// The event.
        id: Uuid,
    },
    /// The node's role or epoch refuses it (a lower epoch, a second writer).
    #[error("event {id}: {source}")]
    Role {
        /// The event.
        id: Uuid,
        /// Why.
        source: crate::model::role::RoleError,
    },
    /// The body is not the kind the envelope names, or not JSON of an event kind.
    #[error("event {id}: the body is not a valid {kind:?} event: {why}")]
    BadBody {
        /// The event.
        id: Uuid,
        /// The kind named.
        kind: String,
        /// Why.
        why: String,
    },
    /// A ticket event without a ticket.
    #[error("event {id} ({kind}) names no ticket")]
    NoTicket {
        /// The event.
        id: Uuid,
        /// Its kind.
        kind: &'static str,
    },
    /// An event naming a ticket that does not exist.
    #[error("event {id} ({kind}) names ticket {ticket}, which does not exist")]
    UnknownTicket {
        /// The event.
        id: Uuid,
        /// Its kind.
        kind: &'static str,
        /// The ticket named.
        ticket: Uuid,
    },
    /// A ticket created twice (same id or number).
    #[error("event {id} creates ticket {ticket} number {number}, but that id or number exists")]
    TicketExists {
        /// The event.
        id: Uuid,
        /// The ticket.
        ticket: Uuid,
        /// Its number.
        number: i64,
    },
    /// A note added twice.
    #[error("event {id} adds note {note}, which exists")]
    NoteExists {
        /// The event.
        id: Uuid,
        /// The note.
        note: Uuid,
    },
    /// A timer that does not exist on the ticket, or is not in a state the event applies to
    /// (fired twice, cancelled, acknowledged before it went off).
    #[error("event {id} ({kind}) names timer {timer} of ticket {ticket}, which does not exist or is not in a state it applies to")]
    UnknownTimer {
        /// The event.
        id: Uuid,
        /// Its kind.
        kind: &'static str,
        /// The timer.
        timer: Uuid,
        /// The ticket.
        ticket: Uuid,
    },
}

/// Appends `event` at log `position` and projects it. `body` is the event kind's JSON as the log
/// stores it (the writing node's own bytes, for a shipped event). The caller has checked the
/// position (`head + 1`) and the event's identity; the projection refuses events naming a
/// ticket, note or timer that does not exist.
pub fn apply_event(
    tx: &rusqlite::Connection,
    position: i64,
    event: &Event,
    body: &str,
) -> Result<(), StoreError> {
    apply_event_on(tx, position, event, body, None)
}

/// [`apply_event`] for a caller that already holds the event's ticket as currently projected
/// in this transaction (`before`, the state before `event`): the applier projects onto it
/// instead of loading and parsing the ticket's document again. The writer uses this for
/// commands it has just decided on that very ticket; the rows written are the same.
pub(crate) fn apply_event_on(
    tx: &rusqlite::Connection,
    position: i64,
    event: &Event,
    body: &str,
    before: Option<&Ticket>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO events
         (seq, id, origin_site, origin_node, epoch, origin_seq, ticket_id, at, actor, kind, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        position,
        event.id.as_bytes(),
        event.origin_site,
        event.origin_node,
        event.epoch as i64,
        event.seq as i64,
        event.ticket.as_ref().map(|t| t.as_bytes().to_vec()),
        event.at,
        event.actor,
        event.kind.name(),
        body,
    ])?;
    project(tx, event, position, before)
}

/// The event kind's JSON, as the log stores it.
pub(crate) fn event_body(kind: &EventKind) -> Result<String, StoreError> {
    json(kind)
}

fn need_ticket(event: &Event) -> Result<Uuid, StoreError> {
    event.ticket.ok_or_else(|| {
        ApplyError::NoTicket {
            id: event.id,
            kind: event.kind.name(),
        }
        .into()
    })
}

fn unknown_ticket(event: &Event, ticket: Uuid) -> StoreError {
    ApplyError::UnknownTicket {
        id: event.id,
        kind: event.kind.name(),
        ticket,
    }
    .into()
}

fn project(
    tx: &rusqlite::Connection,
    event: &Event,
    seq: i64,
    before: Option<&Ticket>,
) -> Result<(), StoreError> {
    match &event.kind {
        EventKind::TicketCreated { number, ticket } => {
            let id = need_ticket(event)?;
            let exists: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM tickets WHERE id = ?1 OR number = ?2")?
                .query_row(params![id.as_bytes(), number], |r| r.get(0))
                .optional()?;
            if exists.is_some() {
                return Err(ApplyError::TicketExists {
                    id: event.id,
                    ticket: id,
                    number: *number,
                }
                .into());
            }
            let t = Ticket::created(
                id,
                &event.origin_site,
                *number,
                ticket,
                &event.actor,
                event.at,
            );
            let header = t.header_text();
            tx.prepare_cached(
                "INSERT INTO tickets (id, number, status, priority, severity, queue, owner, type,
                                      subject, created_at, updated_at, doc, header)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                id.as_bytes(),
                t.number,
                t.status.as_str(),
                t.priority,
                t.severity,
                t.queue,
                t.owner,
                t.ticket_type.as_str(),
                t.subject,
                t.created_at,
                t.updated_at,
                json(&t)?,
                header,
            ])?;
            tx.prepare_cached(
                "INSERT INTO ticket_fts (rowid, subject, header)
                 VALUES (last_insert_rowid(), ?1, ?2)",
            )?
            .execute([&t.subject, &header])?;
            return Ok(());
        }
        EventKind::NoteAdded {
            note_id,
            text,
            shared,
            happened_at,
        } => {
            let ticket = need_ticket(event)?;
            // A note touches only the two ticket columns it changes (no document rewrite, no
            // index update): the hot path of a busy NOC.
            let changed = tx
                .prepare_cached(
                    "UPDATE tickets SET notes = notes + 1, updated_at = max(updated_at, ?2) WHERE id = ?1",
                )?
                .execute(params![ticket.as_bytes(), event.at])?;
            if changed == 0 {
                return Err(unknown_ticket(event, ticket));
            }
            let inserted = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO notes (id, ticket_id, event_seq, author, at, happened_at, shared, text)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?
                .execute(params![
                    note_id.as_bytes(), ticket.as_bytes(), seq, event.actor, event.at,
                    happened_at, *shared, text,
                ])?;
            if inserted == 0 {
                return Err(ApplyError::NoteExists {
                    id: event.id,
                    note: *note_id,
                }
                .into());
            }
            // The text's full-text index entry is written later, in a batch of notes
            // (`note_index`), not in this commit.
            return Ok(());
        }
        EventKind::Linked { kind, target, .. } => {
            let exists: Option<i64> = tx
                .prepare_cached("SELECT 1 FROM tickets WHERE id = ?1")?
                .query_row([target.as_bytes()], |r| r.get(0))
                .optional()?;
            if exists.is_none() {
                return Err(unknown_ticket(event, *target));
            }
            tx.prepare_cached(
                "INSERT OR IGNORE INTO links (from_id, kind, to_id, at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                need_ticket(event)?.as_bytes(),
                kind.as_str(),
                target.as_bytes(),
                event.at
            ])?;
        }
        EventKind::TimerSet {
            timer_id,
            due_at,
            text,
        } => {
            tx.prepare_cached(
                "INSERT INTO timers (id, ticket_id, due_at, text, set_by) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(
                params![timer_id.as_bytes(), need_ticket(event)?.as_bytes(), due_at, text, event.actor],
            )?;
        }
        EventKind::TimerFired { timer_id } => {
            let sql = "UPDATE timers SET fired_at = ?3
                       WHERE id = ?1 AND ticket_id = ?2 AND fired_at IS NULL AND cancelled_at IS NULL";
            let ticket = need_ticket(event)?;
            let p = params![timer_id.as_bytes(), ticket.as_bytes(), event.at];
            timer_update(tx, event, *timer_id, sql, p)?;
        }
        EventKind::TimerCancelled { timer_id, .. } => {
            let sql = "UPDATE timers SET cancelled_at = ?2
                       WHERE id = ?1 AND cancelled_at IS NULL AND fired_at IS NULL";
            timer_update(
                tx,
                event,
                *timer_id,
                sql,
                params![timer_id.as_bytes(), event.at],
            )?;
        }
        EventKind::TimerSnoozed { timer_id, due_at } => {
            let sql = "UPDATE timers SET due_at = ?2, fired_at = NULL, acked_at = NULL,
                       acked_by = NULL WHERE id = ?1 AND cancelled_at IS NULL";
            timer_update(
                tx,
                event,
                *timer_id,
                sql,
                params![timer_id.as_bytes(), due_at],
            )?;
        }
        EventKind::AlertAcknowledged { timer_id } => {
            let sql = "UPDATE timers SET acked_at = ?2, acked_by = ?3
                       WHERE id = ?1 AND fired_at IS NOT NULL AND acked_at IS NULL";
            let p = params![timer_id.as_bytes(), event.at, event.actor];
            timer_update(tx, event, *timer_id, sql, p)?;
        }
        EventKind::OperatorAdded {
            name,
            role,
            token_sha256,
        } => {
            tx.prepare_cached(
                "INSERT INTO operators (name, role, token_sha256, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role,
                     token_sha256 = excluded.token_sha256, created_at = excluded.created_at",
            )?
            .execute(
                params![name, role.as_str(), token_sha256, event.at],
            )?;
            return Ok(());
        }
        EventKind::OperatorRemoved { name } => {
            tx.prepare_cached("DELETE FROM operators WHERE name = ?1")?
                .execute([name])?;
            return Ok(());
        }
        EventKind::OperatorPasswordSet {
            name,
            password_hash,
        } => {
            let changed = tx
                .prepare_cached("UPDATE operators SET password_hash = ?2 WHERE name = ?1")?
                .execute(params![name, password_hash])?;
            if changed == 0 {
                return Err(StoreError::Corrupt(format!(
                    "password event for unknown operator {name:?}"
                )));
            }
            return Ok(());
        }
        EventKind::OperatorWatchSet { name, queues } => {
            let changed = tx
                .prepare_cached("UPDATE operators SET watched_queues = ?2 WHERE name = ?1")?
                .execute(params![name, json(queues)?])?;
            if changed == 0 {
                return Err(StoreError::Corrupt(format!(
                    "watch event for unknown operator {name:?}"
                )));
            }
            return Ok(());
        }
        EventKind::PeerUpserted { peer } => {
            tx.execute(
                "INSERT INTO peers (site, doc) VALUES (?1, ?2)
                 ON CONFLICT (site) DO UPDATE SET doc = excluded.doc",
                params![peer.site, json(peer)?],
            )?;
            return Ok(());
        }
        EventKind::PeerRemoved { site } => {
            tx.execute("DELETE FROM peers WHERE site = ?1", [site])?;
            return Ok(());
        }
        EventKind::EpochStarted { .. } => {
            // The writer records the new epoch and role in `meta` in this same transaction.
            return Ok(());
        }
        EventKind::Answered { key, .. } => {
            super::idempotency::project(tx, event, seq, key)?;
            return Ok(());
        }
        EventKind::Exchange { record } => {
            return super::exchange::project(tx, event, seq, record);
        }
        EventKind::Review { record } => {
            return super::review::project(tx, event, seq, record);
        }
        EventKind::Attachment { record } => {
            return super::attachment::project(tx, event, seq, record);
        }
        EventKind::FieldsChanged { .. }
        | EventKind::StatusChanged { .. }
        | EventKind::Resolved { .. }
        | EventKind::Closed { .. }
        | EventKind::Reopened { .. } => {}
    }
    // Every ticket event also updates the projected ticket.
    let id = need_ticket(event)?;
    let mut t = match before {
        Some(t) if t.id == id => t.clone(),
        _ => load_ticket(tx, id)?.ok_or_else(|| unknown_ticket(event, id))?,
    };
    let old = t.clone();
    t.apply(&event.kind, event.at);
    save_ticket(tx, &t, Some(&old))?;
    if t.status.is_final() {
        // A closed or cancelled ticket's pending timers are cancelled with it: none fires.
        tx.prepare_cached(
            "UPDATE timers SET cancelled_at = ?2
             WHERE ticket_id = ?1 AND fired_at IS NULL AND cancelled_at IS NULL",
        )?
        .execute(params![id.as_bytes(), event.at])?;
    }
    Ok(())
}

/// Runs one timer update that must change exactly the named timer: an event about a timer
/// that does not exist (or is not in the state it needs) is a shipping bug, refused loudly.
fn timer_update(
    tx: &rusqlite::Connection,
    event: &Event,
    timer_id: Uuid,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<(), StoreError> {
    if tx.prepare_cached(sql)?.execute(params)? != 1 {
        return Err(ApplyError::UnknownTimer {
            id: event.id,
            kind: event.kind.name(),
            timer: timer_id,
            ticket: need_ticket(event)?,
        }
        .into());
    }
    Ok(())
}

/// The columns [`event_from_row`] reads, in order, followed by the local log position.
pub(crate) const EVENT_COLUMNS: &str =
    "id, origin_site, origin_node, epoch, origin_seq, ticket_id, at, actor, body, seq";

/// How many columns [`EVENT_COLUMNS`] selects: a query may add its own after them.
pub(crate) const EVENT_COLUMN_COUNT: usize = 10;

/// Reads an event from a row selected with [`EVENT_COLUMNS`]: (local log position, event).
pub(crate) fn event_from_row(r: &rusqlite::Row) -> rusqlite::Result<(i64, Event)> {
    let body: String = r.get(8)?;
    let kind = serde_json::from_str(&body).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let event = Event {
        id: r.get(0)?,
        origin_site: r.get(1)?,
        origin_node: r.get(2)?,
        epoch: r.get::<_, i64>(3)? as u64,
        seq: r.get::<_, i64>(4)? as u64,
        ticket: r.get(5)?,
        at: r.get(6)?,
        actor: r.get(7)?,
        kind,
    };
    Ok((r.get(9)?, event))
}
