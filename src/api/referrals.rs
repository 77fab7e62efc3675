//! Referral endpoints (`ttx refer`, `ttx referral …`, `ttx referrals`): refer a ticket to a
//! partner site, act on a referral, list referrals in and out.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::auth::{require_admin, Caller};
use super::error::{ticket_number, ApiError, ApiJson};
use super::tickets::idempotency as key;
use super::AppState;
use crate::exchange::action::{ReferTicket, ReferralAction};
use crate::model::clock;
use crate::store::exchange::ReferralRow;
use crate::store::writer::ReferralAck;
use crate::store::{Idempotency, WriteOp, WriteOutcome, WriteRequest};

/// Body of `POST /v1/tickets/{n}/refer`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferBody {
    /// The partner site (in the peer registry, with the exchange permission).
    pub to: String,
    /// How long the partner has to accept or reject (`4h`, `90m`); an escalation alarm fires
    /// on the ticket when it has not by then.
    #[serde(default)]
    pub respond_within: Option<String>,
    /// A first note for the partner (goes only if the partner's policy shares notes).
    #[serde(default)]
    pub note: Option<String>,
}

async fn write(
    state: &AppState,
    caller: &Caller,
    idempotency: Option<Idempotency>,
    op: WriteOp,
) -> Result<ReferralAck, ApiError> {
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency,
        op,
    };
    match state.store.writer.write(req).await? {
        WriteOutcome::Referral(ack) => Ok(ack),
        other => {
            tracing::error!(?other, "unexpected write outcome");
            Err(ApiError::Internal)
        }
    }
}

/// `POST /v1/tickets/{n}/refer`: refer the ticket to a partner (201 with the referral).
pub async fn refer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ReferBody>,
) -> Result<(StatusCode, Json<ReferralAck>), ApiError> {
    let number = ticket_number(&number)?;
    let idem = key(&headers, &("refer", number, &body))?;
    let respond_by = match &body.respond_within {
        None => None,
        Some(d) => Some(
            clock::now()
                + clock::parse_duration(d).map_err(|e| ApiError::Invalid(e.to_string()))?,
        ),
    };
    let op = WriteOp::Refer(Box::new(ReferTicket {
        number,
        to: body.to,
        respond_by,
        note: body.note,
    }));
    let ack = write(&state, &caller, idem, op).await?;
    Ok((StatusCode::CREATED, Json(ack)))
}

/// Body of `POST /v1/referrals/{id}/{action}`: the reason (reject, reopen, cancel) or the
/// question (ask).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    /// Why (reject, reopen, cancel).
    #[serde(default)]
    pub reason: Option<String>,
    /// The question (ask).
    #[serde(default)]
    pub question: Option<String>,
}

fn action(name: &str, body: ActionBody) -> Result<ReferralAction, ApiError> {
    let need = |v: Option<String>, what: &str| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| ApiError::Invalid(format!("{name} needs a {what}")))
    };
    Ok(match name {
        "accept" => ReferralAction::Accept,
        "close" => ReferralAction::Close,
        "reject" => ReferralAction::Reject {
            reason: need(body.reason, "reason")?,
        },
        "reopen" => ReferralAction::Reopen {
            reason: need(body.reason, "reason")?,
        },
        "cancel" => ReferralAction::Cancel {
            reason: need(body.reason, "reason")?,
        },
        "ask" => ReferralAction::Ask {
            question: need(body.question, "question")?,
        },
        other => {
            return Err(ApiError::NotFound(format!(
                "no referral action {other:?}: use accept, reject, close, reopen, cancel or ask"
            )))
        }
    })
}

/// `POST /v1/referrals/{id}/{action}`: accept, reject, close, reopen, cancel or ask.
pub async fn act(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ActionBody>,
) -> Result<Json<ReferralAck>, ApiError> {
    let idem = key(&headers, &("referral", &id, &name, &body))?;
    let action = action(&name, body)?;
    let op = WriteOp::Referral { id, action };
    Ok(Json(write(&state, &caller, idem, op).await?))
}

/// The answer of `GET /v1/referrals`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReferralList {
    /// Newest first.
    pub items: Vec<ReferralRow>,
}

/// `GET /v1/referrals`: every referral in and out, with state, partner reference, overdue and
/// orphaned.
pub async fn list(State(state): State<AppState>) -> Result<Json<ReferralList>, ApiError> {
    let items = state
        .store
        .reader
        .read(|c| crate::store::exchange::list_referrals(c, None, clock::now()))
        .await?;
    Ok(Json(ReferralList { items }))
}

/// `GET /v1/peers/{site}/sharing`: what the peer may see of our tickets and how it may use the
/// exchange.
pub async fn sharing(
    State(state): State<AppState>,
    Path(site): Path<String>,
) -> Result<Json<crate::exchange::SharingPolicy>, ApiError> {
    let record = {
        let site = site.clone();
        state
            .store
            .reader
            .read(move |c| crate::store::query::peer(c, &site))
            .await?
    };
    record
        .map(|r| Json(r.sharing))
        .ok_or_else(|| ApiError::NotFound(format!("no peer {site:?} (see `ttx peer list`)")))
}

/// `POST /v1/peers/{site}/sharing` (admin): change the peer's sharing policy; answers the
/// policy after the change.
pub async fn set_sharing(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(site): Path<String>,
    ApiJson(change): ApiJson<crate::exchange::policy::SharingChange>,
) -> Result<Json<crate::exchange::SharingPolicy>, ApiError> {
    require_admin(&caller)?;
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency: None,
        op: WriteOp::PeerSharing {
            site: site.clone(),
            change,
        },
    };
    state.store.writer.write(req).await?;
    sharing(State(state), Path(site)).await
}
