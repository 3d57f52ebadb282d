//! The local SSM emulator: a Session Manager control plane (AWS JSON 1.1 on `POST /`) and, per
//! session, an agent that runs a real shell in a PTY behind the data-channel WebSocket.
//!
//! - [`nodes`]: the managed nodes (TOML file or built-in set).
//! - [`control`]: `AmazonSSM.*` and `TrentService.*` operations, with AWS error shapes.
//! - [`kms`]: a local KMS for encrypted sessions (GenerateDataKey / Decrypt with context).
//! - [`sessions`]: the session registry and single-use tokens.
//! - [`agent`]: the data-channel WebSocket and the per-session agent task (core agent role +
//!   PTY + fault injection).
//! - [`pty`]: the shell in a pseudo-terminal.
//!
//! SigV4 signatures on control-plane requests are accepted without being verified: the
//! emulator is a local test double and must not be exposed beyond loopback.

pub mod agent;
pub mod control;
pub mod guard;
pub mod kms;
pub mod nodes;
pub mod pty;
pub mod sessions;
pub mod sts;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use crate::ssm::faults::FaultConfig;

/// The emulator's settings.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The managed nodes.
    pub nodes: Vec<nodes::Node>,
    /// Where per-node scratch homes live.
    pub data_dir: PathBuf,
    /// Always send a HandshakeRequest (newer agents do).
    pub handshake: bool,
    /// Encrypt sessions with this KMS key (implies a handshake).
    pub kms_key_id: Option<String>,
    /// Send a RandomChallenge with KMS (agents ≥ 3.3.808.0 do).
    pub kms_challenge: bool,
    /// Sleep 1 ms between output chunks, like the real agent.
    pub pace: bool,
    /// Echo input instead of running a shell (load tests).
    pub echo: bool,
    /// Faults on data-channel frames, both directions.
    pub faults: FaultConfig,
    /// Seed for the fault injectors (each session derives its own from it).
    pub seed: u64,
    /// Close every data-channel socket with 1000 "Bye" after this long.
    pub disconnect_every: Option<Duration>,
    /// The login shell to run (default: `bash -l` when bash exists, else `sh -l`).
    pub shell: Option<Vec<String>>,
    /// The WebSocket ping interval (the current agent: 54 s).
    pub ping_interval: Duration,
    /// Accept any `Host` and `Origin` (`--allow-remote`). Off: only loopback names, so that a
    /// web page (DNS rebinding, or any other site in the developer's browser) cannot drive the
    /// emulator and open a shell.
    pub allow_remote: bool,
    /// What the emulator's STS refuses, and how long its keys last.
    pub sts: sts::StsRules,
}

impl EmulatorConfig {
    /// Defaults: the built-in nodes, plain sessions, no faults.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            nodes: nodes::default_nodes(),
            data_dir: data_dir.into(),
            handshake: false,
            kms_key_id: None,
            kms_challenge: true,
            pace: false,
            echo: false,
            faults: FaultConfig::NONE,
            seed: 1,
            disconnect_every: None,
            shell: None,
            ping_interval: Duration::from_secs(54),
            allow_remote: false,
            sts: sts::StsRules::default(),
        }
    }

    /// The KMS key ids the local KMS knows: the global one and every node's.
    pub fn kms_key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.kms_key_id.iter().cloned().collect();
        ids.extend(self.nodes.iter().filter_map(|n| n.kms_key_id.clone()));
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Shared state of a running emulator.
#[derive(Debug)]
pub struct State {
    /// Settings.
    pub config: EmulatorConfig,
    /// Where it listens (for StreamUrls).
    pub endpoint: SocketAddr,
    /// Sessions.
    pub registry: sessions::Registry,
    /// The local KMS.
    pub kms: kms::LocalKms,
    /// The local STS: the keys it issued.
    pub sts: sts::Sts,
}

impl State {
    /// Looks a node up by id.
    pub fn node(&self, id: &str) -> Option<&nodes::Node> {
        self.config.nodes.iter().find(|n| n.id == id)
    }

    /// Looks a node up by id among those of `account`.
    pub fn node_of(&self, id: &str, account: &str) -> Option<&nodes::Node> {
        self.node(id).filter(|n| n.account() == account)
    }

    /// The data-channel URL of a session.
    pub fn stream_url(&self, session_id: &str) -> String {
        format!(
            "ws://{}/v1/data-channel/{session_id}?role=publish_subscribe",
            self.endpoint
        )
    }
}

/// The emulator's routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(
            "/",
            post(control::handle).layer(DefaultBodyLimit::max(control::MAX_BODY_BYTES)),
        )
        .route("/v1/data-channel/{session_id}", get(agent::data_channel))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::loopback_only,
        ))
        .with_state(state)
}

/// Serves the emulator on `listener` until `shutdown` resolves; then ends every session.
pub async fn serve(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = new_state(&listener, config)?;
    serve_state(listener, state, shutdown).await
}

fn new_state(listener: &TcpListener, config: EmulatorConfig) -> std::io::Result<Arc<State>> {
    let endpoint = listener.local_addr()?;
    let kms = kms::LocalKms::new(config.kms_key_ids());
    Ok(Arc::new(State {
        config,
        endpoint,
        registry: sessions::Registry::default(),
        kms,
        sts: sts::Sts::default(),
    }))
}

async fn serve_state(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    // Small frames (keystrokes, echoes, acks) go out at once: no Nagle delay.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true); // best effort: only latency depends on it
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    for session in state.registry.active() {
        session.command(sessions::SessionCommand::Terminate);
    }
    result
}

/// An emulator running in the background (for `porthole demo` and tests).
#[derive(Debug)]
pub struct RunningEmulator {
    /// The address it listens on.
    pub endpoint: SocketAddr,
    state: Arc<State>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningEmulator {
    /// Binds `listen` and serves in a background task.
    pub async fn start(listen: SocketAddr, config: EmulatorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let endpoint = listener.local_addr()?;
        let state = new_state(&listener, config)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_state(listener, state.clone(), async move {
            let _ = stopped.await; // either a stop request or the handle dropped
        }));
        Ok(Self {
            endpoint,
            state,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The endpoint URL for the AWS SDKs and CLI (`--endpoint-url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.endpoint)
    }

    /// The emulator's state: its sessions (with the tokens issued), nodes and keys.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Stops serving and ends every session.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(()); // the server may already be gone
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(()); // the server may already be gone
        }
    }
}
