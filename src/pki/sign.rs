//! Signing: a CSR in, a node certificate out. The CSR only contributes its public key (after its
//! signature proves the requester holds the private key); everything else in the certificate is
//! decided by the CA: one URI SAN `ttx://FEDERATION/SITE/NODE`, serverAuth + clientAuth, not a
//! CA, a random unique serial, validity from five minutes ago for the given number of days.

use std::path::Path;

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SerialNumber,
    SubjectPublicKeyInfo, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateSigningRequestDer;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

use super::ca::{uri_san, Ca, IndexEntry, BACKDATE};
use super::{check_days, fmt_time, serial_hex, spki_sha256_of_spki, PkiError};
use crate::identity::NodeIdentity;

/// A certificate the CA has just issued.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    /// The identity URI in the certificate.
    pub identity: String,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Expiry (RFC 3339).
    pub not_after: String,
    /// SHA-256 of the SubjectPublicKeyInfo (the key fingerprint).
    pub spki_sha256: String,
    /// The identity URIs the CSR asked for (ignored; shown so an admin notices a mismatch).
    pub requested: Vec<String>,
    /// The certificate, PEM.
    #[serde(skip)]
    pub cert_pem: String,
}

/// What a verified CSR offers: its public key (SubjectPublicKeyInfo DER) and the URIs it asks for.
struct VerifiedCsr {
    spki_der: Vec<u8>,
    requested: Vec<String>,
}

/// Signs a node CSR with the CA in `ca_dir` for `site`/`node` (the federation is the CA's) for
/// `days` days, records the certificate in the CA index and returns it. What the CSR asks for
/// beyond its key is ignored.
pub fn sign(
    ca_dir: &Path,
    csr_pem: &[u8],
    site: &str,
    node: &str,
    days: u32,
) -> Result<Issued, PkiError> {
    check_days(days)?;
    let ca = Ca::open(ca_dir)?;
    let identity = NodeIdentity::new(&ca.federation, site, node)?;
    let csr = verify_csr(csr_pem)?;
    let public_key = SubjectPublicKeyInfo::from_der(&csr.spki_der)
        .map_err(|e| PkiError::invalid("certificate signing request", e))?;
    if rcgen::PublicKeyData::algorithm(&public_key) != &PKCS_ECDSA_P256_SHA256 {
        return Err(PkiError::invalid(
            "certificate signing request",
            "the key must be ecdsa p-256",
        ));
    }

    let mut index = ca.index()?;
    let revoked = ca.revocations()?.revoked;
    let serial = loop {
        let candidate = random_serial()?;
        let hex = serial_hex(&candidate);
        let taken =
            index.iter().any(|e| e.serial == hex) || revoked.iter().any(|e| e.serial == hex);
        if !taken {
            break candidate;
        }
    };

    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{}/{}", identity.site, identity.node),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, identity.federation.as_str());
    params.subject_alt_names = vec![uri_san(&identity.to_uri())?];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    let cert = params
        .signed_by(&public_key, &ca.issuer()?)
        .map_err(|e| PkiError::crypto("signing the certificate", e))?;

    let issued = Issued {
        identity: identity.to_uri(),
        serial: serial_hex(&serial),
        not_after: fmt_time(params.not_after),
        spki_sha256: spki_sha256_of_spki(&csr.spki_der),
        requested: csr.requested,
        cert_pem: cert.pem(),
    };
    index.push(IndexEntry {
        serial: issued.serial.clone(),
        identity: issued.identity.clone(),
        issued_at: fmt_time(now),
        not_after: issued.not_after.clone(),
        spki_sha256: issued.spki_sha256.clone(),
    });
    ca.save_index(&index)?;
    Ok(issued)
}

