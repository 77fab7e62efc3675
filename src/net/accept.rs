//! The accept path: admission of incoming QUIC attempts before and during the handshake
//! (the decision itself is [`admission`](super::admission)), the TLS timeout and the Hello.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use super::admission::{Attempt, Decision};
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
        let remote = incoming.remote_address();
        let attempt = Attempt {
            ip: remote.ip(),
            validated: incoming.remote_address_validated(),
            may_retry: incoming.may_retry(),
            live: inner.live_count(),
        };
        let decision = inner
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decide(attempt, &inner.limits);
        match decision {
            Decision::Accept => {
                let span = tracing::info_span!("connection", %remote, dir = "in", peer = tracing::field::Empty);
                tokio::spawn(accept_one(inner.clone(), incoming).instrument(span));
            }
            Decision::Retry => {
                // Stateless: the attempt is forgotten until it comes back with the token.
                let _ = incoming.retry();
            }
            Decision::Refuse => {
                log_refusal(
                    &inner,
                    remote,
                    "connection or handshake cap reached: refusing before the handshake",
                );
                incoming.refuse();
                inner.emit(EndpointEvent::Refused {
                    remote,
                    peer: None,
                    code: ErrorCode::Overloaded,
                });
            }
            Decision::Ignore => {
                log_refusal(
                    &inner,
                    remote,
                    "too many handshakes from one source: dropping",
                );
                incoming.ignore();
            }
        }
    }
}

/// Logs a refusal at WARN, at most a burst per minute (a flood must not flood the log).
fn log_refusal(inner: &Inner, remote: std::net::SocketAddr, what: &str) {
    let allowed = inner
        .refusal_log
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(Instant::now());
    if let Some(suppressed) = allowed {
        tracing::warn!(%remote, suppressed, "{what}");
    }
}

/// Uncounts a handshake when it ends, however it ends.
struct HandshakeGuard<'a> {
    inner: &'a Inner,
    ip: IpAddr,
}
impl Drop for HandshakeGuard<'_> {
    fn drop(&mut self) {
        self.inner
            .gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .finished(self.ip);
    }
}

async fn accept_one(inner: Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let guard = HandshakeGuard {
        inner: &inner,
        ip: remote.ip(),
    };
    let deadline = Duration::from_millis(inner.limits.handshake_timeout_ms);
    let tls_deadline = Duration::from_millis(inner.limits.tls_timeout_ms).min(deadline);
    let tls_failed =
        |e: quinn::ConnectionError| match super::HandshakeFailure::from_connection_error(&e) {
            Some(failure) => {
                log_refusal(&inner, remote, &format!("tls handshake failed: {failure}"));
                inner.emit(EndpointEvent::HandshakeFailed { remote, failure });
            }
            None => tracing::debug!(error = %e, "handshake failed"),
        };
    // The ClientHello (ALPN included) is processed in `accept`, the rest of TLS after it.
    let connecting = match incoming.accept() {
        Ok(c) => c,
        Err(e) => return tls_failed(e),
    };
    // A short deadline for TLS, and one for TLS and Hello together.
    let start = tokio::time::Instant::now();
    let deadline = start + deadline;
    let conn = match tokio::time::timeout_at(start + tls_deadline, connecting).await {
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
            let who = peer.as_ref().map(|p| p.to_string()).unwrap_or_default();
            if code == ErrorCode::Timeout {
                log_refusal(&inner, remote, &format!("peer {who} sent no hello in time"));
            } else {
                log_refusal(&inner, remote, &format!("refused peer {who}: {code}"));
            }
            close_with(&conn, code);
            inner.emit(EndpointEvent::Refused { remote, peer, code });
        }
    }
}
