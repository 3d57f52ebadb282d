//! `POST /api/v1/sessions/{id}/files?path=…` (upload the body to that path on the session's
//! node) and `GET /api/v1/sessions/{id}/files?path=…` (download it): each parses the request
//! and calls the engine's `files` module.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt as _;
use hyper::body::{Frame, SizeHint};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{SignedIn, SignedInWrite};
use super::state::AppState;
use crate::gateway::sessions::files::{self, framing::Direction, slots::Permit};

/// The query of both.
#[derive(Debug, Deserialize)]
pub struct FileQuery {
    /// The file's absolute path on the node.
    #[serde(default)]
    pub path: String,
}

/// A transfer that was done.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Transferred {
    /// The node's path.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// Their SHA-256 (hex), as the node computed it.
    pub sha256: String,
}

/// The header that carries a download's SHA-256 (hex), checked against the node's.
pub const SHA256_HEADER: &str = "x-porthole-sha256";

/// `POST /api/v1/sessions/{id}/files?path=/abs/path`: writes the body to the path on the
/// session's node (audited `file.upload`).
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/files",
    operation_id = "upload_file",
    security(("cookie" = [], "csrf" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("path" = String, Query, description = "The file's absolute path on the node"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Written whole (renamed into place once its SHA-256 matched)", body = Transferred),
        (status = 400, description = "A malformed query string, or a body that could not be read", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Not your session, the policy does not allow uploads, or bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours", body = super::schemas::ErrorBody),
        (status = 408, description = "The body was sent too slowly", body = super::schemas::ErrorBody),
        (status = 409, description = "The session is not running here, or the node refused (a folder, no such folder, no permission)", body = super::schemas::ErrorBody),
        (status = 413, description = "Larger than files.max_bytes", body = super::schemas::ErrorBody),
        (status = 422, description = "A bad path, or a node that is not Linux", body = super::schemas::ErrorBody),
        (status = 429, description = "too_many_transfers: the person runs files.max_concurrent_per_user transfers already (Retry-After); nothing was sent", body = super::schemas::ErrorBody),
        (status = 502, description = "AWS failed, or the file did not arrive whole (nothing was written)", body = super::schemas::ErrorBody),
        (status = 503, description = "transfers_busy: the gateway runs files.max_concurrent transfers already (Retry-After; nothing was sent), or the database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
    query: Result<Query<FileQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let engine = &state.engine;
    let max = engine.config.files.max_bytes;
    // Refused before a byte of the body is read: the person, the policy, the path, the
    // transfers running at once (the slot is held until the node has answered, and given back
    // if the body never comes whole), the size the client announced.
    let slot = files::begin(
        engine,
        &signed.user,
        &signed.client,
        &id,
        Direction::Upload,
        &query.path,
    )
    .await?;
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = announced.filter(|&size| size > max) {
        return Err(files::too_large(size, max).into());
    }
    let mut data = Vec::with_capacity(announced.map_or(0, |n| usize::try_from(n).unwrap_or(0)));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(body_error)?;
        if (data.len() + chunk.len()) as u64 > max {
            return Err(files::too_large((data.len() + chunk.len()) as u64, max).into());
        }
        data.extend_from_slice(&chunk);
    }
    // In a task of its own: a person who goes away mid-transfer does not leave the node's
    // program waiting or the audit log without the outcome.
    let engine = engine.clone();
    let done = tokio::spawn(async move {
        let done = files::upload(
            &engine,
            &slot,
            &signed.user,
            &signed.client,
            &id,
            &query.path,
            data.into(),
        )
        .await;
        drop(slot);
        done
    })
    .await
    .map_err(|e| ApiError::internal(format!("the upload's task failed: {e}")))??;
    Ok((
        StatusCode::CREATED,
        Json(Transferred {
            path: done.path,
            bytes: done.size,
            sha256: done.sha256,
        }),
    )
        .into_response())
}

/// `GET /api/v1/sessions/{id}/files?path=/abs/path`: the file at the path on the session's
/// node, as an attachment (audited `file.download`).
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/files",
    operation_id = "download_file",
    security(("cookie" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("path" = String, Query, description = "The file's absolute path on the node"),
    ),
    responses(
        (status = 200, description = "The file, checked against the node's SHA-256 (in the x-porthole-sha256 header)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "A malformed query string", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Not your session, or the policy does not allow downloads", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours, or no such file on the node", body = super::schemas::ErrorBody),
        (status = 409, description = "The session is not running here, or the node refused (a folder, not a regular file, no permission)", body = super::schemas::ErrorBody),
        (status = 413, description = "Larger than files.max_bytes", body = super::schemas::ErrorBody),
        (status = 422, description = "A bad path, or a node that is not Linux", body = super::schemas::ErrorBody),
        (status = 429, description = "too_many_transfers: the person runs files.max_concurrent_per_user transfers already (Retry-After)", body = super::schemas::ErrorBody),
        (status = 502, description = "AWS failed, or the file did not arrive whole", body = super::schemas::ErrorBody),
        (status = 503, description = "transfers_busy: the gateway runs files.max_concurrent transfers already (Retry-After), or the database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn download(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
    query: Result<Query<FileQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let engine = state.engine.clone();
    let slot = files::begin(
        &engine,
        &signed.user,
        &signed.client,
        &id,
        Direction::Download,
        &query.path,
    )
    .await?;
    let path = query.path.clone();
    // The task hands the slot back with the file: it is held until the file has been sent.
    let (outcome, slot) = tokio::spawn(async move {
        let outcome =
            files::download(&engine, &slot, &signed.user, &signed.client, &id, &path).await;
        (outcome, slot)
    })
    .await
    .map_err(|e| ApiError::internal(format!("the download's task failed: {e}")))?;
    let (data, done) = outcome?;
    let name = query.path.rsplit('/').next().unwrap_or_default();
    let mut response = (
        [(CONTENT_TYPE, "application/octet-stream".to_owned())],
        Body::new(Sending {
            rest: Bytes::from(data),
            slot: Some(slot),
        }),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&content_disposition(name)) {
        headers.insert(CONTENT_DISPOSITION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&done.sha256) {
        headers.insert(HeaderName::from_static(SHA256_HEADER), value);
    }
    Ok(response)
}

/// A downloaded file on its way to the person: given to the connection in pieces, holding the
/// transfer's slot until the connection asks for more after the last piece (or drops the body,
/// when the person went away).
struct Sending {
    rest: Bytes,
    slot: Option<Permit>,
}

/// The pieces [`Sending`] gives.
const SEND_PIECE: usize = 64 * 1024;

impl hyper::body::Body for Sending {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            self.slot = None;
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(SEND_PIECE);
        let piece = self.rest.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

/// A body that could not be read: 408 when it came too slowly (`server.read_timeout_seconds`
/// between two pieces), 400 otherwise.
fn body_error(e: axum::Error) -> ApiError {
    let inner = e.into_inner();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
    while let Some(e) = source {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the file was sent too slowly (server.read_timeout_seconds between two pieces); \
                 nothing was written",
            );
        }
        source = e.source();
    }
    ApiError::bad_request(
        "invalid_request",
        format!("reading the body failed: {inner}"),
    )
}

/// `attachment` with the file's name: an ASCII stand-in (`_` for anything but letters,
/// digits, `.`, `-` and `_`) and the exact name in RFC 5987 form.
pub fn content_disposition(name: &str) -> String {
    let plain: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    let plain = if plain.trim_matches('.').is_empty() {
        "download".to_owned()
    } else {
        plain
    };
    let mut encoded = String::new();
    for b in name.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                encoded.push(char::from(b));
            }
            _ => encoded.push_str(&format!("%{b:02X}")),
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_safe_for_any_name() {
        assert_eq!(
            content_disposition("notes.txt"),
            "attachment; filename=\"notes.txt\"; filename*=UTF-8''notes.txt"
        );
        assert_eq!(
            content_disposition("a \"b\";\\c 日.txt"),
            "attachment; filename=\"a__b___c__.txt\"; \
             filename*=UTF-8''a%20%22b%22%3B%5Cc%20%E6%97%A5.txt"
        );
        assert_eq!(
            content_disposition(".."),
            "attachment; filename=\"download\"; filename*=UTF-8''.."
        );
        for name in ["x\r\ny", "a\"b", "日本"] {
            assert!(HeaderValue::from_str(&content_disposition(name)).is_ok());
        }
    }
}
