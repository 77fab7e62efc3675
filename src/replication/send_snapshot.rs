//! The primary's side of `ttx standby clone`: a consistent snapshot of the store streamed to a
//! new standby over `ttx-repl/1`.
//!
//! The copy is `VACUUM INTO` on a read snapshot ([`Store::snapshot`]), made on a blocking
//! thread while the writer goes on committing; it is never a replay of the log. While it is
//! being made the stream carries `Preparing` every second (so neither side's idle timeout
//! ends it), then a `Header` (the site position the copy holds, its epoch, length and
//! SHA-256), the bytes in chunks of at most [`CHUNK_BYTES`], and `End`. The copy is a file in
//! the data dir (`.snapshot-PID-N.db`) removed once sent or abandoned. Only
//! [`MAX_CONCURRENT`] snapshot runs at a time: another asker is refused with `overloaded`,
//! so standbys cannot fill the primary's disk with copies.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use crate::net::{FramedSend, IncomingStream, NetError, PeerCtx};
use crate::store::{snapshot, Store};
use crate::wire::codec;
use crate::wire::repl::{
    SnapshotAccepted, SnapshotFrame, SnapshotHeader, SnapshotRequest, ToPrimary,
};
use crate::wire::{ErrorCode, Role};

/// The largest chunk of a snapshot on the wire (well within every frame limit).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Snapshots made at the same time by one primary.
pub const MAX_CONCURRENT: usize = 1;
/// How often `Preparing` is sent while the copy is being made.
const PREPARING_EVERY: Duration = Duration::from_secs(1);
/// How long the primary waits for the new standby to read the last bytes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunks read ahead of the network.
const READ_AHEAD: usize = 8;

/// Why sending a snapshot stopped.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("cannot make the snapshot: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot read the snapshot: {0}")]
    Read(#[from] snapshot::SnapshotError),
    #[error("the snapshot of {len} bytes is larger than the {max} bytes the standby takes")]
    TooLarge { len: u64, max: u64 },
}

/// Serves snapshots to new standbys of this site.
pub struct SnapshotSender {
    site: String,
    store: Store,
    slots: Arc<Semaphore>,
    counter: AtomicU64,
}

impl SnapshotSender {
    /// The sender of a node of `site`.
    pub fn new(site: &str, store: Store) -> Self {
        remove_leftovers(store.dir());
        SnapshotSender {
            site: site.to_string(),
            store,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            counter: AtomicU64::new(0),
        }
    }

    /// Answers one snapshot request: refused unless the peer is a node of this site that
    /// declared `Standby` and this node is the primary, or when another snapshot is running.
    pub async fn serve(&self, peer: &PeerCtx, req: SnapshotRequest, incoming: IncomingStream) {
        let role = self.store.writer.role_now();
        let refusal = if peer.role != Role::Standby || peer.identity.site != self.site {
            Some(ErrorCode::NotAuthorized)
        } else if !role.is_primary() {
            Some(ErrorCode::NotPrimary)
        } else {
            None
        };
        if let Some(code) = refusal {
            tracing::warn!(%code, "snapshot request refused");
            incoming.refuse(code).await;
            return;
        }
        let Ok(_permit) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!("snapshot request refused: another snapshot is being sent");
            incoming.refuse(ErrorCode::Overloaded).await;
            return;
        };
        let body = codec::encode(&SnapshotAccepted { epoch: role.epoch }).expect("encodes");
        let stream = match incoming.accept::<SnapshotFrame, ToPrimary>(body).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept the snapshot stream");
                return;
            }
        };
        let (mut send, _recv) = stream.split();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let file = Removed(
            self.store
                .dir()
                .join(format!(".snapshot-{}-{n}.db", std::process::id())),
        );
        let started = Instant::now();
        tracing::info!(
            max_bytes = req.max_bytes,
            "making a snapshot for a new standby"
        );
        match self.send(&mut send, &file.0, req.max_bytes).await {
            Ok(header) => tracing::info!(
                position = header.position,
                bytes = header.len,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "snapshot sent"
            ),
            Err(e) => {
                let code = match &e {
                    SendError::TooLarge { .. } => ErrorCode::FrameTooLarge,
                    SendError::Net(NetError::Wire(w)) => w.code(),
                    _ => ErrorCode::Internal,
                };
                tracing::warn!(error = %e, %code, "snapshot not sent");
                send.reset(code);
            }
        }
    }

    async fn send(
        &self,
        send: &mut FramedSend<SnapshotFrame>,
        path: &Path,
        max_bytes: u64,
    ) -> Result<SnapshotHeader, SendError> {
        let store = self.store.clone();
        let dest = path.to_path_buf();
        let mut making = tokio::task::spawn_blocking(move || store.snapshot(&dest));
        let started = Instant::now();
        let (snap, holds) = loop {
            tokio::select! {
                made = &mut making => break made.map_err(|e| {
                    crate::store::StoreError::Schema(format!("the snapshot task failed: {e}"))
                })??,
                _ = tokio::time::sleep(PREPARING_EVERY) => {
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    if let Err(e) = send.send(&SnapshotFrame::Preparing { elapsed_ms }).await {
                        // Let the copy finish before its file is removed.
                        let _ = making.await;
                        return Err(e.into());
                    }
                }
            }
        };
        if snap.len > max_bytes {
            return Err(SendError::TooLarge {
                len: snap.len,
                max: max_bytes,
            });
        }
        let header = SnapshotHeader {
            epoch: holds.epoch,
            position: holds.position,
            len: snap.len,
            sha256: snap.sha256,
            chunk_bytes: CHUNK_BYTES as u32,
        };
        send.send(&SnapshotFrame::Header(header.clone())).await?;
        let (tx, mut rx) = mpsc::channel(READ_AHEAD);
        let reader = tokio::task::spawn_blocking(move || {
            let chunks = match snapshot::chunks(&snap, CHUNK_BYTES) {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            for chunk in chunks {
                if tx.blocking_send(chunk).is_err() {
                    return;
                }
            }
        });
        while let Some(chunk) = rx.recv().await {
            send.send(&SnapshotFrame::Chunk(chunk?)).await?;
        }
        let _ = reader.await;
        send.send(&SnapshotFrame::End).await?;
        send.finish();
        // The stream is done once the standby has read everything (or gave up).
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, send.flushed()).await;
        Ok(header)
    }
}

/// Removes the copies a killed node left behind (`.snapshot-*.db` in the data dir).
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".snapshot-")
            && (name.ends_with(".db") || name.ends_with(".db-journal"))
        {
            tracing::info!(file = %name, "removing a snapshot left by an earlier run");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A snapshot file, removed when dropped (sent, failed or abandoned).
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let mut journal = self.0.as_os_str().to_owned();
        journal.push("-journal");
        let _ = std::fs::remove_file(journal);
    }
}
