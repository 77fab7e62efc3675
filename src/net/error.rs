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

/// What a TLS alert means, said as a person would: the alert ttx's verifier sends for each of
/// its refusals (`docs/protocol.md`), from the side that refused (`local`: we refused its
/// certificate) or the side refused (we were told by the peer).
fn alert_text(alert: AlertDescription, local: bool) -> String {
    use AlertDescription as A;
    let text = match (alert, local) {
        (A::UnknownCA, true) => {
            "its certificate is not signed by any CA in tls/ca.pem (or, with CRLs in use, its CA \
             has no current CRL in tls/crl/): install its CA (`ttx pki trust add CA_CERT`) or pin \
             its key (`ttx peer add SITE --pin SPKI`)"
        }
        (A::UnknownCA, false) => {
            "it does not trust our certificate: not signed by any CA it holds (or, with CRLs in \
             use, our CA has no current CRL there): have its admin install our CA or pin our key \
             (`ttx pki show DIR/tls/node.crt` gives the SPKI)"
        }
        (A::DecryptError, true) => {
            "its certificate does not verify against the CA of that name in tls/ca.pem (another CA \
             with the same name?): install the CA that really issued it, or pin its key"
        }
        (A::DecryptError, false) => {
            "our certificate does not verify against its CA of that name (another CA with the \
             same name?): have its admin install the CA that issued ours"
        }
        (A::CertificateRevoked, true) => {
            "its certificate is revoked by a CRL in tls/crl/: it needs a new certificate"
        }
        (A::CertificateRevoked, false) => {
            "it holds a CRL that revokes our certificate: get a new one from the federation CA"
        }
        (A::CertificateExpired, true) => {
            "its certificate has expired or is not valid yet (check both clocks): it must renew it"
        }
        (A::CertificateExpired, false) => {
            "it says our certificate has expired or is not valid yet (check both clocks): renew \
             ours (`ttx pki request`)"
        }
        (A::UnsupportedCertificate, true) => {
            "its certificate is not for ttx nodes (an extended key usage without clientAuth or \
             serverAuth)"
        }
        (A::UnsupportedCertificate, false) => {
            "it says our certificate is not for ttx nodes (extended key usage)"
        }
        (A::AccessDenied, true) => {
            "its key is on this node's deny list (`ttx pki undeny SPKI` lifts it)"
        }
        (A::AccessDenied, false) => "our key is on its deny list",
        (A::CertificateUnknown, true) => {
            "its certificate names another federation or site, carries no valid ttx identity, or \
             shows a key other than the one pinned for its site (this node's log says which)"
        }
        (A::CertificateUnknown, false) => {
            "it refused our certificate: another federation or site than it expects, or a key \
             other than the one it pinned for us (its log says which)"
        }
        (A::CertificateRequired, true) => "it sent no client certificate",
        (A::CertificateRequired, false) => "it wants a client certificate and got none",
        (A::NoApplicationProtocol, _) => "no protocol version in common (ALPN)",
        (other, _) => return format!("TLS alert {}", u8::from(other)),
    };
    text.to_string()
}

/// Human text: who refused whom and why (never rustls' `Debug` names); the local reason text,
/// when there is one, stays in the struct for the logs that want it.
impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.alert, self.local) {
            (Some(a), true) => write!(f, "refused its certificate: {}", alert_text(a, true)),
            (Some(a), false) => write!(f, "refused by the peer: {}", alert_text(a, false)),
            (None, true) => write!(f, "refused the peer"),
            (None, false) => write!(f, "refused by the peer"),
        }
    }
}

/// What a ttx refusal code means for the operator who got it: `by_peer` when the peer refused
/// us, else we refused it. The code's stable name stays in the text (scripts grep for it).
pub fn refusal_text(code: ErrorCode, by_peer: bool) -> String {
    let name = code.text();
    let why = match (code, by_peer) {
        (ErrorCode::UnknownPeer, true) => {
            "it has not accepted this site yet: this site is on its pending list until its admin \
             runs `ttx peer accept`"
        }
        (ErrorCode::UnknownPeer, false) => {
            "this node has not accepted that site: see `ttx peer pending`"
        }
        (ErrorCode::Denied, true) => "its admin denied this site (or pinned another key for it)",
        (ErrorCode::Denied, false) => "this node denies that site (`ttx peer list`)",
        (ErrorCode::NotAuthorized, true) => {
            "this site may not do that there: its admin must allow it (`ttx peer add SITE \
             --allow ...`)"
        }
        (ErrorCode::NotAuthorized, false) => "that site may not do that here",
        (ErrorCode::TrustRevoked, _) => {
            "the certificate is no longer trusted (revoked, expired or denied)"
        }
        (ErrorCode::IdentityMismatch, _) => {
            "the Hello or the answer names another node than the certificate"
        }
        (ErrorCode::UnsupportedVersion, _) => "no protocol version in common",
        (ErrorCode::Overloaded, _) => "too many connections from this peer; try again later",
        (ErrorCode::ShuttingDown, _) => "the node is shutting down",
        (ErrorCode::Removed, _) => "the site was removed from the registry",
        _ => return name.to_string(),
    };
    format!("{why} ({name})")
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
    #[error("TLS handshake failed: {0}")]
    Handshake(HandshakeFailure),
    /// The peer refused our Hello, or closed the connection with a code.
    #[error("refused by the peer: {}", refusal_text(*.0, true))]
    Refused(ErrorCode),
    /// We refused the peer (its Hello, identity or admission) with a code.
    #[error("refused the peer: {}", refusal_text(*.0, false))]
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
