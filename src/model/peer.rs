//! The peer registry's records and the pure decisions of `ttx peer add|remove|accept|deny` and
//! of an unknown peer showing up (it lands on the pending list).

use serde::{Deserialize, Serialize};

use super::clock::Millis;
use super::command::CommandError;
use super::event::EventKind;

/// What an admin decided about a peer site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerState {
    /// Registered: may connect and do what its permissions allow.
    Accepted,
    /// Seen with a valid certificate, not yet decided by an admin.
    Pending,
    /// Refused.
    Denied,
}

impl PeerState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Accepted => "accepted",
            PeerState::Pending => "pending",
            PeerState::Denied => "denied",
        }
    }
}

/// One partner site (or this site's standby) in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The site name (from the certificate's URI SAN).
    pub site: String,
    /// Where to reach it, primary first (`HOST:PORT`).
    pub addrs: Vec<String>,
    /// Pinned key fingerprints (SPKI SHA-256 hex); a pinned peer needs no shared CA.
    pub pins: Vec<String>,
    /// Admin decision.
    pub state: PeerState,
    /// May exchange referrals.
    pub exchange: bool,
    /// May act as this site's standby (only a node of this same site).
    pub standby: bool,
    /// The node and key last seen from it (for the pending list).
    pub seen_node: Option<String>,
    /// The key fingerprint last seen.
    pub seen_spki: Option<String>,
    /// When the record was made.
    pub since: Millis,
    /// What this peer may see of our tickets and how it may use the exchange. Kept in the
    /// registry (so it replicates and a promoted standby sends exactly what its old primary
    /// would); a record without one has the default policy.
    #[serde(default)]
    pub sharing: crate::exchange::SharingPolicy,
}

/// A change to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    /// Register (or update) a peer as accepted.
    Add {
        /// Site.
        site: String,
        /// Addresses.
        addrs: Vec<String>,
        /// Pins.
        pins: Vec<String>,
        /// May exchange referrals.
        exchange: bool,
        /// May be the standby.
        standby: bool,
    },
    /// Forget a peer.
    Remove {
        /// Site.
        site: String,
    },
    /// Accept a pending (or denied) peer.
    Accept {
        /// Site.
        site: String,
    },
    /// Deny a peer.
    Deny {
        /// Site.
        site: String,
    },
    /// A peer with a valid certificate connected: record it as pending if unknown.
    Seen {
        /// Site.
        site: String,
        /// Node.
        node: String,
        /// Key fingerprint.
        spki: String,
    },
}

impl PeerOp {
    /// The site the operation is about.
    pub fn site(&self) -> &str {
        match self {
            PeerOp::Add { site, .. }
            | PeerOp::Remove { site }
            | PeerOp::Accept { site }
            | PeerOp::Deny { site }
            | PeerOp::Seen { site, .. } => site,
        }
    }
}

/// Most addresses per peer.
pub const MAX_ADDRS: usize = 8;
/// Most pins per peer (old and new key during a rotation).
pub const MAX_PINS: usize = 4;

