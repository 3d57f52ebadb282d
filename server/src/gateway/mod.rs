//! The gateway: what a person meets. Configuration, the database, users and sign-in, targets,
//! sessions with reasons, the relay to the browser terminal, audit.
//!
//! - [`config`]: the TOML file with `PORTHOLE_*` overrides, validated at start.
//! - [`db`]: the SQLite / PostgreSQL pool and migrations.
//! - [`users`]: users, roles and password hashes.
//! - [`auth`]: sign-in cookies (JWT + server-side login rows), CSRF, Origin, rate limit.
//! - [`policy`]: who may do what (roles from the configuration), reason rules; the one place
//!   that decides; reloaded on SIGHUP and when its file changes.
//! - [`audit`]: the hash-chained audit log; [`audit_api`]: `GET /api/v1/audit`.
//! - [`targets`]: managed nodes from `DescribeInstanceInformation`.
//! - [`sessions`]: the sessions API; [`live`]: one task per live session; [`attach`]: the
//!   browser's WebSocket.
//! - [`recording`]: the asciicast recording of each session; [`search`]: the text index of
//!   what sessions printed, and `GET /api/v1/recordings/search`.
//! - [`pages`]: the server-rendered pages and the embedded browser code.
//! - [`recording`]: asciicast files as sessions run; [`recording_store`]: where finished ones
//!   are kept (the local folder or an S3 bucket).

pub mod attach;
pub mod audit;
pub mod audit_api;
pub mod auth;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod ground;
pub mod live;
pub mod pages;
pub mod policy;
pub mod recording;
pub mod recording_store;
pub mod screen;
pub mod search;
pub mod sessions;
pub mod state;
pub mod targets;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

use self::config::Config;
use self::db::Db;
use self::state::AppState;

/// Largest JSON body accepted by the API.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The Content-Security-Policy of every response: scripts only from the gateway itself (no
/// inline script), no framing. Inline styles are allowed because xterm.js sets them.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Db(#[from] db::DbError),
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

/// The routes of the gateway.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
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
        .route("/api/v1/audit", get(audit_api::list))
        .route("/api/v1/recordings/search", get(search::search))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    Router::new()
        .merge(api)
        .merge(pages::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { error::ApiError::not_found("not_found", "no such page or API path") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::origin_guard,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
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
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.db.ping().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}

/// Connects to the database, applies migrations and builds the shared state.
pub async fn prepare(config: Config) -> Result<Arc<AppState>, StartError> {
    let db = Db::connect(config.database.url.expose()).await?;
    db.migrate().await?;
    let state = AppState::new(config, db).await.map_err(StartError::Other)?;
    reconcile(&state).await?;
    Ok(Arc::new(state))
}

/// How often this gateway marks its live sessions as owned (`sessions.heartbeat_at`).
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A live session whose owner has not marked it for this long belongs to no running gateway.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(120);

/// Sessions recorded as live that no running gateway owns — this gateway's own from before a
/// crash or a kill, or another's whose heartbeat stopped — are terminated with
/// `TerminateSession` and recorded as ended by "gateway restart".
async fn reconcile(state: &AppState) -> Result<(), db::DbError> {
    use sqlx::Row;
    let stale_before = db::now_ms() - HEARTBEAT_STALE.as_millis() as i64;
    let rows = sqlx::query(
        "SELECT s.id, s.target, s.region, s.ssm_session_id, u.name FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         WHERE s.state IN ('starting', 'active') AND (s.owner_gateway = $1 OR s.heartbeat_at < $2)",
    )
    .bind(&state.config.server.gateway_id)
    .bind(stale_before)
    .fetch_all(state.db.pool())
    .await
    .map_err(|e| db::DbError::new("find stale sessions", e))?;
    for row in rows {
        let read = |e| db::DbError::new("read stale session", e);
        let id: String = row.try_get("id").map_err(read)?;
        let target: String = row.try_get("target").map_err(read)?;
        let region: String = row.try_get("region").map_err(read)?;
        let ssm_id: Option<String> = row.try_get("ssm_session_id").map_err(read)?;
        let user: String = row.try_get("name").map_err(read)?;
        let mut terminated = serde_json::Value::Null;
        if let (Some(ssm_id), Some(clients)) = (&ssm_id, state.clients(&region)) {
            let sent = clients
                .ssm
                .terminate_session()
                .session_id(ssm_id)
                .send()
                .await;
            terminated = match sent {
                Ok(_) => serde_json::Value::Bool(true),
                Err(e) => serde_json::Value::String(state::aws_message(&e)),
            };
        }
        let how = "gateway restart";
        let mut tx = state.db.begin_write().await?;
        sqlx::query(
            "UPDATE sessions SET state = 'ended', ended_at = $1, end_reason = $2 WHERE id = $3",
        )
        .bind(db::now_ms())
        .bind(how)
        .bind(&id)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| db::DbError::new("end stale session", e))?;
        let client = audit::Client::default();
        audit::append(
            &mut tx.tx,
            &audit::Event::new(audit::kind::SESSION_END, &user, &client)
                .session(&id, &target)
                .detail(serde_json::json!({
                    "how": how,
                    "ssm_session_id": ssm_id,
                    "terminate_session": terminated,
                })),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(session = %id, "ended a session left live by a stopped gateway");
    }
    Ok(())
}

/// Marks this gateway's live sessions as owned, every [`HEARTBEAT`].
async fn heartbeat(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        // On SQLite a commit between an audit append's read and its write fails the append;
        // the chain's writers and this one take turns (see `Db::lock_writes`).
        let _writes = state.db.lock_writes().await;
        for live in state.live.all() {
            let done = sqlx::query("UPDATE sessions SET heartbeat_at = $1 WHERE id = $2")
                .bind(db::now_ms())
                .bind(&live.id)
                .execute(state.db.pool())
                .await;
            if let Err(e) = done {
                tracing::warn!(session = %live.id, "heartbeat: {e}");
            }
        }
    }
}

