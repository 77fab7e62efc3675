//! The web console: server-rendered pages on plain forms, a few KB of script for keyboard
//! shortcuts and live updates, served on its own listener (`[web]`, loopback by default).
//!
//! - [`config`]: the `[web]` section and the rule that a non-loopback address needs TLS or an
//!   explicit reverse-proxy setting.
//! - [`password`]: argon2id hashes of operator passwords (set by `ttx operator passwd`).
//! - [`session`]: login sessions and the login rate limiter, in memory and bounded.
//! - [`auth`]: session cookie or bearer token → operator and role; CSRF on every form.
//! - [`layout`]: the page frame and helpers; every value is escaped by the template engine.
//! - [`pages`]: at a glance, tickets (list, search, chart, forms), quick create, admin views.
//! - [`live`]: server-sent events telling open pages that something changed.
//! - [`serve`]: the listener (plain or TLS), security headers, limits and shutdown.
//!
//! Pages call the same store queries and write requests as the API (`store::query`,
//! `WriteRequest`), never SQL of their own. `docs/api.md` lists the console's routes.

pub mod auth;
pub mod config;
pub mod error;
pub mod layout;
pub mod live;
pub mod pages;
pub mod password;
pub mod serve;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

pub use config::WebSection;

use crate::api::AppState;

/// What every console handler can reach.
#[derive(Clone)]
pub struct WebState {
    /// The API's state: store, config, token cache, federation.
    pub app: AppState,
    /// Login sessions.
    pub sessions: Arc<session::Sessions>,
    /// Failed-login limiter.
    pub limiter: Arc<session::LoginLimiter>,
    /// Password checks running at once (argon2 is slow on purpose: bound the CPU it may take).
    pub hashing: Arc<Semaphore>,
    /// Live-update streams that may still open.
    pub live_streams: Arc<Semaphore>,
    /// Set when the node stops, so live streams end and the server can drain.
    pub shutdown: watch::Receiver<bool>,
}

impl WebState {
    /// The console's state on top of the API's.
    pub fn new(app: AppState, shutdown: watch::Receiver<bool>) -> Self {
        let web = &app.config.web;
        Self {
            sessions: Arc::new(session::Sessions::new(
                Duration::from_secs(web.session_ttl_secs),
                web.max_sessions,
            )),
            limiter: Arc::new(session::LoginLimiter::new(web.login_failures_per_minute)),
            hashing: Arc::new(Semaphore::new(2)),
            live_streams: Arc::new(Semaphore::new(web.max_live_streams)),
            shutdown,
            app,
        }
    }
}
