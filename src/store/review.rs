//! The review list in the store (migration 14, `review_items`): projected from the log's review
//! records, and read by `ttx review` and the API.
//!
//! One row per original event id of a deposed primary's tail, numbered 1, 2, 3, ... in the
//! order they were queued; `state` is `pending`, `applied` or `discarded`, with who decided,
//! when, and what applying did.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::model::clock::Millis;
use crate::model::event::Event;
use crate::model::review::{ReviewItem, ReviewRecord};

/// Projects one review record at log `position`. Strict like the rest of the applier: an item
/// is queued once, with the next number, and decided once.
pub(crate) fn project(
    tx: &Connection,
    event: &Event,
    position: i64,
    record: &ReviewRecord,
) -> Result<(), StoreError> {
    let bad = |why: String| StoreError::Corrupt(format!("review event {}: {why}", event.id));
    match record {
        ReviewRecord::Queued { number, item } => {
            if *number != next_number(tx)? {
                return Err(bad(format!("item number {number} is not the next one")));
            }
            tx.prepare_cached(
                "INSERT INTO review_items (number, id, position, epoch, node, at, actor,
                     ticket_id, kind, body, queued_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                number,
                item.id,
                item.position as i64,
                item.epoch as i64,
                item.node,
                item.at,
                item.actor,
                item.ticket,
                item.kind,
                item.body,
                position
            ])
            .map_err(|e| bad(format!("cannot queue item {}: {e}", item.id)))?;
        }
        ReviewRecord::Applied {
            number,
            outcome,
            ticket,
        } => decide(tx, event, *number, "applied", Some(outcome), *ticket).map_err(bad)?,
        ReviewRecord::Discarded { number, reason } => {
            decide(tx, event, *number, "discarded", reason.as_ref(), None).map_err(bad)?
        }
    }
    Ok(())
}

fn decide(
    tx: &Connection,
    event: &Event,
    number: i64,
    state: &str,
    outcome: Option<&String>,
    new_ticket: Option<i64>,
) -> Result<(), String> {
    let changed = tx
        .prepare_cached(
            "UPDATE review_items SET state = ?2, decided_by = ?3, decided_at = ?4, outcome = ?5,
                 new_ticket = ?6
             WHERE number = ?1 AND state = 'pending'",
        )
        .and_then(|mut s| {
            s.execute(params![
                number,
                state,
                event.actor,
                event.at,
                outcome,
                new_ticket
            ])
        })
        .map_err(|e| e.to_string())?;
    if changed != 1 {
        return Err(format!("item {number} is not pending"));
    }
    Ok(())
}

/// The number the next queued item gets.
pub(crate) fn next_number(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(number), 0) + 1 FROM review_items",
        [],
        |r| r.get(0),
    )?)
}

/// Whether an item for this original event id is on the list already.
pub(crate) fn has_item(conn: &Connection, id: Uuid) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM review_items WHERE id = ?1")?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// One item of the review list, as `ttx review list|show` and `GET /v1/review` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRow {
    /// The item's number on the list.
    pub number: i64,
    /// `pending`, `applied` or `discarded`.
    pub state: String,
    /// The original event.
    pub item: ReviewItem,
    /// The item's ticket's number on this node, when that ticket is here.
    pub ticket_number: Option<i64>,
    /// The site position of the event that queued it.
    pub queued_seq: i64,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Millis>,
    /// What applying did, or why it was discarded.
    pub outcome: Option<String>,
    /// The ticket applying it wrote to (its number), when it did.
    pub new_ticket: Option<i64>,
}

const COLUMNS: &str = "r.number, r.state, r.id, r.position, r.epoch, r.node, r.at, r.actor,
    r.ticket_id, r.kind, r.body, t.number, r.queued_seq, r.decided_by, r.decided_at, r.outcome,
    r.new_ticket";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReviewRow> {
    Ok(ReviewRow {
        number: r.get(0)?,
        state: r.get(1)?,
        item: ReviewItem {
            id: r.get(2)?,
            position: r.get::<_, i64>(3)? as u64,
            epoch: r.get::<_, i64>(4)? as u64,
            node: r.get(5)?,
            at: r.get(6)?,
            actor: r.get(7)?,
            ticket: r.get(8)?,
            kind: r.get(9)?,
            body: r.get(10)?,
        },
        ticket_number: r.get(11)?,
        queued_seq: r.get(12)?,
        decided_by: r.get(13)?,
        decided_at: r.get(14)?,
        outcome: r.get(15)?,
        new_ticket: r.get(16)?,
    })
}

/// Every item, in the order queued (at most `limit`).
pub fn list(conn: &Connection, limit: u32) -> Result<Vec<ReviewRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM review_items r LEFT JOIN tickets t ON t.id = r.ticket_id
         ORDER BY r.number LIMIT ?1"
    );
    let rows = conn
        .prepare(&sql)?
        .query_map([limit], row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Item `number`, if there is one.
pub fn get(conn: &Connection, number: i64) -> Result<Option<ReviewRow>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM review_items r LEFT JOIN tickets t ON t.id = r.ticket_id
         WHERE r.number = ?1"
    );
    Ok(conn.prepare(&sql)?.query_row([number], row).optional()?)
}

/// The ticket (its id here) an applied `created` item of the tail opened, for the tail's
/// ticket id `original`: a later item about that ticket goes to the new one.
pub(crate) fn recreated_ticket(
    conn: &Connection,
    original: Uuid,
) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT new_ticket FROM review_items
             WHERE ticket_id = ?1 AND kind = 'created' AND state = 'applied'",
        )?
        .query_row([original], |r| r.get(0))
        .optional()?
        .flatten())
}
