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
use super::extract::{client_of, cookie};
use super::pages::{Layout, local_path};
use super::state::AppState;
use crate::gateway::identity::oidc::{Callback, FLOW_SECONDS, OidcError};
use crate::gateway::sessions::{engine, upkeep};

/// The flow cookie's name; it is sent only to `/auth/oidc/`.
pub const FLOW_COOKIE: &str = "porthole_oidc_flow";

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
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{FLOW_COOKIE}={value}; Path=/auth/oidc/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
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
    let status = status_of(e);
    let page = SsoErrorPage {
        layout: Layout::signed_out(""),
        status: status.as_u16(),
        message: e.to_string(),
        retry: format!("/login?next={}", super::pages::encode_component(next)),
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

fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
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
    let flow = cookie(&parts.headers, FLOW_COOKIE).filter(|v| !v.is_empty());
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
