//! Automatic failover on a site's nodes: the lease the witness holds on the primary role, as
//! the primary renews it and the standby asks to take it over (`ttx-witness/1`).
//!
//! - On the primary (and while it hands over), [`LeaseClient`] renews every third of the term
//!   and tells the witness whether it is degraded (async mode, or sync degraded to async). The
//!   [`LeaseGate`] counts the lease from when each granted renewal was *sent*, less the margin,
//!   on this node's monotonic clock: the API takes writes, and acknowledges them, only while it
//!   holds. A renewal refused as `fenced` (the witness promoted the standby) fences this node
//!   durably at the new epoch.
//! - In sync modes an answer the gate released without the standby (degraded) waits until the
//!   witness has granted a renewal that said "degraded": the witness never promotes a standby
//!   that may lack an acknowledged write.
//! - On a standby, it asks the witness to promote it every quarter term. The witness grants it
//!   only once the primary's lease and margin ran out and the primary's last renewal was not
//!   degraded; then this node writes the same `Promote` as `ttx promote` (the new epoch, durably,
//!   before any write) and takes writes once its first renewal in the new epoch is granted.
//! - A fenced node never asks; a node without `replication.witness` runs none of this.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use super::lease::{HeldLease, LeaseTiming};
use super::primary::{GateError, Primary};
pub use super::witness_serve::mono_now;
use crate::federation::FederationSlot;
use crate::model::clock::Millis;
use crate::model::role::NodeRole;
use crate::net::{NetError, Peer};
use crate::store::{Store, WriteOp, WriteOutcome, WriteRequest};
use crate::wire::codec;
use crate::wire::witness::{
    PromoteAsk, RefusalReason, Renew, WitnessAnswer, WitnessRefusal, WitnessRequest,
};

/// The primary's side of the lease, as the API's writes see it. Without a witness it is not
/// required and lets everything through.
#[derive(Default)]
pub struct LeaseGate {
    required: AtomicBool,
    held: Mutex<HeldLease>,
    /// The witness's belief, as of its last granted renewal: "the primary is degraded".
    told_degraded: watch::Sender<bool>,
    /// Ask the client for a renewal now (an answer waits for the witness to know).
    renew_now: Notify,
}

impl LeaseGate {
    /// From now on, writes need the lease (the node names a witness).
    pub fn require(&self) {
        self.required.store(true, Ordering::SeqCst);
    }

    /// Whether writes need the lease.
    pub fn required(&self) -> bool {
        self.required.load(Ordering::SeqCst)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HeldLease> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a write may be taken (and acknowledged) now.
    pub fn check(&self) -> Result<(), GateError> {
        if !self.required() || self.held().may_write(mono_now()) {
            Ok(())
        } else {
            Err(GateError::NoLease)
        }
    }

    /// A renewal sent at `sent_at` (saying `degraded`) was granted.
    fn granted(&self, sent_at: Millis, timing: LeaseTiming, degraded: bool) {
        self.held().granted(sent_at, timing);
        self.told_degraded.send_if_modified(|d| {
            let changed = *d != degraded;
            *d = degraded;
            changed
        });
    }

    /// The lease is gone for good in this epoch (fenced, or the role left this node).
    fn drop_lease(&self) {
        *self.held() = HeldLease::default();
    }

    /// Milliseconds left on the lease by this node's clock (0 once it ran out), if it held one.
    fn left_ms(&self) -> Option<Millis> {
        self.held().left(mono_now())
    }

    /// Waits (at most `wait`) until the witness knows this primary is degraded; an answer
    /// acknowledged without the standby may leave only then.
    pub async fn witness_knows_degraded(&self, wait: Duration) -> Result<(), GateError> {
        if !self.required() {
            return Ok(());
        }
        let mut told = self.told_degraded.subscribe();
        if *told.borrow() {
            return Ok(());
        }
        self.renew_now.notify_one();
        let known = tokio::time::timeout(wait, async { told.wait_for(|d| *d).await.is_ok() })
            .await
            .unwrap_or(false);
        if known {
            Ok(())
        } else {
            Err(GateError::NotOnStandby)
        }
    }
}

/// The lease as `ttx status` shows it, on both sides.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LeaseStatus {
    /// The witness's site.
    pub witness: String,
    /// Whether the witness answered the last request.
    pub witness_reachable: bool,
    /// The node holding the primary role, as the witness last said (this node while it holds).
    pub holder: Option<String>,
    /// The epoch it holds it in.
    pub epoch: u64,
    /// Milliseconds left on the holder's lease: on the primary by its own clock (less the
    /// margin), on a standby as the witness last said.
    pub expires_in_ms: Option<i64>,
    /// On the primary: whether it takes writes now (it holds the lease).
    pub may_write: bool,
    /// Why the witness last refused this node (`held`, `fenced`, `degraded`) or why it could
    /// not be asked.
    pub last_refusal: Option<String>,
}

