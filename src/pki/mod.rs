//! The federation PKI: CA, CSRs, signing, revocation, CRLs, certificate inspection and the trust
//! material a node loads at start.
//!
//! Who does what:
//! - a federation admin runs a CA directory ([`init_ca`]), signs node CSRs ([`sign`]), revokes
//!   certificates ([`revoke`]) and publishes CRLs ([`crl`]);
//! - a node generates its own key and CSR ([`request`]; the key never leaves the node), installs
//!   the certificate it gets back ([`install`]) and loads everything at start ([`TrustMaterial`]);
//! - [`issue`] does request + sign + install in one go for labs and tests.
//!
//! Identity is the one URI SAN `ttx://FEDERATION/SITE/NODE` (see [`crate::identity`]); the key
//! fingerprint shown to admins and used for pins and the deny list is [`spki_sha256`].
//!
//! Modules, one job each: [`files`] (0600 keys, atomic writes), `ca` (the CA directory and its
//! state), `sign` (CSR → certificate), `node` (the node side: request, install, issue), `revoke`
//! (revocation and CRLs), [`inspect`] (summaries of certificates, CRLs and CSRs), [`trust`] and
//! [`admin`] (trust changes on a node by command).

use std::path::PathBuf;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

pub mod admin;
mod ca;
pub mod files;
pub mod inspect;
mod node;
mod revoke;
mod sign;
pub mod trust;

pub use ca::{init_ca, Ca, CaDir, IndexEntry, RevocationState, RevokedEntry};
pub use inspect::{inspect_file, inspect_pem, CertSummary, CrlSummary, CsrSummary, Inspection};
pub use node::{add_trusted_ca, install, issue, request, Installed, Requested};
pub use revoke::{crl, revoke, serial_of_cert_pem, Reason};
pub use sign::{sign, Issued};
pub use trust::{check_crl_coverage, TrustMaterial};

use crate::identity::IdentityError;

/// Default lifetime of a node certificate, in days.
pub const DEFAULT_NODE_DAYS: u32 = 365;
/// Default lifetime of a federation CA certificate, in days.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Longest lifetime accepted for any certificate, in days.
pub const MAX_DAYS: u32 = 36_500;
/// How long a CRL is valid before the next one is due, in days.
pub const CRL_VALIDITY_DAYS: i64 = 7;

/// Everything that can go wrong in the PKI layer. Messages are lowercase and name the file or
/// the command that fixes the problem; the CLI maps each variant to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read, written or created.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "write", "create directory").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file the operation needs does not exist.
    #[error("{path} does not exist: {hint}")]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// What makes it, for example "run `ttx pki request`".
        hint: String,
    },
    /// A file or directory exists and would be overwritten.
    #[error("{path} already exists: refusing to overwrite it")]
    Exists {
        /// The existing file or directory.
        path: PathBuf,
    },
    /// A private key file may be read by group or others.
    #[error("private key {path} has mode {mode:04o}, readable by group or others: run `chmod 600 {path}`")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A file or text is not what it should be (PEM, X.509, JSON state).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// What was being parsed ("certificate signing request", "ca state index.json").
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// A name or an identity URI breaks the naming rule.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The certificate does not carry the node's public key.
    #[error("certificate does not match the node key {key}: it was issued for another key")]
    KeyMismatch {
        /// The node key file.
        key: PathBuf,
    },
    /// The certificate was not signed by the given CA.
    #[error("certificate was not issued by the ca {ca}")]
    NotIssuedBy {
        /// The CA subject.
        ca: String,
    },
    /// A CA of one federation was asked to serve a node of another.
    #[error("ca belongs to federation {ca:?} but the node is in federation {node:?}")]
    FederationMismatch {
        /// The CA's federation.
        ca: String,
        /// The node's federation.
        node: String,
    },
    /// A certificate names another node than the one it is installed on.
    #[error("certificate names {cert} but this node is {node}")]
    IdentityMismatch {
        /// The identity in the certificate.
        cert: String,
        /// The node's own identity.
        node: String,
    },
    /// No issued certificate has this serial.
    #[error("no certificate with serial {0} was issued by this ca")]
    UnknownSerial(String),
    /// The certificate is already on the revocation list.
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    /// The certificate is outside its validity period.
    #[error("certificate {what}: {when}")]
    Validity {
        /// "expired" or "not yet valid".
        what: &'static str,
        /// The relevant date.
        when: String,
    },
    /// Trust material is inconsistent (a CA without a CRL, a CRL from an unknown issuer).
    #[error("{0}")]
    Trust(String),
    /// The change asked for is already in place (a CA already trusted, a key already denied).
    #[error("{0}: nothing changed")]
    AlreadyDone(String),
    /// What the change names is not there (a CA not trusted, a key not denied).
    #[error("{0}: nothing changed")]
    NotPresent(String),
    /// The crypto library refused an operation.
    #[error("{what} failed: {message}")]
    Crypto {
        /// The operation ("generating a key", "signing the certificate").
        what: &'static str,
        /// The library's message.
        message: String,
    },
}

