//! Alarm clocks on tickets (RFC 1297's "timers and alerts"): the pure rules for cancelling,
//! snoozing and acknowledging them, and for ending a ticket's pending timers when the ticket
//! stops being work (resolved, closed, cancelled, merged).
//!
//! A timer is *pending* until it goes off or is cancelled; one that went off is an *alert*
//! until an operator acknowledges it. Snoozing moves a pending timer later, or arms a fired
//! one again (the alert leaves the list until it goes off again).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clock::{self, Millis};
use super::command::{CommandError, Decision};
use super::event::EventKind;
use super::lifecycle::Status;

/// A timer as the store holds it, for the decisions below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerState {
    /// Id.
    pub id: Uuid,
    /// Its number on its ticket (1, 2, ... in the order they were set).
    pub ordinal: u32,
    /// When it goes (went) off.
    pub due_at: Millis,
    /// When it went off, if it did.
    pub fired_at: Option<Millis>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<Millis>,
    /// When its alert was acknowledged, if it was.
    pub acked_at: Option<Millis>,
}

impl TimerState {
    /// Waiting to go off.
    pub fn is_pending(&self) -> bool {
        self.fired_at.is_none() && self.cancelled_at.is_none()
    }

    /// Went off and nobody acknowledged it yet.
    pub fn is_unacknowledged_alert(&self) -> bool {
        self.fired_at.is_some() && self.acked_at.is_none() && self.cancelled_at.is_none()
    }

    /// One word for lists: `pending`, `alert`, `acked` or `cancelled`.
    pub fn state_name(&self) -> &'static str {
        if self.cancelled_at.is_some() {
            "cancelled"
        } else if self.fired_at.is_none() {
            "pending"
        } else if self.acked_at.is_none() {
            "alert"
        } else {
            "acked"
        }
    }
}

/// What an operator does to one timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerAction {
    /// Call off a pending timer.
    Cancel,
    /// Move it to `due_at` (a fired one is armed again).
    Snooze {
        /// The new time.
        due_at: Millis,
    },
    /// Acknowledge a fired timer's alert.
    Acknowledge,
}

/// Decides the event for `action` on `timer` of ticket `number` at `now`.
pub fn decide_timer(number: i64, timer: &TimerState, action: TimerAction, now: Millis) -> Decision {
    let name = format!("timer {} of ticket {number}", timer.ordinal);
    if timer.cancelled_at.is_some() {
        return Err(CommandError::Refused(format!("{name} was cancelled")));
    }
    match action {
        TimerAction::Cancel => {
            if timer.fired_at.is_some() {
                return Err(CommandError::Refused(format!(
                    "{name} already went off: acknowledge it (`ttx ack {number} {}`)",
                    timer.ordinal
                )));
            }
            Ok(vec![EventKind::TimerCancelled {
                timer_id: timer.id,
                reason: "cancelled".into(),
            }])
        }
        TimerAction::Snooze { due_at } => {
            if due_at <= now {
                return Err(CommandError::Invalid(format!(
                    "snooze time {} is not in the future",
                    clock::format(due_at)
                )));
            }
            Ok(vec![EventKind::TimerSnoozed {
                timer_id: timer.id,
                due_at,
            }])
        }
        TimerAction::Acknowledge => match (timer.fired_at, timer.acked_at) {
            (None, _) => Err(CommandError::Refused(format!(
                "{name} has not gone off yet (due {}): cancel or snooze it instead",
                clock::format(timer.due_at)
            ))),
            (Some(_), Some(_)) => Err(CommandError::Refused(format!(
                "{name} is already acknowledged"
            ))),
            (Some(_), None) => Ok(vec![EventKind::AlertAcknowledged { timer_id: timer.id }]),
        },
    }
}

/// The status a ticket ends in after `events`, if they end its life as work.
fn ends_work(events: &[EventKind]) -> Option<&'static str> {
    events.iter().rev().find_map(|e| match e {
        EventKind::Resolved { .. } => Some("ticket resolved"),
        EventKind::Closed { .. } => Some("ticket closed"),
        EventKind::StatusChanged {
            to: Status::Cancelled,
            ..
        } => Some("ticket cancelled"),
        _ => None,
    })
}

