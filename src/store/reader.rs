//! The read pool: read-only connections, so a long write never blocks a list.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::{open_connection, StoreError};
use crate::config::StoreSection;

/// A fixed set of read-only connections shared by the API handlers.
#[derive(Clone)]
pub struct ReadPool {
    conns: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    /// Opens `cfg.read_connections` read-only connections to the store at `path`.
    pub fn open(path: &Path, cfg: &StoreSection) -> Result<Self, StoreError> {
        let conns = (0..cfg.read_connections)
            .map(|_| open_connection(path, cfg, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(conns.len())),
            conns: Arc::new(Mutex::new(conns)),
        })
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = self
            .conns
            .lock()
            .map_err(|_| StoreError::Closed)?
            .pop()
            .ok_or(StoreError::Closed)?;
        let out = f(&conn);
        if let Ok(mut pool) = self.conns.lock() {
            pool.push(conn);
        }
        out
    }

    /// Runs `f` on a read connection off the async runtime.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            pool.with_conn(f)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection, blocking the calling thread (tools and benchmarks).
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _permit = loop {
            match self.permits.try_acquire() {
                Ok(p) => break p,
                Err(tokio::sync::TryAcquireError::Closed) => return Err(StoreError::Closed),
                Err(_) => std::thread::yield_now(),
            }
        };
        self.with_conn(f)
    }
}
