//! A self-contained run's processes: `porthole emulator --echo` with a few echo nodes and
//! `porthole serve` as children of this process on loopback, their configuration, logs and
//! (by default) SQLite database in a temporary folder, and the run's users.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use super::profile::Profile;
use crate::gateway::config::Config;
use crate::gateway::identity::users::{self, Role, UserError};
use crate::gateway::store::db::Db;

/// How long a child may take to say it listens (the gateway migrates its database first).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct ChildProc {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Its standard error (logs).
    pub log: PathBuf,
}

impl ChildProc {
    /// Asks it to stop (SIGTERM), then kills it after [`STOP_TIMEOUT`].
    pub async fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // It may have exited already: nothing to signal then.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await; // killed and reaped; an error means it is gone
        }
    }
}

/// The self-contained deployment.
#[derive(Debug)]
pub struct Deployment {
    /// The temporary folder.
    pub dir: PathBuf,
    /// The emulator.
    pub emulator: ChildProc,
    /// Its URL.
    pub emulator_url: String,
    /// The gateway.
    pub gateway: ChildProc,
    /// Its URL (and Origin).
    pub gateway_url: String,
    /// (name, password) of the run's users.
    pub users: Vec<(String, String)>,
}

impl Deployment {
    /// Stops both children; removes the folder unless `keep`.
    pub async fn stop(self, keep: bool) {
        self.gateway.stop().await;
        self.emulator.stop().await;
        if !keep {
            // Best effort: a leftover temporary folder is no failure of the run.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn nodes_toml(targets: &[String]) -> String {
    targets
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "[[node]]\nid = \"{id}\"\nname = \"echo-{}\"\necho = true\n\n",
                i + 1
            )
        })
        .collect()
}

/// The gateway's configuration: loopback, the emulator, limits that fit the profile. Idle
/// and detached timeouts are off so that idle sessions last the run.
fn gateway_toml(
    port: u16,
    database_url: &str,
    emulator: &str,
    dir: &Path,
    per_user: u64,
    compact_after: Option<u64>,
) -> String {
    let compact = compact_after
        .map(|n| format!("compact_after_seconds = {n}\n"))
        .unwrap_or_default();
    let secret = hex::encode(rand::random::<[u8; 32]>());
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
         [database]\nurl = \"{database_url}\"\n\
         [aws]\nendpoint_url = \"{emulator}\"\naccess_key_id = \"AKIDLOAD\"\n\
         secret_access_key = \"load\"\nregion = \"us-east-1\"\n\
         [auth]\njwt_secret = \"{secret}\"\n\
         [sessions]\nmax_per_user = {per_user}\nidle_timeout_seconds = 0\n\
         detached_grace_seconds = 0\n{compact}\
         [recordings]\ndir = \"{}\"\n",
        dir.join("recordings").display()
    )
}

/// `porthole` itself, with no `PORTHOLE_*` variable of this process's environment but the
/// log filter (`warn` unless set).
fn porthole() -> Result<Command, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the porthole binary: {e}"))?;
    let mut command = Command::new(exe);
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            command.env_remove(key);
        }
    }
    let log = std::env::var("PORTHOLE_LOG").unwrap_or_else(|_| "warn".into());
    command.env("PORTHOLE_LOG", log).kill_on_drop(true);
    Ok(command)
}

/// Runs `porthole audit verify` on the deployment's database (the gateway still running):
/// its first line, `Ok` when it says the chain is intact, `Err` otherwise.
pub async fn verify_audit(d: &Deployment) -> Result<String, String> {
    let mut command = porthole()?;
    command
        .args(["audit", "verify", "--config"])
        .arg(d.dir.join("porthole.toml"));
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), command.output())
        .await
        .map_err(|_| "audit verify took over 120 s".to_owned())?
        .map_err(|e| format!("audit verify could not run: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default().to_owned();
    if out.status.success() {
        Ok(first)
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "NOT intact ({}): {first} {}",
            out.status,
            err.trim()
        ))
    }
}

