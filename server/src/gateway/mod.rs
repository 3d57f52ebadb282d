//! The gateway: what a person meets. Its layers import only downward (`tests/layers.rs`
//! holds the rules):
//!
//! - [`facts`]: plain data every layer shares (a person, their roles and grants, a node).
//! - [`telemetry`]: metric names and the functions every layer counts with (`/metrics`).
//! - [`policy`]: who may do what; a pure decision on facts.
//! - [`config`]: the TOML file with `PORTHOLE_*` overrides, validated at start.
//! - [`aws`]: AWS clients per region, the managed nodes.
//! - [`store`]: the database, the audit chain, recordings storage, search queries.
//! - [`cluster`]: this gateway among the others on the database: registration, signed
//!   requests between gateways, the keys from `cluster.secret`.
//! - [`identity`]: users, passwords, sign-in and its tokens.
//! - [`notify`]: webhook notifications of access requests: the queue and its worker.
//! - [`sessions`]: the session engine and what a live session runs.
//! - [`http`]: routes, extractors, API handlers, the browser's WebSocket, pages.
//! - this module: builds the state, runs the server and its background tasks ([`reload`]:
//!   the policy watcher).
//!
//! `docs/architecture.md` draws the layers; `tests/layers.rs` checks the direction.

pub mod access;
pub mod aws;
pub mod cluster;
pub mod config;
pub mod facts;
pub mod http;
pub mod identity;
pub mod listen;
pub mod notify;
pub mod policy;
pub mod reload;
pub mod sessions;
pub mod store;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use self::config::Config;
use self::http::AppState;
use self::identity::Identity;
use self::policy::PolicyHandle;
use self::sessions::{Engine, handover, upkeep};
use self::store::db::{Db, DbError};
use self::store::gateways;
use self::store::recordings;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be reached or migrated.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}

/// Connects to the database, applies migrations and builds the shared state; registers this
/// gateway (refused while another running process holds its id), then ends the sessions left
/// live by a stopped gateway ([`upkeep::reconcile`]).
pub async fn prepare(config: Config) -> Result<Arc<AppState>, StartError> {
    // First: the recorder is installed before anything is counted.
    let metrics = http::exporter::Exporter::new(&config.metrics)
        .await
        .map_err(StartError::Other)?;
    let db = Db::connect(config.database.url.expose()).await?;
    db.migrate().await?;
    let config = Arc::new(config);
    let proxies = config
        .server
        .trusted_networks()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let policy = Arc::new(
        PolicyHandle::load(&config.policy, config.source.as_deref()).map_err(StartError::Other)?,
    );
    let identity = Identity::new(&config, db.clone(), policy.clone()).map_err(StartError::Other)?;
    let engine = Arc::new(Engine::new(config.clone(), db, policy).await);
    engine
        .cluster
        .claim(&engine.db)
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    upkeep::reconcile(&engine, upkeep::Sweep::Start).await?;
    Ok(Arc::new(AppState {
        metrics,
        origin: config.origin(),
        config,
        engine,
        identity,
        proxies,
    }))
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
    let app = http::router(state.clone());
    let header_read_timeout = Duration::from_secs(state.config.server.read_timeout_seconds);
    let engine = state.engine.clone();
    let beat = tokio::spawn(upkeep::heartbeat(engine.clone()));
    let sweeper = tokio::spawn(access::run(engine.clone(), state.clone()));
    let grants = tokio::spawn(sessions::approvals::run(engine.clone()));
    let watcher = reload::spawn_watcher(engine.policy.clone(), engine.db.clone());
    // Webhook deliveries queued by any gateway on the database (`notify`).
    let notifier = tokio::spawn(notify::run(engine.db.clone(), state.config.clone()));
    // `metrics.listen`: /metrics alone, until the gateway stops.
    let exporter = state.metrics.take_listener().map(|listener| {
        let app = http::metrics::router(state.clone());
        tokio::spawn(listen::serve(
            listener,
            app,
            header_read_timeout,
            std::future::pending(),
        ))
    });
    // Recordings whose upload failed (or never ran) are uploaded now, in the background.
    let leftovers = {
        let engine = engine.clone();
        tokio::spawn(async move {
            let is_live = |id: &str| engine.live.get(id).is_some();
            let n = recordings::upload_leftovers(&engine.recordings, &engine.db, is_live).await;
            if n > 0 {
                tracing::info!(count = n, "uploaded recordings left in the spool");
            }
        })
    };
    // On the signal: take no new sessions (`/readyz` fails), hand the live ones to the other
    // gateways (`sessions::handover`), end the rest (attached browsers are told, SSM sessions
    // terminated, the ends audited as "gateway shutdown"), then stop serving; connections
    // still open after SHUTDOWN_GRACE are dropped.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let ending = {
        let engine = engine.clone();
        async move {
            shutdown.await;
            engine.start_draining();
            if let Err(e) = engine.cluster.beat(&engine.db, gateways::DRAINING).await {
                tracing::warn!("marking this gateway as stopping: {e}");
            }
            let handed = handover::drain(&engine).await;
            if handed > 0 {
                tracing::info!(sessions = handed, "handed sessions to other gateways");
            }
            let _ = stopping_tx.send(());
            upkeep::end_all(&engine, "gateway shutdown").await;
        }
    };
    let server = listen::serve(listener, app, header_read_timeout, ending);
    tokio::select! {
        () = server => {}
        () = async {
            if stopping_rx.await.is_ok() {
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {}
    }
    beat.abort();
    sweeper.abort();
    grants.abort();
    watcher.abort();
    notifier.abort();
    leftovers.abort();
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    // Sessions started while stopping, if any.
    upkeep::end_all(&engine, "gateway shutdown").await;
    if let Err(e) = gateways::set_state(
        &engine.db,
        &engine.cluster.id,
        &engine.cluster.instance,
        gateways::STOPPED,
    )
    .await
    {
        tracing::warn!("marking this gateway as stopped: {e}");
    }
    Ok(())
}

/// How long a stopping gateway waits for its connections after ending its sessions.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
