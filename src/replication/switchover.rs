//! `ttx switchover`: the planned, lossless hand-over of the primary role to the standby.
//!
//! On the primary, in order:
//! 1. refuse at once, changing nothing, unless this node is the primary, a standby's stream is
//!    up, and this node knows where it will follow the new primary (`replication.primary`, or
//!    the first address of the site's own registry record: where the admin said the standby is);
//! 2. `WriteOp::HandOver`: role `handing-over:STANDBY`, durably; local writes are refused from
//!    here on with a retry-able `switching_over` (the pause starts);
//! 3. wait until the standby's ack covers the head (durable and applied); if it does not within
//!    the timeout, `WriteOp::ResumePrimary` (primary again, nothing lost) and refuse;
//! 4. send `TakeOver { epoch, head }` on the standby's stream; the standby, holding exactly
//!    that log, promotes itself (epoch + 1, `EpochStarted` at head + 1, durably) and answers
//!    `Promoted`; that answer (or the new primary's knock with its epoch) moves this node to
//!    `standby:NEW` through the role state machine, and its follower follows the new primary.
//!
//! If the standby does not confirm in time, this node stays `handing-over` (it cannot know
//! whether the standby took over: resuming could make two primaries) and says so; the new
//! primary's knock completes it later, or an admin who knows the standby did not take over
//! runs `ttx switchover --abort`.
//!
//! On the standby, `ttx switchover` asks the primary over the stream (`ToPrimary::Switchover`)
//! and waits until this node is the primary (`Follower::ask_switchover`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::follow::Follower;
use super::primary::Primary;
use crate::model::role::{NodeRole, RoleState};
use crate::store::{Store, StoreError, WriteOp, WriteOutcome, WriteRequest};

/// What a switchover answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SwitchoverAnswer {
    /// Where the command ran: `primary` (it handed over) or `standby` (it asked and took over).
    pub ran_on: String,
    /// The node that is the primary now.
    pub new_primary: String,
    /// Its epoch.
    pub epoch: u64,
    /// On the old primary: how long it took no local writes (from the hand-over until it
    /// learned that the standby took over; the new primary took writes a little earlier).
    pub paused_ms: Option<u64>,
    /// On the old primary: the address it follows the new primary at.
    pub follows: Option<String>,
}

