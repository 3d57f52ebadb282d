//! The policy in force and its replacement: on SIGHUP, and when the file that holds it changes
//! (its modification time and size are looked at every `policy.watch_seconds`). A new policy
//! is compiled first; a bad one is refused, logged and audited (`policy.reload_failed`) and
//! the old one stays. A good one is audited (`policy.reload`, with its hash) and then swapped
//! in whole: requests already running keep the policy they started with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use super::{Policy, PolicyConfig, audit_kind};
use crate::gateway::audit::{self, Event};
use crate::gateway::config::Config;
use crate::gateway::state::AppState;

/// The policy in force, replaceable while the gateway runs.
#[derive(Debug)]
pub struct PolicyHandle {
    current: RwLock<Arc<Policy>>,
    /// The `[policy]` section the gateway started with.
    config: PolicyConfig,
    /// The configuration file, when the gateway was started from one.
    config_file: Option<PathBuf>,
    /// The watched file's modification time and size before it was read, so that a change
    /// made before the watcher starts is not missed.
    loaded_stamp: Option<(SystemTime, u64)>,
}

impl PolicyHandle {
    /// Loads the policy `config` describes (reading `policy.file` when set).
    pub fn load(config: &Config) -> Result<Self, String> {
        let mut handle = Self::new(
            Policy::builtin(),
            config.policy.clone(),
            config.source.clone(),
        );
        handle.loaded_stamp = handle.watched_file().as_deref().and_then(stamp);
        let policy = Policy::from_config(&config.policy, config.source.as_deref())?;
        log_loaded(&policy);
        handle.replace(Arc::new(policy));
        Ok(handle)
    }

    /// A handle on `policy`; `config` and `config_file` say where to read it again.
    pub fn new(policy: Policy, config: PolicyConfig, config_file: Option<PathBuf>) -> Self {
        Self {
            current: RwLock::new(Arc::new(policy)),
            config,
            config_file,
            loaded_stamp: None,
        }
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, policy: Arc<Policy>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = policy;
    }

    /// The file that holds the policy: `policy.file`, else the configuration file (inline
    /// or built-in roles); `None` when the gateway was configured without a file.
    pub fn watched_file(&self) -> Option<PathBuf> {
        match &self.config.file {
            Some(file) => Some(super::resolve_file(file, self.config_file.as_deref())),
            None => self.config_file.clone(),
        }
    }

    /// How often the watched file is looked at; `None`: only on SIGHUP.
    pub fn watch_interval(&self) -> Option<Duration> {
        match self.config.watch_seconds {
            0 => None,
            s => Some(Duration::from_secs(s)),
        }
    }

    /// Reads and compiles the policy again from where it lives.
    pub fn load_again(&self) -> Result<Policy, String> {
        if self.config.file.is_none()
            && let Some(path) = &self.config_file
        {
            // Inline (or no) roles: they live in the configuration file, read anew with the
            // environment's overrides; only its [policy] section takes effect without a restart.
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let config = Config::from_toml_and_env(&text, std::env::vars())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            return Policy::from_config(&config.policy, Some(path));
        }
        Policy::from_config(&self.config, self.config_file.as_deref())
    }
}

fn log_loaded(policy: &Policy) {
    let names = policy.role_names().join(", ");
    if policy.roles().is_empty() {
        tracing::warn!(source = %policy.source(), "the policy defines no roles: nobody may open sessions");
    } else {
        tracing::info!(source = %policy.source(), hash = policy.hash(), "policy roles: {names}");
    }
}

/// Reads the policy again and, when it compiles and differs from the one in force, audits and
/// swaps it in. `Ok(true)`: replaced; `Ok(false)`: unchanged; `Err`: refused (logged and
/// audited; the old policy stays).
pub async fn reload(state: &AppState, trigger: &str) -> Result<bool, String> {
    let handle = &state.policy;
    let old = handle.current();
    let file = handle
        .watched_file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let client = audit::Client::default();
    let new = match handle.load_again() {
        Ok(new) => new,
        Err(error) => {
            tracing::error!(
                file,
                trigger,
                "policy not reloaded, the old one stays: {error}"
            );
            let detail = json!({
                "file": file, "error": error, "trigger": trigger, "kept": old.hash(),
            });
            if let Err(e) = append(
                state,
                Event::new(audit_kind::RELOAD_FAILED, "porthole", &client).detail(detail),
            )
            .await
            {
                tracing::error!("audit of the refused policy failed: {e}");
            }
            return Err(error);
        }
    };
    if new.hash() == old.hash() {
        tracing::info!(file, trigger, "policy unchanged");
        return Ok(false);
    }
    let detail = json!({
        "file": file,
        "source": new.source().to_string(),
        "hash": new.hash(),
        "previous_hash": old.hash(),
        "roles": new.role_names(),
        "trigger": trigger,
    });
    // Audited before it takes effect: without the record, no change.
    append(
        state,
        Event::new(audit_kind::RELOAD, "porthole", &client).detail(detail),
    )
    .await
    .map_err(|e| {
        tracing::error!("policy not reloaded: the audit write failed: {e}");
        format!("the audit write failed: {e}")
    })?;
    log_loaded(&new);
    handle.replace(Arc::new(new));
    Ok(true)
}

async fn append(state: &AppState, event: Event<'_>) -> Result<(), String> {
    let result = async {
        let mut tx = state.db.begin_write().await?;
        audit::append(&mut tx.tx, &event).await?;
        tx.commit().await
    }
    .await;
    result.map_err(|e| e.to_string())
}

/// What changes when a file changes.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Starts the task that reloads the policy on SIGHUP and when its file changes. The signal is
/// registered before this returns, so a SIGHUP sent once the gateway answers requests is
/// never lost. Abort the task when the gateway stops.
pub fn spawn_watcher(state: Arc<AppState>) -> JoinHandle<()> {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP (the policy reloads on file change only): {e}"
            );
            None
        }
    };
    let file = state.policy.watched_file();
    let mut tick = match (&file, state.policy.watch_interval()) {
        (Some(_), Some(every)) => {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            Some(tick)
        }
        _ => None,
    };
    tokio::spawn(async move {
        let mut seen = state.policy.loaded_stamp;
        loop {
            let trigger = tokio::select! {
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => "SIGHUP",
                () = async {
                    match tick.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                } => {
                    let now = file.as_deref().and_then(stamp);
                    if now == seen {
                        continue;
                    }
                    "file change"
                }
            };
            seen = file.as_deref().and_then(stamp);
            // reload logs and audits its outcome.
            let _ = reload(&state, trigger).await;
        }
    })
}
