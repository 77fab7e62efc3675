//! Trust changes on a node's data dir, one command each (`ttx pki crl install`, `deny`, `undeny`,
//! `trust add`, `trust remove`), instead of hand edits of `ttx.toml` or `ca.pem`.
//!
//! Every change is checked before it stays: the new files are written (atomically), the node's
//! whole trust material is loaded from them as a start or reload would, and if it loaded before
//! and does not now (a CA that still issues this node's certificate, a CA without a CRL while
//! CRLs are in use, this node's own key denied), the old files are put back and the change is
//! refused with the reason: nothing is changed. Applying it to a running node (a reload) is the
//! caller's job.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::Serialize;
use x509_parser::prelude::{CertificateRevocationList, FromDer};

use super::files::write_public;
use super::node::check_ca_federation;
use super::trust::read_deny_list;
use super::{
    cert_pem, normalize_spki, parse_cert, pem_block, pem_certs, serial_hex, PkiError, TrustMaterial,
};
use crate::config::{Config, TlsSection};
use crate::datadir::DataDir;

/// What a trust change did, for the operator.
#[derive(Debug, Clone, Serialize)]
pub struct TrustChange {
    /// `crl installed`, `denied`, `undenied`, `ca trusted`, `ca removed`.
    pub action: &'static str,
    /// What it was about: the CA's subject, the key's fingerprint.
    pub subject: String,
    /// The files written or removed.
    pub files: Vec<PathBuf>,
    /// Set when the trust material did not load before the change either (a node without its
    /// certificate yet): the change was kept unchecked, and this says why it could not be.
    pub unchecked: Option<String>,
}

/// A file's new contents (`None`: remove it).
type Edit = (PathBuf, Option<Vec<u8>>);

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn put(path: &Path, contents: Option<&[u8]>) -> Result<(), PkiError> {
    match contents {
        Some(bytes) => write_public(path, bytes),
        None => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(PkiError::Io {
                action: "remove",
                path: path.to_path_buf(),
                source,
            }),
        },
    }
}

/// Writes `edits`, then loads the trust material; a change that breaks a trust that loaded is
/// undone and refused.
fn apply(
    dd: &DataDir,
    tls: &TlsSection,
    action: &'static str,
    subject: String,
    edits: Vec<Edit>,
) -> Result<TrustChange, PkiError> {
    let before = TrustMaterial::load(dd.root(), tls).err();
    let old = edits
        .iter()
        .map(|(p, _)| read_optional(p).map(|b| (p.clone(), b)))
        .collect::<Result<Vec<_>, _>>()?;
    for (path, contents) in &edits {
        put(path, contents.as_deref())?;
    }
    let after = TrustMaterial::load(dd.root(), tls);
    if let (Err(e), None) = (&after, &before) {
        for (path, contents) in &old {
            put(path, contents.as_deref())?;
        }
        return Err(PkiError::Trust(format!(
            "refused, nothing changed: with it, this node's trust would not load: {e}"
        )));
    }
    Ok(TrustChange {
        action,
        subject,
        files: edits.into_iter().map(|(p, _)| p).collect(),
        unchecked: before.map(|e| e.to_string()),
    })
}

/// The CA bundle this node's config names.
fn bundle_path(dd: &DataDir, tls: &TlsSection) -> PathBuf {
    Config::resolve(dd.root(), &tls.ca_bundle)
}

fn bundle(dd: &DataDir, tls: &TlsSection) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let path = bundle_path(dd, tls);
    match read_optional(&path)? {
        Some(b) => pem_certs(&b, &format!("ca bundle {}", path.display())),
        None => Ok(Vec::new()),
    }
}

/// The one certificate of a PEM file naming a CA.
fn one_cert(pem: &[u8]) -> Result<CertificateDer<'static>, PkiError> {
    let mut certs = pem_certs(pem, "ca certificate")?;
    if certs.len() != 1 {
        return Err(PkiError::invalid(
            "ca certificate",
            format!("the file holds {} certificates: give one", certs.len()),
        ));
    }
    Ok(certs.remove(0))
}

/// The one CA certificate of a PEM file (a ttx CA of `federation`).
fn one_ca(pem: &[u8], federation: &str) -> Result<CertificateDer<'static>, PkiError> {
    let ca = one_cert(pem)?;
    let parsed = parse_cert(&ca)?;
    if !parsed.is_ca() {
        return Err(PkiError::invalid("ca certificate", "it is not a ca"));
    }
    check_ca_federation(&parsed, federation)?;
    Ok(ca)
}

