//! The store: SQLite in WAL mode, one writer thread, a pool of read connections.
//!
//! - [`schema`]: tables and versioned migrations.
//! - [`apply`]: the one applier — appends an event to the log and updates the projections in
//!   the same transaction. Local writes and replicated events both go through it.
//! - [`writer`]: the writer thread: takes write requests from a bounded queue, decides their
//!   events, and commits many requests in one transaction (group commit) before answering.
//! - [`snapshot`]: consistent copies of the store (`VACUUM INTO`), read in chunks and received
//!   into place only when whole and verified, for cloning a standby.
//! - [`facts`]: what the ticket rules need beyond the ticket (timers, dependencies, operators).
//! - [`query`]: reads (show, list, search, alerts, counts) on the read pool.

pub mod apply;
pub mod facts;
pub mod query;
pub mod reader;
pub mod schema;
pub mod snapshot;
pub mod writer;

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::config::{StoreSection, Synchronous};
use crate::model::command::CommandError;

pub use reader::ReadPool;
pub use writer::{Idempotency, WriteOp, WriteOutcome, WriteRequest, Writer};

/// Errors of the store layer. SQLite's own text stays inside (logged), never sent to peers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The command was refused or invalid; the message is for the operator.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An event or projection could not be (de)serialized.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The schema is from a newer build, or the store belongs to another site.
    #[error("{0}")]
    Schema(String),
    /// The writer thread is gone (the node is shutting down).
    #[error("the store is shut down")]
    Closed,
}

impl StoreError {
    /// Whether the error is the operator's (invalid input, refusal, not found), not the node's.
    pub fn is_user_error(&self) -> bool {
        matches!(self, StoreError::Command(_))
    }
}

/// Opens a connection with the pragmas every connection of the store uses.
pub(crate) fn open_connection(
    path: &Path,
    cfg: &StoreSection,
    read_only: bool,
) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if !read_only {
        conn.pragma_update(None, "journal_mode", "wal")?;
    }
    let sync = match cfg.synchronous {
        Synchronous::Full => "full",
        Synchronous::Normal => "normal",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "cache_size", -8000)?;
    conn.pragma_update(None, "temp_store", "memory")?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

/// The store of one node: the writer and the read pool over one database file.
#[derive(Clone)]
pub struct Store {
    /// Sends write requests to the writer thread.
    pub writer: Writer,
    /// Read connections.
    pub reader: ReadPool,
}

/// Who this node is, as the writer stamps events.
#[derive(Debug, Clone)]
pub struct NodeStamp {
    /// Site name.
    pub site: String,
    /// Node name.
    pub node: String,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, migrates it, checks it belongs to
    /// `stamp.site`, and starts the writer thread.
    pub fn open(
        path: &Path,
        stamp: NodeStamp,
        cfg: &StoreSection,
        limits: &crate::config::LimitsSection,
    ) -> Result<Store, StoreError> {
        let mut conn = open_connection(path, cfg, false)?;
        schema::migrate(&mut conn)?;
        let writer = Writer::start(conn, stamp, cfg.clone(), limits.clone())?;
        let reader = ReadPool::open(path, cfg)?;
        Ok(Store { writer, reader })
    }
}

#[cfg(test)]
mod tests;

/// A status column reads back as a [`Status`]; anything else is a corrupt row, not a guess.
impl rusqlite::types::FromSql for crate::model::lifecycle::Status {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| rusqlite::types::FromSqlError::Other(e.into()))
    }
}
