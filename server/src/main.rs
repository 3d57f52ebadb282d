//! The `porthole` command line: parses flags and hands off to the library.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use porthole::emulator::{EmulatorConfig, RunningEmulator, nodes};
use porthole::ssm::codec;
use porthole::ssm::faults::FaultConfig;

/// Porthole: a web gateway to AWS Session Manager shells.
#[derive(Debug, Parser)]
#[command(name = "porthole", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

/// Flags of `porthole demo`.
#[derive(Debug, Args)]
struct DemoArgs {
    /// Address to listen on (loopback only).
    #[arg(long, env = "PORTHOLE_DEMO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Folder for the database, the signing key and the nodes' home folders.
    #[arg(
        long,
        env = "PORTHOLE_DEMO_DATA_DIR",
        default_value = "porthole-demo-data"
    )]
    data_dir: PathBuf,
    /// Password for all three demo users (default: a new random one each, printed).
    #[arg(long, env = "PORTHOLE_DEMO_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

/// The configuration file flag.
#[derive(Debug, Args)]
struct ConfigArg {
    /// TOML configuration file; without it, the defaults and PORTHOLE_* variables only.
    #[arg(long, global = true, env = "PORTHOLE_CONFIG")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> Result<porthole::gateway::config::Config, String> {
        let text = match &self.config {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            None => String::new(),
        };
        let mut config =
            porthole::gateway::config::Config::from_toml_and_env(&text, std::env::vars()).map_err(
                |e| match &self.config {
                    Some(path) => format!("{}: {e}", path.display()),
                    None => e.to_string(),
                },
            )?;
        config.source = self.config.clone();
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a user; the password is read from standard input (one line).
    Add {
        /// Sign-in name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// Roles, comma-separated: admin, operator, auditor.
        #[arg(long)]
        role: String,
    },
    /// List users.
    List,
    /// Disable a user: they cannot sign in and their sign-ins stop working at once.
    Disable {
        /// The user.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain and name the first row that was edited, deleted or reordered.
    ///
    /// Exit 0: intact (prints the rows checked and the head to keep elsewhere); 1: broken
    /// (prints the first bad row); 2: bad flags or configuration; 3: the database could not be
    /// read.
    Verify {
        /// A row id and hash kept from an earlier run (`ID:HASH`, as verify prints the head):
        /// that row must still be there, unchanged. Catches rows deleted from the end.
        #[arg(long, value_name = "ID:HASH")]
        anchor: Option<porthole::gateway::store::audit::Anchor>,
    },
    /// Write the events to standard output, oldest first, for a SIEM.
    ///
    /// Exit 0: written; 1: writing failed; 2: bad flags or configuration; 3: the database
    /// could not be read.
    Export {
        /// Only events at or after this time: RFC 3339 (2026-01-02T15:04:05Z), a date
        /// (midnight UTC) or milliseconds since the Unix epoch.
        #[arg(long, value_name = "TIME", value_parser = porthole::gateway::store::audit::parse_time)]
        since: Option<i64>,
        /// Only events before this time (same forms as --since).
        #[arg(long, value_name = "TIME", value_parser = porthole::gateway::store::audit::parse_time)]
        until: Option<i64>,
        /// jsonl: one JSON object per line; csv: RFC 4180 with a header line.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

/// `porthole audit export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Jsonl,
    Csv,
}

/// Flags of `porthole emulator`.
#[derive(Debug, Args)]
struct EmulatorArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "PORTHOLE_EMULATOR_LISTEN",
        default_value = "127.0.0.1:4566"
    )]
    listen: SocketAddr,
    /// Allow a non-loopback listen address. The emulator hands out shells without checking
    /// signatures: never expose it.
    #[arg(long, env = "PORTHOLE_EMULATOR_ALLOW_REMOTE")]
    allow_remote: bool,
    /// TOML file of managed nodes (default: a built-in set with one offline node).
    #[arg(long, env = "PORTHOLE_EMULATOR_NODES")]
    nodes: Option<PathBuf>,
    /// Folder for the nodes' scratch home directories.
    #[arg(
        long,
        env = "PORTHOLE_EMULATOR_DATA_DIR",
        default_value = "porthole-emulator-data"
    )]
    data_dir: PathBuf,
    /// Always send a HandshakeRequest, as newer agents do.
    #[arg(long, env = "PORTHOLE_EMULATOR_HANDSHAKE")]
    handshake: bool,
    /// Encrypt sessions with this KMS key id (full KMS flow with a random challenge).
    #[arg(long = "kms", value_name = "KEY_ID", env = "PORTHOLE_EMULATOR_KMS")]
    kms_key_id: Option<String>,
    /// Probability of dropping each data-channel frame, both directions.
    #[arg(long, default_value_t = 0.0, env = "PORTHOLE_EMULATOR_DROP")]
    drop: f64,
    /// Probability of duplicating each data-channel frame.
    #[arg(long, default_value_t = 0.0, env = "PORTHOLE_EMULATOR_DUP")]
    dup: f64,
    /// Probability of delaying each data-channel frame behind the next one.
    #[arg(long, default_value_t = 0.0, env = "PORTHOLE_EMULATOR_REORDER")]
    reorder: f64,
    /// Seed for the fault injection.
    #[arg(long, default_value_t = 1, env = "PORTHOLE_EMULATOR_SEED")]
    seed: u64,
    /// Close every data-channel socket with 1000 "Bye" after this many seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "PORTHOLE_EMULATOR_DISCONNECT_EVERY"
    )]
    disconnect_every: Option<f64>,
    /// Sleep 1 ms between output chunks, like the real agent (about 1 MB/s).
    #[arg(long, env = "PORTHOLE_EMULATOR_PACE")]
    pace: bool,
    /// Echo input back instead of running a shell (for load tests).
    #[arg(long, env = "PORTHOLE_EMULATOR_ECHO")]
    echo: bool,
}

