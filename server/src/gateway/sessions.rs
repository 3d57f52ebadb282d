//! `POST/GET/DELETE /api/v1/sessions`: starting a session (reason checked, audit row committed
//! before `StartSession` is called, the data channel opened server-side), listing, and
//! terminating. The SSM token and stream URL stay in this process.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use super::audit::{self, Event, kind};
use super::auth::{SignedIn, SignedInWrite};
use super::db::{DbError, now_ms};
use super::error::{ApiError, parse_json};
use super::live;
use super::policy;
use super::state::{AppState, aws_message};
use super::targets;
use crate::ssm::client::{self, SessionStart};

/// A session row as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SessionView {
    /// Porthole's id.
    pub id: String,
    /// The node.
    pub target: String,
    /// Its region.
    pub region: String,
    /// The reason given.
    pub reason: String,
    /// The SSM document.
    pub document: String,
    /// Who opened it.
    pub user: String,
    /// starting, active, ended, failed.
    pub state: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// How it ended.
    pub end_reason: Option<String>,
    /// Where the browser attaches.
    pub attach_url: String,
    #[serde(skip)]
    user_id: i64,
}

/// A session query: the view's columns, then `$rest` (a literal, so the SQL stays static).
macro_rules! select_sessions {
    ($rest:literal) => {
        concat!(
            "SELECT s.id, s.target, s.region, s.reason, s.document, s.state, s.started_at, ",
            "s.ended_at, s.end_reason, s.user_id, u.name FROM sessions s ",
            "JOIN users u ON u.id = s.user_id ",
            $rest
        )
    };
}

fn view_of(row: &sqlx::any::AnyRow) -> Result<SessionView, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(SessionView {
        attach_url: format!("/api/v1/sessions/{id}/attach"),
        id,
        target: row.try_get("target")?,
        region: row.try_get("region")?,
        reason: row.try_get("reason")?,
        document: row.try_get("document")?,
        user: row.try_get("name")?,
        state: row.try_get("state")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        end_reason: row.try_get("end_reason")?,
        user_id: row.try_get("user_id")?,
    })
}

