//! The node side of the PKI: generate the key and CSR, install the certificate that comes back,
//! and keep the CA bundle. The node key is generated here and never leaves the data dir.

use std::path::Path;

use rcgen::{CertificateParams, DnType, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
use serde::Serialize;
use time::OffsetDateTime;

use super::ca::uri_san;
use super::files::{create_private_dir, read, read_secret, write_public, write_secret, KEY_HINT};
use super::{
    ca_federation, cert_pem, fmt_time, parse_cert, pem_certs, sign, spki_sha256_of_spki, Ca,
    PkiError,
};
use crate::datadir::DataDir;
use crate::identity::NodeIdentity;

/// What [`request`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Requested {
    /// The identity URI the CSR asks for.
    pub identity: String,
    /// Whether a new key was generated (false: the existing key was reused).
    pub key_created: bool,
    /// SHA-256 of the key's SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// The CSR, PEM (also written to `DIR/tls/node.csr`).
    #[serde(skip)]
    pub csr_pem: String,
}

/// What [`install`] (or [`issue`]) did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// The identity URI of the installed certificate.
    pub identity: String,
    /// Its serial, lowercase hex.
    pub serial: String,
    /// Its expiry (RFC 3339).
    pub not_after: String,
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// Whether the CA was added to the bundle (false: it was already there).
    pub ca_added: bool,
    /// How many CAs the bundle holds now.
    pub ca_count: usize,
}

/// Makes the node's CSR for `identity`: generates the node key (`DIR/tls/node.key`, 0600) unless
/// one exists (an existing key is reused, never overwritten, so a re-issue keeps the key and its
/// pins), and writes `DIR/tls/node.csr` whose one URI SAN is the identity.
pub fn request(datadir: &DataDir, identity: &NodeIdentity) -> Result<Requested, PkiError> {
    create_private_dir(&datadir.tls_dir())?;
    let key_path = datadir.node_key();
    let key_created = !key_path.exists();
    let key = if key_created {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| PkiError::crypto("generating the node key", e))?;
        write_secret(&key_path, key.serialize_pem().as_bytes(), false)?;
        key
    } else {
        load_key(&key_path)?
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, identity.to_uri());
    params.subject_alt_names = vec![uri_san(&identity.to_uri())?];
    let csr_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|e| PkiError::crypto("signing the csr", e))?;
    write_public(&datadir.node_csr(), csr_pem.as_bytes())?;
    Ok(Requested {
        identity: identity.to_uri(),
        key_created,
        spki_sha256: spki_sha256_of_spki(&key.subject_public_key_info()),
        csr_pem,
    })
}

/// Installs a node certificate: it must carry the public key of `DIR/tls/node.key`, be issued by
/// `ca_cert_pem` (a CA of the node's federation), name exactly `identity` and be within its
/// validity. Writes `DIR/tls/node.crt` and adds the CA to `DIR/tls/ca.pem`.
pub fn install(
    datadir: &DataDir,
    identity: &NodeIdentity,
    cert_pem_text: &[u8],
    ca_cert_pem: &[u8],
) -> Result<Installed, PkiError> {
    let cert_der = pem_certs(cert_pem_text, "node certificate")?.remove(0);
    let ca_der = pem_certs(ca_cert_pem, "ca certificate")?.remove(0);
    let cert = parse_cert(&cert_der)?;
    let ca = parse_cert(&ca_der)?;

    let key = load_key(&datadir.node_key())?;
    if cert.public_key().raw != key.subject_public_key_info() {
        return Err(PkiError::KeyMismatch {
            key: datadir.node_key(),
        });
    }
    check_ca_federation(&ca, &identity.federation)?;
    check_issued_by(&cert, &ca)?;
    let named = NodeIdentity::from_cert_der(&cert_der)?;
    if &named != identity {
        return Err(PkiError::IdentityMismatch {
            cert: named.to_uri(),
            node: identity.to_uri(),
        });
    }
    check_validity(&cert, OffsetDateTime::now_utc())?;

    write_public(&datadir.node_cert(), cert_pem(&cert_der).as_bytes())?;
    let (ca_added, ca_count) = add_trusted_ca(datadir, &ca_der)?;
    Ok(Installed {
        identity: named.to_uri(),
        serial: super::serial_hex(cert.raw_serial()),
        not_after: fmt_time(cert.validity().not_after.to_datetime()),
        spki_sha256: spki_sha256_of_spki(cert.public_key().raw),
        ca_added,
        ca_count,
    })
}

