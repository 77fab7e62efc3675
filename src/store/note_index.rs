//! The full-text index of note text (`note_fts`), written in batches after the commits that
//! added the notes rather than inside them.
//!
//! FTS5 flushes its pending terms into a new index segment at every commit, so indexing each
//! note in its own group commit made that flush (and the segment merges it feeds) a per-commit
//! cost of the write path. Notes are indexed instead by [`index_after`]: one statement over every
//! note row after the watermark, in its own transaction, which also moves the watermark
//! (`meta.note_fts_indexed`, the last `notes.rowid` in the index). Note rows are never updated
//! or deleted and their rowids grow in commit order (the writer is the only writer), so the
//! watermark says exactly which notes the index holds; after a crash the writer indexes what is
//! after it before taking writes. When and how often is the writer's policy
//! (`writer::indexer`); readers wait for it (`Writer::search_index_ready`).

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// The `meta` key of the watermark.
const WATERMARK: &str = "note_fts_indexed";

/// The last `notes.rowid` the index holds.
pub fn watermark(conn: &Connection) -> Result<i64, StoreError> {
    let value: Option<String> = conn
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([WATERMARK], |r| r.get(0))
        .optional()?;
    match value {
        None => Ok(0),
        Some(v) => v
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("meta.{WATERMARK} is {v:?}, not a number"))),
    }
}

/// Indexes every note after `after` (the watermark) and moves the watermark, in the caller's
/// transaction. Returns the new watermark and how many notes were indexed.
pub fn index_after(conn: &Connection, after: i64) -> Result<(i64, usize), StoreError> {
    let indexed = conn
        .prepare_cached(
            "INSERT INTO note_fts (rowid, text) SELECT rowid, text FROM notes WHERE rowid > ?1
             ORDER BY rowid",
        )?
        .execute([after])?;
    if indexed == 0 {
        return Ok((after, 0));
    }
    let last: i64 = conn
        .prepare_cached("SELECT MAX(rowid) FROM notes")?
        .query_row([], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([WATERMARK, &last.to_string()])?;
    Ok((last, indexed))
}

/// Brings the index up to date in the caller's transaction (tools and tests that apply events
/// straight onto a connection, without the writer).
pub fn catch_up(conn: &Connection) -> Result<usize, StoreError> {
    Ok(index_after(conn, watermark(conn)?)?.1)
}
