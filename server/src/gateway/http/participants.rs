//! `GET/POST /api/v1/sessions/{id}/participants` and
//! `DELETE /api/v1/sessions/{id}/participants/{user}`: sharing a session. Each parses the
//! request, looks the invitee up (identity: their roles as the policy sees them) and calls the
//! engine's `participants` module, which decides and audits.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::error::{ApiError, parse_json};
use super::extract::{SignedIn, SignedInWrite};
use super::schemas::{Invitation, ParticipantList};
use super::state::AppState;
use crate::gateway::facts::{User, valid_user_name};
use crate::gateway::identity::users;
use crate::gateway::policy::JoinMode;
use crate::gateway::sessions::participants;
use crate::gateway::store::participants::Participant;

/// The user named `name`, with the roles and grants the policy in force gives them; `None`
/// when there is no such user.
async fn resolve(state: &AppState, name: &str) -> Result<Option<User>, ApiError> {
    if !valid_user_name(name) {
        return Ok(None);
    }
    let found = users::find(&state.identity.db, name).await?;
    Ok(found.map(|(user, _)| state.identity.resolve(user)))
}

fn invalid(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_participant",
        message,
    )
}

/// `GET /api/v1/sessions/{id}/participants`.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/participants",
    operation_id = "list_participants",
    security(("cookie" = [])),
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The people invited into the session", body = ParticipantList),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours", body = super::schemas::ErrorBody),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<ParticipantList>, ApiError> {
    let participants = participants::list(&state.engine, &signed.user, &id).await?;
    Ok(Json(ParticipantList { participants }))
}

/// `POST /api/v1/sessions/{id}/participants`: invites a person (audited).
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/participants",
    operation_id = "invite_participant",
    security(("cookie" = [], "csrf" = [])),
    params(("id" = String, Path, description = "The session's id")),
    request_body = Invitation,
    responses(
        (status = 201, description = "Invited (or their mode changed); they may attach now", body = Participant),
        (status = 400, description = "Not JSON, or not the right shape", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Not your session, no role of yours has join_others, the invitee's roles do not allow the node, or bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours", body = super::schemas::ErrorBody),
        (status = 408, description = "The body was sent too slowly", body = super::schemas::ErrorBody),
        (status = 409, description = "The session is not running, or has as many participants as allowed", body = super::schemas::ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = super::schemas::ErrorBody),
        (status = 422, description = "No such user, yourself, a disabled user, or a bad mode (invalid_participant, naming it)", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn invite(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Participant>), ApiError> {
    let body: Invitation = parse_json(&body?)?;
    let mode = JoinMode::parse(&body.mode).map_err(|e| invalid(format!("mode: {e}")))?;
    let name = body.user.trim();
    if name.is_empty() {
        return Err(invalid("user: name the person to invite".into()));
    }
    let invitee = resolve(&state, name).await?;
    let added = participants::invite(
        &state.engine,
        &signed.user,
        &signed.client,
        &id,
        name,
        invitee,
        mode,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// `DELETE /api/v1/sessions/{id}/participants/{user}`: revokes an invitation (audited); the
/// person's socket closes at once (close code 4005).
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}/participants/{user}",
    operation_id = "revoke_participant",
    security(("cookie" = [], "csrf" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("user" = String, Path, description = "The participant's user name"),
    ),
    responses(
        (status = 204, description = "Revoked; their socket was closed"),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Not your session, or bad Origin or CSRF token", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours, or that person is not invited", body = super::schemas::ErrorBody),
        (status = 503, description = "The database is busy for a moment; try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user_id = resolve(&state, &user).await?.map(|u| u.id);
    participants::revoke(
        &state.engine,
        &signed.user,
        &signed.client,
        &id,
        &user,
        user_id,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