/// Request, sign and install in one go (labs and tests): the CA in `ca_dir` must serve the
/// identity's federation. Returns what was installed.
pub fn issue(
    ca_dir: &Path,
    identity: &NodeIdentity,
    datadir: &DataDir,
    days: u32,
) -> Result<Installed, PkiError> {
    let ca = Ca::open(ca_dir)?;
    if ca.federation != identity.federation {
        return Err(PkiError::FederationMismatch {
            ca: ca.federation,
            node: identity.federation.clone(),
        });
    }
    let requested = request(datadir, identity)?;
    let issued = sign(
        ca_dir,
        requested.csr_pem.as_bytes(),
        &identity.site,
        &identity.node,
        days,
    )?;
    install(
        datadir,
        identity,
        issued.cert_pem.as_bytes(),
        ca.cert_pem().as_bytes(),
    )
}

/// Adds a CA certificate (DER) to `DIR/tls/ca.pem`, keeping the CAs already there and not
/// duplicating one (CA rotation relies on old and new CAs overlapping in the bundle). Returns
/// whether it was added and how many CAs the bundle holds.
pub fn add_trusted_ca(datadir: &DataDir, ca_der: &[u8]) -> Result<(bool, usize), PkiError> {
    let ca = parse_cert(ca_der)?;
    if !ca.is_ca() {
        return Err(PkiError::invalid("ca certificate", "it is not a ca"));
    }
    create_private_dir(&datadir.tls_dir())?;
    let path = datadir.ca_bundle();
    let mut bundle = if path.exists() {
        let what = format!("ca bundle {}", path.display());
        pem_certs(&read(&path, "")?, &what)?
    } else {
        Vec::new()
    };
    if bundle.iter().any(|c| c.as_ref() == ca_der) {
        return Ok((false, bundle.len()));
    }
    bundle.push(ca_der.to_vec().into());
    let text: String = bundle.iter().map(|c| cert_pem(c)).collect();
    write_public(&path, text.as_bytes())?;
    Ok((true, bundle.len()))
}

/// Loads a PKCS#8 PEM key after checking its permissions.
pub(crate) fn load_key(path: &Path) -> Result<KeyPair, PkiError> {
    key_from_pem(path, &read_secret(path, KEY_HINT)?)
}

/// Parses the PEM text of the key file `path`.
pub(crate) fn key_from_pem(path: &Path, pem: &[u8]) -> Result<KeyPair, PkiError> {
    let what = || format!("private key {}", path.display());
    let pem = std::str::from_utf8(pem).map_err(|e| PkiError::invalid(what(), e))?;
    KeyPair::from_pem(pem).map_err(|e| PkiError::invalid(what(), e))
}

/// Refuses a CA of another federation (or a certificate that is not a ttx federation CA).
pub(crate) fn check_ca_federation(
    ca: &x509_parser::prelude::X509Certificate<'_>,
    federation: &str,
) -> Result<(), PkiError> {
    match ca_federation(ca) {
        Some(f) if f == federation => Ok(()),
        Some(f) => Err(PkiError::FederationMismatch {
            ca: f,
            node: federation.to_string(),
        }),
        None => Err(PkiError::invalid(
            "ca certificate",
            "it is not a ttx federation ca (no ttx://FEDERATION uri)",
        )),
    }
}

/// Checks that `cert` was issued and signed by `ca`.
pub(crate) fn check_issued_by(
    cert: &x509_parser::prelude::X509Certificate<'_>,
    ca: &x509_parser::prelude::X509Certificate<'_>,
) -> Result<(), PkiError> {
    let not_issued = || PkiError::NotIssuedBy {
        ca: ca.subject().to_string(),
    };
    if !ca.is_ca() || cert.issuer().as_raw() != ca.subject().as_raw() {
        return Err(not_issued());
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| not_issued())
}

