//! Automatic failover's third voice: a witness holds a lease on the site's primary role.
//!
//! Two nodes alone cannot tell "the primary died" from "the link between us died", so a standby
//! never promotes itself on its own (Patroni's rule). With a witness (any federation peer the site
//! names), the primary renews a lease every third of its term; the standby may ask the witness to
//! promote it only once the lease has expired **and** the primary's last renewal said it was not
//! degraded (in sync mode, not degraded means every acknowledged write is on the standby). The
//! witness grants at most one promotion per epoch, so two promotions racing get one winner.
//!
//! The primary stops taking writes when its own view of the lease runs out, counted from when it
//! *sent* the renewal that was granted, minus a margin for clock drift: it always stops before
//! the witness can grant the role to anyone else ([`Witness::promote`] waits for the term plus
//! the same margin after the last grant). Pure: both sides are driven with `now`.

use serde::{Deserialize, Serialize};

use crate::model::clock::Millis;

/// The lease's timing, the same on the witness and the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseTiming {
    /// How long a granted lease lasts.
    pub term_ms: Millis,
    /// The clock drift allowed between nodes over one term.
    pub margin_ms: Millis,
}

impl Default for LeaseTiming {
    /// A 2 s term with 500 ms margin: writable again within about 3 s of the primary's death.
    fn default() -> Self {
        LeaseTiming {
            term_ms: 2_000,
            margin_ms: 500,
        }
    }
}

/// What the witness knows of one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    timing: LeaseTiming,
    /// The node holding the primary role, and the epoch it holds it in.
    holder: Option<(String, u64)>,
    /// When the last grant was made (the witness's clock).
    granted_at: Millis,
    /// The holder said at its last renewal that sync replication was degraded.
    degraded: bool,
}

/// The witness's refusals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds the role and the lease has not run out.
    #[error("{holder} holds the primary role (epoch {epoch}) until its lease runs out")]
    Held {
        /// The holder.
        holder: String,
        /// Its epoch.
        epoch: u64,
    },
    /// The request names an older epoch than the witness knows: the sender is deposed.
    #[error("fenced: the site is at epoch {epoch}, held by {holder}")]
    Fenced {
        /// The current epoch.
        epoch: u64,
        /// Its holder.
        holder: String,
    },
    /// The primary's last word was that the standby was not in sync: promoting it could lose
    /// acknowledged writes, so only an operator may decide (`ttx promote`).
    #[error("the primary was degraded (standby not in sync) at its last renewal: promote by hand if you accept the loss")]
    Degraded,
}

impl Witness {
    /// A witness that knows nothing of the site yet.
    pub fn new(timing: LeaseTiming) -> Self {
        Witness {
            timing,
            holder: None,
            granted_at: Millis::MIN / 2,
            degraded: false,
        }
    }

    /// A witness restarted with what it had stored durably (the holder, its epoch, whether it
    /// was degraded), at `now` on its new clock. It counts the holder's lease as granted at
    /// `now`: a lease may have been renewed just before the restart, so no promotion is granted
    /// until a whole term and margin after it (and never a second one in an epoch).
    pub fn restore(
        timing: LeaseTiming,
        holder: Option<(String, u64)>,
        degraded: bool,
        now: Millis,
    ) -> Self {
        Witness {
            timing,
            granted_at: if holder.is_some() {
                now
            } else {
                Millis::MIN / 2
            },
            holder,
            degraded,
        }
    }

    /// The holder and its epoch, if any.
    pub fn holder(&self) -> Option<(&str, u64)> {
        self.holder.as_ref().map(|(n, e)| (n.as_str(), *e))
    }

    /// Whether the holder said at its last renewal that it was degraded.
    pub fn degraded(&self) -> bool {
        self.degraded
    }

    /// The timing this witness grants with.
    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    /// Milliseconds until the holder's lease (with the margin) runs out at `now`; 0 once it has.
    pub fn expires_in(&self, now: Millis) -> Millis {
        (self.granted_at + self.timing.term_ms + self.timing.margin_ms - now).max(0)
    }

    fn expired(&self, now: Millis) -> bool {
        now >= self.granted_at + self.timing.term_ms + self.timing.margin_ms
    }

