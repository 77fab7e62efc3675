//! The store-backed peer policy.

use std::collections::HashMap;
use std::sync::RwLock;

use tokio::sync::mpsc;

use crate::identity::NodeIdentity;
use crate::model::clock::Millis;
use crate::model::peer::{PeerRecord, PeerState, Sighting};
use crate::net::{Admission, Candidate, PeerPolicy, Permission, Permissions};

/// How many unknown-peer sightings may wait to be recorded before new ones are dropped.
const SEEN_QUEUE: usize = 256;
/// How many sites' last sightings are kept in memory (a flood of new names cannot grow it).
const LAST_SEEN_SITES: usize = 1024;

/// A sighting of a peer not (yet) accepted, to be recorded on the pending list.
pub type Seen = (NodeIdentity, Sighting);

/// The registry as the transport sees it. `admit` and `authorize` only read memory; the
/// registry is reloaded from the store whenever it changes.
pub struct StorePolicy {
    own_site: String,
    peers: RwLock<HashMap<String, PeerRecord>>,
    seen: mpsc::Sender<Seen>,
    /// When and from where each site not accepted was last seen (memory only: a sighting
    /// repeated from the same place writes nothing to the log).
    last_seen: std::sync::Mutex<HashMap<String, (Millis, String)>>,
}

impl StorePolicy {
    /// A policy for a node of `own_site`; unknown peers are sent to the returned receiver so
    /// the node can record them as pending.
    pub fn new(own_site: &str, records: Vec<PeerRecord>) -> (Self, mpsc::Receiver<Seen>) {
        let (seen, rx) = mpsc::channel(SEEN_QUEUE);
        let policy = StorePolicy {
            own_site: own_site.to_string(),
            peers: RwLock::new(HashMap::new()),
            seen,
            last_seen: std::sync::Mutex::new(HashMap::new()),
        };
        policy.replace(records);
        (policy, rx)
    }

    /// Replaces the cached registry.
    pub fn replace(&self, records: Vec<PeerRecord>) {
        let map = records.into_iter().map(|r| (r.site.clone(), r)).collect();
        *self.peers.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    fn with<T>(&self, site: &str, f: impl FnOnce(Option<&PeerRecord>) -> T) -> T {
        f(self
            .peers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(site))
    }

    /// When and from where `site` was last seen, if it was since the node started.
    pub fn last_seen(&self, site: &str) -> Option<(Millis, String)> {
        self.last_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(site)
            .cloned()
    }

    fn note_seen(&self, site: &str, addr: String) {
        let mut map = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= LAST_SEEN_SITES && !map.contains_key(site) {
            return;
        }
        map.insert(site.to_string(), (crate::model::clock::now(), addr));
    }

    fn permissions(&self, r: &PeerRecord, id: &NodeIdentity) -> Permissions {
        Permissions {
            exchange: r.exchange,
            // Only a node of this very site may be its standby.
            standby: r.standby && id.site == self.own_site,
            // A witness serves another site (a site cannot witness itself).
            witness: r.witness && id.site != self.own_site,
        }
    }
}

impl PeerPolicy for StorePolicy {
    fn admit(&self, peer: &Candidate<'_>) -> Admission {
        let (id, spki) = (peer.identity, peer.spki);
        let addr = peer.remote.to_string();
        let decision = self.with(&id.site, |r| match r {
            Some(r) if r.state == PeerState::Accepted => {
                if !r.pins.is_empty() && !r.pins.iter().any(|p| p == spki) {
                    Some(Admission::Denied)
                } else {
                    Some(Admission::Accepted(self.permissions(r, id)))
                }
            }
            Some(r) if r.state == PeerState::Denied => Some(Admission::Denied),
            // Already on the pending list as it is now: nothing new to record.
            Some(r)
                if r.seen_node.as_deref() == Some(id.node.as_str())
                    && r.seen_spki.as_deref() == Some(spki)
                    && r.seen_issuer.as_deref() == Some(peer.issuer)
                    && r.seen_addr.as_deref() == Some(addr.as_str()) =>
            {
                Some(Admission::Pending)
            }
            _ => None,
        });
        if !matches!(decision, Some(Admission::Accepted(_))) {
            self.note_seen(&id.site, addr.clone());
        }
        decision.unwrap_or_else(|| {
            // Unknown or still pending: (re)record the sighting for the admin.
            let sighting = Sighting {
                node: id.node.clone(),
                spki: spki.to_string(),
                issuer: peer.issuer.to_string(),
                addr,
            };
            if self.seen.try_send((id.clone(), sighting)).is_err() {
                tracing::warn!(peer = %id, "pending-peer queue full; sighting not recorded");
            }
            Admission::Pending
        })
    }

    fn authorize(&self, id: &NodeIdentity, action: Permission) -> bool {
        self.with(&id.site, |r| {
            r.is_some_and(|r| {
                r.state == PeerState::Accepted && self.permissions(r, id).contains(action)
            })
        })
    }
}
