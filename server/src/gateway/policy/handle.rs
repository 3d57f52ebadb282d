//! The policy in force: one [`Policy`] behind a lock, replaced whole (requests already
//! running keep the policy they started with), and where to read it again. Reloading it (on
//! SIGHUP or a change of its file, audited) is `gateway::reload`'s work.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use super::{Policy, PolicyConfig};

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
    /// Loads the policy the `[policy]` section describes (reading `policy.file` when set,
    /// relative to `config_file`'s folder).
    pub fn load(config: &PolicyConfig, config_file: Option<&Path>) -> Result<Self, String> {
        let mut handle = Self::new(
            Policy::builtin(),
            config.clone(),
            config_file.map(Path::to_path_buf),
        );
        handle.loaded_stamp = handle.watched_file().as_deref().and_then(stamp);
        let policy = Policy::from_config(config, config_file)?;
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

    /// Puts `policy` in force.
    pub fn replace(&self, policy: Arc<Policy>) {
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

    /// The watched file's modification time and size when the policy in force was loaded.
    pub fn loaded_stamp(&self) -> Option<(SystemTime, u64)> {
        self.loaded_stamp
    }

    /// Reads and compiles the policy again from where it lives; `parse_config` reads a
    /// configuration file's text (with the environment's overrides) into its `[policy]`
    /// section, for roles written inline.
    pub fn load_again(
        &self,
        parse_config: impl FnOnce(&str) -> Result<PolicyConfig, String>,
    ) -> Result<Policy, String> {
        if self.config.file.is_none()
            && let Some(path) = &self.config_file
        {
            // Inline (or no) roles: they live in the configuration file, read anew with the
            // environment's overrides; only its [policy] section takes effect without a restart.
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let config = parse_config(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            return Policy::from_config(&config, Some(path));
        }
        Policy::from_config(&self.config, self.config_file.as_deref())
    }
}

/// Logs the roles of a policy that took effect.
pub fn log_loaded(policy: &Policy) {
    let names = policy.role_names().join(", ");
    if policy.roles().is_empty() {
        tracing::warn!(source = %policy.source(), "the policy defines no roles: nobody may open sessions");
    } else {
        tracing::info!(source = %policy.source(), hash = policy.hash(), "policy roles: {names}");
    }
}

/// What changes when a file changes: its modification time and size.
pub fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
