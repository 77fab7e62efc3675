//! Status and operator endpoints.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::{new_token, require_admin, token_sha256, Caller};
use super::error::{ApiError, ApiJson};
use super::AppState;
use crate::model::event::Role;
use crate::store::query::{self, Operator};
use crate::store::{WriteOp, WriteRequest};

/// What `ttx status` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Site.
    pub site: String,
    /// Node.
    pub node: String,
    /// Federation.
    pub federation: String,
    /// ttx version.
    pub version: String,
    /// API address actually bound.
    pub api_addr: Option<std::net::SocketAddr>,
    /// QUIC address actually bound.
    pub listen_addr: Option<std::net::SocketAddr>,
    /// Web console address actually bound.
    #[serde(default)]
    pub web_addr: Option<std::net::SocketAddr>,
    /// Process id.
    pub pid: u32,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Tickets.
    pub tickets: i64,
    /// Open tickets.
    pub open_tickets: i64,
    /// Events in the log (the site position).
    pub events: i64,
    /// The node's role in its site: `primary`, `standby:NODE` or `fenced:NODE`.
    #[serde(default)]
    pub role: String,
    /// The epoch.
    #[serde(default)]
    pub epoch: u64,
    /// The QUIC side (identity, certificate expiry, connected peers), when the node listens.
    pub transport: Option<crate::federation::FederationStatus>,
    /// What is wrong with the federation and how to fix it, when it is down.
    #[serde(default)]
    pub transport_problem: Option<String>,
    /// The hot standby: mode, the standby and its lag (on a primary), the primary followed
    /// and the position applied (on a standby).
    #[serde(default)]
    pub replication: Option<crate::replication::ReplicationStatus>,
}

/// `GET /v1/status`.
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let counts = state.store.reader.read(query::counts).await?;
    let role = state.store.writer.role_now();
    let node = &state.config.node;
    Ok(Json(Status {
        site: node.site.clone(),
        node: node.node.clone(),
        federation: node.federation.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        api_addr: state.bound.api_addr,
        // The federation may have come up after start (a reload that turned listening on).
        listen_addr: state
            .federation
            .get()
            .and_then(|f| f.local_addr().ok())
            .or(state.bound.listen_addr),
        web_addr: state.bound.web_addr,
        pid: std::process::id(),
        uptime_secs: state.started.elapsed().as_secs(),
        tickets: counts.tickets,
        open_tickets: counts.open_tickets,
        events: counts.events,
        role: role.role_text(),
        epoch: role.epoch,
        transport: state.federation.get().map(|f| f.status()),
        transport_problem: state.federation.problem(),
        replication: Some(state.replication.status()),
    }))
}

/// `GET /v1/operators` (admin).
pub async fn list_operators(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Operator>>, ApiError> {
    require_admin(&caller)?;
    Ok(Json(state.store.reader.read(query::operators).await?))
}

/// Body of `POST /v1/operators`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddOperator {
    /// Name.
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
}

/// Answer of `POST /v1/operators`: the token, shown this once.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewOperator {
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The bearer token (only its hash is kept).
    pub token: String,
}

/// `POST /v1/operators` (admin): add an operator and return its token.
pub async fn add_operator(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<AddOperator>,
) -> Result<(StatusCode, Json<NewOperator>), ApiError> {
    require_admin(&caller)?;
    let role: Role = body.role.parse().map_err(ApiError::Invalid)?;
    let token = new_token();
    let req = WriteRequest {
        actor: caller.name,
        idempotency: None,
        op: WriteOp::AddOperator {
            name: body.name.clone(),
            role,
            token_sha256: token_sha256(&token),
        },
    };
    super::write(&state, req).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewOperator {
            name: body.name,
            role,
            token,
        }),
    ))
}

/// Body of `POST /v1/operators/{name}/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    /// The new password (hashed here with argon2id; never stored or logged as sent).
    pub password: String,
}

/// `POST /v1/operators/{name}/password`: set a web console password (an admin for anyone,
/// an operator or viewer for itself). The hash goes through the event log.
pub async fn set_password(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SetPassword>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if caller.name != name {
        require_admin(&caller)?;
    }
    let password = body.password;
    let password_hash = tokio::task::spawn_blocking(move || crate::web::password::hash(&password))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let req = WriteRequest {
        actor: caller.name,
        idempotency: None,
        op: WriteOp::SetPassword {
            name: name.clone(),
            password_hash,
        },
    };
    super::write(&state, req).await?;
    tracing::info!(operator = %name, "web console password set");
    Ok(Json(serde_json::json!({ "operator": name })))
}

/// `DELETE /v1/operators/{name}` (admin).
pub async fn remove_operator(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&caller)?;
    let req = WriteRequest {
        actor: caller.name,
        idempotency: None,
        op: WriteOp::RemoveOperator { name },
    };
    super::write(&state, req).await?;
    Ok(StatusCode::NO_CONTENT)
}
