//! What the node decides about peers. The transport asks [`PeerPolicy::admit`] at Hello and
//! [`PeerPolicy::authorize`] on every request; it holds no peer registry of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::identity::NodeIdentity;

/// An action a peer may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Referral exchange (`ttx-exchange/*`).
    Exchange,
    /// Acting as this site's hot standby (`ttx-repl/*`, Hello role `Standby`).
    Standby,
    /// The witness relation (`ttx-witness/*`): on the witness, the peer site's nodes may renew
    /// and take the lease on their own site's primary role; on the witnessed site's nodes, the
    /// peer may be dialed as their witness.
    Witness,
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions {
    /// May exchange referrals.
    pub exchange: bool,
    /// May be this site's standby.
    pub standby: bool,
    /// The witness relation (see [`Permission::Witness`]).
    pub witness: bool,
}

impl Permissions {
    /// Only referral exchange.
    pub const EXCHANGE: Permissions = Permissions {
        exchange: true,
        standby: false,
        witness: false,
    };
    /// Only standby.
    pub const STANDBY: Permissions = Permissions {
        exchange: false,
        standby: true,
        witness: false,
    };

    /// Whether the set holds `p`.
    pub fn contains(&self, p: Permission) -> bool {
        match p {
            Permission::Exchange => self.exchange,
            Permission::Standby => self.standby,
            Permission::Witness => self.witness,
        }
    }
}

/// The policy's answer about a peer at Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A registered peer, with what it may do.
    Accepted(Permissions),
    /// Not registered: the policy has recorded it for an admin (pending list); refused with
    /// `unknown_peer`.
    Pending,
    /// Registered and denied; refused with `denied`.
    Denied,
}

/// A peer at Hello, as its certificate and connection show it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The identity of its certificate's URI SAN.
    pub identity: &'a NodeIdentity,
    /// Its key fingerprint (SPKI SHA-256 hex).
    pub spki: &'a str,
    /// Its certificate's issuer (the CA's subject).
    pub issuer: &'a str,
    /// Where the connection comes from (or goes to).
    pub remote: SocketAddr,
}

/// The node's authorization decisions. Implementations must be cheap: `authorize` runs on every
/// request.
pub trait PeerPolicy: Send + Sync + 'static {
    /// Called at Hello (both directions) with the peer's certificate identity, key fingerprint,
    /// issuer and address. An unknown peer should be recorded (pending list) and answered with
    /// [`Admission::Pending`].
    fn admit(&self, peer: &Candidate<'_>) -> Admission;
    /// Called on every request: may this peer do this now?
    fn authorize(&self, id: &NodeIdentity, action: Permission) -> bool;
}

/// A simple in-memory policy: a map of registered peers, and the pending peers it has seen.
/// Used by tests and benchmarks; a node can use it until its store-backed registry exists.
#[derive(Debug, Default)]
pub struct StaticPolicy {
    peers: Mutex<BTreeMap<NodeIdentity, Option<Permissions>>>,
    pending: Mutex<BTreeSet<(NodeIdentity, String)>>,
}

impl StaticPolicy {
    /// An empty policy: every peer is pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a peer with permissions (`None`: registered and denied).
    pub fn set(&self, id: NodeIdentity, perms: Option<Permissions>) {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, perms);
    }

    /// The unknown peers seen so far, with their key fingerprints.
    pub fn pending(&self) -> Vec<(NodeIdentity, String)> {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

impl PeerPolicy for StaticPolicy {
    fn admit(&self, peer: &Candidate<'_>) -> Admission {
        let (id, spki) = (peer.identity, peer.spki);
        match self.peers.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            Some(Some(p)) => Admission::Accepted(*p),
            Some(None) => Admission::Denied,
            None => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((id.clone(), spki.to_string()));
                Admission::Pending
            }
        }
    }

    fn authorize(&self, id: &NodeIdentity, action: Permission) -> bool {
        matches!(
            self.peers.lock().unwrap_or_else(|e| e.into_inner()).get(id),
            Some(Some(p)) if p.contains(action)
        )
    }
}