/// Cancels every pending timer when `events` resolve, close or cancel the ticket (a resolved
/// ticket must not page anyone an hour later). The cancellations go just before the first
/// event that ends the ticket, so the history reads "timer cancelled (ticket resolved)" and
/// the ticket's end finds no timer still pending.
pub fn end_pending_timers(mut events: Vec<EventKind>, timers: &[TimerState]) -> Vec<EventKind> {
    let Some(reason) = ends_work(&events) else {
        return events;
    };
    let at = events
        .iter()
        .position(|e| ends_work(std::slice::from_ref(e)).is_some())
        .unwrap_or(events.len());
    let cancels = timers
        .iter()
        .filter(|t| t.is_pending())
        .map(|t| EventKind::TimerCancelled {
            timer_id: t.id,
            reason: reason.into(),
        });
    events.splice(at..at, cancels);
    events
}

/// Finds a ticket's timer by its ordinal (`2`) or its full id.
pub fn find<'a>(
    number: i64,
    timers: &'a [TimerState],
    which: &str,
) -> Result<&'a TimerState, CommandError> {
    let which = which.trim();
    let found = match which.parse::<u32>() {
        Ok(n) => timers.iter().find(|t| t.ordinal == n),
        Err(_) => Uuid::parse_str(which)
            .ok()
            .and_then(|id| timers.iter().find(|t| t.id == id)),
    };
    found.ok_or_else(|| {
        CommandError::NotFound(format!(
            "ticket {number} has no timer {which:?}: `ttx timers {number}` lists them (1 to {})",
            timers.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(fired: Option<Millis>, acked: Option<Millis>) -> TimerState {
        TimerState {
            id: Uuid::now_v7(),
            ordinal: 1,
            due_at: 500,
            fired_at: fired,
            cancelled_at: None,
            acked_at: acked,
        }
    }

    #[test]
    fn a_pending_timer_can_be_cancelled_and_snoozed_but_not_acknowledged() {
        let t = timer(None, None);
        assert!(matches!(
            decide_timer(4, &t, TimerAction::Cancel, 100).unwrap()[..],
            [EventKind::TimerCancelled { .. }]
        ));
        let snooze = decide_timer(4, &t, TimerAction::Snooze { due_at: 900 }, 100).unwrap();
        assert_eq!(
            snooze,
            vec![EventKind::TimerSnoozed {
                timer_id: t.id,
                due_at: 900
            }]
        );
        let e = decide_timer(4, &t, TimerAction::Acknowledge, 100).unwrap_err();
        assert!(e.to_string().contains("has not gone off yet"), "{e}");
        let e = decide_timer(4, &t, TimerAction::Snooze { due_at: 50 }, 100).unwrap_err();
        assert!(matches!(e, CommandError::Invalid(_)));
    }

    #[test]
    fn an_alert_is_acknowledged_once_and_cannot_be_cancelled() {
        let t = timer(Some(600), None);
        assert!(t.is_unacknowledged_alert());
        assert_eq!(
            decide_timer(4, &t, TimerAction::Acknowledge, 700).unwrap(),
            vec![EventKind::AlertAcknowledged { timer_id: t.id }]
        );
        let e = decide_timer(4, &t, TimerAction::Cancel, 700).unwrap_err();
        assert_eq!(
            e.to_string(),
            "timer 1 of ticket 4 already went off: acknowledge it (`ttx ack 4 1`)"
        );
        let acked = timer(Some(600), Some(650));
        assert_eq!(acked.state_name(), "acked");
        assert!(decide_timer(4, &acked, TimerAction::Acknowledge, 700).is_err());
        // A fired timer may be snoozed: it is armed again.
        assert!(decide_timer(4, &acked, TimerAction::Snooze { due_at: 900 }, 700).is_ok());
    }

    #[test]
    fn resolving_ends_only_pending_timers() {
        let pending = timer(None, None);
        let fired = timer(Some(1), None);
        let resolve = vec![EventKind::Resolved {
            resolution: "fixed".into(),
            component: None,
            escalated_to: None,
        }];
        let out = end_pending_timers(resolve.clone(), &[pending, fired]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], resolve[0]);
        assert_eq!(
            out[0],
            EventKind::TimerCancelled {
                timer_id: pending.id,
                reason: "ticket resolved".into()
            }
        );
        let note = vec![EventKind::StatusChanged {
            from: Status::Open,
            to: Status::Pending,
        }];
        assert_eq!(end_pending_timers(note.clone(), &[pending]), note);
    }

    #[test]
    fn timers_are_found_by_ordinal_or_id() {
        let mut a = timer(None, None);
        let mut b = timer(None, None);
        a.ordinal = 1;
        b.ordinal = 2;
        let all = [a, b];
        assert_eq!(find(3, &all, "2").unwrap().id, b.id);
        assert_eq!(find(3, &all, &a.id.to_string()).unwrap().id, a.id);
        let e = find(3, &all, "5").unwrap_err();
        assert!(matches!(e, CommandError::NotFound(_)));
    }
}