/// Why a switchover did not happen (or did not finish).
#[derive(Debug, thiserror::Error)]
pub enum SwitchoverError {
    /// This node cannot start one (a standby not connected, a fenced node, ...).
    #[error("{0}")]
    Role(String),
    /// No standby stream is up.
    #[error("no standby is connected: a switchover needs the standby streaming (see `ttx status`); nothing changed")]
    NoStandby,
    /// This node would not know where to follow the new primary.
    #[error("this node has no address to follow the new primary at: set `replication.primary` in its config or the standby's address in the registry (`ttx peer add SITE --addr STANDBY:PORT --allow standby`); nothing changed")]
    NoAddress,
    /// Another switchover is running.
    #[error("a switchover is already running on this node")]
    Busy,
    /// The standby did not catch up in time: abandoned, primary again.
    #[error("the standby did not catch up with position {head} within {ms} ms (it has {acked}): switchover abandoned, this node is the primary again and nothing was lost")]
    NotCaughtUp {
        /// The head to reach.
        head: u64,
        /// What the standby had.
        acked: u64,
        /// The timeout.
        ms: u64,
    },
    /// The standby was told to take over and did not confirm: the outcome is unknown here.
    #[error("the standby was told to take over at position {head} but did not confirm within {ms} ms: this node takes no writes until the new primary's epoch reaches it; if `ttx status` on the standby shows it did not take over, `ttx switchover --abort` here makes this node the primary again")]
    Unconfirmed {
        /// The head handed over.
        head: u64,
        /// The timeout.
        ms: u64,
    },
    /// On a standby: the request could not be made or was not answered.
    #[error(transparent)]
    Ask(#[from] super::follow::AskError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The switchover driver of a node (one per node).
pub struct Switchover {
    node: String,
    store: Store,
    primary: Arc<Primary>,
    follower: Arc<Follower>,
    timeout: Duration,
    running: tokio::sync::Mutex<()>,
}

impl Switchover {
    /// The driver of node `node`; each wait (catching up, the standby's confirmation) lasts at
    /// most `timeout`.
    pub fn new(
        node: &str,
        store: Store,
        primary: Arc<Primary>,
        follower: Arc<Follower>,
        timeout: Duration,
    ) -> Arc<Switchover> {
        Arc::new(Switchover {
            node: node.to_string(),
            store,
            primary,
            follower,
            timeout,
            running: tokio::sync::Mutex::new(()),
        })
    }

    fn role(&self) -> RoleState {
        self.store.writer.role_now()
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StoreError> {
        let req = WriteRequest {
            actor: "system".into(),
            idempotency: None,
            op,
        };
        self.store.writer.write(req).await
    }

    /// `ttx switchover` on this node: hands over on the primary, asks the primary on a standby.
    pub async fn run(&self) -> Result<SwitchoverAnswer, SwitchoverError> {
        let role = self.role();
        match &role.role {
            NodeRole::Standby { primary } => {
                let primary = primary.clone();
                let epoch = self.follower.ask_switchover(self.timeout * 3).await?;
                tracing::warn!(old_primary = %primary, epoch, "switchover: this standby is the primary now");
                Ok(SwitchoverAnswer {
                    ran_on: "standby".into(),
                    new_primary: self.node.clone(),
                    epoch,
                    paused_ms: None,
                    follows: None,
                })
            }
            NodeRole::Primary | NodeRole::HandingOver { .. } => self.hand_over().await,
            NodeRole::Fenced { .. } => Err(SwitchoverError::Role(
                role.may_write()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default(),
            )),
        }
    }

    /// The primary's side (module doc, steps 1-4).
    async fn hand_over(&self) -> Result<SwitchoverAnswer, SwitchoverError> {
        let _one = self.running.try_lock().map_err(|_| SwitchoverError::Busy)?;
        let standby = self
            .primary
            .status()
            .standby
            .ok_or(SwitchoverError::NoStandby)?;
        let follows = self
            .follower
            .target()
            .await
            .ok_or(SwitchoverError::NoAddress)?;
        let ms = self.timeout.as_millis() as u64;
        let to = standby.node.clone();
        self.write(WriteOp::HandOver { to: to.clone() })
            .await
            .map_err(|e| match e {
                StoreError::NotPrimary(r) => SwitchoverError::Role(r.to_string()),
                e => SwitchoverError::Store(e),
            })?;
        let paused = Instant::now();
        let epoch = self.role().epoch;
        let head = *self.store.writer.head.borrow() as u64;
        tracing::warn!(standby = %to, epoch, head, "switchover: writes paused, waiting for the standby to have the head");
        let mut caught_up = self.primary.watch_caught_up();
        let reached = tokio::time::timeout(self.timeout, caught_up.wait_for(|&a| a >= head))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        if !reached {
            let acked = *caught_up.borrow();
            self.primary.request_takeover(None);
            self.write(WriteOp::ResumePrimary).await?;
            tracing::error!(
                head,
                acked,
                "switchover abandoned: the standby did not catch up"
            );
            return Err(SwitchoverError::NotCaughtUp { head, acked, ms });
        }
        self.primary.request_takeover(Some((epoch, head)));
        let mut role = self.store.writer.role.clone();
        let done = tokio::time::timeout(
            self.timeout,
            role.wait_for(|r| r.epoch > epoch || !r.ships()),
        )
        .await
        .map(|r| r.map(|r| r.clone()));
        self.primary.request_takeover(None);
        match done {
            Ok(Ok(RoleState {
                role: NodeRole::Standby { primary },
                epoch,
            })) => {
                let paused_ms = paused.elapsed().as_millis() as u64;
                tracing::warn!(new_primary = %primary, epoch, paused_ms, follows = %follows, "switchover done: this node is the new primary's standby");
                Ok(SwitchoverAnswer {
                    ran_on: "primary".into(),
                    new_primary: primary,
                    epoch,
                    paused_ms: Some(paused_ms),
                    follows: Some(follows),
                })
            }
            Ok(Ok(other)) => Err(SwitchoverError::Role(format!(
                "the switchover ended with this node {} at epoch {}",
                other.role, other.epoch
            ))),
            _ => Err(SwitchoverError::Unconfirmed { head, ms }),
        }
    }

    /// `ttx switchover --abort`: a primary handing over becomes the primary again (same epoch).
    /// Only for a hand-over the standby did not take: if it did, its epoch fences this node at
    /// first contact, and anything written here meanwhile is its unreplicated tail.
    pub async fn abort(&self) -> Result<RoleState, SwitchoverError> {
        self.primary.request_takeover(None);
        match self.write(WriteOp::ResumePrimary).await {
            Ok(WriteOutcome::Role { role }) => Ok(role),
            Ok(_) => Ok(self.role()),
            Err(StoreError::NotPrimary(r)) => Err(SwitchoverError::Role(r.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs the switchovers the standby asks for over its stream, until `shutdown`.
    pub async fn serve_requests(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.primary.switchover_asked() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if !self.role().ships() {
                continue;
            }
            match self.hand_over().await {
                Ok(a) => {
                    tracing::warn!(new_primary = %a.new_primary, epoch = a.epoch, "switchover asked by the standby: done")
                }
                Err(e) => tracing::error!(error = %e, "switchover asked by the standby: not done"),
            }
        }
    }
}
