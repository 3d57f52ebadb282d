//! `GET /api/v1/sessions/{id}/attach`: the browser's WebSocket (design §4). Checked before the
//! upgrade: the sign-in cookie, the `Origin`, that the user owns the session and that it is
//! live. Then binary frames carry terminal bytes both ways, text frames carry JSON control
//! messages, and the socket closes with one of the named codes below.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{self as auth, SignedIn, origin_ok};
use super::forward;
use super::state::AppState;
use crate::gateway::policy::{self, JoinMode};
use crate::gateway::sessions::live::{Joiner, LiveSession, ObserveError, Presence, ToBrowser};
use crate::gateway::sessions::participants;
use crate::gateway::store::audit::{self, Event, kind};
use crate::gateway::telemetry::{self, Denied};

/// The session ended (the shell exited, it was terminated, or it failed).
pub const CLOSE_SESSION_ENDED: u16 = 4000;
/// A newer attach of the same session took over.
pub const CLOSE_REPLACED: u16 = 4001;
/// The sign-in stopped being valid while attached (logout, disabled user).
pub const CLOSE_NOT_ALLOWED: u16 = 4003;
/// The browser sent something that is not part of the protocol.
pub const CLOSE_BAD_MESSAGE: u16 = 4400;
/// The owner revoked this participant's invitation (sharing): the reason says who.
pub const CLOSE_REVOKED: u16 = 4005;
/// An observer fell too far behind the session's output.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// The session moved to another gateway (this one is stopping): reconnect, to any gateway,
/// with the output offset reached; nothing is lost.
pub const CLOSE_HANDED_OVER: u16 = 4010;
/// A browser message was larger than [`MAX_BROWSER_MESSAGE`].
pub const CLOSE_TOO_LARGE: u16 = 1009;

/// The reason of a [`CLOSE_HANDED_OVER`] close.
const HANDED_OVER: &str = "handed over to another gateway; reconnect";

/// Largest message accepted from the browser (a paste larger than this must be split).
pub const MAX_BROWSER_MESSAGE: usize = 64 * 1024;
/// How often an attached socket re-checks that its sign-in is still valid.
const RECHECK: Duration = Duration::from_secs(15);
/// Largest terminal size accepted.
pub const MAX_DIMENSION: u32 = 1000;

/// The query of an attach.
#[derive(Debug, Deserialize)]
pub struct AttachQuery {
    /// The output offset the browser has (its byte count after the last `sync`): it gets
    /// exactly the bytes from there when the gateway still holds them, else a snapshot.
    #[serde(default)]
    pub since: Option<u64>,
    /// `observe`: a read-only view for roles that may observe others' sessions.
    #[serde(default)]
    pub mode: Option<String>,
}

/// 409 `too_many_observers`.
fn too_many_observers(id: &str, limit: u32) -> ApiError {
    ApiError::conflict(
        "too_many_observers",
        format!(
            "session {id} already has {limit} observers (sessions.max_observers); try again \
             when one has left"
        ),
    )
}

