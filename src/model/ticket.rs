//! The ticket: RFC 1297's "hospital chart" header with RT's queue, owner and watchers, and the
//! pure projection of events onto it ([`Ticket::apply`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clock::Millis;
use super::event::{EventKind, NewTicket};
use super::lifecycle::Status;

/// RFC 1297's levels of ticket, linkable to each other (complaint → trouble → engineering → meta).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketType {
    /// A fault in the network.
    Trouble,
    /// A customer's report, possibly one of many about one trouble.
    Complaint,
    /// Planned or corrective engineering work.
    Engineering,
    /// A ticket about tickets (a wide outage that gathers many troubles).
    Meta,
}

impl TicketType {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TicketType::Trouble => "trouble",
            TicketType::Complaint => "complaint",
            TicketType::Engineering => "engineering",
            TicketType::Meta => "meta",
        }
    }
}

impl fmt::Display for TicketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TicketType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "trouble" => Ok(TicketType::Trouble),
            "complaint" => Ok(TicketType::Complaint),
            "engineering" => Ok(TicketType::Engineering),
            "meta" => Ok(TicketType::Meta),
            _ => Err(format!(
                "unknown ticket type {s:?}: use trouble, complaint, engineering or meta"
            )),
        }
    }
}

/// Who reported the problem and how to reach them. A misspelled field is refused, not
/// dropped (`{"reporter": {"phnoe": ...}}` would lose the phone number).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Person.
    pub name: Option<String>,
    /// Organisation.
    pub org: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Email.
    pub email: Option<String>,
}

/// RT's watchers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watchers {
    /// The people the ticket is for.
    pub requestors: Vec<String>,
    /// Copied on shared updates.
    pub cc: Vec<String>,
    /// Copied on every update, internal ones too.
    pub admin_cc: Vec<String>,
}

/// Resolution data, filled at resolve and close.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// When it was resolved.
    pub resolved_at: Option<Millis>,
    /// One line saying what fixed it.
    pub resolution: Option<String>,
    /// The key component that failed.
    pub component: Option<String>,
    /// Who it was escalated to, if anyone.
    pub escalated_to: Option<String>,
    /// Who signed the close off.
    pub checked_by: Option<String>,
    /// When it was closed.
    pub closed_at: Option<Millis>,
    /// Problem start (or creation, when the problem start is unknown or later) to resolved.
    pub total_ms: Option<Millis>,
    /// Time the NOC held it (total minus customer time).
    pub noc_ms: Option<Millis>,
    /// Time spent waiting on the customer (`pending`).
    pub customer_ms: Option<Millis>,
}

/// The kinds of link between tickets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// Mentions another ticket.
    RefersTo,
    /// Cannot be resolved before the other one.
    DependsOn,
    /// Is one of the tickets the other gathers (complaint → trouble → engineering → meta).
    MemberOf,
    /// Was merged into the other one.
    MergedInto,
}

impl LinkKind {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::RefersTo => "refers-to",
            LinkKind::DependsOn => "depends-on",
            LinkKind::MemberOf => "member-of",
            LinkKind::MergedInto => "merged-into",
        }
    }
}

impl FromStr for LinkKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "refers-to" => Ok(LinkKind::RefersTo),
            "depends-on" => Ok(LinkKind::DependsOn),
            "member-of" => Ok(LinkKind::MemberOf),
            "merged-into" => Ok(LinkKind::MergedInto),
            _ => Err(format!(
                "unknown link kind {s:?}: use refers-to, depends-on, member-of or merged-into"
            )),
        }
    }
}

