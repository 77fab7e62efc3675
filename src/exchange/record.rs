//! What the exchange writes into the site's log: the referral as each step leaves it, every
//! message queued for a peer (the durable outbox), the advance of a peer's inbound mark, and the
//! peer's acknowledgements. All of it is events of the site, so a promoted standby holds the
//! referrals, continues the per-peer sequences and knows what each peer has already applied.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::referral::Referral;
use crate::wire::exchange::{Body, ExchangeCode, Message};

/// One exchange record of the log (the body of [`crate::model::event::EventKind::Exchange`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExchangeRecord {
    /// The referral as a step left it, with the lines the step adds to our ticket's history.
    Referral {
        /// The whole referral after the step.
        referral: Referral,
        /// What happened, for the history (`telco-b accepted`).
        lines: Vec<String>,
    },
    /// A message decided here and queued for `peer` (the outbox row), with its sequence on
    /// that edge, its id and the epoch it was decided in.
    Queued {
        /// The receiving site.
        peer: String,
        /// The edge's sequence (1, 2, 3 … per peer, belonging to the site).
        seq: u64,
        /// The message id.
        id: Uuid,
        /// The epoch the message was decided in.
        epoch: u64,
        /// The referral it is about.
        referral: Uuid,
        /// What it says (already filtered by the peer's sharing policy).
        body: Body,
    },
    /// A message from `peer` was taken: its mark moves to `seq` (and `epoch`). `refused` is set
    /// when the message was consumed but not applied (not party, unknown referral, nonsense in
    /// the state, too large): the peer is told so once, and the edge is not blocked by it.
    Received {
        /// The sending site.
        peer: String,
        /// The message's sequence on that edge.
        seq: u64,
        /// The sender's epoch.
        epoch: u64,
        /// The message id.
        id: Uuid,
        /// The referral named.
        referral: Uuid,
        /// The message's name (`refer`, `note` …).
        message: String,
        /// Why it was consumed without being applied, if it was.
        refused: Option<ExchangeCode>,
    },
    /// A message from `peer` that was not taken (a retry already applied, or one after a gap)
    /// carried a higher epoch than any seen from that site: the mark's epoch moves to `epoch`,
    /// so a deposed primary of that site is refused from now on even before the new primary
    /// sends anything new.
    EpochSeen {
        /// The sending site.
        peer: String,
        /// The epoch it carried.
        epoch: u64,
    },
    /// The primary of `epoch` learned `peer`'s mark (its answer to a mark probe, protocol
    /// §5c) before sending anything of its own: the queued messages after `after` moved up by
    /// `shift` (the partner took that many messages of a predecessor that this log never held),
    /// the edge's last sequence with them, and the acknowledged mark rose to `mark` if below it.
    /// Written once per edge per epoch, so the probe is not repeated (restarts included) and a
    /// standby and a later promotion continue from the same sequences.
    MarkLearned {
        /// The receiving site.
        peer: String,
        /// The epoch it was learned in.
        epoch: u64,
        /// The partner's mark: the highest sequence it has taken from this site.
        mark: u64,
        /// The highest sequence the site may have sent before this epoch (kept).
        after: u64,
        /// How far every queued sequence after `after` moved (0: none).
        shift: u64,
    },
    /// `peer` acknowledged every message up to `up_to` (or refused one for good, `refused`).
    Acked {
        /// The receiving site.
        peer: String,
        /// The highest contiguous sequence it has taken.
        up_to: u64,
        /// Set when the peer consumed a message without applying it.
        refused: Option<ExchangeCode>,
    },
}

impl ExchangeRecord {
    /// One line for the ticket's history (`ttx show`), or `None` for records not on a ticket.
    pub fn describe(&self) -> Option<String> {
        match self {
            ExchangeRecord::Referral { referral, lines } => {
                let head = format!(
                    "referral {} {} {}: {}",
                    short(referral.id),
                    match referral.side {
                        super::Side::Out => "to",
                        super::Side::In => "from",
                    },
                    referral.peer,
                    referral.state.as_str()
                );
                Some(if lines.is_empty() {
                    head
                } else {
                    format!("{head} ({})", lines.join("; "))
                })
            }
            ExchangeRecord::Queued {
                peer, seq, body, ..
            } => Some(format!("sent to {peer} (#{seq}): {}", summary(body))),
            ExchangeRecord::Received {
                peer,
                seq,
                message,
                refused,
                ..
            } => Some(match refused {
                None => format!("received from {peer} (#{seq}): {message}"),
                Some(code) => format!("refused from {peer} (#{seq}): {message}: {}", code.text()),
            }),
            ExchangeRecord::EpochSeen { .. }
            | ExchangeRecord::Acked { .. }
            | ExchangeRecord::MarkLearned { .. } => None,
        }
    }

    /// The stable name of the record, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ExchangeRecord::Referral { .. } => "referral",
            ExchangeRecord::Queued { .. } => "queued",
            ExchangeRecord::Received { .. } => "received",
            ExchangeRecord::EpochSeen { .. } => "epoch seen",
            ExchangeRecord::MarkLearned { .. } => "mark learned",
            ExchangeRecord::Acked { .. } => "acked",
        }
    }

    /// The wire message of a queued record.
    pub fn message(&self) -> Option<Message> {
        match self {
            ExchangeRecord::Queued {
                seq,
                id,
                epoch,
                referral,
                body,
                ..
            } => Some(Message {
                seq: *seq,
                id: *id.as_bytes(),
                epoch: *epoch,
                referral: *referral.as_bytes(),
                body: body.clone(),
            }),
            _ => None,
        }
    }
}

/// The first 8 hex digits of a referral id, as the CLI shows it.
pub fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_string()
}

/// One line saying what a message says, for the history.
pub fn summary(body: &Body) -> String {
    match body {
        Body::Refer(r) => format!("refer #{} {:?}", r.number, r.subject),
        Body::Opened { reference } => format!("opened as #{reference}"),
        Body::Accepted => "accepted".into(),
        Body::Rejected { reason } => format!("rejected: {reason}"),
        Body::Note(n) => format!("note [{}] {}", n.origin_site, n.text),
        Body::Status { status } => format!("status {status:?}"),
        Body::Resolved { resolution, .. } => format!("resolved: {resolution}"),
        Body::Close => "close".into(),
        Body::Reopen { reason } => format!("reopen: {reason}"),
        Body::Cancel { reason } => format!("cancel: {reason}"),
        Body::InfoRequest { question } => format!("asks: {question}"),
        Body::Attachment(c) => format!(
            "attachment {} (from byte {} of {})",
            c.name, c.offset, c.total
        ),
    }
}
