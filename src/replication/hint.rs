//! Where this site's primary is, as this node knows it: what a standby or a deposed primary
//! names in the `not_primary` / `fenced` refusals it gives partners, so they move over at once
//! instead of waiting out their retries.
//!
//! A standby names the address it follows (`[replication] primary`, else the site's registry
//! record: what its follower dials). A fenced node names the
//! address of the node that fenced it (the promoted node dials its old primary, which is how the
//! fence happens, so that node's connection shows where it is). A primary names nobody.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::federation::FederationSlot;
use crate::model::role::NodeRole;
use crate::store::Store;

/// The address of this site's primary, when this node is not it and knows it. Cheap to clone
/// (all clones share one value).
#[derive(Debug, Clone, Default)]
pub struct PrimaryHint(Arc<Mutex<Option<String>>>);

impl PrimaryHint {
    /// The address to name in a refusal, if known.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, addr: Option<String>) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *held != addr {
            tracing::info!(
                primary = addr.as_deref().unwrap_or("-"),
                "the site's primary, as partners are told"
            );
            *held = addr;
        }
    }

    /// Keeps the hint in step with the node's role until `shutdown`: none on the primary, the
    /// address `follower` follows on a standby (`replication.primary`, else the site's registry
    /// record, so an old primary made a standby by `ttx switchover` names its successor too), the fencing node's address on a fenced
    /// node (looked for each second until it is seen).
    pub async fn follow_role(
        self,
        store: Store,
        federation: Arc<FederationSlot>,
        follower: Arc<super::Follower>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut role = store.writer.role.clone();
        loop {
            let now = role.borrow_and_update().role.clone();
            let mut poll = false;
            match now {
                // Handing over (`ttx switchover`): partners retry for a moment, then learn
                // the new primary from this node as a standby.
                NodeRole::Primary | NodeRole::HandingOver { .. } => self.set(None),
                NodeRole::Standby { .. } => self.set(follower.target().await),
                NodeRole::Fenced { by } => {
                    let seen = federation
                        .get()
                        .and_then(|f| f.own_node_addr(&by))
                        .map(|a| a.to_string());
                    match seen {
                        Some(addr) => self.set(Some(addr)),
                        None => poll = self.get().is_none(),
                    }
                }
            }
            let every = if poll {
                Duration::from_secs(1)
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                r = role.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_hint() {
        let h = PrimaryHint::default();
        let other = h.clone();
        assert_eq!(other.get(), None);
        h.set(Some("192.0.2.7:4433".into()));
        assert_eq!(other.get().as_deref(), Some("192.0.2.7:4433"));
        h.set(None);
        assert_eq!(other.get(), None);
    }
}
