//! `porthole demo`, `porthole serve` and `porthole migrate`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{ConfigArg, init_logging, open_db, runtime, shutdown_signal};

/// Flags of `porthole demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Address to listen on (loopback only).
    #[arg(long, env = "PORTHOLE_DEMO_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,
    /// Folder for the database, the signing key and the nodes' home folders.
    #[arg(
        long,
        env = "PORTHOLE_DEMO_DATA_DIR",
        default_value = "porthole-demo-data"
    )]
    pub(crate) data_dir: PathBuf,
    /// Password for all three demo users (default: a new random one each, printed).
    #[arg(long, env = "PORTHOLE_DEMO_PASSWORD", hide_env_values = true)]
    pub(crate) password: Option<String>,
}

pub(crate) fn run_demo(args: DemoArgs) -> ExitCode {
    init_logging();
    super::nofile::raise_and_log("demo");
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "error: --listen {} is not a loopback address; the demo's users and passwords are \
             for this machine only",
            args.listen
        );
        return ExitCode::from(2);
    }
    if let Some(p) = &args.password
        && p.chars().count() < crate::gateway::identity::users::MIN_PASSWORD
    {
        eprintln!(
            "error: the demo password must be at least {} characters",
            crate::gateway::identity::users::MIN_PASSWORD
        );
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let shutdown = shutdown_signal();
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        // The bound address (a port of 0 becomes a real one) is the public URL.
        let addr = listener.local_addr().unwrap_or(args.listen);
        let demo = match crate::cli::demo::prepare(addr, args.data_dir, args.password).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = demo.config.server.public_url.clone();
        let state = match crate::gateway::prepare(demo.config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "porthole demo: open {url}");
        for (name, password) in &demo.passwords {
            let _ = writeln!(out, "  user {name:<9} password {password}");
        }
        let _ = writeln!(out, "  emulator (SSM endpoint) at {}", demo.emulator.url());
        let _ = writeln!(out, "stop with Ctrl-C");
        let _ = out.flush();
        drop(out);
        let served = crate::gateway::serve_state(state, listener, shutdown).await;
        let _ = demo.emulator.stop().await;
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

pub(crate) fn run_serve(config: &ConfigArg) -> ExitCode {
    // The configuration first: it says how to log (`server.log_format`).
    let config = match config.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    super::logging::init(config.server.log_format);
    // A session is a socket or two: the usual soft limit of 1,024 stops at a few hundred.
    super::nofile::raise_and_log("serve");
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let shutdown = shutdown_signal();
        let listen = config.server.listen;
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        // The bound address: a port of 0 becomes a real one.
        let listen = listener.local_addr().unwrap_or(listen);
        let public = config.server.public_url.clone();
        let state = match crate::gateway::prepare(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(addr) = state.metrics.addr() {
            tracing::info!(listen = %addr, "/metrics served on metrics.listen");
        }
        tracing::info!(listen = %listen, public_url = %public, "porthole listening");
        println!("porthole listening on {listen} (public URL {public})");
        match crate::gateway::serve_state(state, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

pub(crate) fn run_migrate(config: &ConfigArg) -> ExitCode {
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        match open_db(config).await {
            Ok(_) => {
                println!("migrations applied");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
