//! `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`, `GET /api/v1/me`: identity's
//! sign-in and sign-out as JSON and the `porthole_session` cookie.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, parse_json};
use super::extract::{COOKIE_NAME, SignedIn, SignedInWrite, client_of};
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
pub async fn login(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
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

fn session_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /api/v1/auth/logout`: revokes the login; its cookie is refused from now on.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
) -> Result<Response, ApiError> {
    let login = Login {
        user: signed.user,
        id: signed.login_id,
        csrf_token: signed.csrf_token,
    };
    state.identity.sign_out(&login, &signed.client).await?;
    let mut response = (StatusCode::OK, Json(json!({"signed_out": true}))).into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

/// `GET /api/v1/me`.
pub async fn me(signed: SignedIn) -> Json<serde_json::Value> {
    Json(json!({"user": user_json(&signed.user), "csrf_token": signed.csrf_token}))
}
