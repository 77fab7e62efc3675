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
    /// The witness relation (only another site): on a witness, this site's nodes may renew and
    /// take the lease on their primary role; on a witnessed site, this peer is its witness.
    #[serde(default)]
    pub witness: bool,
    /// The node and key last seen from it (for the pending list).
    pub seen_node: Option<String>,
    /// The key fingerprint last seen.
    pub seen_spki: Option<String>,
    /// The issuer (subject of the CA) of the certificate last seen.
    #[serde(default)]
    pub seen_issuer: Option<String>,
    /// The address it was last seen from (`IP:PORT`).
    #[serde(default)]
    pub seen_addr: Option<String>,
    /// When that sighting was recorded.
    #[serde(default)]
    pub seen_at: Option<Millis>,
    /// When the record was made (a pending peer: when it was first seen).
    pub since: Millis,
    /// What this peer may see of our tickets and how it may use the exchange. Kept in the
    /// registry (so it replicates and a promoted standby sends exactly what its old primary
    /// would); a record without one has the default policy.
    #[serde(default)]
    pub sharing: crate::exchange::SharingPolicy,
}

/// What a peer may do, as `ttx peer add --allow` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    /// May exchange referrals.
    pub exchange: bool,
    /// May be this site's standby.
    pub standby: bool,
    /// The witness relation.
    pub witness: bool,
}

/// A sighting of a peer no admin has decided on: who it said it was and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// Node.
    pub node: String,
    /// Key fingerprint.
    pub spki: String,
    /// The certificate's issuer.
    pub issuer: String,
    /// Where it came from (`IP:PORT`).
    pub addr: String,
}

/// A change to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    /// Register a peer as accepted, or change an existing one: only what is given changes
    /// (`None` keeps the record's addresses, pins or permissions).
    Add {
        /// Site.
        site: String,
        /// Addresses (required for a new peer).
        addrs: Option<Vec<String>>,
        /// Pins (an empty list drops every pin).
        pins: Option<Vec<String>>,
        /// Permissions (a new peer without them may exchange).
        allow: Option<Allow>,
    },
    /// Forget a peer.
    Remove {
        /// Site.
        site: String,
    },
    /// Accept a pending (or denied) peer, optionally giving the addresses to reach it at.
    Accept {
        /// Site.
        site: String,
        /// Addresses to set.
        addrs: Option<Vec<String>>,
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
        /// What was seen.
        seen: Sighting,
    },
}