/// A header field an operator may set with `ttx set N FIELD=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Field {
    /// One-line subject.
    Subject,
    /// Ticket type.
    Type,
    /// Customer severity 1-4.
    Severity,
    /// NOC priority 1-4.
    Priority,
    /// Queue.
    Queue,
    /// Owner.
    Owner,
    /// When the problem started.
    ProblemStart,
    /// The next action to take.
    NextAction,
    /// Network affected.
    Network,
    /// Circuit id.
    Circuit,
    /// Affected nodes/machines.
    Nodes,
    /// Requestors.
    Requestors,
    /// Cc watchers.
    Cc,
    /// AdminCc watchers.
    AdminCc,
    /// Reporter's name.
    ReporterName,
    /// Reporter's organisation.
    ReporterOrg,
    /// Reporter's phone.
    ReporterPhone,
    /// Reporter's email.
    ReporterEmail,
    /// Escalated to.
    EscalatedTo,
    /// A free custom field (`cf.NAME`).
    Custom(String),
}

/// The names of the fields, as operators type them.
pub const FIELD_NAMES: &[&str] = &[
    "subject",
    "type",
    "severity",
    "priority",
    "queue",
    "owner",
    "problem-start",
    "next-action",
    "network",
    "circuit",
    "nodes",
    "requestors",
    "cc",
    "admin-cc",
    "reporter.name",
    "reporter.org",
    "reporter.phone",
    "reporter.email",
    "escalated-to",
    "cf.NAME",
    "status",
];

impl Field {
    /// Parses a field name (`_` and `-` are the same); `status` is handled by the caller.
    pub fn parse(name: &str) -> Option<Field> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        if let Some(custom) = n.strip_prefix("cf.") {
            return (!custom.is_empty()).then(|| Field::Custom(custom.to_string()));
        }
        Some(match n.as_str() {
            "subject" => Field::Subject,
            "type" => Field::Type,
            "severity" => Field::Severity,
            "priority" => Field::Priority,
            "queue" => Field::Queue,
            "owner" => Field::Owner,
            "problem-start" => Field::ProblemStart,
            "next-action" => Field::NextAction,
            "network" => Field::Network,
            "circuit" | "circuit-id" => Field::Circuit,
            "nodes" | "affected-nodes" => Field::Nodes,
            "requestors" | "requestor" => Field::Requestors,
            "cc" => Field::Cc,
            "admin-cc" | "admincc" => Field::AdminCc,
            "reporter.name" => Field::ReporterName,
            "reporter.org" => Field::ReporterOrg,
            "reporter.phone" => Field::ReporterPhone,
            "reporter.email" => Field::ReporterEmail,
            "escalated-to" => Field::EscalatedTo,
            _ => return None,
        })
    }

    /// The canonical name.
    pub fn name(&self) -> String {
        match self {
            Field::Custom(n) => format!("cf.{n}"),
            other => {
                let i = [
                    Field::Subject,
                    Field::Type,
                    Field::Severity,
                    Field::Priority,
                    Field::Queue,
                    Field::Owner,
                    Field::ProblemStart,
                    Field::NextAction,
                    Field::Network,
                    Field::Circuit,
                    Field::Nodes,
                    Field::Requestors,
                    Field::Cc,
                    Field::AdminCc,
                    Field::ReporterName,
                    Field::ReporterOrg,
                    Field::ReporterPhone,
                    Field::ReporterEmail,
                    Field::EscalatedTo,
                ]
                .iter()
                .position(|f| f == other)
                .expect("every non-custom field is listed");
                FIELD_NAMES[i].to_string()
            }
        }
    }

    /// Whether the field holds a list (`+=` and `-=` apply).
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            Field::Nodes | Field::Requestors | Field::Cc | Field::AdminCc
        )
    }
}

/// A typed field value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Cleared.
    None,
    /// Free text.
    Text(String),
    /// A severity or priority, 1-4.
    Level(u8),
    /// A point in time.
    Time(Millis),
    /// A list of names.
    List(Vec<String>),
    /// A ticket type.
    Type(TicketType),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::None => f.write_str("(none)"),
            Value::Text(t) => f.write_str(t),
            Value::Level(l) => write!(f, "{l}"),
            Value::Time(t) => f.write_str(&super::clock::format(*t)),
            Value::List(l) if l.is_empty() => f.write_str("(none)"),
            Value::List(l) => f.write_str(&l.join(", ")),
            Value::Type(t) => f.write_str(t.as_str()),
        }
    }
}

