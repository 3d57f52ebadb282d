//! A real gateway on an ephemeral port, in front of a real emulator, with SQLite in a temporary
//! folder or a fresh PostgreSQL database; and a small typed client for its API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use porthole::gateway::config::{Config, Secret};
use porthole::gateway::http::AppState;
use porthole::gateway::identity::users::{self, Role};
use porthole::gateway::store::db::Db;
use tokio::net::TcpListener;

use super::emulator::{self, Emu};

/// The signing key of test gateways.
pub const JWT_SECRET: &str = "test-signing-key-0123456789abcdef0123456789";
/// The password of every test user.
pub const PASSWORD: &str = "correct horse battery";

/// Which database a test gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs the scenario `async fn $name(backend: Backend)` of a test file on both backends, as the
/// tests `$name::sqlite` and `$name::postgres`. (Unused in some test binaries, as the rest of
/// `common`.)
#[allow(unused_macros)]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::gateway::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::gateway::Backend::Postgres).await;
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both_backends;

pub struct Gateway {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub state: Arc<AppState>,
    pub emu: Emu,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

/// The admin URL of the machine's PostgreSQL server.
pub fn postgres_admin_url() -> String {
    std::env::var("PORTHOLE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub async fn fresh_postgres() -> (String, String) {
    let admin_url = postgres_admin_url();
    let admin = Db::connect(&admin_url)
        .await
        .expect("PostgreSQL must be running (.ci/run starts it)");
    let name = format!(
        "porthole_gw_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .unwrap();
    admin.pool().close().await;
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
    (format!("{base}/{name}"), name)
}

/// The configuration of a gateway for tests and benchmarks: listening on `addr`, in front of
/// the emulator at `emulator_url`, its recordings and its SQLite database in `dir`.
pub fn config(addr: SocketAddr, dir: &Path, emulator_url: String) -> Config {
    let mut config: Config = toml::from_str("").unwrap();
    config.server.listen = addr;
    config.server.public_url = format!("http://{addr}");
    config.auth.jwt_secret = Secret::new(JWT_SECRET);
    config.recordings.dir = dir.join("recordings");
    config.aws.endpoint_url = Some(emulator_url);
    config.aws.access_key_id = Some(Secret::new("AKIDTEST"));
    config.aws.secret_access_key = Some(Secret::new("secret"));
    config.database.url = Secret::new(format!("sqlite://{}", dir.join("porthole.db").display()));
    config
}

/// Starts an emulator and a gateway in front of it; `configure` may change the gateway's
/// configuration (its URLs and database are set already).
pub async fn start(backend: Backend, configure: impl FnOnce(&mut Config)) -> Gateway {
    start_with(backend, |_| {}, configure).await
}

/// [`start`] with an emulator configuration too.
pub async fn start_with(
    backend: Backend,
    configure_emulator: impl FnOnce(&mut porthole::emulator::EmulatorConfig),
    configure: impl FnOnce(&mut Config),
) -> Gateway {
    let emu = emulator::start(configure_emulator).await;
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = config(addr, dir.path(), emu.emulator.url());
    let postgres = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => {
            let (url, name) = fresh_postgres().await;
            config.database.url = Secret::new(url);
            Some((postgres_admin_url(), name))
        }
    };
    configure(&mut config);
    config.validate().unwrap();
    let state = porthole::gateway::prepare(config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let state = state.clone();
        async move {
            porthole::gateway::serve_state(state, listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        }
    });
    Gateway {
        url: format!("http://{addr}"),
        state,
        emu,
        stop: Some(stop),
        task: Some(task),
        postgres,
        _dir: dir,
    }
}

impl Gateway {
    /// Disables a user, as `porthole users disable` does: their sign-ins stop working at once.
    pub async fn disable(&self, name: &str) {
        users::set_disabled(
            &self.state.engine.db,
            name,
            true,
            &users::ChangedBy::command_line("test"),
        )
        .await
        .unwrap();
    }

    /// Writes `porthole.toml` in `dir` for the command line against this gateway's database
    /// (what an operator's configuration holds for `porthole users` and `porthole audit`).
    pub fn cli_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("porthole.toml");
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = \"{}\"\n[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n",
                self.state.config.database.url.expose()
            ),
        )
        .unwrap();
        path
    }

    /// Creates a user with [`PASSWORD`].
    pub async fn user(&self, name: &str, roles: &[Role]) {
        users::create(
            &self.state.engine.db,
            name,
            PASSWORD,
            roles,
            &users::ChangedBy::command_line("test"),
        )
        .await
        .unwrap();
    }

    /// The emulator's SSM sessions in `state`, as the real SDK lists them.
    pub async fn ssm_sessions(
        &self,
        state: aws_sdk_ssm::types::SessionState,
    ) -> Vec<aws_sdk_ssm::types::Session> {
        self.emu
            .aws
            .ssm
            .describe_sessions()
            .state(state)
            .send()
            .await
            .unwrap()
            .sessions()
            .to_vec()
    }

    /// SSM's Owner of the active session `ssm_id`, as the real SDK reads it back from the
    /// emulator (empty when it is not listed).
    pub async fn ssm_owner(&self, ssm_id: &str) -> String {
        self.ssm_sessions(aws_sdk_ssm::types::SessionState::Active)
            .await
            .iter()
            .find(|s| s.session_id() == Some(ssm_id))
            .and_then(|s| s.owner())
            .unwrap_or_default()
            .to_owned()
    }

    /// The `Origin` browsers send to this gateway.
    pub fn origin(&self) -> String {
        self.url.clone()
    }

    /// The `ws://` URL of a path.
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.url.replacen("http://", "ws://", 1))
    }

    /// Stops the gateway (its live sessions end) but keeps its database, for another gateway
    /// to start on ([`start_on`]); drop it with [`KeptDatabase::drop_database`].
    pub async fn stop_keeping_database(mut self) -> KeptDatabase {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.state.engine.db.pool().close().await;
        let dir = tempfile::tempdir().unwrap();
        KeptDatabase {
            url: self.state.config.database.url.expose().to_owned(),
            postgres: self.postgres.take(),
            _dir: std::mem::replace(&mut self._dir, dir),
        }
    }

    /// Stops the gateway (its live sessions end) and drops a PostgreSQL database it made.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
        self.state.engine.db.pool().close().await;
        if let Some((admin_url, name)) = self.postgres.take() {
            let admin = Db::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(admin.pool())
            .await
            .unwrap();
        }
    }
}

