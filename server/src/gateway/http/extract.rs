//! The signed-in person as extractors: [`SignedIn`] (the cookie checked down to its login
//! row by identity) and [`SignedInWrite`] (also the CSRF token); the client's address and
//! user agent; the Origin guard for every state-changing request.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, ORIGIN, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::AppState;
use crate::gateway::facts::User;
use crate::gateway::store::audit::Client;

/// The sign-in cookie.
pub const COOKIE_NAME: &str = "porthole_session";
/// The header that carries the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longest user agent kept in the audit log.
const MAX_USER_AGENT: usize = 512;

/// A signed-in request: the user, the login it came with and that login's CSRF token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user.
    pub user: User,
    /// The login id.
    pub login_id: String,
    /// The CSRF token of this login.
    pub csrf_token: String,
    /// Where the request came from.
    pub client: Client,
}

/// A signed-in, state-changing request whose `X-CSRF-Token` matched (the Origin is checked by
/// [`origin_guard`] for every such request).
#[derive(Debug, Clone)]
pub struct SignedInWrite(pub SignedIn);

/// The client address and user agent of a request.
pub fn client_of(parts: &Parts) -> Client {
    let addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_default();
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(MAX_USER_AGENT).collect())
        .unwrap_or_default();
    Client { addr, user_agent }
}

/// The value of cookie `name` in `headers`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Checks the cookie of `headers` down to the database; `None` when not signed in.
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    client: Client,
) -> Result<Option<SignedIn>, ApiError> {
    let Some(token) = cookie(headers, COOKIE_NAME) else {
        return Ok(None);
    };
    Ok(state
        .identity
        .authenticate(&token)
        .await?
        .map(|login| SignedIn {
            user: login.user,
            login_id: login.id,
            csrf_token: login.csrf_token,
            client,
        }))
}

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let client = client_of(parts);
        signed_in(state, &parts.headers, client)
            .await?
            .ok_or_else(ApiError::unauthenticated)
    }
}

impl FromRequestParts<Arc<AppState>> for SignedInWrite {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let signed = SignedIn::from_request_parts(parts, state).await?;
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if sent.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing X-CSRF-Token header (state-changing requests need the token sign-in returned)",
            ));
        }
        if !constant_time_eq(sent.as_bytes(), signed.csrf_token.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "X-CSRF-Token does not match this sign-in",
            ));
        }
        Ok(Self(signed))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request's `Origin` is the gateway's.
pub fn origin_ok(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.trim_end_matches('/') == expected)
}

/// Middleware: every request that is not GET, HEAD or OPTIONS must carry the gateway's own
/// `Origin` (403 `bad_origin` otherwise), sign-in included.
pub async fn origin_guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && !origin_ok(request.headers(), &state.origin) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_origin",
            format!(
                "the Origin header must be {} for requests that change something",
                state.origin
            ),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        use axum::http::HeaderValue;
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; porthole_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE_NAME).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
