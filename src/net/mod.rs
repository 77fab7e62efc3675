//! The QUIC endpoint: TLS configs, certificate → identity, ALPN routing, Hello, limits.
//! No ticket logic lives here.
//!
//! - [`tls`]: rustls configs and ttx's verifiers (CA + CRL, SPKI deny list, SPKI pins, the one
//!   `ttx://` URI SAN, the dialed site), and [`tls::spki_sha256`].
//! - [`policy`]: what the node decides about peers ([`PeerPolicy`]): admitted, pending, denied,
//!   and which permissions (exchange, standby) they hold, checked at Hello and on every request.
//! - [`handler`]: the per-protocol [`Handler`] trait and the ALPN [`Router`].
//! - [`endpoint`]: the [`Endpoint`] (server and client on one socket): TLS configs, dialing,
//!   live trust reload, closing peers, shutdown.
//! - `accept`: the accept path (caps before the handshake, the handshake timeouts), driven by
//!   [`admission`]: the pure decision (Retry, refuse, drop) against handshake floods and the
//!   rate limiter for refusal logs.
//! - `hello`: the Hello exchange on the first stream, both sides.
//! - `registry`: the live connections, one entry per connection.
//! - `peer`: [`Peer`], a connection after Hello: requests, pings, serving the peer's streams.
//! - [`framed`]: long-lived framed streams ([`FramedStream`]) with per-protocol
//!   [`ProtocolLimits`] and QUIC flow control as backpressure.
//! - [`event`]: what the endpoint reports ([`EndpointEvent`], [`PeerInfo`], ...).
//! - [`error`]: [`NetError`] and the classification of TLS failures.
//! - [`testing`]: real certificates for tests and benchmarks (a CA, node certificates, CRLs).

mod accept;
pub mod admission;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod framed;
pub mod handler;
mod hello;
mod peer;
pub mod policy;
mod registry;
mod stream;
pub mod testing;
pub mod tls;

pub use endpoint::{ConnectOptions, Endpoint, EndpointOptions};
pub use error::{HandshakeFailure, NetError};
pub use event::{Direction, EndpointEvent, PeerInfo, PingResult, ReloadReport};
pub use framed::{FramedRecv, FramedSend, FramedStream, ProtocolLimits};
pub use handler::{BoxFuture, Handler, IncomingStream, PeerCtx, Router};
pub use hello::permission_of;
pub use peer::Peer;
pub use policy::{Admission, Candidate, PeerPolicy, Permission, Permissions, StaticPolicy};
pub use tls::{issuer_name, spki_sha256, LocalCert, Trust, TrustConfig};

#[cfg(test)]
mod tests;
