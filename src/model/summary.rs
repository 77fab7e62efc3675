//! One line per event saying what changed (`status new -> pending`), for write answers: an
//! operator sees what a command did without running `ttx show`.

use super::event::EventKind;
use super::ticket::Ticket;

/// What `kind` changed on `before` (the ticket as it was just before the event). Moves of the
/// lifecycle read as `status FROM -> TO` whatever event made them; the rest as the history line.
pub fn describe(kind: &EventKind, before: &Ticket) -> String {
    let status_to = |to: &str| format!("status {} -> {to}", before.status);
    match kind {
        EventKind::TicketCreated { .. } => "opened".into(),
        EventKind::NoteAdded { shared, .. } => {
            format!("{} note added", if *shared { "shared" } else { "internal" })
        }
        EventKind::Resolved { .. } => status_to("resolved"),
        EventKind::Closed { .. } => status_to("closed"),
        EventKind::Reopened { .. } => status_to("open"),
        other => other
            .describe(&|_| None)
            .map(|line| line.trim_end_matches(": ?").to_string())
            .unwrap_or_else(|| other.name().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lifecycle::Status;
    use crate::model::ticket::{Field, FieldChange, Value};

    #[test]
    fn changes_read_old_then_new() {
        let t = crate::model::ticket::test_ticket(3);
        let status = EventKind::StatusChanged {
            from: Status::New,
            to: Status::Pending,
        };
        assert_eq!(describe(&status, &t), "status new -> pending");
        let owner = EventKind::FieldsChanged {
            changes: vec![FieldChange {
                field: Field::Owner,
                from: Value::None,
                to: Value::Text("bob".into()),
            }],
        };
        assert_eq!(describe(&owner, &t), "set owner: (none) -> bob");
        let resolved = EventKind::Resolved {
            resolution: "r".into(),
            component: None,
            escalated_to: None,
        };
        assert_eq!(describe(&resolved, &t), "status new -> resolved");
    }
}
