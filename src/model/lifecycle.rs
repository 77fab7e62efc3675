//! The ticket lifecycle: `new -> open -> pending | referred -> resolved -> closed`, plus
//! `cancelled`, and reopen from `resolved` with a reason. A plain state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Just opened, nobody has taken it.
    New,
    /// Being worked by the NOC (NOC time).
    Open,
    /// Waiting on the customer (customer time).
    Pending,
    /// Waiting on a partner NOC or telco.
    Referred,
    /// Fixed; waiting for close (or reopen).
    Resolved,
    /// Done and signed off. Final.
    Closed,
    /// Withdrawn without a fix. Final.
    Cancelled,
}

/// Every status, in lifecycle order.
pub const ALL: [Status; 7] = [
    Status::New,
    Status::Open,
    Status::Pending,
    Status::Referred,
    Status::Resolved,
    Status::Closed,
    Status::Cancelled,
];

/// Statuses that count as open work.
pub const ACTIVE: [Status; 4] = [Status::New, Status::Open, Status::Pending, Status::Referred];

impl Status {
    /// The lowercase name used in the CLI, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Referred => "referred",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether the ticket still needs work.
    pub fn is_active(self) -> bool {
        ACTIVE.contains(&self)
    }

    /// Whether the ticket's life is over (closed or cancelled): no transition leaves it, and
    /// its pending timers are cancelled.
    pub fn is_final(self) -> bool {
        self.allowed_next().is_empty()
    }

    /// The statuses this one may move to.
    pub fn allowed_next(self) -> &'static [Status] {
        use Status::*;
        match self {
            New => &[Open, Pending, Referred, Resolved, Cancelled],
            Open => &[Pending, Referred, Resolved, Cancelled],
            Pending => &[Open, Referred, Resolved, Cancelled],
            Referred => &[Open, Pending, Resolved, Cancelled],
            Resolved => &[Closed, Open],
            Closed | Cancelled => &[],
        }
    }

    /// Checks a transition; the error names the allowed ones.
    pub fn check_transition(self, to: Status) -> Result<(), TransitionError> {
        if self.allowed_next().contains(&to) {
            Ok(())
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot go from {from} to {to}: {}", allowed_text(*.from))]
pub struct TransitionError {
    /// The current status.
    pub from: Status,
    /// The status asked for.
    pub to: Status,
}

fn allowed_text(from: Status) -> String {
    let next = from.allowed_next();
    if next.is_empty() {
        format!("{from} is final")
    } else {
        let names: Vec<&str> = next.iter().map(|s| s.as_str()).collect();
        format!("from {from} a ticket may go to {}", names.join(", "))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown status {s:?}: use one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_name_the_allowed_ones() {
        assert!(Status::New.check_transition(Status::Open).is_ok());
        let e = Status::Closed.check_transition(Status::Open).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot go from closed to open: closed is final"
        );
        let e = Status::New.check_transition(Status::Closed).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot go from new to closed: from new a ticket may go to open, pending, referred, resolved, cancelled"
        );
    }

    #[test]
    fn every_status_parses_back() {
        for s in ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("done".parse::<Status>().is_err());
    }
}
