//! The site log's endpoints: `GET /v1/verify` (compare two nodes of a site),
//! `POST /v1/promote` (make this standby the site's primary) and `POST /v1/switchover` (hand
//! the primary role to the standby, planned and lossless). All are admin-only.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::{require_admin, Caller};
use super::error::ApiError;
use super::AppState;
use crate::model::role::RoleState;
use crate::replication::compare::{self, Comparison};
use crate::store::verify::Verification;
use crate::store::{WriteOp, WriteOutcome, WriteRequest};

/// What `ttx verify` shows: who answers, and the state at its site position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAnswer {
    /// Site.
    pub site: String,
    /// Node.
    pub node: String,
    /// Role and epoch.
    #[serde(flatten)]
    pub role: RoleState,
    /// Position, digest and checks.
    #[serde(flatten)]
    pub verification: Verification,
    /// Whether `quick_check` and the search index check both said `ok`.
    pub ok: bool,
    /// With `?against=HOST:PORT`: the comparison with that node of the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<Comparison>,
}

/// `GET /v1/verify` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct VerifyQuery {
    /// Another node of the site (its QUIC address) to compare with.
    pub against: Option<String>,
    /// How long to wait for both to be at one position (ms, at most 60 s; default 10 s).
    pub wait_ms: Option<u64>,
}

/// The longest `?wait_ms` taken.
const MAX_COMPARE_WAIT_MS: u64 = 60_000;

/// `GET /v1/verify` (admin): the site position, the digest of the state there, `quick_check`
/// and the FTS5 integrity check.
///
/// With `?against=HOST:PORT`, also compares the state with that node of the site at one
/// position (`replication::compare`) and names the first difference. A node it cannot reach
/// is a 502 `unreachable`; two nodes that do not meet at one position (or move while the
/// difference is searched) a 409 `refused`, each with why.
pub async fn verify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<VerifyQuery>,
) -> Result<Json<VerifyAnswer>, ApiError> {
    require_admin(&caller)?;
    let verification = state.store.verify().await?;
    let against = match &q.against {
        Some(addr) => {
            let wait = Duration::from_millis(q.wait_ms.unwrap_or(10_000).min(MAX_COMPARE_WAIT_MS));
            let compared =
                compare::compare_against(&state.store, state.federation.get(), addr, wait).await;
            Some(compared.map_err(|e| match e {
                compare::CompareError::Store(s) => ApiError::from(s),
                compare::CompareError::NotSamePosition { .. } | compare::CompareError::Moved(_) => {
                    ApiError::Refused(e.to_string())
                }
                other => ApiError::Unreachable(other.to_string()),
            })?)
        }
        None => None,
    };
    Ok(Json(VerifyAnswer {
        site: state.config.node.site.clone(),
        node: state.config.node.node.clone(),
        role: state.store.writer.role_now(),
        ok: verification.ok(),
        verification,
        against,
    }))
}

/// What `POST /v1/promote` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromoteAnswer {
    /// The new epoch.
    pub epoch: u64,
    /// The site position of its `EpochStarted` event.
    pub position: i64,
}

/// `POST /v1/switchover` body: `{}` to switch over, `{"abort": true}` to abandon a hand-over
/// the standby did not take.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchoverRequest {
    /// Abandon a hand-over: this node (handing over) becomes the primary again.
    #[serde(default)]
    pub abort: bool,
}

/// `POST /v1/switchover` (admin): on the primary, hand the role to the connected standby and
/// become its standby; on the standby, ask the primary to do so and answer once this node is
/// the primary. `{"abort": true}` on a primary stuck handing over makes it primary again.
pub async fn switchover(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<SwitchoverRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(&caller)?;
    let Some(driver) = state.replication.switchover.clone() else {
        return Err(ApiError::Refused(
            "this node runs without replication: no switchover".into(),
        ));
    };
    use crate::replication::SwitchoverError as E;
    let answer = if req.abort {
        driver
            .abort()
            .await
            .map(|role| serde_json::json!({ "aborted": true, "role": role.role_text(), "epoch": role.epoch }))
    } else {
        driver
            .run()
            .await
            .map(|a| serde_json::to_value(a).expect("the answer serializes"))
    };
    answer.map(Json).map_err(|e| match e {
        E::Store(e) => e.into(),
        E::Unconfirmed { .. } | E::Ask(crate::replication::follow::AskError::Timeout(_)) => {
            ApiError::Unreachable(e.to_string())
        }
        E::Role(m) => ApiError::NotPrimary(m),
        other => ApiError::Refused(other.to_string()),
    })
}

/// `POST /v1/promote` (admin): a standby becomes the primary of the next epoch. The answer comes
/// after the epoch and its first event are durable.
pub async fn promote(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<PromoteAnswer>, ApiError> {
    require_admin(&caller)?;
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency: None,
        op: WriteOp::Promote,
    };
    match state.store.writer.write(req).await? {
        WriteOutcome::Promoted { epoch, position } => Ok(Json(PromoteAnswer { epoch, position })),
        other => {
            tracing::error!(?other, "unexpected answer to a promotion");
            Err(ApiError::Internal)
        }
    }
}
