//! The per-connection registry: every connection that completed Hello, one entry per
//! connection (never one per identity), with its identity, role, protocol and certificate.
//!
//! Closing a peer (revocation, expiry, deny, remove) closes *all* of that peer's connections and
//! no other; the expiry of each connection is scheduled for its own certificate's `notAfter`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;

use super::event::{Direction, PeerInfo};
use super::handler::PeerCtx;
use super::tls::PeerSide;
use crate::identity::NodeIdentity;
use crate::wire::ErrorCode;

/// One live connection.
pub(crate) struct LiveConn {
    pub(crate) conn: quinn::Connection,
    pub(crate) ctx: Arc<PeerCtx>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) side: PeerSide,
    pub(crate) direction: Direction,
    pub(crate) since: SystemTime,
    pub(crate) last_seen: Arc<AtomicU64>,
    pub(crate) not_after: i64,
}

/// The live connections by connection id.
#[derive(Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, LiveConn>>,
}

/// Milliseconds since the UNIX epoch (0 before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn ms_to_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The QUIC application close code of a stable error code.
pub(crate) fn code_varint(code: ErrorCode) -> quinn::VarInt {
    quinn::VarInt::from_u32(u32::from(code.as_u16()))
}

/// Closes a connection with a stable code and its fixed text (never any detail).
pub(crate) fn close_with(conn: &quinn::Connection, code: ErrorCode) {
    conn.close(code_varint(code), code.text().as_bytes());
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, LiveConn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection.
    pub(crate) fn insert(&self, live: LiveConn) {
        self.lock().insert(live.ctx.connection_id, live);
    }

    /// Forgets a connection (it has closed).
    pub(crate) fn remove(&self, connection_id: u64) {
        self.lock().remove(&connection_id);
    }

    /// How many connections are live.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// How many connections `id` holds.
    pub(crate) fn count_for(&self, id: &NodeIdentity) -> usize {
        self.lock()
            .values()
            .filter(|c| &c.ctx.identity == id)
            .count()
    }

    /// The first live connection of `id` (lowest connection id), with its context.
    pub(crate) fn find(
        &self,
        id: &NodeIdentity,
    ) -> Option<(quinn::Connection, Arc<PeerCtx>, Arc<AtomicU64>)> {
        self.lock()
            .values()
            .filter(|c| &c.ctx.identity == id)
            .min_by_key(|c| c.ctx.connection_id)
            .map(|c| (c.conn.clone(), c.ctx.clone(), c.last_seen.clone()))
    }

    /// Runtime state of every connection, ordered by connection id.
    pub(crate) fn infos(&self) -> Vec<PeerInfo> {
        let mut list: Vec<PeerInfo> = self
            .lock()
            .values()
            .map(|c| PeerInfo {
                connection_id: c.ctx.connection_id,
                identity: c.ctx.identity.clone(),
                spki: c.ctx.spki.clone(),
                version: c.ctx.protocol.alpn(),
                role: c.ctx.role,
                direction: c.direction,
                remote: c.ctx.remote,
                connected_since: c.since,
                last_seen: ms_to_time(c.last_seen.load(Ordering::Relaxed)),
                rtt: c.conn.rtt(),
                cert_not_after: c.not_after,
            })
            .collect();
        list.sort_by_key(|p| p.connection_id);
        list
    }

    /// Closes every connection for which `doomed` says why it must go, with `code`; returns the
    /// closed connections' ids, identities and reasons, and how many were kept.
    pub(crate) fn close_where(
        &self,
        code: ErrorCode,
        mut doomed: impl FnMut(&LiveConn) -> Option<String>,
    ) -> (Vec<(u64, NodeIdentity, String)>, usize) {
        let conns = self.lock();
        let mut closed = Vec::new();
        for c in conns.values() {
            if let Some(reason) = doomed(c) {
                close_with(&c.conn, code);
                closed.push((c.ctx.connection_id, c.ctx.identity.clone(), reason));
            }
        }
        closed.sort_by_key(|c| c.0);
        let kept = conns.len() - closed.len();
        (closed, kept)
    }
}
