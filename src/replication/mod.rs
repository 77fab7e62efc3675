//! The hot standby: what the primary ships and when an operator's answer may leave.
//!
//! Pure parts (no I/O):
//! - [`gate`]: the sync-commit gate. Answers wait in log-position order until the standby's ack
//!   covers them (`sync`: durable there; `sync-visible`: applied there); `block` or `degrade`
//!   when the standby is gone; the lag in events and in the primary's milliseconds.
//! - [`backlog`]: the recently committed envelopes kept in memory (bounded in bytes), and the
//!   plan of whether a standby's next position ships from memory or from the log.
//! - [`lease`]: automatic failover's third voice: the witness's lease on the primary role (one
//!   promotion per epoch, never from a degraded primary) and the primary's own view of it (stop
//!   writing before the witness can grant the role elsewhere).
//!
//! The parts that drive them:
//! - [`primary`]: the primary's hub: the backlog fed by the writer's commit hook, the gate the
//!   API's answers wait in, the shippable position for the exchange, the status.
//! - [`serve`]: the `ttx-repl/1` handler on the primary (one long-lived stream per standby).
//! - [`follow`]: the standby's follower (dial, subscribe from its head, apply, ack, reconnect).
//! - [`standby_lag`]: the standby's lag in milliseconds, from the primary's clock readings
//!   paired with the standby's monotonic receive time (two hosts' clocks never compared).
//! - [`timeline`]: debug counters of latency: when each batch passed each stage (committed,
//!   shipped, received, applied), for `ttx bench replication`.
//! - [`offline`]: a standby made from a copy of its primary's store on the same machine.
//! - [`compare`]: `ttx verify --against`: two nodes' digests at one position, and the first
//!   differing row found top-down.
//! - [`send_snapshot`]: the primary's side of cloning (a consistent snapshot streamed in chunks).
//! - [`clone`]: `ttx standby clone`: a new standby's data dir made from a running primary
//!   ([`clone::clone_standby`], the one function the CLI and other tools call).
//! - [`rejoin`]: `ttx standby rejoin`: a deposed primary made the new primary's standby, its
//!   unshipped events handed to the new primary's review list (and the primary's answers).
//! - [`hint`]: where the site's primary is, for the refusals a standby or fenced node gives
//!   partners.
//! - [`switchover`]: `ttx switchover`, the planned hand-over of the primary role to the standby.
//! - [`witness`]: automatic failover on the site's nodes: the primary renews the witness's
//!   lease (and takes writes only while it holds it), the standby asks to be promoted.
//! - [`witness_serve`]: the witness's side (`ttx-witness/1` on any node; its lease book is
//!   durable in `DIR/witness.db`).
//!
//! The role and epoch state machine lives in `model/` with the site log.

pub mod backlog;
pub mod clone;
pub mod compare;
pub mod follow;
pub mod gate;
pub mod hint;
pub mod lease;
pub mod offline;
pub mod primary;
pub mod rejoin;
pub mod send_snapshot;
pub mod serve;
pub mod standby_lag;
pub mod switchover;
#[cfg(test)]
mod tests;
pub mod timeline;
pub mod witness;
pub mod witness_serve;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use backlog::{Backlog, ByteSize, Plan};
pub use follow::{FollowStatus, Follower};
pub use gate::{Ack, Gate, Lag, Mode, Outcome, WhenGone};
pub use hint::PrimaryHint;
pub use lease::{HeldLease, LeaseError, LeaseTiming, Witness};
pub use primary::{GateError, Primary, PrimaryStatus};
pub use switchover::{Switchover, SwitchoverAnswer, SwitchoverError};

/// A node's replication: the primary's hub (every node has one; a standby's is idle until it
/// is promoted) and, on a standby, its follower.
pub struct Replication {
    /// The primary's side.
    pub primary: Arc<Primary>,
    /// The follower (every served node has one: it follows while the node is a standby or
    /// fenced, and knocks at the old primary once promoted).
    pub follower: Option<Arc<Follower>>,
    /// `ttx switchover` on this node.
    pub switchover: Option<Arc<Switchover>>,
    /// The witness's lease, when `replication.witness` names one.
    pub lease: Option<Arc<witness::LeaseClient>>,
}

/// What `ttx status` shows of replication.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicationStatus {
    /// The primary's side (mode, standby, lag).
    pub primary: PrimaryStatus,
    /// The standby's side (the primary it follows, applied position), while this node follows
    /// a primary (a standby, or a fenced node).
    pub following: Option<FollowStatus>,
    /// After a promotion: the old primary answered this node's knock (it holds this node's
    /// epoch now: fenced, or a standby).
    #[serde(default)]
    pub old_primary_fenced: bool,
    /// The witness's lease (automatic failover), when the node names a witness.
    #[serde(default)]
    pub lease: Option<witness::LeaseStatus>,
}

impl Replication {
    /// A node without a standby (benchmarks that serve the API without a node): async, no
    /// follower.
    pub fn standalone(head: u64) -> Self {
        let cfg = crate::config::ReplicationSection::default();
        Replication {
            primary: Primary::new(&cfg, Mode::Async, head),
            follower: None,
            switchover: None,
            lease: None,
        }
    }

    /// The status now.
    pub fn status(&self) -> ReplicationStatus {
        ReplicationStatus {
            primary: self.primary.status(),
            following: self
                .follower
                .as_ref()
                .filter(|f| f.follows())
                .map(|f| f.status()),
            old_primary_fenced: self
                .follower
                .as_ref()
                .is_some_and(|f| f.status().old_primary_fenced),
            lease: self.lease.as_ref().map(|l| l.status()),
        }
    }
}