/// One session row by id.
pub async fn load(state: &AppState, id: &str) -> Result<Option<SessionView>, DbError> {
    let row = sqlx::query(select_sessions!("WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(state.db.pool())
        .await
        .map_err(|e| DbError::new("load session", e))?;
    row.map(|r| view_of(&r))
        .transpose()
        .map_err(|e| DbError::new("read session", e))
}

impl SessionView {
    /// The owner's user id.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }
}

/// Sessions visible to `user` in `filter` (`active`, `ended`, `all`), newest first.
pub async fn visible(
    state: &AppState,
    user: &super::users::User,
    filter: &str,
) -> Result<Vec<SessionView>, DbError> {
    let all_users = policy::sees_all_sessions(user);
    let states: &[&str] = match filter {
        "active" => &["starting", "active"],
        "ended" => &["ended", "failed"],
        _ => &["starting", "active", "ended", "failed"],
    };
    let sql = select_sessions!(
        "WHERE ($1 = 1 OR s.user_id = $2) AND s.state IN ($3, $4, $5, $6) \
         ORDER BY s.started_at DESC, s.id LIMIT 500"
    );
    let pick = |i: usize| states.get(i).or(states.last()).copied().unwrap_or("");
    let rows = sqlx::query(sql)
        .bind(i64::from(all_users))
        .bind(user.id)
        .bind(pick(0))
        .bind(pick(1))
        .bind(pick(2))
        .bind(pick(3))
        .fetch_all(state.db.pool())
        .await
        .map_err(|e| DbError::new("list sessions", e))?;
    rows.iter()
        .map(view_of)
        .collect::<Result<_, _>>()
        .map_err(|e| DbError::new("read session", e))
}

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
    parameters: Option<std::collections::HashMap<String, Vec<String>>>,
}

/// `POST /api/v1/sessions`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CreateBody = parse_json(&body)?;
    let user = &signed.user;
    let document = body
        .document
        .unwrap_or_else(|| policy::DEFAULT_DOCUMENT.to_owned());
    policy::check_document(&document)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_document", m))?;
    // The policy decides on the node's name, region and tags; a node that is not listed is
    // judged by its id alone, so that who may not reach it learns nothing of whether it exists.
    let found = targets::find(&state, &body.target).await?;
    let in_force = state.policy.current();
    let facts = found
        .clone()
        .unwrap_or_else(|| targets::unknown(&body.target));
    let decided = in_force.decide_start(user, &facts, &document, &body.reason);
    if let Err(policy::Refusal::Denied(why)) = &decided {
        let mut tx = state.db.begin_write().await?;
        audit::append(
            &mut tx.tx,
            &Event::new(kind::SESSION_DENIED, &user.name, &signed.client)
                .reason(body.reason.trim())
                .detail(json!({
                    "why": why, "target": body.target, "document": document,
                    "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                    "policy": in_force.hash(),
                })),
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::forbidden(why.clone()));
    }
    let Some(target) = found else {
        return Err(ApiError::not_found(
            "unknown_target",
            format!(
                "no managed node {:?} in the configured regions",
                body.target
            ),
        ));
    };
    let decision = decided.map_err(|refusal| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reason",
            refusal.message(),
        )
    })?;
    let reason = decision.reason.clone();
    let clients = state
        .clients(&target.region)
        .cloned()
        .ok_or_else(|| ApiError::internal(format!("no AWS clients for {}", target.region)))?;

    // The row and the audit event are committed before AWS is asked.
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let mut tx = state.db.begin_write().await?;
    let live_count: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = $1 AND state IN ('starting', 'active')",
    )
    .bind(user.id)
    .fetch_one(&mut *tx.tx)
    .await
    .and_then(|r| r.try_get("n"))
    .map_err(|e| DbError::new("count sessions", e))?;
    let cap = i64::from(state.config.sessions.max_per_user);
    if live_count >= cap {
        return Err(ApiError::conflict(
            "too_many_sessions",
            format!(
                "you already have {live_count} live sessions (the limit is {cap}); end one first"
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO sessions (id, user_id, target, region, document, reason, state, started_at, \
         owner_gateway, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, 'starting', $7, $8, $7)",
    )
    .bind(&id)
    .bind(user.id)
    .bind(&target.id)
    .bind(&target.region)
    .bind(&document)
    .bind(&reason)
    .bind(now)
    .bind(&state.config.server.gateway_id)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("insert session", e))?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_START, &user.name, &signed.client)
            .session(&id, &target.id)
            .reason(&reason)
            .detail(json!({
                "document": document, "region": target.region,
                "roles": decision.roles, "policy": decision.policy_hash,
                "max_duration_seconds": decision.max_duration.map(|d| d.as_secs()),
                "idle_timeout_seconds": decision.idle_timeout.map(|d| d.as_secs()),
            })),
    )
    .await?;
    tx.commit().await?;

    let mut request = clients
        .ssm
        .start_session()
        .target(&target.id)
        .document_name(&document)
        // AWS takes 1 to 256 characters or none (a role may make the reason optional).
        .set_reason((!reason.is_empty()).then(|| policy::aws_reason(&reason)));
    if let Some(parameters) = body.parameters {
        request = request.set_parameters(Some(parameters));
    }
    let started = match request.send().await {
        Ok(reply) => reply,
        Err(e) => {
            let message = aws_message(&e);
            let error = match e.as_service_error() {
                Some(se) if se.is_target_not_connected() => {
                    ApiError::conflict("target_not_connected", message.clone())
                }
                Some(se) if se.is_invalid_document() => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_document",
                    message.clone(),
                ),
                _ => ApiError::upstream(message.clone()),
            };
            fail(&state, &id, &user.name, &target.id, &message).await?;
            return Err(error);
        }
    };
    let (Some(ssm_id), Some(stream_url), Some(token)) = (
        started.session_id(),
        started.stream_url(),
        started.token_value(),
    ) else {
        let message = "StartSession answered without a session id, stream URL or token";
        fail(&state, &id, &user.name, &target.id, message).await?;
        return Err(ApiError::upstream(message));
    };
    let start = SessionStart {
        session_id: ssm_id.to_owned(),
        target: target.id.clone(),
        stream_url: stream_url.to_owned(),
        token: token.to_owned(),
    };
    let options = client::ClientOptions {
        give_up_after: std::time::Duration::from_secs(
            state.config.sessions.retransmit_give_up_seconds,
        ),
    };
    let handle = match client::start_with(start, clients.clone(), options).await {
        Ok(handle) => handle,
        Err(message) => {
            // Do not leave the SSM session behind.
            let _ = clients
                .ssm
                .terminate_session()
                .session_id(ssm_id)
                .send()
                .await;
            fail(&state, &id, &user.name, &target.id, &message).await?;
            return Err(ApiError::upstream(message));
        }
    };
    sqlx::query("UPDATE sessions SET ssm_session_id = $1, state = 'active' WHERE id = $2")
        .bind(ssm_id)
        .bind(&id)
        .execute(state.db.pool())
        .await
        .map_err(|e| DbError::new("activate session", e))?;
    live::spawn(
        state.clone(),
        live::Spawn {
            id: id.clone(),
            user_id: user.id,
            user_name: user.name.clone(),
            target: target.id.clone(),
            region: target.region.clone(),
            ssm_session_id: ssm_id.to_owned(),
            handle,
            max_duration: decision.max_duration,
            idle_timeout: decision.idle_timeout,
        },
    );
    let view = load(&state, &id)
        .await?
        .ok_or_else(|| ApiError::internal("the new session row vanished"))?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// Marks a session that never started as failed, with an end event saying why.