fn subject(der: &[u8]) -> Result<String, PkiError> {
    Ok(parse_cert(der)?.subject().to_string())
}

/// The one CRL of a PEM file.
fn one_crl(pem: &[u8]) -> Result<CertificateRevocationListDer<'static>, PkiError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::invalid("crl", e))?;
    match crls.as_slice() {
        [crl] => Ok(crl.clone()),
        [] => Err(PkiError::invalid("crl", "no PEM X509 CRL block found")),
        more => Err(PkiError::invalid(
            "crl",
            format!("the file holds {} CRLs: give one", more.len()),
        )),
    }
}

/// Where the CRL of `ca` goes: `tls/crl/ca-SERIAL.pem`, one file per CA.
fn crl_file(dd: &DataDir, ca: &[u8]) -> Result<PathBuf, PkiError> {
    let serial = serial_hex(parse_cert(ca)?.raw_serial());
    Ok(dd.crl_dir().join(format!("ca-{serial}.pem")))
}

/// The CA of `cas` that signed `crl`, or a refusal saying to trust it first.
fn crl_signer<'a>(
    crl: &[u8],
    cas: &'a [CertificateDer<'static>],
) -> Result<&'a CertificateDer<'static>, PkiError> {
    let (_, parsed) =
        CertificateRevocationList::from_der(crl).map_err(|e| PkiError::invalid("crl", e))?;
    cas.iter()
        .find(|ca| {
            parse_cert(ca).is_ok_and(|ca| {
                ca.subject().as_raw() == parsed.issuer().as_raw()
                    && parsed.verify_signature(ca.public_key()).is_ok()
            })
        })
        .ok_or_else(|| {
            PkiError::Trust(format!(
                "the crl (issuer {}) is not signed by any ca this node trusts: trust its ca \
                 first (`ttx pki trust add CA_CERT --crl FILE`)",
                parsed.issuer()
            ))
        })
}

/// The files a CRL of `ca` is in now: ours in `tls/crl/`, or one named in `[tls] crls`.
fn existing_crl_files(
    dd: &DataDir,
    tls: &TlsSection,
    ca: &CertificateDer<'static>,
) -> Result<Vec<PathBuf>, PkiError> {
    let mut found = Vec::new();
    for path in super::trust::crl_paths(dd.root(), tls)? {
        let Some(bytes) = read_optional(&path)? else {
            continue;
        };
        let signed_by_ca = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .filter_map(Result::ok)
            .any(|crl| crl_signer(&crl, std::slice::from_ref(ca)).is_ok());
        if signed_by_ca {
            found.push(path);
        }
    }
    Ok(found)
}

/// The edit that installs `crl` (signed by `ca`): it replaces the CA's CRL where it is (its file
/// in `tls/crl/`, or the one `[tls] crls` names), else goes to `tls/crl/ca-SERIAL.pem`.
fn crl_edit(
    dd: &DataDir,
    tls: &TlsSection,
    ca: &CertificateDer<'static>,
    crl: &CertificateRevocationListDer<'static>,
) -> Result<Vec<Edit>, PkiError> {
    let text = crl_pem(crl.as_ref());
    let mut files = existing_crl_files(dd, tls, ca)?;
    if files.is_empty() {
        files.push(crl_file(dd, ca)?);
    }
    for f in &files {
        if read_optional(f)?.as_deref() == Some(text.as_bytes()) {
            return Err(PkiError::AlreadyDone(format!(
                "this crl is already installed ({})",
                f.display()
            )));
        }
    }
    Ok(files
        .into_iter()
        .map(|f| (f, Some(text.clone().into_bytes())))
        .collect())
}

fn crl_pem(der: &[u8]) -> String {
    pem_block("X509 CRL", der)
}

/// `ttx pki crl install FILE`: installs a CRL of a trusted CA in `DIR/tls/crl/` (replacing that
/// CA's previous one).
pub fn install_crl(dd: &DataDir, tls: &TlsSection, pem: &[u8]) -> Result<TrustChange, PkiError> {
    let crl = one_crl(pem)?;
    let cas = bundle(dd, tls)?;
    let ca = crl_signer(&crl, &cas)?.clone();
    let edits = crl_edit(dd, tls, &ca, &crl)?;
    apply(dd, tls, "crl installed", subject(&ca)?, edits)
}

fn deny_text(keys: &[String]) -> Vec<u8> {
    let mut text = String::from("# keys denied by `ttx pki deny` (SPKI SHA-256), one per line\n");
    for k in keys {
        text.push_str(k);
        text.push('\n');
    }
    text.into_bytes()
}

