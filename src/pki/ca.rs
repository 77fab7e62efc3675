//! The federation CA directory and its state.
//!
//! ```text
//! CA_DIR/ca.key        the CA private key (ECDSA P-256, PKCS#8 PEM, 0600)
//! CA_DIR/ca.crt        the CA certificate; its URI SAN ttx://FEDERATION records the federation
//! CA_DIR/index.json    every issued certificate: serial, identity, not_after, SPKI SHA-256
//! CA_DIR/revoked.json  the revocation list (serial, reason, revoked_at) and the last CRL number
//! ```
//!
//! The CA is an admin tool run by one admin at a time; state files are replaced atomically.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    PKCS_ECDSA_P256_SHA256,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::files::{self, create_private_dir, write_public, write_secret};
use super::inspect::{summarize_cert, CertSummary};
use super::{ca_federation, check_days, parse_cert, pem_certs, PkiError};
use crate::identity::validate_name;

/// How far back a new certificate's validity starts, to absorb clock skew between nodes.
pub(crate) const BACKDATE: Duration = Duration::minutes(5);

/// Paths inside a CA directory.
#[derive(Debug, Clone)]
pub struct CaDir {
    root: PathBuf,
}

impl CaDir {
    /// Wraps a CA directory path; nothing is read.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The CA private key (0600).
    pub fn key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    /// The CA certificate.
    pub fn cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    /// The index of issued certificates.
    pub fn index(&self) -> PathBuf {
        self.root.join("index.json")
    }
    /// The revocation list and CRL number.
    pub fn revoked(&self) -> PathBuf {
        self.root.join("revoked.json")
    }
}

/// One issued certificate, as recorded in `index.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The identity URI the certificate names.
    pub identity: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// When it expires (RFC 3339).
    pub not_after: String,
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub spki_sha256: String,
}

/// One revoked certificate, as recorded in `revoked.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedEntry {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Why it was revoked.
    pub reason: super::Reason,
    /// When the CA revoked it (RFC 3339).
    pub revoked_at: String,
}

/// The revocation state of a CA: what is revoked and the number of the last CRL written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationState {
    /// The number of the last CRL written (0: none yet). CRL numbers only grow.
    pub crl_number: u64,
    /// Revoked certificates, in revocation order.
    pub revoked: Vec<RevokedEntry>,
}

/// An opened CA: its key, certificate and federation.
pub struct Ca {
    /// The CA directory.
    pub dir: CaDir,
    /// The federation named by the CA certificate.
    pub federation: String,
    /// The CA certificate (DER).
    pub cert_der: Vec<u8>,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("federation", &self.federation)
            .finish_non_exhaustive()
    }
}

const CA_HINT: &str = "run `ttx pki init-ca` to create the ca";

impl Ca {
    /// Opens an existing CA directory: checks the key's permissions, loads key and certificate,
    /// and reads the federation from the certificate.
    pub fn open(ca_dir: &Path) -> Result<Self, PkiError> {
        let dir = CaDir::new(ca_dir);
        let key = super::node::key_from_pem(&dir.key(), &files::read_secret(&dir.key(), CA_HINT)?)?;
        let cert_pem = files::read(&dir.cert(), CA_HINT)?;
        let what = format!("ca certificate {}", dir.cert().display());
        let cert_der = pem_certs(&cert_pem, &what)?.remove(0).to_vec();
        let cert = parse_cert(&cert_der)?;
        if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(PkiError::invalid(what, "it does not match the ca key"));
        }
        let federation = ca_federation(&cert)
            .ok_or_else(|| PkiError::invalid(&what, "it carries no ttx://FEDERATION uri"))?;
        Ok(Self {
            dir,
            federation,
            cert_der,
            key,
        })
    }

    /// The issuer rcgen signs with: the CA's subject, key identifier and key.
    pub(crate) fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_der(&self.cert_der.clone().into(), &self.key)
            .map_err(|e| PkiError::invalid("ca certificate", e))
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        super::cert_pem(&self.cert_der)
    }

    /// Reads the index of issued certificates.
    pub fn index(&self) -> Result<Vec<IndexEntry>, PkiError> {
        read_state(&self.dir.index())
    }

    /// Replaces the index of issued certificates.
    pub fn save_index(&self, index: &[IndexEntry]) -> Result<(), PkiError> {
        write_state(&self.dir.index(), &index)
    }

    /// Reads the revocation state.
    pub fn revocations(&self) -> Result<RevocationState, PkiError> {
        read_state(&self.dir.revoked())
    }

    /// Replaces the revocation state.
    pub fn save_revocations(&self, state: &RevocationState) -> Result<(), PkiError> {
        write_state(&self.dir.revoked(), state)
    }
}

