//! Shipping the site's log between its nodes: events as [`Envelope`]s, and the strict checks a
//! shipped event passes before the one applier takes it.
//!
//! A shipped event is refused unless it is of this site, at exactly `head + 1`, next in its
//! writing node's own sequence, not already in the log, of an epoch the node's role accepts, and
//! a body that parses as the kind the envelope names; the projection then refuses events naming
//! a ticket, note or timer that does not exist. Any refusal fails the whole request, so nothing
//! of the batch is applied.

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::apply::{apply_event, ApplyError};
use super::site_log::SiteLog;
use super::StoreError;
use crate::model::event::{Event, EventKind};
use crate::wire::envelope::Envelope;

/// The envelope of the event at `position` whose kind's JSON is `body`.
pub fn envelope_of(position: i64, event: &Event, body: &str) -> Envelope {
    Envelope {
        position: position as u64,
        id: *event.id.as_bytes(),
        origin_site: event.origin_site.clone(),
        origin_node: event.origin_node.clone(),
        epoch: event.epoch,
        origin_seq: event.seq,
        at: event.at,
        actor: event.actor.clone(),
        ticket: event.ticket.map(|t| *t.as_bytes()),
        kind: event.kind.name().to_string(),
        body: body.as_bytes().to_vec(),
    }
}

/// The log after position `after`, in order, at most `limit` envelopes, with the bodies exactly
/// as stored (a standby's catch-up read; no JSON is parsed or written).
pub fn envelopes_after(
    conn: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<Envelope>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, id, origin_site, origin_node, epoch, origin_seq, at, actor, ticket_id, kind, body
         FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![after, limit], |r| {
        let id: Uuid = r.get(1)?;
        let ticket: Option<Uuid> = r.get(8)?;
        Ok(Envelope {
            position: r.get::<_, i64>(0)? as u64,
            id: *id.as_bytes(),
            origin_site: r.get(2)?,
            origin_node: r.get(3)?,
            epoch: r.get::<_, i64>(4)? as u64,
            origin_seq: r.get::<_, i64>(5)? as u64,
            at: r.get(6)?,
            actor: r.get(7)?,
            ticket: ticket.map(|t| *t.as_bytes()),
            kind: r.get(9)?,
            body: r.get::<_, String>(10)?.into_bytes(),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The id and epoch of the event at `position` (the check that a standby's log is a prefix of
/// ours: the same event at its head), or `None` when the log has no such position.
pub fn event_at(conn: &Connection, position: u64) -> Result<Option<([u8; 16], u64)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT id, epoch FROM events WHERE seq = ?1")?
        .query_row([position as i64], |r| {
            let id: Uuid = r.get(0)?;
            Ok((*id.as_bytes(), r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// Whether the log holds the event with this id.
pub fn has_event(conn: &Connection, id: Uuid) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// The log's last position with the id and epoch of the event there (`(0, zeros, 0)` for an
/// empty log): what a standby names when it subscribes.
pub fn tip(conn: &Connection) -> Result<(u64, [u8; 16], u64), StoreError> {
    Ok(conn
        .prepare_cached("SELECT seq, id, epoch FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| {
            let id: Uuid = r.get(1)?;
            Ok((
                r.get::<_, i64>(0)? as u64,
                *id.as_bytes(),
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .optional()?
        .unwrap_or((0, [0; 16], 0)))
}

/// The event an envelope carries, and its body as text; refuses a body that is not JSON of the
/// kind named.
pub fn event_of(env: &Envelope) -> Result<(Event, &str), ApplyError> {
    let id = Uuid::from_bytes(env.id);
    let bad = |why: String| ApplyError::BadBody {
        id,
        kind: env.kind.clone(),
        why,
    };
    let body = std::str::from_utf8(&env.body).map_err(|e| bad(e.to_string()))?;
    let kind: EventKind = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    if kind.name() != env.kind {
        return Err(bad(format!("it holds a {:?} event", kind.name())));
    }
    let event = Event {
        id,
        origin_site: env.origin_site.clone(),
        origin_node: env.origin_node.clone(),
        epoch: env.epoch,
        seq: env.origin_seq,
        at: env.at,
        actor: env.actor.clone(),
        ticket: env.ticket.map(Uuid::from_bytes),
        kind,
    };
    Ok((event, body))
}

/// The checks of a shipped envelope that need no store: of `site`, at `head + 1`. The standby
/// runs them before it spools a batch (and acknowledges it as durable), the applier again.
pub fn check_placement(site: &str, head: u64, env: &Envelope) -> Result<(), ApplyError> {
    let id = Uuid::from_bytes(env.id);
    if env.origin_site != site {
        return Err(ApplyError::ForeignSite {
            id,
            site: env.origin_site.clone(),
            local: site.into(),
        });
    }
    if env.position != head + 1 {
        return Err(ApplyError::OutOfOrder {
            id,
            got: env.position as i64,
            head: head as i64,
        });
    }
    Ok(())
}

/// Checks and applies one shipped envelope at `log.head + 1`, moving the role on when the event
/// carries a higher epoch (recorded in the same transaction). Returns the event's kind.
pub(crate) fn apply_shipped(
    conn: &Connection,
    site: &str,
    log: &mut SiteLog,
    env: &Envelope,
) -> Result<EventKind, StoreError> {
    let (event, body) = event_of(env)?;
    check_placement(site, log.head as u64, env)?;
    let next_role = log
        .role
        .may_apply(event.epoch, &event.origin_node)
        .map_err(|source| ApplyError::Role {
            id: event.id,
            source,
        })?;
    let known: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
        .query_row([event.id.as_bytes()], |r| r.get(0))
        .optional()?;
    if known.is_some() {
        return Err(ApplyError::Duplicate { id: event.id }.into());
    }
    let last: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(origin_seq), 0) FROM events WHERE origin_site = ?1 AND origin_node = ?2",
        )?
        .query_row([&event.origin_site, &event.origin_node], |r| r.get(0))?;
    if event.seq != last as u64 + 1 {
        return Err(ApplyError::OriginSeqGap {
            id: event.id,
            node: event.origin_node,
            got: event.seq,
            expected: last as u64 + 1,
        }
        .into());
    }
    apply_event(conn, env.position as i64, &event, body)?;
    log.head += 1;
    if let Some(role) = next_role {
        tracing::warn!(epoch = role.epoch, role = %role.role, "a shipped event carries a higher epoch");
        log.set_role(conn, role)?;
    }
    Ok(event.kind)
}
