//! Protocol ids: one ALPN per protocol version (`ttx-exchange/1`, later `ttx-exchange/2`,
//! `ttx-repl/1`). The list is data: a new version is one more [`ProtocolId`] in [`SUPPORTED`].

use std::fmt;

/// A protocol family and version, written on the wire as the ALPN `FAMILY/VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolId {
    /// The family, for example `ttx-exchange`.
    pub family: &'static str,
    /// The version within the family, starting at 1.
    pub version: u16,
}

impl ProtocolId {
    /// The ALPN string, for example `ttx-exchange/1`.
    pub fn alpn(&self) -> String {
        format!("{}/{}", self.family, self.version)
    }

    /// Parses an ALPN string against the known protocols.
    pub fn from_alpn(alpn: &[u8]) -> Option<ProtocolId> {
        SUPPORTED
            .iter()
            .copied()
            .find(|p| p.alpn().as_bytes() == alpn)
    }
}

impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.family, self.version)
    }
}

/// The referral exchange family.
pub const EXCHANGE: &str = "ttx-exchange";
/// The hot-standby replication family.
pub const REPL: &str = "ttx-repl";
/// The witness family: a site's nodes renew and take the lease on their primary role.
pub const WITNESS: &str = "ttx-witness";

/// `ttx-exchange/1`: referrals between partner sites.
pub const EXCHANGE_V1: ProtocolId = ProtocolId {
    family: EXCHANGE,
    version: 1,
};

/// `ttx-exchange/2`: `ttx-exchange/1` plus attachments in chunks.
pub const EXCHANGE_V2: ProtocolId = ProtocolId {
    family: EXCHANGE,
    version: 2,
};

/// `ttx-repl/1`: the hot standby's stream from its primary.
pub const REPL_V1: ProtocolId = ProtocolId {
    family: REPL,
    version: 1,
};

/// `ttx-witness/1`: the witness's lease on a site's primary role (automatic failover).
pub const WITNESS_V1: ProtocolId = ProtocolId {
    family: WITNESS,
    version: 1,
};

/// Every protocol version this build speaks, newest first within a family. A node offers all of a
/// family's versions so that peers can be upgraded one at a time.
pub const SUPPORTED: &[ProtocolId] = &[EXCHANGE_V2, EXCHANGE_V1, REPL_V1, WITNESS_V1];

/// The versions of one family this build speaks, newest first.
pub fn versions_of(family: &str) -> Vec<ProtocolId> {
    SUPPORTED
        .iter()
        .copied()
        .filter(|p| p.family == family)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_strings() {
        assert_eq!(EXCHANGE_V1.alpn(), "ttx-exchange/1");
        assert_eq!(ProtocolId::from_alpn(b"ttx-exchange/1"), Some(EXCHANGE_V1));
        assert_eq!(ProtocolId::from_alpn(b"ttx-exchange/9"), None);
        assert_eq!(versions_of(EXCHANGE), vec![EXCHANGE_V2, EXCHANGE_V1]);
        assert_eq!(ProtocolId::from_alpn(b"ttx-exchange/2"), Some(EXCHANGE_V2));
        assert_eq!(REPL_V1.alpn(), "ttx-repl/1");
        assert_eq!(ProtocolId::from_alpn(b"ttx-repl/1"), Some(REPL_V1));
        assert_eq!(versions_of(REPL), vec![REPL_V1]);
        assert_eq!(WITNESS_V1.alpn(), "ttx-witness/1");
        assert_eq!(ProtocolId::from_alpn(b"ttx-witness/1"), Some(WITNESS_V1));
    }
}
