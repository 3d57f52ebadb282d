//! `GET /api/v1/notifications?state=pending|delivered|failed|all`: the webhook deliveries,
//! newest first (at most [`LIMIT`]), for those who may read the audit log: what was told to
//! whom, what is still being tried and why it fails. The bodies, URLs and secrets are not
//! shown.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::SignedIn;
use super::state::AppState;
use crate::gateway::policy::may_read_audit;
use crate::gateway::store::notices::{self, StateFilter};

/// The most deliveries one answer lists.
pub const LIMIT: i64 = 200;

/// The query of `GET /api/v1/notifications`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// `pending`, `delivered`, `failed` or `all` (the default).
    #[serde(default)]
    pub state: Option<String>,
}

/// `GET /api/v1/notifications`.
#[utoipa::path(
    get,
    path = "/api/v1/notifications",
    operation_id = "list_notifications",
    security(("cookie" = [])),
    params(
        ("state" = Option<String>, Query, description = "`pending`, `delivered`, `failed` or `all` (the default)"),
    ),
    responses(
        (status = 200, description = "Webhook deliveries, newest first (at most 200)", body = super::schemas::NotificationList),
        (status = 400, description = "A bad parameter", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "No role of yours reads the audit log", body = super::schemas::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !may_read_audit(&signed.user) {
        return Err(ApiError::forbidden(format!(
            "{} may not read the notifications: only roles that read the audit log may",
            signed.user.name
        )));
    }
    let Query(query) = query?;
    let text = query.state.as_deref().unwrap_or("all");
    let filter = StateFilter::parse(text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_request",
            format!(
                "state must be pending, delivered, failed or all, not {:?}",
                text.chars().take(32).collect::<String>()
            ),
        )
    })?;
    let deliveries = notices::list(&state.engine.db, filter, LIMIT).await?;
    Ok(Json(json!({ "deliveries": deliveries })))
}
