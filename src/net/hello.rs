//! The Hello exchange after TLS, on the first stream of a connection: the server's checks
//! (identity, version, policy, per-peer cap) and the client's checks of `HelloAck`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::endpoint::{ConnectOptions, Inner};
use super::event::Direction;
use super::handler::{PeerCtx, Route};
use super::peer::Peer;
use super::policy::{Candidate, Permission};
use super::registry::code_varint;
use super::stream::{read_frame, write_frame};
use super::tls::{self, PeerSide};
use super::NetError;
use crate::identity::NodeIdentity;
use crate::wire::alpn::{self, ProtocolId};
use crate::wire::{
    ClientFrame, ErrorCode, Hello, HelloAck, Refusal, Request, Role, ServerFrame, HELLO_MAX_BYTES,
};
use tokio::time::timeout_at;

/// How long a refused peer is given to receive its `Refusal` before the connection is closed.
const REFUSAL_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

pub(crate) fn peer_chain(conn: &quinn::Connection) -> Option<Vec<CertificateDer<'static>>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()
        .map(|b| *b)
}

pub(crate) fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

type HelloOutcome =
    Result<(PeerCtx, Vec<CertificateDer<'static>>, Route), (Option<NodeIdentity>, ErrorCode)>;

/// Server side of Hello. On refusal, the `Refusal` frame has been sent; the caller closes.
///
/// The Hello is read with the small [`HELLO_MAX_BYTES`] limit (the peer is not admitted yet) and
/// must arrive by `deadline`; a Hello that is late, oversize or not a Hello still gets a
/// `Refusal` frame on its stream when the peer opened one.
pub(crate) async fn server_hello(
    inner: &Arc<Inner>,
    conn: &quinn::Connection,
    deadline: tokio::time::Instant,
) -> HelloOutcome {
    let max = HELLO_MAX_BYTES;
    let chain = peer_chain(conn).ok_or((None, ErrorCode::Internal))?;
    let ee = chain.first().ok_or((None, ErrorCode::Internal))?;
    let id = NodeIdentity::from_cert_der(ee).map_err(|_| (None, ErrorCode::IdentityMismatch))?;
    let spki = tls::spki_sha256(ee).map_err(|_| (None, ErrorCode::IdentityMismatch))?;
    let issuer = tls::issuer_name(ee).map_err(|_| (None, ErrorCode::IdentityMismatch))?;
    let fail = |code| (Some(id.clone()), code);
    let alpn = negotiated_alpn(conn).ok_or_else(|| fail(ErrorCode::UnsupportedVersion))?;
    let route = inner
        .router
        .get(&alpn)
        .cloned()
        .ok_or_else(|| fail(ErrorCode::UnsupportedVersion))?;
    let (mut send, mut recv) = match timeout_at(deadline, conn.accept_bi()).await {
        Err(_) => return Err(fail(ErrorCode::Timeout)),
        Ok(Err(_)) => return Err(fail(ErrorCode::Malformed)),
        Ok(Ok(streams)) => streams,
    };
    let hello = match timeout_at(deadline, read_frame::<ClientFrame>(&mut recv, max)).await {
        Err(_) => Err(ErrorCode::Timeout),
        Ok(Ok(ClientFrame::Hello(h))) => Ok(h),
        Ok(Ok(_)) => Err(ErrorCode::Malformed),
        Ok(Err(NetError::Wire(w))) => Err(w.code()),
        Ok(Err(_)) => Err(ErrorCode::Malformed),
    };
    let candidate = Candidate {
        identity: &id,
        spki: &spki,
        issuer: &issuer,
        remote: conn.remote_address(),
    };
    let verdict =
        hello.and_then(|hello| check_hello(inner, &candidate, &hello, &route).map(|()| hello));
    match verdict {
        Ok(hello) => {
            let ack = ServerFrame::HelloAck(HelloAck {
                version: route.protocol.alpn(),
                federation: inner.identity.federation.clone(),
                site: inner.identity.site.clone(),
                node: inner.identity.node.clone(),
                features: inner.features & hello.features,
            });
            write_frame(&mut send, &ack, max)
                .await
                .map_err(|_| fail(ErrorCode::Internal))?;
            let ctx = PeerCtx {
                connection_id: inner.next_id.fetch_add(1, Ordering::Relaxed),
                identity: id,
                spki,
                protocol: route.protocol,
                role: hello.role,
                features: inner.features & hello.features,
                remote: conn.remote_address(),
            };
            Ok((ctx, chain, route))
        }
        Err(code) => {
            // Read no more of what the peer may still send (STOP_SENDING), answer, and let the
            // refusal reach the peer before the connection is closed (bounded).
            let _ = recv.stop(code_varint(code));
            let refusal = ServerFrame::Refusal(Refusal::new(code));
            let _ = tokio::time::timeout(REFUSAL_GRACE, async {
                let _ = write_frame(&mut send, &refusal, max).await;
                let _ = send.stopped().await;
            })
            .await;
            Err(fail(code))
        }
    }
}

fn check_hello(
    inner: &Inner,
    candidate: &Candidate<'_>,
    hello: &Hello,
    route: &Route,
) -> Result<(), ErrorCode> {
    let id = candidate.identity;
    if hello.federation != id.federation || hello.site != id.site || hello.node != id.node {
        return Err(ErrorCode::IdentityMismatch);
    }
    if !hello
        .versions
        .iter()
        .any(|v| v.as_bytes() == route.protocol.alpn().as_bytes())
    {
        return Err(ErrorCode::UnsupportedVersion);
    }
    inner.admit(candidate, route.permission, hello.role)
}

/// Client side of Hello, on an established TLS connection.
pub(crate) async fn client_hello(
    inner: &Arc<Inner>,
    conn: &quinn::Connection,
    site: &str,
    opts: &ConnectOptions,
) -> Result<Peer, NetError> {
    let max = HELLO_MAX_BYTES;
    let (mut send, mut recv) = conn.open_bi().await?;
    let hello = ClientFrame::Hello(Hello {
        federation: inner.identity.federation.clone(),
        site: inner.identity.site.clone(),
        node: inner.identity.node.clone(),
        role: opts.role,
        versions: opts.hello_versions.clone(),
        features: inner.features,
    });
    write_frame(&mut send, &hello, max).await?;
    let ack = match read_frame::<ServerFrame>(&mut recv, max).await? {
        ServerFrame::HelloAck(a) => a,
        ServerFrame::Refusal(r) => return Err(NetError::Refused(r.code)),
        _ => return Err(NetError::Unexpected),
    };
    let chain = peer_chain(conn).ok_or(NetError::RefusedPeer(ErrorCode::Internal))?;
    let ee = chain
        .first()
        .ok_or(NetError::RefusedPeer(ErrorCode::Internal))?;
    let id = NodeIdentity::from_cert_der(ee)
        .map_err(|_| NetError::RefusedPeer(ErrorCode::IdentityMismatch))?;
    let spki =
        tls::spki_sha256(ee).map_err(|_| NetError::RefusedPeer(ErrorCode::IdentityMismatch))?;
    let issuer =
        tls::issuer_name(ee).map_err(|_| NetError::RefusedPeer(ErrorCode::IdentityMismatch))?;
    if ack.federation != id.federation
        || ack.site != id.site
        || ack.node != id.node
        || id.site != site
    {
        return Err(NetError::RefusedPeer(ErrorCode::IdentityMismatch));
    }
    let alpn = negotiated_alpn(conn).unwrap_or_default();
    let protocol = ProtocolId::from_alpn(&alpn)
        .filter(|p| p.alpn() == ack.version && opts.alpns.contains(&ack.version))
        .ok_or(NetError::RefusedPeer(ErrorCode::UnsupportedVersion))?;
    let route = inner.router.get(&alpn).cloned().unwrap_or_else(|| Route {
        protocol,
        permission: permission_of(protocol),
        handler: Arc::new(NoHandler),
        limits: super::framed::ProtocolLimits::default(),
    });
    let candidate = Candidate {
        identity: &id,
        spki: &spki,
        issuer: &issuer,
        remote: conn.remote_address(),
    };
    inner
        .admit(&candidate, route.permission, Role::Partner)
        .map_err(NetError::RefusedPeer)?;
    let ctx = PeerCtx {
        connection_id: inner.next_id.fetch_add(1, Ordering::Relaxed),
        identity: id,
        spki,
        protocol,
        role: opts.role,
        features: ack.features,
        remote: conn.remote_address(),
    };
    let side = PeerSide::Server {
        site: site.to_string(),
    };
    Ok(inner.register(conn.clone(), ctx, chain, side, Direction::Outbound, route))
}

/// The permission a protocol family needs.
pub fn permission_of(p: ProtocolId) -> Permission {
    if p.family == alpn::REPL {
        Permission::Standby
    } else if p.family == alpn::WITNESS {
        Permission::Witness
    } else {
        Permission::Exchange
    }
}

/// Answers every request with `not_authorized` (a dialer that serves no protocol).
struct NoHandler;
impl super::Handler for NoHandler {
    fn handle<'a>(
        &'a self,
        _peer: &'a PeerCtx,
        _request: Request,
    ) -> super::BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        Box::pin(async { Err(ErrorCode::NotAuthorized) })
    }
}
