//! The console's errors: the API's error kinds (same statuses, same messages) shown as a page,
//! plus "log in first" (a redirect) and "too many attempts".

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::api::error::ApiError;
use crate::store::StoreError;

/// An error answered to a browser.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Anything the API would answer; shown with its status and message.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// No live session: redirect to the login page, then back to this path.
    #[error("log in first")]
    LoginRequired(String),
    /// Too many failed logins: wait this many seconds.
    #[error("too many failed logins: try again in {0} s")]
    TooManyAttempts(u64),
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        WebError::Api(e.into())
    }
}

/// A bad form value (400).
pub fn invalid(message: impl Into<String>) -> WebError {
    WebError::Api(ApiError::Invalid(message.into()))
}

/// A refused request (403).
pub fn forbidden(message: impl Into<String>) -> WebError {
    WebError::Api(ApiError::Forbidden(message.into()))
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            WebError::Api(e) => e.parts(),
            WebError::LoginRequired(next) => {
                let target = format!("/login?next={}", encode_component(next));
                return (StatusCode::SEE_OTHER, [(header::LOCATION, target)]).into_response();
            }
            WebError::TooManyAttempts(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
        };
        let message = self.to_string();
        let page = super::layout::bare(
            "Error",
            html! {
                main.error {
                    h1 { "Error " (status.as_u16()) }
                    p.message data-code=(code) { (message) }
                    p { a href="/" { "Back to at a glance" } }
                }
            },
        );
        (status, page).into_response()
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