impl PkiError {
    /// Builds an [`PkiError::Invalid`] from anything printable.
    pub fn invalid(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Invalid {
            what: what.into(),
            message: message.to_string(),
        }
    }

    /// Builds a [`PkiError::Crypto`] from a crypto library error.
    pub(crate) fn crypto(what: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Crypto {
            what,
            message: err.to_string(),
        }
    }
}

/// The key fingerprint: lowercase hex of SHA-256 over the DER SubjectPublicKeyInfo of a DER
/// certificate. This exact definition is the pin and deny-list format everywhere in ttx, so that
/// a key rotated into a new certificate keeps its fingerprint and a re-keyed node gets a new one.
pub fn spki_sha256(cert_der: &[u8]) -> Result<String, PkiError> {
    let cert = parse_cert(cert_der)?;
    Ok(spki_sha256_of_spki(cert.public_key().raw))
}

/// Lowercase hex SHA-256 of a DER SubjectPublicKeyInfo (the input of [`spki_sha256`]).
pub fn spki_sha256_of_spki(spki_der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, spki_der))
}

/// Checks a fingerprint from a config or a command line: 64 hex characters, returned lowercase.
pub fn normalize_spki(fingerprint: &str) -> Result<String, PkiError> {
    let fp = fingerprint.trim().to_ascii_lowercase();
    if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(fp)
    } else {
        Err(PkiError::invalid(
            "spki sha-256 fingerprint",
            format!("{fingerprint:?} is not 64 hex characters"),
        ))
    }
}

/// Parses a DER certificate, with an error that says so.
pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::invalid("certificate", e))
}

/// The serial of a certificate as ttx shows and stores it: lowercase hex of its DER bytes.
pub fn serial_hex(raw_serial: &[u8]) -> String {
    hex::encode(raw_serial)
}

/// Normalizes a serial typed by an admin: accepts upper case and `:` separators, drops
/// redundant leading zero bytes, and refuses anything that is not hex.
pub fn normalize_serial(serial: &str) -> Result<String, PkiError> {
    let s: String = serial
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PkiError::invalid(
            "serial",
            format!("{serial:?} is not an even number of hex digits"),
        ));
    }
    let mut s = s.as_str();
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    Ok(s.to_string())
}

/// The federation a CA certificate serves: its one URI SAN `ttx://FEDERATION`, if any.
pub fn ca_federation(cert: &X509Certificate<'_>) -> Option<String> {
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix("ttx://"),
            _ => None,
        });
    let federation = found.next()?;
    if found.next().is_some() || crate::identity::validate_name("federation", federation).is_err() {
        return None;
    }
    Some(federation.to_string())
}

/// Formats a time as RFC 3339 to the second, the one time format of PKI output and state.
pub fn fmt_time(t: time::OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Checks a lifetime in days given by an admin.
pub(crate) fn check_days(days: u32) -> Result<(), PkiError> {
    if days == 0 || days > MAX_DAYS {
        return Err(PkiError::invalid(
            "validity",
            format!("{days} days is outside 1..={MAX_DAYS}"),
        ));
    }
    Ok(())
}

/// Reads every certificate in PEM text (a bundle may hold several).
pub(crate) fn pem_certs(
    pem: &[u8],
    what: &str,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::invalid(what, e))?;
    if certs.is_empty() {
        return Err(PkiError::invalid(what, "no PEM CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Encodes one DER certificate as PEM.
pub(crate) fn cert_pem(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// Encodes DER bytes as a PEM block with `label` (64-column base64, `\n` line ends).
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), config)
}

/// A temporary directory holding a fresh CA of `federation` at `TMP/ca` (unit tests).
#[cfg(test)]
pub(crate) fn test_ca(federation: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let ca_dir = tmp.path().join("ca");
    init_ca(federation, &ca_dir, 30).expect("init ca");
    (tmp, ca_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn serials_are_normalized() {
        assert_eq!(normalize_serial("00:AB:cd").unwrap(), "abcd");
        assert_eq!(normalize_serial("00").unwrap(), "00");
        assert!(normalize_serial("abc").is_err());
        assert!(normalize_serial("zz").is_err());
        assert!(normalize_serial("").is_err());
    }

    #[test]
    fn spki_fingerprints_are_validated() {
        let fp = "AB".repeat(32);
        assert_eq!(normalize_spki(&fp).unwrap(), "ab".repeat(32));
        assert!(normalize_spki("ab").is_err());
        assert!(normalize_spki(&"g".repeat(64)).is_err());
    }

    #[test]
    fn pem_blocks_round_trip() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 100] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let pem = pem_block("CERTIFICATE", &der);
            let back = rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes());
            match back {
                Ok(back) => assert_eq!(back.as_ref(), &der[..], "len {len}"),
                Err(e) => assert_eq!(len, 0, "len {len}: {e}"),
            }
        }
    }
}
