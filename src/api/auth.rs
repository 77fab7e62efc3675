//! Bearer tokens: each operator holds one; the node keeps only its SHA-256.
//! A bad or missing token gets 401; a viewer asking to write gets 403.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::RwLock;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use super::error::ApiError;
use super::AppState;
use crate::model::event::Role;
use crate::store::query;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Operator name.
    pub name: String,
    /// Role.
    pub role: Role,
}

/// SHA-256 of a token, lowercase hex: what the store keeps.
pub fn token_sha256(token: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

/// A new random token: `ttx_` and 32 random bytes in hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system random source works");
    format!("ttx_{}", hex::encode(bytes))
}

/// Token hash → operator, reloaded from the store whenever operators change.
#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<(u64, HashMap<String, Caller>)>,
}

impl TokenCache {
    /// The operator holding the token with this SHA-256, if any (cached per operators
    /// generation).
    pub async fn lookup(&self, state: &AppState, hash: String) -> Result<Option<Caller>, ApiError> {
        let generation = state
            .store
            .writer
            .operators_generation
            .load(Ordering::SeqCst);
        if let Ok(entries) = self.entries.read() {
            if entries.0 == generation {
                if let Some(c) = entries.1.get(&hash) {
                    return Ok(Some(c.clone()));
                }
            }
        }
        let found = state
            .store
            .reader
            .read({
                let hash = hash.clone();
                move |c| query::operator_by_token(c, &hash)
            })
            .await?;
        let caller = found.map(|(name, role)| Caller { name, role });
        if let (Ok(mut entries), Some(c)) = (self.entries.write(), &caller) {
            if entries.0 != generation {
                *entries = (generation, HashMap::new());
            }
            entries.1.insert(hash, c.clone());
        }
        Ok(caller)
    }
}

/// Authenticates the bearer token, checks the role against the method, and runs the rest of
/// the request inside a span naming the operator.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            // The scheme is case-insensitive (RFC 9110 section 11.1): `bearer` is `Bearer`.
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError::Unauthorized("missing bearer token (Authorization: Bearer TOKEN)".into())
            .into_response();
    };
    let caller = match state.auth.lookup(&state, token_sha256(token)).await {
        Ok(Some(c)) => c,
        Ok(None) => return ApiError::Unauthorized("invalid token".into()).into_response(),
        Err(e) => return e.into_response(),
    };
    let writes = req.method() != Method::GET && req.method() != Method::HEAD;
    if writes && !caller.role.can_write() {
        return ApiError::Forbidden(format!(
            "operator {} is a viewer and cannot change anything",
            caller.name
        ))
        .into_response();
    }
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        operator = %caller.name,
    );
    req.extensions_mut().insert(caller);
    next.run(req).instrument(span).await
}

/// Refuses a caller that is not an admin.
pub fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "operator {} is not an admin",
            caller.name
        )))
    }
}
