//! Fault injection with real parts, for the test suite and `ttx bench`.
//!
//! - [`proxy`]: [`UdpProxy`], a UDP proxy between two nodes on loopback that drops, delays or
//!   cuts their QUIC traffic on command, seeded and bounded.
//! - The fault campaign (Jepsen-style set checks) against real processes:
//!   - [`schedule`]: the seeded schedule of faults (pure);
//!   - [`clients`]: threads writing notes with idempotency keys, logging what they learned;
//!   - [`nemesis`]: the live cluster and how each fault is done and healed;
//!   - [`checker`]: every acknowledged write exactly once where it must be (pure);
//!   - [`campaign`]: set-up, run, settle, check, report.

pub mod campaign;
pub mod checker;
pub mod clients;
pub mod nemesis;
pub mod proxy;
pub mod schedule;

pub use campaign::{CampaignOptions, CampaignReport};
pub use proxy::{Faults, Limits, UdpProxy};
