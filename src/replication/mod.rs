//! The hot standby's pure parts: what the primary ships and when an operator's answer may leave.
//!
//! - [`gate`]: the sync-commit gate. Answers wait in log-position order until the standby's ack
//!   covers them (`sync`: durable there; `sync-visible`: applied there); `block` or `degrade`
//!   when the standby is gone; the lag in events and in the primary's milliseconds.
//! - [`backlog`]: the recently committed envelopes kept in memory (bounded in bytes), and the
//!   plan of whether a standby's next position ships from memory or from the log.
//! - [`lease`]: automatic failover's third voice: the witness's lease on the primary role (one
//!   promotion per epoch, never from a degraded primary) and the primary's own view of it (stop
//!   writing before the witness can grant the role elsewhere).
//!
//! Not built yet: the `ttx-repl/1` stream that drives them, cloning, promotion and switchover.
//! The role and epoch state machine lives in `model/` with the site log.

pub mod backlog;
pub mod gate;
pub mod lease;

pub use backlog::{Backlog, ByteSize, Plan};
pub use gate::{Ack, Gate, Lag, Mode, Outcome, WhenGone};
pub use lease::{HeldLease, LeaseError, LeaseTiming, Witness};
