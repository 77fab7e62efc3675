//! The local operator API: JSON over HTTP/1.1 on loopback, bearer tokens per operator.
//!
//! - [`error`]: the one error type and its JSON form (`{"error": {"code", "message"}}`).
//! - [`auth`]: bearer token → operator and role; the per-request span carries the operator.
//! - [`tickets`]: ticket endpoints (create, note, set, take, link, timer, resolve, close,
//!   reopen, show, list, search, alerts).
//! - [`attachments`]: attach a file to a ticket, list and download attachments.
//! - [`admin`]: status and operators.
//! - [`peers`]: the peer registry, ping, and trust reload (admin).
//! - [`referrals`]: refer a ticket to a partner, act on a referral, list referrals.
//! - [`replication`]: replication's latency stamps (admin) and a wait for a position to be
//!   visible here.
//! - [`review`]: the review list of a deposed primary's unshipped events, and its decisions.
//! - [`server`]: the listener (header-read and idle timeout, connection cap, hyper's own
//!   errors in the JSON shape).
//! - [`site`]: the site log: verify (position, digest, checks), promote and switchover (admin).
//!
//! `docs/api.md` lists the endpoints.

pub mod admin;
pub mod attachments;
pub mod auth;
pub mod error;
pub mod peers;
pub mod referrals;
pub mod replication;
pub mod review;
pub mod server;
pub mod site;
pub mod tickets;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::config::Config;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The node config.
    pub config: Arc<Config>,
    /// Token cache.
    pub auth: Arc<auth::TokenCache>,
    /// When the node started.
    pub started: Instant,
    /// Addresses actually bound.
    pub bound: Arc<Bound>,
    /// The QUIC side, when the node listens for peers.
    pub federation: Arc<crate::federation::FederationSlot>,
    /// The hot standby: the gate write answers wait in, and replication status.
    pub replication: Arc<crate::replication::Replication>,
}

/// Runs a write and answers once it may be acknowledged: after the local commit, then (in
/// `sync` and `sync-visible` modes) once the standby has it. The writer never waits for the
/// standby; this request does, in the replication gate. A write `block` mode gives up on is
/// committed here: the error tells the client to retry with the same idempotency key. With a
/// witness, a primary that does not hold its lease takes no write (the writer refuses it) and
/// acknowledges none.
pub async fn write(
    state: &AppState,
    req: crate::store::WriteRequest,
) -> Result<crate::store::WriteOutcome, error::ApiError> {
    // The writer refuses it without the witness's lease (every write path goes through it);
    // the gate below refuses to acknowledge it once the lease ran out meanwhile.
    let out = state.store.writer.write(req).await?;
    // The head after this write's commit covers its events and its idempotency record (the
    // writer publishes the head before it answers).
    let head = *state.store.writer.head.borrow() as u64;
    state.replication.primary.acknowledged(head).await?;
    Ok(out)
}

/// The addresses the node actually bound (port 0 resolved).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Bound {
    /// The API's TCP address.
    pub api_addr: Option<SocketAddr>,
    /// The QUIC endpoint's UDP address.
    pub listen_addr: Option<SocketAddr>,
    /// The web console's TCP address.
    #[serde(default)]
    pub web_addr: Option<SocketAddr>,
}

/// Builds the router with its limits: body size, request timeout, auth, per-request span.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.config.api.request_timeout_secs);
    let max_body = state.config.api.max_body_bytes;
    let api = Router::new()
        .route("/v1/status", get(admin::status))
        .route(
            "/v1/operators",
            get(admin::list_operators).post(admin::add_operator),
        )
        .route("/v1/operators/{name}", delete(admin::remove_operator))
        .route("/v1/operators/{name}/password", post(admin::set_password))
        .route("/v1/tickets", get(tickets::list).post(tickets::create))
        .route("/v1/tickets/{number}", get(tickets::show))
        .route("/v1/tickets/{number}/notes", post(tickets::note))
        .route(
            "/v1/tickets/{number}/notes/{note_id}",
            get(tickets::note_body),
        )
        .route(
            "/v1/tickets/{number}/attachments",
            get(attachments::list).post(attachments::attach),
        )
        .route("/v1/attachments/{id}", get(attachments::show))
        .route("/v1/attachments/{id}/content", get(attachments::content))
        .route("/v1/tickets/{number}/set", post(tickets::set))
        .route("/v1/tickets/{number}/take", post(tickets::take))
        .route("/v1/tickets/{number}/links", post(tickets::link))
        .route(
            "/v1/tickets/{number}/timers",
            get(tickets::timers).post(tickets::timer),
        )
        .route(
            "/v1/tickets/{number}/timers/{which}/{action}",
            post(tickets::timer_action),
        )
        .route("/v1/tickets/{number}/resolve", post(tickets::resolve))
        .route("/v1/tickets/{number}/close", post(tickets::close))
        .route("/v1/tickets/{number}/reopen", post(tickets::reopen))
        .route("/v1/tickets/{number}/refer", post(referrals::refer))
        .route("/v1/referrals", get(referrals::list))
        .route(
            "/v1/peers/{site}/sharing",
            get(referrals::sharing).post(referrals::set_sharing),
        )
        .route("/v1/referrals/{id}/{action}", post(referrals::act))
        .route("/v1/review", get(review::list))
        .route("/v1/review/{number}", get(review::show))
        .route("/v1/review/{number}/{action}", post(review::decide))
        .route("/v1/search", get(tickets::search))
        .route("/v1/alerts", get(tickets::alerts))
        .route("/v1/peers", get(peers::list).post(peers::add))
        .route("/v1/peers/pending", get(peers::pending))
        .route("/v1/peers/{site}", delete(peers::remove))
        .route("/v1/peers/{site}/accept", post(peers::accept))
        .route("/v1/peers/{site}/deny", post(peers::deny))
        .route("/v1/peers/{site}/ping", post(peers::ping))
        .route("/v1/pki/reload", post(peers::reload))
        .route("/v1/verify", get(site::verify))
        .route("/v1/replication/timeline", get(replication::timeline))
        .route("/v1/replication/visible", get(replication::visible))
        .route("/v1/promote", post(site::promote))
        .route("/v1/switchover", post(site::switchover))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .with_state(state);
    api.fallback(error::not_found_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn(move |req, next| {
            error::with_timeout(timeout, req, next)
        }))
        .layer(DefaultBodyLimit::max(max_body))
}
