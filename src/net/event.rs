//! What the endpoint reports: events for logs and tests, the runtime state of connections,
//! and the results of pings and reloads.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::identity::NodeIdentity;
use crate::wire::{ErrorCode, Role};

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The peer dialed us.
    Inbound,
    /// We dialed the peer.
    Outbound,
}

/// Something that happened on the endpoint, for logs, metrics, the pending list and tests.
#[derive(Debug, Clone)]
pub enum EndpointEvent {
    /// A peer completed Hello/HelloAck.
    Connected {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// Who dialed.
        direction: Direction,
    },
    /// A TLS handshake failed.
    HandshakeFailed {
        /// The peer's address.
        remote: SocketAddr,
        /// What failed.
        failure: super::HandshakeFailure,
    },
    /// A connection attempt or Hello was refused by us with a code.
    Refused {
        /// The peer's address.
        remote: SocketAddr,
        /// The peer's identity, when TLS got that far.
        peer: Option<NodeIdentity>,
        /// Why.
        code: ErrorCode,
    },
    /// A request stream failed and the peer was told so.
    StreamRefused {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// Why.
        code: ErrorCode,
    },
    /// A live connection was closed by a trust reload.
    TrustClosed {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// Why (rustls' reason for refusing the certificate now).
        reason: String,
    },
    /// A connection ended.
    Closed {
        /// Connection id.
        id: u64,
        /// The peer.
        peer: NodeIdentity,
        /// How it ended.
        reason: String,
    },
}

/// Runtime state of one connection, for `ttx peer list`.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Connection id.
    pub connection_id: u64,
    /// The peer.
    pub identity: NodeIdentity,
    /// The peer's key fingerprint.
    pub spki: String,
    /// The negotiated version (ALPN).
    pub version: String,
    /// The role the connecting side declared.
    pub role: Role,
    /// Who dialed.
    pub direction: Direction,
    /// The peer's address.
    pub remote: SocketAddr,
    /// When HelloAck completed.
    pub connected_since: SystemTime,
    /// When the peer was last heard from on a stream.
    pub last_seen: SystemTime,
    /// QUIC's current RTT estimate.
    pub rtt: Duration,
    /// The peer certificate's `notAfter`, UNIX seconds.
    pub cert_not_after: i64,
}

/// The result of a ping.
#[derive(Debug, Clone)]
pub struct PingResult {
    /// The protocol version of the connection.
    pub version: String,
    /// The measured round trip.
    pub latency: Duration,
}

/// What a trust reload did to live connections.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Connections still trusted.
    pub kept: usize,
    /// Connections closed, with the peer and the reason.
    pub closed: Vec<(NodeIdentity, String)>,
}
