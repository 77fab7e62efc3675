//! Attachments in the store: the projection of attachment events (chunks, then the attachment
//! once its bytes are checked) and the reads of the API, the CLI and the console.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::model::attachment::{sha256_hex, AttachmentMeta, AttachmentRecord};
use crate::model::command::CommandError;
use crate::model::event::Event;

/// Projects one attachment event. A chunk must start where the attachment's chunks so far end;
/// the attachment must name exactly the bytes its chunks hold (length and SHA-256): anything
/// else is a bug of the writing node, refused (the whole transaction with it).
pub(crate) fn project(
    tx: &Connection,
    event: &Event,
    position: i64,
    record: &AttachmentRecord,
) -> Result<(), StoreError> {
    let bad = |why: String| StoreError::Corrupt(format!("attachment event {}: {why}", event.id));
    match record {
        AttachmentRecord::Chunk {
            attachment_id,
            offset,
            data,
        } => {
            let have = written_len(tx, *attachment_id)?;
            if have != *offset {
                return Err(bad(format!(
                    "chunk at offset {offset}, but {have} bytes were written"
                )));
            }
            tx.prepare_cached(
                r#"INSERT INTO attachment_chunks (attachment_id, "offset", data) VALUES (?1, ?2, ?3)"#,
            )?
            .execute(params![attachment_id.as_bytes(), *offset as i64, data])?;
        }
        AttachmentRecord::Receiving {
            attachment_id,
            peer,
            referral,
        } => {
            tx.prepare_cached(
                "INSERT INTO attachment_inbound (attachment_id, peer, referral) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![attachment_id.as_bytes(), peer, referral.as_bytes()])?;
        }
        AttachmentRecord::Discarded { attachment_id } => {
            tx.prepare_cached("DELETE FROM attachment_chunks WHERE attachment_id = ?1")?
                .execute([attachment_id.as_bytes()])?;
            received(tx, *attachment_id)?;
        }
        AttachmentRecord::Added(m) => {
            let ticket = event
                .ticket
                .ok_or_else(|| bad("an attachment names no ticket".into()))?;
            let bytes = chunks(tx, m.attachment_id)?;
            if bytes.len() as u64 != m.size || sha256_hex(&bytes) != m.sha256 {
                return Err(bad(format!(
                    "its chunks hold {} bytes that do not match size {} and sha256 {}",
                    bytes.len(),
                    m.size,
                    m.sha256
                )));
            }
            let changed = tx
                .prepare_cached(
                    "UPDATE tickets SET updated_at = max(updated_at, ?2) WHERE id = ?1",
                )?
                .execute(params![ticket.as_bytes(), event.at])?;
            if changed == 0 {
                return Err(bad(format!("no ticket {ticket}")));
            }
            tx.prepare_cached(
                "INSERT INTO attachments
                 (id, ticket_id, event_seq, name, size, sha256, shared, author, at, origin_site, origin_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                m.attachment_id.as_bytes(),
                ticket.as_bytes(),
                position,
                m.name,
                m.size as i64,
                m.sha256,
                m.shared,
                event.actor,
                event.at,
                m.origin_site,
                m.origin_id.as_bytes(),
            ])?;
            received(tx, m.attachment_id)?;
        }
    }
    Ok(())
}

/// How many bytes of attachment `id` its chunks hold so far.
pub(crate) fn written_len(tx: &Connection, id: Uuid) -> Result<u64, StoreError> {
    let n: i64 = tx
        .prepare_cached(
            "SELECT COALESCE(SUM(length(data)), 0) FROM attachment_chunks WHERE attachment_id = ?1",
        )?
        .query_row([id.as_bytes()], |r| r.get(0))?;
    Ok(n as u64)
}

/// Attachment `id` is no longer on its way from a partner (added or discarded).
fn received(tx: &Connection, id: Uuid) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM attachment_inbound WHERE attachment_id = ?1")?
        .execute([id.as_bytes()])?;
    Ok(())
}

