//! Who is asking: a session cookie (browsers) or a bearer token (scripts and tests), the
//! operator's current role read from the store on every request, and the CSRF check every
//! form post goes through.
//!
//! - [`Viewer`]: any logged-in operator (pages).
//! - [`WriteForm`]: a form post by an operator who may write; the body's `csrf` field must match
//!   the session's token (a bearer-token caller carries no ambient authority and needs none);
//!   a request a browser marks `Sec-Fetch-Site: cross-site` is refused whatever it carries.

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{forbidden, WebError};
use super::WebState;
use crate::api::auth::{token_sha256, Caller};
use crate::api::error::ApiError;
use crate::store::query;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "ttx_session";

/// A caller of the console.
#[derive(Debug, Clone)]
pub struct WebCaller {
    /// Operator and role (read from the store for this request).
    pub caller: Caller,
    /// The session's CSRF token; `None` for a bearer-token caller.
    pub csrf: Option<String>,
}

impl WebCaller {
    /// Whether the caller may change tickets.
    pub fn can_write(&self) -> bool {
        self.caller.role.can_write()
    }
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.caller.role == crate::model::event::Role::Admin
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Identifies the caller; `Ok(None)` when there is no live session or token.
pub async fn identify(
    state: &WebState,
    headers: &HeaderMap,
) -> Result<Option<WebCaller>, WebError> {
    if let Some(token) = bearer(headers) {
        let found = state
            .app
            .auth
            .lookup(&state.app, token_sha256(token))
            .await?;
        return match found {
            Some(caller) => Ok(Some(WebCaller { caller, csrf: None })),
            None => Err(ApiError::Unauthorized("invalid token".into()).into()),
        };
    }
    let Some(id) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some(session) = state.sessions.get(&id) else {
        return Ok(None);
    };
    let name = session.operator.clone();
    let found = state
        .app
        .store
        .reader
        .read(move |c| query::operator_login(c, &name))
        .await?;
    Ok(found.map(|(role, _)| WebCaller {
        caller: Caller {
            name: session.operator,
            role,
        },
        csrf: Some(session.csrf),
    }))
}

fn path_and_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into())
}

/// Any logged-in operator; others are sent to the login page.
pub struct Viewer(pub WebCaller);

impl FromRequestParts<WebState> for Viewer {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        match identify(state, &parts.headers).await? {
            Some(c) => Ok(Viewer(c)),
            None => Err(WebError::LoginRequired(path_and_query(parts))),
        }
    }
}

/// A form body with its CSRF token beside the fields.
#[derive(Debug, Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    /// The form's idempotency key (a fresh one per rendered form).
    #[serde(default)]
    idem: Option<String>,
    #[serde(flatten)]
    fields: T,
}

/// Refuses a request the browser says comes from another site.
pub fn refuse_cross_site(headers: &HeaderMap) -> Result<(), WebError> {
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site") => Err(forbidden(
            "cross-site form posts are refused (Sec-Fetch-Site: cross-site)",
        )),
        _ => Ok(()),
    }
}

/// Compares a form's CSRF token with the session's (through their digests: no early exit on
/// the secret's bytes).
pub fn check_csrf(expected: Option<&str>, sent: &str) -> Result<(), WebError> {
    match expected {
        None => Ok(()),
        Some(expected) if token_sha256(expected) == token_sha256(sent) => Ok(()),
        Some(_) => Err(forbidden(
            "this form's CSRF token is missing or stale: reload the page and try again",
        )),
    }
}

/// A form post that changes something: an operator who may write, a matching CSRF token.
/// Form fields are strings (checked by the handler), so one body holds them and the token.
pub struct WriteForm<T> {
    /// Who posts.
    pub caller: Caller,
    /// The rendered form's idempotency key, if it carried one.
    pub idem: Option<String>,
    /// The fields.
    pub form: T,
}

/// Reads a form body with its CSRF token and checks the caller, the token and the origin;
/// `write` also requires a role that may write.
pub async fn read_form<T: DeserializeOwned + Send>(
    req: Request,
    state: &WebState,
    write: bool,
) -> Result<(WebCaller, T, Option<String>), WebError> {
    let (parts, body) = req.into_parts();
    refuse_cross_site(&parts.headers)?;
    let caller = match identify(state, &parts.headers).await? {
        Some(c) => c,
        None => return Err(WebError::LoginRequired("/".into())),
    };
    if write && !caller.can_write() {
        return Err(forbidden(format!(
            "operator {} is a viewer and cannot change anything",
            caller.caller.name
        )));
    }
    let req = Request::from_parts(parts, body);
    let Form(WithCsrf::<T> { csrf, idem, fields }) =
        Form::from_request(req, state).await.map_err(|r| {
            WebError::Api(if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge("the form is larger than web.max_body_bytes".into())
            } else {
                ApiError::Invalid(format!("invalid form: {}", r.body_text()))
            })
        })?;
    check_csrf(caller.csrf.as_deref(), &csrf)?;
    Ok((caller, fields, idem.filter(|k| !k.is_empty())))
}

impl<T: DeserializeOwned + Send> FromRequest<WebState> for WriteForm<T> {
    type Rejection = WebError;
    async fn from_request(req: Request, state: &WebState) -> Result<Self, WebError> {
        let (caller, form, idem) = read_form(req, state, true).await?;
        Ok(WriteForm {
            caller: caller.caller,
            idem,
            form,
        })
    }
}