    /// The primary `node` at `epoch` renews (or first takes) its lease, saying whether its sync
    /// replication is degraded. A newer epoch than the witness knows (an operator promoted a
    /// node by hand) takes the lease at once; the old holder is fenced at its next renewal.
    pub fn renew(
        &mut self,
        node: &str,
        epoch: u64,
        degraded: bool,
        now: Millis,
    ) -> Result<(), LeaseError> {
        match &self.holder {
            Some((holder, held)) if epoch < *held => Err(LeaseError::Fenced {
                epoch: *held,
                holder: holder.clone(),
            }),
            // Another node at the same epoch: only one node can rightly hold an epoch.
            Some((holder, held)) if holder != node && epoch == *held => Err(LeaseError::Held {
                holder: holder.clone(),
                epoch: *held,
            }),
            // The holder itself, or a newer epoch (a promotion by hand) which takes over at once.
            _ => {
                self.holder = Some((node.to_string(), epoch));
                self.granted_at = now;
                self.degraded = degraded;
                Ok(())
            }
        }
    }

    /// The standby `node`, at `epoch` (the site's current one), asks to be promoted. Granted
    /// only when the holder's lease has run out and it was not degraded; the answer is the new
    /// epoch the node must write durably before its first write.
    pub fn promote(&mut self, node: &str, epoch: u64, now: Millis) -> Result<u64, LeaseError> {
        // No primary ever renewed here: the witness cannot know that one stopped (it may be
        // running without naming this witness yet), so it promotes nobody.
        let Some((holder, held)) = &self.holder else {
            return Err(LeaseError::Held {
                holder: String::new(),
                epoch,
            });
        };
        // The node already promoted in this epoch asks again (it restarted before it wrote
        // the new epoch): the same answer, not a second promotion.
        if holder == node && *held == epoch + 1 {
            self.granted_at = now;
            return Ok(*held);
        }
        if epoch < *held {
            return Err(LeaseError::Fenced {
                epoch: *held,
                holder: holder.clone(),
            });
        }
        if !self.expired(now) {
            return Err(LeaseError::Held {
                holder: holder.clone(),
                epoch: *held,
            });
        }
        if self.degraded {
            return Err(LeaseError::Degraded);
        }
        let next = (*held).max(epoch) + 1;
        self.holder = Some((node.to_string(), next));
        self.granted_at = now;
        self.degraded = false;
        Ok(next)
    }
}

/// The primary's own view of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeldLease {
    /// It may take writes strictly before this time (its own clock).
    until: Option<Millis>,
}

impl HeldLease {
    /// A renewal sent at `sent_at` was granted: the lease holds until `sent_at + term - margin`
    /// (counted from sending, not from the answer, so network delay only shortens it).
    pub fn granted(&mut self, sent_at: Millis, timing: LeaseTiming) {
        let until = sent_at + timing.term_ms - timing.margin_ms;
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
    }

    /// Whether the primary may take writes at `now`.
    pub fn may_write(&self, now: Millis) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Milliseconds left at `now` (0 once it ran out), if a lease was ever granted.
    pub fn left(&self, now: Millis) -> Option<Millis> {
        self.until.map(|u| (u - now).max(0))
    }

