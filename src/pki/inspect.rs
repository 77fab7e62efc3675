//! Inspection: what an admin needs to see about a certificate, a CRL or a CSR — identity,
//! serial, validity, days left with warnings ahead of expiry, and the SPKI SHA-256 fingerprint.
//! Pure functions of the bytes and a `now`, so they are tested without clocks.

use std::path::Path;

use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{
    CertificateRevocationList, FromDer, GeneralName, ParsedExtension, X509CertificationRequest,
};

use super::{
    ca_federation, fmt_time, parse_cert, serial_hex, spki_sha256_of_spki, PkiError, Reason,
};
use crate::identity::NodeIdentity;

/// Days ahead of expiry at which a warning is shown, most distant first.
pub const WARN_DAYS: [i64; 3] = [30, 14, 7];

/// One thing found in a file.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inspection {
    /// A certificate (node or CA).
    Certificate(CertSummary),
    /// A certificate revocation list.
    Crl(CrlSummary),
    /// A certificate signing request.
    Csr(CsrSummary),
}

/// What a certificate says.
#[derive(Debug, Clone, Serialize)]
pub struct CertSummary {
    /// `ttx://FEDERATION/SITE/NODE`, `CA federation NAME`, or `none: WHY`.
    pub identity: String,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// Subject DN.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// Whole days left, rounded up (0 or less once expired).
    pub days_left: i64,
    /// SHA-256 of the SubjectPublicKeyInfo, lowercase hex: the key fingerprint and pin format.
    pub spki_sha256: String,
    /// `expired`, `not yet valid`, or `expires within N days` (N = 30, 14, 7); absent when fine.
    pub warning: Option<String>,
}

/// What a CRL says.
#[derive(Debug, Clone, Serialize)]
pub struct CrlSummary {
    /// Issuer DN (the CA).
    pub issuer: String,
    /// The CRL number.
    pub crl_number: Option<u64>,
    /// When it was issued (RFC 3339).
    pub this_update: String,
    /// When the next one is due (RFC 3339).
    pub next_update: Option<String>,
    /// The revoked certificates.
    pub revoked: Vec<CrlEntry>,
    /// `stale` when the next update is overdue.
    pub warning: Option<String>,
}

/// One revoked certificate in a CRL.
#[derive(Debug, Clone, Serialize)]
pub struct CrlEntry {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Reason name (see [`Reason`]), or `code N` for others; absent when the CRL gives none.
    pub reason: Option<String>,
    /// When it was revoked (RFC 3339).
    pub revoked_at: String,
}

/// What a CSR asks for.
#[derive(Debug, Clone, Serialize)]
pub struct CsrSummary {
    /// Subject DN.
    pub subject: String,
    /// The URI SANs it asks for (the CA ignores them and decides the identity).
    pub requested: Vec<String>,
    /// SHA-256 of its SubjectPublicKeyInfo.
    pub spki_sha256: String,
    /// Whether its self-signature verifies.
    pub signature_valid: bool,
}

/// Reads a file and summarizes every certificate, CRL and CSR in it (PEM, or one DER
/// certificate). A file holding a private key is refused rather than shown.
pub fn inspect_file(path: &Path) -> Result<Vec<Inspection>, PkiError> {
    let bytes = super::files::read(path, "check the path")?;
    inspect_pem(&bytes, OffsetDateTime::now_utc())
        .map_err(|e| PkiError::invalid(format!("file {}", path.display()), e))
}

/// Summarizes every certificate, CRL and CSR in PEM text as of `now`; DER input is read as one
/// certificate.
pub fn inspect_pem(bytes: &[u8], now: OffsetDateTime) -> Result<Vec<Inspection>, PkiError> {
    let mut found = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|e| PkiError::invalid("pem", e))?;
        match kind {
            SectionKind::Certificate => {
                found.push(Inspection::Certificate(summarize_cert(&der, now)?))
            }
            SectionKind::Crl => found.push(Inspection::Crl(summarize_crl(&der, now)?)),
            SectionKind::Csr => found.push(Inspection::Csr(summarize_csr(&der)?)),
            SectionKind::PrivateKey | SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey => {
                return Err(PkiError::invalid(
                    "input",
                    "it holds a private key, which is never shown",
                ))
            }
            _ => {}
        }
    }
    if found.is_empty() {
        if parse_cert(bytes).is_ok() {
            found.push(Inspection::Certificate(summarize_cert(bytes, now)?));
        } else {
            return Err(PkiError::invalid(
                "input",
                "no certificate, crl or certificate request found",
            ));
        }
    }
    Ok(found)
}

