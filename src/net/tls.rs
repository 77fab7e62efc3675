//! rustls server and client configs from plain inputs, with ttx's certificate verifiers.
//!
//! Both verifiers run the same [`Trust::check`]:
//! 1. the certificate carries exactly one valid `ttx://FEDERATION/SITE/NODE` URI SAN
//!    ([`NodeIdentity::from_cert_der`]) and names our federation, unless its site is pinned
//!    (a pinned partner may run its own PKI under its own federation name);
//! 2. its SPKI SHA-256 is not on the deny list;
//! 3. if the peer's site is pinned, the key must be one of the site's pins and the certificate
//!    within its validity period (no CA needed: bilateral partners); a pinned site never falls
//!    back to the CA bundle;
//! 4. otherwise the chain must validate against the CA bundle (webpki) with the CRLs, where a
//!    configured CRL makes an undetermined status fail;
//! 5. on the client side, the server's site must be the site we dialed (the TLS server name).
//!
//! TLS 1.3 only, the ring provider passed explicitly, client certificates required, no early data.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::identity::{IdentityError, NodeIdentity};

/// Why a peer certificate is refused by ttx's own rules (the webpki rules report rustls errors).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The certificate carries no valid `ttx://` identity.
    #[error("peer certificate has no valid ttx identity: {0}")]
    Identity(#[from] IdentityError),
    /// The peer belongs to another federation.
    #[error("peer is in federation {presented:?}, not {expected:?}")]
    WrongFederation {
        /// Ours.
        expected: String,
        /// Theirs.
        presented: String,
    },
    /// The server is not the site we dialed.
    #[error("peer certificate names site {presented:?}, but site {expected:?} was dialed")]
    SiteMismatch {
        /// The site dialed.
        expected: String,
        /// The site in the certificate.
        presented: String,
    },
    /// The site is pinned and the key is not one of its pins.
    #[error("site {site:?} is pinned and key {spki} is not one of its pins")]
    PinMismatch {
        /// The pinned site.
        site: String,
        /// The key presented (a public fingerprint).
        spki: String,
    },
    /// The key is on the deny list.
    #[error("key {spki} is denied")]
    DeniedKey {
        /// The denied key's fingerprint.
        spki: String,
    },
}

impl From<TrustError> for rustls::Error {
    fn from(e: TrustError) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }
}

/// The fixed stand-in for ttx's own refusals (wrong federation, site, pin, identity) in what
/// TLS tells the peer: the alert stays `certificate_unknown`, the details stay in our log.
#[derive(Debug, thiserror::Error)]
#[error("certificate_unknown")]
struct CertificateUnknown;

/// Why a verifier refused, as the peer is told: the same TLS alert as `e` and a fixed text that
/// carries no name, key, pin or clock (quinn sends rustls' `Display` text in the close reason).
fn quiet(e: &rustls::Error) -> rustls::Error {
    use CertificateError as C;
    let stable = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::ExpiredContext { .. } | C::Expired => C::Expired,
            C::NotValidYetContext { .. } | C::NotValidYet => C::NotValidYet,
            C::ExpiredRevocationListContext { .. } | C::ExpiredRevocationList => {
                C::ExpiredRevocationList
            }
            C::InvalidPurposeContext { .. } | C::InvalidPurpose => C::InvalidPurpose,
            C::NotValidForNameContext { .. } | C::NotValidForName => C::NotValidForName,
            C::BadEncoding => C::BadEncoding,
            C::Revoked => C::Revoked,
            C::UnknownIssuer => C::UnknownIssuer,
            C::UnknownRevocationStatus => C::UnknownRevocationStatus,
            C::UnhandledCriticalExtension => C::UnhandledCriticalExtension,
            C::ApplicationVerificationFailure => C::ApplicationVerificationFailure,
            C::Other(_) => C::Other(OtherError(Arc::new(CertificateUnknown))),
            // Signature problems (alert decrypt_error) and anything newer.
            _ => C::BadSignature,
        },
        rustls::Error::UnsupportedNameType => return rustls::Error::UnsupportedNameType,
        _ => C::Other(OtherError(Arc::new(CertificateUnknown))),
    };
    stable.into()
}

/// Logs a refused peer certificate with its details (we run inside the connection's span, which
/// holds the peer's address) and returns the quiet error for the peer.
fn refuse(end_entity: &CertificateDer<'_>, e: rustls::Error) -> rustls::Error {
    let peer = NodeIdentity::from_cert_der(end_entity)
        .map(|id| id.to_string())
        .unwrap_or_else(|_| "(no ttx identity)".into());
    let spki = spki_sha256(end_entity).unwrap_or_default();
    tracing::warn!(%peer, %spki, reason = %e, "peer certificate refused");
    quiet(&e)
}

