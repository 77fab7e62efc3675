//! The review list's endpoints (`ttx review`): a deposed primary's events that never reached
//! the site's log, kept by `ttx standby rejoin`, and the admin's decision on each. All are
//! admin-only (an item may carry anything the deposed node wrote, operator changes included).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::{require_admin, Caller};
use super::error::{ApiError, ApiJson};
use super::tickets::idempotency as key;
use super::AppState;
use crate::model::review::ReviewDecision;
use crate::store::review::ReviewRow;
use crate::store::writer::ReviewAck;
use crate::store::{WriteOp, WriteOutcome, WriteRequest};

/// The most items `GET /v1/review` lists.
const MAX_LISTED: u32 = 10_000;

/// The answer of `GET /v1/review`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReviewList {
    /// In the order queued.
    pub items: Vec<ReviewRow>,
}

fn item_number(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0 && raw.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "invalid review item {raw:?}: use its number from `ttx review list`"
            ))
        })
}

/// `GET /v1/review`: every item, pending and decided.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ReviewList>, ApiError> {
    require_admin(&caller)?;
    let items = state
        .store
        .reader
        .read(|c| crate::store::review::list(c, MAX_LISTED))
        .await?;
    Ok(Json(ReviewList { items }))
}

/// `GET /v1/review/{n}`: one item with its original event.
pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
) -> Result<Json<ReviewRow>, ApiError> {
    require_admin(&caller)?;
    let number = item_number(&number)?;
    state
        .store
        .reader
        .read(move |c| crate::store::review::get(c, number))
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!("no review item {number} (see `ttx review list`)"))
        })
}

/// Body of `POST /v1/review/{n}/discard`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// Why it is discarded.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/review/{n}/apply|discard`: decide an item (once).
pub async fn decide(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((number, action)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<DecideBody>,
) -> Result<Json<ReviewAck>, ApiError> {
    require_admin(&caller)?;
    let number = item_number(&number)?;
    let decision = match action.as_str() {
        "apply" if body.reason.is_none() => ReviewDecision::Apply,
        "apply" => return Err(ApiError::Invalid("apply takes no reason".into())),
        "discard" => ReviewDecision::Discard {
            reason: body.reason.filter(|r| !r.trim().is_empty()),
        },
        other => {
            return Err(ApiError::NotFound(format!(
                "no review action {other:?}: use apply or discard"
            )))
        }
    };
    let idem = key(&headers, &("review", number, &decision))?;
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency: idem,
        op: WriteOp::DecideReview { number, decision },
    };
    match state.store.writer.write(req).await? {
        WriteOutcome::Review(ack) => Ok(Json(ack)),
        other => {
            tracing::error!(?other, "unexpected write outcome");
            Err(ApiError::Internal)
        }
    }
}