/// Renews the lease while this node is the primary; asks to be promoted while it is a standby.
pub struct LeaseClient {
    store: Store,
    federation: Arc<FederationSlot>,
    primary: Arc<Primary>,
    site: String,
    node: String,
    witness: String,
    witness_addr: Option<String>,
    timing: LeaseTiming,
    status: Mutex<LeaseStatus>,
    peer: tokio::sync::Mutex<Option<Peer>>,
}

/// Why a request did not reach the witness.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("the federation is down on this node")]
    NoFederation,
    #[error(transparent)]
    Dial(#[from] crate::federation::FederationError),
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("the witness answered something that does not decode")]
    BadAnswer,
    #[error("the witness did not answer within {0} ms")]
    Timeout(u64),
}

impl LeaseClient {
    /// The client of a node of `site` named `node`, whose witness is `witness` (a site in the
    /// registry, reached at `witness_addr` when given); requires the lease for writes from now
    /// on.
    pub fn new(
        store: Store,
        federation: Arc<FederationSlot>,
        primary: Arc<Primary>,
        (site, node): (&str, &str),
        (witness, witness_addr): (&str, Option<&str>),
        timing: LeaseTiming,
    ) -> Arc<Self> {
        primary.lease().require();
        Arc::new(LeaseClient {
            store,
            federation,
            primary,
            site: site.to_string(),
            node: node.to_string(),
            witness: witness.to_string(),
            witness_addr: witness_addr.map(str::to_string),
            timing,
            status: Mutex::new(LeaseStatus {
                witness: witness.to_string(),
                ..LeaseStatus::default()
            }),
            peer: tokio::sync::Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LeaseStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The lease now, for `ttx status`.
    pub fn status(&self) -> LeaseStatus {
        let mut s = self.lock().clone();
        let gate = self.primary.lease();
        let role = self.store.writer.role_now();
        s.may_write = role.is_primary() && gate.check().is_ok();
        if role.ships() {
            s.expires_in_ms = gate.left_ms();
            if s.expires_in_ms.is_some_and(|l| l > 0) {
                s.holder = Some(self.node.clone());
            }
        }
        s
    }

    /// Runs until `shutdown`: renews on a primary, asks on a standby, waits on a fenced node.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut role = self.store.writer.role.clone();
        let mut renewed_epoch = None;
        loop {
            let now = role.borrow_and_update().clone();
            let wait = match &now.role {
                NodeRole::Primary | NodeRole::HandingOver { .. } => {
                    if renewed_epoch != Some(now.epoch) {
                        // A new epoch (promoted): no lease until the witness grants this one.
                        self.primary.lease().drop_lease();
                        renewed_epoch = Some(now.epoch);
                    }
                    let sent_at = mono_now();
                    self.renew(now.epoch).await;
                    let next = HeldLease::renew_at(sent_at, self.timing);
                    Duration::from_millis((next - mono_now()).max(1) as u64)
                }
                NodeRole::Standby { .. } => {
                    self.ask_promotion(now.epoch).await;
                    Duration::from_millis((self.timing.term_ms / 4).max(1) as u64)
                }
                NodeRole::Fenced { by } => {
                    self.primary.lease().drop_lease();
                    self.lock().last_refusal = Some(format!(
                        "fenced by {by}: this node never asks the witness to promote it"
                    ));
                    Duration::from_secs(3600)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.primary.lease().renew_now.notified() => {}
                r = role.changed() => if r.is_err() { return },
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }

    /// One renewal at `epoch`.
    async fn renew(&self, epoch: u64) {
        let degraded = self.primary.witness_should_know_degraded();
        let req = WitnessRequest::Renew(Renew {
            site: self.site.clone(),
            node: self.node.clone(),
            epoch,
            degraded,
        });
        let sent_at = mono_now();
        match self.ask(&req).await {
            Ok(WitnessAnswer::Granted {
                epoch: granted,
                term_ms,
                margin_ms,
            }) if granted == epoch => {
                let timing = LeaseTiming {
                    term_ms: term_ms as Millis,
                    margin_ms: margin_ms as Millis,
                };
                let had = self.primary.lease().check().is_ok();
                self.primary.lease().granted(sent_at, timing, degraded);
                if !had {
                    tracing::info!(epoch, witness = %self.witness, "holding the witness's lease: taking writes");
                }
                let mut s = self.lock();
                s.witness_reachable = true;
                s.holder = Some(self.node.clone());
                s.epoch = epoch;
                s.last_refusal = None;
            }
            Ok(WitnessAnswer::Refused(r)) => {
                self.refused(&r);
                if r.reason == RefusalReason::Fenced {
                    self.fence(r.epoch, &r.holder).await;
                } else {
                    tracing::error!(epoch, holder = %r.holder, their_epoch = r.epoch, "the witness refused this primary's renewal");
                }
            }
            Ok(other) => {
                tracing::error!(?other, "the witness answered a renewal out of turn");
            }
            Err(e) => self.unreachable(&e),
        }
        if self.primary.lease().check().is_err() && self.store.writer.role.borrow().is_primary() {
            tracing::warn!(witness = %self.witness, "lost the witness's lease: not taking writes until it is renewed");
        }
    }

    /// One request to be promoted, at `epoch`; on `Promoted`, the durable promotion.
    async fn ask_promotion(&self, epoch: u64) {
        let req = WitnessRequest::Promote(PromoteAsk {
            site: self.site.clone(),
            node: self.node.clone(),
            epoch,
        });
        match self.ask(&req).await {
            Ok(WitnessAnswer::Promoted { epoch: granted }) => {
                tracing::warn!(
                    epoch = granted,
                    "the witness promoted this standby: the primary's lease ran out"
                );
                self.promote(granted).await;
            }
            Ok(WitnessAnswer::Refused(r)) => self.refused(&r),
            Ok(other) => tracing::error!(?other, "the witness answered a promotion out of turn"),
            Err(e) => self.unreachable(&e),
        }
    }

    async fn promote(&self, granted: u64) {
        let req = WriteRequest {
            actor: "system".into(),
            idempotency: None,
            op: WriteOp::Promote,
        };
        match self.store.writer.write(req).await {
            Ok(WriteOutcome::Promoted { epoch, position }) => {
                if epoch != granted {
                    tracing::error!(
                        epoch,
                        granted,
                        "promoted to another epoch than the witness granted"
                    );
                }
                tracing::warn!(
                    epoch,
                    position,
                    "automatic failover: this node is the site's primary"
                );
                let mut s = self.lock();
                s.holder = Some(self.node.clone());
                s.epoch = epoch;
                s.last_refusal = None;
            }
            Ok(other) => tracing::error!(?other, "promotion answered out of turn"),
            Err(e) => tracing::error!(error = %e, "cannot promote this node"),
        }
    }

    async fn fence(&self, epoch: u64, by: &str) {
        self.primary.lease().drop_lease();
        tracing::error!(
            epoch,
            by,
            "the witness says another node holds a newer epoch: fencing this node"
        );
        super::serve::record_fence(&self.store, epoch, by).await;
    }

    fn refused(&self, r: &WitnessRefusal) {
        let mut s = self.lock();
        s.witness_reachable = true;
        s.holder = (!r.holder.is_empty()).then(|| r.holder.clone());
        s.epoch = r.epoch;
        s.expires_in_ms = Some(r.expires_in_ms as i64);
        s.last_refusal = Some(match r.reason {
            RefusalReason::Held => format!(
                "held: {} holds the primary role (epoch {}) for {} ms more",
                r.holder, r.epoch, r.expires_in_ms
            ),
            RefusalReason::Fenced => format!(
                "fenced: the site is at epoch {}, held by {}",
                r.epoch, r.holder
            ),
            RefusalReason::Degraded => format!(
                "degraded: {} said at its last renewal that the standby was not in sync; no \
                 automatic failover (promote by hand with `ttx promote` if you accept the loss)",
                r.holder
            ),
        });
    }

    fn unreachable(&self, e: &AskError) {
        tracing::debug!(error = %e, witness = %self.witness, "witness not reachable");
        let mut s = self.lock();
        s.witness_reachable = false;
        s.last_refusal = Some(format!("witness {} not reachable: {e}", self.witness));
    }

    /// Sends one request over the live connection to the witness (dialing it first, from the
    /// registry's addresses, when there is none), bounded by the term.
    async fn ask(&self, req: &WitnessRequest) -> Result<WitnessAnswer, AskError> {
        let limit = Duration::from_millis(self.timing.term_ms as u64);
        let attempt = async {
            let mut slot = self.peer.lock().await;
            let peer = match slot.as_ref() {
                Some(p) => p.clone(),
                None => {
                    let fed = self.federation.get().ok_or(AskError::NoFederation)?;
                    let p = fed
                        .dial_witness(&self.witness, self.witness_addr.as_deref())
                        .await?;
                    *slot = Some(p.clone());
                    p
                }
            };
            drop(slot);
            let body = codec::encode(req).expect("witness request encodes");
            match peer.request(body).await {
                Ok(answer) => codec::decode(&answer).map_err(|_| AskError::BadAnswer),
                Err(e) => {
                    *self.peer.lock().await = None;
                    Err(AskError::Net(e))
                }
            }
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(r) => r,
            Err(_) => {
                *self.peer.lock().await = None;
                Err(AskError::Timeout(limit.as_millis() as u64))
            }
        }
    }
}
