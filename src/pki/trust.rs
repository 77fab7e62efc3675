//! The trust material a node loads at start (and on reload): its certificate chain and key, the
//! CA bundle, the CRLs and the SPKI deny list, all checked for consistency. Plain data with public
//! fields: the transport builds its rustls configs from it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{CertificateRevocationList, FromDer};

use super::files::{missing, read, read_secret, KEY_HINT};
use super::node::{check_issued_by, key_from_pem};
use super::{normalize_spki, parse_cert, pem_certs, spki_sha256_of_spki, PkiError};
use crate::config::{Config, TlsSection};
use crate::datadir::DataDir;
use crate::identity::NodeIdentity;

const CERT_HINT: &str =
    "run `ttx pki install` (or `ttx pki issue`) to install the node certificate";
const BUNDLE_HINT: &str = "run `ttx pki install` to add the federation ca to the bundle";
const CRL_HINT: &str =
    "write it with `ttx pki crl` on the ca and install it (`ttx pki crl install FILE`), or \
     remove it from [tls] crls";

/// Everything TLS needs, loaded from the files named in `[tls]`.
#[derive(Debug)]
pub struct TrustMaterial {
    /// The node's identity, read from its certificate's URI SAN.
    pub identity: NodeIdentity,
    /// The node certificate first, then any intermediates from the same file.
    pub cert_chain: Vec<CertificateDer<'static>>,
    /// The node private key (its file passed [`super::files::check_key_permissions`]).
    pub key: PrivateKeyDer<'static>,
    /// The trusted federation CAs (several during a CA rotation).
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// CRLs; when any is present, every CA in `ca_certs` has one (checked at load).
    pub crls: Vec<CertificateRevocationListDer<'static>>,
    /// SPKI SHA-256 fingerprints (lowercase hex) refused whatever their certificate says.
    pub deny_spki: BTreeSet<String>,
    /// The node's own key fingerprint.
    pub spki_sha256: String,
    /// When the node certificate expires.
    pub not_after: OffsetDateTime,
}

impl TrustMaterial {
    /// Loads and checks the trust material named by `tls` (relative paths inside `data_dir`):
    /// the key must be 0600 and match the certificate, the certificate must be issued by a CA in
    /// the bundle, every CRL must come from a trusted CA and, once any CRL is configured, every
    /// trusted CA must have one; deny-list entries must be 64 hex characters. Certificate expiry
    /// is reported in `not_after`, not refused here.
    pub fn load(data_dir: &Path, tls: &TlsSection) -> Result<Self, PkiError> {
        let key_path = Config::resolve(data_dir, &tls.key);
        let key_pem = read_secret(&key_path, KEY_HINT)?;
        let key_pair = key_from_pem(&key_path, &key_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| PkiError::invalid(format!("private key {}", key_path.display()), e))?;

        let cert_path = Config::resolve(data_dir, &tls.cert);
        let what = format!("node certificate {}", cert_path.display());
        let cert_chain = pem_certs(&read(&cert_path, CERT_HINT)?, &what)?;
        let identity = NodeIdentity::from_cert_der(&cert_chain[0])?;
        let cert = parse_cert(&cert_chain[0])?;
        if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key_pair) {
            return Err(PkiError::KeyMismatch { key: key_path });
        }

        let bundle_path = Config::resolve(data_dir, &tls.ca_bundle);
        let what = format!("ca bundle {}", bundle_path.display());
        let ca_certs = pem_certs(&read(&bundle_path, BUNDLE_HINT)?, &what)?;
        let issued = ca_certs.iter().any(|ca| {
            parse_cert(ca)
                .map(|ca| check_issued_by(&cert, &ca).is_ok())
                .unwrap_or(false)
        });
        if !issued {
            return Err(PkiError::Trust(format!(
                "node certificate {} is not issued by any ca in {}",
                cert_path.display(),
                bundle_path.display()
            )));
        }

        let mut crls = Vec::new();
        for path in crl_paths(data_dir, tls)? {
            if !path.exists() {
                return Err(missing(&path, CRL_HINT));
            }
            let found = CertificateRevocationListDer::pem_slice_iter(&read(&path, CRL_HINT)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| PkiError::invalid(format!("crl {}", path.display()), e))?;
            if found.is_empty() {
                let msg = "no PEM X509 CRL block found";
                return Err(PkiError::invalid(format!("crl {}", path.display()), msg));
            }
            crls.extend(found);
        }
        check_crl_coverage(&ca_certs, &crls)?;

