//! Revocation: record a revoked serial in the CA state, and write signed CRLs listing every
//! revoked serial with its reason. Nodes load one CRL per trusted CA (see [`super::trust`]).

use std::path::Path;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::ca::{Ca, RevokedEntry};
use super::inspect::{summarize_crl, CrlSummary};
use super::{
    fmt_time, normalize_serial, parse_cert, pem_certs, serial_hex, PkiError, CRL_VALIDITY_DAYS,
};

/// Why a certificate was revoked (the RFC 5280 reason codes an admin may choose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// No reason given.
    Unspecified,
    /// The node key may be known to someone else.
    KeyCompromise,
    /// The CA key may be known to someone else.
    CaCompromise,
    /// The node left the federation or changed hands.
    AffiliationChanged,
    /// A newer certificate replaces it.
    Superseded,
    /// The node was shut down for good.
    CessationOfOperation,
}

impl Reason {
    /// Every reason, in RFC 5280 code order.
    pub const ALL: [Reason; 6] = [
        Reason::Unspecified,
        Reason::KeyCompromise,
        Reason::CaCompromise,
        Reason::AffiliationChanged,
        Reason::Superseded,
        Reason::CessationOfOperation,
    ];

    /// The name used on the command line and in state and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unspecified => "unspecified",
            Reason::KeyCompromise => "key-compromise",
            Reason::CaCompromise => "ca-compromise",
            Reason::AffiliationChanged => "affiliation-changed",
            Reason::Superseded => "superseded",
            Reason::CessationOfOperation => "cessation-of-operation",
        }
    }

    /// The reason for an RFC 5280 reason code, if it is one of ours.
    pub fn from_code(code: u8) -> Option<Reason> {
        Reason::ALL.get(usize::from(code)).copied()
    }

    fn to_rcgen(self) -> rcgen::RevocationReason {
        match self {
            Reason::Unspecified => rcgen::RevocationReason::Unspecified,
            Reason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            Reason::CaCompromise => rcgen::RevocationReason::CaCompromise,
            Reason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            Reason::Superseded => rcgen::RevocationReason::Superseded,
            Reason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Reason {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                PkiError::invalid(
                    "revocation reason",
                    format!("{s:?}: use one of {}", names.join(", ")),
                )
            })
    }
}

/// The serial (lowercase hex) of the first certificate in PEM text, for revoking by file.
pub fn serial_of_cert_pem(pem: &[u8]) -> Result<String, PkiError> {
    let der = pem_certs(pem, "certificate")?.remove(0);
    Ok(serial_hex(parse_cert(&der)?.raw_serial()))
}

/// Revokes the certificate with `serial` issued by the CA in `ca_dir`. The serial must be in the
/// CA index ([`PkiError::UnknownSerial`] otherwise) and not revoked already
/// ([`PkiError::AlreadyRevoked`]). The next [`crl`] lists it.
pub fn revoke(ca_dir: &Path, serial: &str, reason: Reason) -> Result<RevokedEntry, PkiError> {
    let serial = normalize_serial(serial)?;
    let ca = Ca::open(ca_dir)?;
    if !ca.index()?.iter().any(|e| e.serial == serial) {
        return Err(PkiError::UnknownSerial(serial));
    }
    let mut state = ca.revocations()?;
    if state.revoked.iter().any(|e| e.serial == serial) {
        return Err(PkiError::AlreadyRevoked(serial));
    }
    let entry = RevokedEntry {
        serial,
        reason,
        revoked_at: fmt_time(OffsetDateTime::now_utc()),
    };
    state.revoked.push(entry.clone());
    ca.save_revocations(&state)?;
    Ok(entry)
}

/// Writes a CRL (PEM) signed by the CA in `ca_dir` to `out`: every revoked serial with its
/// reason and time, this update now, next update in [`CRL_VALIDITY_DAYS`] days, and a CRL number
/// one above the last. Returns the summary of the CRL written.
pub fn crl(ca_dir: &Path, out: &Path) -> Result<CrlSummary, PkiError> {
    let ca = Ca::open(ca_dir)?;
    let mut state = ca.revocations()?;
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::with_capacity(state.revoked.len());
    for entry in &state.revoked {
        let serial = hex::decode(&entry.serial)
            .map_err(|e| PkiError::invalid("ca state revoked.json", e))?;
        let revocation_time = OffsetDateTime::parse(&entry.revoked_at, &Rfc3339)
            .map_err(|e| PkiError::invalid("ca state revoked.json", e))?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time,
            reason_code: Some(entry.reason.to_rcgen()),
            invalidity_date: None,
        });
    }
    let number = state.crl_number + 1;
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + Duration::days(CRL_VALIDITY_DAYS),
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let list = params
        .signed_by(&ca.issuer()?)
        .map_err(|e| PkiError::crypto("signing the crl", e))?;
    let pem = list
        .pem()
        .map_err(|e| PkiError::crypto("encoding the crl", e))?;
    super::files::write_public(out, pem.as_bytes())?;
    state.crl_number = number;
    ca.save_revocations(&state)?;
    summarize_crl(list.der(), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::test_ca;

    #[test]
    fn reasons_parse_and_print() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>().unwrap(), r);
            assert_eq!(Reason::from_code(r.to_rcgen() as u8), Some(r));
        }
        let err = "bogus".parse::<Reason>().unwrap_err();
        assert!(err.to_string().contains("key-compromise"), "{err}");
    }

    #[test]
    fn unknown_serials_are_not_found_and_crl_numbers_grow() {
        let (tmp, ca_dir) = test_ca("eu");
        let err = revoke(&ca_dir, "0102", Reason::Superseded).unwrap_err();
        assert!(matches!(err, PkiError::UnknownSerial(_)), "{err}");
        let out = tmp.path().join("crl.pem");
        assert_eq!(crl(&ca_dir, &out).unwrap().crl_number, Some(1));
        assert_eq!(crl(&ca_dir, &out).unwrap().crl_number, Some(2));
    }
}