/// One field's change, old and new value (the history shows both).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field.
    pub field: Field,
    /// Its value before.
    pub from: Value,
    /// Its value after.
    pub to: Value,
}

/// A link from this ticket to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Kind of link.
    pub kind: LinkKind,
    /// The other ticket's id.
    pub target: Uuid,
    /// The other ticket's number at this site.
    pub target_number: i64,
}

/// The ticket as projected from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Stable id (UUIDv7).
    pub id: Uuid,
    /// Per-site human number (`42`).
    pub number: i64,
    /// The site that owns the ticket.
    pub site: String,
    /// Level.
    #[serde(rename = "type", alias = "ticket_type")]
    pub ticket_type: TicketType,
    /// One-line subject.
    pub subject: String,
    /// Lifecycle status.
    pub status: Status,
    /// Customer severity, 1 (worst) to 4.
    pub severity: u8,
    /// NOC priority, 1 (first) to 4.
    pub priority: u8,
    /// Queue.
    pub queue: String,
    /// Owner, if taken.
    pub owner: Option<String>,
    /// Operator who opened it.
    pub opened_by: String,
    /// When the problem started (may be before the ticket).
    pub problem_start: Option<Millis>,
    /// When the ticket was opened.
    pub created_at: Millis,
    /// When it last changed.
    pub updated_at: Millis,
    /// When the current status began.
    pub status_since: Millis,
    /// Customer time accumulated in `pending` so far (excluding the current stretch).
    pub customer_ms: Millis,
    /// Watchers.
    pub watchers: Watchers,
    /// Reporter contact.
    pub reporter: Contact,
    /// Affected nodes or machines.
    pub nodes: Vec<String>,
    /// Network affected.
    pub network: Option<String>,
    /// Circuit id.
    pub circuit: Option<String>,
    /// The next action to take.
    pub next_action: Option<String>,
    /// Free custom fields.
    pub custom: BTreeMap<String, String>,
    /// Outgoing links.
    pub links: Vec<Link>,
    /// Resolution data.
    pub resolution: Resolution,
    /// Number of incident updates.
    pub notes: u32,
}

impl Ticket {
    /// The ticket a creation event describes.
    pub fn created(
        id: Uuid,
        site: &str,
        number: i64,
        new: &NewTicket,
        actor: &str,
        at: Millis,
    ) -> Self {
        Ticket {
            id,
            number,
            site: site.to_string(),
            ticket_type: new.ticket_type,
            subject: new.subject.clone(),
            status: Status::New,
            severity: new.severity,
            priority: new.priority,
            queue: new.queue.clone(),
            owner: new.owner.clone(),
            opened_by: actor.to_string(),
            problem_start: new.problem_start,
            created_at: at,
            updated_at: at,
            status_since: at,
            customer_ms: 0,
            watchers: Watchers::default(),
            reporter: new.reporter.clone(),
            nodes: new.nodes.clone(),
            network: new.network.clone(),
            circuit: new.circuit.clone(),
            next_action: None,
            custom: BTreeMap::new(),
            links: Vec::new(),
            resolution: Resolution::default(),
            notes: 0,
        }
    }

