//! Events: every change to a node's state is one identified, ordered, idempotent event.
//!
//! An event carries a UUIDv7 id, its origin site and node, the epoch it was written in and a
//! per-node sequence number. Applying an event twice is a no-op (the store keys on the id).
//! Events are serialized with serde using only externally tagged enums and plain structs, so
//! the same types travel as JSON in the store and as bincode on the wire.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clock::Millis;
use super::lifecycle::Status;
use super::ticket::{Contact, FieldChange, LinkKind, TicketType};

/// One change, as recorded in the log and shipped to a standby.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (UUIDv7: time-ordered).
    pub id: Uuid,
    /// The site where the event was written.
    pub origin_site: String,
    /// The node where the event was written.
    pub origin_node: String,
    /// The replication epoch it was written in.
    pub epoch: u64,
    /// The origin node's sequence number for it (1, 2, 3, ... without gaps).
    pub seq: u64,
    /// When it was written.
    pub at: Millis,
    /// The operator (or `system`) it was written for.
    pub actor: String,
    /// The ticket it is about; `None` for site-level events (operators).
    pub ticket: Option<Uuid>,
    /// What happened.
    pub kind: EventKind,
}

/// The header a ticket is opened with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicket {
    /// Level.
    #[serde(rename = "type", alias = "ticket_type")]
    pub ticket_type: TicketType,
    /// One-line subject.
    pub subject: String,
    /// Customer severity 1-4.
    pub severity: u8,
    /// NOC priority 1-4.
    pub priority: u8,
    /// Queue.
    pub queue: String,
    /// Owner, if assigned at once.
    pub owner: Option<String>,
    /// When the problem started.
    pub problem_start: Option<Millis>,
    /// Reporter contact.
    pub reporter: Contact,
    /// Affected nodes.
    pub nodes: Vec<String>,
    /// Network affected.
    pub network: Option<String>,
    /// Circuit id.
    pub circuit: Option<String>,
}

/// What an event records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A ticket was opened with this number and header.
    TicketCreated {
        /// Per-site number.
        number: i64,
        /// Header.
        ticket: NewTicket,
    },
    /// An incident update.
    NoteAdded {
        /// The note's own id.
        note_id: Uuid,
        /// Free text of any length (up to the configured maximum).
        text: String,
        /// Shared with partners (false: internal, the default).
        shared: bool,
        /// When it happened, if not when it was written.
        happened_at: Option<Millis>,
    },
    /// Header fields changed.
    FieldsChanged {
        /// Each field's old and new value.
        changes: Vec<FieldChange>,
    },
    /// A lifecycle move other than resolve, close and reopen.
    StatusChanged {
        /// Before.
        from: Status,
        /// After.
        to: Status,
    },
    /// Resolved, with resolution data.
    Resolved {
        /// One line saying what fixed it.
        resolution: String,
        /// The key component.
        component: Option<String>,
        /// Escalated to.
        escalated_to: Option<String>,
    },
    /// Closed, with sign-off.
    Closed {
        /// Who checked the resolution.
        checked_by: Option<String>,
    },
    /// Reopened from resolved or closed.
    Reopened {
        /// Why.
        reason: String,
    },
    /// Linked to another ticket.
    Linked {
        /// Kind.
        kind: LinkKind,
        /// Other ticket's id.
        target: Uuid,
        /// Other ticket's number.
        target_number: i64,
    },
    /// An alarm clock was set.
    TimerSet {
        /// Timer id.
        timer_id: Uuid,
        /// When it goes off.
        due_at: Millis,
        /// What to remind of.
        text: String,
    },
    /// An alarm clock went off (once).
    TimerFired {
        /// Timer id.
        timer_id: Uuid,
    },
    /// A pending alarm clock was called off (by an operator, or because the ticket was
    /// resolved, closed, cancelled or merged).
    TimerCancelled {
        /// Timer id.
        timer_id: Uuid,
        /// Why, for the history (`cancelled by operator`, `ticket resolved`).
        reason: String,
    },
    /// An alarm clock was moved to a later time; a fired one is armed again.
    TimerSnoozed {
        /// Timer id.
        timer_id: Uuid,
        /// When it goes off now.
        due_at: Millis,
    },
    /// An alarm that went off was seen and acknowledged: it leaves `ttx alerts`.
    AlertAcknowledged {
        /// Timer id.
        timer_id: Uuid,
    },
    /// An operator was given a token.
    OperatorAdded {
        /// Name.
        name: String,
        /// Role.
        role: Role,
        /// SHA-256 of the token (hex); the token itself is never stored.
        token_sha256: String,
    },
    /// An operator was removed.
    OperatorRemoved {
        /// Name.
        name: String,
    },
    /// An operator's web console password was set (or changed).
    OperatorPasswordSet {
        /// Name.
        name: String,
        /// The password's salted, slow hash (an argon2id PHC string); never the password.
        password_hash: String,
    },
    /// The queues an operator watches (shown on its at-a-glance page) were set.
    OperatorWatchSet {
        /// Name.
        name: String,
        /// Queue names, in the operator's order.
        queues: Vec<String>,
    },
    /// A peer site was registered, changed, accepted, denied, or seen (pending).
    PeerUpserted {
        /// The whole record after the change.
        peer: super::peer::PeerRecord,
    },
    /// A peer site was removed from the registry.
    PeerRemoved {
        /// Site.
        site: String,
    },
    /// A node became the site's primary: the first event of its epoch (written with that epoch).
    EpochStarted {
        /// The new epoch.
        epoch: u64,
        /// The node that is primary from here on.
        primary: String,
    },
    /// The answer to a request that carried an idempotency key, recorded after the request's
    /// own events so that any node of the site answers a retry the same way.
    Answered {
        /// The client's key (per operator: the event's actor).
        key: String,
        /// SHA-256 (hex) of the canonical JSON of the request as the client sent it.
        fingerprint: String,
        /// The answer, as the JSON text the client got.
        answer: String,
    },
    /// The referral exchange: a referral's step, a message queued for a peer, a peer's message
    /// taken (its mark advanced), a peer's acknowledgement.
    Exchange {
        /// What was recorded.
        record: crate::exchange::record::ExchangeRecord,
    },
    /// The review list of a deposed primary's unshipped events: an item queued, applied or
    /// discarded (`ttx review`).
    Review {
        /// What was recorded.
        record: super::review::ReviewRecord,
    },
    /// An attachment: one chunk of its bytes (a site event), or the attachment itself once
    /// every chunk is written (a ticket event).
    Attachment {
        /// What was recorded.
        record: super::attachment::AttachmentRecord,
    },
}