/// Refuses a certificate that is expired or not yet valid at `now`.
pub(crate) fn check_validity(
    cert: &x509_parser::prelude::X509Certificate<'_>,
    now: OffsetDateTime,
) -> Result<(), PkiError> {
    let v = cert.validity();
    if now > v.not_after.to_datetime() {
        return Err(PkiError::Validity {
            what: "expired",
            when: format!("on {}", fmt_time(v.not_after.to_datetime())),
        });
    }
    if now < v.not_before.to_datetime() {
        return Err(PkiError::Validity {
            what: "not yet valid",
            when: format!("until {}", fmt_time(v.not_before.to_datetime())),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::init_ca;
    use std::os::unix::fs::PermissionsExt;

    fn setup(fed: &str) -> (tempfile::TempDir, std::path::PathBuf, DataDir) {
        let (tmp, ca_dir) = crate::pki::test_ca(fed);
        let dd = DataDir::new(tmp.path().join("node"));
        (tmp, ca_dir, dd)
    }

    #[test]
    fn request_sign_install_round_trip() {
        let (_tmp, ca_dir, dd) = setup("eu");
        let id = NodeIdentity::new("eu", "noc-a", "primary").unwrap();
        let req = request(&dd, &id).unwrap();
        assert!(req.key_created);
        let mode = std::fs::metadata(dd.node_key())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // a second request reuses the key
        let again = request(&dd, &id).unwrap();
        assert!(!again.key_created);
        assert_eq!(again.spki_sha256, req.spki_sha256);
        let issued = sign(&ca_dir, again.csr_pem.as_bytes(), "noc-a", "primary", 30).unwrap();
        let ca = Ca::open(&ca_dir).unwrap();
        // installing again does not duplicate the ca
        for first in [true, false] {
            let (cert, ca) = (issued.cert_pem.as_bytes(), ca.cert_pem());
            let inst = install(&dd, &id, cert, ca.as_bytes()).unwrap();
            assert_eq!(inst.spki_sha256, req.spki_sha256);
            assert_eq!(inst.ca_added, first);
            assert_eq!(inst.ca_count, 1);
        }
    }

    #[test]
    fn install_refuses_foreign_keys_cas_and_identities() {
        let (tmp, ca_dir, dd) = setup("eu");
        let id = NodeIdentity::new("eu", "noc-a", "primary").unwrap();
        request(&dd, &id).unwrap();
        let ca = Ca::open(&ca_dir).unwrap();

        // a certificate for another key
        let other = DataDir::new(tmp.path().join("other"));
        let other_req = request(&other, &id).unwrap();
        let foreign = sign(
            &ca_dir,
            other_req.csr_pem.as_bytes(),
            "noc-a",
            "primary",
            30,
        )
        .unwrap();
        let err = install(
            &dd,
            &id,
            foreign.cert_pem.as_bytes(),
            ca.cert_pem().as_bytes(),
        );
        assert!(matches!(err, Err(PkiError::KeyMismatch { .. })), "{err:?}");

        // a certificate naming another node
        let csr = std::fs::read(dd.node_csr()).unwrap();
        let wrong = sign(&ca_dir, &csr, "noc-b", "primary", 30).unwrap();
        let err = install(
            &dd,
            &id,
            wrong.cert_pem.as_bytes(),
            ca.cert_pem().as_bytes(),
        );
        assert!(
            matches!(err, Err(PkiError::IdentityMismatch { .. })),
            "{err:?}"
        );

        // a certificate checked against a CA that did not issue it
        let ca2_dir = tmp.path().join("ca2");
        init_ca("eu", &ca2_dir, 30).unwrap();
        let ca2 = Ca::open(&ca2_dir).unwrap();
        let good = sign(&ca_dir, &csr, "noc-a", "primary", 30).unwrap();
        let err = install(
            &dd,
            &id,
            good.cert_pem.as_bytes(),
            ca2.cert_pem().as_bytes(),
        );
        assert!(matches!(err, Err(PkiError::NotIssuedBy { .. })), "{err:?}");

        // a CA of another federation
        let us_dir = tmp.path().join("us");
        init_ca("us", &us_dir, 30).unwrap();
        let err = issue(&us_dir, &id, &dd, 30);
        assert!(
            matches!(err, Err(PkiError::FederationMismatch { .. })),
            "{err:?}"
        );
        assert!(!dd.node_cert().exists());
    }

    #[test]
    fn a_second_ca_joins_the_bundle() {
        let (tmp, ca_dir, dd) = setup("eu");
        let id = NodeIdentity::new("eu", "noc-a", "primary").unwrap();
        let first = issue(&ca_dir, &id, &dd, 30).unwrap();
        let ca2_dir = tmp.path().join("ca2");
        init_ca("eu", &ca2_dir, 30).unwrap();
        let second = issue(&ca2_dir, &id, &dd, 30).unwrap();
        assert_eq!(second.ca_count, 2);
        assert_eq!(
            first.spki_sha256, second.spki_sha256,
            "re-issue keeps the key"
        );
        let bundle = pem_certs(&std::fs::read(dd.ca_bundle()).unwrap(), "b").unwrap();
        assert_eq!(bundle.len(), 2);
    }
}
