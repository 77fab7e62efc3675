//! A standby made from an offline copy of its primary's store: `ttx init` the standby's data
//! dir (its own node name, its own certificate), then [`standby_from_copy`] replaces its empty
//! store with a consistent copy of the primary's and makes it a standby of it. The primary may
//! be running (the copy is one read snapshot, `VACUUM INTO`); the standby must not be.
//!
//! The tests, `ttx bench replication` and the fault campaign's rejoin (a deposed primary made
//! the new primary's standby) set standbys up this way; an operator uses `ttx standby clone`,
//! which does the same over the network.

use std::path::PathBuf;

use crate::config::Config;
use crate::datadir::DataDir;
use crate::store::{site_log, snapshot};

/// Why a standby could not be made from a copy.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// A config could not be read.
    #[error("cannot read the config of {dir}: {reason}")]
    Config {
        /// The data dir.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// The two data dirs are of different sites, or share the node name.
    #[error("{0}")]
    Mismatch(String),
    /// The copy failed.
    #[error("cannot copy the primary's store: {0}")]
    Snapshot(#[from] snapshot::SnapshotError),
    /// The copy could not be made a standby.
    #[error("cannot make the copy a standby: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A file could not be replaced or copied.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn config_of(dir: &DataDir) -> Result<Config, OfflineError> {
    Config::load(&dir.config()).map_err(|e| OfflineError::Config {
        dir: dir.root().to_path_buf(),
        reason: e.to_string(),
    })
}

/// Replaces the (stopped) standby's store with a copy of the primary's, made a standby of the
/// primary under the standby's own node name, and gives it the primary's admin token (the
/// operators are part of the site's state). Returns the copy's site position.
pub fn standby_from_copy(primary: &DataDir, standby: &DataDir) -> Result<i64, OfflineError> {
    let (p, s) = (config_of(primary)?, config_of(standby)?);
    if p.node.site != s.node.site {
        return Err(OfflineError::Mismatch(format!(
            "the standby is of site {:?}, the primary of {:?}",
            s.node.site, p.node.site
        )));
    }
    let db = standby.database();
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(OfflineError::Io {
                    what: format!("remove {}", file.display()),
                    source,
                })
            }
        }
    }
    snapshot::take(&primary.database(), &db)?;
    let conn = rusqlite::Connection::open(&db).map_err(crate::store::StoreError::from)?;
    site_log::make_standby(&conn, &s.node.node, &p.node.node)?;
    let position = conn
        .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
        .map_err(crate::store::StoreError::from)?;
    drop(conn);
    std::fs::copy(primary.admin_token(), standby.admin_token()).map_err(|source| {
        OfflineError::Io {
            what: "copy the primary's admin token".into(),
            source,
        }
    })?;
    Ok(position)
}
