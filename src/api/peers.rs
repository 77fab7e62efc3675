//! Peer registry endpoints (`ttx peer ...`) and trust reload (`ttx pki reload`). Changes need
//! an admin; the list is open to every operator.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::{require_admin, Caller};
use super::error::{ApiError, ApiJson};
use super::AppState;
use crate::federation::{Federation, FederationError, PeerStatus, PingAnswer, ReloadAnswer};
use crate::model::peer::{PeerOp, PeerState};
use crate::store::{WriteOp, WriteOutcome, WriteRequest};

fn federation(state: &AppState) -> Result<Federation, ApiError> {
    if let Some(problem) = state.federation.problem() {
        return Err(ApiError::Refused(format!("federation is down: {problem}")));
    }
    state
        .federation
        .get()
        .ok_or_else(|| ApiError::from(FederationError::NotListening))
}

impl From<FederationError> for ApiError {
    fn from(e: FederationError) -> Self {
        match e {
            FederationError::UnknownPeer(_) => ApiError::NotFound(e.to_string()),
            FederationError::Unreachable { .. } | FederationError::NotListening => {
                ApiError::Refused(e.to_string())
            }
            FederationError::Pki(_)
            | FederationError::Config(_)
            | FederationError::WrongIdentity { .. } => ApiError::Invalid(e.to_string()),
            FederationError::Store(s) => ApiError::from(s),
            FederationError::Net(n) => {
                tracing::error!(error = %n, "transport error");
                ApiError::Internal
            }
        }
    }
}

async fn change(
    state: &AppState,
    caller: &Caller,
    op: PeerOp,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(caller)?;
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency: None,
        op: WriteOp::Peer(op),
    };
    match state.store.writer.write(req).await? {
        WriteOutcome::Peer { site, changed } => {
            Ok(Json(serde_json::json!({"site": site, "changed": changed})))
        }
        _ => Err(ApiError::Internal),
    }
}

/// Body of `POST /v1/peers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPeer {
    /// Site.
    pub site: String,
    /// `HOST:PORT` addresses, primary first.
    pub addrs: Vec<String>,
    /// Pinned SPKI SHA-256 fingerprints.
    #[serde(default)]
    pub pins: Vec<String>,
    /// What it may do: `exchange`, `standby` (default exchange).
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `POST /v1/peers` (admin): register or update a peer.
pub async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<AddPeer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pins = body
        .pins
        .iter()
        .map(|p| crate::pki::normalize_spki(p).map_err(|e| ApiError::Invalid(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let (mut exchange, mut standby) = (body.allow.is_empty(), false);
    for a in &body.allow {
        match a.as_str() {
            "exchange" => exchange = true,
            "standby" => standby = true,
            other => {
                return Err(ApiError::Invalid(format!(
                    "unknown permission {other:?}: use exchange or standby"
                )))
            }
        }
    }
    let op = PeerOp::Add {
        site: body.site,
        addrs: body.addrs,
        pins,
        exchange,
        standby,
    };
    change(&state, &caller, op).await
}

/// `DELETE /v1/peers/{site}` (admin).
pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    change(&state, &caller, PeerOp::Remove { site }).await
}

/// `POST /v1/peers/{site}/accept` (admin).
pub async fn accept(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    change(&state, &caller, PeerOp::Accept { site }).await
}

/// `POST /v1/peers/{site}/deny` (admin).
pub async fn deny(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    change(&state, &caller, PeerOp::Deny { site }).await
}

/// `GET /v1/peers`: registry and live connections.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<PeerStatus>>, ApiError> {
    Ok(Json(federation(&state)?.peers().await?))
}

/// `GET /v1/peers/pending`: peers with valid certificates that no admin has decided on.
pub async fn pending(State(state): State<AppState>) -> Result<Json<Vec<PeerStatus>>, ApiError> {
    let all = federation(&state)?.peers().await?;
    Ok(Json(
        all.into_iter()
            .filter(|p| p.state == PeerState::Pending)
            .collect(),
    ))
}

/// `POST /v1/peers/{site}/ping`: a Hello-level round trip.
pub async fn ping(
    State(state): State<AppState>,
    Path(site): Path<String>,
) -> Result<Json<PingAnswer>, ApiError> {
    Ok(Json(federation(&state)?.ping(&site).await?))
}

/// `POST /v1/pki/reload` (admin): re-read certificates, CAs, CRLs, deny list and pins.
pub async fn reload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<(StatusCode, Json<ReloadAnswer>), ApiError> {
    require_admin(&caller)?;
    // A reload also brings up a federation that is down (fixed material, freed port).
    Ok((StatusCode::OK, Json(state.federation.reload().await?)))
}
