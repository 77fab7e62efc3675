//! Idempotency keys as part of the site's log.
//!
//! A write that carries a key is answered once: its answer is recorded as an `Answered` event
//! after the request's own events, in the same transaction, and the `idempotency` table is the
//! projection of those events: per key its time and the position of its event (the answer and
//! the request's fingerprint are stored once, in the event). Every node of the site applies the
//! same events, so a standby that takes over answers a retry exactly as the old primary would.
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

/// A record as stored: its time, its `answered` event's position, and (only for a record from
/// before migration 16 without an event) the fingerprint and answer.
type Record = (Millis, Option<i64>, Option<String>, Option<String>);

/// Looks the key up as of `now` (expiry first, then the fingerprint).
///
/// The record holds the key, its time and the position of its `answered` event; the
/// fingerprint and the answer are read from that event only when the key is live (a retry),
/// so a fresh key costs one probe of the key's b-tree.
pub(crate) fn lookup(
    conn: &Connection,
    actor: &str,
    idem: &Idempotency,
    now: Millis,
) -> Result<Lookup, StoreError> {
    let stored: Option<Record> = conn
        .prepare_cached(
            "SELECT at, event_seq, request_sha256, response FROM idempotency WHERE key = ?1",
        )?
        .query_row([table_key(actor, &idem.key)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let (fingerprint, response) = match stored {
        None => return Ok(Lookup::New),
        Some((at, ..)) if at <= now - IDEMPOTENCY_TTL_MS => return Ok(Lookup::New),
        Some((_, Some(seq), ..)) => recorded_answer(conn, seq)?,
        Some((_, None, Some(fingerprint), Some(response))) => (fingerprint, response),
        Some((_, None, ..)) => {
            return Err(StoreError::Corrupt(
                "idempotency record with neither an event nor an answer".into(),
            ))
        }
    };
    if fingerprint != idem.fingerprint {
        return Err(CommandError::Refused(
            "this Idempotency-Key was already used for a different request: use a new key".into(),
        )
        .into());
    }
    let mut out: WriteOutcome = serde_json::from_str(&response)
        .map_err(|e| StoreError::Corrupt(format!("idempotency answer: {e}")))?;
    if let WriteOutcome::Ticket(ack) = &mut out {
        ack.replayed = true;
    }
    Ok(Lookup::Replay(out))
}

/// The fingerprint and answer of the `answered` event at position `seq`.
fn recorded_answer(conn: &Connection, seq: i64) -> Result<(String, String), StoreError> {
    let body: String = conn
        .prepare_cached("SELECT body FROM events WHERE seq = ?1 AND kind = 'answered'")?
        .query_row([seq], |r| r.get(0))
        .optional()?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "idempotency record names event {seq}, not an answer"
            ))
        })?;
    match serde_json::from_str(&body) {
        Ok(EventKind::Answered {
            fingerprint,
            answer,
            ..
        }) => Ok((fingerprint, answer)),
        Ok(_) => Err(StoreError::Corrupt(format!("event {seq} is not an answer"))),
        Err(e) => Err(StoreError::Corrupt(format!("answer event {seq}: {e}"))),
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

/// Projects an `Answered` event at position `seq`: the key's record (its time and the event's
/// position; the answer stays in the event), replacing an expired one.
pub(crate) fn project(
    tx: &Connection,
    event: &Event,
    seq: i64,
    key: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO idempotency (key, at, event_seq) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET at = excluded.at, event_seq = excluded.event_seq,
             response = NULL, request_sha256 = NULL",
    )?
    .execute(params![table_key(&event.actor, key), event.at, seq])?;
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
