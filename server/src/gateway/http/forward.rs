//! An attach (or observe) that reaches a gateway which does not run the session is forwarded
//! to the gateway that does: a WebSocket to its `/internal/v1/sessions/{id}/attach`, signed
//! with the cluster's key ([`crate::gateway::cluster::signing`]), carrying the browser's
//! cookie, `Origin` and user agent so that the owner checks the person as if they had come
//! straight to it. The owner's refusal (its status and error body) is the browser's answer;
//! once open, messages and the close code pass through unchanged both ways: the browser sees
//! no difference.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use super::error::ApiError;
use super::extract::{self as auth};
use super::state::AppState;
use crate::gateway::cluster::PEER_TIMEOUT;
use crate::gateway::cluster::signing::Request as Signable;
use crate::gateway::store::gateways;
use crate::gateway::store::sessions::SessionView;

/// Marks a request that another gateway forwarded here: it is not forwarded again.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded;

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The answer to an attach of `view`, which this gateway does not run: forwarded to its
/// owner, or why it cannot be.
pub async fn attach(
    state: &Arc<AppState>,
    parts: &Parts,
    view: &SessionView,
    upgrade: WebSocketUpgrade,
    max_message: usize,
) -> Result<Response, ApiError> {
    let not_running = || {
        ApiError::conflict(
            "session_ended",
            format!("session {} is not running ({})", view.id, view.state),
        )
    };
    if !view.is_running() {
        return Err(not_running());
    }
    let engine = &state.engine;
    let owner = gateways::owner_of(&engine.db, &view.id)
        .await?
        .filter(|g| g.id != engine.cluster.id && g.is_alive(engine.cluster.fresh_after()));
    let (Some(owner), None) = (owner, parts.extensions.get::<Forwarded>()) else {
        // Running, but not here and not (yet) elsewhere: moving between gateways, or ended
        // a moment ago.
        if engine.is_draining() || gateways::handover_pending(&engine.db, &view.id).await? {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "handing_over",
                format!(
                    "session {} is moving to another gateway; try again in a moment",
                    view.id
                ),
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        return Err(not_running());
    };
    if !engine.cluster.is_clustered() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_here",
            format!(
                "session {} runs on gateway {}, and this gateway cannot forward to it (no \
                 cluster.secret)",
                view.id, owner.id
            ),
        ));
    }
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let path = format!("/internal/v1/sessions/{}/attach{query}", view.id);
    let cookie = joined(parts, header::COOKIE);
    let client = auth::client_of(parts).addr;
    let signable = Signable {
        method: "GET",
        path_and_query: &path,
        cookie: &cookie,
        body: b"",
    };
    let Some(signed) = engine.cluster.sign(&owner.id, &client, &signable) else {
        return Err(not_running());
    };
    let base = owner
        .internal_url
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let mut request = format!("{base}{path}")
        .into_client_request()
        .map_err(|e| ApiError::internal(format!("forward to {}: {e}", owner.id)))?;
    let headers = request.headers_mut();
    for (name, value) in signed {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    for name in [header::ORIGIN, header::USER_AGENT] {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    if !cookie.is_empty()
        && let Ok(value) = HeaderValue::from_str(&cookie)
    {
        headers.insert(header::COOKIE, value);
    }
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_message.max(16 << 20)))
        .max_frame_size(Some(max_message.max(16 << 20)));
    let connected = tokio::time::timeout(
        PEER_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(request, Some(config), true),
    )
    .await;
    let upstream = match connected {
        Ok(Ok((upstream, _))) => upstream,
        Ok(Err(tungstenite::Error::Http(answer))) => return Ok(passed_on(*answer)),
        Ok(Err(e)) => return Err(unreachable_owner(&view.id, &owner.id, &e.to_string())),
        Err(_) => return Err(unreachable_owner(&view.id, &owner.id, "timed out")),
    };
    tracing::debug!(session = %view.id, owner = %owner.id, "attach forwarded");
    Ok(upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| pump(socket, upstream)))
}

fn unreachable_owner(id: &str, owner: &str, why: &str) -> ApiError {
    tracing::warn!(session = %id, owner, "cannot forward an attach: {why}");
    let mut e = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "owner_unreachable",
        format!("the gateway running session {id} ({owner}) does not answer; try again shortly"),
    );
    e.retry_after = Some(2);
    e
}

/// Every value of header `name`, joined as one `Cookie` header would be.
fn joined(parts: &Parts, name: header::HeaderName) -> String {
    parts
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The owner's refusal, as the owner gave it.
fn passed_on(answer: tungstenite::http::Response<Option<Vec<u8>>>) -> Response {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let retry_after = answer
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let mut response = (status, Body::from(answer.into_body().unwrap_or_default())).into_response();
    if let Some(value) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    if let Some(value) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Relays messages both ways until either side closes; a close (its code and reason) is
/// passed on.
async fn pump(mut browser: WebSocket, upstream: Upstream) {
    let (mut up_tx, mut up_rx) = upstream.split();
    loop {
        tokio::select! {
            from_owner = up_rx.next() => match from_owner {
                Some(Ok(message)) => {
                    let closing = matches!(message, tungstenite::Message::Close(_));
                    if let Some(message) = to_browser(message)
                        && browser.send(message).await.is_err()
                    {
                        break;
                    }
                    if closing {
                        break;
                    }
                }
                Some(Err(_)) | None => {
                    let _ = browser
                        .send(ws::Message::Close(Some(ws::CloseFrame {
                            code: 1011,
                            reason: "the gateway running the session went away".into(),
                        })))
                        .await;
                    break;
                }
            },
            from_browser = browser.recv() => match from_browser {
                Some(Ok(message)) => {
                    let closing = matches!(message, ws::Message::Close(_));
                    if let Some(message) = to_owner(message)
                        && up_tx.send(message).await.is_err()
                    {
                        break;
                    }
                    if closing {
                        break;
                    }
                }
                Some(Err(_)) | None => {
                    let _ = up_tx.send(tungstenite::Message::Close(None)).await;
                    break;
                }
            },
        }
    }
    let _ = up_tx.close().await;
}

fn to_browser(message: tungstenite::Message) -> Option<ws::Message> {
    Some(match message {
        tungstenite::Message::Binary(bytes) => ws::Message::Binary(bytes),
        tungstenite::Message::Text(text) => ws::Message::Text(text.as_str().into()),
        tungstenite::Message::Close(frame) => ws::Message::Close(frame.map(|f| ws::CloseFrame {
            code: f.code.into(),
            reason: f.reason.as_str().into(),
        })),
        // Pings are answered by each library on its own hop.
        tungstenite::Message::Ping(_)
        | tungstenite::Message::Pong(_)
        | tungstenite::Message::Frame(_) => return None,
    })
}

fn to_owner(message: ws::Message) -> Option<tungstenite::Message> {
    Some(match message {
        ws::Message::Binary(bytes) => tungstenite::Message::Binary(bytes),
        ws::Message::Text(text) => tungstenite::Message::Text(text.as_str().into()),
        ws::Message::Close(frame) => {
            tungstenite::Message::Close(frame.map(|f| tungstenite::protocol::CloseFrame {
                code: f.code.into(),
                reason: f.reason.as_str().into(),
            }))
        }
        ws::Message::Ping(_) | ws::Message::Pong(_) => return None,
    })
}