    /// The current value of a field.
    pub fn get(&self, field: &Field) -> Value {
        let text = |v: &Option<String>| v.clone().map(Value::Text).unwrap_or(Value::None);
        match field {
            Field::Subject => Value::Text(self.subject.clone()),
            Field::Type => Value::Type(self.ticket_type),
            Field::Severity => Value::Level(self.severity),
            Field::Priority => Value::Level(self.priority),
            Field::Queue => Value::Text(self.queue.clone()),
            Field::Owner => text(&self.owner),
            Field::ProblemStart => self.problem_start.map(Value::Time).unwrap_or(Value::None),
            Field::NextAction => text(&self.next_action),
            Field::Network => text(&self.network),
            Field::Circuit => text(&self.circuit),
            Field::Nodes => Value::List(self.nodes.clone()),
            Field::Requestors => Value::List(self.watchers.requestors.clone()),
            Field::Cc => Value::List(self.watchers.cc.clone()),
            Field::AdminCc => Value::List(self.watchers.admin_cc.clone()),
            Field::ReporterName => text(&self.reporter.name),
            Field::ReporterOrg => text(&self.reporter.org),
            Field::ReporterPhone => text(&self.reporter.phone),
            Field::ReporterEmail => text(&self.reporter.email),
            Field::EscalatedTo => text(&self.resolution.escalated_to),
            Field::Custom(name) => text(&self.custom.get(name).cloned()),
        }
    }

    /// Sets a field to a value already validated by the command layer.
    fn put(&mut self, field: &Field, value: &Value) {
        let text = |v: &Value| match v {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        };
        let list = |v: &Value| match v {
            Value::List(l) => l.clone(),
            _ => Vec::new(),
        };
        match field {
            Field::Subject => self.subject = text(value).unwrap_or_default(),
            Field::Type => {
                if let Value::Type(t) = value {
                    self.ticket_type = *t
                }
            }
            Field::Severity => {
                if let Value::Level(l) = value {
                    self.severity = *l
                }
            }
            Field::Priority => {
                if let Value::Level(l) = value {
                    self.priority = *l
                }
            }
            Field::Queue => self.queue = text(value).unwrap_or_default(),
            Field::Owner => self.owner = text(value),
            Field::ProblemStart => {
                self.problem_start = match value {
                    Value::Time(t) => Some(*t),
                    _ => None,
                }
            }
            Field::NextAction => self.next_action = text(value),
            Field::Network => self.network = text(value),
            Field::Circuit => self.circuit = text(value),
            Field::Nodes => self.nodes = list(value),
            Field::Requestors => self.watchers.requestors = list(value),
            Field::Cc => self.watchers.cc = list(value),
            Field::AdminCc => self.watchers.admin_cc = list(value),
            Field::ReporterName => self.reporter.name = text(value),
            Field::ReporterOrg => self.reporter.org = text(value),
            Field::ReporterPhone => self.reporter.phone = text(value),
            Field::ReporterEmail => self.reporter.email = text(value),
            Field::EscalatedTo => self.resolution.escalated_to = text(value),
            Field::Custom(name) => match text(value) {
                Some(v) => {
                    self.custom.insert(name.clone(), v);
                }
                None => {
                    self.custom.remove(name);
                }
            },
        }
    }

    /// How operators at `local_site` refer to the ticket: `42` for one of ours, `SITE#42` for a
    /// partner's ticket held here.
    pub fn reference(&self, local_site: &str) -> String {
        if self.site == local_site {
            self.number.to_string()
        } else {
            format!("{}#{}", self.site, self.number)
        }
    }

    /// The text of the header fields search covers besides the subject: queue, owner,
    /// network, circuit, next action, nodes, custom field values, reporter, resolution.
    pub fn header_text(&self) -> String {
        let r = &self.resolution;
        let singles = [
            Some(&self.queue),
            self.owner.as_ref(),
            self.network.as_ref(),
            self.circuit.as_ref(),
            self.next_action.as_ref(),
        ];
        let contact = [
            &self.reporter.name,
            &self.reporter.org,
            &self.reporter.phone,
            &self.reporter.email,
        ];
        let resolution = [&r.resolution, &r.component, &r.escalated_to, &r.checked_by];
        let mut parts: Vec<&str> = singles.into_iter().flatten().map(String::as_str).collect();
        parts.extend(self.nodes.iter().map(String::as_str));
        parts.extend(self.custom.values().map(String::as_str));
        parts.extend(contact.into_iter().flatten().map(String::as_str));
        parts.extend(resolution.into_iter().flatten().map(String::as_str));
        parts.join(" ")
    }