/// Creates a federation CA in a new directory `ca_dir`: an ECDSA P-256 key (0600), a
/// self-signed CA certificate valid for `days` (basicConstraints CA with path length 0, keyUsage
/// certSign + crlSign, CN naming the federation, URI SAN `ttx://FEDERATION`), an empty index
/// and an empty revocation list. An existing non-empty directory is refused.
pub fn init_ca(federation: &str, ca_dir: &Path, days: u32) -> Result<CertSummary, PkiError> {
    validate_name("federation", federation)?;
    check_days(days)?;
    let dir = CaDir::new(ca_dir);
    let non_empty = std::fs::read_dir(ca_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if non_empty || (ca_dir.exists() && !ca_dir.is_dir()) {
        return Err(PkiError::Exists {
            path: ca_dir.to_path_buf(),
        });
    }
    create_private_dir(ca_dir)?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| PkiError::crypto("generating the ca key", e))?;
    let now = OffsetDateTime::now_utc();
    let serial = super::sign::random_serial()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("ttx federation CA {federation}"),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, federation);
    // Two CAs of one federation (a rotation, a rebuilt CA) get different subjects: tools,
    // `ttx pki show` and the TLS chain builder can tell them apart by name.
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, ca_unit(now, &serial));
    params.subject_alt_names = vec![uri_san(&format!("ttx://{federation}"))?];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(days));
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::crypto("signing the ca certificate", e))?;

    write_secret(&dir.key(), key.serialize_pem().as_bytes(), false)?;
    write_public(&dir.cert(), cert.pem().as_bytes())?;
    write_state(&dir.index(), &Vec::<IndexEntry>::new())?;
    write_state(&dir.revoked(), &RevocationState::default())?;
    summarize_cert(cert.der(), now)
}

/// The organizational unit that makes each CA's subject its own: `created 2026-12-01 serial
/// 3f2a9c1d` (the creation day and the first 8 hex digits of the CA certificate's serial).
fn ca_unit(now: OffsetDateTime, serial: &[u8]) -> String {
    let hex = super::serial_hex(serial);
    let short: String = hex.chars().filter(|c| *c != ':').take(8).collect();
    format!(
        "created {:04}-{:02}-{:02} serial {short}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
}

/// A URI SAN, checked to be IA5 text.
pub(crate) fn uri_san(uri: &str) -> Result<SanType, PkiError> {
    let ia5 = rcgen::string::Ia5String::try_from(uri).map_err(|e| PkiError::invalid("uri", e))?;
    Ok(SanType::URI(ia5))
}

fn read_state<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, PkiError> {
    let bytes = files::read(path, CA_HINT)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| PkiError::invalid(format!("ca state {}", path.display()), e))
}

fn write_state<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), PkiError> {
    let mut text = serde_json::to_string_pretty(value).expect("ca state serializes");
    text.push('\n');
    write_public(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_ca_writes_a_ca_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let summary = init_ca("eu-noc", &dir, 30).unwrap();
        assert_eq!(summary.identity, "CA federation eu-noc");
        assert!(summary.is_ca);
        let mode = std::fs::metadata(dir.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca = Ca::open(&dir).unwrap();
        assert_eq!(ca.federation, "eu-noc");
        assert!(ca.index().unwrap().is_empty());
        assert_eq!(ca.revocations().unwrap(), RevocationState::default());
        let cert = parse_cert(&ca.cert_der).unwrap();
        assert!(cert.is_ca());
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
        let err = init_ca("eu-noc", &dir, 30).unwrap_err();
        assert!(matches!(err, PkiError::Exists { .. }), "{err}");
    }

    #[test]
    fn bad_federation_names_and_days_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(init_ca("EU NOC", &tmp.path().join("a"), 30).is_err());
        assert!(init_ca("eu", &tmp.path().join("b"), 0).is_err());
        assert!(!tmp.path().join("a").exists() && !tmp.path().join("b").exists());
    }
}
