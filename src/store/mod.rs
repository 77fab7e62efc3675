//! The store: SQLite in WAL mode, one writer thread, a pool of read connections.
//!
//! - [`schema`]: tables and versioned migrations.
//! - [`apply`]: the one applier — appends an event to the log and updates the projections in
//!   the same transaction. Local writes and replicated events both go through it.
//! - [`writer`]: the writer thread: takes write requests from a bounded queue, decides their
//!   events, and commits many requests in one transaction (group commit) before answering.
//! - [`snapshot`]: consistent copies of the store (`VACUUM INTO`), read in chunks and received
//!   into place only when whole and verified, for cloning a standby.
//! - [`exchange`]: the referral exchange's tables (referrals, the per-peer outbox and marks),
//!   projected from the log's exchange records, and their reads.
//! - [`facts`]: what the ticket rules need beyond the ticket (timers, dependencies, operators).
//! - [`note_index`]: the full-text index of note text, written in batches after the commits.
//! - [`query`]: reads (show, list, search, alerts, counts) on the read pool.
//! - [`site_log`]: the node's place in its site's log: head position, counters, role, epoch.
//! - [`ship`]: events as shipping envelopes, and the strict checks a shipped event passes.
//! - [`idempotency`]: idempotency keys and answers as events of the log.
//! - [`review`]: the review list of a deposed primary's unshipped events, and its reads.
//! - [`spool`]: a standby's receipt spool: shipped batches durable on arrival, applied behind.
//! - [`verify`]: the site position, a digest of the logical state, and the integrity checks.

pub mod apply;
pub mod attachment;
pub mod exchange;
pub mod facts;
pub mod idempotency;
pub mod note_index;
pub mod query;
pub mod reader;
pub mod review;
pub mod schema;
pub mod ship;
pub mod site_log;
pub mod snapshot;
pub mod spool;
pub mod verify;
pub mod writer;

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::config::{StoreSection, Synchronous};
use crate::model::command::CommandError;

pub use reader::ReadPool;
pub use writer::{Idempotency, InboundMessage, WriteOp, WriteOutcome, WriteRequest, Writer};

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
    /// A write this node's role does not take (a standby or fenced node, a second promotion).
    #[error(transparent)]
    NotPrimary(#[from] crate::model::role::RoleError),
    /// The primary names a witness and does not hold its lease now: it takes no write until a
    /// renewal is granted (the witness may be promoting the standby).
    #[error("lost the witness's lease: not taking writes until it is renewed")]
    NoLease,
    /// Shipped events refused (another site, out of order, a lower epoch, a missing ticket...).
    #[error("shipped events refused: {0}")]
    Apply(#[from] apply::ApplyError),
    /// The standby's receipt spool could not be read or written.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
    /// A read asked for the state at a position the store is no longer (or not yet) at, or
    /// for a part of the state that does not exist (comparing two nodes).
    #[error("{0}")]
    Stale(String),
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
    /// The receipt spool beside the database file (used while the node is a standby).
    pub spool: std::sync::Arc<spool::Spool>,
    /// The database file.
    path: std::sync::Arc<std::path::PathBuf>,
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
        let spool = std::sync::Arc::new(spool::Spool::beside(path));
        let writer = Writer::start(conn, stamp, cfg.clone(), limits.clone(), spool.clone())?;
        let reader = ReadPool::open(path, cfg)?;
        Ok(Store {
            writer,
            reader,
            spool,
            path: std::sync::Arc::new(path.to_path_buf()),
        })
    }

    /// `ttx verify`: position, digest and the FTS5 check of one state (on the writer, between
    /// batches: [`WriteOp::Verify`]), then `quick_check` on a connection of its own.
    pub async fn verify(&self) -> Result<verify::Verification, StoreError> {
        let mut v = verified(self.writer.write(verify_request()).await?)?;
        let path = self.path.clone();
        v.quick_check = tokio::task::spawn_blocking(move || verify::quick_check(&path))
            .await
            .map_err(|_| StoreError::Closed)??;
        Ok(v)
    }

    /// [`Self::verify`], blocking the calling thread (tools and tests).
    pub fn verify_blocking(&self) -> Result<verify::Verification, StoreError> {
        let mut v = verified(self.writer.write_blocking(verify_request())?)?;
        v.quick_check = verify::quick_check(&self.path)?;
        Ok(v)
    }

    /// Full-text search ([`query::search`]) once the index holds every note committed before
    /// the call ([`Writer::search_index_ready`]).
    pub async fn search(
        &self,
        text: String,
        limit: u32,
    ) -> Result<Vec<query::SearchHit>, StoreError> {
        self.writer.search_index_ready().await;
        self.reader
            .read(move |c| query::search(c, &text, limit))
            .await
    }

    /// [`Self::search`], blocking the calling thread (tools and tests).
    pub fn search_blocking(
        &self,
        text: &str,
        limit: u32,
    ) -> Result<Vec<query::SearchHit>, StoreError> {
        self.writer.search_index_ready_blocking();
        self.reader.read_blocking(|c| query::search(c, text, limit))
    }

    /// Writes a consistent copy of the store to the new file `dest` ([`snapshot::take`]: `VACUUM
    /// INTO` on a read snapshot, so writes go on meanwhile): what a standby is made from, with
    /// [`site_log::make_standby`]. Returns the copy's site position.
    pub fn snapshot_into(&self, dest: &Path) -> Result<i64, StoreError> {
        Ok(self.snapshot(dest)?.1.position as i64)
    }

    /// [`Self::snapshot_into`] with the copy's length and SHA-256 and what it holds (site,
    /// position, epoch), for streaming it to a new standby. Blocking: call it off the runtime.
    pub fn snapshot(
        &self,
        dest: &Path,
    ) -> Result<(snapshot::Snapshot, site_log::Holds), StoreError> {
        let snap =
            snapshot::take(&self.path, dest).map_err(|e| StoreError::Schema(e.to_string()))?;
        let copy = Connection::open_with_flags(dest, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let holds = site_log::holds(&copy)?;
        Ok((snap, holds))
    }

    /// The directory the store file is in (the node's data dir).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }
}

fn verify_request() -> WriteRequest {
    WriteRequest {
        actor: "system".into(),
        idempotency: None,
        op: WriteOp::Verify,
    }
}

fn verified(out: WriteOutcome) -> Result<verify::Verification, StoreError> {
    match out {
        WriteOutcome::Verified(v) => Ok(*v),
        other => Err(StoreError::Corrupt(format!(
            "unexpected answer to a verification: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod exchange_tests;
#[cfg(test)]
mod site_tests;
#[cfg(test)]
pub(crate) mod tests;

/// A status column reads back as a [`Status`]; anything else is a corrupt row, not a guess.
impl rusqlite::types::FromSql for crate::model::lifecycle::Status {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: String| rusqlite::types::FromSqlError::Other(e.into()))
    }
}
