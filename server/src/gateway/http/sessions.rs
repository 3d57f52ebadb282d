//! `POST/GET/DELETE /api/v1/sessions`, `GET /api/v1/sessions/{id}` and
//! `GET /api/v1/sessions/{id}/recording`: each parses the request and calls one function of
//! the session engine (`sessions::engine`).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::error::{ApiError, parse_json};
use super::extract::{SignedIn, SignedInWrite};
use super::state::AppState;
use crate::gateway::sessions::engine::{self, StartRequest};
use crate::gateway::store::recordings::{self, Content};
use crate::gateway::store::sessions::{SessionView, StateFilter};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    target: String,
    /// Missing: empty, which only roles whose reason is optional accept.
    #[serde(default)]
    reason: String,
    #[serde(default)]
    document: Option<String>,
    #[serde(default)]
    parameters: Option<crate::gateway::policy::Parameters>,
}

/// `POST /api/v1/sessions`.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    operation_id = "start_session",
    security(("cookie" = [], "csrf" = [])),
    request_body = super::schemas::StartSession,
    responses(
        (status = 201, description = "Started", body = SessionView),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 408, description = "The body was sent too slowly", body = super::schemas::ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "The policy refuses, or bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 404, description = "No such node among those you may reach", body = super::schemas::ErrorBody),
        (status = 409, description = "Too many sessions, or the node is not connected", body = super::schemas::ErrorBody),
        (status = 422, description = "Bad document, parameters or reason", body = super::schemas::ErrorBody),
        (status = 502, description = "AWS refused or failed", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let body: CreateBody = parse_json(&body)?;
    let request = StartRequest {
        target: body.target,
        reason: body.reason,
        document: body.document,
        parameters: body.parameters,
    };
    let view = engine::start(&state.engine, &signed.user, &signed.client, request).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The query of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// `active`, `ended` or `all` (the default).
    #[serde(default)]
    pub state: Option<String>,
    /// `all`: everyone's sessions with the live counters of running ones, for roles that
    /// observe or terminate others' sessions.
    #[serde(default)]
    pub scope: Option<String>,
}

/// `GET /api/v1/sessions?state=active|ended|all[&scope=all]`.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    operation_id = "list_sessions",
    security(("cookie" = [])),
    params(
        ("state" = Option<String>, Query, description = "`active`, `ended` or `all` (the default)"),
        ("scope" = Option<String>, Query, description = "`all`: everyone's, with live counters (roles that observe or terminate others' sessions)"),
    ),
    responses(
        (status = 200, description = "Sessions, newest first", body = super::schemas::SessionList),
        (status = 400, description = "A bad parameter", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "`scope=all` without the role for it", body = super::schemas::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    let everyone = match query.scope.as_deref() {
        None | Some("") | Some("visible") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("scope must be all or left out, not {other:?}"),
            ));
        }
    };
    if everyone {
        // Who may not list everyone's sessions learns that first, whatever the filter.
        engine::may_list_everyone(&signed.user)?;
    }
    let text = query.state.as_deref().unwrap_or("all");
    let filter = StateFilter::parse(text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_request",
            format!("state must be active, ended or all, not {text:?}"),
        )
    })?;
    if !everyone {
        let sessions = engine::list(&state.engine, &signed.user, filter).await?;
        return Ok(Json(json!({ "sessions": sessions })));
    }
    let sessions: Vec<serde_json::Value> =
        engine::list_everyone(&state.engine, &signed.user, filter)
            .await?
            .into_iter()
            .map(|(view, stats)| {
                let mut value = json!(view);
                value["live"] = json!(stats);
                value
            })
            .collect();
    Ok(Json(json!({ "sessions": sessions })))
}

/// `GET /api/v1/sessions/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}",
    operation_id = "get_session",
    security(("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours (or shared with you)", body = super::schemas::ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    // The people invited into it see it too (their page asks what became of it).
    let (view, _) = crate::gateway::sessions::participants::visible_or_invited(
        &state.engine,
        &signed.user,
        &id,
    )
    .await?;
    Ok(Json(view))
}

/// `DELETE /api/v1/sessions/{id}`: terminate (owner or admin).
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    operation_id = "terminate_session",
    security(("cookie" = [], "csrf" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 202, description = "Terminating", body = super::schemas::Terminating),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Not yours to terminate, or bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours", body = super::schemas::ErrorBody),
        (status = 409, description = "Not running", body = super::schemas::ErrorBody),
        (status = 502, description = "AWS refused or failed", body = super::schemas::ErrorBody),
    )
)]
pub async fn terminate(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    engine::terminate(&state.engine, &signed.user, &signed.client, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "state": "terminating"})),
    )
        .into_response())
}

/// How much of a local recording is read at a time.
const CHUNK: usize = 64 * 1024;

/// The bytes of `reader` as a stream of chunks of at most [`CHUNK`].
fn chunks(
    reader: impl AsyncRead + Unpin + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0; CHUNK];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            // The error ends the body; nothing is read after it.
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// `GET /api/v1/sessions/{id}/recording`: the session's asciicast v2 file (as written so far,
/// for a live one; streamed from S3 once uploaded there) — for its owner and for those who see
/// every session.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/recording",
    operation_id = "get_recording",
    security(("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The asciicast v2 file", content_type = "application/x-asciicast", body = String),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours, or no recording", body = super::schemas::ErrorBody),
        (status = 409, description = "Another person's session still running: observe it", body = super::schemas::ErrorBody),
        (status = 502, description = "S3 refused or failed", body = super::schemas::ErrorBody),
    )
)]
pub async fn recording(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (view, opened) =
        engine::recording(&state.engine, &signed.user, &signed.client, &id).await?;
    let body = match opened.body {
        Content::Local(file) => Body::from_stream(chunks(file)),
        Content::S3(stream) => Body::new(stream.into_inner()),
    };
    let mut response = (
        [
            (CONTENT_TYPE, recordings::CONTENT_TYPE.to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.cast\"", view.id),
            ),
        ],
        body,
    )
        .into_response();
    if let Some(length) = opened.length {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(response)
}
