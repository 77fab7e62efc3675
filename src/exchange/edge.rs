//! Exactly-once delivery on one directed edge between two sites, as pure bookkeeping.
//!
//! - [`InboundMark`]: the receiver's high-water mark for a peer. It says whether an arriving
//!   message is the next one (apply it, and advance the mark in the same transaction), one already
//!   applied (acknowledge again, apply nothing), or one after a gap (refuse with the sequence
//!   expected). Streams run concurrently on the transport, so order is enforced here, not there.
//! - [`Outbox`]: the sender's counters for a peer: the next sequence to assign and the highest
//!   sequence the peer acknowledged.
//! - [`Rebase`]: what a sender does with a partner's mark learned by a *mark probe* (a message
//!   with `seq = 0`) after its site failed over: the messages its predecessor may have sent
//!   that this node never knew of are already taken at the partner, so this node's own
//!   messages move after the partner's mark ([`Outbox::rebase`], [`needs_probe`]).
//! - [`retry_delay`]: how long the sender waits before sending again after a failure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::exchange::{Answer, ExchangeCode, Refused};

/// What the receiver knows of one peer's edge towards it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMark {
    /// The highest sequence applied; every one before it is applied too (0: none yet).
    pub applied: u64,
    /// The highest epoch seen from that site (0: none yet).
    pub epoch: u64,
}

/// What to do with an arriving message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next one: apply it and store [`InboundMark::advanced`] in the same transaction.
    Apply,
    /// Already applied (a retry whose ack was lost): apply nothing, acknowledge `applied` again.
    Duplicate,
    /// Refused: `expected` must come first.
    Gap {
        /// The sequence the receiver expects next.
        expected: u64,
    },
    /// Refused: the sender's site has moved to a later epoch than this message's (it comes from
    /// a deposed primary).
    Stale {
        /// The epoch the receiver knows.
        current: u64,
    },
}

impl InboundMark {
    /// Classifies a message with sequence `seq` sent in `epoch`.
    ///
    /// A higher epoch is accepted: the peer site failed over, and since sequences belong to the
    /// site, its new primary continues them.
    pub fn check(&self, seq: u64, epoch: u64) -> Arrival {
        if epoch < self.epoch {
            Arrival::Stale {
                current: self.epoch,
            }
        } else if seq <= self.applied {
            Arrival::Duplicate
        } else if seq == self.applied + 1 {
            Arrival::Apply
        } else {
            Arrival::Gap {
                expected: self.applied + 1,
            }
        }
    }

    /// Whether a message sent in `epoch` tells the receiver of a later epoch of its sender's
    /// site than any seen so far. The receiver records it even when the message itself is not
    /// taken (a retry already applied, one after a gap): a new primary's first messages are
    /// often retries of what its predecessor sent, and from then on the deposed primary's
    /// messages are refused ([`Arrival::Stale`]).
    pub fn learns_epoch(&self, epoch: u64) -> bool {
        epoch > self.epoch
    }

    /// The mark after applying `seq` in `epoch` (only valid after [`Arrival::Apply`]).
    pub fn advanced(self, seq: u64, epoch: u64) -> InboundMark {
        debug_assert_eq!(seq, self.applied + 1);
        InboundMark {
            applied: seq,
            epoch: self.epoch.max(epoch),
        }
    }
}

impl Arrival {
    /// The refusal a peer gets for a refused arrival (`None` for `Apply` and `Duplicate`).
    pub fn refusal(self) -> Option<Refused> {
        match self {
            Arrival::Apply | Arrival::Duplicate => None,
            Arrival::Gap { expected } => Some(Refused {
                expected: Some(expected),
                ..Refused::code(ExchangeCode::OutOfOrder)
            }),
            Arrival::Stale { current } => Some(Refused {
                epoch: Some(current),
                ..Refused::code(ExchangeCode::StaleEpoch)
            }),
        }
    }
}

/// The sender's counters for one peer. Both are part of the site's state (a promoted standby
/// continues them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    /// The last sequence assigned (0: nothing queued yet).
    pub last: u64,
    /// The highest sequence the peer acknowledged.
    pub acked: u64,
}

/// An acknowledgement that cannot be right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer acknowledged {up_to} but only {last} were sent")]
pub struct AckBeyondSent {
    /// What the peer said.
    pub up_to: u64,
    /// What was assigned.
    pub last: u64,
}

