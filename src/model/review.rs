//! The review list: events a deposed primary wrote that never reached the site's log (its
//! unshipped tail), kept for an admin to decide on instead of being dropped.
//!
//! `ttx standby rejoin` hands the tail to the new primary, which records each event as a
//! [`ReviewRecord::Queued`] item (idempotent by the original event's id). An admin then applies
//! an item (re-enacted as a new write of the current epoch, where that still makes sense) or
//! discards it (kept, marked discarded with who and why); each decision is itself an event of
//! the site's log ([`ReviewRecord::Applied`], [`ReviewRecord::Discarded`]), so it replicates and
//! shows in the ticket's history. An item is decided once.
//!
//! This module holds the records and the pure decision of what applying an item means
//! ([`plan`]); the store projects and enforces them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clock::Millis;
use super::command::Command;
use super::event::{EventKind, NewTicket};
use super::lifecycle::Status;

/// One event of a deposed node's tail, as its log held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// The original event's id (the item's identity: queued once per id).
    pub id: Uuid,
    /// Its position in the deposed node's log.
    pub position: u64,
    /// The epoch it was written in (the deposed primary's).
    pub epoch: u64,
    /// The node that wrote it.
    pub node: String,
    /// When it was written.
    pub at: Millis,
    /// The operator it was written for.
    pub actor: String,
    /// The ticket it was about (its id on the deposed node).
    pub ticket: Option<Uuid>,
    /// The event kind's stable name (`created`, `note`, ...).
    pub kind: String,
    /// The event kind's JSON, exactly as the deposed node's log held it.
    pub body: String,
}

/// What the log records of the review list (the body of [`EventKind::Review`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewRecord {
    /// A tail event was put on the review list as item `number`.
    Queued {
        /// The item's number on the list (1, 2, 3, ... per site).
        number: i64,
        /// The event.
        item: ReviewItem,
    },
    /// Item `number` was applied: re-enacted by the events that follow this one in the same
    /// transaction.
    Applied {
        /// The item.
        number: i64,
        /// What was done (`note added to ticket 12`, `opened as ticket 14`).
        outcome: String,
        /// The ticket that was written to (its number here).
        ticket: Option<i64>,
    },
    /// Item `number` was discarded (it stays on the list, marked).
    Discarded {
        /// The item.
        number: i64,
        /// Why, as the admin said.
        reason: Option<String>,
    },
}

impl ReviewRecord {
    /// The line the ticket history and the CLI show.
    pub fn describe(&self) -> Option<String> {
        Some(match self {
            ReviewRecord::Queued { number, item } => format!(
                "review item {number}: {} of epoch {} from {} kept for review",
                item.kind, item.epoch, item.node
            ),
            ReviewRecord::Applied {
                number, outcome, ..
            } => format!("review item {number} applied: {outcome}"),
            ReviewRecord::Discarded { number, reason } => format!(
                "review item {number} discarded{}",
                reason
                    .as_ref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        })
    }
}

/// An admin's decision on a review item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewDecision {
    /// Re-enact it as a new write of the current epoch.
    Apply,
    /// Keep it on the list, marked discarded, with why.
    Discard {
        /// Why.
        reason: Option<String>,
    },
}

/// What applying an item means, decided from the item alone (the store checks it against the
/// ticket as it is now).
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Open a new ticket with this header (the tail's ticket never reached the site).
    Create {
        /// The number the ticket had on the deposed node.
        number: i64,
        /// Its header.
        ticket: Box<NewTicket>,
    },
    /// Run this command on the item's ticket, as its original actor.
    Command(Command),
    /// Move the ticket's status from `from` to `to`, if it is still at `from`.
    Status {
        /// Where the tail's change started.
        from: Status,
        /// Where it went.
        to: Status,
    },
}

/// Why an item cannot be applied (nothing is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The body is not JSON of an event kind.
    #[error("the item's body is not an event this ttx reads: {0}")]
    BadBody(String),
    /// This kind of event is not re-enacted.
    #[error("a {0} event is not re-enacted by `ttx review apply`: read it with `ttx review show`, redo what it did by hand if it still matters, then discard it")]
    NotReenacted(String),
}

/// What applying `item` does, with the text of a recovered note marked as such.
pub fn plan(item: &ReviewItem) -> Result<Plan, PlanError> {
    let kind: EventKind =
        serde_json::from_str(&item.body).map_err(|e| PlanError::BadBody(e.to_string()))?;
    Ok(match kind {
        EventKind::TicketCreated { number, ticket } => Plan::Create {
            number,
            ticket: Box::new(ticket),
        },
        EventKind::NoteAdded {
            text,
            shared,
            happened_at,
            ..
        } => Plan::Command(Command::Note {
            text: recovered_text(item, &text),
            shared,
            happened_at: happened_at.or(Some(item.at)),
        }),
        EventKind::StatusChanged { from, to } => Plan::Status { from, to },
        EventKind::Resolved {
            resolution,
            component,
            escalated_to,
        } => Plan::Command(Command::Resolve {
            resolution,
            component,
            escalated_to,
        }),
        EventKind::Closed { checked_by } => Plan::Command(Command::Close { checked_by }),
        EventKind::Reopened { reason } => Plan::Command(Command::Reopen { reason }),
        other => return Err(PlanError::NotReenacted(other.name().to_string())),
    })
}

/// A recovered note's text: the original, marked with where it comes from.
pub fn recovered_text(item: &ReviewItem, text: &str) -> String {
    format!(
        "[recovered from epoch {} on {}, review item of {}]\n{text}",
        item.epoch,
        item.node,
        super::clock::format(item.at)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &EventKind) -> ReviewItem {
        ReviewItem {
            id: Uuid::nil(),
            position: 7,
            epoch: 1,
            node: "primary".into(),
            at: 1_000,
            actor: "alice".into(),
            ticket: Some(Uuid::nil()),
            kind: kind.name().into(),
            body: serde_json::to_string(kind).unwrap(),
        }
    }

    #[test]
    fn a_note_is_re_enacted_marked_as_recovered_by_its_original_time() {
        let kind = EventKind::NoteAdded {
            note_id: Uuid::nil(),
            text: "fiber cut at km 12".into(),
            shared: true,
            happened_at: None,
        };
        let Plan::Command(Command::Note {
            text,
            shared,
            happened_at,
        }) = plan(&item(&kind)).unwrap()
        else {
            panic!("a note is a note command")
        };
        assert!(
            text.starts_with("[recovered from epoch 1 on primary"),
            "{text}"
        );
        assert!(text.ends_with("\nfiber cut at km 12"), "{text}");
        assert!(shared);
        assert_eq!(happened_at, Some(1_000));
    }

    #[test]
    fn status_moves_keep_their_start_and_others_are_refused_by_name() {
        let kind = EventKind::StatusChanged {
            from: Status::New,
            to: Status::Open,
        };
        assert_eq!(
            plan(&item(&kind)).unwrap(),
            Plan::Status {
                from: Status::New,
                to: Status::Open
            }
        );
        let kind = EventKind::EpochStarted {
            epoch: 1,
            primary: "p".into(),
        };
        let err = plan(&item(&kind)).unwrap_err();
        assert_eq!(err, PlanError::NotReenacted("epoch-started".into()));
        let mut bad = item(&kind);
        bad.body = "{".into();
        assert!(matches!(plan(&bad), Err(PlanError::BadBody(_))));
    }
}