/// Summarizes a DER certificate as of `now`.
pub fn summarize_cert(der: &[u8], now: OffsetDateTime) -> Result<CertSummary, PkiError> {
    let cert = parse_cert(der)?;
    let identity = match (cert.is_ca(), ca_federation(&cert)) {
        (true, Some(federation)) => format!("CA federation {federation}"),
        _ => match NodeIdentity::from_cert_der(der) {
            Ok(id) => id.to_uri(),
            Err(e) => format!("none: {e}"),
        },
    };
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    Ok(CertSummary {
        identity,
        is_ca: cert.is_ca(),
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        not_before: fmt_time(not_before),
        not_after: fmt_time(not_after),
        days_left: days_left(not_after, now),
        spki_sha256: spki_sha256_of_spki(cert.public_key().raw),
        warning: expiry_warning(not_before, not_after, now),
    })
}

/// Summarizes a DER CRL as of `now`.
pub fn summarize_crl(der: &[u8], now: OffsetDateTime) -> Result<CrlSummary, PkiError> {
    let (_, crl) =
        CertificateRevocationList::from_der(der).map_err(|e| PkiError::invalid("crl", e))?;
    let crl_number = crl.crl_number().and_then(|n| {
        let bytes = n.to_bytes_be();
        (bytes.len() <= 8).then(|| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    });
    let next_update = crl.next_update().map(|t| t.to_datetime());
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| CrlEntry {
            serial: serial_hex(r.raw_serial()),
            reason: r
                .reason_code()
                .map(|(_, code)| match Reason::from_code(code.0) {
                    Some(reason) => reason.as_str().to_string(),
                    None => format!("code {}", code.0),
                }),
            revoked_at: fmt_time(r.revocation_date.to_datetime()),
        })
        .collect();
    Ok(CrlSummary {
        issuer: crl.issuer().to_string(),
        crl_number,
        this_update: fmt_time(crl.last_update().to_datetime()),
        next_update: next_update.map(fmt_time),
        revoked,
        warning: next_update
            .filter(|next| *next < now)
            .map(|next| format!("stale: the next update was due {}", fmt_time(next))),
    })
}

/// Summarizes a DER CSR.
pub fn summarize_csr(der: &[u8]) -> Result<CsrSummary, PkiError> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| PkiError::invalid("certificate signing request", e))?;
    let mut requested = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            requested.extend(san.general_names.iter().filter_map(|n| match n {
                GeneralName::URI(uri) => Some(uri.to_string()),
                _ => None,
            }));
        }
    }
    let info = &csr.certification_request_info;
    Ok(CsrSummary {
        subject: info.subject.to_string(),
        requested,
        spki_sha256: spki_sha256_of_spki(info.subject_pki.raw),
        signature_valid: csr.verify_signature().is_ok(),
    })
}

/// Whole days from `now` to `not_after`, rounded up (a certificate with an hour left has 1).
pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (not_after - now)
        .whole_seconds()
        .saturating_add(86_399)
        .div_euclid(86_400)
}

/// The warning for a validity period at `now`: `not yet valid`, `expired`, or
/// `expires within N days` for the smallest N of [`WARN_DAYS`] the remaining time fits in.
pub fn expiry_warning(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Option<String> {
    if now < not_before {
        return Some("not yet valid".into());
    }
    if now > not_after {
        return Some("expired".into());
    }
    let left = not_after - now;
    WARN_DAYS
        .iter()
        .rev()
        .find(|days| left <= Duration::days(**days))
        .map(|days| format!("expires within {days} days"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn warnings_follow_the_thresholds() {
        let now = datetime!(2030-01-01 00:00 UTC);
        let start = now - Duration::days(1);
        let at = |d: Duration| expiry_warning(start, now + d, now);
        assert_eq!(at(Duration::days(31)), None);
        assert_eq!(at(Duration::days(30)).unwrap(), "expires within 30 days");
        assert_eq!(at(Duration::days(15)).unwrap(), "expires within 30 days");
        assert_eq!(at(Duration::days(10)).unwrap(), "expires within 14 days");
        assert_eq!(at(Duration::days(14)).unwrap(), "expires within 14 days");
        assert_eq!(at(Duration::days(7)).unwrap(), "expires within 7 days");
        assert_eq!(at(Duration::hours(1)).unwrap(), "expires within 7 days");
        assert_eq!(at(Duration::seconds(-1)).unwrap(), "expired");
        let future = expiry_warning(now + Duration::hours(1), now + Duration::days(90), now);
        assert_eq!(future.unwrap(), "not yet valid");
    }

    #[test]
    fn days_left_round_up() {
        let now = datetime!(2030-01-01 00:00 UTC);
        assert_eq!(
            days_left(now + Duration::days(10) - Duration::seconds(1), now),
            10
        );
        assert_eq!(days_left(now + Duration::days(10), now), 10);
        assert_eq!(days_left(now + Duration::hours(1), now), 1);
        assert_eq!(days_left(now, now), 0);
        assert_eq!(days_left(now - Duration::days(2), now), -2);
    }

    #[test]
    fn garbage_and_keys_are_refused() {
        let now = OffsetDateTime::now_utc();
        assert!(inspect_pem(b"hello", now).is_err());
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let err = inspect_pem(key.serialize_pem().as_bytes(), now).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }
}