/// The bytes held of the attachments partner `peer` has started and not finished.
pub(crate) fn partial_bytes_of_peer(conn: &Connection, peer: &str) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(length(c.data)), 0)
             FROM attachment_inbound i JOIN attachment_chunks c USING (attachment_id)
             WHERE i.peer = ?1",
        )?
        .query_row([peer], |r| r.get(0))?;
    Ok(n as u64)
}

/// The attachments on their way in on `referral` and not finished.
pub(crate) fn partials_of_referral(
    conn: &Connection,
    referral: Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT attachment_id FROM attachment_inbound WHERE referral = ?1")?;
    let ids = stmt
        .query_map([referral.as_bytes()], |r| r.get(0))?
        .collect::<Result<Vec<Uuid>, _>>()?;
    Ok(ids)
}

/// The bytes of attachment `id`'s chunks, in order.
pub(crate) fn chunks(conn: &Connection, id: Uuid) -> Result<Vec<u8>, StoreError> {
    let mut stmt = conn.prepare_cached(
        r#"SELECT data FROM attachment_chunks WHERE attachment_id = ?1 ORDER BY "offset""#,
    )?;
    let mut rows = stmt.query([id.as_bytes()])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let part: Vec<u8> = row.get(0)?;
        out.extend_from_slice(&part);
    }
    Ok(out)
}

/// An attachment as `ttx attachments N`, `ttx show N` and the API list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRow {
    /// Its id (what `ttx attachment get` takes).
    pub id: Uuid,
    /// The ticket's number.
    pub ticket: i64,
    /// File name.
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Shared with partners (false: internal).
    pub shared: bool,
    /// Who attached it (an operator, or the partner's `[site] author`).
    pub author: String,
    /// When (unix ms).
    pub at: i64,
    /// The site where it was first attached.
    pub origin_site: String,
}

const ROW_COLUMNS: &str =
    "a.id, t.number, a.name, a.size, a.sha256, a.shared, a.author, a.at, a.origin_site";

fn row(r: &rusqlite::Row) -> rusqlite::Result<AttachmentRow> {
    Ok(AttachmentRow {
        id: r.get(0)?,
        ticket: r.get(1)?,
        name: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        shared: r.get(5)?,
        author: r.get(6)?,
        at: r.get(7)?,
        origin_site: r.get(8)?,
    })
}

/// The attachments of ticket `number`, oldest first.
pub fn list(conn: &Connection, number: i64) -> Result<Vec<AttachmentRow>, StoreError> {
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM tickets WHERE number = ?1")?
        .query_row([number], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Err(super::query::no_such_ticket(number));
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM attachments a JOIN tickets t ON t.id = a.ticket_id
         WHERE t.number = ?1 ORDER BY a.event_seq"
    ))?;
    let rows = stmt.query_map([number], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Attachment `id` and its bytes.
pub fn get(conn: &Connection, id: Uuid) -> Result<(AttachmentRow, Vec<u8>), StoreError> {
    let meta = conn
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM attachments a JOIN tickets t ON t.id = a.ticket_id
             WHERE a.id = ?1"
        ))?
        .query_row([id.as_bytes()], row)
        .optional()?
        .ok_or_else(|| CommandError::NotFound(format!("no attachment {id}")))?;
    let bytes = chunks(conn, id)?;
    Ok((meta, bytes))
}

/// The metadata an attachment row was added with (what a partner is told about it).
pub fn meta(conn: &Connection, id: Uuid) -> Result<Option<AttachmentMeta>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT name, size, sha256, shared, origin_site, origin_id FROM attachments WHERE id = ?1",
        )?
        .query_row([id.as_bytes()], |r| {
            Ok(AttachmentMeta {
                attachment_id: id,
                name: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                sha256: r.get(2)?,
                shared: r.get(3)?,
                origin_site: r.get(4)?,
                origin_id: r.get(5)?,
            })
        })
        .optional()?)
}