        let mut deny_spki = tls
            .deny_spki
            .iter()
            .map(|fp| normalize_spki(fp))
            .collect::<Result<BTreeSet<_>, _>>()?;
        deny_spki.extend(read_deny_list(&DataDir::new(data_dir))?);
        let spki_sha256 = spki_sha256_of_spki(cert.public_key().raw);
        if deny_spki.contains(&spki_sha256) {
            return Err(PkiError::Trust(format!(
                "this node's own key {spki_sha256} is on the [tls] deny_spki list"
            )));
        }
        let not_after = cert.validity().not_after.to_datetime();
        Ok(Self {
            identity,
            cert_chain,
            key,
            ca_certs,
            crls,
            deny_spki,
            spki_sha256,
            not_after,
        })
    }

    /// Whether a peer certificate's key is on the deny list (an unparseable one counts as
    /// denied).
    pub fn is_denied(&self, cert_der: &[u8]) -> bool {
        super::spki_sha256(cert_der)
            .map(|fp| self.deny_spki.contains(&fp))
            .unwrap_or(true)
    }
}

/// The CRL files to load: those named in `[tls] crls`, then every `*.pem` in `DIR/tls/crl/`
/// not named there (a CRL copied into the directory is used, never silently ignored), sorted.
pub fn crl_paths(data_dir: &Path, tls: &TlsSection) -> Result<Vec<PathBuf>, PkiError> {
    let mut paths: Vec<PathBuf> = tls
        .crls
        .iter()
        .map(|p| Config::resolve(data_dir, p))
        .collect();
    let dir = DataDir::new(data_dir).crl_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(paths),
        Err(source) => {
            return Err(PkiError::Io {
                action: "read directory",
                path: dir,
                source,
            })
        }
    };
    let named: BTreeSet<PathBuf> = paths.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem") && p.is_file())
        .filter(|p| p.canonicalize().is_ok_and(|c| !named.contains(&c)))
        .collect();
    found.sort();
    paths.extend(found);
    Ok(paths)
}

/// The keys of `DIR/tls/deny.txt` (kept by `ttx pki deny`): one fingerprint per line, `#`
/// comments and blank lines skipped; a missing file is an empty list.
pub fn read_deny_list(dir: &DataDir) -> Result<Vec<String>, PkiError> {
    let path = dir.deny_list();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PkiError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            normalize_spki(l)
                .map_err(|e| PkiError::invalid(format!("deny list {}", path.display()), e))
        })
        .collect()
}

