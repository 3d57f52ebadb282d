//! `GET /auth/oidc/login` and `GET /auth/oidc/callback`: the browser's side of single sign-on.
//! The login route sends the browser to the provider with a flow cookie; the callback route
//! (the redirect URI to register) checks the answer through identity, revokes sessions the
//! person may no longer hold, sets the sign-in cookie and goes where `next` said. A refusal is
//! a page that says what happened and what to do, never a token or a trace.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::auth::session_cookie;
use super::extract::{client_of, cookie, peer_of};
use super::layout::{Layout, local_path};
use super::state::AppState;
use crate::gateway::identity::oidc::{Callback, FLOW_SECONDS, OidcError};
use crate::gateway::identity::proxy::{ProxyError, ProxyHeaders};
use crate::gateway::sessions::{engine, upkeep};

/// The flow cookie's name over plain http; it is sent only to `/auth/oidc/`.
pub const FLOW_COOKIE: &str = "porthole_oidc_flow";
/// Its name behind https: `__Host-` (Secure, `Path=/`, no `Domain`), so that no sibling
/// subdomain can plant a flow of its own (a sign-in as someone else).
pub const SECURE_FLOW_COOKIE: &str = "__Host-porthole_oidc_flow";

/// The flow cookie's name for this gateway.
fn flow_cookie_name(state: &AppState) -> &'static str {
    if state.config.secure_cookies() {
        SECURE_FLOW_COOKIE
    } else {
        FLOW_COOKIE
    }
}

#[derive(Template)]
#[template(path = "sso_error.html")]
struct SsoErrorPage {
    layout: Layout,
    status: u16,
    message: String,
    /// Where "Start again" goes.
    retry: String,
}

/// The flow cookie: `SameSite=Lax`, so that it comes back with the provider's redirect (a
/// top-level GET from another site).
fn flow_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let (path, secure) = if state.config.secure_cookies() {
        ("/", "; Secure")
    } else {
        ("/auth/oidc/", "")
    };
    let text = format!(
        "{}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        flow_cookie_name(state)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn status_of(e: &OidcError) -> StatusCode {
    use crate::gateway::identity::sso::ExternalError;
    match e {
        OidcError::NotConfigured => StatusCode::NOT_FOUND,
        OidcError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
        OidcError::Db(_)
        | OidcError::External(ExternalError::Db(_) | ExternalError::Internal(_)) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        OidcError::EmailDomain { .. }
        | OidcError::External(ExternalError::Disabled(_) | ExternalError::NameTaken(_)) => {
            StatusCode::FORBIDDEN
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The page for a refused sign-in; the flow cookie is cleared with it.
fn refused(state: &AppState, e: &OidcError, next: &str) -> Response {
    failure_page(state, status_of(e), e.to_string(), next)
}

/// A page that says why the sign-in failed, with a way to start again.
fn failure_page(state: &AppState, status: StatusCode, message: String, next: &str) -> Response {
    let page = SsoErrorPage {
        layout: Layout::signed_out(""),
        status: status.as_u16(),
        message,
        retry: format!("/login?next={}", super::layout::encode_component(next)),
    };
    let mut response = match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            super::error::ApiError::internal(format!("rendering a page: {err}")).into_response()
        }
    };
    response
        .headers_mut()
        .insert(SET_COOKIE, flow_cookie(state, "", 0));
    response
}

/// 303 to `to`; to `/targets` when `to` cannot be a header (a path with characters a header
/// may not hold), never a redirect without a place.
fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let value = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/targets"));
    response.headers_mut().insert(LOCATION, value);
    response
}

/// The identity headers of a request.
fn proxy_headers(parts: &Parts) -> ProxyHeaders {
    let get = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    ProxyHeaders {
        alb_data: get("x-amzn-oidc-data"),
        user: get("x-forwarded-user"),
        email: get("x-forwarded-email"),
        groups: get("x-forwarded-groups"),
    }
}

/// The sign-in page behind a proxy that signed the person in: with its identity headers, the
/// person is signed in and sent on to `next`. `None` (the page is shown as usual) without
/// them, or when they came from a peer that is not a trusted proxy (ignored and audited).
pub async fn proxy_login(state: &AppState, parts: &Parts, next: &str) -> Option<Response> {
    let headers = proxy_headers(parts);
    if !headers.any() {
        return None;
    }
    let (peer, trusted) = peer_of(state, parts)?;
    let client = client_of(parts);
    let signed = match state
        .identity
        .proxy_sign_in(&headers, &peer.to_string(), trusted, &client)
        .await
    {
        Ok(signed) => signed,
        Err(ProxyError::Untrusted(_)) => return None,
        Err(e) => {
            let status = match &e {
                ProxyError::KeyUnavailable(_) => StatusCode::BAD_GATEWAY,
                ProxyError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
                ProxyError::External(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            return Some(failure_page(state, status, e.to_string(), next));
        }
    };
    if !signed.lost_roles.is_empty() {
        engine::revoke_unreachable(&state.engine, &signed.signed.user, upkeep::ACCESS_REVOKED)
            .await;
    }
    let mut response = see_other(next);
    response.headers_mut().append(
        SET_COOKIE,
        session_cookie(
            state,
            &signed.signed.token,
            state.config.auth.login_ttl_seconds,
        ),
    );
    Some(response)
}

/// `GET /auth/oidc/login?next=/path`: to the provider.
pub async fn login(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    parts: Parts,
) -> Response {
    let next = local_path(query.get("next")).unwrap_or_else(|| "/targets".to_owned());
    let client = client_of(&parts);
    match state.identity.oidc_begin(&next, &client).await {
        Ok(begin) => {
            let mut response = see_other(&begin.redirect_to);
            response.headers_mut().insert(
                SET_COOKIE,
                flow_cookie(&state, &begin.flow_cookie, FLOW_SECONDS),
            );
            response
        }
        Err(e) => refused(&state, &e, &next),
    }
}

/// `GET /auth/oidc/callback?code=…&state=…`: back from the provider.
pub async fn callback(
    State(state): State<Arc<AppState>>,
    query: Result<Query<Callback>, QueryRejection>,
    parts: Parts,
) -> Response {
    // Parameters that do not parse are as if absent: the flow's checks then refuse it.
    let callback = query.map(|Query(c)| c).unwrap_or_default();
    let client = client_of(&parts);
    let flow = cookie(&parts.headers, flow_cookie_name(&state)).filter(|v| !v.is_empty());
    let finished = match state
        .identity
        .oidc_callback(flow.as_deref(), &callback, &client)
        .await
    {
        Ok(finished) => finished,
        Err(e) => return refused(&state, &e, "/targets"),
    };
    let user = &finished.login.signed.user;
    if !finished.login.lost_roles.is_empty() {
        // Groups were taken away: what the person may no longer reach is ended now.
        engine::revoke_unreachable(&state.engine, user, upkeep::ACCESS_REVOKED).await;
    }
    let mut response = see_other(&finished.next);
    let headers = response.headers_mut();
    headers.append(
        SET_COOKIE,
        session_cookie(
            &state,
            &finished.login.signed.token,
            state.config.auth.login_ttl_seconds,
        ),
    );
    headers.append(SET_COOKIE, flow_cookie(&state, "", 0));
    response
}
