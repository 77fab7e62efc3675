//! The site log's endpoints: `GET /v1/verify` (compare two nodes of a site) and
//! `POST /v1/promote` (make this standby the site's primary). Both are admin-only.

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::{require_admin, Caller};
use super::error::ApiError;
use super::AppState;
use crate::model::role::RoleState;
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
}

/// `GET /v1/verify` (admin): the site position, the digest of the state there, `quick_check`
/// and the FTS5 integrity check.
pub async fn verify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<VerifyAnswer>, ApiError> {
    require_admin(&caller)?;
    let verification = state.store.verify().await?;
    Ok(Json(VerifyAnswer {
        site: state.config.node.site.clone(),
        node: state.config.node.node.clone(),
        role: state.store.writer.role.borrow().clone(),
        ok: verification.ok(),
        verification,
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