/// Why TLS configs could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// rustls refused the configuration (bad key, bad certificate, no TLS 1.3).
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA bundle or a CRL is unusable.
    #[error("trust anchors or CRLs: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A CA certificate could not be added.
    #[error("CA certificate: {0}")]
    Ca(String),
    /// Our own certificate has no valid identity.
    #[error("own certificate: {0}")]
    Identity(#[from] IdentityError),
    /// quinn refused the rustls config.
    #[error("quic crypto: {0}")]
    Quic(String),
    /// A chain was empty.
    #[error("own certificate chain is empty")]
    EmptyChain,
}

/// The lowercase hex SHA-256 of a certificate's DER SubjectPublicKeyInfo: the key fingerprint
/// admins see, pin and deny.
pub fn spki_sha256(cert_der: &[u8]) -> Result<String, IdentityError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    // One definition of the fingerprint for the whole crate: the PKI's.
    Ok(crate::pki::spki_sha256_of_spki(cert.public_key().raw))
}

/// A certificate's issuer, as its distinguished name reads (`CN=ttx federation CA eu, ...`):
/// which CA signed it, shown on the pending list.
pub fn issuer_name(cert_der: &[u8]) -> Result<String, IdentityError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    Ok(cert.issuer().to_string())
}

/// A certificate's validity period as UNIX seconds `(not_before, not_after)`.
pub fn validity(cert_der: &[u8]) -> Result<(i64, i64), IdentityError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Our own certificate chain (leaf first) and private key.
pub struct LocalCert {
    /// Leaf first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key (never logged, never shown in `Debug`).
    pub key: PrivateKeyDer<'static>,
}

impl Clone for LocalCert {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for LocalCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCert")
            .field("chain_len", &self.chain.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Everything that decides whom we trust; swapped whole by `Endpoint::reload`.
#[derive(Debug, Clone, Default)]
pub struct TrustConfig {
    /// Trusted CA certificates (several during a CA rotation).
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// CRLs; once any is configured, every CA needs one.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// Key fingerprints refused whatever their certificate says.
    pub deny_spki: BTreeSet<String>,
    /// Pinned partners: site → allowed key fingerprints (no shared CA needed).
    pub pins: BTreeMap<String, BTreeSet<String>>,
}

/// Which side of the handshake a check runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerSide {
    /// We are the server, checking a client certificate.
    Client,
    /// We are the client, checking the server of the site we dialed.
    Server {
        /// The site dialed.
        site: String,
    },
}

/// A compiled [`TrustConfig`] for one federation: the single place peer certificates are judged.
#[derive(Debug)]
pub struct Trust {
    federation: String,
    config: TrustConfig,
    client_chain: Option<Arc<dyn ClientCertVerifier>>,
    server_chain: Option<Arc<WebPkiServerVerifier>>,
    algs: WebPkiSupportedAlgorithms,
}

/// The ring provider, the only one compiled in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Trust {
    /// Compiles the trust inputs for our federation.
    pub fn new(federation: &str, config: TrustConfig) -> Result<Self, TlsConfigError> {
        let provider = provider();
        let (client_chain, server_chain) = if config.ca_certs.is_empty() {
            (None, None)
        } else {
            let mut roots = RootCertStore::empty();
            for ca in &config.ca_certs {
                roots
                    .add(ca.clone())
                    .map_err(|e| TlsConfigError::Ca(e.to_string()))?;
            }
            let roots = Arc::new(roots);
            let client =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .with_crls(config.crls.iter().cloned())
                    .build()?;
            let server = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .with_crls(config.crls.iter().cloned())
                .build()?;
            (Some(client), Some(server))
        };
        Ok(Self {
            federation: federation.to_string(),
            config,
            client_chain,
            server_chain,
            algs: provider.signature_verification_algorithms,
        })
    }

    /// The inputs this trust was compiled from.
    pub fn config(&self) -> &TrustConfig {
        &self.config
    }