impl EmulatorArgs {
    fn into_config(self) -> Result<(SocketAddr, EmulatorConfig), String> {
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            return Err(format!(
                "--listen {} is not a loopback address; the emulator hands out shells without \
                 checking signatures. Pass --allow-remote to do it anyway.",
                self.listen
            ));
        }
        let faults = FaultConfig {
            drop: self.drop,
            duplicate: self.dup,
            reorder: self.reorder,
        };
        faults.validate()?;
        let disconnect_every = match self.disconnect_every {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(s) => {
                return Err(format!(
                    "--disconnect-every must be a positive number of seconds, got {s}"
                ));
            }
        };
        let mut config = EmulatorConfig::new(self.data_dir);
        if let Some(path) = &self.nodes {
            config.nodes = nodes::load_nodes(path)?;
        }
        config.handshake = self.handshake;
        config.kms_key_id = self.kms_key_id;
        config.faults = faults;
        config.seed = self.seed;
        config.disconnect_every = disconnect_every;
        config.pace = self.pace;
        config.echo = self.echo;
        Ok((self.listen, config))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => run_demo(args),
        Command::Serve(config) => run_serve(&config),
        Command::Migrate(config) => run_migrate(&config),
        Command::Users { config, command } => run_users(&config, command),
        Command::Audit { config, command } => run_audit(&config, command),
        Command::Emulator(args) => run_emulator(args),
        Command::DecodeFrame { hex } => decode_frame(&hex),
        Command::Policy { config, command } => run_policy(&config, command),
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTHOLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            None
        }
    }
}

