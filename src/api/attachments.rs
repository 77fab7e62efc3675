//! Attachment endpoints: attach a file to a ticket (its bytes as base64 in JSON, so a retry
//! with the same `Idempotency-Key` attaches it once), list a ticket's attachments, and download
//! one. A download is always `application/octet-stream` with `Content-Disposition: attachment`
//! and `nosniff`: the bytes are untrusted (a partner's capture, a pasted config) and a browser
//! must never render them.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::auth::Caller;
use super::error::{ticket_number, ApiError, ApiJson};
use super::tickets::idempotency;
use super::AppState;
use crate::store::attachment::{self, AttachmentRow};
use crate::store::writer::AttachmentAck;
use crate::store::{WriteOp, WriteOutcome, WriteRequest};

/// The body of `POST /v1/tickets/{n}/attachments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachBody {
    /// The file name (no directories).
    pub name: String,
    /// Shared with partners (default false: internal, never leaves the site).
    #[serde(default)]
    pub shared: bool,
    /// The bytes, base64 (standard alphabet, padded).
    pub content_base64: String,
}

/// `POST /v1/tickets/{n}/attachments`: attach a file.
pub async fn attach(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(number): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AttachBody>,
) -> Result<(StatusCode, Json<AttachmentAck>), ApiError> {
    let idem = idempotency(&headers, &("attach", &number, &body))?;
    let number = ticket_number(&number)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(body.content_base64.as_bytes())
        .map_err(|e| ApiError::Invalid(format!("content_base64 is not base64: {e}")))?;
    let req = WriteRequest {
        actor: caller.name.clone(),
        idempotency: idem,
        op: WriteOp::Attach {
            number,
            name: body.name,
            data: Arc::new(data),
            shared: body.shared,
        },
    };
    match super::write(&state, req).await? {
        WriteOutcome::Attachment(ack) => Ok((StatusCode::CREATED, Json(ack))),
        other => {
            tracing::error!(?other, "unexpected write outcome");
            Err(ApiError::Internal)
        }
    }
}

/// `GET /v1/tickets/{n}/attachments`: the ticket's attachments, oldest first.
pub async fn list(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<Json<Vec<AttachmentRow>>, ApiError> {
    let number = ticket_number(&number)?;
    let rows = state
        .store
        .reader
        .read(move |c| attachment::list(c, number))
        .await?;
    Ok(Json(rows))
}

fn attachment_id(id: &str) -> Result<uuid::Uuid, ApiError> {
    id.parse().map_err(|_| {
        ApiError::Invalid(format!(
            "invalid attachment id {id:?}: use an id from `ttx attachments N`"
        ))
    })
}

/// `GET /v1/attachments/{id}`: one attachment's description.
pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AttachmentRow>, ApiError> {
    let id = attachment_id(&id)?;
    let (row, _) = state
        .store
        .reader
        .read(move |c| attachment::get(c, id))
        .await?;
    Ok(Json(row))
}

/// `GET /v1/attachments/{id}/content`: the bytes, as a download.
pub async fn content(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = attachment_id(&id)?;
    let (row, bytes) = state
        .store
        .reader
        .read(move |c| attachment::get(c, id))
        .await?;
    Ok(download(&row, bytes))
}

/// A download of untrusted bytes: never rendered (octet-stream, `nosniff`, a sandboxing CSP),
/// saved under a file name reduced to safe characters.
pub fn download(row: &AttachmentRow, bytes: Vec<u8>) -> Response {
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&row.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&row.sha256) {
        h.insert("x-ttx-sha256", v);
    }
    resp
}

/// `attachment; filename="…"` with only `[A-Za-z0-9._-]` kept (others become `_`), and the
/// full name percent-encoded in `filename*` (RFC 6266).
pub fn content_disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn disposition_is_always_a_download_with_a_safe_name() {
        assert_eq!(
            content_disposition("cap.pcap"),
            "attachment; filename=\"cap.pcap\"; filename*=UTF-8''cap.pcap"
        );
        assert_eq!(
            content_disposition("a\"b; c.html"),
            "attachment; filename=\"a_b__c.html\"; filename*=UTF-8''a%22b%3B%20c.html"
        );
    }
}
