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
use crate::wire::repl::{RowDigest, StateDigest, TableDigest};

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

/// A state table: the query that reads it in its canonical order, and which columns name a row
/// for people (after `label`).
struct Table {
    name: &'static str,
    sql: &'static str,
    label: &'static str,
    key: &'static [usize],
}

/// The state tables, each with the query that reads it in its canonical order. Every column is
/// logical state; positions (`event_seq`) are site positions, the same on every node.
const TABLES: &[Table] = &[
    Table {
        name: "tickets",
        sql: "SELECT id, number, status, priority, severity, queue, owner, type, subject,
                created_at, updated_at, notes, doc FROM tickets ORDER BY number",
        label: "ticket #",
        key: &[1],
    },
    Table {
        name: "notes",
        sql: "SELECT id, ticket_id, event_seq, author, at, happened_at, shared, text
         FROM notes ORDER BY event_seq, id",
        label: "note ",
        key: &[0],
    },
    Table {
        name: "links",
        sql: "SELECT from_id, kind, to_id, at FROM links ORDER BY from_id, kind, to_id",
        label: "link ",
        key: &[0, 1, 2],
    },
    Table {
        name: "timers",
        sql: "SELECT id, ticket_id, due_at, text, set_by, fired_at, cancelled_at, acked_at, acked_by
         FROM timers ORDER BY id",
        label: "timer ",
        key: &[0],
    },
    Table {
        name: "operators",
        sql: "SELECT name, role, token_sha256, created_at, password_hash, watched_queues
         FROM operators ORDER BY name",
        label: "operator ",
        key: &[0],
    },
    Table {
        name: "peers",
        sql: "SELECT site, doc FROM peers ORDER BY site",
        label: "peer ",
        key: &[0],
    },
    Table {
        name: "referrals",
        sql: "SELECT id, side, peer, ticket_id, state, updated_at, doc FROM referrals ORDER BY id",
        label: "referral ",
        key: &[0],
    },
    Table {
        name: "exchange_outbox",
        sql: "SELECT peer, seq, id, epoch, referral, position, body FROM exchange_outbox
         ORDER BY peer, seq",
        label: "outbox message ",
        key: &[0, 1],
    },
    Table {
        name: "exchange_edges",
        sql: "SELECT peer, out_last, out_acked, in_applied, in_epoch FROM exchange_edges ORDER BY peer",
        label: "exchange edge ",
        key: &[0],
    },
    Table {
        name: "review_items",
        sql: "SELECT number, id, position, epoch, node, at, actor, ticket_id, kind, body,
                queued_seq, state, decided_by, decided_at, outcome, new_ticket
         FROM review_items ORDER BY number",
        label: "review item ",
        key: &[0],
    },
    Table {
        name: "idempotency",
        sql: "SELECT key, at, event_seq, response, request_sha256 FROM idempotency
         WHERE at >= ?1 ORDER BY key",
        label: "idempotency record ",
        key: &[0],
    },
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

/// The position, the head event, the digest of the state and FTS5's `integrity-check` of the
/// search indexes, all of one state: read on a connection of its own, opened here, in one
/// write transaction (FTS5's check takes the write lock), so nothing moves between the digest
/// and the check. `quick_check` ([`quick_check`]) is filled in by `Store::verify`.
///
/// The writer calls this between batches ([`super::WriteOp::Verify`]), after indexing every
/// note, so the index is checked against exactly the notes it should hold. (Run inside a batch,
/// after notes of the same batch that the indexer had not reached yet, the check compared the
/// index with rows it could not hold yet and called a sound index "malformed".) A fresh
/// connection, because on a long-lived one SQLite 3.50's FTS5 checks have also reported a sound
/// index as malformed (see [`quick_check`]).
pub fn digest_and_search_index(path: &std::path::Path) -> Result<Verification, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let checked = (|| {
        let (head, state) = digest_in_snapshot(&conn)?;
        let mut v = verification(head, &state);
        v.search_index = search_index_check(&conn);
        Ok(v)
    })();
    // The check wrote nothing; the transaction only held the state still.
    let _ = conn.execute_batch("ROLLBACK");
    checked
}

