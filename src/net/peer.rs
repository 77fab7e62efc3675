//! A connection after Hello ([`Peer`]): requests and pings it sends, and the serving of the
//! streams the other side opens on it (one request per stream, under the handler deadline).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::endpoint::Inner;
use super::event::{EndpointEvent, PingResult};
use super::handler::{PeerCtx, Route};
use super::registry::{close_with, code_varint, now_ms};
use super::stream::{read_frame, read_only_frame, write_frame};
use super::NetError;
use crate::wire::{ClientFrame, ErrorCode, Ping, Request, ServerFrame};

/// A connection to a peer (either direction) after Hello/HelloAck. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    pub(crate) inner: Arc<Inner>,
    pub(crate) conn: quinn::Connection,
    pub(crate) ctx: Arc<PeerCtx>,
    pub(crate) last_seen: Arc<AtomicU64>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("ctx", &self.ctx).finish()
    }
}

impl Peer {
    /// Who the peer is and what was negotiated.
    pub fn ctx(&self) -> &PeerCtx {
        &self.ctx
    }

    /// Sends one request of the negotiated protocol on a new stream and waits for its answer
    /// (bounded by the stream timeout).
    pub async fn request(&self, body: Vec<u8>) -> Result<Vec<u8>, NetError> {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        match self
            .round_trip(ClientFrame::Request(Request { id, body }))
            .await?
        {
            ServerFrame::Response(r) if r.id == id => Ok(r.body),
            ServerFrame::Error(e) => Err(NetError::Remote(e.refusal.code)),
            _ => Err(NetError::Unexpected),
        }
    }

    /// A Hello-level round trip: the version in use and the latency.
    pub async fn ping(&self) -> Result<PingResult, NetError> {
        let nonce = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        match self.round_trip(ClientFrame::Ping(Ping { nonce })).await? {
            ServerFrame::Pong(p) if p.nonce == nonce => Ok(PingResult {
                version: self.ctx.protocol.alpn(),
                latency: start.elapsed(),
            }),
            ServerFrame::Error(e) => Err(NetError::Remote(e.refusal.code)),
            _ => Err(NetError::Unexpected),
        }
    }

    async fn round_trip(&self, frame: ClientFrame) -> Result<ServerFrame, NetError> {
        let max = self.inner.limits.max_frame_bytes;
        let deadline = Duration::from_millis(self.inner.limits.stream_timeout_ms);
        let work = async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            write_frame(&mut send, &frame, max).await?;
            let reply = read_frame::<ServerFrame>(&mut recv, max).await?;
            self.last_seen.store(now_ms(), Ordering::Relaxed);
            Ok(reply)
        };
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| NetError::Timeout("the answer"))?
    }

    /// Closes the connection with a code.
    pub fn close(&self, code: ErrorCode) {
        close_with(&self.conn, code);
    }

    /// Waits until the connection is closed, and says how.
    pub async fn closed(&self) -> NetError {
        NetError::from_connection(self.conn.closed().await)
    }

    /// QUIC's RTT estimate.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// The underlying QUIC connection, for tests and benchmarks that need raw streams.
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }
}

/// Closes the connection with `trust_revoked` when the peer's certificate passes its own
/// `notAfter` (UNIX seconds), unless it closes first. Each connection has its own timer, so a
/// peer's other connections (with other certificates) are left alone.
pub(crate) async fn close_at_expiry(peer: Peer, not_after: i64) {
    /// Longest single sleep (timers far in the future are re-armed).
    const MAX_NAP: Duration = Duration::from_secs(24 * 3600);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        // A certificate is valid through its notAfter second.
        let left_ms = (not_after + 1) * 1000 - now;
        if left_ms <= 0 {
            break;
        }
        let nap = Duration::from_millis(left_ms as u64).min(MAX_NAP);
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = peer.conn.closed() => return,
        }
    }
    tracing::warn!(
        connection = peer.ctx.connection_id,
        "peer certificate expired: closing the connection"
    );
    close_with(&peer.conn, ErrorCode::TrustRevoked);
    peer.inner.emit(EndpointEvent::TrustClosed {
        id: peer.ctx.connection_id,
        peer: peer.ctx.identity.clone(),
        reason: "certificate expired".into(),
    });
}

/// Serves the streams the peer opens on a connection until it closes.
pub(crate) async fn serve_streams(peer: Peer, route: Route) {
    let inner = peer.inner.clone();
    loop {
        let (send, recv) = match peer.conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                let reason = e.to_string();
                inner.registry.remove(peer.ctx.connection_id);
                tracing::info!(%reason, "connection closed");
                inner.emit(EndpointEvent::Closed {
                    id: peer.ctx.connection_id,
                    peer: peer.ctx.identity.clone(),
                    reason,
                });
                return;
            }
        };
        let span = tracing::info_span!("request", peer = %peer.ctx.identity, stream = %send.id());
        tokio::spawn(serve_stream(peer.clone(), route.clone(), send, recv).instrument(span));
    }
}

async fn serve_stream(
    peer: Peer,
    route: Route,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let inner = &peer.inner;
    let max = inner.limits.max_frame_bytes;
    let deadline = Duration::from_millis(inner.limits.stream_timeout_ms);
    let frame = match tokio::time::timeout(deadline, read_only_frame::<ClientFrame>(&mut recv, max))
        .await
    {
        Err(_) => Err(ErrorCode::Timeout),
        Ok(Err(NetError::Wire(w))) => Err(w.code()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request stream failed");
            return;
        }
        Ok(Ok(f)) => Ok(f),
    };
    peer.last_seen.store(now_ms(), Ordering::Relaxed);
    let reply = match frame {
        Err(code) => ServerFrame::error(0, code),
        Ok(ClientFrame::Ping(p)) => ServerFrame::Pong(crate::wire::Pong { nonce: p.nonce }),
        Ok(ClientFrame::Hello(_)) => ServerFrame::error(0, ErrorCode::Malformed),
        Ok(ClientFrame::Request(req)) => {
            let id = req.id;
            if !inner.policy.authorize(&peer.ctx.identity, route.permission) {
                ServerFrame::error(id, ErrorCode::NotAuthorized)
            } else {
                let handler_deadline = Duration::from_millis(inner.limits.handler_timeout_ms);
                match tokio::time::timeout(handler_deadline, route.handler.handle(&peer.ctx, req))
                    .await
                {
                    Ok(Ok(body)) => ServerFrame::Response(crate::wire::Response { id, body }),
                    Ok(Err(code)) => ServerFrame::error(id, code),
                    Err(_) => {
                        tracing::warn!(request = id, "handler missed its deadline");
                        ServerFrame::error(id, ErrorCode::Timeout)
                    }
                }
            }
        }
    };
    if let ServerFrame::Error(e) = &reply {
        tracing::warn!(code = %e.refusal.code, "request refused");
        inner.emit(EndpointEvent::StreamRefused {
            id: peer.ctx.connection_id,
            peer: peer.ctx.identity.clone(),
            code: e.refusal.code,
        });
        // Stop reading what the peer may still send (an oversize or stalled frame).
        let _ = recv.stop(code_varint(e.refusal.code));
    }
    if let Err(e) = write_frame(&mut send, &reply, max).await {
        tracing::debug!(error = %e, "could not answer");
    }
}