impl PeerOp {
    /// The site the operation is about.
    pub fn site(&self) -> &str {
        match self {
            PeerOp::Add { site, .. }
            | PeerOp::Remove { site }
            | PeerOp::Accept { site, .. }
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
            addrs, pins, allow, ..
        } => {
            if let Some(addrs) = &addrs {
                check_addrs(addrs)?;
            }
            if pins.as_ref().is_some_and(|p| p.len() > MAX_PINS) {
                return Err(CommandError::Invalid(format!(
                    "at most {MAX_PINS} pins per peer"
                )));
            }
            if allow.is_some_and(|a| !a.exchange && !a.standby && !a.witness) {
                return Err(CommandError::Invalid(
                    "allow at least one of exchange, standby, witness".into(),
                ));
            }
            let mut r = match current {
                Some(r) => r.clone(),
                None => {
                    if addrs.is_none() {
                        return Err(CommandError::Invalid(format!(
                            "{site} is a new peer: give its addresses (--addr HOST:PORT)"
                        )));
                    }
                    let allow = allow.unwrap_or(Allow {
                        exchange: true,
                        standby: false,
                        witness: false,
                    });
                    new_record(&site, PeerState::Accepted, allow, now)
                }
            };
            if let Some(addrs) = addrs {
                r.addrs = addrs;
            }
            if let Some(pins) = pins {
                r.pins = pins;
            }
            if let Some(a) = allow {
                (r.exchange, r.standby, r.witness) = (a.exchange, a.standby, a.witness);
            }
            if r.addrs.is_empty() {
                return Err(CommandError::Invalid(format!(
                    "{site} has no address yet: give one (--addr HOST:PORT)"
                )));
            }
            r.state = PeerState::Accepted;
            if Some(&r) == current {
                return Ok(None);
            }
            upsert(r)
        }
        PeerOp::Remove { .. } => {
            current.ok_or_else(missing)?;
            Ok(Some(EventKind::PeerRemoved { site }))
        }
        PeerOp::Accept { addrs, .. } => {
            let mut r = current.cloned().ok_or_else(missing)?;
            if let Some(addrs) = addrs {
                check_addrs(&addrs)?;
                r.addrs = addrs;
            }
            if r.state == PeerState::Pending && !r.exchange && !r.standby && !r.witness {
                r.exchange = true;
            }
            r.state = PeerState::Accepted;
            if Some(&r) == current {
                return Ok(None);
            }
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
        PeerOp::Seen { seen, .. } => match current {
            Some(r) if r.state != PeerState::Pending => Ok(None),
            Some(r)
                if r.seen_node.as_deref() == Some(&seen.node)
                    && r.seen_spki.as_deref() == Some(&seen.spki)
                    && r.seen_issuer.as_deref() == Some(&seen.issuer)
                    && r.seen_addr.as_deref() == Some(&seen.addr) =>
            {
                Ok(None)
            }
            _ => {
                let none = Allow {
                    exchange: false,
                    standby: false,
                    witness: false,
                };
                let mut r = current
                    .cloned()
                    .unwrap_or_else(|| new_record(&site, PeerState::Pending, none, now));
                r.seen_node = Some(seen.node);
                r.seen_spki = Some(seen.spki);
                r.seen_issuer = Some(seen.issuer);
                r.seen_addr = Some(seen.addr);
                r.seen_at = Some(now);
                upsert(r)
            }
        },
    }
}

impl PeerRecord {
    /// What it may do, in words (`exchange, standby`).
    pub fn allows(&self) -> String {
        let mut a = Vec::new();
        if self.exchange {
            a.push("exchange");
        }
        if self.standby {
            a.push("standby");
        }
        if self.witness {
            a.push("witness");
        }
        if a.is_empty() {
            "nothing".into()
        } else {
            a.join(", ")
        }
    }
}

/// What a registry change changed, in words (`addresses 192.0.2.1:4433 -> 192.0.2.2:4433`,
/// `pins 1 -> 0`), for the answer to `ttx peer add|accept|deny`. A new record lists what it
/// holds.
pub fn changes(before: Option<&PeerRecord>, after: Option<&PeerRecord>) -> Vec<String> {
    let (Some(b), Some(a)) = (before, after) else {
        return match after {
            Some(a) => vec![
                format!("state {}", a.state.as_str()),
                format!("addresses {}", a.addrs.join(",")),
                format!("pins {}", a.pins.len()),
                format!("allow {}", a.allows()),
            ],
            None => vec!["removed".into()],
        };
    };
    let mut out = Vec::new();
    if b.state != a.state {
        out.push(format!(
            "state {} -> {}",
            b.state.as_str(),
            a.state.as_str()
        ));
    }
    if b.addrs != a.addrs {
        let show = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        out.push(format!(
            "addresses {} -> {}",
            show(&b.addrs),
            show(&a.addrs)
        ));
    }
    if b.pins != a.pins {
        out.push(format!("pins {} -> {}", b.pins.len(), a.pins.len()));
    }
    if (b.exchange, b.standby, b.witness) != (a.exchange, a.standby, a.witness) {
        out.push(format!("allow {} -> {}", b.allows(), a.allows()));
    }
    out
}

fn new_record(site: &str, state: PeerState, allow: Allow, now: Millis) -> PeerRecord {
    PeerRecord {
        site: site.to_string(),
        addrs: Vec::new(),
        pins: Vec::new(),
        state,
        exchange: allow.exchange,
        standby: allow.standby,
        witness: allow.witness,
        seen_node: None,
        seen_spki: None,
        seen_issuer: None,
        seen_addr: None,
        seen_at: None,
        since: now,
        sharing: crate::exchange::SharingPolicy::default(),
    }
}

/// 1 to [`MAX_ADDRS`] addresses, each `HOST:PORT` with a port above 0.
fn check_addrs(addrs: &[String]) -> Result<(), CommandError> {
    if addrs.is_empty() || addrs.len() > MAX_ADDRS {
        return Err(CommandError::Invalid(format!(
            "give 1 to {MAX_ADDRS} addresses (HOST:PORT)"
        )));
    }
    for a in addrs {
        let ok = a
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(CommandError::Invalid(format!(
                "address {a:?} is not HOST:PORT"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(site: &str) -> PeerOp {
        PeerOp::Add {
            site: site.into(),
            addrs: Some(vec!["127.0.0.1:4433".into()]),
            pins: None,
            allow: None,
        }
    }

    fn record(e: Option<EventKind>) -> PeerRecord {
        match e {
            Some(EventKind::PeerUpserted { peer }) => peer,
            other => panic!("{other:?}"),
        }
    }

    fn seen(addr: &str) -> PeerOp {
        PeerOp::Seen {
            site: "telco-b".into(),
            seen: Sighting {
                node: "primary".into(),
                spki: "ab".into(),
                issuer: "CN=ttx federation CA eu".into(),
                addr: addr.into(),
            },
        }
    }

    #[test]
    fn pending_then_accept_then_deny() {
        let r = record(decide(None, seen("192.0.2.1:4433"), 1).unwrap());
        assert_eq!(r.state, PeerState::Pending);
        assert_eq!(r.seen_issuer.as_deref(), Some("CN=ttx federation CA eu"));
        assert_eq!((r.since, r.seen_at), (1, Some(1)));
        assert_eq!(decide(Some(&r), seen("192.0.2.1:4433"), 2).unwrap(), None);
        // Seen again from elsewhere: the address and time move, the first sighting stays.
        let r = record(decide(Some(&r), seen("192.0.2.9:4433"), 3).unwrap());
        assert_eq!(r.seen_addr.as_deref(), Some("192.0.2.9:4433"));
        assert_eq!((r.since, r.seen_at), (1, Some(3)));
        let accept = PeerOp::Accept {
            site: "telco-b".into(),
            addrs: Some(vec!["192.0.2.9:4433".into()]),
        };
        let r = record(decide(Some(&r), accept, 3).unwrap());
        assert_eq!((r.state, r.exchange), (PeerState::Accepted, true));
        assert_eq!(r.addrs, ["192.0.2.9:4433"]);
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
    fn add_on_an_existing_peer_changes_only_what_is_given() {
        let first = PeerOp::Add {
            site: "b".into(),
            addrs: Some(vec!["192.0.2.1:4433".into()]),
            pins: Some(vec!["aa".into()]),
            allow: Some(Allow {
                exchange: true,
                standby: true,
                witness: false,
            }),
        };
        let r = record(decide(None, first, 0).unwrap());
        let move_it = PeerOp::Add {
            site: "b".into(),
            addrs: Some(vec!["192.0.2.2:4433".into()]),
            pins: None,
            allow: None,
        };
        let r = record(decide(Some(&r), move_it, 1).unwrap());
        assert_eq!(r.addrs, ["192.0.2.2:4433"]);
        assert_eq!(r.pins, ["aa"]);
        assert!(r.exchange && r.standby);
        let unpin = PeerOp::Add {
            site: "b".into(),
            addrs: None,
            pins: Some(vec![]),
            allow: None,
        };
        let r = record(decide(Some(&r), unpin, 2).unwrap());
        assert!(r.pins.is_empty());
        assert_eq!(r.addrs, ["192.0.2.2:4433"]);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(decide(
            None,
            PeerOp::Accept {
                site: "x".into(),
                addrs: None
            },
            0
        )
        .is_err());
        assert!(decide(None, add("Bad Site"), 0).is_err());
        let bad_addr = PeerOp::Add {
            site: "b".into(),
            addrs: Some(vec!["nohost".into()]),
            pins: None,
            allow: None,
        };
        assert!(decide(None, bad_addr, 0)
            .unwrap_err()
            .to_string()
            .contains("HOST:PORT"));
        let no_addr = PeerOp::Add {
            site: "b".into(),
            addrs: None,
            pins: None,
            allow: None,
        };
        assert!(decide(None, no_addr, 0)
            .unwrap_err()
            .to_string()
            .contains("new peer"));
        let r = record(decide(None, add("b"), 0).unwrap());
        assert_eq!(decide(Some(&r), add("b"), 1).unwrap(), None);
        let r = record(decide(None, seen("192.0.2.1:1"), 0).unwrap());
        let bad_accept = PeerOp::Accept {
            site: "telco-b".into(),
            addrs: Some(vec!["nohost".into()]),
        };
        assert!(decide(Some(&r), bad_accept, 1).is_err());
    }
}
