//! The accept path: admission of incoming QUIC attempts before and during the handshake.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::endpoint::Inner;
use super::event::{Direction, EndpointEvent};
use super::hello::server_hello;
use super::registry::close_with;
use super::tls::PeerSide;
use crate::wire::ErrorCode;

pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    loop {
        let incoming = tokio::select! {
            i = inner.quinn.accept() => i,
            _ = inner.shutdown.notified() => None,
        };
        let Some(incoming) = incoming else { break };
        let in_use = inner.live_count() + inner.handshaking.load(Ordering::Relaxed);
        if in_use >= inner.limits.max_connections as usize {
            let remote = incoming.remote_address();
            tracing::warn!(%remote, "connection cap reached: refusing before the handshake");
            incoming.refuse();
            inner.emit(EndpointEvent::Refused {
                remote,
                peer: None,
                code: ErrorCode::Overloaded,
            });
            continue;
        }
        inner.handshaking.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("connection", remote = %incoming.remote_address(), dir = "in", peer = tracing::field::Empty);
        tokio::spawn(accept_one(inner.clone(), incoming).instrument(span));
    }
}

struct HandshakeGuard<'a>(&'a AtomicUsize);
impl Drop for HandshakeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_one(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let guard = HandshakeGuard(&inner.handshaking);
    let remote = incoming.remote_address();
    let deadline = Duration::from_millis(inner.limits.handshake_timeout_ms);
    let tls_failed =
        |e: quinn::ConnectionError| match super::HandshakeFailure::from_connection_error(&e) {
            Some(failure) => {
                tracing::warn!(%failure, "tls handshake failed");
                inner.emit(EndpointEvent::HandshakeFailed { remote, failure });
            }
            None => tracing::debug!(error = %e, "handshake failed"),
        };
    // The ClientHello (ALPN included) is processed in `accept`, the rest of TLS after it.
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => return tls_failed(e),
    };
    // One deadline for TLS and Hello together.
    let deadline = tokio::time::Instant::now() + deadline;
    let conn = match tokio::time::timeout_at(deadline, connecting).await {
        Err(_) => {
            inner.emit(EndpointEvent::Refused {
                remote,
                peer: None,
                code: ErrorCode::Timeout,
            });
            return;
        }
        Ok(Err(e)) => return tls_failed(e),
        Ok(Ok(conn)) => conn,
    };
    match server_hello(&inner, &conn, deadline).await {
        Ok((ctx, chain, route)) => {
            tracing::Span::current().record("peer", tracing::field::display(&ctx.identity));
            drop(guard);
            inner.register(
                conn,
                ctx,
                chain,
                PeerSide::Client,
                Direction::Inbound,
                route,
            );
        }
        Err((peer, code)) => {
            if code == ErrorCode::Timeout {
                tracing::warn!(peer = ?peer.as_ref().map(|p| p.to_string()), "peer sent no hello in time");
            } else {
                tracing::warn!(peer = ?peer.as_ref().map(|p| p.to_string()), %code, "refused peer");
            }
            close_with(&conn, code);
            inner.emit(EndpointEvent::Refused { remote, peer, code });
        }
    }
}
