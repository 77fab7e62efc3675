//! The QUIC endpoint: TLS configs, certificate → identity, ALPN routing, Hello, limits.
//! No ticket logic lives here.
//!
//! - [`tls`]: rustls configs and ttx's verifiers (CA + CRL, SPKI deny list, SPKI pins, the one
//!   `ttx://` URI SAN, the dialed site), and [`tls::spki_sha256`].
//! - [`policy`]: what the node decides about peers ([`PeerPolicy`]): admitted, pending, denied,
//!   and which permissions (exchange, standby) they hold, checked at Hello and on every request.
//! - [`handler`]: the per-protocol [`Handler`] trait and the ALPN [`Router`].
//! - [`endpoint`]: the [`Endpoint`] (server and client on one socket): caps, timeouts, Hello,
//!   requests, ping, live trust reload, runtime peer state.
//! - [`error`]: [`NetError`] and the classification of TLS failures.
//! - [`testing`]: real certificates for tests and benchmarks (a CA, node certificates, CRLs).

pub mod endpoint;
pub mod error;
pub mod handler;
pub mod policy;
mod stream;
pub mod testing;
pub mod tls;

pub use endpoint::{
    ConnectOptions, Direction, Endpoint, EndpointEvent, EndpointOptions, Peer, PeerInfo,
    PingResult, ReloadReport,
};
pub use error::{HandshakeFailure, NetError};
pub use handler::{BoxFuture, Handler, PeerCtx, Router};
pub use policy::{Admission, PeerPolicy, Permission, Permissions, StaticPolicy};
pub use tls::{spki_sha256, LocalCert, Trust, TrustConfig};

#[cfg(test)]
mod tests;