async fn fail(
    state: &AppState,
    id: &str,
    user: &str,
    target: &str,
    message: &str,
) -> Result<(), ApiError> {
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "UPDATE sessions SET state = 'failed', ended_at = $1, end_reason = $2 WHERE id = $3",
    )
    .bind(now_ms())
    .bind(message)
    .bind(id)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("fail session", e))?;
    let client = audit::Client::default();
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_END, user, &client)
            .session(id, target)
            .detail(json!({"how": format!("failed to start: {message}")})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The query of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// `active`, `ended` or `all` (the default).
    #[serde(default)]
    pub state: Option<String>,
    /// `all`: everyone's sessions with the live counters of running ones, for roles that
    /// observe or terminate others' sessions ([`policy::oversees_live_sessions`]).
    #[serde(default)]
    pub scope: Option<String>,
}

/// How long a listing waits for one session's counters.
const STATS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The counters of each session running in this gateway (`None`: not here, ended, or busy
/// for longer than [`STATS_WAIT`]), in the order of `views`.
pub async fn live_stats(state: &AppState, views: &[SessionView]) -> Vec<Option<live::Stats>> {
    let asks = views.iter().map(|view| {
        let live = state.live.get(&view.id);
        async move {
            let live = live?;
            tokio::time::timeout(STATS_WAIT, live.stats())
                .await
                .ok()?
                .ok()
        }
    });
    futures_util::future::join_all(asks).await
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
    if everyone && !policy::oversees_live_sessions(&signed.user) {
        return Err(ApiError::forbidden(format!(
            "{} may not list everyone's live sessions: no role of yours may observe or \
             terminate others' sessions",
            signed.user.name
        )));
    }
    let filter = query.state.as_deref().unwrap_or("all");
    if !matches!(filter, "active" | "ended" | "all") {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("state must be active, ended or all, not {filter:?}"),
        ));
    }
    let sessions = visible(&state, &signed.user, filter).await?;
    if !everyone {
        return Ok(Json(json!({ "sessions": sessions })));
    }
    let stats = live_stats(&state, &sessions).await;
    let sessions: Vec<serde_json::Value> = sessions
        .iter()
        .zip(stats)
        .map(|(view, stats)| {
            let mut value = json!(view);
            value["live"] = json!(stats);
            value
        })
        .collect();
    Ok(Json(json!({ "sessions": sessions })))
}

/// A session the user may see, or 404 (another user's session is not acknowledged to exist
/// unless the user sees all sessions).
pub async fn visible_one(
    state: &AppState,
    signed: &SignedIn,
    id: &str,
) -> Result<SessionView, ApiError> {
    match load(state, id).await? {
        Some(view) if view.user_id == signed.user.id || policy::sees_all_sessions(&signed.user) => {
            Ok(view)
        }
        _ => Err(ApiError::not_found(
            "unknown_session",
            format!("no session {id:?} of yours"),
        )),
    }
}

/// `GET /api/v1/sessions/{id}`.
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(visible_one(&state, &signed, &id).await?))
}

/// `DELETE /api/v1/sessions/{id}`: terminate (owner or admin).
pub async fn terminate(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let view = visible_one(&state, &signed, &id).await?;
    if !policy::may_terminate(&signed.user, view.user_id) {
        return Err(ApiError::forbidden(format!(
            "{} may not terminate {}'s session",
            signed.user.name, view.user
        )));
    }
    let Some(live) = state.live.get(&id) else {
        return Err(ApiError::conflict(
            "session_ended",
            format!("session {id} is not running ({})", view.state),
        ));
    };
    let mut tx = state.db.begin_write().await?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::SESSION_TERMINATE, &signed.user.name, &signed.client)
            .session(&id, &view.target)
            .detail(json!({"ssm_session_id": live.ssm_session_id})),
    )
    .await?;
    tx.commit().await?;
    live.ending(&format!("terminated by {}", signed.user.name))
        .await;
    let clients = state
        .clients(&live.region)
        .ok_or_else(|| ApiError::internal(format!("no AWS clients for {}", live.region)))?;
    clients
        .ssm
        .terminate_session()
        .session_id(&live.ssm_session_id)
        .send()
        .await
        .map_err(|e| ApiError::upstream(aws_message(&e)))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "state": "terminating"})),
    )
        .into_response())
}

/// `GET /api/v1/sessions/{id}/recording`: the session's asciicast v2 file (as written so far,
/// for a live one; streamed from S3 once uploaded there) — for its owner and for those who see
/// every session.
pub async fn recording(
    State(state): State<Arc<AppState>>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    use super::recording_store::OpenError;
    use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
    let view = visible_one(&state, &signed, &id).await?;
    let opened = match state.recordings.open(&view.id).await {
        Ok(Some(opened)) => opened,
        Ok(None) => {
            return Err(ApiError::not_found(
                "no_recording",
                format!("session {id} has no recording"),
            ));
        }
        Err(OpenError::Local(e)) => return Err(ApiError::internal(e)),
        Err(OpenError::S3(e)) => return Err(ApiError::upstream(e)),
    };
    let mut response = (
        [
            (CONTENT_TYPE, super::recording::CONTENT_TYPE.to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.cast\"", view.id),
            ),
        ],
        opened.body,
    )
        .into_response();
    if let Some(length) = opened.length {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, axum::http::HeaderValue::from(length));
    }
    Ok(response)
}
