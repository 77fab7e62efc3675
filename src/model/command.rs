//! Operator commands and the pure decision of which events each produces.
//!
//! The store looks up the ticket, calls a `decide_*` function with the ticket, the command and
//! a [`Context`] (actor, now, limits), and appends the events it returns. Nothing here does I/O,
//! so every rule (lifecycle, field validation, limits) is unit-tested without a database.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clock::{self, Millis};
use super::event::{EventKind, NewTicket, Role};
use super::lifecycle::Status;
use super::ticket::{
    Contact, Field, FieldChange, LinkKind, Ticket, TicketType, Value, FIELD_NAMES,
};
use crate::config::LimitsSection;

/// Why a command was not carried out. The message is for the operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The input is invalid (a value out of range, an empty subject, an oversize note).
    #[error("{0}")]
    Invalid(String),
    /// The command breaks the ticket's rules (an invalid transition, a duplicate link).
    #[error("{0}")]
    Refused(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
}

fn invalid(msg: impl Into<String>) -> CommandError {
    CommandError::Invalid(msg.into())
}

/// What the decision functions need besides the ticket.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The operator the command is run for.
    pub actor: &'a str,
    /// The current time.
    pub now: Millis,
    /// Size limits.
    pub limits: &'a LimitsSection,
}

/// The events a command produces, in order.
pub type Decision = Result<Vec<EventKind>, CommandError>;

/// A request to open a ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreateTicket {
    /// One-line subject (required).
    pub subject: String,
    /// `trouble` (default), `complaint`, `engineering` or `meta`.
    #[serde(rename = "type")]
    pub ticket_type: Option<String>,
    /// Customer severity 1-4 (default 3).
    pub severity: Option<u8>,
    /// NOC priority 1-4 (default 3).
    pub priority: Option<u8>,
    /// Queue (default `general`).
    pub queue: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// First incident update (internal).
    pub description: Option<String>,
    /// When the problem started (RFC 3339 or the other forms of `clock::parse_time`).
    pub problem_start: Option<String>,
    /// Reporter contact.
    pub reporter: Contact,
    /// Affected nodes.
    pub nodes: Vec<String>,
    /// Network.
    pub network: Option<String>,
    /// Circuit id.
    pub circuit: Option<String>,
}

/// Any operator command on an existing ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add an incident update.
    Note {
        /// Text.
        text: String,
        /// Shared with partners.
        shared: bool,
        /// When it happened.
        happened_at: Option<Millis>,
    },
    /// `FIELD=VALUE`, `FIELD+=VALUE`, `FIELD-=VALUE` assignments.
    Set {
        /// The assignments, as typed.
        assignments: Vec<String>,
    },
    /// Take ownership (and open a new ticket). A ticket someone else owns is only taken
    /// with `steal` (RT's Steal), so two operators never silently swap a ticket.
    Take {
        /// Take it even though another operator owns it.
        #[serde(default)]
        steal: bool,
    },
    /// Set an alarm clock.
    Timer {
        /// When it goes off.
        due_at: Millis,
        /// Reminder text.
        text: String,
    },
    /// Resolve.
    Resolve {
        /// One line saying what fixed it.
        resolution: String,
        /// Key component.
        component: Option<String>,
        /// Escalated to.
        escalated_to: Option<String>,
    },
    /// Close a resolved ticket.
    Close {
        /// Sign-off.
        checked_by: Option<String>,
    },
    /// Reopen a resolved or closed ticket (the problem came back).
    Reopen {
        /// Why.
        reason: String,
    },
}

/// Default severity and priority when none is given.
pub const DEFAULT_LEVEL: u8 = 3;
/// Default queue.
pub const DEFAULT_QUEUE: &str = "general";
/// Longest name (queue, owner, operator, watcher, node, custom field name).
pub const MAX_NAME_BYTES: usize = 200;
/// Longest timer text.
pub const MAX_TIMER_TEXT: usize = 500;
/// How far in the future a "happened at" may be (clock skew).
pub const MAX_FUTURE_SKEW_MS: Millis = 5 * 60 * 1000;

fn check_level(what: &str, v: u8) -> Result<u8, CommandError> {
    if (1..=4).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(format!("{what} must be 1 to 4, got {v}")))
    }
}

fn parse_level(what: &str, s: &str) -> Result<u8, CommandError> {
    let v: u8 = s
        .trim()
        .parse()
        .map_err(|_| invalid(format!("{what} must be 1 to 4, got {s:?}")))?;
    check_level(what, v)
}

