//! Replication's debug endpoints: the latency stamps of this node (admin), and a wait for a
//! log position to be visible to readers here (any operator: read-your-write on a standby).

use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::{require_admin, Caller};
use super::error::{ApiError, ApiQuery};
use super::AppState;
use crate::replication::timeline::Stamp;

/// The longest a `GET /v1/replication/visible` waits.
pub const MAX_WAIT_MS: u64 = 10_000;

/// Query of `GET /v1/replication/timeline`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    /// Only stamps taken after this time (unix microseconds); all kept stamps without it.
    #[serde(default)]
    pub after_us: i64,
}

/// Answer of `GET /v1/replication/timeline`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineAnswer {
    /// This node's clock now (unix microseconds).
    pub now_us: i64,
    /// The stamps, oldest first.
    pub stamps: Vec<Stamp>,
}

/// `GET /v1/replication/timeline?after_us=N` (admin): when each recent batch passed each
/// replication stage on this node.
pub async fn timeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<TimelineQuery>,
) -> Result<Json<TimelineAnswer>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(TimelineAnswer {
        now_us: crate::replication::timeline::now_us(),
        stamps: state.replication.primary.timeline().since(q.after_us),
    }))
}

/// Query of `GET /v1/replication/visible`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisibleQuery {
    /// Answer once the log here is past this position.
    pub after: i64,
    /// Wait at most this long (ms, at most [`MAX_WAIT_MS`]; 0 answers at once).
    #[serde(default)]
    pub wait_ms: u64,
}

/// Answer of `GET /v1/replication/visible`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct VisibleAnswer {
    /// The last position committed here and visible to readers (may be `after` or below when
    /// the wait ran out).
    pub head: i64,
}

/// `GET /v1/replication/visible?after=N&wait_ms=M`: waits until this node's log (the one
/// readers see) is past position `N`, at most `M` ms, and answers the head then.
pub async fn visible(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<VisibleQuery>,
) -> Result<Json<VisibleAnswer>, ApiError> {
    if q.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::Invalid(format!(
            "wait_ms {} is over the limit of {MAX_WAIT_MS}",
            q.wait_ms
        )));
    }
    let mut head = state.store.writer.head.clone();
    let wait = Duration::from_millis(q.wait_ms);
    let _ = tokio::time::timeout(wait, head.wait_for(|h| *h > q.after)).await;
    let head = *head.borrow();
    Ok(Json(VisibleAnswer { head }))
}
