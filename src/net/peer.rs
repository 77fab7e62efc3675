//! A connection after Hello ([`Peer`]): requests, pings and long-lived streams it opens, and
//! the serving of the streams the other side opens on it (one request per stream under the
//! handler deadline, or a long-lived stream handed to the handler).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::endpoint::Inner;
use super::event::{EndpointEvent, PingResult};
use serde::{de::DeserializeOwned, Serialize};

use super::framed::{FramedStream, ProtocolLimits};
use super::handler::{IncomingStream, PeerCtx, Route};
use super::registry::{close_with, code_varint, now_ms};
use super::stream::{read_frame, write_frame, write_frame_open};
use super::NetError;
use crate::wire::{ClientFrame, ErrorCode, Ping, Request, ServerFrame, StreamOpen, WireError};

/// A connection to a peer (either direction) after Hello/HelloAck. Cheap to clone.
#[derive(Clone)]
pub struct Peer {
    pub(crate) inner: Arc<Inner>,
    pub(crate) conn: quinn::Connection,
    pub(crate) ctx: Arc<PeerCtx>,
    pub(crate) last_seen: Arc<AtomicU64>,
    pub(crate) limits: ProtocolLimits,
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

    /// Opens a long-lived stream with a protocol-defined `body` (what the stream is for); the
    /// peer's handler accepts it (its answer body is returned) or refuses it
    /// (`NetError::Remote`). The answer must come within the stream timeout; after that, waits
    /// are bounded by the protocol's idle timeout.
    pub async fn open_stream<Out: Serialize, In: DeserializeOwned>(
        &self,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, FramedStream<Out, In>), NetError> {
        let id = self.inner.next_request.fetch_add(1, Ordering::Relaxed);
        let max = self.limits.max_stream_frame_bytes;
        let deadline = Duration::from_millis(self.inner.limits.stream_timeout_ms);
        let work = async {
            let (mut send, mut recv) = self.conn.open_bi().await?;
            let open = ClientFrame::Open(StreamOpen { id, body });
            write_frame_open(&mut send, &open, max).await?;
            let answer = read_frame::<ServerFrame>(&mut recv, max).await?;
            self.last_seen.store(now_ms(), Ordering::Relaxed);
            match answer {
                ServerFrame::Opened(o) if o.id == id => {
                    Ok((o.body, FramedStream::new(send, recv, &self.limits)))
                }
                ServerFrame::Error(e) => Err(NetError::Remote(e.refusal.code)),
                _ => Err(NetError::Unexpected),
            }
        };
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| NetError::Timeout("the stream to be accepted"))?
    }

    /// The largest request or response frame on this connection: the protocol's limit within
    /// the transport's.
    fn request_max(&self) -> u32 {
        request_max(&self.inner, &self.limits)
    }

    async fn round_trip(&self, frame: ClientFrame) -> Result<ServerFrame, NetError> {
        let max = self.request_max();
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

fn request_max(inner: &Inner, limits: &ProtocolLimits) -> u32 {
    limits.max_request_bytes.min(inner.limits.max_frame_bytes)
}

/// Serves one stream the peer opened: a ping or request (answered, one frame each way), or
/// `Open` (handed to the handler as a long-lived stream).
async fn serve_stream(
    peer: Peer,
    route: Route,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let inner = &peer.inner;
    let max = request_max(inner, &route.limits);
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(inner.limits.stream_timeout_ms);
    let first = tokio::time::timeout_at(deadline, read_frame::<ClientFrame>(&mut recv, max)).await;
    let frame = match first {
        Err(_) => Err(ErrorCode::Timeout),
        Ok(Err(NetError::Wire(w))) => Err(w.code()),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "request stream failed");
            return;
        }
        Ok(Ok(ClientFrame::Open(open))) => {
            peer.last_seen.store(now_ms(), Ordering::Relaxed);
            return serve_long_lived(&peer, &route, open, send, recv).await;
        }
        Ok(Ok(f)) => {
            // One frame per request stream: it must end right after the frame.
            match tokio::time::timeout_at(deadline, recv.read(&mut [0u8; 1])).await {
                Err(_) => Err(ErrorCode::Timeout),
                Ok(Ok(None)) => Ok(f),
                Ok(Ok(Some(_))) => Err(WireError::Malformed("bytes after the frame".into()).code()),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "request stream failed");
                    return;
                }
            }
        }
    };
    peer.last_seen.store(now_ms(), Ordering::Relaxed);
    let reply = match frame {
        Err(code) => ServerFrame::error(0, code),
        Ok(ClientFrame::Ping(p)) => ServerFrame::Pong(crate::wire::Pong { nonce: p.nonce }),
        Ok(ClientFrame::Hello(_) | ClientFrame::Open(_)) => {
            ServerFrame::error(0, ErrorCode::Malformed)
        }
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
        refused(&peer, e.refusal.code);
        // Stop reading what the peer may still send (an oversize or stalled frame).
        let _ = recv.stop(code_varint(e.refusal.code));
    }
    if let Err(e) = write_frame(&mut send, &reply, max).await {
        tracing::debug!(error = %e, "could not answer");
    }
}

fn refused(peer: &Peer, code: ErrorCode) {
    tracing::warn!(%code, "request refused");
    peer.inner.emit(EndpointEvent::StreamRefused {
        id: peer.ctx.connection_id,
        peer: peer.ctx.identity.clone(),
        code,
    });
}

/// Hands a long-lived stream to the protocol's handler, after the same authorization as a
/// request.
async fn serve_long_lived(
    peer: &Peer,
    route: &Route,
    open: StreamOpen,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let incoming = IncomingStream {
        id: open.id,
        send,
        recv,
        limits: route.limits,
    };
    if !peer
        .inner
        .policy
        .authorize(&peer.ctx.identity, route.permission)
    {
        refused(peer, ErrorCode::NotAuthorized);
        return incoming.refuse(ErrorCode::NotAuthorized).await;
    }
    tracing::debug!(stream = open.id, "long-lived stream opened");
    route.handler.stream(&peer.ctx, open, incoming).await;
}
