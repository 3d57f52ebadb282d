//! `/internal/v1/…`: what gateways ask of each other. Every route but `whoami` takes only
//! requests signed with the cluster's key by a live registered gateway (refused with 403
//! `bad_signature` naming why); the Origin and CSRF checks of browser requests do not apply
//! (no browser sends these), the signature stands in for them.
//!
//! - `GET /internal/v1/whoami`: this gateway's id and process id (asked by a gateway starting
//!   with the same id, to tell a live holder from a dead one).
//! - `GET /internal/v1/sessions/{id}/attach`: a browser's attach forwarded by another gateway
//!   ([`super::forward`]), with the browser's cookie: the person is checked here as usual.
//! - `POST /internal/v1/sessions/{id}/end`: ends a session this gateway runs (a terminate
//!   asked of another gateway, which has checked and audited it).
//! - `POST /internal/v1/sessions/{id}/participants`: applies an invitation into a session this
//!   gateway runs as the database now holds it (another gateway revoked it, or changed its
//!   mode, and has written and audited that): a revoked participant's socket closes with 4005
//!   at once ([`participants::apply_here`]).
//! - `POST /internal/v1/sessions/stats`: the live counters of sessions this gateway runs.
//! - `POST /internal/v1/sessions/{id}/take`: takes over a session the sending gateway (which
//!   is stopping) left for this one ([`handover::take`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

use super::attach::{self, AttachQuery};
use super::error::ApiError;
use super::extract::ClientAddr;
use super::forward::Forwarded;
use super::state::AppState;
use crate::gateway::cluster::WhoAmI;
use crate::gateway::cluster::signing::{Refusal, Request as Signable, Signed};
use crate::gateway::sessions::live::Stats;
use crate::gateway::sessions::{engine, handover, participants};

/// `GET /internal/v1/whoami`.
pub async fn whoami(State(state): State<Arc<AppState>>) -> Json<WhoAmI> {
    Json(state.engine.cluster.whoami())
}

/// Checks the signature of a request from another gateway.
async fn verified(
    state: &AppState,
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Signed, ApiError> {
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ");
    let request = Signable {
        method,
        path_and_query,
        cookie: &cookie,
        body,
    };
    let engine = &state.engine;
    engine
        .cluster
        .verify(&engine.db, &request, |name| {
            headers.get(name).and_then(|v| v.to_str().ok())
        })
        .await
        .map_err(|refusal| match refusal {
            Refusal::Unavailable | Refusal::Busy => {
                let mut e =
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", refusal.to_string());
                e.retry_after = Some(1);
                e
            }
            refusal => {
                tracing::debug!("refused a request between gateways: {refusal}");
                ApiError::new(StatusCode::FORBIDDEN, "bad_signature", refusal.to_string())
            }
        })
}

fn path_and_query(parts: &Parts) -> String {
    parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned())
}

/// `GET /internal/v1/sessions/{id}/attach`: the attach of [`attach::attach`], for the person
/// whose cookie the forwarding gateway passed on, from the address it names.
pub async fn forwarded_attach(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<AttachQuery>, QueryRejection>,
    mut parts: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let signed = verified(&state, "GET", &path_and_query(&parts), &parts.headers, b"").await?;
    if let Ok(ip) = signed.client.parse::<IpAddr>() {
        parts.extensions.insert(ClientAddr(ip));
    }
    parts.extensions.insert(Forwarded);
    attach::attach(State(state), Path(id), query, parts, upgrade).await
}

/// A signed `POST`'s JSON body: the signature checked ([`verified`]) before the body is read,
/// then the body parsed (400 `invalid_request` naming what is wrong).
async fn signed_json<T: serde::de::DeserializeOwned>(
    state: &AppState,
    parts: &Parts,
    body: &[u8],
) -> Result<T, ApiError> {
    verified(state, "POST", &path_and_query(parts), &parts.headers, body).await?;
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_request", e.to_string()))
}

/// The body of `POST /internal/v1/sessions/{id}/end`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EndRequest {
    /// How the end is recorded ("terminated by alice").
    pub how: String,
}

/// `POST /internal/v1/sessions/{id}/end`.
pub async fn end(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let asked: EndRequest = signed_json(&state, &parts, &body).await?;
    engine::end_here(&state.engine, &id, &asked.how).await?;
    Ok(Json(serde_json::json!({"ended": id})))
}

/// The body of `POST /internal/v1/sessions/{id}/participants`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParticipantChanged {
    /// The participant's user name.
    pub user: String,
}

/// `POST /internal/v1/sessions/{id}/participants` with `{"user": NAME}`: the person's
/// invitation changed; answers `{"user": NAME, "mode": "write" | "read" | null}`, the
/// invitation now in force (`null`: revoked, their socket was closed).
pub async fn participant_changed(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let asked: ParticipantChanged = signed_json(&state, &parts, &body).await?;
    let mode = participants::apply_here(&state.engine, &id, &asked.user).await?;
    Ok(Json(serde_json::json!({
        "user": asked.user,
        "mode": mode.map(|m| m.as_str()),
    })))
}

/// The body of `POST /internal/v1/sessions/stats`.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatsRequest {
    /// Session ids.
    pub ids: Vec<String>,
}

/// Most sessions one stats request asks about.
pub const MAX_STATS_IDS: usize = 1000;

/// `POST /internal/v1/sessions/stats`: `{"stats":{"id":{…}}}` for those of `ids` running here.
pub async fn stats(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    body: Bytes,
) -> Result<Json<BTreeMap<String, BTreeMap<String, Stats>>>, ApiError> {
    let asked: StatsRequest = signed_json(&state, &parts, &body).await?;
    if asked.ids.len() > MAX_STATS_IDS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("at most {MAX_STATS_IDS} ids at once"),
        ));
    }
    let found = engine::local_stats(&state.engine, &asked.ids).await;
    Ok(Json(BTreeMap::from([("stats".to_owned(), found)])))
}

/// `POST /internal/v1/sessions/{id}/take`: `{"taken": id, "frozen_ms": N}`.
pub async fn take(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    parts: Parts,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let signed = verified(
        &state,
        "POST",
        &path_and_query(&parts),
        &parts.headers,
        &body,
    )
    .await?;
    if state.engine.is_draining() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this gateway is stopping too",
        ));
    }
    // Detached: a taker that has begun finishes even if the giver stops waiting (the giver
    // then reads the outcome from the database), so a session is never half taken.
    let taking = {
        let engine = state.engine.clone();
        let (id, from) = (id.clone(), signed.from.clone());
        tokio::spawn(async move { handover::take(&engine, &id, &from).await })
    };
    let taken = taking
        .await
        .map_err(|e| ApiError::internal(format!("the take-over task failed: {e}")))?;
    match taken {
        Ok(frozen_ms) => Ok(Json(
            serde_json::json!({"taken": id, "frozen_ms": frozen_ms}),
        )),
        Err(handover::TakeError::NoneWaiting(m)) => Err(ApiError::conflict("no_handover", m)),
        Err(handover::TakeError::Db(e)) => Err(e.into()),
        Err(e) => {
            tracing::warn!(session = %id, from = %signed.from, "cannot take over: {e}");
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "take_failed",
                e.to_string(),
            ))
        }
    }
}
