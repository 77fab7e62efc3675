//! `ttx verify`: the site position, a digest of the logical state at that position, and the
//! store's integrity checks, so a primary and its standby can be compared in one call each.
//!
//! The digest is SHA-256 over the rows of every table that is state (tickets, notes, links,
//! timers, operators, peers, referrals, the exchange outbox and marks, live idempotency records), each table in a fixed order, each value
//! with a type tag and a length. Two nodes at the same position have the same digest exactly when
//! their state is the same. Node-local things (the node's name, its role, SQLite's rowids, the FTS
//! index's internals) are not part of it. Idempotency records expired as of the log's last event
//! are left out, so a node that has pruned them and one that has not still agree.

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::idempotency::live_since;
use super::StoreError;
use crate::model::clock::Millis;

/// What `ttx verify` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The site position the digest is of (the log's last position).
    pub position: i64,
    /// The id of the event at that position, if any.
    pub head_id: Option<Uuid>,
    /// The epoch of the event at that position (0 for an empty log).
    pub head_epoch: u64,
    /// SHA-256 (hex) of the logical state at `position`.
    pub digest: String,
    /// `PRAGMA quick_check`: `ok` or its first findings.
    pub quick_check: String,
    /// FTS5 `integrity-check` of the search indexes: `ok` or what it said.
    pub search_index: String,
}

impl Verification {
    /// Whether both checks passed.
    pub fn ok(&self) -> bool {
        self.quick_check == "ok" && self.search_index == "ok"
    }
}

/// The state tables, each with the query that reads it in its canonical order. Every column is
/// logical state; positions (`event_seq`) are site positions, the same on every node.
const TABLES: &[(&str, &str)] = &[
    (
        "tickets",
        "SELECT id, number, status, priority, severity, queue, owner, type, subject,
                created_at, updated_at, notes, doc FROM tickets ORDER BY number",
    ),
    (
        "notes",
        "SELECT id, ticket_id, event_seq, author, at, happened_at, shared, text
         FROM notes ORDER BY event_seq, id",
    ),
    (
        "links",
        "SELECT from_id, kind, to_id, at FROM links ORDER BY from_id, kind, to_id",
    ),
    (
        "timers",
        "SELECT id, ticket_id, due_at, text, set_by, fired_at, cancelled_at, acked_at, acked_by
         FROM timers ORDER BY id",
    ),
    (
        "operators",
        "SELECT name, role, token_sha256, created_at, password_hash, watched_queues
         FROM operators ORDER BY name",
    ),
    ("peers", "SELECT site, doc FROM peers ORDER BY site"),
    (
        "referrals",
        "SELECT id, side, peer, ticket_id, state, updated_at, doc FROM referrals ORDER BY id",
    ),
    (
        "exchange_outbox",
        "SELECT peer, seq, id, epoch, referral, position, body FROM exchange_outbox
         ORDER BY peer, seq",
    ),
    (
        "exchange_edges",
        "SELECT peer, out_last, out_acked, in_applied, in_epoch FROM exchange_edges ORDER BY peer",
    ),
    (
        "idempotency",
        "SELECT key, response, at, request_sha256 FROM idempotency WHERE at >= ?1 ORDER BY key",
    ),
];

fn hash_value(d: &mut ring::digest::Context, v: ValueRef<'_>) {
    let (tag, bytes): (u8, std::borrow::Cow<[u8]>) = match v {
        ValueRef::Null => (0, (&[][..]).into()),
        ValueRef::Integer(i) => (1, i.to_le_bytes().to_vec().into()),
        ValueRef::Real(f) => (2, f.to_le_bytes().to_vec().into()),
        ValueRef::Text(t) => (3, t.into()),
        ValueRef::Blob(b) => (4, b.into()),
    };
    d.update(&[tag]);
    d.update(&(bytes.len() as u64).to_le_bytes());
    d.update(&bytes);
}

/// The position, the head event and the digest of the state, read in one read transaction on
/// `conn`. `quick_check` ([`quick_check`]) and the FTS5 check (which needs the write lock and is
/// run by the writer, [`super::WriteOp::CheckSearchIndex`]) are filled in by `Store::verify`.
pub fn digest(conn: &Connection) -> Result<Verification, StoreError> {
    conn.execute_batch("BEGIN")?;
    let out = digest_in_snapshot(conn);
    let _ = conn.execute_batch("COMMIT");
    out
}

/// `PRAGMA quick_check` on a connection of its own. On a long-lived connection, SQLite 3.50's
/// FTS5 part of the check reported a sound note index as malformed after an automatic merge
/// (FTS5's own `integrity-check` and a fresh connection both found it sound), so the check
/// never runs on a pooled connection.
pub fn quick_check(path: &std::path::Path) -> Result<String, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let quick: Vec<String> = conn
        .prepare("PRAGMA quick_check(10)")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(quick.join("; "))
}

fn digest_in_snapshot(conn: &Connection) -> Result<Verification, StoreError> {
    let head: Option<(i64, Uuid, i64, Millis)> = conn
        .query_row(
            "SELECT seq, id, epoch, at FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let head_at = head.map(|h| h.3).unwrap_or(0);
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    for (table, sql) in TABLES {
        d.update(table.as_bytes());
        let mut stmt = conn.prepare(sql)?;
        let columns = stmt.column_count();
        let mut rows = if stmt.parameter_count() == 1 {
            stmt.query([live_since(head_at)])?
        } else {
            stmt.query([])?
        };
        let mut count: u64 = 0;
        while let Some(row) = rows.next()? {
            for i in 0..columns {
                hash_value(&mut d, row.get_ref(i)?);
            }
            count += 1;
        }
        d.update(&count.to_le_bytes());
    }
    Ok(Verification {
        position: head.map(|h| h.0).unwrap_or(0),
        head_id: head.map(|h| h.1),
        head_epoch: head.map(|h| h.2 as u64).unwrap_or(0),
        digest: hex::encode(d.finish()),
        quick_check: String::new(),
        search_index: String::new(),
    })
}