/// Decides the event of a registry change, given the current record. `Ok(None)`: no change.
pub fn decide(
    current: Option<&PeerRecord>,
    op: PeerOp,
    now: Millis,
) -> Result<Option<EventKind>, CommandError> {
    let site = op.site().to_string();
    crate::identity::validate_name("site", &site)
        .map_err(|e| CommandError::Invalid(e.to_string()))?;
    let missing = || {
        CommandError::NotFound(format!(
            "no peer {site:?} (see `ttx peer list` and `ttx peer pending`)"
        ))
    };
    let upsert = |r: PeerRecord| Ok(Some(EventKind::PeerUpserted { peer: r }));
    match op {
        PeerOp::Add {
            addrs,
            pins,
            exchange,
            standby,
            ..
        } => {
            if addrs.is_empty() || addrs.len() > MAX_ADDRS {
                return Err(CommandError::Invalid(format!(
                    "give 1 to {MAX_ADDRS} addresses (HOST:PORT)"
                )));
            }
            for a in &addrs {
                let ok = a
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !ok {
                    return Err(CommandError::Invalid(format!(
                        "address {a:?} is not HOST:PORT"
                    )));
                }
            }
            if pins.len() > MAX_PINS {
                return Err(CommandError::Invalid(format!(
                    "at most {MAX_PINS} pins per peer"
                )));
            }
            if !exchange && !standby {
                return Err(CommandError::Invalid(
                    "allow at least one of exchange, standby".into(),
                ));
            }
            let mut r = current.cloned().unwrap_or(PeerRecord {
                site: site.clone(),
                addrs: Vec::new(),
                pins: Vec::new(),
                state: PeerState::Accepted,
                exchange,
                standby,
                seen_node: None,
                seen_spki: None,
                since: now,
                sharing: crate::exchange::SharingPolicy::default(),
            });
            (r.addrs, r.pins, r.exchange, r.standby, r.state) =
                (addrs, pins, exchange, standby, PeerState::Accepted);
            if Some(&r) == current {
                return Ok(None);
            }
            upsert(r)
        }
        PeerOp::Remove { .. } => {
            current.ok_or_else(missing)?;
            Ok(Some(EventKind::PeerRemoved { site }))
        }
        PeerOp::Accept { .. } => {
            let mut r = current.cloned().ok_or_else(missing)?;
            if r.state == PeerState::Accepted {
                return Ok(None);
            }
            if r.addrs.is_empty() && !r.exchange && !r.standby {
                r.exchange = true;
            }
            r.state = PeerState::Accepted;
            upsert(r)
        }
        PeerOp::Deny { .. } => {
            let mut r = current.cloned().ok_or_else(missing)?;
            if r.state == PeerState::Denied {
                return Ok(None);
            }
            r.state = PeerState::Denied;
            upsert(r)
        }
        PeerOp::Seen { node, spki, .. } => match current {
            Some(r) if r.state != PeerState::Pending => Ok(None),
            Some(r)
                if r.seen_node.as_deref() == Some(&node)
                    && r.seen_spki.as_deref() == Some(&spki) =>
            {
                Ok(None)
            }
            _ => {
                let mut r = current.cloned().unwrap_or(PeerRecord {
                    site: site.clone(),
                    addrs: Vec::new(),
                    pins: Vec::new(),
                    state: PeerState::Pending,
                    exchange: false,
                    standby: false,
                    seen_node: None,
                    seen_spki: None,
                    since: now,
                    sharing: crate::exchange::SharingPolicy::default(),
                });
                r.seen_node = Some(node);
                r.seen_spki = Some(spki);
                upsert(r)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(site: &str) -> PeerOp {
        PeerOp::Add {
            site: site.into(),
            addrs: vec!["127.0.0.1:4433".into()],
            pins: vec![],
            exchange: true,
            standby: false,
        }
    }

    fn record(e: Option<EventKind>) -> PeerRecord {
        match e {
            Some(EventKind::PeerUpserted { peer }) => peer,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pending_then_accept_then_deny() {
        let seen = PeerOp::Seen {
            site: "telco-b".into(),
            node: "primary".into(),
            spki: "ab".into(),
        };
        let r = record(decide(None, seen.clone(), 1).unwrap());
        assert_eq!(r.state, PeerState::Pending);
        assert_eq!(decide(Some(&r), seen, 2).unwrap(), None);
        let r = record(
            decide(
                Some(&r),
                PeerOp::Accept {
                    site: "telco-b".into(),
                },
                3,
            )
            .unwrap(),
        );
        assert_eq!((r.state, r.exchange), (PeerState::Accepted, true));
        let r = record(
            decide(
                Some(&r),
                PeerOp::Deny {
                    site: "telco-b".into(),
                },
                4,
            )
            .unwrap(),
        );
        assert_eq!(r.state, PeerState::Denied);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(decide(None, PeerOp::Accept { site: "x".into() }, 0).is_err());
        assert!(decide(None, add("Bad Site"), 0).is_err());
        let PeerOp::Add {
            site,
            pins,
            exchange,
            standby,
            ..
        } = add("b")
        else {
            unreachable!()
        };
        let bad_addr = PeerOp::Add {
            site,
            addrs: vec!["nohost".into()],
            pins,
            exchange,
            standby,
        };
        assert!(decide(None, bad_addr, 0)
            .unwrap_err()
            .to_string()
            .contains("HOST:PORT"));
        let r = record(decide(None, add("b"), 0).unwrap());
        assert_eq!(decide(Some(&r), add("b"), 1).unwrap(), None);
    }
}