fn run_demo(args: DemoArgs) -> ExitCode {
    init_logging();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "error: --listen {} is not a loopback address; the demo's users and passwords are \
             for this machine only",
            args.listen
        );
        return ExitCode::from(2);
    }
    if let Some(p) = &args.password
        && p.chars().count() < porthole::gateway::identity::users::MIN_PASSWORD
    {
        eprintln!(
            "error: the demo password must be at least {} characters",
            porthole::gateway::identity::users::MIN_PASSWORD
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
        let demo = match porthole::cli::demo::prepare(addr, args.data_dir, args.password).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let url = demo.config.server.public_url.clone();
        let state = match porthole::gateway::prepare(demo.config).await {
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
        let served = porthole::gateway::serve_state(state, listener, shutdown).await;
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

fn run_serve(config: &ConfigArg) -> ExitCode {
    init_logging();
    let config = match config.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
        let public = config.server.public_url.clone();
        let state = match porthole::gateway::prepare(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("porthole listening on {listen} (public URL {public})");
        match porthole::gateway::serve_state(state, listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn open_db(config: &ConfigArg) -> Result<porthole::gateway::store::db::Db, String> {
    let config = config.load()?;
    let db = porthole::gateway::store::db::Db::connect(config.database.url.expose())
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    Ok(db)
}

fn run_migrate(config: &ConfigArg) -> ExitCode {
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

fn run_users(config: &ConfigArg, command: UsersCommand) -> ExitCode {
    use porthole::gateway::identity::users;
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let db = match open_db(config).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = match command {
            UsersCommand::Add { name, role } => {
                let roles = match users::parse_roles(&role) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("error: --role: {e}");
                        return ExitCode::from(2);
                    }
                };
                let defined = config.load().and_then(|c| {
                    porthole::gateway::policy::Policy::from_config(&c.policy, c.source.as_deref())
                });
                let checked = defined.and_then(|policy| {
                    users::check_defined(&roles, &policy.role_names()).map_err(|e| e.to_string())
                });
                if let Err(e) = checked {
                    eprintln!("error: --role: {e}");
                    return ExitCode::from(2);
                }
                let mut line = String::new();
                if let Err(e) = std::io::stdin().read_line(&mut line) {
                    eprintln!("error: cannot read the password from standard input: {e}");
                    return ExitCode::FAILURE;
                }
                let password = line.trim_end_matches(['\n', '\r']);
                users::create(&db, &name, password, &roles)
                    .await
                    .map(|u| println!("added {} ({})", u.name, role_list(&u.roles)))
            }
            UsersCommand::List => users::list(&db).await.map_err(Into::into).map(|all| {
                for u in all {
                    let state = if u.disabled { "disabled" } else { "active" };
                    println!("{:<24} {:<24} {state}", u.name, role_list(&u.roles));
                }
            }),
            UsersCommand::Disable { name } => users::set_disabled(&db, &name, true)
                .await
                .map(|u| println!("disabled {}; their sign-ins stopped working", u.name)),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Connects without migrating: the audit commands only read (a read-only replica will do).
/// A SQLite file that does not exist is an error, not a new empty database.
async fn connect_existing(config: &ConfigArg) -> Result<porthole::gateway::store::db::Db, String> {
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
    porthole::gateway::store::db::Db::connect(url)
        .await
        .map_err(|e| e.to_string())
}

fn run_audit(config: &ConfigArg, command: AuditCommand) -> ExitCode {
    use porthole::gateway::store::audit;
    if let AuditCommand::Export {
        since: Some(since),
        until: Some(until),
        ..
    } = command
        && until <= since
    {
        eprintln!(
            "error: --until must be later than --since (--since is inclusive, --until is not)"
        );
        return ExitCode::from(2);
    }
    if let Err(e) = config.load() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let Some(runtime) = runtime() else {
        return ExitCode::from(3);
    };
    runtime.block_on(async move {
        let db = match connect_existing(config).await {
            Ok(db) => db,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(3);
            }
        };
        match command {
            AuditCommand::Verify { anchor } => {
                match audit::verify_chain(&db, anchor.as_ref()).await {
                    Ok(report) => {
                        print!("{}", report.summary());
                        if report.broken.is_some() {
                            ExitCode::from(1)
                        } else {
                            ExitCode::SUCCESS
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        ExitCode::from(3)
                    }
                }
            }
            AuditCommand::Export {
                since,
                until,
                format,
            } => {
                let format = match format {
                    ExportFormat::Jsonl => audit::ExportFormat::Jsonl,
                    ExportFormat::Csv => audit::ExportFormat::Csv,
                };
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                match audit::export(&db, since, until, format, &mut out).await {
                    Ok(_) => ExitCode::SUCCESS,
                    // The reader stopped early (`| head`): not an error of ours.
                    Err(audit::ExportError::Io(e))
                        if e.kind() == std::io::ErrorKind::BrokenPipe =>
                    {
                        ExitCode::SUCCESS
                    }
                    Err(audit::ExportError::Io(e)) => {
                        eprintln!("error: writing the export: {e}");
                        ExitCode::FAILURE
                    }
                    Err(audit::ExportError::Db(e)) => {
                        eprintln!("error: {e}");
                        ExitCode::from(3)
                    }
                }
            }
        }
    })
}

fn role_list(roles: &[porthole::gateway::identity::users::Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn run_emulator(args: EmulatorArgs) -> ExitCode {
    init_logging();
    let allow_remote = args.allow_remote;
    let (listen, config) = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if allow_remote && !listen.ip().is_loopback() {
            tracing::warn!(%listen, "listening beyond loopback: anyone who can reach this port gets a shell");
        }
        let shutdown = shutdown_signal();
        let nodes = config.nodes.len();
        let example = config.nodes.iter().find(|n| n.is_online()).map(|n| n.id.clone());
        let emulator = match RunningEmulator::start(listen, config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Write errors (a closed stdout) must not take the emulator down.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "porthole emulator listening on {} ({nodes} nodes)", emulator.url());
        if let Some(id) = example {
            let _ = writeln!(
                out,
                "  try: aws ssm start-session --endpoint-url {} --region us-east-1 --target {id}",
                emulator.url()
            );
        }
        let _ = out.flush();
        drop(out);
        shutdown.await;
        match emulator.stop().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Registers SIGINT and SIGTERM handlers now (before the caller announces it is ready) and
/// returns a future that resolves on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
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

fn decode_frame(text: &str) -> ExitCode {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = match hex::decode(&clean) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: the frame is not valid hex: {e}");
            return ExitCode::from(2);
        }
    };
    match codec::decode(&bytes) {
        Ok(m) => {
            println!("MessageType     {}", m.message_type.as_str());
            println!("SchemaVersion   {}", m.schema_version);
            println!("CreatedDate     {} ms", m.created_date);
            println!("SequenceNumber  {}", m.sequence_number);
            println!("Flags           {}", m.flags);
            println!("MessageId       {}", m.message_id);
            println!(
                "PayloadType     {:?} ({})",
                m.payload_type,
                m.payload_type.to_u32()
            );
            println!("PayloadLength   {}", m.payload.len());
            match std::str::from_utf8(m.payload) {
                Ok(s) => println!("Payload         {s:?}"),
                Err(_) => println!("Payload (hex)   {}", hex::encode(m.payload)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Explain, rule by rule, whether USER may open a session on TARGET. Exit 0: allowed;
    /// 1: denied; 2: the check could not be made. The target's name, region and tags come
    /// from AWS (the configured [aws] settings) unless --name, --region or --tag is given.
    Check(PolicyCheckArgs),
}

/// Flags of `porthole policy check`.
#[derive(Debug, Args)]
struct PolicyCheckArgs {
    /// The user (their roles are read from the users table unless --roles is given).
    user: String,
    /// The target's instance id.
    target: String,
    /// The SSM document (default SSM-SessionManagerRunShell).
    #[arg(long)]
    document: Option<String>,
    /// A reason to check against the reason rules too.
    #[arg(long)]
    reason: Option<String>,
    /// Check these roles (comma-separated) instead of the user's; no database needed.
    #[arg(long, value_name = "ROLE,...")]
    roles: Option<String>,
    /// The target's name (check offline, without asking AWS).
    #[arg(long)]
    name: Option<String>,
    /// The target's region (offline; default: the first configured region).
    #[arg(long)]
    region: Option<String>,
    /// A tag of the target, KEY=VALUE (offline; repeat for more).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
}

fn run_policy(config: &ConfigArg, command: PolicyCommand) -> ExitCode {
    use porthole::cli::policy_check as check;
    let PolicyCommand::Check(args) = command;
    let config = match config.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(runtime) = runtime() else {
        return ExitCode::from(2);
    };
    let request = check::CheckRequest {
        user: args.user,
        target: args.target,
        document: args.document,
        reason: args.reason,
        roles: args.roles,
        name: args.name,
        region: args.region,
        tags: args.tags,
    };
    match runtime.block_on(check::run(&config, &request)) {
        Ok(report) => {
            print!("{}", report.text);
            if report.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
