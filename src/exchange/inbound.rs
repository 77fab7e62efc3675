//! What an arriving message does here, decided without I/O: the caller reads the peer's mark
//! and the referral the message names, and writes what this returns in one transaction (the
//! local events and the advance of the mark together).

use super::edge::{Arrival, InboundMark};
use super::referral::{self, Referral, Step};
use crate::model::clock::Millis;
use crate::wire::exchange::{Body, ExchangeCode, Message, Refer, Refused};

/// The decision for one arriving message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Already applied (a retry whose ack was lost): apply nothing, acknowledge the mark again
    /// (the caller still records a later epoch it carries: [`InboundMark::learns_epoch`]).
    Duplicate,
    /// Not taken (a gap, a stale epoch): apply nothing, answer the refusal; the sender retries
    /// (a later epoch it carries is still recorded: [`InboundMark::learns_epoch`]).
    Refuse(Refused),
    /// A new referral: open our own ticket for it, then run [`referral::receive`].
    Open(Refer),
    /// A step of an existing referral of this peer.
    Step(Step),
    /// Taken but not applied: the mark advances (so the edge is not blocked by a message that
    /// can never apply) and the peer is told `code` once.
    Consume(ExchangeCode),
}

/// Decides what the message `msg` from `peer` does, given the peer's mark and the referral the
/// message names (`existing`, whoever it belongs to).
pub fn decide(
    mark: &InboundMark,
    peer: &str,
    msg: &Message,
    existing: Option<&Referral>,
    now: Millis,
) -> Inbound {
    match mark.check(msg.seq, msg.epoch) {
        Arrival::Duplicate => return Inbound::Duplicate,
        refused @ (Arrival::Gap { .. } | Arrival::Stale { .. }) => {
            return Inbound::Refuse(refused.refusal().expect("a refused arrival"))
        }
        Arrival::Apply => {}
    }
    match (&msg.body, existing) {
        (_, Some(r)) if r.peer != peer => Inbound::Consume(ExchangeCode::NotParty),
        (Body::Refer(refer), None) => Inbound::Open(refer.clone()),
        (Body::Refer(_), Some(_)) => Inbound::Consume(ExchangeCode::InvalidState),
        (_, None) => Inbound::Consume(ExchangeCode::UnknownReferral),
        (body, Some(r)) => match referral::on_message(r, body, now) {
            Ok(step) => Inbound::Step(step),
            Err(e) => Inbound::Consume(e.code()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::referral::ReferralState;
    use uuid::Uuid;

    fn msg(seq: u64, body: Body) -> Message {
        Message {
            seq,
            id: [1; 16],
            epoch: 1,
            referral: [2; 16],
            body,
        }
    }

    fn refer() -> Refer {
        Refer {
            number: 7,
            subject: "down".into(),
            severity: None,
            priority: None,
            problem_start: None,
            fields: vec![],
            respond_by: None,
            note: None,
        }
    }

    fn theirs(peer: &str, state: ReferralState) -> Referral {
        Referral {
            id: Uuid::from_bytes([2; 16]),
            side: crate::exchange::Side::In,
            peer: peer.into(),
            ticket: Uuid::now_v7(),
            partner_ref: Some(7),
            state,
            respond_by: None,
            created_at: 0,
            updated_at: 0,
            orphaned: false,
        }
    }

    #[test]
    fn a_mark_probe_is_a_duplicate_at_any_mark_and_its_epoch_still_comes_first() {
        let probe = |epoch| Message {
            epoch,
            ..msg(crate::exchange::edge::PROBE_SEQ, Body::Refer(refer()))
        };
        for applied in [0, 1, 7] {
            let mark = InboundMark { applied, epoch: 2 };
            assert_eq!(
                decide(&mark, "noc-a", &probe(3), None, 0),
                Inbound::Duplicate
            );
            assert!(mark.learns_epoch(3), "a probe in a later epoch raises it");
        }
        let mark = InboundMark {
            applied: 4,
            epoch: 2,
        };
        let Inbound::Refuse(r) = decide(&mark, "noc-a", &probe(1), None, 0) else {
            panic!("a deposed primary's probe is stale")
        };
        assert_eq!((r.code, r.epoch), (ExchangeCode::StaleEpoch, Some(2)));
    }

    #[test]
    fn order_first_then_party_then_state() {
        let mark = InboundMark {
            applied: 3,
            epoch: 1,
        };
        let a = "noc-a";
        assert_eq!(
            decide(&mark, a, &msg(2, Body::Close), None, 0),
            Inbound::Duplicate
        );
        let Inbound::Refuse(r) = decide(&mark, a, &msg(6, Body::Close), None, 0) else {
            panic!("a gap is refused")
        };
        assert_eq!((r.code, r.expected), (ExchangeCode::OutOfOrder, Some(4)));
        assert_eq!(
            decide(&mark, a, &msg(4, Body::Refer(refer())), None, 0),
            Inbound::Open(refer())
        );
        let other = theirs("telco-x", ReferralState::Accepted);
        assert_eq!(
            decide(&mark, a, &msg(4, Body::Close), Some(&other), 0),
            Inbound::Consume(ExchangeCode::NotParty)
        );
        assert_eq!(
            decide(&mark, a, &msg(4, Body::Close), None, 0),
            Inbound::Consume(ExchangeCode::UnknownReferral)
        );
        // Close on a referral that is not resolved: nonsense in the state.
        let mine = theirs(a, ReferralState::Accepted);
        assert_eq!(
            decide(&mark, a, &msg(4, Body::Close), Some(&mine), 0),
            Inbound::Consume(ExchangeCode::InvalidState)
        );
        let Inbound::Step(step) = decide(
            &mark,
            a,
            &msg(4, Body::Cancel { reason: "x".into() }),
            Some(&mine),
            0,
        ) else {
            panic!("cancel applies")
        };
        assert_eq!(step.referral.state, ReferralState::Cancelled);
        // The same referral id referred again is nonsense, not a second referral.
        assert_eq!(
            decide(&mark, a, &msg(4, Body::Refer(refer())), Some(&mine), 0),
            Inbound::Consume(ExchangeCode::InvalidState)
        );
    }
}