    /// When to send the next renewal: a third of the term after the last one was sent.
    pub fn renew_at(last_sent: Millis, timing: LeaseTiming) -> Millis {
        last_sent + timing.term_ms / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: LeaseTiming = LeaseTiming {
        term_ms: 2_000,
        margin_ms: 500,
    };

    #[test]
    fn no_promotion_before_a_primary_ever_renewed() {
        let mut w = Witness::new(T);
        assert!(matches!(
            w.promote("standby", 1, 1_000_000),
            Err(LeaseError::Held { .. })
        ));
        assert_eq!(w.holder(), None);
    }

    #[test]
    fn a_live_primary_keeps_its_lease_and_the_standby_cannot_take_it() {
        let mut w = Witness::new(T);
        w.renew("primary", 1, false, 0).unwrap();
        w.renew("primary", 1, false, 600).unwrap();
        assert_eq!(
            w.promote("standby", 1, 2_000),
            Err(LeaseError::Held {
                holder: "primary".into(),
                epoch: 1
            })
        );
    }

    #[test]
    fn a_dead_primary_is_replaced_once_its_lease_and_margin_ran_out() {
        let mut w = Witness::new(T);
        w.renew("primary", 1, false, 0).unwrap();
        assert!(w.promote("standby", 1, 2_499).is_err());
        assert_eq!(w.promote("standby", 1, 2_500), Ok(2));
        assert_eq!(w.holder(), Some(("standby", 2)));
        // The old primary comes back and renews at its old epoch: fenced.
        assert_eq!(
            w.renew("primary", 1, false, 2_600),
            Err(LeaseError::Fenced {
                epoch: 2,
                holder: "standby".into()
            })
        );
    }

    #[test]
    fn two_promotions_racing_get_one_winner() {
        let mut w = Witness::new(T);
        w.renew("primary", 1, false, 0).unwrap();
        assert_eq!(w.promote("standby-1", 1, 3_000), Ok(2));
        assert!(matches!(
            w.promote("standby-2", 1, 3_000),
            Err(LeaseError::Fenced { epoch: 2, .. })
        ));
        assert!(matches!(
            w.promote("standby-2", 2, 3_001),
            Err(LeaseError::Held { .. })
        ));
    }

    #[test]
    fn a_degraded_primary_is_never_replaced_automatically() {
        let mut w = Witness::new(T);
        w.renew("primary", 1, true, 0).unwrap();
        assert_eq!(w.promote("standby", 1, 10_000), Err(LeaseError::Degraded));
        // Back in sync at the next renewal: failover is allowed again.
        w.renew("primary", 1, false, 10_001).unwrap();
        assert_eq!(w.promote("standby", 1, 13_000), Ok(2));
    }

    #[test]
    fn the_primary_stops_writing_before_the_witness_can_grant_the_role() {
        // The renewal is sent at 1_000 and reaches the witness at 1_200 (network delay); the
        // witness's clock may also run ahead of the primary's by up to the margin.
        let mut held = HeldLease::default();
        assert!(!held.may_write(0), "no lease, no writes");
        let mut w = Witness::new(T);
        w.renew("primary", 1, false, 1_200).unwrap();
        held.granted(1_000, T);
        assert!(held.may_write(2_499));
        assert!(!held.may_write(2_500));
        // The earliest the witness grants the role to the standby, by its own clock.
        let first_grant = (0..10_000)
            .find(|&t| w.clone().promote("standby", 1, t).is_ok())
            .unwrap();
        assert_eq!(first_grant, 1_200 + 2_000 + 500);
        // Even with the primary's clock 500 ms behind the witness, it stopped earlier.
        assert!(2_500 + 500 <= first_grant);
        assert_eq!(HeldLease::renew_at(1_000, T), 1_666);
    }

    #[test]
    fn a_restored_witness_waits_a_whole_term_and_never_promotes_twice_in_an_epoch() {
        let mut w = Witness::new(T);
        w.renew("primary", 1, false, 0).unwrap();
        assert_eq!(w.promote("standby", 1, 3_000), Ok(2));
        // Restarted (a new clock) with the stored holder: the standby asking again (it did
        // not write its epoch before it restarted) gets the same epoch ...
        let stored = w.holder().map(|(n, e)| (n.to_string(), e));
        let mut back = Witness::restore(T, stored.clone(), false, 100);
        assert_eq!(back.promote("standby", 1, 100), Ok(2));
        // ... and nobody else gets epoch 3 until the holder's lease could have run out.
        let mut back = Witness::restore(T, stored, false, 100);
        assert!(matches!(
            back.promote("other", 2, 2_599),
            Err(LeaseError::Held { .. })
        ));
        assert_eq!(back.expires_in(2_000), 600);
        // A degraded holder stays degraded across the restart.
        let d = Witness::restore(T, Some(("primary".into(), 1)), true, 0);
        assert!(d.degraded());
        assert_eq!(
            d.clone().promote("standby", 1, 10_000),
            Err(LeaseError::Degraded)
        );
    }

    #[test]
    fn a_lease_after_a_restart_goes_to_the_holder_of_the_newest_epoch() {
        let mut w = Witness::new(T);
        // Nothing known: whoever renews first at some epoch holds it.
        w.renew("standby", 3, false, 0).unwrap();
        assert_eq!(w.holder(), Some(("standby", 3)));
        // Another node at the same epoch is refused, expired or not.
        assert!(w.renew("primary", 3, false, 5_000).is_err());
        // A node promoted by hand (a newer epoch) takes it at once, lease or not ...
        w.renew("primary", 4, false, 5_001).unwrap();
        assert_eq!(w.holder(), Some(("primary", 4)));
        // ... and the old holder learns it is fenced.
        assert!(matches!(
            w.renew("standby", 3, false, 5_002),
            Err(LeaseError::Fenced { epoch: 4, .. })
        ));
    }
}
