//! `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`, `GET /api/v1/me`: identity's
//! sign-in and sign-out as JSON and the `porthole_session` cookie.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, parse_json};
use super::extract::{SignedIn, SignedInWrite, client_of, cookie_name};
use super::state::AppState;
use crate::gateway::facts::User;
use crate::gateway::identity::login::Login;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// The user as the API shows it.
pub fn user_json(user: &User) -> serde_json::Value {
    json!({
        "name": user.name,
        "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    })
}

/// `POST /api/v1/auth/login`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login",
    request_body = super::schemas::LoginRequest,
    responses(
        (status = 200, description = "Signed in; the cookie is set", body = super::schemas::Me),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 408, description = "The body was sent too slowly", body = super::schemas::ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = super::schemas::ErrorBody),
        (status = 401, description = "Wrong user name or password", body = super::schemas::ErrorBody),
        (status = 403, description = "The Origin is not the gateway's, or password sign-in is turned off (local_sign_in_disabled)", body = super::schemas::ErrorBody),
        (status = 429, description = "Too many failed sign-ins, or too many at once", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn login(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let client = client_of(&parts);
    let body: LoginBody = parse_json(&body)?;
    let signed = state
        .identity
        .sign_in(&body.username, body.password, &client)
        .await?;
    let ttl = state.config.auth.login_ttl_seconds;
    let mut response = (
        StatusCode::OK,
        Json(json!({"user": user_json(&signed.user), "csrf_token": signed.csrf_token})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, session_cookie(&state, &signed.token, ttl));
    Ok(response)
}

/// The sign-in cookie. `SameSite=Lax`: a link from chat, a ticket or an alert lands signed in;
/// state-changing requests are still refused from other sites by the CSRF token and the Origin
/// check ([`super::extract`]).
pub(super) fn session_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        cookie_name(state)
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /api/v1/auth/logout`: revokes the login; its cookie is refused from now on.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout",
    security(("cookie" = [], "csrf" = [])),
    responses(
        (status = 200, description = "Signed out", body = super::schemas::SignedOut),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Bad Origin or CSRF token", body = super::schemas::ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
) -> Result<Response, ApiError> {
    let login = Login {
        user: signed.user,
        id: signed.login_id,
        csrf_token: signed.csrf_token,
    };
    let method = state.identity.sign_out(&login, &signed.client).await?;
    let redirect = match (method.as_str(), state.identity.oidc.as_deref()) {
        ("oidc", Some(oidc)) => oidc.end_session_url().await,
        _ => None,
    };
    let mut response = (
        StatusCode::OK,
        Json(json!({"signed_out": true, "redirect": redirect})),
    )
        .into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

/// `GET /api/v1/me`.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "me",
    security(("cookie" = [])),
    responses(
        (status = 200, description = "Who is signed in", body = super::schemas::Me),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
    )
)]
pub async fn me(State(state): State<Arc<AppState>>, signed: SignedIn) -> Json<serde_json::Value> {
    let approver = state.engine.policy.current().is_approver(&signed.user);
    Json(json!({
        "user": user_json(&signed.user), "csrf_token": signed.csrf_token, "approver": approver,
    }))
}
