//! The `porthole` command line: the subcommands (demo, serve, migrate, users, audit,
//! emulator, load, policy check, decode-frame), each composed from the gateway's layers. `main.rs`
//! only calls [`run`].

pub mod audit;
pub mod demo;
pub mod emulator;
pub mod load;
pub mod logging;
pub mod nofile;
pub mod policy;
pub mod policy_check;
pub mod serve;
pub mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use self::audit::{AuditCommand, run_audit};
use self::emulator::{EmulatorArgs, decode_frame, run_emulator};
use self::load::{LoadArgs, run_load};
use self::policy::{PolicyCommand, run_policy};
use self::serve::{DemoArgs, run_demo, run_migrate, run_serve};
use self::users::{UsersCommand, run_users};

/// Porthole: a web gateway to AWS Session Manager shells.
#[derive(Debug, Parser)]
#[command(name = "porthole", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Everything on loopback with no AWS account: the gateway, SQLite in a data folder, the
    /// emulator with a few nodes, and the demo users admin, operator and auditor, whose
    /// passwords are printed.
    Demo(DemoArgs),
    /// Run the gateway (production): configuration from a TOML file, every key overridable
    /// by PORTHOLE_SECTION__KEY environment variables.
    Serve(ConfigArg),
    /// Apply the database migrations that are not applied yet.
    Migrate(ConfigArg),
    /// Manage local users.
    Users {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Check the audit log's hash chain, or export it for a SIEM.
    Audit {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run the local SSM emulator alone: a Session Manager control plane and agents with real
    /// shells. Prints its endpoint for `aws --endpoint-url` and the SDKs.
    Emulator(EmulatorArgs),
    /// Measure a gateway under load against the direct path (issue 18): sessions through the
    /// gateway and straight to the emulator's echo nodes, typing at a rate, side by side.
    /// Without --gateway it starts its own emulator and gateway on loopback
    /// (docs/performance.md).
    Load(Box<LoadArgs>),
    /// Decode one data-channel frame given as hex and print its fields (a debugging aid).
    DecodeFrame {
        /// The frame's bytes in hex (whitespace ignored).
        hex: String,
    },
    /// Explain what the configured policy decides (docs/policy.md).
    Policy {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// The configuration file flag.
#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// TOML configuration file; without it, the defaults and PORTHOLE_* variables only.
    #[arg(long, global = true, env = "PORTHOLE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> Result<crate::gateway::config::Config, String> {
        let text = match &self.config {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            None => String::new(),
        };
        let mut config = crate::gateway::config::Config::from_toml_and_env(&text, std::env::vars())
            .map_err(|e| match &self.config {
                Some(path) => format!("{}: {e}", path.display()),
                None => e.to_string(),
            })?;
        config.source = self.config.clone();
        Ok(config)
    }
}

/// Parses the command line and runs the subcommand.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Serve(config) => run_serve(&config),
        Command::Migrate(config) => run_migrate(&config),
        Command::Users { config, command } => run_users(&config, command),
        Command::Audit { config, command } => run_audit(&config, command),
        Command::Emulator(args) => run_emulator(args),
        Command::Load(args) => run_load(*args),
        Command::DecodeFrame { hex } => decode_frame(&hex),
        Command::Policy { config, command } => run_policy(&config, command),
    }
}

/// Text logs ([`logging::init`]); `porthole serve` takes the format from its configuration.
pub(crate) fn init_logging() {
    logging::init(crate::gateway::config::LogFormat::Text);
}

pub(crate) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

pub(crate) async fn open_db(config: &ConfigArg) -> Result<crate::gateway::store::db::Db, String> {
    let config = config.load()?;
    let db = crate::gateway::store::db::Db::connect(config.database.url.expose())
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    Ok(db)
}

/// Connects without migrating: the audit commands only read (a read-only replica will do).
/// A SQLite file that does not exist is an error, not a new empty database.
pub(crate) async fn connect_existing(
    config: &ConfigArg,
) -> Result<crate::gateway::store::db::Db, String> {
    let config = config.load()?;
    let url = config.database.url.expose();
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest
            .trim_start_matches("//")
            .split('?')
            .next()
            .unwrap_or("");
        if !path.is_empty() && path != ":memory:" && !std::path::Path::new(path).exists() {
            return Err(format!(
                "database.url: there is no SQLite database at {path}"
            ));
        }
    }
    crate::gateway::store::db::Db::connect(url)
        .await
        .map_err(|e| e.to_string())
}

/// Registers SIGINT and SIGTERM handlers now (before the caller announces it is ready) and
/// returns a future that resolves on either.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                eprintln!("error: cannot install signal handlers; stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}
