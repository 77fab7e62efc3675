//! The node's role in its site and the replication epoch: a pure state machine (no I/O).
//!
//! A site has one primary per epoch. The primary decides and writes; a standby only applies
//! the events shipped to it; a fenced node (a primary that saw a higher epoch) does neither
//! until an admin makes it a standby again. The store keeps the state in `meta` and changes it
//! only in the transaction that also writes the event (or applies the shipped event) causing it,
//! so a node always restarts in the role and epoch its log says.
//!
//! Transitions:
//! - `standby --promote--> primary` at `epoch + 1` (an `EpochStarted` event is written first);
//! - `primary --hand over to S--> handing-over:S` (a planned switchover: no local writes, the
//!   log still ships to S), and back with `resume` (the switchover was abandoned);
//! - `handing-over:S --sees S's higher epoch--> standby of S` (the switchover completed; any
//!   other node's higher epoch fences it);
//! - `primary --sees a higher epoch--> fenced` (at that epoch);
//! - `standby --applies a higher epoch--> standby` of the node that wrote it;
//! - `fenced --sees a higher epoch--> fenced` (at that epoch).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a node is within its site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum NodeRole {
    /// Takes writes and decides (timers, pending peers, operators).
    Primary,
    /// Applies what `primary` ships; refuses every other write.
    Standby {
        /// The node name of the primary it follows.
        primary: String,
    },
    /// A primary that saw a higher epoch: refuses every write but shipped events.
    Fenced {
        /// The node that holds the higher epoch.
        by: String,
    },
    /// A primary handing its role to its standby `to` (`ttx switchover`): it still holds the
    /// epoch's log and ships it, but takes no local write; it becomes `to`'s standby when
    /// `to`'s new epoch reaches it.
    #[serde(rename = "handing-over")]
    HandingOver {
        /// The standby taking over.
        to: String,
    },
}

/// The role and the epoch, as the store keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleState {
    /// Role.
    #[serde(flatten)]
    pub role: NodeRole,
    /// The highest epoch this node knows of.
    pub epoch: u64,
}

/// Why the role refuses something. The message names who to go to instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// A local write on a node that is not the primary.
    #[error("this node is a standby of {primary:?} (epoch {epoch}): send writes to the primary")]
    Standby {
        /// The primary's node name.
        primary: String,
        /// The epoch.
        epoch: u64,
    },
    /// A local write on a fenced node.
    #[error("this node was fenced: {by:?} is primary at epoch {epoch}; send writes there")]
    Fenced {
        /// The node holding the higher epoch.
        by: String,
        /// That epoch.
        epoch: u64,
    },
    /// A local write during a switchover: retry in a moment (at `to` once it is done).
    #[error("a switchover to {to:?} is in progress (epoch {epoch}): writes pause for a moment; retry, at {to:?} once it is the primary")]
    HandingOver {
        /// The standby taking over.
        to: String,
        /// The epoch being handed over.
        epoch: u64,
    },
    /// A switchover asked of a node that cannot start one (not the primary, or already
    /// handing over to another node).
    #[error("this node cannot hand over the primary role: it is {role} (epoch {epoch})")]
    CannotHandOver {
        /// The role it is in.
        role: String,
        /// The epoch.
        epoch: u64,
    },
    /// Promotion of a node that is already primary.
    #[error("this node is already the primary (epoch {epoch})")]
    AlreadyPrimary {
        /// The epoch.
        epoch: u64,
    },
    /// Promotion of a fenced node, whose unshipped tail would fork the site's log.
    #[error("this node was fenced by {by:?} at epoch {epoch}: it must become a standby again before it can be promoted")]
    FencedPromotion {
        /// The node holding the higher epoch.
        by: String,
        /// That epoch.
        epoch: u64,
    },
    /// A shipped event of an epoch older than the node's.
    #[error("shipped event of epoch {event_epoch} is older than this node's epoch {epoch}")]
    LowerEpoch {
        /// The event's epoch.
        event_epoch: u64,
        /// The node's epoch.
        epoch: u64,
    },
    /// A shipped event of the primary's own epoch arriving at the primary: two writers.
    #[error(
        "this node is the primary of epoch {epoch}: it applies no shipped events of its own epoch"
    )]
    PrimaryOfEpoch {
        /// The epoch.
        epoch: u64,
    },
}

impl RoleState {
    /// A new site's first node: primary at epoch 1.
    pub fn first_primary() -> RoleState {
        RoleState {
            role: NodeRole::Primary,
            epoch: 1,
        }
    }

    /// Whether this node is the primary (taking writes and deciding).
    pub fn is_primary(&self) -> bool {
        self.role == NodeRole::Primary
    }

    /// Whether this node holds its epoch's log and ships it to a standby: the primary, and a
    /// primary handing over (until its standby's new epoch arrives).
    pub fn ships(&self) -> bool {
        matches!(self.role, NodeRole::Primary | NodeRole::HandingOver { .. })
    }

    /// Whether this node follows a primary's log (a standby; a fenced node too, which may catch
    /// up while its log is a prefix of the primary's).
    pub fn follows(&self) -> bool {
        matches!(
            self.role,
            NodeRole::Standby { .. } | NodeRole::Fenced { .. }
        )
    }

