//! All integration tests in one binary (one link, shared helpers). Each module covers one area
//! and runs the real `ttx` binary or the library against real files.

mod api_limits;
mod attachments;
mod bad_input;
mod bench;
mod bounded_reads;
mod browser;
mod campaign;
mod cli_resets;
mod clone;
mod common;
mod compare;
mod crash;
mod demo;
mod docs;
mod exchange;
mod exchange_attach;
mod exchange_failover;
mod fake_primary;
mod faults;
mod federation;
mod noc;
mod pki;
mod rejoin;
mod render;
mod repl;
mod repl_faults;
mod repl_roles;
mod site;
mod tickets;
mod trust;
mod web;
mod web_views;
mod witness;
