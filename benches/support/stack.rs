//! The benchmarks' stack: the emulator and the gateway (SQLite, recordings in a temporary
//! folder) in this process, served like `porthole demo` serves them (`axum::serve` on a tokio
//! listener), except that TCP_NODELAY on accepted sockets can be switched on and the
//! emulator's faults set. Used by `benches/relay.rs` and `benches/sessions.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use porthole::emulator::{self, EmulatorConfig};
use porthole::gateway::http::AppState;
use porthole::gateway::identity::users::{self, Role};
use porthole::ssm::client::{AwsClients, SessionStart};
use porthole::ssm::faults::FaultConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::common::api::Api;
use crate::common::emulator::{aws_clients, start_session};
use crate::common::gateway::{self, PASSWORD};

/// Runs a benchmark on a multi-threaded runtime; exits with 2 if it takes longer than `limit`.
pub fn run_bounded(limit: Duration, run: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async { tokio::time::timeout(limit, run).await });
    runtime.shutdown_timeout(Duration::from_secs(5));
    if outcome.is_err() {
        eprintln!("the benchmark did not finish within {limit:?}");
        std::process::exit(2);
    }
}

/// The load average (1, 5, 15 minutes), for the record of a run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// How to build a stack.
#[derive(Debug, Clone, Copy)]
pub struct StackOptions {
    /// TCP_NODELAY on the sockets the emulator accepts.
    pub nodelay_emulator: bool,
    /// TCP_NODELAY on the sockets the gateway accepts.
    pub nodelay_gateway: bool,
    /// The emulator's frame faults.
    pub faults: FaultConfig,
    /// The emulator closes every data-channel socket after this long.
    pub disconnect_every: Option<Duration>,
    /// The gateway's `sessions.max_per_user`.
    pub max_per_user: u32,
    /// The gateway's `sessions.compact_after_seconds`.
    pub compact_after_seconds: u64,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            nodelay_emulator: true,
            nodelay_gateway: false,
            faults: FaultConfig::NONE,
            disconnect_every: None,
            max_per_user: 5,
            compact_after_seconds: 30,
        }
    }
}

/// Serves `app` (a make-service) on `listener` until the returned sender fires or is
/// dropped, with TCP_NODELAY on accepted sockets if `nodelay`. (A macro: the make-service
/// bounds of `axum::serve` are long to spell out.)
macro_rules! serve {
    ($listener:expr, $app:expr, $nodelay:expr) => {{
        let tap: fn(&mut TcpStream) = if $nodelay { set_nodelay } else { leave };
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = $listener.tap_io(tap);
        let app = $app;
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await; // a stop request or the sender dropped
                })
                .await
        });
        (stop, task)
    }};
}

/// The emulator's node in echo mode.
pub const ECHO_NODE: &str = "i-0e0e0e0e0e0e0e0e0";

pub struct Stack {
    pub emulator: Arc<emulator::State>,
    pub aws: AwsClients,
    pub state: Arc<AppState>,
    pub gateway_url: String,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

pub fn set_nodelay(tcp: &mut TcpStream) {
    let _ = tcp.set_nodelay(true); // a socket that refuses keeps Nagle; the run says which
}

fn leave(_: &mut TcpStream) {}

impl Stack {
    pub async fn start(options: StackOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();

        // The emulator, with its built-in nodes.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = listener.local_addr().unwrap();
        let mut config = EmulatorConfig::new(dir.path().join("emulator"));
        config.faults = options.faults;
        config.disconnect_every = options.disconnect_every;
        // A node in echo mode beside the PTY nodes (no shell: input comes straight back).
        config.nodes.push(emulator::nodes::Node {
            echo: Some(true),
            ..emulator::nodes::Node::new(ECHO_NODE, "echo")
        });
        let kms = emulator::kms::LocalKms::new(config.kms_key_ids());
        let emu = Arc::new(emulator::State {
            config,
            endpoint,
            registry: emulator::sessions::Registry::default(),
            kms,
            sts: emulator::sts::Sts::default(),
        });
        let (emu_stop, emu_task) = serve!(
            listener,
            emulator::router(emu.clone()),
            options.nodelay_emulator
        );
        let emulator_url = format!("http://{endpoint}");
        let aws = aws_clients(&emulator_url, "bench").await;

        // The gateway on SQLite, in front of the emulator.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = gateway::config(addr, dir.path(), emulator_url);
        config.sessions.max_per_user = options.max_per_user;
        config.sessions.compact_after_seconds = options.compact_after_seconds;
        config.validate().unwrap();
        let state = porthole::gateway::prepare(config).await.unwrap();
        let app = porthole::gateway::http::router(state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let (gw_stop, gw_task) = serve!(listener, app, options.nodelay_gateway);
        Self {
            emulator: emu,
            aws,
            state,
            gateway_url: format!("http://{addr}"),
            stops: vec![gw_stop, emu_stop],
            tasks: vec![gw_task, emu_task],
            _dir: dir,
        }
    }

    /// Stops the gateway (its sessions end and are recorded), then the emulator.
    pub async fn stop(mut self) {
        let stops = std::mem::take(&mut self.stops);
        let tasks = std::mem::take(&mut self.tasks);
        for (i, (stop, task)) in stops.into_iter().zip(tasks).enumerate() {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
            if i == 0 {
                porthole::gateway::sessions::upkeep::end_all(
                    &self.state.engine,
                    "the benchmark (done)",
                )
                .await;
            }
        }
        for session in self.emulator.registry.active() {
            session.command(emulator::sessions::SessionCommand::Terminate);
        }
        self.state.engine.db.pool().close().await;
    }

    /// `ssm:StartSession` on the emulator, as the gateway calls it.
    pub async fn start_session(&self, target: &str) -> SessionStart {
        start_session(&self.aws.ssm, target, "porthole benchmark").await
    }

    /// An API client signed in as `name` (an operator, created here).
    pub async fn signed_in(&self, name: &str) -> Api {
        users::create(
            &self.state.engine.db,
            name,
            PASSWORD,
            &[Role::Operator],
            &users::ChangedBy::command_line("test"),
        )
        .await
        .unwrap();
        let mut api = Api::at(&self.gateway_url);
        api.login(name).await;
        api
    }
}
