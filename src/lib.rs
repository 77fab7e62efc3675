//! `ttx`: a trouble-ticket node for Network Operations Centers.
//!
//! Each NOC (a *site*) runs a node with its own SQLite store. The node is the NOC's ticket
//! system (RFC 1297's "hospital chart" with RT's queues, owners, watchers, lifecycle, links and
//! history), and it talks to partner NOCs, telcos and its own hot standby over mutually
//! authenticated QUIC.
//!
//! # Map of the components
//!
//! ```text
//!  operators ── ttx CLI (cli/) ──HTTP/JSON──▶ api/ ──┐
//!                                                    ▼
//!                      model/ (pure: tickets, events, lifecycle, commands → events)
//!                                                    ▼
//!                      store/ (the one writer thread: group commit, the one applier,
//!                              event log + projections in one transaction; read pool)
//!
//!  partners, standby ──QUIC+mTLS──▶ net/ (endpoint, TLS, identity, ALPN, limits)
//!                                      └─ wire/ (frames and codec, no sockets)
//!                   federation/ (the peer registry in the store ⇄ the endpoint's trust)
//!  federation admins ── ttx pki ──▶ pki/ (CA, CSR, sign, revoke, CRL, inspect)
//! ```
//!
//! - [`model`]: plain types and state machines without I/O: the ticket, its lifecycle, events,
//!   and the decision of which events an operator command produces.
//! - [`store`]: SQLite in WAL mode. Every change is an event appended to the log in the same
//!   transaction that updates the projections; one writer thread batches concurrent writes into
//!   one transaction (group commit); reads run on separate connections. Positions belong to the
//!   site (the same on every node), the node's role and epoch are durable state, and shipped
//!   events are applied strictly at `head + 1`.
//! - [`api`]: the local JSON API on loopback with per-operator bearer tokens and roles.
//! - [`web`]: the web console (at a glance, tickets, forms, live updates) on its own listener,
//!   calling the same queries and writes as the API; password logins, sessions, CSRF.
//! - [`node`]: the composition root: start, run, drain and stop; used by `ttx serve` and tests.
//! - [`wire`], [`net`]: the versioned ticket-transfer protocol and its QUIC transport.
//! - [`exchange`]: the referral exchange's pure decisions (referral state machine, exactly-once
//!   edge bookkeeping, sharing policy, chain forwarding without echoes).
//! - [`replication`]: the hot standby: the sync-commit gate and shipping backlog (pure), the
//!   primary's `ttx-repl/1` handler fed by the writer's commit hook, the standby's follower.
//! - [`federation`]: the glue between the peer registry in the store and the QUIC endpoint:
//!   trust and pins reloaded on registry changes, pending peers recorded, peer status and ping.
//! - [`pki`], [`identity`]: the federation PKI and the certificate-SAN → identity mapping.
//! - [`cli`]: the `ttx` command line, one module per command group.
//! - [`faults`]: a seeded, bounded UDP proxy that drops, delays or cuts traffic between nodes
//!   (network-fault tests and benches).
//! - [`bench`]: `ttx bench …`, each figure measured against a baseline in the same process.
//! - [`cluster`]: real `ttx` processes on loopback set up and driven through the CLI (CA,
//!   partners, a primary with its standby), for `ttx demo` and the fault campaign.
//! - [`demo`]: `ttx demo`, the whole story on one machine, every claim it prints checked.

pub mod api;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod datadir;
pub mod demo;
pub mod exchange;
pub mod faults;
pub mod fdlimit;
pub mod federation;
pub mod identity;
pub mod model;
pub mod net;
pub mod node;
pub mod pki;
pub mod replication;
pub mod store;
pub mod web;
pub mod wire;