/// FTS5's `integrity-check` of both search indexes against their tables: `ok`, or the first
/// index's name and what FTS5 said.
fn search_index_check(conn: &Connection) -> String {
    for table in ["ticket_fts", "note_fts"] {
        let sql = format!("INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)");
        if let Err(e) = conn.execute(&sql, []) {
            return format!("{table}: {e}");
        }
    }
    "ok".into()
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

/// The log's last event: position, id, epoch, time.
type Head = Option<(i64, Uuid, i64, Millis)>;

fn head(conn: &Connection) -> Result<Head, StoreError> {
    Ok(conn
        .query_row(
            "SELECT seq, id, epoch, at FROM events ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

/// Calls `each(index, row)` for every row of `table` in its canonical order until it says stop.
fn scan(
    conn: &Connection,
    table: &Table,
    head_at: Millis,
    mut each: impl FnMut(u64, &rusqlite::Row<'_>) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(table.sql)?;
    let mut rows = if stmt.parameter_count() == 1 {
        stmt.query([live_since(head_at)])?
    } else {
        stmt.query([])?
    };
    let mut i = 0;
    while let Some(row) = rows.next()? {
        if !each(i, row)? {
            break;
        }
        i += 1;
    }
    Ok(())
}

fn hash_row(d: &mut ring::digest::Context, row: &rusqlite::Row<'_>) -> Result<(), StoreError> {
    for i in 0..row.as_ref().column_count() {
        hash_value(d, row.get_ref(i)?);
    }
    Ok(())
}

fn finish(d: ring::digest::Context) -> [u8; 32] {
    d.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// The digest of the state and of each table, in one pass: the whole digest is SHA-256 over
/// each table's name, rows and row count (as `ttx verify` has always shown it); each table's
/// own digest is the same over that table alone.
fn digest_in_snapshot(conn: &Connection) -> Result<(Head, StateDigest), StoreError> {
    let head = head(conn)?;
    let head_at = head.map(|h| h.3).unwrap_or(0);
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    let mut tables = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let mut own = ring::digest::Context::new(&ring::digest::SHA256);
        d.update(table.name.as_bytes());
        own.update(table.name.as_bytes());
        let mut count: u64 = 0;
        scan(conn, table, head_at, |_, row| {
            for i in 0..row.as_ref().column_count() {
                let v = row.get_ref(i)?;
                hash_value(&mut d, v);
                hash_value(&mut own, v);
            }
            count += 1;
            Ok(true)
        })?;
        d.update(&count.to_le_bytes());
        own.update(&count.to_le_bytes());
        tables.push(TableDigest {
            name: table.name.to_string(),
            rows: count,
            sha256: finish(own),
        });
    }
    let state = StateDigest {
        position: head.map(|h| h.0 as u64).unwrap_or(0),
        head_id: head.map(|h| *h.1.as_bytes()).unwrap_or_default(),
        head_epoch: head.map(|h| h.2 as u64).unwrap_or(0),
        digest: finish(d),
        tables,
    };
    Ok((head, state))
}

fn verification(head: Head, state: &StateDigest) -> Verification {
    Verification {
        position: head.map(|h| h.0).unwrap_or(0),
        head_id: head.map(|h| h.1),
        head_epoch: state.head_epoch,
        digest: hex::encode(state.digest),
        quick_check: String::new(),
        search_index: String::new(),
    }
}

/// The digest of the state at the head, per table too, read in one read transaction.
pub fn state_digest(conn: &Connection) -> Result<StateDigest, StoreError> {
    in_read_tx(conn, |c| Ok(digest_in_snapshot(c)?.1))
}

/// Why a slice of a table cannot be read at the position asked for.
fn at_position(conn: &Connection, position: u64) -> Result<Millis, StoreError> {
    let head = head(conn)?;
    let now = head.map(|h| h.0 as u64).unwrap_or(0);
    if now != position {
        return Err(StoreError::Stale(format!(
            "the state moved: position {now}, not {position}"
        )));
    }
    Ok(head.map(|h| h.3).unwrap_or(0))
}

fn table(index: u32) -> Result<&'static Table, StoreError> {
    TABLES
        .get(index as usize)
        .ok_or_else(|| StoreError::Stale(format!("no state table number {index}")))
}

/// The digests of `parts` consecutive slices of the rows `[lo, hi)` of table number `index`,
/// at `position` (refused if the head is elsewhere). Slice `j` holds rows
/// `lo + (hi - lo) * j / parts` up to (not including) `lo + (hi - lo) * (j + 1) / parts`.
pub fn range_digests(
    conn: &Connection,
    position: u64,
    index: u32,
    lo: u64,
    hi: u64,
    parts: u32,
) -> Result<Vec<[u8; 32]>, StoreError> {
    let table = table(index)?;
    let parts = parts.max(1) as u64;
    in_read_tx(conn, |c| {
        let head_at = at_position(c, position)?;
        let mut ctx: Vec<_> = (0..parts)
            .map(|_| ring::digest::Context::new(&ring::digest::SHA256))
            .collect();
        let span = hi.saturating_sub(lo);
        // Slice j ends (exclusive) at ends[j].
        let ends: Vec<u64> = (1..=parts).map(|j| lo + span * j / parts).collect();
        let mut part = 0;
        scan(c, table, head_at, |i, row| {
            if i >= hi {
                return Ok(false);
            }
            if i >= lo {
                while i >= ends[part] {
                    part += 1;
                }
                hash_row(&mut ctx[part], row)?;
            }
            Ok(true)
        })?;
        Ok(ctx.into_iter().map(finish).collect())
    })
}

/// Each row of `[lo, hi)` of table number `index` at `position`: what names it and its digest.
pub fn row_digests(
    conn: &Connection,
    position: u64,
    index: u32,
    lo: u64,
    hi: u64,
) -> Result<Vec<RowDigest>, StoreError> {
    let table = table(index)?;
    in_read_tx(conn, |c| {
        let head_at = at_position(c, position)?;
        let mut out = Vec::new();
        scan(c, table, head_at, |i, row| {
            if i >= hi {
                return Ok(false);
            }
            if i >= lo {
                let mut d = ring::digest::Context::new(&ring::digest::SHA256);
                hash_row(&mut d, row)?;
                out.push(RowDigest {
                    key: row_key(table, row)?,
                    sha256: finish(d),
                });
            }
            Ok(true)
        })?;
        Ok(out)
    })
}

/// Longest key shown for a row.
const KEY_CHARS: usize = 200;

fn row_key(table: &Table, row: &rusqlite::Row<'_>) -> Result<String, StoreError> {
    let mut parts = Vec::with_capacity(table.key.len());
    for &i in table.key {
        parts.push(match row.get_ref(i)? {
            ValueRef::Null => "null".to_string(),
            ValueRef::Integer(n) => n.to_string(),
            ValueRef::Real(f) => f.to_string(),
            ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
            ValueRef::Blob(b) => match Uuid::from_slice(b) {
                Ok(u) => u.to_string(),
                Err(_) => hex::encode(b),
            },
        });
    }
    let key: String = format!("{}{}", table.label, parts.join(" "))
        .chars()
        .take(KEY_CHARS)
        .collect();
    Ok(key)
}

fn in_read_tx<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    conn.execute_batch("BEGIN")?;
    let out = f(conn);
    let _ = conn.execute_batch("COMMIT");
    out
}
