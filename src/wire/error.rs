//! Stable error codes carried on the wire, and the error type of the codec.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a frame could not be encoded or decoded. Never sent to a peer as text: the endpoint maps it
/// to an [`ErrorCode`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The length prefix announces more bytes than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Announced payload length.
        len: u64,
        /// Configured maximum.
        max: u32,
    },
    /// The input ends before the frame does.
    #[error("truncated frame: {needed} more bytes needed")]
    Truncated {
        /// Bytes missing.
        needed: usize,
    },
    /// The payload is not a valid message (bad variant, bad UTF-8, size limit hit, bytes left over).
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A message could not be encoded (it would exceed the codec's size limit).
    #[error("cannot encode frame: {0}")]
    Encode(String),
}

impl WireError {
    /// The code a peer is told when this error is about its frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::Truncated { .. } | WireError::Malformed(_) => ErrorCode::Malformed,
            WireError::Encode(_) => ErrorCode::Internal,
        }
    }
}

/// Stable error codes of the protocol, encoded as a little-endian `u16`.
///
/// Codes are never renumbered; new codes are appended (and sent only on new ALPN versions, since an
/// older peer refuses a code it does not know as malformed). A code never carries internal error
/// text: [`ErrorCode::text`] is the fixed text that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u16", try_from = "u16")]
#[repr(u16)]
pub enum ErrorCode {
    /// A normal close: nothing is wrong (only ever a QUIC close code, never in a frame).
    Closed = 0,
    /// None of the offered protocol versions is spoken here.
    UnsupportedVersion = 1,
    /// The peer is not registered; it has been put on the pending list for an admin.
    UnknownPeer = 2,
    /// The peer is registered and denied.
    Denied = 3,
    /// The peer may not do this (protocol, role or request not permitted).
    NotAuthorized = 4,
    /// A length prefix exceeded the maximum.
    FrameTooLarge = 5,
    /// A frame could not be decoded, or came out of order.
    Malformed = 6,
    /// The peer took too long.
    Timeout = 7,
    /// A cap (connections, streams, rate) was reached.
    Overloaded = 8,
    /// The Hello does not name the identity of the certificate, or the peer is not who was dialed.
    IdentityMismatch = 9,
    /// Something failed on this side; details are in its log only.
    Internal = 10,
    /// The peer's certificate was revoked, expired or its key denied while connected.
    TrustRevoked = 11,
    /// The node is shutting down.
    ShuttingDown = 12,
    /// The peer was removed from the registry (only ever a QUIC close code, never in a frame).
    Removed = 13,
    /// `ttx-repl/1`: this node is not its site's primary (a standby or fenced node serves no
    /// replication stream); the subscriber should look for the primary elsewhere.
    NotPrimary = 14,
    /// `ttx-repl/1`: the subscriber's log is not a prefix of this primary's (it wants positions
    /// past the head, or acknowledged positions never sent): it must be rebuilt or rejoined.
    Diverged = 15,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::Closed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownPeer,
        ErrorCode::Denied,
        ErrorCode::NotAuthorized,
        ErrorCode::FrameTooLarge,
        ErrorCode::Malformed,
        ErrorCode::Timeout,
        ErrorCode::Overloaded,
        ErrorCode::IdentityMismatch,
        ErrorCode::Internal,
        ErrorCode::TrustRevoked,
        ErrorCode::ShuttingDown,
        ErrorCode::Removed,
        ErrorCode::NotPrimary,
        ErrorCode::Diverged,
    ];

    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a number, if it is known.
    pub fn from_u16(n: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == n)
    }

    /// The fixed, short text sent with the code.
    pub fn text(self) -> &'static str {
        match self {
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::Denied => "denied",
            ErrorCode::NotAuthorized => "not_authorized",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::IdentityMismatch => "identity_mismatch",
            ErrorCode::Internal => "internal",
            ErrorCode::TrustRevoked => "trust_revoked",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Closed => "closed",
            ErrorCode::Removed => "removed",
            ErrorCode::NotPrimary => "not_primary",
            ErrorCode::Diverged => "diverged",
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        c.as_u16()
    }
}

impl TryFrom<u16> for ErrorCode {
    type Error = String;
    fn try_from(n: u16) -> Result<Self, String> {
        ErrorCode::from_u16(n).ok_or_else(|| format!("unknown error code {n}"))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.text(), self.as_u16())
    }
}
