//! The ticket model: plain types and state machines without I/O.
//!
//! - [`ticket`]: the ticket (RFC 1297's chart with RT's queues, owners and watchers).
//! - [`lifecycle`]: the status machine and its allowed transitions.
//! - [`event`]: the identified, ordered, idempotent events every change is recorded as.
//! - [`command`]: what operators ask for, and the pure decision of which events it produces.
//! - [`peer`]: the peer registry's records and decisions (add, accept, deny, pending).
//! - [`timer`]: alarm clocks: cancel, snooze, acknowledge, and ending them with the ticket.
//! - [`rules`]: rules across tickets and operators (dependencies on resolve, known people).
//! - [`summary`]: one line per event saying what changed, for write answers.
//! - [`role`]: the node's role in its site (primary, standby, fenced) and the epoch.
//! - [`review`]: a deposed primary's unshipped events kept for review, and what applying one means.
//! - [`attachment`]: files on tickets, chunked into events, bounded in size.
//! - [`clock`]: timestamps (unix milliseconds) and their parsing and formatting.

pub mod attachment;
pub mod clock;
pub mod command;
pub mod event;
pub mod lifecycle;
pub mod peer;
pub mod review;
pub mod role;
pub mod rules;
pub mod summary;
pub mod ticket;
pub mod timer;

pub use clock::Millis;
pub use command::{Command, CommandError, Decision};
pub use event::{Event, EventKind};
pub use lifecycle::Status;
pub use ticket::{Ticket, TicketType};
