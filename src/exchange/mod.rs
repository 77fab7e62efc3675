//! The referral exchange's decisions: pure types and functions, no I/O.
//!
//! A NOC refers a ticket to a telco or partner NOC; the partner opens its *own* ticket, linked to
//! ours by the referral id, and both sides keep each other informed with source-stamped, immutable
//! messages (`ttx-exchange/1`, see [`crate::wire::exchange`]). Every ticket keeps one owner site;
//! nothing of one side's rows is ever edited by the other, so there is nothing to merge.
//!
//! - [`attachment`]: attachments on `ttx-exchange/2` (a partner's chunk, the chunks we send)
//!   and the named shared note a `ttx-exchange/1` peer gets instead.
//! - [`action`]: the operator's requests (refer a ticket, act on a referral).
//! - [`referral`]: one referral's state machine at either end (refer, accept, reject, progress,
//!   resolve, close, reopen, cancel, information requests, escalation when overdue).
//! - [`edge`]: exactly-once delivery on a directed edge between two sites: the receiver's
//!   high-water mark (apply in order, acknowledge duplicates, refuse gaps and stale epochs), the
//!   sender's outbox counters, and retry back-off.
//! - [`policy`]: the per-peer sharing policy (which header fields leave, shared notes only,
//!   auto-accept) and the per-peer size and rate caps.
//! - [`forward`]: where a shared note goes next along a chain of referrals, without echoes or
//!   loops.
//! - [`record`]: what the exchange writes into the site's log (referral steps, the outbox, the
//!   inbound marks, acknowledgements), so a promoted standby continues from it.
//! - [`inbound`]: what an arriving message does here: the pure decision that turns it into a
//!   referral step (or a refusal) and the advance of the peer's mark.
//!
//! The store and the node drive these: a decision's outbound messages are written to the
//! per-peer outbox in the same transaction as its local events, and an inbound message is
//! applied together with the advance of that peer's mark.

pub mod action;
pub mod attachment;
pub mod edge;
pub mod forward;
pub mod inbound;
pub mod policy;
pub mod record;
pub mod referral;

pub use edge::{Arrival, InboundMark, Outbox};
pub use policy::{PeerRates, RateLimit, SharingPolicy};
pub use referral::{Effect, Referral, ReferralError, ReferralState, Side, Step};
