//! Fault injection with real parts, for the test suite and `ttx bench`: a UDP proxy that sits
//! between two nodes on loopback and drops, delays or cuts their QUIC traffic on command.
//!
//! - [`proxy`]: [`UdpProxy`], seeded and bounded.

pub mod proxy;

pub use proxy::{Faults, Limits, UdpProxy};