    /// Customer time up to `at`, counting the current stretch if the ticket is pending.
    pub fn customer_time_at(&self, at: Millis) -> Millis {
        let current = if self.status == Status::Pending {
            (at - self.status_since).max(0)
        } else {
            0
        };
        self.customer_ms + current
    }

    /// Moves to a status, accounting customer time.
    fn enter(&mut self, to: Status, at: Millis) {
        if self.status == Status::Pending {
            self.customer_ms += (at - self.status_since).max(0);
        }
        self.status = to;
        self.status_since = at;
    }

    /// Projects one event onto the ticket. Deterministic: the same events give the same ticket,
    /// on this node and on a standby replaying them.
    pub fn apply(&mut self, kind: &EventKind, at: Millis) {
        match kind {
            EventKind::TicketCreated { .. } => {}
            EventKind::NoteAdded { .. } => self.notes += 1,
            EventKind::FieldsChanged { changes } => {
                for c in changes {
                    self.put(&c.field, &c.to);
                }
            }
            EventKind::StatusChanged { to, .. } => self.enter(*to, at),
            EventKind::Resolved {
                resolution,
                component,
                escalated_to,
            } => {
                self.enter(Status::Resolved, at);
                // RFC 1297's durations run from when the problem started, when that is known
                // and earlier than the ticket (a customer calls half an hour into an outage).
                let start = self
                    .problem_start
                    .map_or(self.created_at, |p| p.min(self.created_at));
                let total = (at - start).max(0);
                let r = &mut self.resolution;
                r.resolved_at = Some(at);
                r.resolution = Some(resolution.clone());
                r.component = component.clone();
                if escalated_to.is_some() {
                    r.escalated_to = escalated_to.clone();
                }
                r.total_ms = Some(total);
                r.customer_ms = Some(self.customer_ms);
                r.noc_ms = Some(total - self.customer_ms);
            }
            EventKind::Closed { checked_by } => {
                self.enter(Status::Closed, at);
                self.resolution.checked_by = checked_by.clone();
                self.resolution.closed_at = Some(at);
            }
            EventKind::Reopened { .. } => {
                self.enter(Status::Open, at);
                let escalated_to = self.resolution.escalated_to.take();
                self.resolution = Resolution {
                    escalated_to,
                    ..Resolution::default()
                };
            }
            EventKind::Linked {
                kind,
                target,
                target_number,
            } => self.links.push(Link {
                kind: *kind,
                target: *target,
                target_number: *target_number,
            }),
            EventKind::TimerSet { .. }
            | EventKind::TimerFired { .. }
            | EventKind::TimerCancelled { .. }
            | EventKind::TimerSnoozed { .. }
            | EventKind::AlertAcknowledged { .. }
            | EventKind::OperatorAdded { .. }
            | EventKind::OperatorRemoved { .. }
            | EventKind::OperatorPasswordSet { .. }
            | EventKind::OperatorWatchSet { .. }
            | EventKind::PeerUpserted { .. }
            | EventKind::PeerRemoved { .. }
            | EventKind::EpochStarted { .. }
            | EventKind::Answered { .. }
            | EventKind::Exchange { .. }
            | EventKind::Review { .. }
            | EventKind::Attachment { .. } => {}
        }
        self.updated_at = self.updated_at.max(at);
    }
}

/// A plain new trouble ticket for unit tests: `subject`, number `number`, opened by alice at 0.
#[cfg(test)]
pub(crate) fn test_ticket(number: i64) -> Ticket {
    let new = NewTicket {
        ticket_type: TicketType::Trouble,
        subject: "x".into(),
        severity: 3,
        priority: 3,
        queue: "general".into(),
        owner: None,
        problem_start: None,
        reporter: Contact::default(),
        nodes: vec![],
        network: None,
        circuit: None,
    };
    Ticket::created(Uuid::now_v7(), "noc-a", number, &new, "alice", 0)
}
