//! Node identity: who a peer is, as named by the one URI SAN in its certificate.
//!
//! A federation node certificate carries exactly one URI SAN of the form
//! `ttx://FEDERATION/SITE/NODE`. That SAN — never the subject CN, never a hash of the whole
//! certificate — is the identity every authorization decision is keyed on. This module is the
//! one small, tested place that turns a SAN (or a whole certificate) into a typed identity.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The URI scheme of node identities.
pub const SCHEME: &str = "ttx";

/// Longest federation, site or node name accepted.
pub const MAX_NAME_LEN: usize = 63;

/// Why a name or a SAN is not a valid identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// A federation, site or node name breaks the naming rule.
    #[error("invalid {what} name {name:?}: use 1-63 characters from a-z, 0-9 and '-', starting with a letter or digit")]
    BadName {
        /// Which part of the identity ("federation", "site" or "node").
        what: &'static str,
        /// The offending name.
        name: String,
    },
    /// The SAN is not of the form `ttx://FEDERATION/SITE/NODE`.
    #[error("identity URI {0:?} is not of the form ttx://FEDERATION/SITE/NODE")]
    BadUri(String),
    /// The certificate could not be parsed as X.509.
    #[error("certificate is not valid X.509: {0}")]
    BadCertificate(String),
    /// The certificate carries no `ttx://` URI SAN, or more than one.
    #[error("certificate must carry exactly one ttx:// URI SAN, found {0}")]
    SanCount(usize),
}

/// Checks a federation, site or node name: lowercase letters, digits and '-', 1 to 63 long,
/// not starting with '-'. Names end up in URIs, file names, log fields and SQL, so the rule is strict.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadName {
            what,
            name: name.to_string(),
        })
    }
}

/// A node of a site within a federation: the typed form of `ttx://FEDERATION/SITE/NODE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The federation (the CA's community) the node belongs to.
    pub federation: String,
    /// The site (one NOC) the node serves.
    pub site: String,
    /// The node within the site (for example `primary` or `standby`).
    pub node: String,
}

impl NodeIdentity {
    /// Builds an identity after validating each part.
    pub fn new(federation: &str, site: &str, node: &str) -> Result<Self, IdentityError> {
        validate_name("federation", federation)?;
        validate_name("site", site)?;
        validate_name("node", node)?;
        Ok(Self {
            federation: federation.to_string(),
            site: site.to_string(),
            node: node.to_string(),
        })
    }

    /// The URI SAN form, `ttx://FEDERATION/SITE/NODE`.
    pub fn to_uri(&self) -> String {
        format!("{SCHEME}://{}/{}/{}", self.federation, self.site, self.node)
    }

    /// Parses the URI SAN form; anything else (extra path parts, query, upper case) is refused.
    pub fn parse_uri(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadUri(uri.to_string());
        let rest = uri
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix("://"))
            .ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() != 3 {
            return Err(bad());
        }
        Self::new(parts[0], parts[1], parts[2]).map_err(|_| bad())
    }

    /// Reads the identity from a DER certificate: exactly one `ttx://` URI SAN is required.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        use x509_parser::prelude::*;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let mut found = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if uri.starts_with("ttx:") {
                        found.push(uri.to_string());
                    }
                }
            }
        }
        if found.len() != 1 {
            return Err(IdentityError::SanCount(found.len()));
        }
        Self::parse_uri(&found[0])
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let id = NodeIdentity::new("eu-noc", "noc-a", "primary").unwrap();
        assert_eq!(id.to_uri(), "ttx://eu-noc/noc-a/primary");
        assert_eq!(NodeIdentity::parse_uri(&id.to_uri()).unwrap(), id);
    }

    #[test]
    fn bad_uris_are_refused() {
        for uri in [
            "ttx://a/b",
            "ttx://a/b/c/d",
            "http://a/b/c",
            "ttx://A/b/c",
            "ttx://a//c",
            "ttx://a/b/c?x",
            "ttx://-a/b/c",
            "",
        ] {
            assert!(NodeIdentity::parse_uri(uri).is_err(), "{uri} accepted");
        }
    }

    #[test]
    fn names_are_bounded() {
        assert!(validate_name("site", &"a".repeat(63)).is_ok());
        assert!(validate_name("site", &"a".repeat(64)).is_err());
        assert!(validate_name("site", "noc a").is_err());
    }
}