/// A one-line text: no control characters, not empty, at most `max` bytes.
fn check_line(what: &str, s: &str, max: usize) -> Result<String, CommandError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if t.len() > max {
        return Err(invalid(format!(
            "{what} is {} bytes, at most {max} allowed",
            t.len()
        )));
    }
    if t.chars().any(|c| c.is_control()) {
        return Err(invalid(format!(
            "{what} must be one line without control characters"
        )));
    }
    Ok(t.to_string())
}

fn check_name(what: &str, s: &str) -> Result<String, CommandError> {
    let t = check_line(what, s, MAX_NAME_BYTES)?;
    if t.contains(',') {
        return Err(invalid(format!("{what} {t:?} must not contain ','")));
    }
    Ok(t)
}

fn optional_line(
    what: &str,
    s: &Option<String>,
    max: usize,
) -> Result<Option<String>, CommandError> {
    s.as_deref()
        .filter(|v| !v.trim().is_empty())
        .map(|v| check_line(what, v, max))
        .transpose()
}

fn parse_list(what: &str, s: &str) -> Result<Vec<String>, CommandError> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let item = check_name(what, item)?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), CommandError> {
    if s.trim().is_empty() {
        return Err(invalid(format!("{what} must not be empty")));
    }
    if s.len() > max {
        return Err(invalid(format!(
            "{what} is {} bytes, at most {max} allowed (limits.max_note_bytes)",
            s.len()
        )));
    }
    Ok(())
}

/// Validates a creation request into the event header and the optional first note.
pub fn decide_create(
    req: &CreateTicket,
    ctx: &Context,
) -> Result<(NewTicket, Option<String>), CommandError> {
    let l = ctx.limits;
    let subject = check_line("subject", &req.subject, l.max_subject_bytes)?;
    let ticket_type = match &req.ticket_type {
        Some(t) => t.parse::<TicketType>().map_err(invalid)?,
        None => TicketType::Trouble,
    };
    let problem_start = req
        .problem_start
        .as_deref()
        .map(|t| parse_problem_start(t, ctx.now))
        .transpose()?;
    let queue = match &req.queue {
        Some(q) => check_name("queue", q)?,
        None => DEFAULT_QUEUE.to_string(),
    };
    let owner = req
        .owner
        .as_deref()
        .map(|o| check_name("owner", o))
        .transpose()?;
    let mut nodes = Vec::new();
    for n in &req.nodes {
        nodes.extend(parse_list("node", n)?);
    }
    let reporter = Contact {
        name: optional_line("reporter.name", &req.reporter.name, l.max_field_bytes)?,
        org: optional_line("reporter.org", &req.reporter.org, l.max_field_bytes)?,
        phone: optional_line("reporter.phone", &req.reporter.phone, l.max_field_bytes)?,
        email: optional_line("reporter.email", &req.reporter.email, l.max_field_bytes)?,
    };
    let description = match &req.description {
        Some(d) if !d.trim().is_empty() => {
            check_text("description", d, l.max_note_bytes)?;
            Some(d.clone())
        }
        _ => None,
    };
    let new = NewTicket {
        ticket_type,
        subject,
        severity: check_level("severity", req.severity.unwrap_or(DEFAULT_LEVEL))?,
        priority: check_level("priority", req.priority.unwrap_or(DEFAULT_LEVEL))?,
        queue,
        owner,
        problem_start,
        reporter,
        nodes,
        network: optional_line("network", &req.network, l.max_field_bytes)?,
        circuit: optional_line("circuit", &req.circuit, l.max_field_bytes)?,
    };
    Ok((new, description))
}

/// Parses a problem start: a time not in the future (beyond clock skew), since a problem that
/// has not started yet is a typo that would make every duration negative.
fn parse_problem_start(text: &str, now: Millis) -> Result<Millis, CommandError> {
    let t = clock::parse_time(text, now).map_err(|e| invalid(e.to_string()))?;
    if t > now + MAX_FUTURE_SKEW_MS {
        return Err(invalid(format!(
            "problem start {} is in the future: give when the problem began",
            clock::format(t)
        )));
    }
    Ok(t)
}

