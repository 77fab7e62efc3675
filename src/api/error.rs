//! The API's one error type: a stable code, an HTTP status, and a message for the operator.
//! Internal errors (SQLite, I/O) are logged and answered with a fixed text, never their own.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::model::command::CommandError;
use crate::store::StoreError;

/// An API error.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input: 400.
    #[error("{0}")]
    Invalid(String),
    /// Unknown thing: 404.
    #[error("{0}")]
    NotFound(String),
    /// Refused by the rules: 409.
    #[error("{0}")]
    Refused(String),
    /// A write on a node that is not its site's primary: 409, code `not_primary`. The message
    /// names the primary.
    #[error("{0}")]
    NotPrimary(String),
    /// A local write while this primary hands its role to the standby (`ttx switchover`):
    /// 503, code `switching_over`; retry in a moment (at the new primary once it is done).
    #[error("{0}")]
    SwitchingOver(String),
    /// No or bad token: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Token valid, role insufficient: 403.
    #[error("{0}")]
    Forbidden(String),
    /// Body over the limit: 413.
    #[error("{0}")]
    TooLarge(String),
    /// Known route, wrong method: 405.
    #[error("method not allowed on this endpoint (see docs/api.md)")]
    MethodNotAllowed,
    /// The node is stopping: 503.
    #[error("the node is shutting down")]
    Unavailable,
    /// Sync replication in `block` mode gave up waiting for the standby: 503, code
    /// `not_on_standby`. The write is committed on this node; a retry with the same
    /// idempotency key answers it once the standby has it.
    #[error("committed here, not yet on the standby: retry with the same Idempotency-Key")]
    NotOnStandby,
    /// The node names a witness and does not hold its lease: 503, code `no_lease`; retry in a
    /// moment (here once it is renewed, or at the standby the witness promoted).
    #[error("lost the witness's lease: not taking writes until it is renewed; retry with the same Idempotency-Key")]
    NoLease,
    /// Something the node had to reach (a peer) did not answer: a failure, not a refusal.
    #[error("{0}")]
    Unreachable(String),
    /// Took too long: 504.
    #[error("the request timed out")]
    Timeout,
    /// Anything else: 500, details in the node's log only.
    #[error("internal error (see the node's log)")]
    Internal,
}

impl ApiError {
    /// The HTTP status and the stable code (the web console shows the same ones).
    pub fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Refused(_) => (StatusCode::CONFLICT, "refused"),
            ApiError::NotPrimary(_) => (StatusCode::CONFLICT, "not_primary"),
            ApiError::SwitchingOver(_) => (StatusCode::SERVICE_UNAVAILABLE, "switching_over"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::NotOnStandby => (StatusCode::SERVICE_UNAVAILABLE, "not_on_standby"),
            ApiError::NoLease => (StatusCode::SERVICE_UNAVAILABLE, "no_lease"),
            ApiError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "unreachable"),
            ApiError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Command(CommandError::Invalid(m)) => ApiError::Invalid(m),
            StoreError::Command(CommandError::NotFound(m)) => ApiError::NotFound(m),
            StoreError::Command(CommandError::Refused(m)) => ApiError::Refused(m),
            StoreError::Closed => ApiError::Unavailable,
            StoreError::NoLease => ApiError::NoLease,
            StoreError::NotPrimary(e @ crate::model::role::RoleError::HandingOver { .. }) => {
                ApiError::SwitchingOver(e.to_string())
            }
            StoreError::NotPrimary(e) => ApiError::NotPrimary(e.to_string()),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::replication::GateError> for ApiError {
    fn from(e: crate::replication::GateError) -> Self {
        match e {
            crate::replication::GateError::NotOnStandby => ApiError::NotOnStandby,
            crate::replication::GateError::Closed => ApiError::Unavailable,
            crate::replication::GateError::NoLease => ApiError::NoLease,
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        ApiError::from(StoreError::Command(e))
    }
}

/// A JSON body whose rejections (malformed JSON, wrong types, oversize) are [`ApiError`]s.
/// An empty body counts as `{}`, so endpoints whose fields are all optional need none.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge("request body is larger than api.max_body_bytes".into())
            } else {
                ApiError::Invalid(format!("cannot read the request body: {}", r.body_text()))
            }
        })?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(body)
            .map(ApiJson)
            .map_err(|e| ApiError::Invalid(format!("invalid JSON body: {e}")))
    }
}

/// A query string whose rejections (unknown or malformed parameters) are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

/// Refuses a query string whose percent-encoding does not decode to UTF-8 (`q=%FF`): decoding
/// it lossily would search for U+FFFD instead of what the client meant.
fn check_query_utf8(query: &str) -> Result<(), ApiError> {
    let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
    for pair in query.split('&') {
        let raw = pair.as_bytes();
        let mut bytes = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match (raw[i], hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (b'%', Some(h), Some(l)) => {
                    bytes.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                (b'+', _, _) => bytes.push(b' '),
                (b, _, _) => bytes.push(b),
            }
            i += 1;
        }
        if std::str::from_utf8(&bytes).is_err() {
            let name = pair.split('=').next().unwrap_or("");
            return Err(ApiError::Invalid(format!(
                "invalid query: {name:?} is not percent-encoded UTF-8"
            )));
        }
    }
    Ok(())
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        check_query_utf8(parts.uri.query().unwrap_or(""))?;
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|r| ApiError::Invalid(format!("invalid query: {}", r.body_text())))
    }
}

/// Answers a known route called with the wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Parses a ticket number from the path.
pub fn ticket_number(raw: &str) -> Result<i64, ApiError> {
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    let parsed = digits.then(|| raw.parse::<i64>().ok()).flatten();
    parsed.filter(|n| *n > 0).ok_or_else(|| {
        ApiError::Invalid(format!(
            "invalid ticket number {raw:?}: use a positive number such as 42"
        ))
    })
}

/// Answers an unknown route.
pub async fn not_found_route() -> ApiError {
    ApiError::NotFound("no such endpoint (see docs/api.md)".into())
}

/// Answers 504 when a request takes longer than `api.request_timeout_secs`.
pub async fn with_timeout(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::Timeout.into_response(),
    }
}