/// `GET /api/v1/sessions/{id}/attach`.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}/attach",
    operation_id = "attach",
    security(("cookie" = [])),
    params(
        ("id" = String, Path, description = "The session's id"),
        ("since" = Option<u64>, Query, description = "The output offset the page has"),
        ("mode" = Option<String>, Query, description = "`observe`: read-only, for roles that observe others"),
    ),
    responses(
        (status = 101, description = "The terminal's WebSocket (docs/architecture.md)"),
        (status = 400, description = "Not a WebSocket upgrade, or a bad parameter", body = super::schemas::ErrorBody),
        (status = 405, description = "Not a GET", body = super::schemas::ErrorBody),
        (status = 426, description = "The connection cannot be upgraded", body = super::schemas::ErrorBody),
        (status = 401, description = "Not signed in", body = super::schemas::ErrorBody),
        (status = 403, description = "Bad Origin, or not yours to attach or observe", body = super::schemas::ErrorBody),
        (status = 404, description = "No such session of yours", body = super::schemas::ErrorBody),
        (status = 409, description = "Not running, or too many observers", body = super::schemas::ErrorBody),
        (status = 503, description = "Moving to another gateway, or its gateway does not answer: try again", body = super::schemas::ErrorBody),
    )
)]
pub async fn attach(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<AttachQuery>, QueryRejection>,
    parts: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let client = auth::client_of(&parts);
    let signed = auth::signed_in(&state, &parts.headers, client)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    if !origin_ok(&parts.headers, &state.origin) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "bad_origin",
            format!("the Origin header must be {}", state.origin),
        ));
    }
    let Query(query) = query?;
    let upgrade = upgrade?;
    let (view, invited) =
        participants::visible_or_invited(&state.engine, &signed.user, &id).await?;
    let observe = match query.mode.as_deref() {
        None | Some("") | Some("interactive") => false,
        Some("observe") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("mode must be observe or left out, not {other:?}"),
            ));
        }
    };
    if observe {
        if !policy::may_observe(&signed.user, view.user_id()) {
            telemetry::denied(Denied::Observe);
            return Err(ApiError::forbidden(format!(
                "{} may not observe {}'s sessions",
                signed.user.name, view.user
            )));
        }
        let Some(live) = state.engine.live.get(&id) else {
            return forward::attach(&state, &parts, &view, upgrade, MAX_BROWSER_MESSAGE).await;
        };
        // Each observer holds a queue in the gateway: their number is bounded (checked again
        // by the session when the socket is open, for observers arriving at once).
        let limit = state.engine.config.sessions.max_observers;
        if let Ok(stats) = live.stats().await
            && stats.observers.len() >= limit as usize
        {
            return Err(too_many_observers(&id, limit));
        }
        let headers = parts.headers.clone();
        let owner_id = view.user_id();
        let watching = Watching {
            joiner: Joiner::Observer,
            owner_id,
            owner: view.user.clone(),
            invited_by: None,
        };
        return Ok(upgrade
            .max_message_size(MAX_BROWSER_MESSAGE)
            .max_frame_size(MAX_BROWSER_MESSAGE)
            .on_upgrade(move |socket| {
                observe_relay(state, signed, live, headers, watching, socket)
            }));
    }
    if let (false, Some(invited)) = (policy::may_attach(&signed.user, view.user_id()), invited) {
        // Invited into someone else's session: their own roles must still allow it.
        participants::may_join(&state.engine, &signed.user, &view).await?;
        let Some(live) = state.engine.live.get(&id) else {
            return forward::attach(&state, &parts, &view, upgrade, MAX_BROWSER_MESSAGE).await;
        };
        let headers = parts.headers.clone();
        let watching = Watching {
            joiner: Joiner::of(participants::mode_of(&invited)),
            owner_id: view.user_id(),
            owner: view.user.clone(),
            invited_by: Some(invited.invited_by.clone()),
        };
        return Ok(upgrade
            .max_message_size(MAX_BROWSER_MESSAGE)
            .max_frame_size(MAX_BROWSER_MESSAGE)
            .on_upgrade(move |socket| {
                observe_relay(state, signed, live, headers, watching, socket)
            }));
    }
    if !policy::may_attach(&signed.user, view.user_id()) {
        telemetry::denied(Denied::Attach);
        return Err(ApiError::forbidden(format!(
            "only {} may attach to this session",
            view.user
        )));
    }
    let Some(live) = state.engine.live.get(&id) else {
        return forward::attach(&state, &parts, &view, upgrade, MAX_BROWSER_MESSAGE).await;
    };
    let headers = parts.headers.clone();
    Ok(upgrade
        .max_message_size(MAX_BROWSER_MESSAGE)
        .max_frame_size(MAX_BROWSER_MESSAGE)
        .on_upgrade(move |socket| relay(state, signed, live, headers, query.since, socket)))
}

/// The close for a session that is not here any more: moved to another gateway (4010), or
/// ended (4000).
fn gone(live: &LiveSession) -> Message {
    if live.is_moved() {
        close(CLOSE_HANDED_OVER, HANDED_OVER)
    } else {
        close(CLOSE_SESSION_ENDED, "the session has ended")
    }
}

fn close(code: u16, reason: &str) -> Message {
    // Close reasons are limited to 123 bytes.
    let mut text = reason.to_owned();
    while text.len() > 123 {
        text.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(text),
    }))
}