/// Parses a CSR, PEM or DER (a DER CSR is one ASN.1 SEQUENCE, byte 0x30; anything else is read
/// as PEM), and checks its self-signature (proof that the requester holds the key).
fn verify_csr(csr_pem: &[u8]) -> Result<VerifiedCsr, PkiError> {
    const WHAT: &str = "certificate signing request";
    let der = if csr_pem.first() == Some(&0x30) {
        CertificateSigningRequestDer::from(csr_pem.to_vec())
    } else {
        CertificateSigningRequestDer::from_pem_slice(csr_pem)
            .map_err(|e| PkiError::invalid(WHAT, e))?
    };
    let (_, csr) =
        X509CertificationRequest::from_der(der.as_ref()).map_err(|e| PkiError::invalid(WHAT, e))?;
    csr.verify_signature()
        .map_err(|_| PkiError::invalid(WHAT, "its signature does not verify"))?;
    let mut requested = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name {
                    requested.push(uri.to_string());
                }
            }
        }
    }
    Ok(VerifiedCsr {
        spki_der: csr.certification_request_info.subject_pki.raw.to_vec(),
        requested,
    })
}

/// 16 random bytes with the top bit cleared (a positive DER integer) and a non-zero first byte
/// (so the DER encoding is exactly these bytes and the hex shown is the hex stored).
pub(crate) fn random_serial() -> Result<[u8; 16], PkiError> {
    let rng = ring::rand::SystemRandom::new();
    loop {
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut serial)
            .map_err(|e| PkiError::crypto("drawing a random serial", e))?;
        serial[0] &= 0x7f;
        if serial[0] != 0 {
            return Ok(serial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{parse_cert, test_ca};

    fn csr_for(uri: &str) -> String {
        let key = rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![uri_san(uri).unwrap()];
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    #[test]
    fn the_ca_decides_the_identity_and_usages() {
        let (_tmp, ca_dir) = test_ca("eu");
        let csr = csr_for("ttx://other/evil/admin");
        let issued = sign(&ca_dir, csr.as_bytes(), "noc-a", "primary", 10).unwrap();
        assert_eq!(issued.identity, "ttx://eu/noc-a/primary");
        assert_eq!(issued.requested, vec!["ttx://other/evil/admin".to_string()]);
        let der = crate::pki::pem_certs(issued.cert_pem.as_bytes(), "c").unwrap();
        let id = NodeIdentity::from_cert_der(&der[0]).unwrap();
        assert_eq!(id.to_uri(), "ttx://eu/noc-a/primary");
        let cert = parse_cert(&der[0]).unwrap();
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert_eq!(serial_hex(cert.raw_serial()), issued.serial);
        let ca = Ca::open(&ca_dir).unwrap();
        let ca_cert = parse_cert(&ca.cert_der).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(ca.index().unwrap()[0].serial, issued.serial);
    }

    #[test]
    fn a_der_csr_is_accepted_like_a_pem_one() {
        let (_tmp, ca_dir) = test_ca("eu");
        let csr = csr_for("ttx://eu/noc-a/primary");
        let der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap()
            .to_vec();
        let issued = sign(&ca_dir, &der, "noc-a", "primary", 10).unwrap();
        assert_eq!(issued.identity, "ttx://eu/noc-a/primary");
        let mut bad = der.clone();
        let n = bad.len();
        bad[n - 5] ^= 0x01;
        assert!(sign(&ca_dir, &bad, "noc-a", "primary", 10).is_err());
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let (_tmp, ca_dir) = test_ca("eu");
        let csr = csr_for("ttx://eu/noc-a/primary");
        let mut der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .unwrap()
            .to_vec();
        let n = der.len();
        der[n - 5] ^= 0x01; // flip a bit of the signature
        let pem = crate::pki::pem_block("CERTIFICATE REQUEST", &der);
        let err = sign(&ca_dir, pem.as_bytes(), "noc-a", "primary", 10).unwrap_err();
        assert!(
            err.to_string().contains("certificate signing request"),
            "{err}"
        );
        assert!(sign(&ca_dir, b"junk", "noc-a", "primary", 10).is_err());
    }

    #[test]
    fn serials_have_a_positive_minimal_encoding() {
        for _ in 0..200 {
            let s = random_serial().unwrap();
            assert!(s[0] != 0 && s[0] < 0x80);
        }
    }
}
