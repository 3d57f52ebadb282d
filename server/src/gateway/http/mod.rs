//! HTTP: the router, the security headers, the extractors for the signed-in person, the API
//! handlers (one file per resource), the browser's WebSocket and the pages. Handlers parse the
//! request, call one function of the engine or identity, and turn its answer into a response;
//! [`error::ApiError`] is the one place errors become responses.

pub mod access_pages;
pub mod attach;
pub mod audit;
pub mod auth;
pub mod error;
pub mod exporter;
pub mod extract;
pub mod files;
pub mod forward;
pub mod internal;
pub mod labels;
pub mod layout;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod pages;
pub mod participants;
pub mod request_id;
pub mod requests;
pub mod schemas;
pub mod search;
pub mod sessions;
pub mod settings;
pub mod sso;
pub mod state;
pub mod targets;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;

pub use self::state::AppState;

/// Largest JSON body accepted by the API.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The Content-Security-Policy of every response: scripts only from the gateway itself (no
/// inline script), no framing. Inline styles are allowed because xterm.js sets them.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The routes of the gateway.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route(
            "/api/v1/me/settings",
            get(settings::get_settings).put(settings::put_settings),
        )
        .route("/api/v1/targets", get(targets::list))
        .route(
            "/api/v1/sessions",
            get(sessions::list).post(sessions::create),
        )
        .route(
            "/api/v1/sessions/{id}",
            get(sessions::get_one).delete(sessions::terminate),
        )
        .route("/api/v1/sessions/{id}/attach", get(attach::attach))
        .route("/api/v1/sessions/{id}/recording", get(sessions::recording))
        .route(
            "/api/v1/sessions/{id}/files",
            get(files::download).post(files::upload),
        )
        .route(
            "/api/v1/sessions/{id}/labels",
            get(labels::get_labels).put(labels::put_labels),
        )
        .route(
            "/api/v1/sessions/{id}/participants",
            get(participants::list).post(participants::invite),
        )
        .route(
            "/api/v1/sessions/{id}/participants/{user}",
            axum::routing::delete(participants::revoke),
        )
        .route(
            "/api/v1/requests",
            get(requests::list).post(requests::create),
        )
        .route("/api/v1/requests/{id}", get(requests::get_one))
        .route("/api/v1/requests/{id}/approve", post(requests::approve))
        .route("/api/v1/requests/{id}/deny", post(requests::deny))
        .route("/api/v1/requests/{id}/revoke", post(requests::revoke))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/notifications", get(notifications::list))
        .route("/api/v1/recordings/search", get(search::search))
        .route("/api/v1/recordings/labels", get(labels::search_labels))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    // `/metrics` here unless `metrics.listen` serves it alone (then: the 404 of the fallback).
    let metrics = match state.metrics.on_main_listener() {
        true => Router::new().route("/metrics", get(metrics::metrics)),
        false => Router::new(),
    };
    Router::new()
        .merge(api)
        .merge(metrics)
        .merge(pages::routes())
        .merge(access_pages::routes())
        .route("/auth/oidc/login", get(sso::login))
        .route("/auth/oidc/callback", get(sso::callback))
        .route(crate::gateway::cluster::WHOAMI_PATH, get(internal::whoami))
        .route(
            "/internal/v1/sessions/{id}/attach",
            get(internal::forwarded_attach),
        )
        .route("/internal/v1/sessions/{id}/end", post(internal::end))
        .route(
            "/internal/v1/sessions/{id}/participants",
            post(internal::participant_changed),
        )
        .route("/internal/v1/sessions/stats", post(internal::stats))
        .route("/internal/v1/sessions/{id}/take", post(internal::take))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { error::ApiError::not_found("not_found", "no such page or API path") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::origin_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::client_addr,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A body sent slowly holds its connection: bounded like the headers (listen.rs).
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(
            state.config.server.read_timeout_seconds,
        )))
        // If not present: the playback page sets its own (CSP plus 'wasm-unsafe-eval', see
        // pages::PLAYER_CSP); no other handler sets one.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // If not present: a terminal page shown as a tab sets SAMEORIGIN (pages::EMBED_CSP);
        // no other handler sets one.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        // Outermost: every answer, the Origin guard's and the body limit's included, has an id.
        .layer(axum::middleware::from_fn(request_id::assign))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.engine.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if state.engine.db.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}
