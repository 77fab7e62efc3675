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
use crate::model::peer::{Allow, PeerOp, PeerState};
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
            FederationError::Unreachable { .. } => ApiError::Unreachable(e.to_string()),
            FederationError::Refused { .. }
            | FederationError::NoAddress(_)
            | FederationError::NotListening => ApiError::Refused(e.to_string()),
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

/// Applies a registry change and answers `{"site", "changed", "changes"}`: `changes` says in
/// words what is different now (read before and after the write, for the operator).
async fn change(
    state: &AppState,
    caller: &Caller,
    op: PeerOp,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_admin(caller)?;
    let site = op.site().to_string();
    let read = |site: String| async move {
        state
            .store
            .reader
            .read(move |c| crate::store::query::peer(c, &site))
            .await
    };
    let before = read(site.clone()).await?;
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency: None,
        op: WriteOp::Peer(op),
    };
    match super::write(state, req).await? {
        WriteOutcome::Peer { site, changed } => {
            let changes = if changed {
                let after = read(site.clone()).await?;
                crate::model::peer::changes(before.as_ref(), after.as_ref())
            } else {
                Vec::new()
            };
            Ok(Json(
                serde_json::json!({"site": site, "changed": changed, "changes": changes}),
            ))
        }
        _ => Err(ApiError::Internal),
    }
}

/// Body of `POST /v1/peers`: a field left out keeps what an existing peer has.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddPeer {
    /// Site.
    pub site: String,
    /// `HOST:PORT` addresses, primary first (required for a new peer).
    #[serde(default)]
    pub addrs: Option<Vec<String>>,
    /// Pinned SPKI SHA-256 fingerprints (`[]` drops every pin).
    #[serde(default)]
    pub pins: Option<Vec<String>>,
    /// What it may do: `exchange`, `standby` (a new peer: exchange).
    #[serde(default)]
    pub allow: Option<Vec<String>>,
}

/// The permissions of `allow`: `exchange` and `standby` only, at least one, and `standby` only
/// for a node of this node's own site (no node of another site can ever be its standby).
fn parse_allow(allow: &[String], site: &str, own_site: &str) -> Result<Allow, ApiError> {
    let mut a = Allow {
        exchange: false,
        standby: false,
        witness: false,
    };
    for p in allow {
        match p.as_str() {
            "exchange" => a.exchange = true,
            "standby" => a.standby = true,
            "witness" => a.witness = true,
            other => {
                return Err(ApiError::Invalid(format!(
                    "unknown permission {other:?}: use exchange, standby or witness"
                )))
            }
        }
    }
    if !a.exchange && !a.standby && !a.witness {
        return Err(ApiError::Invalid(
            "allow at least one of exchange, standby, witness".into(),
        ));
    }
    if a.witness && site == own_site {
        return Err(ApiError::Invalid(format!(
            "witness cannot apply to {site}: a witness is a node of another site (a site \
             cannot witness itself)"
        )));
    }
    if a.standby && site != own_site {
        return Err(ApiError::Invalid(format!(
            "standby cannot apply to {site}: only a node of this site ({own_site}) can be its \
             standby; allow {site} exchange"
        )));
    }
    Ok(a)
}

/// `POST /v1/peers` (admin): register a peer, or change what is given of an existing one.
pub async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<AddPeer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pins = body
        .pins
        .map(|pins| {
            pins.iter()
                .map(|p| {
                    crate::pki::normalize_spki(p).map_err(|e| ApiError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let own_site = &state.config.node.site;
    let allow = body
        .allow
        .map(|a| parse_allow(&a, &body.site, own_site))
        .transpose()?;
    let op = PeerOp::Add {
        site: body.site,
        addrs: body.addrs,
        pins,
        allow,
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

/// Body of `POST /v1/peers/{site}/accept` (optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptPeer {
    /// `HOST:PORT` addresses to reach it at, primary first.
    #[serde(default)]
    pub addrs: Option<Vec<String>>,
}

/// `POST /v1/peers/{site}/accept` (admin): accept a pending or denied peer (exchange unless it
/// has permissions already), with the addresses to reach it at when given.
pub async fn accept(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    ApiJson(body): ApiJson<AcceptPeer>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let addrs = body.addrs;
    change(&state, &caller, PeerOp::Accept { site, addrs }).await
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