/// Decides the events of a command on an existing ticket.
pub fn decide(ticket: &Ticket, cmd: &Command, ctx: &Context) -> Decision {
    match cmd {
        Command::Note {
            text,
            shared,
            happened_at,
        } => {
            check_text("note", text, ctx.limits.max_note_bytes)?;
            if let Some(h) = happened_at {
                if *h > ctx.now + MAX_FUTURE_SKEW_MS {
                    return Err(invalid(format!(
                        "happened-at {} is in the future",
                        clock::format(*h)
                    )));
                }
            }
            Ok(vec![EventKind::NoteAdded {
                note_id: Uuid::now_v7(),
                text: text.clone(),
                shared: *shared,
                happened_at: *happened_at,
            }])
        }
        Command::Set { assignments } => decide_set(ticket, assignments, ctx),
        Command::Take { steal } => {
            let mut events = Vec::new();
            if let Some(owner) = ticket.owner.as_deref().filter(|o| *o != ctx.actor) {
                if !steal {
                    return Err(CommandError::Refused(format!(
                        "ticket {} is owned by {owner}: take it anyway with `ttx take {} --steal`",
                        ticket.number, ticket.number
                    )));
                }
            }
            if ticket.owner.as_deref() != Some(ctx.actor) {
                events.push(EventKind::FieldsChanged {
                    changes: vec![FieldChange {
                        field: Field::Owner,
                        from: ticket.get(&Field::Owner),
                        to: Value::Text(ctx.actor.to_string()),
                    }],
                });
            }
            match ticket.status {
                Status::New => events.push(EventKind::StatusChanged {
                    from: Status::New,
                    to: Status::Open,
                }),
                Status::Resolved => {
                    return Err(CommandError::Refused(format!(
                        "ticket {} is resolved: reopen it (`ttx reopen {} --reason TEXT`) before taking it",
                        ticket.number, ticket.number
                    )))
                }
                s if !s.is_active() => {
                    return Err(CommandError::Refused(format!(
                        "ticket {} is {s}, which is final: open a new ticket and link it",
                        ticket.number
                    )))
                }
                _ => {}
            }
            Ok(events)
        }
        Command::Timer { due_at, text } => {
            let text = check_line("timer text", text, MAX_TIMER_TEXT)?;
            if *due_at <= ctx.now {
                return Err(invalid(format!(
                    "timer time {} is not in the future",
                    clock::format(*due_at)
                )));
            }
            Ok(vec![EventKind::TimerSet {
                timer_id: Uuid::now_v7(),
                due_at: *due_at,
                text,
            }])
        }
        Command::Resolve {
            resolution,
            component,
            escalated_to,
        } => {
            let resolution = check_line("resolution", resolution, ctx.limits.max_field_bytes)?;
            transition(ticket, Status::Resolved)?;
            Ok(vec![EventKind::Resolved {
                resolution,
                component: optional_line("component", component, MAX_NAME_BYTES)?,
                escalated_to: optional_line("escalated-to", escalated_to, MAX_NAME_BYTES)?,
            }])
        }
        Command::Close { checked_by } => {
            transition(ticket, Status::Closed)?;
            Ok(vec![EventKind::Closed {
                checked_by: optional_line("checked-by", checked_by, MAX_NAME_BYTES)?,
            }])
        }
        Command::Reopen { reason } => {
            let reason = check_line("reason", reason, ctx.limits.max_field_bytes)?;
            if !matches!(ticket.status, Status::Resolved | Status::Closed) {
                return Err(CommandError::Refused(format!(
                    "ticket {} is {}: only a resolved or closed ticket can be reopened",
                    ticket.number, ticket.status
                )));
            }
            Ok(vec![EventKind::Reopened { reason }])
        }
    }
}

fn transition(ticket: &Ticket, to: Status) -> Result<(), CommandError> {
    ticket
        .status
        .check_transition(to)
        .map_err(|e| CommandError::Refused(format!("ticket {}: {e}", ticket.number)))
}

/// The rank of a ticket type in RFC 1297's hierarchy (member-of goes up).
fn rank(t: TicketType) -> u8 {
    match t {
        TicketType::Complaint => 0,
        TicketType::Trouble => 1,
        TicketType::Engineering => 2,
        TicketType::Meta => 3,
    }
}