    /// Judges a peer certificate chain at `now`; the peer's identity if it is trusted.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        side: &PeerSide,
        now: UnixTime,
    ) -> Result<NodeIdentity, rustls::Error> {
        let id = NodeIdentity::from_cert_der(end_entity).map_err(TrustError::Identity)?;
        // A pinned site is trusted by its key, whatever federation (and PKI) it runs: pinning
        // is how two NOCs talk without a shared CA. Every other peer must be in ours.
        let pinned = self.config.pins.contains_key(&id.site);
        if id.federation != self.federation && !pinned {
            return Err(TrustError::WrongFederation {
                expected: self.federation.clone(),
                presented: id.federation,
            }
            .into());
        }
        if let PeerSide::Server { site } = side {
            if &id.site != site {
                return Err(TrustError::SiteMismatch {
                    expected: site.clone(),
                    presented: id.site,
                }
                .into());
            }
        }
        let spki = spki_sha256(end_entity).map_err(TrustError::Identity)?;
        if self.config.deny_spki.contains(&spki) {
            tracing::warn!(peer = %id, %spki, "refusing a denied key");
            return Err(CertificateError::ApplicationVerificationFailure.into());
        }
        if let Some(pins) = self.config.pins.get(&id.site) {
            if !pins.contains(&spki) {
                return Err(TrustError::PinMismatch {
                    site: id.site,
                    spki,
                }
                .into());
            }
            check_validity(end_entity, now)?;
            return Ok(id);
        }
        match side {
            PeerSide::Client => {
                let Some(v) = &self.client_chain else {
                    return Err(CertificateError::UnknownIssuer.into());
                };
                v.verify_client_cert(end_entity, intermediates, now)?;
            }
            PeerSide::Server { site } => {
                let Some(v) = &self.server_chain else {
                    return Err(CertificateError::UnknownIssuer.into());
                };
                let name = ServerName::try_from(site.clone()).map_err(|_| {
                    rustls::Error::General("site is not a valid server name".into())
                })?;
                // webpki checks chain, validity and revocation first and the DNS name last; node
                // certificates carry a URI SAN, not a DNS name, so a name error means the chain
                // passed. The site was compared with the URI SAN above.
                match v.verify_server_cert(end_entity, intermediates, &name, &[], now) {
                    Ok(_) => {}
                    Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    )) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(id)
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
}

fn check_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (not_before, not_after) = validity(cert).map_err(TrustError::Identity)?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now < not_before {
        return Err(CertificateError::NotValidYet.into());
    }
    if now > not_after {
        return Err(CertificateError::Expired.into());
    }
    Ok(())
}

/// Server side: verifies client certificates with [`Trust::check`]; a certificate is mandatory.
#[derive(Debug)]
struct ClientVerifier(Arc<Trust>);

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .check(end_entity, intermediates, &PeerSide::Client, now)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|e| refuse(end_entity, e))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}

/// Client side: verifies the server certificate with [`Trust::check`] against the site dialed.
#[derive(Debug)]
struct ServerVerifier(Arc<Trust>);

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ServerName::DnsName(site) = server_name else {
            return Err(rustls::Error::UnsupportedNameType);
        };
        let side = PeerSide::Server {
            site: site.as_ref().to_string(),
        };
        self.0
            .check(end_entity, intermediates, &side, now)
            .map(|_| ServerCertVerified::assertion())
            .map_err(|e| refuse(end_entity, e))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algs.supported_schemes()
    }
}

/// The rustls server config: TLS 1.3, our chain, mandatory client certificates judged by
/// `trust`, the given ALPN list (server preference order), no early data.
pub fn server_config(
    local: &LocalCert,
    trust: Arc<Trust>,
    alpns: &[String],
) -> Result<rustls::ServerConfig, TlsConfigError> {
    if local.chain.is_empty() {
        return Err(TlsConfigError::EmptyChain);
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ClientVerifier(trust)))
        .with_single_cert(local.chain.clone(), local.key.clone_key())?;
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    config.max_early_data_size = 0;
    Ok(config)
}

/// The rustls client config: TLS 1.3, our chain as client certificate, the server judged by
/// `trust` against the site dialed, the given ALPN list, no early data.
pub fn client_config(
    local: &LocalCert,
    trust: Arc<Trust>,
    alpns: &[String],
) -> Result<rustls::ClientConfig, TlsConfigError> {
    if local.chain.is_empty() {
        return Err(TlsConfigError::EmptyChain);
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ServerVerifier(trust)))
        .with_client_auth_cert(local.chain.clone(), local.key.clone_key())?;
    config.alpn_protocols = alpns.iter().map(|a| a.as_bytes().to_vec()).collect();
    config.enable_early_data = false;
    Ok(config)
}
