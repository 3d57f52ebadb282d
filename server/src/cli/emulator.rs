//! `porthole emulator` (the local SSM service alone) and `porthole decode-frame`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::{init_logging, shutdown_signal};
use crate::emulator::{EmulatorConfig, RunningEmulator, nodes};
use crate::ssm::codec;
use crate::ssm::faults::FaultConfig;

/// Flags of `porthole emulator`.
#[derive(Debug, Args)]
pub(crate) struct EmulatorArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "PORTHOLE_EMULATOR_LISTEN",
        default_value = "127.0.0.1:4566"
    )]
    pub(crate) listen: SocketAddr,
    /// Allow a non-loopback listen address, and requests whose Host or Origin is not a
    /// loopback name (without it, web pages cannot drive the emulator). The emulator hands out
    /// shells without checking signatures: never expose it.
    #[arg(long, env = "PORTHOLE_EMULATOR_ALLOW_REMOTE")]
    pub(crate) allow_remote: bool,
    /// TOML file of managed nodes (default: a built-in set with one offline node).
    #[arg(long, env = "PORTHOLE_EMULATOR_NODES")]
    pub(crate) nodes: Option<PathBuf>,
    /// Folder for the nodes' scratch home directories.
    #[arg(
        long,
        env = "PORTHOLE_EMULATOR_DATA_DIR",
        default_value = "porthole-emulator-data"
    )]
    pub(crate) data_dir: PathBuf,
    /// Always send a HandshakeRequest, as newer agents do.
    #[arg(long, env = "PORTHOLE_EMULATOR_HANDSHAKE")]
    pub(crate) handshake: bool,
    /// Encrypt sessions with this KMS key id (full KMS flow with a random challenge).
    #[arg(long = "kms", value_name = "KEY_ID", env = "PORTHOLE_EMULATOR_KMS")]
    pub(crate) kms_key_id: Option<String>,
    /// Probability of dropping each data-channel frame, both directions.
    #[arg(long, default_value_t = 0.0, env = "PORTHOLE_EMULATOR_DROP")]
    pub(crate) drop: f64,
    /// Probability of duplicating each data-channel frame.
    #[arg(long, default_value_t = 0.0, env = "PORTHOLE_EMULATOR_DUP")]
    pub(crate) dup: f64,
    /// Probability of delaying each data-channel frame behind the next one.
    #[arg(long, default_value_t = 0.0, env = "PORTHOLE_EMULATOR_REORDER")]
    pub(crate) reorder: f64,
    /// Seed for the fault injection.
    #[arg(long, default_value_t = 1, env = "PORTHOLE_EMULATOR_SEED")]
    pub(crate) seed: u64,
    /// Close every data-channel socket with 1000 "Bye" after this many seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "PORTHOLE_EMULATOR_DISCONNECT_EVERY"
    )]
    pub(crate) disconnect_every: Option<f64>,
    /// Sleep 1 ms between output chunks, like the real agent (about 1 MB/s).
    #[arg(long, env = "PORTHOLE_EMULATOR_PACE")]
    pub(crate) pace: bool,
    /// Echo input back instead of running a shell (for load tests).
    #[arg(long, env = "PORTHOLE_EMULATOR_ECHO")]
    pub(crate) echo: bool,
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
        config.allow_remote = self.allow_remote;
        Ok((self.listen, config))
    }
}

pub(crate) fn run_emulator(args: EmulatorArgs) -> ExitCode {
    init_logging();
    // Every session is a socket: the usual soft limit of 1,024 stops at about a thousand.
    super::nofile::raise_and_log("emulator");
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

pub(crate) fn decode_frame(text: &str) -> ExitCode {
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
