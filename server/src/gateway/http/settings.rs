//! `GET /api/v1/me/settings`, `PUT /api/v1/me/settings`: the signed-in person's terminal
//! settings (identity's `settings` module says the keys and what each may hold).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

use super::error::{ApiError, parse_json};
use super::extract::{SignedIn, SignedInWrite};
use super::state::AppState;
use crate::gateway::identity::SettingsError;
use crate::gateway::identity::settings::Settings;

impl From<SettingsError> for ApiError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Invalid(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_settings",
                e.message,
            ),
            SettingsError::Db(e) => e.into(),
        }
    }
}

/// `GET /api/v1/me/settings`.
#[utoipa::path(
    get,
    path = "/api/v1/me/settings",
    operation_id = "get_settings",
    security(("cookie" = [])),
    responses(
        (status = 200, description = "Your settings, defaults filled in", body = super::schemas::SettingsView),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn get_settings(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
) -> Result<Json<Settings>, ApiError> {
    Ok(Json(state.identity.settings(signed.user.id).await?))
}

/// `PUT /api/v1/me/settings`: the keys given are stored (`null`: back to the default), the
/// others keep their values; the answer is every key.
#[utoipa::path(
    put,
    path = "/api/v1/me/settings",
    operation_id = "put_settings",
    security(("cookie" = [], "csrf" = [])),
    request_body = super::schemas::SettingsChange,
    responses(
        (status = 200, description = "Stored; all your settings", body = super::schemas::SettingsView),
        (status = 400, description = "Not JSON", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 408, description = "The body was sent too slowly", body = super::schemas::ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = super::schemas::ErrorBody),
        (status = 422, description = "An unknown key or a bad value (invalid_settings, naming the key and what it may hold); nothing was stored", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn put_settings(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Settings>, ApiError> {
    let change: serde_json::Value = parse_json(&body?)?;
    Ok(Json(
        state
            .identity
            .save_settings(signed.user.id, &change)
            .await?,
    ))
}
