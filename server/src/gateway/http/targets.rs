//! `GET /api/v1/targets`: the managed nodes the policy lets this person reach, and the
//! accounts and regions whose nodes could not be listed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::json;

use super::error::ApiError;
use super::extract::SignedIn;
use super::state::AppState;
use crate::gateway::sessions::{approvals, engine};

/// `GET /api/v1/targets`: what this user may reach.
#[utoipa::path(
    get,
    path = "/api/v1/targets",
    operation_id = "list_targets",
    security(("cookie" = [])),
    responses(
        (status = 200, description = "The nodes some role of yours reaches, and the accounts and regions that could not be listed", body = super::schemas::TargetList),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 502, description = "AWS refused or failed", body = super::schemas::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
) -> Result<Json<serde_json::Value>, ApiError> {
    let listing = engine::reachable_targets(&state.engine, &signed.user).await?;
    let approvals =
        approvals::approval_states(&state.engine, &signed.user, &listing.targets).await?;
    let targets: Vec<serde_json::Value> = listing
        .targets
        .iter()
        .zip(approvals)
        .map(|(target, approval)| {
            let mut value = json!(target);
            value["approval"] = approval.unwrap_or(serde_json::Value::Null);
            value
        })
        .collect();
    Ok(Json(
        json!({ "targets": targets, "unavailable": listing.unavailable }),
    ))
}
