//! The node's side of the transport: the peer registry as a [`crate::net::PeerPolicy`], the
//! trust assembled from the data dir and the registry's pins, live reload, peer status and ping.
//!
//! - [`policy`]: [`StorePolicy`], the registry cached in memory (admit at Hello, authorize on
//!   every request), recording unknown peers on the pending list.
//! - [`service`]: [`Federation`], which binds the QUIC endpoint from the config and the TLS
//!   material, keeps the policy and pins current as the registry changes, reloads trust on
//!   demand (`ttx pki reload`, SIGHUP), and answers `ttx peer list` and `ttx peer ping`.
//! - [`exchange`]: the `ttx-exchange/1` handler (a partner's message into the writer, its answer
//!   back) and the per-peer outbox workers (queued messages out in order, retried with back-off,
//!   acknowledgements recorded), fed with the shippable log position.
//! - [`edge_stream`]: one ordered long-lived stream per directed edge: the sender's window of
//!   messages in flight, the receiver's windows taken in one transaction each, cumulative acks.
//! - [`slot`]: [`FederationSlot`], the federation as it stands (off, up, broken): broken TLS
//!   material or a taken port leave the node serving tickets, and a reload brings it up.

pub mod edge_stream;
pub mod exchange;
pub mod policy;
pub mod service;
pub mod slot;

pub use policy::StorePolicy;
pub use service::{
    Federation, FederationError, FederationStatus, PeerStatus, PingAnswer, ReloadAnswer,
};
pub use slot::FederationSlot;

#[cfg(test)]
mod edge_stream_tests;
#[cfg(test)]
mod tests;
