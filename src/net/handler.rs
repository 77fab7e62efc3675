//! Per-protocol handlers and the ALPN router (iroh's `ProtocolHandler`/`Router` shape).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::framed::{FramedStream, ProtocolLimits};
use super::policy::Permission;
use super::stream::write_frame;
use super::NetError;
use crate::identity::NodeIdentity;
use crate::wire::alpn::ProtocolId;
use crate::wire::{ErrorCode, Request, Role, ServerFrame, StreamOpen, StreamOpened};

/// A boxed, sendable future (handlers are object-safe without `async-trait`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who is asking, as established by TLS and Hello.
#[derive(Debug, Clone)]
pub struct PeerCtx {
    /// The endpoint-local id of the connection.
    pub connection_id: u64,
    /// The peer's identity (from its certificate's URI SAN).
    pub identity: NodeIdentity,
    /// The peer's key fingerprint (SPKI SHA-256, hex).
    pub spki: String,
    /// The negotiated protocol version.
    pub protocol: ProtocolId,
    /// The role the connecting side declared.
    pub role: Role,
    /// Features both sides support.
    pub features: u64,
    /// The peer's address.
    pub remote: SocketAddr,
}

/// Serves the requests of one protocol version. The endpoint has already checked that the peer
/// is admitted and authorized for the protocol's permission when `handle` is called.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request: the response body, or a stable error code for the peer. The
    /// default refuses with `malformed` (the protocol has only long-lived streams, as
    /// `ttx-repl/1`).
    fn handle<'a>(
        &'a self,
        peer: &'a PeerCtx,
        request: Request,
    ) -> BoxFuture<'a, Result<Vec<u8>, ErrorCode>> {
        let _ = (peer, request);
        Box::pin(async { Err(ErrorCode::Malformed) })
    }

    /// Serves a long-lived stream the peer opened with `open`: accept it (choosing the frame
    /// types) with [`IncomingStream::accept`] or refuse it with [`IncomingStream::refuse`].
    /// The default refuses with `malformed` (the protocol has no long-lived streams). The
    /// future may run as long as the stream lives; waits on it are bounded by the protocol's
    /// idle timeout.
    fn stream<'a>(
        &'a self,
        peer: &'a PeerCtx,
        open: StreamOpen,
        incoming: IncomingStream,
    ) -> BoxFuture<'a, ()> {
        let _ = (peer, open);
        Box::pin(incoming.refuse(ErrorCode::Malformed))
    }
}

/// A long-lived stream the peer opened, waiting for the handler's answer.
#[derive(Debug)]
pub struct IncomingStream {
    pub(crate) id: u64,
    pub(crate) send: quinn::SendStream,
    pub(crate) recv: quinn::RecvStream,
    pub(crate) limits: ProtocolLimits,
}

impl IncomingStream {
    /// Accepts the stream with an answer body (sent in `Opened`) and returns it framed.
    pub async fn accept<Out: Serialize, In: DeserializeOwned>(
        mut self,
        body: Vec<u8>,
    ) -> Result<FramedStream<Out, In>, NetError> {
        let opened = ServerFrame::Opened(StreamOpened { id: self.id, body });
        super::stream::write_frame_open(
            &mut self.send,
            &opened,
            self.limits.max_stream_frame_bytes,
        )
        .await?;
        Ok(FramedStream::new(self.send, self.recv, &self.limits))
    }

    /// Refuses the stream with a stable code (`Error` frame, then the stream ends).
    pub async fn refuse(mut self, code: ErrorCode) {
        let _ = self.recv.stop(super::registry::code_varint(code));
        let _ = write_frame(&mut self.send, &ServerFrame::error(self.id, code), 4096).await;
    }
}

/// A protocol version served by the endpoint.
#[derive(Clone)]
pub struct Route {
    /// The protocol (its ALPN).
    pub protocol: ProtocolId,
    /// The permission a peer needs to speak it.
    pub permission: Permission,
    /// Its handler.
    pub handler: Arc<dyn Handler>,
    /// Its frame limits.
    pub limits: ProtocolLimits,
}

/// Picks a handler by negotiated ALPN. Routes are kept in preference order (the order added):
/// add the newest version of a family first.
#[derive(Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a protocol version with the permission it requires and its handler, with the
    /// default [`ProtocolLimits`].
    pub fn route(
        self,
        protocol: ProtocolId,
        permission: Permission,
        handler: Arc<dyn Handler>,
    ) -> Self {
        self.route_limited(protocol, permission, ProtocolLimits::default(), handler)
    }

    /// Adds a protocol version with its own frame limits.
    pub fn route_limited(
        mut self,
        protocol: ProtocolId,
        permission: Permission,
        limits: ProtocolLimits,
        handler: Arc<dyn Handler>,
    ) -> Self {
        self.routes.push(Route {
            protocol,
            permission,
            handler,
            limits,
        });
        self
    }

    /// The route for a negotiated ALPN.
    pub fn get(&self, alpn: &[u8]) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.protocol.alpn().as_bytes() == alpn)
    }

    /// Every ALPN served, in preference order.
    pub fn alpns(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.protocol.alpn()).collect()
    }

    /// The ALPNs of one family, in preference order.
    pub fn family_alpns(&self, family: &str) -> Vec<String> {
        self.routes
            .iter()
            .filter(|r| r.protocol.family == family)
            .map(|r| r.protocol.alpn())
            .collect()
    }
}
