//! `POST/GET/DELETE /api/v1/sessions`, `GET /api/v1/sessions/{id}` and
//! `GET /api/v1/sessions/{id}/recording`: each parses the request and calls one function of
//! the session engine (`sessions::engine`).

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
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
pub async fn create(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    body: Bytes,
) -> Result<Response, ApiError> {
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
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Query(query): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(
        engine::visible_one(&state.engine, &signed.user, &id).await?,
    ))
}

/// `DELETE /api/v1/sessions/{id}`: terminate (owner or admin).
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