impl Outbox {
    /// Assigns the next sequence to a new message.
    pub fn assign(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// Takes an acknowledgement. An older one than already known changes nothing (acks may
    /// overtake each other); one beyond what was sent is a peer bug and is refused.
    pub fn ack(&mut self, up_to: u64) -> Result<bool, AckBeyondSent> {
        if up_to > self.last {
            return Err(AckBeyondSent {
                up_to,
                last: self.last,
            });
        }
        let moved = up_to > self.acked;
        self.acked = self.acked.max(up_to);
        Ok(moved)
    }

    /// The sequences still waiting for an acknowledgement.
    pub fn unacked(&self) -> std::ops::RangeInclusive<u64> {
        self.acked + 1..=self.last
    }

    /// How many messages wait for an acknowledgement.
    pub fn backlog(&self) -> u64 {
        self.last - self.acked
    }
}

/// Whether the sender must learn the partner's mark before it sends anything on an edge whose
/// mark it last learned in epoch `learned`, now that it is the primary of epoch `epoch`: once
/// per edge per epoch. A primary's predecessor (async or degraded replication) may have sent
/// messages its log never held, so their sequences are taken at the partner by messages this
/// node never knew: sequences alone cannot tell them from retries (protocol §5c).
pub fn needs_probe(learned: u64, epoch: u64) -> bool {
    learned < epoch
}

/// The sequence of a mark probe: below every real one (they start at 1), so every conformant
/// receiver answers it as a retry, `Ack { up_to: applied }`, and applies nothing.
pub const PROBE_SEQ: u64 = 0;

/// What a partner's mark learned by a probe does to the outbox: the messages after `after`
/// (those decided in this epoch: no node of the site has sent them) move up by `shift`, and
/// the acknowledged mark becomes `acked`. `shift` is 0 when the partner is not past what the
/// site may have sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebase {
    /// The highest sequence the site may have sent before this epoch (kept as it is).
    pub after: u64,
    /// How far every later sequence moves (the messages the partner took that this node
    /// never knew of).
    pub shift: u64,
    /// The acknowledged mark after the rebase.
    pub acked: u64,
}

/// A partner's mark that no rebase can follow (a peer bug: it would overflow the sequences).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the peer's mark {mark} is beyond any sequence a site can reach")]
pub struct MarkTooHigh {
    /// What the peer said.
    pub mark: u64,
}

/// The highest sequence a store keeps (its columns are signed 64-bit).
const MAX_SEQ: u64 = i64::MAX as u64 / 2;

impl Outbox {
    /// What the partner's `mark` (its answer to the probe) does, given `last_prev`: the
    /// highest sequence decided before this epoch (at least `acked`; the messages after it
    /// were decided in this epoch and held back until now). A partner past `last_prev` took
    /// `mark - last_prev` messages of a predecessor this node never knew: this node's own
    /// move after them. A partner at or below it only acknowledges (or, below `acked`, lost
    /// what it took: the next send is refused `OutOfOrder` and resends from the log).
    pub fn rebase(&self, mark: u64, last_prev: u64) -> Result<Rebase, MarkTooHigh> {
        let after = last_prev.max(self.acked).min(self.last);
        if mark > MAX_SEQ || self.last > MAX_SEQ {
            return Err(MarkTooHigh { mark });
        }
        let shift = mark.saturating_sub(after);
        Ok(Rebase {
            after,
            shift,
            acked: self.acked.max(mark),
        })
    }

    /// The counters after `rebase`.
    pub fn rebased(self, rebase: &Rebase) -> Outbox {
        Outbox {
            last: self.last + rebase.shift,
            acked: rebase.acked,
        }
    }
}

/// A sequence as a rebase leaves it.
pub fn shifted(seq: u64, rebase_after: u64, shift: u64) -> u64 {
    if seq > rebase_after {
        seq + shift
    } else {
        seq
    }
}

/// Whether a refusal consumes the message for good (the receiver's mark moved past it, the
/// sender must not send it again) rather than refusing it for now (nothing taken; resend later).
pub fn consumed_for_good(code: ExchangeCode) -> bool {
    matches!(
        code,
        ExchangeCode::NotParty
            | ExchangeCode::UnknownReferral
            | ExchangeCode::InvalidState
            | ExchangeCode::TooLarge
    )
}

