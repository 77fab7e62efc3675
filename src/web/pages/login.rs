//! Login and logout. The login form carries a CSRF token too (double-submit: a cookie scoped to
//! `/login` and the same value in the form), failures are rate limited per name and per client
//! address, and an unknown name costs the same argon2 check as a wrong password.

use std::sync::OnceLock;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use maud::html;
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::store::query;
use crate::web::auth::{check_csrf, cookie, read_form, refuse_cross_site, SESSION_COOKIE};
use crate::web::error::WebError;
use crate::web::layout::bare;
use crate::web::serve::ClientAddr;
use crate::web::session::random_token;
use crate::web::{password, WebState};

const LOGIN_COOKIE: &str = "ttx_login";

fn set_cookie(state: &WebState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let c = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.app.config.web.secure_cookies())
        .path(path)
        .max_age(cookie::time::Duration::seconds(max_age))
        .build();
    HeaderValue::from_str(&c.to_string()).expect("cookie values are hex")
}

/// Only a local path is a place to go back to after login (no `//host` or scheme).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

/// Query of `GET /login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

fn login_page(state: &WebState, next: &str, message: Option<&str>, status: StatusCode) -> Response {
    let token = random_token();
    let page = bare(
        "Log in",
        html! {
            main.login {
                h1 { "ttx · " (state.app.config.node.site) }
                @if let Some(m) = message { p.flash role="alert" { (m) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="next" value=(next);
                    label { "Operator " input type="text" name="name" id="login-name" autocomplete="username" required autofocus; }
                    label { "Password " input type="password" name="password" id="login-password" autocomplete="current-password" required; }
                    button type="submit" id="login-submit" { "Log in" }
                }
            }
        },
    );
    let mut r = (status, page).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_COOKIE, &token, "/login", 3600),
    );
    r
}

/// `GET /login`.
pub async fn form(State(state): State<WebState>, Query(q): Query<LoginQuery>) -> Response {
    login_page(&state, &safe_next(q.next.as_deref()), None, StatusCode::OK)
}

/// Body of `POST /login`.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// A hash to check against when the name is unknown, so both cost the same.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash("no such operator, no such password").unwrap_or_default())
}

/// `POST /login`.
pub async fn submit(
    State(state): State<WebState>,
    ConnectInfo(ClientAddr(peer)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Result<Response, WebError> {
    refuse_cross_site(&headers)?;
    let next = safe_next(f.next.as_deref());
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_else(random_token);
    check_csrf(Some(&expected), &f.csrf)?;
    let name = f.name.trim().to_string();
    if let Err(wait) = state.limiter.check(&name, peer.ip()) {
        tracing::warn!(operator = %name, client = %peer.ip(), "login refused: too many failures");
        return Err(WebError::TooManyAttempts(wait));
    }
    if name.is_empty() || name.len() > 200 || f.password.len() > password::MAX_PASSWORD_BYTES {
        return Ok(login_page(
            &state,
            &next,
            Some("wrong name or password"),
            StatusCode::UNAUTHORIZED,
        ));
    }
    let found = {
        let name = name.clone();
        state
            .app
            .store
            .reader
            .read(move |c| query::operator_login(c, &name))
            .await?
    };
    let hash = found.and_then(|(_, h)| h);
    let known = hash.is_some();
    let ok = {
        let _permit = state
            .hashing
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable)?;
        let phc = hash.unwrap_or_else(|| dummy_hash().to_string());
        let pw = f.password;
        tokio::task::spawn_blocking(move || password::verify(&pw, &phc))
            .await
            .map_err(|_| ApiError::Internal)?
    };
    if !(ok && known) {
        state.limiter.failed(&name, peer.ip());
        tracing::warn!(operator = %name, client = %peer.ip(), "login failed");
        return Ok(login_page(
            &state,
            &next,
            Some("wrong name or password"),
            StatusCode::UNAUTHORIZED,
        ));
    }
    state.limiter.succeeded(&name);
    let Some(id) = state.sessions.open(&name) else {
        return Err(ApiError::Unavailable.into());
    };
    tracing::info!(operator = %name, client = %peer.ip(), "logged in");
    let ttl = state.sessions.ttl().as_secs() as i64;
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, next)]).into_response();
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, &id, "/", ttl),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, "", "/login", 0),
    );
    Ok(r)
}

/// `POST /logout`: ends the session (any role may).
pub async fn logout(State(state): State<WebState>, req: Request) -> Result<Response, WebError> {
    let id = cookie(req.headers(), SESSION_COOKIE);
    let (who, _, _) = read_form::<Empty>(req, &state, false).await?;
    if let Some(id) = id {
        state.sessions.close(&id);
    }
    tracing::info!(operator = %who.caller.name, "logged out");
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/login")]).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", "/", 0),
    );
    Ok(r)
}

/// A form with no fields besides its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Empty {}
