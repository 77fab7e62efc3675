//! Idempotency keys as part of the site's log.
//!
//! A write that carries a key is answered once: its answer is recorded as an `Answered` event
//! after the request's own events, in the same transaction, and the `idempotency` table is the
//! projection of those events. Every node of the site applies the same events, so a standby that
//! takes over answers a retry exactly as the old primary would have.
//!
//! Rules, in the order they are checked:
//! 1. a record older than [`IDEMPOTENCY_TTL_MS`] (by its event's time) is expired and counts as
//!    absent: the key may be used again, for any request;
//! 2. a live record with another fingerprint refuses the request (the key was used for a
//!    different request);
//! 3. a live record with the same fingerprint is the answer (`replayed: true`), nothing is applied.

use rusqlite::{params, Connection, OptionalExtension};

use super::writer::{Idempotency, WriteOutcome};
use super::StoreError;
use crate::model::clock::Millis;
use crate::model::command::CommandError;
use crate::model::event::{Event, EventKind};

/// How long an idempotency key is remembered, counted from its event's time.
pub const IDEMPOTENCY_TTL_MS: Millis = 24 * 60 * 60 * 1000;

/// The table's key: keys are per operator.
fn table_key(actor: &str, key: &str) -> String {
    format!("{actor}:{key}")
}

/// What the log says about a request's key.
pub(crate) enum Lookup {
    /// Not seen (or expired): run the request.
    New,
    /// Seen with the same request: this is the first answer.
    Replay(WriteOutcome),
}

/// Looks the key up as of `now` (expiry first, then the fingerprint).
pub(crate) fn lookup(
    conn: &Connection,
    actor: &str,
    idem: &Idempotency,
    now: Millis,
) -> Result<Lookup, StoreError> {
    let stored: Option<(String, String, Millis)> = conn
        .prepare_cached("SELECT response, request_sha256, at FROM idempotency WHERE key = ?1")?
        .query_row([table_key(actor, &idem.key)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    match stored {
        None => Ok(Lookup::New),
        Some((_, _, at)) if at <= now - IDEMPOTENCY_TTL_MS => Ok(Lookup::New),
        Some((_, fingerprint, _)) if fingerprint != idem.fingerprint => Err(CommandError::Refused(
            "this Idempotency-Key was already used for a different request: use a new key".into(),
        )
        .into()),
        Some((response, _, _)) => {
            let mut out: WriteOutcome = serde_json::from_str(&response)
                .map_err(|e| StoreError::Corrupt(format!("idempotency answer: {e}")))?;
            if let WriteOutcome::Ticket(ack) = &mut out {
                ack.replayed = true;
            }
            Ok(Lookup::Replay(out))
        }
    }
}

/// The event that records `out` as the answer to the keyed request.
pub(crate) fn answered(idem: &Idempotency, out: &WriteOutcome) -> Result<EventKind, StoreError> {
    Ok(EventKind::Answered {
        key: idem.key.clone(),
        fingerprint: idem.fingerprint.clone(),
        answer: serde_json::to_string(out).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

/// Projects an `Answered` event: the key's record, replacing an expired one.
pub(crate) fn project(
    tx: &Connection,
    event: &Event,
    key: &str,
    fingerprint: &str,
    answer: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO idempotency (key, response, at, request_sha256) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE SET response = excluded.response, at = excluded.at,
             request_sha256 = excluded.request_sha256",
    )?
    .execute(params![
        table_key(&event.actor, key),
        answer,
        event.at,
        fingerprint
    ])?;
    Ok(())
}

/// Records at or after this time are live at a log whose last event was written at `head_at`;
/// older ones are expired on every node, whatever its clock, and are not part of the state.
pub(crate) fn live_since(head_at: Millis) -> Millis {
    head_at - IDEMPOTENCY_TTL_MS + 1
}

/// Deletes records expired as of the log's last event (the same rows on every node, so pruning
/// never makes two nodes' state differ).
pub(crate) fn prune(conn: &Connection) -> Result<usize, StoreError> {
    let head_at: Option<Millis> = conn
        .query_row("SELECT at FROM events ORDER BY seq DESC LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(head_at) = head_at else {
        return Ok(0);
    };
    Ok(conn.execute(
        "DELETE FROM idempotency WHERE at < ?1",
        [live_since(head_at)],
    )?)
}
