//! The frames of `ttx-witness/1`: a site's nodes and the witness that holds the lease on the
//! site's primary role (automatic failover's third voice).
//!
//! One-shot requests only (a `Request` frame with a [`WitnessRequest`] body, answered by a
//! `Response` with a [`WitnessAnswer`] body): the site's primary renews its lease every third
//! of the term; its standby asks to be promoted. Every frame carries an epoch. Authorization
//! failures (not a node of the site it names, no witness permission) are not answers: the
//! request fails with the stable code `not_authorized`.

use serde::{Deserialize, Serialize};

/// Node → witness. Variant indexes are stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WitnessRequest {
    /// Index 0: the primary renews (or first takes) its lease.
    Renew(Renew),
    /// Index 1: the standby asks to be promoted (the primary's lease ran out).
    Promote(PromoteAsk),
}

/// A primary's renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Renew {
    /// The site (must be the one the sender's certificate names).
    pub site: String,
    /// The node renewing (must be the sender's).
    pub node: String,
    /// Its epoch.
    pub epoch: u64,
    /// Whether it acknowledges writes the standby may lack (sync degraded to async, or async
    /// mode): the witness then never promotes the standby.
    pub degraded: bool,
}

/// A standby's request to be promoted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteAsk {
    /// The site (must be the one the sender's certificate names).
    pub site: String,
    /// The node asking (must be the sender's).
    pub node: String,
    /// The site's epoch as the node knows it (its own).
    pub epoch: u64,
}

/// Witness → node. Variant indexes are stable: append only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WitnessAnswer {
    /// Index 0: the renewal is granted for `term_ms` (counted by the renewer from when it sent
    /// it, less `margin_ms`).
    Granted {
        /// The epoch the lease is held in.
        epoch: u64,
        /// How long the lease lasts.
        term_ms: u64,
        /// The clock drift allowed over one term.
        margin_ms: u64,
    },
    /// Index 1: the asker is promoted: it must write `epoch` durably before its first write.
    Promoted {
        /// The new epoch.
        epoch: u64,
    },
    /// Index 2: refused; `holder` holds the role in `epoch`.
    Refused(WitnessRefusal),
}

/// Why the witness refused, and who holds the role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessRefusal {
    /// The reason.
    pub reason: RefusalReason,
    /// The site's epoch as the witness knows it.
    pub epoch: u64,
    /// Its holder (empty when nobody holds it).
    pub holder: String,
    /// Milliseconds until the holder's lease runs out, by the witness's clock (0: it has).
    pub expires_in_ms: u64,
}

/// The reasons of a [`WitnessRefusal`]. Variant indexes are stable: append only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// Index 0: another node holds the role and its lease has not run out.
    Held,
    /// Index 1: the request names an older epoch than the witness knows: the asker is deposed.
    Fenced,
    /// Index 2: the holder said at its last renewal that it was degraded: only an operator may
    /// promote (`ttx promote`).
    Degraded,
}

impl RefusalReason {
    /// The stable name (`held`, `fenced`, `degraded`).
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::Held => "held",
            RefusalReason::Fenced => "fenced",
            RefusalReason::Degraded => "degraded",
        }
    }
}

#[cfg(test)]
mod golden {
    //! Golden bytes of the witness frames: a change here is a protocol break.
    use super::*;

    use crate::wire::golden::check_body as check;

    #[test]
    fn renew_and_promote() {
        check(
            WitnessRequest::Renew(Renew {
                site: "noc-a".into(),
                node: "primary".into(),
                epoch: 2,
                degraded: false,
            }),
            "00000000
             0500000000000000 6e6f632d61
             0700000000000000 7072696d617279
             0200000000000000
             00",
        );
        check(
            WitnessRequest::Promote(PromoteAsk {
                site: "noc-a".into(),
                node: "standby".into(),
                epoch: 2,
            }),
            "01000000
             0500000000000000 6e6f632d61
             0700000000000000 7374616e646279
             0200000000000000",
        );
    }

    #[test]
    fn answers() {
        check(
            WitnessAnswer::Granted {
                epoch: 2,
                term_ms: 2000,
                margin_ms: 500,
            },
            "00000000 0200000000000000 d007000000000000 f401000000000000",
        );
        check(
            WitnessAnswer::Promoted { epoch: 3 },
            "01000000 0300000000000000",
        );
        check(
            WitnessAnswer::Refused(WitnessRefusal {
                reason: RefusalReason::Held,
                epoch: 2,
                holder: "primary".into(),
                expires_in_ms: 1200,
            }),
            "02000000 00000000 0200000000000000
             0700000000000000 7072696d617279
             b004000000000000",
        );
        check(RefusalReason::Fenced, "01000000");
        check(RefusalReason::Degraded, "02000000");
    }
}