/// The database of a stopped gateway (and, for SQLite, the folder it is in).
pub struct KeptDatabase {
    /// Its URL.
    pub url: String,
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl KeptDatabase {
    /// Drops the PostgreSQL database (SQLite's goes with its folder).
    pub async fn drop_database(self) {
        if let Some((admin_url, name)) = self.postgres {
            let admin = Db::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(admin.pool())
            .await
            .unwrap();
        }
    }
}

/// A fresh database without a gateway: SQLite in a temporary folder, or a new PostgreSQL
/// database (not migrated).
pub async fn fresh_database(backend: Backend) -> KeptDatabase {
    let dir = tempfile::tempdir().unwrap();
    match backend {
        Backend::Sqlite => KeptDatabase {
            url: format!("sqlite://{}", dir.path().join("porthole.db").display()),
            postgres: None,
            _dir: dir,
        },
        Backend::Postgres => {
            let (url, name) = fresh_postgres().await;
            KeptDatabase {
                url,
                postgres: Some((postgres_admin_url(), name)),
                _dir: dir,
            }
        }
    }
}

/// Starts an emulator and a gateway on the database `kept` (another gateway's, stopped);
/// `configure` may change the rest.
pub async fn start_on(kept: &KeptDatabase, configure: impl FnOnce(&mut Config)) -> Gateway {
    let url = kept.url.clone();
    // `Sqlite`: no fresh PostgreSQL database is made; the URL is the kept one either way.
    start(Backend::Sqlite, move |config| {
        config.database.url = Secret::new(url);
        configure(config);
    })
    .await
}