    /// A planned switchover starts: the primary stops taking local writes and hands its role
    /// to its standby `to`. Asking again for the same standby changes nothing.
    pub fn hand_over(&self, to: &str) -> Result<RoleState, RoleError> {
        match &self.role {
            NodeRole::Primary => Ok(RoleState {
                role: NodeRole::HandingOver { to: to.into() },
                epoch: self.epoch,
            }),
            NodeRole::HandingOver { to: already } if already == to => Ok(self.clone()),
            other => Err(RoleError::CannotHandOver {
                role: other.to_string(),
                epoch: self.epoch,
            }),
        }
    }

    /// A switchover abandoned before the standby took over: primary again, same epoch. A
    /// primary stays as it is.
    pub fn resume(&self) -> Result<RoleState, RoleError> {
        match &self.role {
            NodeRole::Primary | NodeRole::HandingOver { .. } => Ok(RoleState {
                role: NodeRole::Primary,
                epoch: self.epoch,
            }),
            other => Err(RoleError::CannotHandOver {
                role: other.to_string(),
                epoch: self.epoch,
            }),
        }
    }

    /// Whether a local write (anything but applying shipped events) may run here.
    pub fn may_write(&self) -> Result<(), RoleError> {
        match &self.role {
            NodeRole::Primary => Ok(()),
            NodeRole::Standby { primary } => Err(RoleError::Standby {
                primary: primary.clone(),
                epoch: self.epoch,
            }),
            NodeRole::Fenced { by } => Err(RoleError::Fenced {
                by: by.clone(),
                epoch: self.epoch,
            }),
            NodeRole::HandingOver { to } => Err(RoleError::HandingOver {
                to: to.clone(),
                epoch: self.epoch,
            }),
        }
    }

    /// Promotion: a standby becomes primary of the next epoch.
    pub fn promote(&self) -> Result<RoleState, RoleError> {
        match &self.role {
            NodeRole::Primary | NodeRole::HandingOver { .. } => {
                Err(RoleError::AlreadyPrimary { epoch: self.epoch })
            }
            NodeRole::Fenced { by } => Err(RoleError::FencedPromotion {
                by: by.clone(),
                epoch: self.epoch,
            }),
            NodeRole::Standby { .. } => Ok(RoleState {
                role: NodeRole::Primary,
                epoch: self.epoch + 1,
            }),
        }
    }

    /// A higher epoch seen anywhere (a frame, an ack, a shipped event) by `node`: the new state,
    /// or `None` if nothing changes. A primary is fenced at once.
    pub fn observe(&self, epoch: u64, node: &str) -> Option<RoleState> {
        if epoch <= self.epoch {
            return None;
        }
        let role = match &self.role {
            NodeRole::HandingOver { to } if to == node => NodeRole::Standby {
                primary: node.into(),
            },
            NodeRole::Primary | NodeRole::Fenced { .. } | NodeRole::HandingOver { .. } => {
                NodeRole::Fenced { by: node.into() }
            }
            NodeRole::Standby { .. } => NodeRole::Standby {
                primary: node.into(),
            },
        };
        Some(RoleState { role, epoch })
    }

    /// Whether a shipped event of `epoch`, written by `node`, may be applied here, and the state
    /// after it (`None`: unchanged).
    pub fn may_apply(&self, epoch: u64, node: &str) -> Result<Option<RoleState>, RoleError> {
        if epoch < self.epoch {
            return Err(RoleError::LowerEpoch {
                event_epoch: epoch,
                epoch: self.epoch,
            });
        }
        if epoch == self.epoch && self.ships() {
            return Err(RoleError::PrimaryOfEpoch { epoch: self.epoch });
        }
        Ok(self.observe(epoch, node))
    }

    /// The role as stored in `meta.role`: `primary`, `standby:NODE`, `fenced:NODE` or
    /// `handing-over:NODE`.
    pub fn role_text(&self) -> String {
        self.role.to_string()
    }