/// The answers to a window of messages taken together, as a stream sends them back: runs of
/// acknowledgements collapse into one cumulative `Ack` (the highest), a refusal for good is kept
/// in its place (it is about the message after the last `Ack`), and a refusal for now ends the
/// window (nothing after it was taken). Returns the answers and whether the window ended early.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WindowAnswers {
    answers: Vec<Answer>,
    ended: bool,
}

impl WindowAnswers {
    /// No answer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the answer to the window's next message; `false` once the window has ended (the
    /// caller takes nothing more of it).
    pub fn push(&mut self, answer: Answer) -> bool {
        if self.ended {
            return false;
        }
        match (&answer, self.answers.last_mut()) {
            (Answer::Ack { up_to }, Some(Answer::Ack { up_to: last })) => {
                *last = (*last).max(*up_to);
            }
            (Answer::Refused(r), _) if !consumed_for_good(r.code) => {
                self.answers.push(answer);
                self.ended = true;
                return false;
            }
            _ => self.answers.push(answer),
        }
        true
    }

    /// Whether a refusal for now ended the window.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The answers, in order.
    pub fn into_answers(self) -> Vec<Answer> {
        self.answers
    }
}

/// How long to wait before the `attempt`-th retry (1-based) of an unacknowledged send: 100 ms
/// doubling up to 30 s, spread by `jitter` (a number in [0, 1) the caller draws) over the upper
/// half so that many senders retrying after one outage do not move in step.
pub fn retry_delay(attempt: u32, jitter: f64) -> Duration {
    const BASE_MS: u64 = 100;
    const CAP_MS: u64 = 30_000;
    let exp = attempt.saturating_sub(1).min(20);
    let full = BASE_MS.saturating_mul(1u64 << exp).min(CAP_MS);
    let jitter = jitter.clamp(0.0, 1.0);
    let ms = full / 2 + ((full / 2) as f64 * jitter) as u64;
    Duration::from_millis(ms.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_epoch_is_learnt_from_any_message_and_then_older_ones_are_stale() {
        let mark = InboundMark {
            applied: 5,
            epoch: 1,
        };
        // A retry from a promoted standby: a duplicate, but it carries epoch 2.
        assert_eq!(mark.check(5, 2), Arrival::Duplicate);
        assert!(mark.learns_epoch(2));
        assert!(!mark.learns_epoch(1));
        let learnt = InboundMark { epoch: 2, ..mark };
        // The deposed primary's next message, in epoch 1: refused, naming the epoch known.
        assert_eq!(learnt.check(6, 1), Arrival::Stale { current: 2 });
        assert_eq!(learnt.check(6, 2), Arrival::Apply);
    }

    #[test]
    fn marks_apply_in_order_and_acknowledge_duplicates() {
        let mut mark = InboundMark::default();
        assert_eq!(mark.check(1, 1), Arrival::Apply);
        mark = mark.advanced(1, 1);
        assert_eq!(mark.check(1, 1), Arrival::Duplicate);
        assert_eq!(mark.check(3, 1), Arrival::Gap { expected: 2 });
        assert_eq!(mark.check(2, 1), Arrival::Apply);
        mark = mark.advanced(2, 1);
        assert_eq!(
            mark,
            InboundMark {
                applied: 2,
                epoch: 1
            }
        );
    }

    #[test]
    fn a_failed_over_peer_continues_its_sequence_and_its_old_primary_is_stale() {
        let mark = InboundMark {
            applied: 5,
            epoch: 1,
        };
        assert_eq!(mark.check(6, 2), Arrival::Apply);
        let mark = mark.advanced(6, 2);
        assert_eq!(mark.check(7, 1), Arrival::Stale { current: 2 });
        let r = mark.check(7, 1).refusal().unwrap();
        assert_eq!((r.code, r.epoch), (ExchangeCode::StaleEpoch, Some(2)));
        let r = mark.check(9, 2).refusal().unwrap();
        assert_eq!((r.code, r.expected), (ExchangeCode::OutOfOrder, Some(7)));
        assert!(mark.check(6, 2).refusal().is_none());
    }

    #[test]
    fn outbox_counts_and_refuses_impossible_acks() {
        let mut out = Outbox::default();
        assert_eq!((out.assign(), out.assign(), out.assign()), (1, 2, 3));
        assert_eq!(out.ack(2), Ok(true));
        assert_eq!(out.ack(1), Ok(false), "an overtaken ack changes nothing");
        assert_eq!(out.unacked(), 3..=3);
        assert_eq!(out.backlog(), 1);
        assert_eq!(out.ack(4), Err(AckBeyondSent { up_to: 4, last: 3 }));
        assert_eq!(out.ack(3), Ok(true));
        assert!(out.unacked().is_empty());
    }

    #[test]
    fn a_mark_is_learned_once_per_edge_per_epoch() {
        assert!(needs_probe(0, 1), "a new edge probes in its first epoch");
        assert!(
            !needs_probe(1, 1),
            "learned in this epoch: no second probe, restarts included"
        );
        assert!(needs_probe(1, 2), "a promotion probes again");
        assert!(
            !needs_probe(3, 2),
            "a mark learned in a later epoch than ours"
        );
    }

    #[test]
    fn a_partner_past_what_the_site_sent_moves_this_epochs_messages_after_its_mark() {
        // The predecessor sent 1..=10; this node knew 1..=7 (acked 5) and decided 8..=9 itself.
        let out = Outbox { last: 9, acked: 5 };
        let r = out.rebase(10, 7).unwrap();
        assert_eq!(
            r,
            Rebase {
                after: 7,
                shift: 3,
                acked: 10
            }
        );
        let out = out.rebased(&r);
        assert_eq!(
            out,
            Outbox {
                last: 12,
                acked: 10
            }
        );
        assert_eq!(
            out.unacked(),
            11..=12,
            "its own two, after the partner's mark"
        );
        assert_eq!((shifted(7, 7, 3), shifted(8, 7, 3)), (7, 11));
        // Nothing of its own yet: the mark is past everything queued, and no AckBeyondSent.
        let out = Outbox { last: 7, acked: 5 };
        let r = out.rebase(10, 7).unwrap();
        assert_eq!(
            out.rebased(&r),
            Outbox {
                last: 10,
                acked: 10
            }
        );
    }

    #[test]
    fn a_partner_at_or_below_what_the_site_sent_moves_nothing() {
        let out = Outbox { last: 9, acked: 5 };
        // Equal: the partner took exactly what this node knew of.
        let r = out.rebase(7, 7).unwrap();
        assert_eq!((r.shift, r.acked), (0, 7));
        assert_eq!(out.rebased(&r), Outbox { last: 9, acked: 7 });
        // Below the acknowledged mark: the partner's site lost what it took; nothing moves.
        let r = out.rebase(3, 7).unwrap();
        assert_eq!((r.shift, r.acked), (0, 5));
        assert_eq!(out.rebased(&r), out);
        // `last_prev` below `acked` is read as `acked` (acknowledged messages were sent).
        assert_eq!(out.rebase(6, 2).unwrap().after, 5);
        assert_eq!(out.rebase(u64::MAX, 7), Err(MarkTooHigh { mark: u64::MAX }));
    }

    #[test]
    fn a_window_collapses_acks_keeps_refusals_for_good_and_ends_at_one_for_now() {
        let refused = |code| Answer::Refused(Refused::code(code));
        let mut w = WindowAnswers::new();
        assert!(w.push(Answer::Ack { up_to: 1 }));
        assert!(w.push(Answer::Ack { up_to: 3 }));
        // A duplicate in the window acknowledges the mark again: never lower.
        assert!(w.push(Answer::Ack { up_to: 2 }));
        assert!(w.push(refused(ExchangeCode::TooLarge)));
        assert!(w.push(Answer::Ack { up_to: 5 }));
        assert!(!w.push(refused(ExchangeCode::RateLimited)));
        assert!(
            !w.push(Answer::Ack { up_to: 7 }),
            "nothing after a refusal for now"
        );
        assert!(w.ended());
        assert_eq!(
            w.into_answers(),
            vec![
                Answer::Ack { up_to: 3 },
                refused(ExchangeCode::TooLarge),
                Answer::Ack { up_to: 5 },
                refused(ExchangeCode::RateLimited),
            ]
        );
        assert!(consumed_for_good(ExchangeCode::NotParty));
        assert!(!consumed_for_good(ExchangeCode::OutOfOrder));
    }

    #[test]
    fn retries_back_off_exponentially_to_a_cap() {
        assert_eq!(retry_delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(retry_delay(1, 0.999), Duration::from_millis(99));
        assert_eq!(retry_delay(2, 0.0), Duration::from_millis(100));
        assert_eq!(retry_delay(50, 0.0), Duration::from_millis(15_000));
        assert!(retry_delay(50, 0.99) <= Duration::from_millis(30_000));
        assert_eq!(retry_delay(0, 0.0), Duration::from_millis(50));
    }
}
