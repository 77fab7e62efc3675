//! The connection handshake after TLS: the client's `Hello` and the server's `HelloAck` or
//! `Refusal`, sent on the first bidirectional stream the client opens.
//!
//! The federation, site and node a `Hello` or `HelloAck` names must be exactly the identity in the
//! sender's certificate, or the connection is refused with `identity_mismatch`.

use serde::{Deserialize, Serialize};

use super::ErrorCode;

/// Largest `Hello`, `HelloAck` or `Refusal` frame payload accepted (4 KiB): the peer is not
/// admitted yet, so it cannot make a node buffer more than this per handshaking connection.
pub const HELLO_MAX_BYTES: u32 = 4 * 1024;

/// What the connecting node is to the node it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// A partner site (referral exchange). Variant index 0.
    Partner,
    /// The same site's hot standby. Variant index 1.
    Standby,
}

/// First frame of a connection, from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's federation (must match its certificate).
    pub federation: String,
    /// The sender's site (must match its certificate).
    pub site: String,
    /// The sender's node (must match its certificate).
    pub node: String,
    /// What the sender is to the receiver.
    pub role: Role,
    /// Every protocol version (ALPN string) of this family the sender speaks, preferred first.
    pub versions: Vec<String>,
    /// Optional features the sender supports (bit set; none defined yet).
    pub features: u64,
}

/// The server's acceptance of a `Hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// The version in use (the negotiated ALPN).
    pub version: String,
    /// The server's federation (must match its certificate).
    pub federation: String,
    /// The server's site (must match its certificate).
    pub site: String,
    /// The server's node (must match its certificate).
    pub node: String,
    /// Features both sides support (the intersection).
    pub features: u64,
}

/// A refusal of a connection or a request: a stable code and its fixed text, never internal text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Why.
    pub code: ErrorCode,
    /// The code's fixed text ([`ErrorCode::text`]); informational only.
    pub text: String,
}

impl Refusal {
    /// The refusal for a code, with the code's fixed text.
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            text: code.text().to_string(),
        }
    }
}