/// Serves the gateway on `listener` until `shutdown` resolves, then terminates the live
/// sessions (their end is recorded) and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let state = prepare(config).await?;
    serve_state(state, listener, shutdown).await
}

/// [`serve`] with a state built by [`prepare`] (tests keep a handle on it).
pub async fn serve_state(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let beat = tokio::spawn(heartbeat(state.clone()));
    let watcher = policy::spawn_watcher(state.clone());
    // Recordings whose upload failed (or never ran) are uploaded now, in the background.
    let leftovers = {
        let state = state.clone();
        tokio::spawn(async move {
            let n = recording_store::upload_leftovers(&state).await;
            if n > 0 {
                tracing::info!(count = n, "uploaded recordings left in the spool");
            }
        })
    };
    // On the signal: end every session (attached browsers are told, SSM sessions terminated,
    // the ends audited as "gateway shutdown"), then stop serving; connections still open
    // after SHUTDOWN_GRACE are dropped.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let ending = {
        let state = state.clone();
        async move {
            shutdown.await;
            let _ = stopping_tx.send(());
            end_all(&state, "gateway shutdown").await;
        }
    };
    // Keystroke echoes are small writes: without TCP_NODELAY, Nagle's algorithm holds a
    // second small write for up to 40 ms (docs/performance.md).
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true); // best effort: only latency depends on it
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(ending);
    let served = tokio::select! {
        served = server => served.map_err(|e| StartError::Other(format!("serving failed: {e}"))),
        () = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => Ok(()),
    };
    beat.abort();
    watcher.abort();
    leftovers.abort();
    // Sessions started while stopping, if any.
    end_all(&state, "gateway shutdown").await;
    served
}

/// How long a stopping gateway waits for its connections after ending its sessions.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// Terminates every live session and waits (a bounded time) for their ends to be recorded.
pub async fn end_all(state: &AppState, why: &str) {
    for live in state.live.all() {
        live.ending(why).await;
        if let Some(clients) = state.clients(&live.region) {
            let sent = clients
                .ssm
                .terminate_session()
                .session_id(&live.ssm_session_id)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::warn!(session = %live.id, "TerminateSession failed: {}", state::aws_message(&e));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !state.live.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
