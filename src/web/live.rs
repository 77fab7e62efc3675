//! Live updates: `GET /events` is a server-sent event stream that says `change` (with the log
//! position) each time the store commits, coalesced: a burst of commits is one event per
//! position the page has not seen yet. Pages then fetch their block again; the stream carries
//! no ticket data, so what a page shows always goes through the same authorization.
//!
//! Streams are capped (`web.max_live_streams`), keep-alive comments flow every 15 s, and every
//! stream ends when the node stops or the session expires.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};

use crate::api::error::ApiError;
use crate::web::auth::Viewer;
use crate::web::error::WebError;
use crate::web::WebState;

/// `GET /events`.
pub async fn events(
    State(state): State<WebState>,
    Viewer(who): Viewer,
) -> Result<Response, WebError> {
    let permit = state
        .live_streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable)?;
    let head = state.app.store.writer.head.clone();
    let shutdown = state.shutdown.clone();
    let ends = Instant::now() + state.sessions.ttl();
    tracing::debug!(operator = %who.caller.name, "live stream opened");
    Ok(Sse::new(changes(head, shutdown, ends, permit))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The stream of `change` events: one per new head, until shutdown or `ends`.
fn changes(
    head: tokio::sync::watch::Receiver<i64>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    ends: Instant,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut head = head;
    head.mark_unchanged();
    stream::unfold(
        (head, shutdown, permit),
        move |(mut head, mut shutdown, permit)| async move {
            let changed = tokio::select! {
                changed = head.changed() => changed.is_ok(),
                _ = shutdown.wait_for(|stop| *stop) => false,
                _ = tokio::time::sleep_until(ends.into()) => false,
            };
            if !changed {
                return None;
            }
            let position = *head.borrow_and_update();
            let event = Event::default().event("change").data(position.to_string());
            Some((Ok(event), (head, shutdown, permit)))
        },
    )
}
