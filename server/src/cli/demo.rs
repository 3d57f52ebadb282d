//! `porthole demo`: the gateway and the emulator on loopback, SQLite in a data folder, and the
//! demo users `admin`, `operator` and `auditor`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::emulator::{EmulatorConfig, RunningEmulator};
use crate::gateway::config::{Config, Secret};
use crate::gateway::facts::Role;
use crate::gateway::identity::users::{self, UserError};
use crate::gateway::store::db::Db;

/// The demo users and their roles.
pub const DEMO_USERS: [(&str, Role); 3] = [
    ("admin", Role::Admin),
    ("operator", Role::Operator),
    ("auditor", Role::Auditor),
];

/// A prepared demo: the configuration for the gateway, the running emulator and the
/// passwords of the demo users.
#[derive(Debug)]
pub struct Demo {
    /// The gateway's configuration.
    pub config: Config,
    /// The emulator serving the demo's nodes.
    pub emulator: RunningEmulator,
    /// (user, password) of each demo user.
    pub passwords: Vec<(String, String)>,
}

/// A random password of 16 letters and digits.
pub fn random_password() -> String {
    use rand::RngExt as _;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// The signing key kept in the data folder (readable by its owner only), so sign-ins survive
/// a restart of the demo.
fn jwt_secret(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("jwt-secret");
    let secret = match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => s.trim().to_owned(),
        _ => {
            let secret = hex::encode(rand::random::<[u8; 32]>());
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(secret.as_bytes())?;
            secret
        }
    };
    // A key written by an older demo may be world-readable.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(secret)
}

/// Makes `path` readable by its owner only, when it exists (folders: 0700, files: 0600).
fn owner_only(path: &Path) -> Result<(), String> {
    let mode = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => 0o700,
        Ok(_) => 0o600,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot make {} private: {e}", path.display()))
}

/// Prepares the demo in `data_dir`: starts the emulator, writes the configuration, creates or
/// resets the demo users with `password` (one random password each when `None`).
pub async fn prepare(
    listen: SocketAddr,
    data_dir: PathBuf,
    password: Option<String>,
) -> Result<Demo, String> {
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| format!("cannot create the data folder {}: {e}", data_dir.display()))?;
    let data_dir = data_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", data_dir.display()))?;
    // The folder holds the signing key, the database (password hashes, the audit log) and the
    // recordings: its owner's only.
    owner_only(&data_dir)?;
    let emulator = RunningEmulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        EmulatorConfig::new(data_dir.join("nodes")),
    )
    .await
    .map_err(|e| format!("cannot start the emulator: {e}"))?;
    // The defaults (which lack a signing key by design: the demo makes one below).
    let mut config: Config = toml::from_str("").map_err(|e| format!("demo configuration: {e}"))?;
    config.server.listen = listen;
    config.server.public_url = format!("http://{listen}");
    config.database.url = Secret::new(format!(
        "sqlite://{}",
        data_dir.join("porthole.db").display()
    ));
    config.recordings.dir = data_dir.join("recordings");
    config.aws.endpoint_url = Some(emulator.url());
    config.aws.access_key_id = Some(Secret::new("demo"));
    config.aws.secret_access_key = Some(Secret::new("demo"));
    config.auth.jwt_secret = Secret::new(
        jwt_secret(&data_dir).map_err(|e| format!("cannot write the signing key: {e}"))?,
    );
    config.validate().map_err(|e| e.to_string())?;

    let db = Db::connect(config.database.url.expose())
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    let mut passwords = Vec::new();
    let by = users::ChangedBy::command_line("demo");
    for (name, role) in DEMO_USERS {
        let password = password.clone().unwrap_or_else(random_password);
        match users::create(&db, name, &password, &[role], &by).await {
            Ok(_) => {}
            Err(UserError::Exists(_)) => {
                users::set_password(&db, name, &password, &by)
                    .await
                    .map_err(|e| e.to_string())?;
                users::set_disabled(&db, name, false, &by)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
        passwords.push((name.to_owned(), password));
    }
    db.pool().close().await;
    for file in ["porthole.db", "porthole.db-wal", "porthole.db-shm"] {
        owner_only(&data_dir.join(file))?;
    }
    Ok(Demo {
        config,
        emulator,
        passwords,
    })
}