impl EventKind {
    /// One line saying what a ticket event did, as the CLI and the console show it in the
    /// history (`status new -> open`, `ALARM: call the carrier`). `None` for notes and creation
    /// (shown with their own layout) and for site events; `timer_text` finds a timer's text.
    pub fn describe(&self, timer_text: &dyn Fn(Uuid) -> Option<String>) -> Option<String> {
        let ts = super::clock::format;
        Some(match self {
            EventKind::FieldsChanged { changes } => {
                let parts: Vec<String> = changes
                    .iter()
                    .map(|c| format!("{}: {} -> {}", c.field.name(), c.from, c.to))
                    .collect();
                format!("set {}", parts.join("; "))
            }
            EventKind::StatusChanged { from, to } => format!("status {from} -> {to}"),
            EventKind::Resolved {
                resolution,
                component,
                ..
            } => format!(
                "resolved: {resolution}{}",
                component
                    .as_ref()
                    .map(|c| format!(" (component {c})"))
                    .unwrap_or_default()
            ),
            EventKind::Closed { checked_by } => format!(
                "closed{}",
                checked_by
                    .as_ref()
                    .map(|c| format!(", checked by {c}"))
                    .unwrap_or_default()
            ),
            EventKind::Reopened { reason } => format!("reopened: {reason}"),
            EventKind::Linked {
                kind,
                target_number,
                ..
            } => format!("linked {} TT {target_number}", kind.as_str()),
            EventKind::TimerSet { due_at, text, .. } => {
                format!("timer set for {}: {text}", ts(*due_at))
            }
            EventKind::TimerFired { timer_id } => format!(
                "ALARM: {}",
                timer_text(*timer_id).unwrap_or_else(|| "?".into())
            ),
            EventKind::TimerCancelled { timer_id, reason } => format!(
                "timer cancelled ({reason}): {}",
                timer_text(*timer_id).unwrap_or_else(|| "?".into())
            ),
            EventKind::TimerSnoozed { timer_id, due_at } => format!(
                "timer snoozed to {}: {}",
                ts(*due_at),
                timer_text(*timer_id).unwrap_or_else(|| "?".into())
            ),
            EventKind::AlertAcknowledged { timer_id } => format!(
                "alert acknowledged: {}",
                timer_text(*timer_id).unwrap_or_else(|| "?".into())
            ),
            EventKind::Exchange { record } => return record.describe(),
            EventKind::Review { record } => return record.describe(),
            EventKind::Attachment { record } => return record.describe(),
            EventKind::TicketCreated { .. }
            | EventKind::NoteAdded { .. }
            | EventKind::OperatorAdded { .. }
            | EventKind::OperatorRemoved { .. }
            | EventKind::OperatorPasswordSet { .. }
            | EventKind::OperatorWatchSet { .. }
            | EventKind::PeerUpserted { .. }
            | EventKind::PeerRemoved { .. }
            | EventKind::EpochStarted { .. }
            | EventKind::Answered { .. } => return None,
        })
    }

    /// A short stable name for the log and the store.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::TicketCreated { .. } => "created",
            EventKind::NoteAdded { .. } => "note",
            EventKind::FieldsChanged { .. } => "fields",
            EventKind::StatusChanged { .. } => "status",
            EventKind::Resolved { .. } => "resolved",
            EventKind::Closed { .. } => "closed",
            EventKind::Reopened { .. } => "reopened",
            EventKind::Linked { .. } => "linked",
            EventKind::TimerSet { .. } => "timer",
            EventKind::TimerFired { .. } => "timer-fired",
            EventKind::TimerCancelled { .. } => "timer-cancelled",
            EventKind::TimerSnoozed { .. } => "timer-snoozed",
            EventKind::AlertAcknowledged { .. } => "alert-acked",
            EventKind::OperatorAdded { .. } => "operator-added",
            EventKind::OperatorRemoved { .. } => "operator-removed",
            EventKind::OperatorPasswordSet { .. } => "operator-password",
            EventKind::OperatorWatchSet { .. } => "operator-watch",
            EventKind::PeerUpserted { .. } => "peer",
            EventKind::PeerRemoved { .. } => "peer-removed",
            EventKind::EpochStarted { .. } => "epoch-started",
            EventKind::Answered { .. } => "answered",
            EventKind::Exchange { .. } => "exchange",
            EventKind::Review { .. } => "review",
            EventKind::Attachment { record } => record.name(),
        }
    }
}

/// What an operator may do through the local API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including operators.
    Admin,
    /// Read and write tickets.
    Operator,
    /// Read only.
    Viewer,
}

impl Role {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }
    /// Whether the role may change tickets.
    pub fn can_write(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "viewer" => Ok(Role::Viewer),
            _ => Err(format!("unknown role {s:?}: use admin, operator or viewer")),
        }
    }
}