/// A text message from the browser: a terminal size, or how much output it has drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// The terminal's size, 1 to [`MAX_DIMENSION`] each.
    Resize {
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
    },
    /// The output offset the page has drawn.
    Ack {
        /// Bytes.
        bytes: u64,
    },
}

/// Reads and checks a browser's text message; the error is the reason the socket is closed
/// with ([`CLOSE_BAD_MESSAGE`]).
pub fn parse_control(text: &str) -> Result<Control, String> {
    match serde_json::from_str::<Control>(text) {
        Ok(Control::Resize { cols, rows })
            if !(1..=MAX_DIMENSION).contains(&cols) || !(1..=MAX_DIMENSION).contains(&rows) =>
        {
            Err(format!("bad size {cols}x{rows}: 1 to {MAX_DIMENSION} each"))
        }
        Ok(control) => Ok(control),
        Err(e) => Err(format!("bad control message: {e}")),
    }
}

async fn relay(
    state: Arc<AppState>,
    signed: SignedIn,
    live: Arc<LiveSession>,
    headers: HeaderMap,
    since: Option<u64>,
    mut socket: WebSocket,
) {
    let _open = state.metrics.sockets.open();
    // The attach is recorded before any byte flows; without the record, no attach.
    if record(&state, &signed, &live, kind::SESSION_ATTACH, json!({}))
        .await
        .is_err()
    {
        let _ = socket.send(close(1011, "audit failed")).await;
        return;
    }
    let (attach_id, mut from_session) = match live.attach(since).await {
        Ok(pair) => pair,
        Err(_) => {
            let _ = socket.send(gone(&live)).await;
            return;
        }
    };
    telemetry::attached(false);
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    let why: String = loop {
        tokio::select! {
            // The session's word first: a hand-over's close must not lose to an input error.
            biased;
            message = from_session.recv() => match message {
                Some(ToBrowser::Output(bytes)) => {
                    if socket.send(Message::Binary(bytes)).await.is_err() {
                        break "browser gone".into();
                    }
                }
                Some(ToBrowser::Status(s)) => {
                    let text = json!({"type": "status", "state": s}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break "browser gone".into();
                    }
                }
                Some(ToBrowser::Sync(offset)) => {
                    let text = json!({"type": "sync", "offset": offset}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break "browser gone".into();
                    }
                }
                Some(ToBrowser::Resync) => {
                    let text = json!({"type": "resync"}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break "browser gone".into();
                    }
                }
                Some(ToBrowser::Warning { message, seconds_left }) => {
                    let text = json!({"type": "warning", "message": message, "seconds_left": seconds_left}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break "browser gone".into();
                    }
                }
                Some(ToBrowser::Closed(how)) => {
                    let text = json!({"type": "closed", "reason": how}).to_string();
                    let _ = socket.send(Message::Text(text.into())).await;
                    let _ = socket.send(close(CLOSE_SESSION_ENDED, &how)).await;
                    break format!("session ended: {how}");
                }
                Some(ToBrowser::Replaced) => {
                    let _ = socket
                        .send(close(CLOSE_REPLACED, "replaced by a newer attach"))
                        .await;
                    break "replaced by a newer attach".into();
                }
                Some(ToBrowser::Observers(names)) => {
                    let text = json!({"type": "observers", "names": names}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break "browser gone".into();
                    }
                }
                Some(ToBrowser::Presence(presence)) => {
                    if socket.send(presence_message(&presence)).await.is_err() {
                        break "browser gone".into();
                    }
                }
                Some(ToBrowser::TooSlow | ToBrowser::Revoked(_) | ToBrowser::Refused | ToBrowser::Size { .. }) => {}
                Some(ToBrowser::HandedOver) => {
                    let _ = socket.send(close(CLOSE_HANDED_OVER, HANDED_OVER)).await;
                    break "handed over to another gateway".into();
                }
                None => {
                    let _ = socket.send(gone(&live)).await;
                    break "session ended".into();
                }
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    // Moving: the keystroke would be lost here; the page reconnects and the
                    // person types on at the next gateway.
                    if live.is_moved() || live.input(bytes).await.is_err() {
                        let _ = socket.send(gone(&live)).await;
                        break "session ended or moved".into();
                    }
                }
                Some(Ok(Message::Text(text))) => {
                    match parse_control(text.as_str()) {
                        Ok(Control::Resize { cols, rows }) => {
                            let _ = live.resize(cols, rows).await; // ended: the close follows
                        }
                        Ok(Control::Ack { bytes }) => live.ack(attach_id, bytes).await,
                        Err(reason) => {
                            let _ = socket.send(close(CLOSE_BAD_MESSAGE, &reason)).await;
                            break reason;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "browser closed".into(),
                Some(Ok(_)) => {} // pings are answered by the library
                Some(Err(e)) => {
                    // The library refuses a message over the limit; say so with 1009.
                    let text = e.to_string();
                    if text.contains("too long") || text.contains("Space limit") {
                        let reason = format!("message larger than {MAX_BROWSER_MESSAGE} bytes");
                        let _ = socket.send(close(CLOSE_TOO_LARGE, &reason)).await;
                    }
                    break format!("browser socket error: {text}");
                }
            },
            _ = recheck.tick() => {
                let still = auth::signed_in(&state, &headers, signed.client.clone()).await;
                if !matches!(still, Ok(Some(_))) {
                    let _ = socket.send(close(CLOSE_NOT_ALLOWED, "your sign-in ended")).await;
                    break "sign-in ended".into();
                }
            }
        }
    };
    live.detach(attach_id).await;
    let _ = record(
        &state,
        &signed,
        &live,
        kind::SESSION_DETACH,
        json!({"why": why}),
    )
    .await;
}

/// How someone other than the owner watches a session: as an observer, or as an invited
/// participant (and who invited them).
#[derive(Debug, Clone)]
struct Watching {
    joiner: Joiner,
    owner_id: i64,
    owner: String,
    invited_by: Option<String>,
}

/// `{"type":"presence","people":[{"name","mode"}],"last_typed":NAME|null}`.
fn presence_message(presence: &Presence) -> Message {
    let people: Vec<serde_json::Value> = presence
        .people
        .iter()
        .map(|(name, mode)| json!({"name": name, "mode": mode}))
        .collect();
    let text = json!({"type": "presence", "people": people, "last_typed": presence.last_typed});
    Message::Text(text.to_string().into())
}

/// The view of an observer or of an invited participant: the screen, then live output. An
/// observer's input is refused (told once); a participant's goes to the session, which sends
/// it when they were invited to write and refuses it ([`ToBrowser::Refused`]) when to read.
/// Like the owner's relay it checks again every [`RECHECK`] that the sign-in holds, and also
/// that the policy in force still lets this person observe (a role can lose `observe_others`
/// in a reload), or, for a participant, every `sessions.participant_recheck_seconds` that they
/// are still invited (with which mode) and their roles still allow the session: otherwise it
/// closes with 4003 (4005 when the invitation was revoked). A revocation on this gateway, or
/// pushed here by the gateway that made it, closes the socket at once ([`ToBrowser::Revoked`],
/// 4005); the look at the table is the fallback when the push could not be made.
async fn observe_relay(
    state: Arc<AppState>,
    signed: SignedIn,
    live: Arc<LiveSession>,
    headers: HeaderMap,
    watching: Watching,
    mut socket: WebSocket,
) {
    let _open = state.metrics.sockets.open();
    let participant = watching.joiner.is_participant();
    let limit = state.engine.config.sessions.max_observers as usize;
    let added = if participant {
        live.join(&signed.user.name, watching.joiner).await
    } else {
        live.observe(&signed.user.name, limit).await
    };
    let (id, mut from_session) = match added {
        Ok(added) => added,
        Err(ObserveError::Ended) => {
            let _ = socket
                .send(close(CLOSE_SESSION_ENDED, "the session has ended"))
                .await;
            return;
        }
        Err(ObserveError::Full) => {
            // 1008: policy violation, the closest standard code.
            let _ = socket
                .send(close(1008, "the session has as many observers as allowed"))
                .await;
            return;
        }
    };
    // Audited before a byte reaches the watcher (its queue is only read below).
    let (opened, ended) = if participant {
        (kind::PARTICIPANT_ATTACH, kind::PARTICIPANT_DETACH)
    } else {
        (kind::SESSION_OBSERVE, kind::SESSION_OBSERVE_END)
    };
    let detail = if participant {
        json!({
            "mode": watching.joiner.as_str(),
            "owner": watching.owner,
            "invited_by": watching.invited_by,
        })
    } else {
        json!({})
    };
    if record(&state, &signed, &live, opened, detail)
        .await
        .is_err()
    {
        live.unobserve(id).await;
        let _ = socket.send(close(1011, "audit failed")).await;
        return;
    }
    telemetry::attached(true);
    let mut told = false;
    let mut recheck = tokio::time::interval(if participant {
        state.engine.config.sessions.participant_recheck()
    } else {
        RECHECK
    });
    // The mode this relay last knew of (the session task holds the one in force).
    let mut joiner = watching.joiner;
    recheck.tick().await;
    let why: String = loop {
        tokio::select! {
            _ = recheck.tick() => {
                let still = auth::signed_in(&state, &headers, signed.client.clone()).await;
                let refusal = match still {
                    Ok(Some(now)) if participant => match still_invited(&state, &now, &live, &watching.owner).await {
                        Ok(Some(mode)) if Joiner::of(mode) != joiner => {
                            // Changed on another gateway and not pushed here: follow it now.
                            joiner = Joiner::of(mode);
                            live.set_mode(&now.user.name, mode).await;
                            None
                        }
                        Ok(_) => None,
                        Err(refusal) => Some(refusal),
                    },
                    Ok(Some(now)) if policy::may_observe(&now.user, watching.owner_id) => None,
                    Ok(Some(_)) => Some((CLOSE_NOT_ALLOWED, "you may no longer observe this session".to_owned(), "observe no longer allowed")),
                    _ => Some((CLOSE_NOT_ALLOWED, "your sign-in ended".to_owned(), "sign-in ended")),
                };
                if let Some((code, told_why, why)) = refusal {
                    let _ = socket.send(close(code, &told_why)).await;
                    break why.into();
                }
            }
            message = from_session.recv() => {
                let out = match message {
                    Some(ToBrowser::Output(bytes)) => Message::Binary(bytes),
                    Some(ToBrowser::Status(s)) => Message::Text(json!({"type": "status", "state": s}).to_string().into()),
                    Some(ToBrowser::Sync(offset)) => Message::Text(json!({"type": "sync", "offset": offset}).to_string().into()),
                    Some(ToBrowser::Presence(presence)) => presence_message(&presence),
                    Some(ToBrowser::Size { cols, rows }) => Message::Text(json!({"type": "size", "cols": cols, "rows": rows}).to_string().into()),
                    Some(ToBrowser::Refused) => Message::Text(
                        json!({"type": "refused", "message": "you were invited read-only: what you type is not sent"})
                            .to_string()
                            .into(),
                    ),
                    Some(ToBrowser::Replaced) if participant => {
                        let _ = socket
                            .send(close(CLOSE_REPLACED, "replaced by a newer attach"))
                            .await;
                        break "replaced by a newer attach".into();
                    }
                    Some(ToBrowser::Revoked(how)) => {
                        let _ = socket.send(close(CLOSE_REVOKED, &how)).await;
                        break "invitation revoked".into();
                    }
                    Some(ToBrowser::Warning { .. } | ToBrowser::Observers(_) | ToBrowser::Replaced | ToBrowser::Resync) => continue,
                    Some(ToBrowser::Closed(how)) => {
                        let text = json!({"type": "closed", "reason": how}).to_string();
                        let _ = socket.send(Message::Text(text.into())).await;
                        let _ = socket.send(close(CLOSE_SESSION_ENDED, &how)).await;
                        break format!("session ended: {how}");
                    }
                    Some(ToBrowser::HandedOver) => {
                        let _ = socket.send(close(CLOSE_HANDED_OVER, HANDED_OVER)).await;
                        break "handed over to another gateway".into();
                    }
                    Some(ToBrowser::TooSlow) => {
                        let _ = socket.send(close(CLOSE_TOO_SLOW, "fell too far behind the session")).await;
                        break "too slow".into();
                    }
                    None => {
                        let _ = socket.send(close(CLOSE_SESSION_ENDED, "the session has ended")).await;
                        break "session ended".into();
                    }
                };
                if socket.send(out).await.is_err() {
                    break "browser gone".into();
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) if participant => {
                    // The session decides: sent for a writer, refused for a reader.
                    if live.is_moved() || live.input_from(id, bytes).await.is_err() {
                        let _ = socket.send(gone(&live)).await;
                        break "session ended or moved".into();
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    // Read-only: input is refused, and the observer is told once.
                    if !told {
                        told = true;
                        let text = json!({"type": "refused", "message": "observing read-only: input is not sent"}).to_string();
                        if socket.send(Message::Text(text.into())).await.is_err() {
                            break "browser gone".into();
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "browser closed".into(),
                // Resizes and acks do not apply: the owner's terminal decides the size, and
                // a watcher never holds the session back.
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("browser socket error: {e}"),
            },
        }
    };
    live.unobserve(id).await;
    let _ = record(&state, &signed, &live, ended, json!({"why": why})).await;
}

/// Why a participant's socket must close now (`Err`): their invitation was revoked (4005), or
/// their roles no longer allow the session (4003). While they may stay, the mode of their
/// invitation (`None`: the database could not be asked this time; looked at again next tick).
async fn still_invited(
    state: &AppState,
    now: &SignedIn,
    live: &LiveSession,
    owner: &str,
) -> Result<Option<JoinMode>, (u16, String, &'static str)> {
    let engine = &state.engine;
    let seen = participants::visible_or_invited(engine, &now.user, &live.id).await;
    let (view, invited) = match seen {
        Ok((view, Some(invited))) => (view, invited),
        Ok((_, None)) | Err(crate::gateway::sessions::Error::UnknownSession(_)) => {
            return Err((
                CLOSE_REVOKED,
                participants::revoked_reason(owner),
                "invitation revoked",
            ));
        }
        Err(e) => {
            // The database failed for a moment: looked at again at the next tick.
            tracing::warn!(session = %live.id, "checking an invitation: {e}");
            return Ok(None);
        }
    };
    match participants::may_join(engine, &now.user, &view).await {
        Ok(()) => Ok(Some(participants::mode_of(&invited))),
        Err(crate::gateway::sessions::Error::Forbidden(why)) => {
            Err((CLOSE_NOT_ALLOWED, why, "join no longer allowed"))
        }
        Err(e) => {
            tracing::warn!(session = %live.id, "checking an invitation: {e}");
            Ok(None)
        }
    }
}

/// Appends an event of `signed` on `live` in its own transaction; a failure is logged (the
/// caller refuses the attach when the opening event cannot be written).
async fn record(
    state: &AppState,
    signed: &SignedIn,
    live: &LiveSession,
    kind: &'static str,
    detail: serde_json::Value,
) -> Result<(), ()> {
    let event = Event::new(kind, &signed.user.name, &signed.client)
        .session(&live.id, &live.target)
        .detail(detail);
    audit::record(&state.engine.db, &event)
        .await
        .map(|_| ())
        .map_err(|e| tracing::error!(session = %live.id, "audit: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_are_parsed_and_checked() {
        assert_eq!(
            parse_control(r#"{"type":"resize","cols":80,"rows":24}"#),
            Ok(Control::Resize { cols: 80, rows: 24 })
        );
        assert_eq!(
            parse_control(r#"{"type":"ack","bytes":18446744073709551615}"#),
            Ok(Control::Ack { bytes: u64::MAX })
        );
        for (text, words) in [
            (r#"{"type":"resize","cols":0,"rows":24}"#, "bad size 0x24"),
            (
                r#"{"type":"resize","cols":80,"rows":1001}"#,
                "1 to 1000 each",
            ),
            (
                r#"{"type":"resize","cols":-1,"rows":5}"#,
                "bad control message",
            ),
            (r#"{"type":"paste","text":"x"}"#, "bad control message"),
            (r#"{"type":"ack","bytes":1,"extra":true}"#, "unknown field"),
            ("not json", "bad control message"),
            ("", "bad control message"),
        ] {
            let e = parse_control(text).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
        }
    }
}