/// Spawns `command` with its standard error in `log`; waits for a standard output line
/// containing `needle` and returns the child and that line.
async fn spawn(
    mut command: Command,
    log: PathBuf,
    needle: &str,
) -> Result<(ChildProc, String), String> {
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file))
        .spawn()
        .map_err(|e| format!("cannot start porthole: {e}"))?;
    let pid = child.id().ok_or("the child exited at once")?;
    let stdout = child.stdout.take().ok_or("no standard output")?;
    let mut lines = BufReader::new(stdout).lines();
    let wait = async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    };
    let line = tokio::time::timeout(READY_TIMEOUT, wait)
        .await
        .ok()
        .flatten();
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or("").to_owned()
    };
    let Some(line) = line else {
        return Err(format!(
            "{} did not start; its log ends with:\n{}",
            log.display(),
            tail()
        ));
    };
    // The rest of its standard output is read and dropped, so that it never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((ChildProc { child, pid, log }, line))
}

fn url_in(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_owned)
}

/// A free loopback port (bound, then released for the gateway to bind).
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Creates (or resets) the run's users in the gateway's database, as `porthole users add`.
async fn create_users(
    config_text: &str,
    run: &str,
    count: u64,
) -> Result<Vec<(String, String)>, String> {
    let config =
        Config::from_toml_and_env(config_text, std::iter::empty()).map_err(|e| e.to_string())?;
    let db = Db::connect(config.database.url.expose())
        .await
        .map_err(|e| format!("cannot open the database: {e}"))?;
    db.migrate()
        .await
        .map_err(|e| format!("cannot migrate the database: {e}"))?;
    let by = users::ChangedBy::command_line("load");
    let mut made = Vec::new();
    for i in 1..=count {
        let name = format!("load-{run}-{i}");
        let password = crate::cli::demo::random_password();
        match users::create(&db, &name, &password, &[Role::Operator], &by).await {
            Ok(_) => {}
            Err(UserError::Exists(_)) => {
                users::set_password(&db, &name, &password, &by)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(format!("cannot add user {name}: {e}")),
        }
        made.push((name, password));
    }
    db.pool().close().await;
    Ok(made)
}

/// Starts the emulator and the gateway, and creates the users.
pub async fn deploy(
    profile: &Profile,
    database_url: Option<&str>,
    compact_after: Option<u64>,
) -> Result<Deployment, String> {
    let run = hex::encode(rand::random::<[u8; 3]>());
    let dir = std::env::temp_dir().join(format!("porthole-load-{run}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let nodes = dir.join("nodes.toml");
    std::fs::write(&nodes, nodes_toml(&profile.targets))
        .map_err(|e| format!("{}: {e}", nodes.display()))?;

    let mut command = porthole()?;
    command
        .args(["emulator", "--echo", "--listen", "127.0.0.1:0", "--nodes"])
        .arg(&nodes)
        .arg("--data-dir")
        .arg(dir.join("emulator"));
    let (emulator, line) = spawn(command, dir.join("emulator.log"), "listening on").await?;
    let emulator_url = url_in(&line).ok_or_else(|| format!("no URL in {line:?}"))?;

    let database_url = match database_url {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", dir.join("porthole.db").display()),
    };
    let per_user = profile.gateway_sessions().div_ceil(profile.users).max(1);
    let port = free_port()?;
    let text = gateway_toml(
        port,
        &database_url,
        &emulator_url,
        &dir,
        per_user,
        compact_after,
    );
    let config = dir.join("porthole.toml");
    std::fs::write(&config, &text).map_err(|e| format!("{}: {e}", config.display()))?;
    let users = create_users(&text, &run, profile.users).await?;

    let mut command = porthole()?;
    command.arg("serve").arg("--config").arg(&config);
    let (gateway, _) = spawn(command, dir.join("gateway.log"), "porthole listening").await?;
    Ok(Deployment {
        dir,
        emulator,
        emulator_url,
        gateway,
        gateway_url: format!("http://127.0.0.1:{port}"),
        users,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_valid_and_fits_the_profile() {
        let text = gateway_toml(
            8080,
            "sqlite://x.db",
            "http://127.0.0.1:1",
            Path::new("/tmp/x"),
            60,
            Some(5),
        );
        let c = Config::from_toml_and_env(&text, std::iter::empty()).unwrap();
        assert_eq!(c.sessions.max_per_user, 60);
        assert_eq!(c.sessions.compact_after_seconds, 5);
        assert_eq!(c.sessions.idle_timeout_seconds, 0);
        let nodes =
            crate::emulator::nodes::parse_nodes(&nodes_toml(&super::super::profile::echo_nodes()))
                .unwrap();
        assert!(nodes.iter().all(|n| n.echo == Some(true) && n.is_online()));
    }
}
