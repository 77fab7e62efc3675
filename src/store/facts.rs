//! What the pure ticket rules need to know beyond the ticket itself, read inside the writer's
//! transaction: its timers, the tickets it depends on, whether a name is an operator. The
//! writer gathers these facts and runs the `model` rules on them; no rule lives here.

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;
use crate::model::command::{Command, CommandError};
use crate::model::event::EventKind;
use crate::model::rules::{self, Dependency};
use crate::model::ticket::{LinkKind, Ticket};
use crate::model::timer::{self, TimerAction, TimerState};
use crate::model::Millis;

/// The ticket's timers as the timer rules see them.
pub fn timers_of(conn: &Connection, ticket: &Ticket) -> Result<Vec<TimerState>, StoreError> {
    Ok(super::query::timers_of(conn, ticket.id)?
        .iter()
        .map(super::query::Timer::state)
        .collect())
}

/// The tickets `ticket` depends on, with their status.
fn dependencies(conn: &Connection, ticket: &Ticket) -> Result<Vec<Dependency>, StoreError> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare_cached("SELECT number, status FROM tickets WHERE id = ?1")?;
    for l in ticket
        .links
        .iter()
        .filter(|l| l.kind == LinkKind::DependsOn)
    {
        let dep = stmt
            .query_row([l.target.as_bytes()], |r| {
                Ok(Dependency {
                    number: r.get(0)?,
                    status: r.get(1)?,
                })
            })
            .optional()?;
        out.extend(dep);
    }
    Ok(out)
}

fn is_operator(conn: &Connection, name: &str) -> bool {
    conn.prepare_cached("SELECT 1 FROM operators WHERE name = ?1")
        .and_then(|mut s| s.exists([name]))
        .unwrap_or(false)
}

/// Checks and completes the events decided for `command` (or a link) on `ticket`: a resolve
/// waits for its dependencies, owners and checkers must be operators (or marked external),
/// and a ticket that stops being work ends its pending timers.
pub fn complete(
    conn: &Connection,
    actor: &str,
    ticket: &Ticket,
    command: Option<&Command>,
    events: Vec<EventKind>,
) -> Result<Vec<EventKind>, StoreError> {
    if let Some(Command::Resolve { .. }) = command {
        rules::check_dependencies_done(ticket, &dependencies(conn, ticket)?)?;
    }
    rules::check_people(&events, actor, |n| is_operator(conn, n))?;
    if events.iter().any(|e| {
        matches!(
            e,
            EventKind::Resolved { .. } | EventKind::Closed { .. } | EventKind::StatusChanged { .. }
        )
    }) {
        return Ok(timer::end_pending_timers(events, &timers_of(conn, ticket)?));
    }
    Ok(events)
}

/// Decides an operator's action on timer `which` (its ordinal or id) of `ticket`.
pub fn timer_action(
    conn: &Connection,
    ticket: &Ticket,
    which: &str,
    action: TimerAction,
    now: Millis,
) -> Result<Vec<EventKind>, StoreError> {
    let timers = timers_of(conn, ticket)?;
    let t = timer::find(ticket.number, &timers, which)?;
    Ok(timer::decide_timer(ticket.number, t, action, now)?)
}

/// Refuses a creation that names an owner who is not an operator.
pub fn check_create(
    conn: &Connection,
    actor: &str,
    events: &[EventKind],
) -> Result<(), CommandError> {
    rules::check_people(events, actor, |n| is_operator(conn, n))
}
