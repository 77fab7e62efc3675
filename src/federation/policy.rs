//! The store-backed peer policy.

use std::collections::HashMap;
use std::sync::RwLock;

use tokio::sync::mpsc;

use crate::identity::NodeIdentity;
use crate::model::peer::{PeerRecord, PeerState};
use crate::net::{Admission, PeerPolicy, Permission, Permissions};

/// How many unknown-peer sightings may wait to be recorded before new ones are dropped.
const SEEN_QUEUE: usize = 256;

/// The registry as the transport sees it. `admit` and `authorize` only read memory; the
/// registry is reloaded from the store whenever it changes.
pub struct StorePolicy {
    own_site: String,
    peers: RwLock<HashMap<String, PeerRecord>>,
    seen: mpsc::Sender<(NodeIdentity, String)>,
}

impl StorePolicy {
    /// A policy for a node of `own_site`; unknown peers are sent to the returned receiver so
    /// the node can record them as pending.
    pub fn new(
        own_site: &str,
        records: Vec<PeerRecord>,
    ) -> (Self, mpsc::Receiver<(NodeIdentity, String)>) {
        let (seen, rx) = mpsc::channel(SEEN_QUEUE);
        let policy = StorePolicy {
            own_site: own_site.to_string(),
            peers: RwLock::new(HashMap::new()),
            seen,
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

    fn permissions(&self, r: &PeerRecord, id: &NodeIdentity) -> Permissions {
        Permissions {
            exchange: r.exchange,
            // Only a node of this very site may be its standby.
            standby: r.standby && id.site == self.own_site,
        }
    }
}

impl PeerPolicy for StorePolicy {
    fn admit(&self, id: &NodeIdentity, spki: &str) -> Admission {
        let decision = self.with(&id.site, |r| match r {
            Some(r) if r.state == PeerState::Accepted => {
                if !r.pins.is_empty() && !r.pins.iter().any(|p| p == spki) {
                    Some(Admission::Denied)
                } else {
                    Some(Admission::Accepted(self.permissions(r, id)))
                }
            }
            Some(r) if r.state == PeerState::Denied => Some(Admission::Denied),
            // Already on the pending list with this node and key: nothing new to record.
            Some(r)
                if r.seen_node.as_deref() == Some(id.node.as_str())
                    && r.seen_spki.as_deref() == Some(spki) =>
            {
                Some(Admission::Pending)
            }
            _ => None,
        });
        decision.unwrap_or_else(|| {
            // Unknown or still pending: (re)record the sighting for the admin.
            if self.seen.try_send((id.clone(), spki.to_string())).is_err() {
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