/// Decides a link from `ticket` to `target`.
pub fn decide_link(ticket: &Ticket, kind: LinkKind, target: &Ticket) -> Decision {
    if ticket.id == target.id {
        return Err(CommandError::Refused(format!(
            "ticket {} cannot be linked to itself",
            ticket.number
        )));
    }
    if kind == LinkKind::MergedInto {
        return decide_merge(ticket, target);
    }
    if ticket
        .links
        .iter()
        .any(|l| l.kind == kind && l.target == target.id)
    {
        return Err(CommandError::Refused(format!(
            "ticket {} is already {} {}",
            ticket.number,
            kind.as_str(),
            target.number
        )));
    }
    if kind == LinkKind::MemberOf && rank(target.ticket_type) <= rank(ticket.ticket_type) {
        return Err(CommandError::Refused(format!(
            "a {} ticket can only be a member of a higher level (complaint -> trouble -> engineering -> meta), and {} is {}",
            ticket.ticket_type, target.number, target.ticket_type
        )));
    }
    Ok(vec![EventKind::Linked {
        kind,
        target: target.id,
        target_number: target.number,
    }])
}

/// The ticket a merged ticket now lives on, if it was merged.
pub fn merged_into(ticket: &Ticket) -> Option<i64> {
    ticket
        .links
        .iter()
        .find(|l| l.kind == LinkKind::MergedInto)
        .map(|l| l.target_number)
}

/// Merges `ticket` (the duplicate) into `target` (the survivor), as RT's merge: the duplicate
/// is linked to the survivor, resolved and closed with "merged into TT M", so it leaves the
/// open-work list and its chart points at the survivor.
fn decide_merge(ticket: &Ticket, target: &Ticket) -> Decision {
    if let Some(n) = merged_into(ticket) {
        return Err(CommandError::Refused(format!(
            "ticket {} was already merged into {n}",
            ticket.number
        )));
    }
    if let Some(n) = merged_into(target) {
        return Err(CommandError::Refused(format!(
            "ticket {} was merged into {n}: merge into {n} instead",
            target.number
        )));
    }
    if matches!(ticket.status, Status::Closed | Status::Cancelled) {
        return Err(CommandError::Refused(format!(
            "ticket {} is {}: reopen it before merging it",
            ticket.number, ticket.status
        )));
    }
    let mut events = vec![EventKind::Linked {
        kind: LinkKind::MergedInto,
        target: target.id,
        target_number: target.number,
    }];
    if ticket.status != Status::Resolved {
        events.push(EventKind::Resolved {
            resolution: format!("merged into TT {}", target.number),
            component: None,
            escalated_to: None,
        });
    }
    events.push(EventKind::Closed { checked_by: None });
    Ok(events)
}

/// One parsed `FIELD=VALUE`.
enum Op {
    Assign,
    Add,
    Remove,
}

fn split_assignment(a: &str) -> Result<(&str, Op, &str), CommandError> {
    let eq = a
        .find('=')
        .ok_or_else(|| invalid(format!("{a:?} is not FIELD=VALUE")))?;
    let (lhs, value) = (&a[..eq], &a[eq + 1..]);
    let (name, op) = if let Some(n) = lhs.strip_suffix('+') {
        (n, Op::Add)
    } else if let Some(n) = lhs.strip_suffix('-') {
        (n, Op::Remove)
    } else {
        (lhs, Op::Assign)
    };
    Ok((name.trim(), op, value))
}

fn parse_value(field: &Field, raw: &str, ctx: &Context) -> Result<Value, CommandError> {
    let name = field.name();
    let raw_t = raw.trim();
    Ok(match field {
        Field::Severity | Field::Priority => Value::Level(parse_level(&name, raw_t)?),
        Field::Type => Value::Type(raw_t.parse::<TicketType>().map_err(invalid)?),
        Field::Subject => Value::Text(check_line("subject", raw, ctx.limits.max_subject_bytes)?),
        Field::Queue => Value::Text(check_name("queue", raw)?),
        Field::ProblemStart if raw_t.is_empty() => Value::None,
        Field::ProblemStart => Value::Time(parse_problem_start(raw_t, ctx.now)?),
        f if f.is_list() => Value::List(parse_list(&name, raw)?),
        _ if raw_t.is_empty() => Value::None,
        Field::Owner | Field::EscalatedTo => Value::Text(check_name(&name, raw)?),
        _ => Value::Text(check_line(&name, raw, ctx.limits.max_field_bytes)?),
    })
}