    /// Reads the stored form back (see [`Self::role_text`]).
    pub fn parse(role: &str, epoch: u64) -> Result<RoleState, String> {
        let role = match role.split_once(':') {
            None if role == "primary" => NodeRole::Primary,
            Some(("standby", node)) if !node.is_empty() => NodeRole::Standby {
                primary: node.into(),
            },
            Some(("fenced", node)) if !node.is_empty() => NodeRole::Fenced { by: node.into() },
            Some(("handing-over", node)) if !node.is_empty() => {
                NodeRole::HandingOver { to: node.into() }
            }
            _ => return Err(format!("unknown node role {role:?} in the store")),
        };
        Ok(RoleState { role, epoch })
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeRole::Primary => f.write_str("primary"),
            NodeRole::Standby { primary } => write!(f, "standby:{primary}"),
            NodeRole::Fenced { by } => write!(f, "fenced:{by}"),
            NodeRole::HandingOver { to } => write!(f, "handing-over:{to}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(epoch: u64) -> RoleState {
        RoleState {
            role: NodeRole::Standby {
                primary: "primary".into(),
            },
            epoch,
        }
    }

    #[test]
    fn only_the_primary_writes_and_refusals_name_the_primary() {
        assert!(RoleState::first_primary().may_write().is_ok());
        let e = standby(3).may_write().unwrap_err();
        assert_eq!(
            e.to_string(),
            "this node is a standby of \"primary\" (epoch 3): send writes to the primary"
        );
        let fenced = RoleState::first_primary().observe(7, "standby").unwrap();
        assert!(fenced
            .may_write()
            .unwrap_err()
            .to_string()
            .contains("\"standby\" is primary at epoch 7"));
    }

    #[test]
    fn promotion_bumps_the_epoch_once() {
        let p = standby(4).promote().unwrap();
        assert_eq!(
            p,
            RoleState {
                role: NodeRole::Primary,
                epoch: 5
            }
        );
        assert_eq!(p.promote(), Err(RoleError::AlreadyPrimary { epoch: 5 }));
        let fenced = p.observe(6, "b").unwrap();
        assert!(matches!(
            fenced.promote(),
            Err(RoleError::FencedPromotion { epoch: 6, .. })
        ));
    }

    #[test]
    fn a_higher_epoch_fences_a_primary_and_moves_a_standby() {
        let p = RoleState::first_primary();
        assert_eq!(p.observe(1, "x"), None);
        assert_eq!(
            p.observe(2, "b").unwrap().role,
            NodeRole::Fenced { by: "b".into() }
        );
        let s = standby(1).observe(2, "b").unwrap();
        assert_eq!(
            (s.role.clone(), s.epoch),
            (
                NodeRole::Standby {
                    primary: "b".into()
                },
                2
            )
        );
    }

    #[test]
    fn apply_refuses_lower_epochs_and_a_second_writer() {
        assert!(matches!(
            standby(3).may_apply(2, "primary"),
            Err(RoleError::LowerEpoch {
                event_epoch: 2,
                epoch: 3
            })
        ));
        assert_eq!(standby(3).may_apply(3, "primary"), Ok(None));
        assert_eq!(
            RoleState::first_primary().may_apply(1, "other"),
            Err(RoleError::PrimaryOfEpoch { epoch: 1 })
        );
        let fenced = RoleState::first_primary()
            .may_apply(2, "b")
            .unwrap()
            .unwrap();
        assert_eq!(fenced.role, NodeRole::Fenced { by: "b".into() });
    }

    #[test]
    fn the_stored_form_round_trips_and_garbage_is_refused() {
        for s in [
            RoleState::first_primary(),
            standby(2),
            RoleState {
                role: NodeRole::Fenced { by: "b".into() },
                epoch: 9,
            },
            RoleState {
                role: NodeRole::HandingOver { to: "s".into() },
                epoch: 4,
            },
        ] {
            assert_eq!(RoleState::parse(&s.role_text(), s.epoch).unwrap(), s);
        }
        assert!(RoleState::parse("standby:", 1).is_err());
        assert!(RoleState::parse("leader", 1).is_err());
    }

    #[test]
    fn a_switchover_pauses_writes_ships_on_and_ends_as_the_new_primarys_standby() {
        let p = RoleState::first_primary();
        let h = p.hand_over("standby").unwrap();
        assert_eq!(h.epoch, 1);
        assert!(!h.is_primary() && h.ships() && !h.follows());
        assert_eq!(h.hand_over("standby").unwrap(), h);
        assert!(h.hand_over("other").is_err());
        let refused = h.may_write().unwrap_err().to_string();
        assert!(
            refused.contains("switchover to \"standby\" is in progress"),
            "{refused}"
        );
        assert!(refused.contains("retry"), "{refused}");
        // It is still the primary of its epoch: no promotion, no shipped events of epoch 1.
        assert_eq!(h.promote(), Err(RoleError::AlreadyPrimary { epoch: 1 }));
        assert_eq!(
            h.may_apply(1, "standby"),
            Err(RoleError::PrimaryOfEpoch { epoch: 1 })
        );
        // The standby's new epoch arrives: this node is now its standby, following it.
        let done = h.observe(2, "standby").unwrap();
        assert_eq!(
            done,
            RoleState {
                role: NodeRole::Standby {
                    primary: "standby".into()
                },
                epoch: 2
            }
        );
        assert!(done.follows());
        // Another node's higher epoch fences it instead.
        assert_eq!(
            h.observe(2, "intruder").unwrap().role,
            NodeRole::Fenced {
                by: "intruder".into()
            }
        );
        // Abandoned: primary again at the same epoch; only a primary can start one.
        assert_eq!(h.resume().unwrap(), p);
        assert_eq!(p.resume().unwrap(), p);
        assert!(standby(1).hand_over("x").is_err());
        assert!(standby(1).resume().is_err());
        assert!(done.hand_over("x").is_err());
        // The switchover back: the new primary (promoted) hands over to the old one.
        let back = standby(2).promote().unwrap().hand_over("primary").unwrap();
        assert_eq!(
            back.observe(4, "primary").unwrap().role,
            NodeRole::Standby {
                primary: "primary".into()
            }
        );
    }
}
