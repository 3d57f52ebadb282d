//! `/api/v1/requests`: asking for access, listing and reading requests, approving, denying
//! and revoking them. Each parses the request and calls one function of
//! `sessions::approvals`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, parse_json};
use super::extract::{SignedIn, SignedInWrite};
use super::state::AppState;
use crate::gateway::sessions::approvals::{self, Ask, RequestView};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    target: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    duration_seconds: Option<u64>,
    #[serde(default)]
    break_glass: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/requests`.
#[utoipa::path(
    post,
    path = "/api/v1/requests",
    operation_id = "create_request",
    security(("cookie" = [], "csrf" = [])),
    request_body = super::schemas::AskAccess,
    responses(
        (status = 201, description = "Asked (or, for break-glass, granted)", body = RequestView),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "The policy refuses, break-glass not allowed, or bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 404, description = "No such node among those you may reach", body = super::schemas::ErrorBody),
        (status = 409, description = "Needs no approval, one is already pending or granted, or too many pending", body = super::schemas::ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = super::schemas::ErrorBody),
        (status = 422, description = "Bad reason or duration", body = super::schemas::ErrorBody),
        (status = 502, description = "AWS refused or failed", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: AskBody = parse_json(&body?)?;
    let ask = Ask {
        target: body.target,
        reason: body.reason,
        duration_seconds: body.duration_seconds,
        break_glass: body.break_glass,
    };
    let view = approvals::ask(&state.engine, &signed.user, &signed.client, ask).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The query of `GET /api/v1/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `pending` or `all` (the default).
    #[serde(default)]
    pub state: Option<String>,
}

/// `GET /api/v1/requests?state=pending|all`.
#[utoipa::path(
    get,
    path = "/api/v1/requests",
    operation_id = "list_requests",
    security(("cookie" = [])),
    params(("state" = Option<String>, Query, description = "`pending` or `all` (the default)")),
    responses(
        (status = 200, description = "Your requests and those you may decide: pending first, then newest", body = super::schemas::RequestList),
        (status = 400, description = "A bad parameter", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    let pending_only = match query.state.as_deref() {
        None | Some("all") => false,
        Some("pending") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("state must be pending or all, not {other:?}"),
            ));
        }
    };
    let requests = approvals::list(&state.engine, &signed.user, pending_only).await?;
    Ok(Json(json!({ "requests": requests })))
}

/// `GET /api/v1/requests/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}",
    operation_id = "get_request",
    security(("cookie" = [])),
    params(("id" = String, Path, description = "The request's id")),
    responses(
        (status = 200, description = "The request", body = RequestView),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 404, description = "No such request that you may see", body = super::schemas::ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<RequestView>, ApiError> {
    Ok(Json(
        approvals::get(&state.engine, &signed.user, &id).await?,
    ))
}

/// What is done to a request.
#[derive(Debug, Clone, Copy)]
enum Verb {
    Approve,
    Deny,
    Revoke,
}

/// Approves, denies or revokes request `id` for `signed`, with the body's comment.
async fn act(
    state: &AppState,
    signed: &super::extract::SignedIn,
    id: &str,
    body: &[u8],
    verb: Verb,
) -> Result<Json<RequestView>, ApiError> {
    let comment = comment_of(body)?;
    let (engine, user, client) = (&state.engine, &signed.user, &signed.client);
    let view = match verb {
        Verb::Approve => approvals::decide(engine, user, client, id, true, &comment).await?,
        Verb::Deny => approvals::decide(engine, user, client, id, false, &comment).await?,
        Verb::Revoke => approvals::revoke(engine, user, client, id, &comment).await?,
    };
    Ok(Json(view))
}

fn comment_of(body: &[u8]) -> Result<String, ApiError> {
    // An empty body is no comment.
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    Ok(parse_json::<DecideBody>(body)?.comment)
}

/// `POST /api/v1/requests/{id}/approve`.
#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/approve",
    operation_id = "approve_request",
    security(("cookie" = [], "csrf" = [])),
    params(("id" = String, Path, description = "The request's id")),
    request_body = super::schemas::Decide,
    responses(
        (status = 200, description = "Approved (approved as a whole once enough people have)", body = RequestView),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Your own request, or not an approver of it", body = super::schemas::ErrorBody),
        (status = 404, description = "No such request that you may see", body = super::schemas::ErrorBody),
        (status = 409, description = "Not pending, or you already decided it", body = super::schemas::ErrorBody),
        (status = 422, description = "Bad comment", body = super::schemas::ErrorBody),
    )
)]
pub async fn approve(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RequestView>, ApiError> {
    act(&state, &signed, &id, &body?, Verb::Approve).await
}

/// `POST /api/v1/requests/{id}/deny`.
#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/deny",
    operation_id = "deny_request",
    security(("cookie" = [], "csrf" = [])),
    params(("id" = String, Path, description = "The request's id")),
    request_body = super::schemas::Decide,
    responses(
        (status = 200, description = "Denied", body = RequestView),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Your own request, or not an approver of it", body = super::schemas::ErrorBody),
        (status = 404, description = "No such request that you may see", body = super::schemas::ErrorBody),
        (status = 409, description = "Not pending, or you already decided it", body = super::schemas::ErrorBody),
        (status = 422, description = "Bad comment", body = super::schemas::ErrorBody),
    )
)]
pub async fn deny(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RequestView>, ApiError> {
    act(&state, &signed, &id, &body?, Verb::Deny).await
}

/// `POST /api/v1/requests/{id}/revoke`.
#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/revoke",
    operation_id = "revoke_request",
    security(("cookie" = [], "csrf" = [])),
    params(("id" = String, Path, description = "The request's id")),
    request_body = super::schemas::Decide,
    responses(
        (status = 200, description = "Revoked; the sessions started under it are ended", body = RequestView),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Neither the requester nor an approver", body = super::schemas::ErrorBody),
        (status = 404, description = "No such request that you may see", body = super::schemas::ErrorBody),
        (status = 409, description = "Already ended", body = super::schemas::ErrorBody),
        (status = 422, description = "Bad comment", body = super::schemas::ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RequestView>, ApiError> {
    act(&state, &signed, &id, &body?, Verb::Revoke).await
}