/// Checks CRLs against the trusted CAs: every CRL must be signed by a trusted CA, and when any
/// CRL is given every trusted CA must have one, because a configured CRL makes an undetermined
/// revocation status fail (a CA without a CRL would lock out all of its nodes).
pub fn check_crl_coverage(
    ca_certs: &[CertificateDer<'_>],
    crls: &[CertificateRevocationListDer<'_>],
) -> Result<(), PkiError> {
    if crls.is_empty() {
        return Ok(());
    }
    let cas = ca_certs
        .iter()
        .map(|c| parse_cert(c))
        .collect::<Result<Vec<_>, _>>()?;
    let mut covered = vec![false; cas.len()];
    for (n, der) in crls.iter().enumerate() {
        let (_, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| PkiError::invalid(format!("crl #{}", n + 1), e))?;
        let signer = cas.iter().position(|ca| {
            ca.subject().as_raw() == crl.issuer().as_raw()
                && crl.verify_signature(ca.public_key()).is_ok()
        });
        match signer {
            Some(i) => covered[i] = true,
            None => {
                return Err(PkiError::Trust(format!(
                    "crl #{} (issuer {}) is not signed by any trusted ca",
                    n + 1,
                    crl.issuer()
                )))
            }
        }
    }
    if let Some(i) = covered.iter().position(|c| !c) {
        return Err(PkiError::Trust(format!(
            "trusted ca {} has no crl: once any crl is configured every trusted ca needs one \
             (install it with `ttx pki crl install FILE`)",
            cas[i].subject()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datadir::DataDir;
    use crate::pki::{crl, init_ca, issue};
    use std::os::unix::fs::PermissionsExt;

    fn node(tmp: &Path) -> (std::path::PathBuf, DataDir, NodeIdentity) {
        let ca_dir = tmp.join("ca");
        init_ca("eu", &ca_dir, 30).unwrap();
        let dd = DataDir::new(tmp.join("node"));
        let id = NodeIdentity::new("eu", "noc-a", "primary").unwrap();
        issue(&ca_dir, &id, &dd, 30).unwrap();
        (ca_dir, dd, id)
    }

    #[test]
    fn loads_what_issue_installed() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca_dir, dd, id) = node(tmp.path());
        let mut tls = TlsSection::default();
        let fp = "AB".repeat(32);
        tls.deny_spki = vec![fp];
        std::fs::create_dir_all(dd.crl_dir()).unwrap();
        crl(&ca_dir, &dd.crl_dir().join("eu.pem")).unwrap();
        tls.crls = vec!["tls/crl/eu.pem".into()];
        let tm = TrustMaterial::load(dd.root(), &tls).unwrap();
        assert_eq!(tm.identity, id);
        assert_eq!(tm.cert_chain.len(), 1);
        assert_eq!(tm.ca_certs.len(), 1);
        assert_eq!(tm.crls.len(), 1);
        assert!(tm.deny_spki.contains(&"ab".repeat(32)));
        assert_eq!(
            tm.spki_sha256,
            crate::pki::spki_sha256(&tm.cert_chain[0]).unwrap()
        );
        assert!(!tm.is_denied(&tm.cert_chain[0]));
    }

    #[test]
    fn refuses_readable_keys_missing_files_and_bad_pins() {
        let tmp = tempfile::tempdir().unwrap();
        let (_ca, dd, _id) = node(tmp.path());
        let tls = TlsSection::default();
        std::fs::set_permissions(dd.node_key(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = TrustMaterial::load(dd.root(), &tls).unwrap_err();
        assert!(matches!(err, PkiError::KeyPermissions { .. }), "{err}");
        std::fs::set_permissions(dd.node_key(), std::fs::Permissions::from_mode(0o600)).unwrap();

        let mut bad = tls.clone();
        bad.deny_spki = vec!["abc".into()];
        assert!(TrustMaterial::load(dd.root(), &bad).is_err());

        std::fs::remove_file(dd.node_cert()).unwrap();
        let err = TrustMaterial::load(dd.root(), &tls).unwrap_err();
        assert!(err.to_string().contains("ttx pki install"), "{err}");
    }

    #[test]
    fn every_trusted_ca_needs_a_crl_once_one_is_configured() {
        let tmp = tempfile::tempdir().unwrap();
        let (ca_dir, dd, id) = node(tmp.path());
        let ca2 = tmp.path().join("ca2");
        init_ca("eu", &ca2, 30).unwrap();
        issue(&ca2, &id, &dd, 30).unwrap(); // bundle now holds both CAs
        std::fs::create_dir_all(dd.crl_dir()).unwrap();
        crl(&ca_dir, &dd.crl_dir().join("one.pem")).unwrap();
        let mut tls = TlsSection {
            crls: vec!["tls/crl/one.pem".into()],
            ..TlsSection::default()
        };
        let err = TrustMaterial::load(dd.root(), &tls).unwrap_err();
        assert!(err.to_string().contains("has no crl"), "{err}");
        crl(&ca2, &dd.crl_dir().join("two.pem")).unwrap();
        tls.crls.push("tls/crl/two.pem".into());
        TrustMaterial::load(dd.root(), &tls).unwrap();

        // a CRL from a CA that is not trusted
        let stranger = tmp.path().join("ca3");
        init_ca("eu", &stranger, 30).unwrap();
        crl(&stranger, &dd.crl_dir().join("three.pem")).unwrap();
        tls.crls.push("tls/crl/three.pem".into());
        let err = TrustMaterial::load(dd.root(), &tls).unwrap_err();
        assert!(
            err.to_string().contains("not signed by any trusted ca"),
            "{err}"
        );
    }
}
