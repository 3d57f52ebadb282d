//! The API's error shape: `{"error":{"code":"snake_case","message":"text for a person",
//! "request_id":"…"}}` with the fitting status. Internal details (database errors, AWS's full
//! text with its account ids and role ARNs) are logged under the request id, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::request_id;
use crate::gateway::aws::{AwsError, Failure};
use crate::gateway::identity::login::SignInError;
use crate::gateway::sessions;
use crate::gateway::store::db::DbError;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable snake_case code that clients and tests match on.
    pub code: &'static str,
    /// Text for a person.
    pub message: String,
    /// Seconds to wait before trying again (a `Retry-After` header), when the answer is 429
    /// or 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 `unauthenticated`.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first (no valid sign-in cookie)",
        )
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with `code`.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 502 `upstream`: AWS refused or failed. The answer has the failure's summary (the
    /// operation and AWS's error code); AWS's full text goes to the log, under the request id.
    pub fn upstream(failure: Failure) -> Self {
        tracing::warn!("AWS failed: {}", failure.detail);
        Self::new(
            StatusCode::BAD_GATEWAY,
            "upstream",
            format!("{}; {}", failure.summary, log_has_it()),
        )
    }

    /// 500 `internal`; the detail goes to the log only, under the request id.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!(
                "internal error; try again. If it happens again, {}",
                log_has_it()
            ),
        )
    }
}

/// `the gateway's log has the details (request id 0123abcd…)`.
fn log_has_it() -> String {
    match request_id::current() {
        Some(id) => format!("the gateway's log has the details (request id {id})"),
        None => "the gateway's log has the details".to_owned(),
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// An extractor's refusal (a body too large or not readable, a malformed query string, a
/// request that is not a WebSocket upgrade) in the API's error shape, with its status.
fn rejected(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "body_too_large",
            format!("the body is larger than {} bytes", super::MAX_BODY_BYTES),
        ),
        StatusCode::UPGRADE_REQUIRED => ApiError::new(status, "upgrade_required", text),
        _ => ApiError::new(status, "invalid_request", text),
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        rejected(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        rejected(e.status(), e.body_text())
    }
}

impl From<axum::extract::ws::rejection::WebSocketUpgradeRejection> for ApiError {
    fn from(e: axum::extract::ws::rejection::WebSocketUpgradeRejection) -> Self {
        rejected(e.status(), e.body_text())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_busy() {
            tracing::warn!("database busy: {e}");
            return Self {
                retry_after: Some(1),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "the database is busy for a moment; nothing was changed, try again",
                )
            };
        }
        Self::internal(e)
    }
}

impl From<sessions::Error> for ApiError {
    fn from(e: sessions::Error) -> Self {
        use sessions::Error as E;
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match e {
            E::Forbidden(m) => Self::forbidden(m),
            E::Access(why, m) => {
                use crate::gateway::sessions::approvals::Refused as R;
                let status = match why {
                    R::ApprovalRequired
                    | R::SelfApproval
                    | R::NotAnApprover
                    | R::BreakGlassNotAllowed => StatusCode::FORBIDDEN,
                    R::AlreadyDecided
                    | R::NotPending
                    | R::RequestPending
                    | R::GrantActive
                    | R::NotRequired
                    | R::TooMany => StatusCode::CONFLICT,
                    R::InvalidDuration | R::InvalidComment => unprocessable,
                    R::UnknownRequest => StatusCode::NOT_FOUND,
                };
                Self::new(status, why.code(), m)
            }
            E::UnknownTarget(m) => Self::not_found("unknown_target", m),
            E::UnknownSession(m) => Self::not_found("unknown_session", m),
            E::NoRecording(m) => Self::not_found("no_recording", m),
            E::InvalidDocument(m) => Self::new(unprocessable, "invalid_document", m),
            E::InvalidReason(m) => Self::new(unprocessable, "invalid_reason", m),
            E::InvalidLabels(m) => Self::new(unprocessable, "invalid_labels", m),
            E::InvalidParticipant(m) => Self::new(unprocessable, "invalid_participant", m),
            E::UnknownParticipant(m) => Self::not_found("unknown_participant", m),
            E::TooManyParticipants(m) => Self::conflict("too_many_participants", m),
            E::InvalidParameters(m) => Self::new(unprocessable, "invalid_parameters", m),
            E::TooManySessions(m) => Self::conflict("too_many_sessions", m),
            E::TargetNotConnected(m) => Self::conflict("target_not_connected", m),
            E::SessionEnded(m) => Self::conflict("session_ended", m),
            E::Draining(m) => Self {
                retry_after: Some(1),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "draining", m)
            },
            E::OwnerUnreachable(m) => Self {
                retry_after: Some(2),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "owner_unreachable", m)
            },
            E::SessionRunning(m) => Self::conflict("session_running", m),
            E::Busy {
                message,
                retry_after,
            } => Self {
                retry_after: Some(retry_after),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
            },
            E::TooManyTransfers {
                message,
                whole_gateway,
                retry_after,
            } => {
                let (status, code) = if whole_gateway {
                    (StatusCode::SERVICE_UNAVAILABLE, "transfers_busy")
                } else {
                    (StatusCode::TOO_MANY_REQUESTS, "too_many_transfers")
                };
                Self {
                    retry_after: Some(retry_after),
                    ..Self::new(status, code, message)
                }
            }
            E::SearchTimeout(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "search_timeout", m),
            E::Transfer(t) => {
                use crate::gateway::sessions::files::framing::TransferError as T;
                let message = t.to_string();
                match t {
                    T::InvalidPath(_) => Self::new(unprocessable, "invalid_path", message),
                    T::TooLarge(_) => {
                        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "file_too_large", message)
                    }
                    T::NotFound(_) => Self::not_found("file_not_found", message),
                    T::Refused(_) => Self::conflict("transfer_refused", message),
                    T::Broken(_) => Self::new(StatusCode::BAD_GATEWAY, "transfer_failed", message),
                }
            }
            E::UnsupportedPlatform(m) => Self::new(unprocessable, "unsupported_platform", m),
            E::Upstream(f) => Self::upstream(f),
            E::Db(e) => e.into(),
            E::Internal(m) => Self::internal(m),
        }
    }
}

impl From<AwsError> for ApiError {
    fn from(e: AwsError) -> Self {
        match e {
            AwsError::Upstream(f) => Self::upstream(f),
            AwsError::Internal(m) => Self::internal(m),
        }
    }
}

impl From<SignInError> for ApiError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::InvalidCredentials => Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                e.to_string(),
            ),
            SignInError::RateLimited {
                retry_after_seconds,
                ..
            } => Self {
                retry_after: Some(retry_after_seconds),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            },
            SignInError::Busy => Self {
                retry_after: Some(1),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            },
            SignInError::LocalDisabled(_) => Self::new(
                StatusCode::FORBIDDEN,
                "local_sign_in_disabled",
                e.to_string(),
            ),
            SignInError::Db(e) => e.into(),
            SignInError::Internal(m) => Self::internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.code,
            "message": self.message,
            "request_id": request_id::current(),
        }});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Parses a JSON body into `T`; a body that is not JSON or not the right shape is a 400 that
/// says what is wrong (serde's message names the field).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("invalid JSON body: {e}")))
}
