//! Real certificates for tests and benchmarks (not for production PKI: see `crate::pki`).
//!
//! A [`TestCa`] issues node certificates carrying the `ttx://FEDERATION/SITE/NODE` URI SAN,
//! with any validity window, and signs CRLs.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};

use super::tls::LocalCert;
use crate::identity::NodeIdentity;

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate.
    pub cert: CertificateDer<'static>,
    next_serial: u64,
}

/// A node certificate issued by a [`TestCa`] (or self-signed), with its key.
#[derive(Clone, Debug)]
pub struct TestNode {
    /// The identity in its URI SAN.
    pub identity: NodeIdentity,
    /// Chain and key.
    pub local: LocalCert,
    /// Its serial number.
    pub serial: u64,
}

impl TestNode {
    /// The leaf certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.local.chain[0]
    }

    /// Its SPKI SHA-256 fingerprint.
    pub fn spki(&self) -> String {
        super::tls::spki_sha256(self.cert()).unwrap_or_default()
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(365);
    p
}

/// Node certificate parameters valid from `now + from_secs` to `now + to_secs`.
fn node_params(id: &str, serial: u64, from_secs: i64, to_secs: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, id);
    if let Ok(uri) = id.to_string().try_into() {
        p.subject_alt_names = vec![SanType::URI(uri)];
    }
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.serial_number = Some(SerialNumber::from(serial));
    let now = OffsetDateTime::now_utc();
    p.not_before = now + Duration::seconds(from_secs);
    p.not_after = now + Duration::seconds(to_secs);
    p
}

fn local(cert: CertificateDer<'static>, key: &KeyPair) -> LocalCert {
    LocalCert {
        chain: vec![cert],
        key: PrivateKeyDer::try_from(key.serialize_der()).expect("rcgen key is PKCS#8"),
    }
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let params = ca_params(name);
        let cert = params.self_signed(&key).expect("self-sign CA");
        Self {
            issuer: Issuer::new(params, key),
            cert: cert.der().clone(),
            next_serial: 1000,
        }
    }

    /// Issues a node certificate for `ttx://federation/site/node`, valid now for 30 days.
    pub fn node(&mut self, federation: &str, site: &str, node: &str) -> TestNode {
        self.node_valid(federation, site, node, -3600, 30 * 86400)
    }

    /// Issues a node certificate valid from `now + from_secs` to `now + to_secs`.
    pub fn node_valid(
        &mut self,
        federation: &str,
        site: &str,
        node: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> TestNode {
        self.node_with_uri(
            &format!("ttx://{federation}/{site}/{node}"),
            from_secs,
            to_secs,
        )
    }

    /// Issues a certificate with any URI SAN text (to test bad identities).
    pub fn node_with_uri(&mut self, uri: &str, from_secs: i64, to_secs: i64) -> TestNode {
        self.next_serial += 1;
        let serial = self.next_serial;
        let key = KeyPair::generate().expect("generate node key");
        let params = node_params(uri, serial, from_secs, to_secs);
        let cert = params.signed_by(&key, &self.issuer).expect("sign node");
        TestNode {
            identity: NodeIdentity::parse_uri(uri).unwrap_or_else(|_| {
                NodeIdentity::new("invalid", "invalid", "invalid").expect("literal identity")
            }),
            local: local(cert.der().clone(), &key),
            serial,
        }
    }

    /// A CRL revoking the given serials, valid for a day.
    pub fn crl(&self, revoked: &[u64]) -> CertificateRevocationListDer<'static> {
        let now = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(1),
            next_update: now + Duration::days(1),
            crl_number: SerialNumber::from(now.unix_timestamp() as u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("sign CRL")
            .der()
            .clone()
    }
}

/// A self-signed node certificate (for pinned peers without a CA).
pub fn self_signed_node(federation: &str, site: &str, node: &str) -> TestNode {
    self_signed_node_valid(federation, site, node, -3600, 30 * 86400)
}

/// A self-signed node certificate valid from `now + from_secs` to `now + to_secs`.
pub fn self_signed_node_valid(
    federation: &str,
    site: &str,
    node: &str,
    from_secs: i64,
    to_secs: i64,
) -> TestNode {
    let uri = format!("ttx://{federation}/{site}/{node}");
    let key = KeyPair::generate().expect("generate node key");
    let params = node_params(&uri, 1, from_secs, to_secs);
    let cert = params.self_signed(&key).expect("self-sign node");
    TestNode {
        identity: NodeIdentity::parse_uri(&uri).expect("valid test identity"),
        local: local(cert.der().clone(), &key),
        serial: 1,
    }
}
