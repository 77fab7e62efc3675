//! Errors of the transport, typed per operation, and the classification of TLS failures.

use std::fmt;

use quinn::ConnectionError;
use rustls::AlertDescription;

use super::tls::TlsConfigError;
use crate::wire::{ErrorCode, WireError};

/// A TLS handshake failure, as either side sees it: the TLS alert (sent by us or received from the
/// peer) and the local reason text (rustls' message when we refused, empty when the peer did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// The TLS alert, if the failure was a TLS alert.
    pub alert: Option<AlertDescription>,
    /// Whether we sent the alert (we refused the peer) rather than received it.
    pub local: bool,
    /// The local reason (for logs; never sent to the peer beyond the alert).
    pub reason: String,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.local {
            "refused peer"
        } else {
            "refused by peer"
        };
        match self.alert {
            Some(a) => write!(f, "{who} with tls alert {a:?}")?,
            None => write!(f, "{who}")?,
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

impl HandshakeFailure {
    /// Extracts a TLS failure from a connection error, if it is one.
    pub fn from_connection_error(e: &ConnectionError) -> Option<Self> {
        let alert = |code: u64| {
            (0x100..0x200)
                .contains(&code)
                .then(|| AlertDescription::from((code - 0x100) as u8))
        };
        match e {
            ConnectionError::TransportError(t) => alert(u64::from(t.code)).map(|a| Self {
                alert: Some(a),
                local: true,
                reason: t.reason.clone(),
            }),
            ConnectionError::ConnectionClosed(c) => alert(u64::from(c.error_code)).map(|a| Self {
                alert: Some(a),
                local: false,
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            }),
            _ => None,
        }
    }
}

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The UDP socket could not be bound.
    #[error("cannot bind the transport: {0}")]
    Bind(#[source] std::io::Error),
    /// TLS configs could not be built.
    #[error(transparent)]
    TlsConfig(#[from] TlsConfigError),
    /// The connection could not be started (bad address, bad server name).
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The TLS handshake failed (bad or missing certificate, no common ALPN, ...).
    #[error("tls handshake failed: {0}")]
    Handshake(HandshakeFailure),
    /// The peer refused our Hello, or closed the connection with a code.
    #[error("refused by peer: {0}")]
    Refused(ErrorCode),
    /// We refused the peer (its Hello, identity or admission) with a code.
    #[error("refused peer: {0}")]
    RefusedPeer(ErrorCode),
    /// The peer answered a request with an error frame.
    #[error("peer answered: {0}")]
    Remote(ErrorCode),
    /// A wait exceeded its configured timeout.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The connection was lost.
    #[error("connection lost: {0}")]
    Connection(ConnectionError),
    /// A stream failed.
    #[error("stream failed: {0}")]
    Stream(String),
    /// The peer sent a frame we cannot use.
    #[error("bad frame from peer: {0}")]
    Wire(#[from] WireError),
    /// The peer sent a valid frame that does not belong here.
    #[error("unexpected frame from peer")]
    Unexpected,
    /// No protocol of that family is registered here.
    #[error("no protocol of family {0:?} is registered")]
    UnknownProtocol(String),
    /// No connection to that peer.
    #[error("not connected to {0}")]
    NotConnected(String),
}

impl NetError {
    /// Classifies a connection error: TLS alert, close by the peer with a ttx code, or lost.
    pub fn from_connection(e: ConnectionError) -> Self {
        if let Some(h) = HandshakeFailure::from_connection_error(&e) {
            return NetError::Handshake(h);
        }
        match &e {
            ConnectionError::ApplicationClosed(c) => {
                match u16::try_from(c.error_code.into_inner())
                    .ok()
                    .and_then(ErrorCode::from_u16)
                {
                    Some(code) => NetError::Refused(code),
                    None => NetError::Connection(e),
                }
            }
            ConnectionError::TimedOut => NetError::Timeout("the peer (idle timeout)"),
            _ => NetError::Connection(e),
        }
    }

    /// The TLS alert of a handshake failure, if this is one.
    pub fn alert(&self) -> Option<AlertDescription> {
        match self {
            NetError::Handshake(h) => h.alert,
            _ => None,
        }
    }
}

impl From<quinn::ReadError> for NetError {
    fn from(e: quinn::ReadError) -> Self {
        match e {
            quinn::ReadError::ConnectionLost(c) => NetError::from_connection(c),
            other => NetError::Stream(other.to_string()),
        }
    }
}

impl From<quinn::WriteError> for NetError {
    fn from(e: quinn::WriteError) -> Self {
        match e {
            quinn::WriteError::ConnectionLost(c) => NetError::from_connection(c),
            other => NetError::Stream(other.to_string()),
        }
    }
}

impl From<ConnectionError> for NetError {
    fn from(e: ConnectionError) -> Self {
        NetError::from_connection(e)
    }
}
