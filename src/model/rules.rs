//! Rules that look beyond one ticket: dependencies that must be done before a resolve, and
//! people named on a ticket (owner, checked-by) who must be operators of this site unless
//! marked external on purpose. The store gathers the facts; these functions decide.

use super::command::CommandError;
use super::event::EventKind;
use super::lifecycle::Status;
use super::ticket::{Field, Ticket, Value};

/// The prefix that marks a name as someone outside this site's operators
/// (`checked-by=ext:telco-bob`): accepted as written, without the operator check.
pub const EXTERNAL_PREFIX: &str = "ext:";

/// A dependency of a ticket: the other ticket's number and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    /// The other ticket's number.
    pub number: i64,
    /// Its status.
    pub status: Status,
}

/// Refuses to resolve `ticket` while a ticket it depends on is still open work.
pub fn check_dependencies_done(ticket: &Ticket, deps: &[Dependency]) -> Result<(), CommandError> {
    let open: Vec<String> = deps
        .iter()
        .filter(|d| d.status.is_active())
        .map(|d| format!("{} ({})", d.number, d.status))
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    Err(CommandError::Refused(format!(
        "ticket {} depends on ticket{} {} still open: resolve {} first",
        ticket.number,
        if open.len() == 1 { "" } else { "s" },
        open.join(", "),
        if open.len() == 1 { "it" } else { "them" }
    )))
}

/// The people `events` name as owner or checker (names marked external are left out).
pub fn people_named(events: &[EventKind]) -> Vec<(&'static str, &str)> {
    let mut out = Vec::new();
    for e in events {
        match e {
            EventKind::TicketCreated { ticket, .. } => {
                if let Some(o) = &ticket.owner {
                    out.push(("owner", o.as_str()));
                }
            }
            EventKind::FieldsChanged { changes } => {
                for c in changes {
                    if let (Field::Owner, Value::Text(o)) = (&c.field, &c.to) {
                        out.push(("owner", o.as_str()));
                    }
                }
            }
            EventKind::Closed {
                checked_by: Some(c),
            } => out.push(("checked-by", c.as_str())),
            _ => {}
        }
    }
    out.retain(|(_, name)| !name.starts_with(EXTERNAL_PREFIX));
    out
}

/// Refuses a name that is not an operator of this site (`is_operator` asks the store). The
/// actor is one by authentication (`take` names the caller).
pub fn check_people(
    events: &[EventKind],
    actor: &str,
    is_operator: impl Fn(&str) -> bool,
) -> Result<(), CommandError> {
    for (role, name) in people_named(events) {
        if name != actor && !is_operator(name) {
            return Err(CommandError::Invalid(format!(
                "{role} {name:?} is not an operator of this site: use an operator's name \
                 (`ttx operator list`), or write {EXTERNAL_PREFIX}{name} for someone outside it"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ticket::FieldChange;

    fn ticket() -> Ticket {
        crate::model::ticket::test_ticket(5)
    }

    #[test]
    fn a_dependency_still_open_refuses_the_resolve() {
        let t = ticket();
        let done = Dependency {
            number: 2,
            status: Status::Resolved,
        };
        let open = Dependency {
            number: 3,
            status: Status::Pending,
        };
        assert!(check_dependencies_done(&t, &[done]).is_ok());
        let e = check_dependencies_done(&t, &[done, open]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ticket 5 depends on ticket 3 (pending) still open: resolve it first"
        );
    }

    #[test]
    fn owners_and_checkers_must_be_operators_unless_external() {
        let set_owner = |o: &str| EventKind::FieldsChanged {
            changes: vec![FieldChange {
                field: Field::Owner,
                from: Value::None,
                to: Value::Text(o.into()),
            }],
        };
        let ops = |n: &str| n == "alice";
        assert!(check_people(&[set_owner("alice")], "root", ops).is_ok());
        assert!(check_people(&[set_owner("ext:telco-bob")], "root", ops).is_ok());
        let e = check_people(&[set_owner("alcie")], "root", ops).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("owner \"alcie\" is not an operator"));
        let close = EventKind::Closed {
            checked_by: Some("erin".into()),
        };
        let e = check_people(std::slice::from_ref(&close), "root", ops).unwrap_err();
        assert!(e.to_string().starts_with("checked-by \"erin\""), "{e}");
        // The caller is an operator by authentication.
        assert!(check_people(&[close], "erin", ops).is_ok());
    }
}
