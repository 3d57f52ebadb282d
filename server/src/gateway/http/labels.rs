//! `GET/PUT /api/v1/sessions/{id}/labels` (a session's tags and note) and
//! `GET /api/v1/recordings/labels?q=TEXT` (the sessions whose labels contain a text): each
//! parses the request and calls the engine's `labels` module.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::error::{ApiError, parse_json};
use super::extract::{SignedIn, SignedInWrite};
use super::schemas::{LabelSearchResult, LabelledSession, LabelsChange};
use super::state::AppState;
use crate::gateway::sessions::labels::{self, Change};
use crate::gateway::store::labels::Labels;

/// `GET /api/v1/sessions/{id}/labels`.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/labels",
    operation_id = "get_labels",
    security(("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session's tags and note (empty when never labelled)", body = Labels),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours", body = super::schemas::ErrorBody),
    )
)]
pub async fn get_labels(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<Labels>, ApiError> {
    Ok(Json(labels::get(&state.engine, &signed.user, &id).await?))
}

/// `PUT /api/v1/sessions/{id}/labels`: replaces the tags and the note (audited).
#[utoipa::path(
    put,
    path = "/api/v1/sessions/{id}/labels",
    operation_id = "put_labels",
    security(("cookie" = [], "csrf" = [])),
    params(("id" = String, Path, description = "The session's id")),
    request_body = LabelsChange,
    responses(
        (status = 200, description = "Stored; the labels as kept", body = Labels),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours", body = super::schemas::ErrorBody),
        (status = 408, description = "The body was sent too slowly", body = super::schemas::ErrorBody),
        (status = 409, description = "Another person's session still running: label it once it has ended", body = super::schemas::ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = super::schemas::ErrorBody),
        (status = 422, description = "A bad tag or note (invalid_labels, naming it); nothing was stored", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn put_labels(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Labels>, ApiError> {
    let body: LabelsChange = parse_json(&body?)?;
    let change = Change {
        tags: body.tags,
        note: body.note,
    };
    Ok(Json(
        labels::set(&state.engine, &signed.user, &signed.client, &id, &change).await?,
    ))
}

/// `GET /api/v1/recordings/labels?q=TEXT`.
#[utoipa::path(
    get,
    path = "/api/v1/recordings/labels",
    operation_id = "search_labels",
    security(("cookie" = [])),
    params(("q" = String, Query, description = "The text, 1 to 200 characters, found in a tag or the note")),
    responses(
        (status = 200, description = "Sessions whose labels contain the text, newest first", body = LabelSearchResult),
        (status = 400, description = "An unknown or repeated parameter", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 422, description = "A bad query", body = super::schemas::ErrorBody),
    )
)]
pub async fn search_labels(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<LabelSearchResult>, ApiError> {
    let Query(pairs) = query.map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("the query string is malformed: {e}"),
        )
    })?;
    let mut q = None;
    for (k, v) in pairs {
        if k != "q" {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("{k}: not a parameter of this API (q)"),
            ));
        }
        if q.replace(v).is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "q: given more than once",
            ));
        }
    }
    let found = labels::find(&state.engine, &signed.user, q.as_deref().unwrap_or(""))
        .await
        .map_err(|e| match e {
            crate::gateway::sessions::Error::InvalidLabels(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", m)
            }
            other => other.into(),
        })?;
    let sessions = found
        .into_iter()
        .map(|(session, labels)| LabelledSession { session, labels })
        .collect();
    Ok(Json(LabelSearchResult { sessions }))
}