/// `ttx pki deny SPKI`: refuses a key whatever its certificate says.
pub fn deny(dd: &DataDir, tls: &TlsSection, spki: &str) -> Result<TrustChange, PkiError> {
    let spki = normalize_spki(spki)?;
    let mut keys = read_deny_list(dd)?;
    let in_config = tls
        .deny_spki
        .iter()
        .any(|k| normalize_spki(k).is_ok_and(|k| k == spki));
    if keys.contains(&spki) || in_config {
        return Err(PkiError::AlreadyDone(format!(
            "key {spki} is already denied"
        )));
    }
    keys.push(spki.clone());
    let edit = (dd.deny_list(), Some(deny_text(&keys)));
    apply(dd, tls, "denied", spki, vec![edit])
}

/// `ttx pki undeny SPKI`: lifts a denial made by `ttx pki deny`.
pub fn undeny(dd: &DataDir, tls: &TlsSection, spki: &str) -> Result<TrustChange, PkiError> {
    let spki = normalize_spki(spki)?;
    let mut keys = read_deny_list(dd)?;
    if !keys.contains(&spki) {
        let in_config = tls
            .deny_spki
            .iter()
            .any(|k| normalize_spki(k).is_ok_and(|k| k == spki));
        if in_config {
            return Err(PkiError::Trust(format!(
                "key {spki} is denied in {} [tls] deny_spki: remove it there, then `ttx pki \
                 reload`",
                dd.config().display()
            )));
        }
        return Err(PkiError::NotPresent(format!("key {spki} is not denied")));
    }
    keys.retain(|k| *k != spki);
    let edit = (dd.deny_list(), Some(deny_text(&keys)));
    apply(dd, tls, "undenied", spki, vec![edit])
}

fn bundle_text(cas: &[CertificateDer<'static>]) -> Vec<u8> {
    cas.iter()
        .map(|c| cert_pem(c))
        .collect::<String>()
        .into_bytes()
}

/// `ttx pki trust add CA_CERT [--crl FILE]`: adds a CA of this node's federation to the bundle,
/// with its CRL when CRLs are in use.
pub fn trust_add(
    dd: &DataDir,
    tls: &TlsSection,
    federation: &str,
    ca_pem: &[u8],
    crl_pem: Option<&[u8]>,
) -> Result<TrustChange, PkiError> {
    let ca = one_ca(ca_pem, federation)?;
    let name = subject(&ca)?;
    let mut cas = bundle(dd, tls)?;
    if cas.iter().any(|c| c.as_ref() == ca.as_ref()) {
        return Err(PkiError::AlreadyDone(format!(
            "ca {name} is already trusted"
        )));
    }
    cas.push(ca.clone());
    let mut edits = vec![(bundle_path(dd, tls), Some(bundle_text(&cas)))];
    if let Some(pem) = crl_pem {
        let crl = one_crl(pem)?;
        crl_signer(&crl, std::slice::from_ref(&ca))?;
        edits.push((crl_file(dd, &ca)?, Some(crl_pem_bytes(&crl))));
    }
    apply(dd, tls, "ca trusted", name, edits)
}

fn crl_pem_bytes(crl: &CertificateRevocationListDer<'static>) -> Vec<u8> {
    crl_pem(crl.as_ref()).into_bytes()
}

/// `ttx pki trust remove CA_CERT`: takes a CA out of the bundle, and its CRLs out of
/// `tls/crl/`. Refused when this node's own certificate is issued by it or it is the last CA.
pub fn trust_remove(
    dd: &DataDir,
    tls: &TlsSection,
    ca_pem: &[u8],
) -> Result<TrustChange, PkiError> {
    let ca = &one_cert(ca_pem)?;
    let name = subject(ca)?;
    let mut cas = bundle(dd, tls)?;
    let before = cas.len();
    cas.retain(|c| c.as_ref() != ca.as_ref());
    if cas.len() == before {
        return Err(PkiError::NotPresent(format!(
            "ca {name} is not trusted (not in {})",
            bundle_path(dd, tls).display()
        )));
    }
    if cas.is_empty() {
        return Err(PkiError::Trust(format!(
            "ca {name} is the only trusted ca: trust another one first (`ttx pki trust add`)"
        )));
    }
    let mut edits = vec![(bundle_path(dd, tls), Some(bundle_text(&cas)))];
    let crl_dir = dd.crl_dir();
    for path in existing_crl_files(dd, tls, ca)? {
        if path.parent() == Some(crl_dir.as_path()) {
            edits.push((path, None));
        }
    }
    apply(dd, tls, "ca removed", name, edits)
}
