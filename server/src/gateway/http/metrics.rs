//! `GET /metrics`: Prometheus text. The counters and histograms the layers record
//! (`gateway::telemetry`) come from the process's recorder ([`Exporter`]); the gauges of this
//! gateway's own state (live sessions, browser sockets, file transfers, database connections)
//! are read at each scrape and written after them.
//!
//! With `metrics.bearer_token` a scrape needs `Authorization: Bearer <token>` (401 otherwise;
//! compared in constant time). With `metrics.listen` the route is served there only, by
//! [`router`], and the main listener answers 404 for it.
//!
//! [`Exporter`]: super::exporter::Exporter

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::error::ApiError;
use super::state::AppState;
use crate::gateway::telemetry;

/// The content type of Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The router of `metrics.listen`: `/metrics` and nothing else.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("not_found", "only /metrics is served here") })
        .with_state(state)
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let exporter = &state.metrics;
    if !exporter.allows(&headers) {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "/metrics needs Authorization: Bearer <metrics.bearer_token>",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"porthole metrics\""),
        );
        return response;
    }
    exporter.handle.run_upkeep();
    let mut text = exporter.handle.render();
    let pool = state.engine.db.pool();
    let in_use = (pool.size() as usize).saturating_sub(pool.num_idle());
    for (name, help, value) in [
        (
            telemetry::SESSIONS_LIVE,
            "Sessions live in this gateway.",
            state.engine.live.len(),
        ),
        (
            telemetry::BROWSER_SOCKETS_OPEN,
            "Browser WebSockets open (attached and observing).",
            exporter.sockets.get(),
        ),
        (
            telemetry::FILE_TRANSFERS_IN_FLIGHT,
            "File transfers running (at most files.max_concurrent).",
            state.engine.transfers.in_flight(),
        ),
        (
            telemetry::DB_CONNECTIONS_IN_USE,
            "Database connections in use.",
            in_use,
        ),
    ] {
        gauge(&mut text, name, help, value);
    }
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response()
}

/// Appends a gauge in the text format.
fn gauge(text: &mut String, name: &str, help: &str, value: usize) {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = write!(
        text,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_are_written_in_the_text_format() {
        let mut text = String::from("# TYPE a counter\na 1");
        gauge(&mut text, "porthole_x", "X.", 3);
        assert_eq!(
            text,
            "# TYPE a counter\na 1\n# HELP porthole_x X.\n# TYPE porthole_x gauge\nporthole_x 3\n\n"
        );
    }
}