fn decide_set(ticket: &Ticket, assignments: &[String], ctx: &Context) -> Decision {
    if assignments.is_empty() {
        return Err(invalid("nothing to set: give FIELD=VALUE"));
    }
    let mut work = ticket.clone();
    let mut changes: Vec<FieldChange> = Vec::new();
    let mut status_to: Option<Status> = None;
    for a in assignments {
        let (name, op, raw) = split_assignment(a)?;
        if name.eq_ignore_ascii_case("status") {
            let to: Status = raw.trim().parse().map_err(invalid)?;
            status_to = Some(check_status_set(ticket, to)?);
            continue;
        }
        let field = Field::parse(name).ok_or_else(|| {
            invalid(format!(
                "unknown field {name:?}: fields are {}",
                FIELD_NAMES.join(", ")
            ))
        })?;
        if let Field::Custom(cf) = &field {
            check_name("custom field name", cf)?;
        }
        let parsed = parse_value(&field, raw, ctx)?;
        let new_value = match (op, work.get(&field), parsed) {
            (Op::Assign, _, v) => v,
            (Op::Add, Value::List(mut cur), Value::List(add)) => {
                for x in add {
                    if !cur.contains(&x) {
                        cur.push(x);
                    }
                }
                Value::List(cur)
            }
            (Op::Remove, Value::List(mut cur), Value::List(del)) => {
                cur.retain(|x| !del.contains(x));
                Value::List(cur)
            }
            _ => {
                return Err(invalid(format!(
                    "{} is not a list: use {}=VALUE",
                    field.name(),
                    field.name()
                )))
            }
        };
        let old = work.get(&field);
        if old != new_value {
            work.apply(
                &EventKind::FieldsChanged {
                    changes: vec![FieldChange {
                        field: field.clone(),
                        from: old.clone(),
                        to: new_value.clone(),
                    }],
                },
                ctx.now,
            );
            // Several assignments to one field collapse into one change from the original value.
            match changes.iter_mut().find(|c| c.field == field) {
                Some(c) => c.to = new_value,
                None => changes.push(FieldChange {
                    field,
                    from: old,
                    to: new_value,
                }),
            }
        }
    }
    changes.retain(|c| c.from != c.to);
    let mut events = Vec::new();
    if !changes.is_empty() {
        events.push(EventKind::FieldsChanged { changes });
    }
    if let Some(to) = status_to.filter(|to| *to != ticket.status) {
        events.push(EventKind::StatusChanged {
            from: ticket.status,
            to,
        });
    }
    Ok(events)
}

/// `set status=X` covers the plain moves; resolve, close and reopen need their own data.
fn check_status_set(ticket: &Ticket, to: Status) -> Result<Status, CommandError> {
    if to == ticket.status {
        return Ok(to);
    }
    let guidance = match to {
        Status::Resolved => Some("use `ttx resolve N --resolution TEXT`"),
        Status::Closed => Some("use `ttx close N`"),
        Status::Open if matches!(ticket.status, Status::Resolved | Status::Closed) => {
            Some("use `ttx reopen N --reason TEXT`")
        }
        Status::New => Some("a ticket cannot go back to new"),
        _ => None,
    };
    if !(to == Status::Open && ticket.status == Status::Closed) {
        transition(ticket, to)?;
    }
    if let Some(g) = guidance {
        return Err(CommandError::Refused(format!(
            "ticket {}: status {to} cannot be set directly: {g}",
            ticket.number
        )));
    }
    Ok(to)
}

/// Validates an operator name: 1-64 of a-z, 0-9, '.', '_', '-'.
pub fn check_operator_name(name: &str) -> Result<(), CommandError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "invalid operator name {name:?}: use 1-64 characters from a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

/// The event that adds an operator.
pub fn decide_add_operator(name: &str, role: Role, token_sha256: String) -> Decision {
    check_operator_name(name)?;
    Ok(vec![EventKind::OperatorAdded {
        name: name.to_string(),
        role,
        token_sha256,
    }])
}

/// Most queues one operator may watch.
pub const MAX_WATCHED_QUEUES: usize = 20;

/// The queues an operator watches (a comma-separated list as typed; empty clears it).
pub fn decide_watch(name: &str, queues: &str) -> Decision {
    let queues = parse_list("queue", queues)?;
    if queues.len() > MAX_WATCHED_QUEUES {
        return Err(invalid(format!(
            "{} queues given, at most {MAX_WATCHED_QUEUES} may be watched",
            queues.len()
        )));
    }
    Ok(vec![EventKind::OperatorWatchSet {
        name: name.to_string(),
        queues,
    }])
}

#[cfg(test)]
mod tests;
