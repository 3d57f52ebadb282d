//! The gateway's configuration: a TOML file whose every key can be overridden by an
//! environment variable, `PORTHOLE_` + section and key in upper case joined by a double
//! underscore (`PORTHOLE_AWS__ENDPOINT_URL`). Validated at start-up; errors name the key.
//! Secrets live in [`Secret`], whose `Debug` and `Display` print `[redacted]`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use super::policy::PolicyConfig;
pub use cluster::ClusterConfig;
pub use metrics::{LogFormat, MetricsConfig};
pub use notify::{NotifyConfig, WebhookConfig, WebhookFormat};
pub use sso::{OidcConfig, ProxyAuthConfig, ProxyMode, RoleMapping};

pub mod cluster;
pub mod metrics;
pub mod notify;
pub mod sso;

/// The prefix of overriding environment variables.
pub const ENV_PREFIX: &str = "PORTHOLE_";

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

/// Only text is a secret; anything else is refused without its value (a typo'd TOML number
/// would otherwise be quoted back in the error).
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("text in quotes (the value is a secret and is not shown)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret(v))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(NOT_TEXT))
            }
        }
        deserializer.deserialize_string(Text)
    }
}

/// Replaces every `KEY_file = "PATH"` whose `KEY` holds a secret ([`is_secret_key`]) with
/// `KEY` = the file's text (one trailing newline removed), so that secrets can come from files
/// (Kubernetes secrets, Docker secrets) rather than the configuration or the environment.
fn read_secret_files(table: &mut toml::Table, path: &mut Vec<String>) -> Result<(), ConfigError> {
    let files: Vec<String> = table
        .keys()
        .filter(|k| {
            k.strip_suffix("_file").is_some_and(|base| {
                path.push(base.to_owned());
                let secret = is_secret_key(path);
                path.pop();
                secret
            })
        })
        .cloned()
        .collect();
    for key in files {
        let base = key.trim_end_matches("_file").to_owned();
        let place = path
            .iter()
            .chain(std::iter::once(&key))
            .cloned()
            .collect::<Vec<_>>()
            .join(".");
        if table.contains_key(&base) {
            return Err(ConfigError(format!(
                "{place} and {} are both set: keep one",
                place.trim_end_matches("_file")
            )));
        }
        let Some(toml::Value::String(file)) = table.remove(&key) else {
            return Err(ConfigError(format!(
                "{place} must be a file path in quotes"
            )));
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ConfigError(format!("{place}: cannot read {file:?}: {e}")))?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        if text.is_empty() {
            return Err(ConfigError(format!("{place}: {file:?} is empty")));
        }
        table.insert(base, toml::Value::String(text.to_owned()));
    }
    for (key, value) in table.iter_mut() {
        match value {
            toml::Value::Table(inner) => {
                path.push(key.clone());
                read_secret_files(inner, path)?;
                path.pop();
            }
            // `[[notify.webhooks]]`: each table by its position (`notify.webhooks[1].secret_file`).
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        path.push(format!("{key}[{i}]"));
                        read_secret_files(inner, path)?;
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error for a secret that is not text.
const NOT_TEXT: &str = "a secret must be text in quotes (the value is not shown)";

/// Whether the key at `path` holds a secret (the database URL, the AWS access key id, the
/// metrics bearer token, a webhook's URL, and every key whose name has `secret` in it): an
/// environment override of one is always text.
fn is_secret_key(path: &[String]) -> bool {
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    matches!(
        path.as_slice(),
        ["database", "url"] | ["aws", "access_key_id"] | ["metrics", "bearer_token"]
    ) || matches!(path.as_slice(), ["notify", hook, "url"] if hook.starts_with("webhooks["))
        || path.last().is_some_and(|key| key.contains("secret"))
}

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[database]`.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// `[aws]`.
    #[serde(default)]
    pub aws: AwsConfig,
    /// `[auth]`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[sessions]`.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// `[policy]`: roles, or the file that holds them (`docs/policy.md`).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `[recordings]`.
    #[serde(default)]
    pub recordings: RecordingsConfig,
    /// `[cluster]`: what several gateways on one database share.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// `[metrics]`: `/metrics`, its token and its own listener.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[notify]`: webhooks told of access requests, and their retries.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[files]`: file transfer to and from the nodes of sessions.
    #[serde(default)]
    pub files: FilesConfig,
    /// The file this configuration was read from, when it was (set by the caller; relative
    /// `policy.file` paths start there, and inline roles are reloaded from it).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// The URL people use; Origin checks and the cookie's Secure flag derive from it.
    pub public_url: String,
    /// This gateway's name among the gateways sharing the database (which one owns a live
    /// session); each must have its own. Default: the host name (the pod's name).
    pub gateway_id: String,
    /// Where the other gateways reach this one (`http://10.0.3.7:8080`). Default: the listen
    /// address, or the host name with the listen port when it listens on every address.
    pub internal_url: Option<String>,
    /// On SIGTERM, how long the gateway may take to hand its live sessions to the others
    /// (or end them) before it stops serving, in seconds.
    pub drain_seconds: u64,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed: the
    /// client address (sign-in limits, the audit log) is then the nearest address in that
    /// header that is not one of them. Empty (the default): the peer's address, and the
    /// header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Longest a client may take to send a request's headers, and a request's body, in
    /// seconds: a client that sends them slowly (slowloris) is disconnected.
    pub read_timeout_seconds: u64,
    /// `text` (the default) or `json`: one JSON object per line.
    pub log_format: LogFormat,
}

impl ServerConfig {
    /// Where the other gateways reach this one: `server.internal_url`, or its default.
    pub fn internal_url(&self) -> String {
        match &self.internal_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => cluster::default_internal_url(self.listen, &cluster::host_name()),
        }
    }

    /// [`ServerConfig::trusted_proxies`] parsed; the error names the entry.
    pub fn trusted_networks(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let text = text.trim();
                text.parse::<ipnet::IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        ConfigError(format!(
                            "server.trusted_proxies[{i}]: {text:?} is not an IP address or a \
                             CIDR block (10.0.0.0/8, 2001:db8::/32, 192.0.2.7)"
                        ))
                    })
            })
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            gateway_id: cluster::host_name(),
            internal_url: None,
            drain_seconds: 30,
            trusted_proxies: Vec::new(),
            read_timeout_seconds: 10,
            log_format: LogFormat::Text,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` or `postgres://…`. May hold a password: treated as a secret.
    pub url: Secret,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::new("sqlite://porthole.db"),
        }
    }
}

/// `[aws]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsConfig {
    /// The region, when only one is used.
    pub region: Option<String>,
    /// Several regions.
    pub regions: Vec<String>,
    /// An endpoint override: the emulator, a VPC endpoint, LocalStack.
    pub endpoint_url: Option<String>,
    /// Static credentials (the emulator, tests); unset means aws-config's default chain.
    pub access_key_id: Option<Secret>,
    /// The secret key that goes with [`AwsConfig::access_key_id`].
    pub secret_access_key: Option<Secret>,
    /// `[[aws.accounts]]`: the accounts whose nodes are listed, each through a role the gateway
    /// assumes with its own credentials. None: one implicit account, the gateway's own.
    pub accounts: Vec<AccountConfig>,
}

/// `[[aws.accounts]]`: one AWS account of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    /// What people and the policy call it (`prod`): 1 to 64 of a-z, 0-9, `.`, `_`, `-`.
    pub name: String,
    /// The role the gateway assumes (with its own credentials) to list the account's nodes
    /// and to start sessions there for people whose policy role names no role of its own.
    pub role_arn: String,
    /// The `ExternalId` the role's trust policy asks for.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Its regions; unset: the regions of `[aws]`.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            region: Some("us-east-1".into()),
            regions: Vec::new(),
            endpoint_url: None,
            access_key_id: None,
            secret_access_key: None,
            accounts: Vec::new(),
        }
    }
}

impl AwsConfig {
    /// The regions of `account`, in order, without duplicates: its own, else `[aws]`'s.
    pub fn account_regions(&self, account: &AccountConfig) -> Vec<String> {
        match &account.regions {
            None => self.all_regions(),
            Some(list) => {
                let mut out: Vec<String> = Vec::new();
                for r in list {
                    if !out.contains(r) {
                        out.push(r.clone());
                    }
                }
                out
            }
        }
    }

    /// Checks `[[aws.accounts]]`: names valid and distinct, role ARNs that are role ARNs,
    /// regions named.
    fn validate_accounts(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, account) in self.accounts.iter().enumerate() {
            let at = format!("aws.accounts[{i}]");
            if !crate::gateway::facts::valid_name(&account.name) {
                return Err(ConfigError(format!(
                    "{at}.name: account names are 1 to 64 characters of a-z, 0-9, '.', '_' and \
                     '-'; got {:?}",
                    account.name
                )));
            }
            if !seen.insert(account.name.as_str()) {
                return Err(ConfigError(format!(
                    "{at}.name: the account {:?} is configured twice",
                    account.name
                )));
            }
            if !crate::gateway::facts::valid_role_arn(&account.role_arn) {
                return Err(ConfigError(format!(
                    "{at}.role_arn: {:?} is not an IAM role ARN \
                     (arn:aws:iam::123456789012:role/NAME)",
                    account.role_arn
                )));
            }
            if let Some(id) = &account.external_id
                && !(2..=1224).contains(&id.len())
            {
                return Err(ConfigError(format!(
                    "{at}.external_id: 2 to 1224 characters"
                )));
            }
            if account.regions.as_ref().is_some_and(Vec::is_empty) {
                return Err(ConfigError(format!(
                    "{at}.regions: name at least one region (leave the key out for the regions \
                     of [aws])"
                )));
            }
        }
        Ok(())
    }

    /// The regions in use, in order, without duplicates.
    pub fn all_regions(&self) -> Vec<String> {
        let mut out: Vec<String> = self.region.iter().cloned().collect();
        for r in &self.regions {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The key that signs sign-in cookies (HS256); at least 32 bytes.
    pub jwt_secret: Secret,
    /// How long a sign-in lasts, in seconds.
    pub login_ttl_seconds: u64,
    /// Failed sign-ins allowed for one user from one client address per window; beyond
    /// them that pair is locked out for [`AuthConfig::lockout_seconds`], doubled at each
    /// further failure (at most the window). Other addresses are not locked out with it.
    pub max_failed_logins: u32,
    /// Failed sign-ins allowed from one client address per window, whatever the names.
    pub max_failed_logins_per_address: u32,
    /// The window of the failed sign-in limits, in seconds.
    pub failed_login_window_seconds: u64,
    /// The first lockout of a user at an address, in seconds.
    pub lockout_seconds: u64,
    /// Password checks (argon2id, 19 MiB each) that may run at once; a sign-in beyond them is
    /// refused with 429 `rate_limited` instead of queueing memory.
    pub max_concurrent_hashes: u32,
    /// Whether people may sign in with a local password. With `false` the password form is
    /// hidden and refused, except for the names in [`AuthConfig::local_break_glass`].
    pub local: bool,
    /// Local users who may still sign in with a password when `local = false` (break-glass
    /// admins made with `porthole users add`).
    pub local_break_glass: Vec<String>,
    /// `[auth.oidc]`: single sign-on with an OpenID Connect provider.
    pub oidc: Option<OidcConfig>,
    /// `[auth.proxy]`: a proxy in front signed people in already.
    pub proxy: Option<ProxyAuthConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: Secret::default(),
            login_ttl_seconds: 12 * 3600,
            max_failed_logins: 5,
            max_failed_logins_per_address: 30,
            failed_login_window_seconds: 300,
            lockout_seconds: 30,
            max_concurrent_hashes: 4,
            local: true,
            local_break_glass: Vec::new(),
            oidc: None,
            proxy: None,
        }
    }
}

/// `[recordings]`: asciicast v2 files written by the gateway as sessions run, kept in
/// `dir` or, with `storage = "s3"`, uploaded to a bucket when the session ends (`dir` is then
/// the spool the running sessions write to).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingsConfig {
    /// The folder of the recordings (created when missing); the spool with `storage = "s3"`.
    pub dir: PathBuf,
    /// Record input too (keystrokes, including passwords typed at prompts). Off by default.
    pub input: bool,
    /// Where finished recordings are kept.
    pub storage: RecordingStorage,
    /// The bucket, with `storage = "s3"`.
    pub bucket: Option<String>,
    /// Put before `<session id>.cast` to make the object key.
    pub prefix: String,
    /// The bucket's region; unset: the first of `[aws]`.
    pub region: Option<String>,
    /// An S3 endpoint override (an S3-compatible server); `aws.endpoint_url` is not used for S3.
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub force_path_style: bool,
    /// Longest a search of the recordings may take, in milliseconds; the person gets 503
    /// `search_timeout` beyond it (PostgreSQL also cancels the query).
    pub search_timeout_ms: u64,
    /// Searches one person may start a minute (one at a time).
    pub searches_per_minute: u32,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("porthole-recordings"),
            input: false,
            storage: RecordingStorage::Local,
            bucket: None,
            prefix: "recordings/".into(),
            region: None,
            endpoint_url: None,
            force_path_style: false,
            search_timeout_ms: 10_000,
            searches_per_minute: 20,
        }
    }
}

/// `recordings.storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStorage {
    /// Files in `recordings.dir`.
    Local,
    /// Objects in `recordings.bucket`.
    S3,
}

impl<'de> Deserialize<'de> for RecordingStorage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "local" => Ok(Self::Local),
            "s3" => Ok(Self::S3),
            other => Err(serde::de::Error::custom(format!(
                "recordings.storage must be \"local\" or \"s3\", got {other:?}"
            ))),
        }
    }
}

impl RecordingsConfig {
    /// Checks the keys of `storage = "s3"`.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.search_timeout_ms == 0 || self.searches_per_minute == 0 {
            return Err(ConfigError(
                "recordings.search_timeout_ms and recordings.searches_per_minute must be at \
                 least 1"
                    .into(),
            ));
        }
        if self.storage != RecordingStorage::S3 {
            return Ok(());
        }
        let bucket = self.bucket.as_deref().unwrap_or("");
        if bucket.is_empty() {
            return Err(ConfigError(
                "recordings.bucket must name a bucket when recordings.storage = \"s3\"".into(),
            ));
        }
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(ConfigError(format!(
                "recordings.bucket {bucket:?} is not a bucket name (3-63 of a-z, 0-9, '.', '-')"
            )));
        }
        if self.prefix.starts_with('/') {
            return Err(ConfigError(format!(
                "recordings.prefix must not start with '/', got {:?}",
                self.prefix
            )));
        }
        if let Some(url) = &self.endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError(format!(
                "recordings.endpoint_url must start with http:// or https://, got {url:?}"
            )));
        }
        if self.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            return Err(ConfigError("recordings.region must not be empty".into()));
        }
        Ok(())
    }
}

/// `[sessions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Live sessions one user may hold at once.
    pub max_per_user: u32,
    /// People watching one session read-only at once (each holds a queue of up to 1,024
    /// messages in the gateway).
    pub max_observers: u32,
    /// People one session's owner may invite into it at once (sharing; `join_others`).
    pub max_participants: u32,
    /// Output kept per session (latest bytes) for a browser that reattaches, in bytes.
    pub scrollback_bytes: usize,
    /// A session with no input for this long is ended (0: never). Warned 60 s and 10 s before.
    pub idle_timeout_seconds: u64,
    /// A session is ended after this long (0: never). Warned 60 s and 10 s before.
    pub max_duration_seconds: u64,
    /// A session with no browser attached for this long is ended (0: never).
    pub detached_grace_seconds: u64,
    /// A message of the data channel unacknowledged for this long (socket open) gives the
    /// session up: it is terminated and its end audited with why.
    pub retransmit_give_up_seconds: u64,
    /// A session with no output, input or attach for this long compacts itself: its ring of
    /// output is compressed and its terminal model reduced to the bytes that rebuild it,
    /// until the next output or attach (1 to 86,400).
    #[serde(deserialize_with = "compact_after_seconds")]
    pub compact_after_seconds: u64,
    /// How often an attached participant's socket looks at the database for their invitation
    /// (1 to [`PARTICIPANT_RECHECK_MAX`]): the fallback when a revocation or a change of mode
    /// made on another gateway could not be pushed to the one running the session.
    #[serde(deserialize_with = "participant_recheck_seconds")]
    pub participant_recheck_seconds: u64,
}

impl SessionsConfig {
    /// [`SessionsConfig::participant_recheck_seconds`] as a duration.
    pub fn participant_recheck(&self) -> Duration {
        Duration::from_secs(self.participant_recheck_seconds)
    }
}

/// `sessions.participant_recheck_seconds`: a whole number of seconds, or an error naming the
/// key.
fn participant_recheck_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole_number(d, |got| {
        format!(
            "sessions.participant_recheck_seconds must be a whole number of seconds between 1 \
             and {PARTICIPANT_RECHECK_MAX}, got {got}"
        )
    })
}

/// The longest `sessions.participant_recheck_seconds` (an hour).
pub const PARTICIPANT_RECHECK_MAX: u64 = 3600;

/// `sessions.compact_after_seconds`: a whole number of seconds, or an error naming the key
/// (serde's own, "invalid value: integer `-3`, expected u64", does not).
fn compact_after_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole_number(d, |got| {
        format!(
            "sessions.compact_after_seconds must be a whole number of seconds between 1 and \
             {COMPACT_AFTER_MAX}, got {got}"
        )
    })
}

/// A whole number not below 0; anything else is refused with `message(what was given)`, which
/// names the key (serde's own message does not).
fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
    message: impl Fn(String) -> String,
) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Whole(i64),
        Other(toml::Value),
    }
    let bad = |got: String| <D::Error as serde::de::Error>::custom(message(got));
    match Raw::deserialize(d)? {
        Raw::Whole(n) => u64::try_from(n).map_err(|_| bad(n.to_string())),
        Raw::Other(v) => Err(bad(v.to_string())),
    }
}

/// The longest `sessions.compact_after_seconds` (a day).
pub const COMPACT_AFTER_MAX: u64 = 86_400;

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            max_per_user: 5,
            max_observers: 8,
            max_participants: 8,
            scrollback_bytes: 256 * 1024,
            idle_timeout_seconds: 20 * 60,
            max_duration_seconds: 12 * 3600,
            detached_grace_seconds: 10 * 60,
            retransmit_give_up_seconds: 300,
            compact_after_seconds: 30,
            participant_recheck_seconds: 2,
        }
    }
}

/// `[files]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// The largest file uploaded to or downloaded from a node, in bytes (1 to
    /// [`FILES_MAX_BYTES_LIMIT`]). A transfer holds the whole file in the gateway's memory.
    #[serde(deserialize_with = "files_max_bytes")]
    pub max_bytes: u64,
    /// Transfers running at once in this gateway, everyone's together (1 to
    /// [`FILES_MAX_CONCURRENT_LIMIT`]): with `max_bytes`, what file transfer may hold in memory.
    #[serde(deserialize_with = "files_max_concurrent")]
    pub max_concurrent: u64,
    /// Transfers one person may run at once in this gateway, over all their sessions (1 to
    /// `max_concurrent`), so that one person cannot take every slot.
    #[serde(deserialize_with = "files_max_concurrent_per_user")]
    pub max_concurrent_per_user: u64,
}

/// `files.max_concurrent`: a whole number, or an error naming the key.
fn files_max_concurrent<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole_number(d, |got| {
        format!(
            "files.max_concurrent must be a whole number of transfers between 1 and \
             {FILES_MAX_CONCURRENT_LIMIT}, got {got}"
        )
    })
}

/// `files.max_concurrent_per_user`: a whole number, or an error naming the key.
fn files_max_concurrent_per_user<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole_number(d, |got| {
        format!(
            "files.max_concurrent_per_user must be a whole number of transfers between 1 and \
             files.max_concurrent, got {got}"
        )
    })
}

/// The largest `files.max_concurrent`.
pub const FILES_MAX_CONCURRENT_LIMIT: u64 = 256;

/// `files.max_bytes`: a whole number, or an error naming the key (serde's own does not).
fn files_max_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    whole_number(d, |got| {
        format!(
            "files.max_bytes must be a whole number of bytes between 1 and \
             {FILES_MAX_BYTES_LIMIT}, got {got}"
        )
    })
}

/// The largest `files.max_bytes` (1 GiB).
pub const FILES_MAX_BYTES_LIMIT: u64 = 1 << 30;

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024 * 1024,
            max_concurrent: 4,
            max_concurrent_per_user: 1,
        }
    }
}

/// Why the configuration was refused; the text names the file, variable or key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads `text` (TOML) with the overrides in `env` (name → value), then validates.
    pub fn from_toml_and_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        // The error names the place, not the line: the line may hold a secret.
        let mut table: toml::Table = toml::from_str(text).map_err(|e: toml::de::Error| {
            ConfigError(format!(
                "invalid TOML{}: {}",
                place(text, e.span()),
                unquoted(e.message().trim_end())
            ))
        })?;
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            // `SECTION__KEY`, or deeper: `AUTH__OIDC__CLIENT_SECRET` is `[auth.oidc] client_secret`.
            let path: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            let Some((key, sections)) = path.split_last() else {
                continue;
            };
            if sections.is_empty() || key.is_empty() || sections.iter().any(String::is_empty) {
                continue;
            }
            let mut here = &mut table;
            for (depth, section) in sections.iter().enumerate() {
                let entry = here
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                let toml::Value::Table(inner) = entry else {
                    return Err(ConfigError(format!(
                        "{name}: [{}] is not a section",
                        sections[..=depth].join(".")
                    )));
                };
                here = inner;
            }
            let value = if is_secret_key(&path) {
                toml::Value::String(value)
            } else {
                env_value(&value)
            };
            here.insert(key.clone(), value);
        }
        read_secret_files(&mut table, &mut Vec::new())?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.server.public_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError(format!(
                "server.public_url must start with http:// or https://, got {url:?}"
            )));
        }
        let db = self.database.url.expose();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(ConfigError(
                "database.url must be sqlite:… or postgres://… (value not shown: it may hold a password)".into(),
            ));
        }
        if self.auth.jwt_secret.expose().len() < 32 {
            return Err(ConfigError(
                "auth.jwt_secret must be at least 32 characters".into(),
            ));
        }
        if self.aws.all_regions().is_empty() {
            return Err(ConfigError(
                "aws.region or aws.regions must name a region".into(),
            ));
        }
        self.aws.validate_accounts()?;
        if self.aws.access_key_id.is_some() != self.aws.secret_access_key.is_some() {
            return Err(ConfigError(
                "aws.access_key_id and aws.secret_access_key go together: set both or neither"
                    .into(),
            ));
        }
        cluster::validate_identity(&self.server.gateway_id, &self.server.internal_url())?;
        self.cluster.validate()?;
        if self.server.drain_seconds == 0 {
            return Err(ConfigError(
                "server.drain_seconds must be at least 1".into(),
            ));
        }
        if self.sessions.retransmit_give_up_seconds == 0 {
            return Err(ConfigError(
                "sessions.retransmit_give_up_seconds must be at least 1".into(),
            ));
        }
        let compact = self.sessions.compact_after_seconds;
        if !(1..=COMPACT_AFTER_MAX).contains(&compact) {
            return Err(ConfigError(format!(
                "sessions.compact_after_seconds must be between 1 and {COMPACT_AFTER_MAX} (how \
                 long a session is quiet before it compacts itself), got {compact}"
            )));
        }
        let recheck = self.sessions.participant_recheck_seconds;
        if !(1..=PARTICIPANT_RECHECK_MAX).contains(&recheck) {
            return Err(ConfigError(format!(
                "sessions.participant_recheck_seconds must be between 1 and \
                 {PARTICIPANT_RECHECK_MAX} (how often a participant's socket looks at their \
                 invitation), got {recheck}"
            )));
        }
        self.server.trusted_networks()?;
        if self.server.read_timeout_seconds == 0 {
            return Err(ConfigError(
                "server.read_timeout_seconds must be at least 1".into(),
            ));
        }
        for (key, value) in [
            (
                "auth.max_failed_logins",
                u64::from(self.auth.max_failed_logins),
            ),
            (
                "auth.max_failed_logins_per_address",
                u64::from(self.auth.max_failed_logins_per_address),
            ),
            (
                "auth.failed_login_window_seconds",
                self.auth.failed_login_window_seconds,
            ),
            ("auth.lockout_seconds", self.auth.lockout_seconds),
        ] {
            if value == 0 {
                return Err(ConfigError(format!("{key} must be at least 1")));
            }
        }
        if self.auth.max_concurrent_hashes == 0 {
            return Err(ConfigError(
                "auth.max_concurrent_hashes must be at least 1".into(),
            ));
        }
        if self.sessions.max_observers == 0 {
            return Err(ConfigError(
                "sessions.max_observers must be at least 1 (no role observing others: leave \
                 observe_others out of the policy)"
                    .into(),
            ));
        }
        if self.sessions.max_participants == 0 {
            return Err(ConfigError(
                "sessions.max_participants must be at least 1 (no sharing: leave join_others \
                 out of the policy)"
                    .into(),
            ));
        }
        if self.sessions.max_per_user == 0 {
            return Err(ConfigError(
                "sessions.max_per_user must be at least 1".into(),
            ));
        }
        if self.policy.file.is_some() && self.policy.roles.is_some() {
            return Err(ConfigError(
                "policy.file and [[policy.roles]] are both set: keep the roles in one place".into(),
            ));
        }
        self.recordings.validate()?;
        if !(1..=FILES_MAX_BYTES_LIMIT).contains(&self.files.max_bytes) {
            return Err(ConfigError(format!(
                "files.max_bytes must be between 1 and {FILES_MAX_BYTES_LIMIT} (the largest file \
                 transferred to or from a node, in bytes), got {}",
                self.files.max_bytes
            )));
        }
        if !(1..=FILES_MAX_CONCURRENT_LIMIT).contains(&self.files.max_concurrent) {
            return Err(ConfigError(format!(
                "files.max_concurrent must be between 1 and {FILES_MAX_CONCURRENT_LIMIT} (file \
                 transfers running at once in the gateway; to allow none, give no role \
                 file_transfer), got {}",
                self.files.max_concurrent
            )));
        }
        if !(1..=self.files.max_concurrent).contains(&self.files.max_concurrent_per_user) {
            return Err(ConfigError(format!(
                "files.max_concurrent_per_user must be between 1 and files.max_concurrent ({}) \
                 (file transfers one person runs at once), got {}",
                self.files.max_concurrent, self.files.max_concurrent_per_user
            )));
        }
        self.metrics.validate(self.server.listen)?;
        self.notify.validate()?;
        if let Some(oidc) = &self.auth.oidc {
            oidc.validate()?;
        }
        if let Some(proxy) = &self.auth.proxy {
            proxy.validate(self.server.trusted_proxies.len())?;
        }
        if !self.auth.local && self.auth.oidc.is_none() && self.auth.proxy.is_none() {
            return Err(ConfigError(
                "auth.local = false leaves no way to sign in: configure [auth.oidc] or \
                 [auth.proxy] (break-glass names still sign in with a password)"
                    .into(),
            ));
        }
        if let Some(bad) = self
            .auth
            .local_break_glass
            .iter()
            .find(|n| !crate::gateway::facts::valid_user_name(n))
        {
            return Err(ConfigError(format!(
                "auth.local_break_glass: {bad:?} is not a user name"
            )));
        }
        // Inline roles are checked here; a policy file is read when the gateway starts.
        let inline = self.policy.roles.as_deref().unwrap_or_default();
        super::policy::spec::compile(inline, "policy.roles").map_err(ConfigError)?;
        Ok(())
    }

    /// Whether cookies get the Secure flag (served over TLS).
    pub fn secure_cookies(&self) -> bool {
        self.server.public_url.starts_with("https://")
    }

    /// The Origin browsers send for this gateway: scheme, host and port of the public URL.
    pub fn origin(&self) -> String {
        let url = self.server.public_url.trim_end_matches('/');
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split('/').next().unwrap_or(rest);
                format!("{scheme}://{host}")
            }
            None => url.to_owned(),
        }
    }
}

/// `message` with every value it quotes in backticks longer than 3 characters shown as `…`
/// (short ones are syntax: `=`, `]`): the value may be a secret written without quotes.
fn unquoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts are inside backticks.
        if i % 2 == 1 && part.chars().count() > 3 {
            out.push('…');
        } else {
            out.push_str(part);
        }
    }
    out
}

/// ` at line L, column C` of `span` in `text` (1-based), or nothing without a span.
fn place(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    format!(" at line {line}, column {column}")
}

/// An environment value as TOML when it parses as a bare value (numbers, booleans, arrays),
/// else as a string.
fn env_value(raw: &str) -> toml::Value {
    let probe = format!("v = {raw}");
    match toml::from_str::<BTreeMap<String, toml::Value>>(&probe) {
        Ok(mut m) => m
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_secret_that_looks_like_a_number_is_text_and_never_quoted() {
        let digits = "12345678901234567890123456789012345";
        // From the environment: text, whatever it looks like.
        let c =
            Config::from_toml_and_env("", env(&[("PORTHOLE_AUTH__JWT_SECRET", digits)])).unwrap();
        assert_eq!(c.auth.jwt_secret.expose(), digits);
        // In the file without quotes: refused, without the value.
        let e = Config::from_toml_and_env(&format!("[auth]\njwt_secret = {digits}\n"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("1234567890"), "{e}");
        assert!(e.contains("invalid TOML at line 2, column 14"), "{e}");
        let short = "1234567890123";
        let e = Config::from_toml_and_env(&format!("[auth]\njwt_secret = {short}\n"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(!e.contains(short), "{e}");
        assert!(e.contains("a secret must be text in quotes"), "{e}");
        let e = Config::from_toml_and_env("[database]\nurl = true\n", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("a secret must be text"), "{e}");
    }

    #[test]
    fn accounts_take_the_aws_regions_unless_they_name_their_own_and_mistakes_name_the_key() {
        let base = "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n\
                    [aws]\nregions = [\"us-east-1\", \"eu-west-1\"]\n";
        let account = |extra: &str| {
            format!(
                "{base}[[aws.accounts]]\nname = \"prod\"\n\
                 role_arn = \"arn:aws:iam::111111111111:role/Porthole\"\n{extra}"
            )
        };
        let c = Config::from_toml_and_env(&account(""), env(&[])).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.aws.account_regions(&c.aws.accounts[0]),
            ["us-east-1", "eu-west-1"]
        );
        let c =
            Config::from_toml_and_env(&account("regions = [\"ap-south-1\"]\n"), env(&[])).unwrap();
        assert_eq!(c.aws.account_regions(&c.aws.accounts[0]), ["ap-south-1"]);
        for (extra, says) in [
            (
                "regions = []\n",
                "aws.accounts[0].regions: name at least one region",
            ),
            ("external_id = \"x\"\n", "aws.accounts[0].external_id"),
            (
                "[[aws.accounts]]\nname = \"prod\"\n\
                 role_arn = \"arn:aws:iam::222222222222:role/Porthole\"\n",
                "aws.accounts[1].name: the account \"prod\" is configured twice",
            ),
            (
                "[[aws.accounts]]\nname = \"Staging\"\n\
                 role_arn = \"arn:aws:iam::222222222222:role/Porthole\"\n",
                "aws.accounts[1].name: account names are",
            ),
            (
                "[[aws.accounts]]\nname = \"staging\"\nrole_arn = \"Porthole\"\n",
                "aws.accounts[1].role_arn: \"Porthole\" is not an IAM role ARN",
            ),
        ] {
            let e = match Config::from_toml_and_env(&account(extra), env(&[])) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(e.contains(says), "{extra}: {e}");
        }
    }

    #[test]
    fn nested_sections_take_one_more_separator() {
        let c = Config::from_toml_and_env(
            "",
            env(&[
                ("PORTHOLE_AUTH__JWT_SECRET", SECRET),
                ("PORTHOLE_AUTH__MAX_FAILED_LOGINS", "9"),
                ("PORTHOLE_SERVER__TRUSTED_PROXIES", r#"["10.0.0.0/8"]"#),
            ]),
        )
        .unwrap();
        assert_eq!(c.auth.max_failed_logins, 9);
        assert_eq!(c.server.trusted_proxies, ["10.0.0.0/8"]);
        // A deeper path lands in a nested table (an unknown one is refused by name).
        let e = Config::from_toml_and_env(
            "",
            env(&[
                ("PORTHOLE_AUTH__JWT_SECRET", SECRET),
                ("PORTHOLE_AUTH__NOPE__CLIENT_SECRET", "123"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `nope`"), "{e}");
        // A key that is not a section cannot have keys.
        let e = Config::from_toml_and_env(
            "",
            env(&[
                ("PORTHOLE_AUTH__JWT_SECRET", SECRET),
                ("PORTHOLE_AUTH__JWT_SECRET__X", "1"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PORTHOLE_AUTH__JWT_SECRET__X: [auth.jwt_secret] is not a section"),
            "{e}"
        );
        assert!(!e.contains(SECRET), "{e}");
        // Malformed names are not configuration.
        assert!(
            Config::from_toml_and_env(
                &format!("[auth]\njwt_secret = \"{SECRET}\"\n"),
                env(&[
                    ("PORTHOLE_AUTH__", "1"),
                    ("PORTHOLE___X", "1"),
                    ("PORTHOLE_NOSECTION", "1")
                ]),
            )
            .is_ok()
        );
    }

    #[test]
    fn env_overrides_file_and_types_are_kept() {
        let text = format!("[auth]\njwt_secret = \"{SECRET}\"\n[sessions]\nmax_per_user = 2\n");
        let c = Config::from_toml_and_env(
            &text,
            env(&[
                ("PORTHOLE_AWS__ENDPOINT_URL", "http://127.0.0.1:4566"),
                ("PORTHOLE_SESSIONS__MAX_PER_USER", "7"),
                ("PORTHOLE_SERVER__LISTEN", "127.0.0.1:9000"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.aws.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
        assert_eq!(c.sessions.max_per_user, 7);
        assert_eq!(c.server.listen.port(), 9000);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::from_toml_and_env(
            &format!("[auth]\njwt_secret = \"{SECRET}\"\n[server]\nlisten_on = 1\n"),
            [],
        )
        .unwrap_err();
        assert!(err.0.contains("listen_on"), "{err}");
        let err = Config::from_toml_and_env("[auth]\njwt_secret = \"short\"\n", []).unwrap_err();
        assert!(err.0.contains("auth.jwt_secret"), "{err}");
        let err = Config::from_toml_and_env(
            &format!("[auth]\njwt_secret = \"{SECRET}\"\n"),
            env(&[("PORTHOLE_SERVER__PUBLIC_URL", "ftp://x")]),
        )
        .unwrap_err();
        assert!(err.0.contains("server.public_url"), "{err}");
        let err = Config::from_toml_and_env(
            &format!("[auth]\njwt_secret = \"{SECRET}\"\n"),
            env(&[("PORTHOLE_DATABASE__URL", "mysql://user:hunter2@db/x")]),
        )
        .unwrap_err();
        assert!(
            err.0.contains("database.url") && !err.0.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn secrets_never_print() {
        let c =
            Config::from_toml_and_env(&format!("[auth]\njwt_secret = \"{SECRET}\"\n"), []).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn policy_keys_are_named() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let c = Config::from_toml_and_env(
            &base,
            env(&[
                ("PORTHOLE_POLICY__FILE", "/etc/porthole/policy.toml"),
                ("PORTHOLE_POLICY__WATCH_SECONDS", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.policy.file.as_deref(),
            Some(std::path::Path::new("/etc/porthole/policy.toml"))
        );
        assert_eq!(c.policy.watch_seconds, 0);
        let err = Config::from_toml_and_env(
            &format!(
                "{base}[[policy.roles]]\nname = \"a\"\n[[policy.roles]]\nname = \"b\"\n\
                 [[policy.roles]]\nname = \"c\"\nreason.pattern = \"^(INC|CHG\"\n"
            ),
            [],
        )
        .unwrap_err();
        assert!(
            err.0
                .starts_with("policy.roles[2].reason.pattern: invalid regex"),
            "{err}"
        );
        let err = Config::from_toml_and_env(
            &format!("{base}[policy]\nfile = \"p.toml\"\n[[policy.roles]]\nname = \"a\"\n"),
            [],
        )
        .unwrap_err();
        assert!(err.0.contains("policy.file and [[policy.roles]]"), "{err}");
    }

    #[test]
    fn the_give_up_time_is_set_and_checked() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let c = Config::from_toml_and_env(&base, []).unwrap();
        assert_eq!(c.sessions.retransmit_give_up_seconds, 300);
        let c = Config::from_toml_and_env(
            &base,
            env(&[("PORTHOLE_SESSIONS__RETRANSMIT_GIVE_UP_SECONDS", "30")]),
        )
        .unwrap();
        assert_eq!(c.sessions.retransmit_give_up_seconds, 30);
        let err = Config::from_toml_and_env(
            &format!("{base}[sessions]\nretransmit_give_up_seconds = 0\n"),
            [],
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "sessions.retransmit_give_up_seconds must be at least 1"
        );
    }

    #[test]
    fn compact_after_seconds_is_read_and_bad_values_are_refused() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let c = Config::from_toml_and_env(&base, []).unwrap();
        assert_eq!(c.sessions.compact_after_seconds, 30);
        let c = Config::from_toml_and_env(
            &base,
            env(&[("PORTHOLE_SESSIONS__COMPACT_AFTER_SECONDS", "5")]),
        )
        .unwrap();
        assert_eq!(c.sessions.compact_after_seconds, 5);
        for (value, words) in [
            (
                "0",
                "sessions.compact_after_seconds must be between 1 and 86400 (how long a session is quiet before it compacts itself), got 0",
            ),
            (
                "86401",
                "sessions.compact_after_seconds must be between 1 and 86400 (how long a session is quiet before it compacts itself), got 86401",
            ),
            (
                "-3",
                "sessions.compact_after_seconds must be a whole number of seconds between 1 and 86400, got -3",
            ),
            (
                "1.5",
                "sessions.compact_after_seconds must be a whole number of seconds between 1 and 86400, got 1.5",
            ),
            (
                "\"soon\"",
                "sessions.compact_after_seconds must be a whole number of seconds between 1 and 86400, got \"soon\"",
            ),
        ] {
            let err = Config::from_toml_and_env(
                &format!("{base}[sessions]\ncompact_after_seconds = {value}\n"),
                [],
            )
            .unwrap_err();
            assert!(err.0.contains(words), "{value}: {}", err.0);
        }
        let err = Config::from_toml_and_env(
            &base,
            env(&[("PORTHOLE_SESSIONS__COMPACT_AFTER_SECONDS", "later")]),
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            "sessions.compact_after_seconds must be a whole number of seconds between 1 and \
             86400, got \"later\""
        );
    }

    #[test]
    fn participant_recheck_seconds_is_read_and_bad_values_are_refused() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let c = Config::from_toml_and_env(&base, []).unwrap();
        assert_eq!(c.sessions.participant_recheck(), Duration::from_secs(2));
        let c = Config::from_toml_and_env(
            &base,
            env(&[("PORTHOLE_SESSIONS__PARTICIPANT_RECHECK_SECONDS", "3600")]),
        )
        .unwrap();
        assert_eq!(c.sessions.participant_recheck_seconds, 3600);
        for (value, words) in [
            (
                "0",
                "sessions.participant_recheck_seconds must be between 1 and 3600 (how often a participant's socket looks at their invitation), got 0",
            ),
            (
                "3601",
                "sessions.participant_recheck_seconds must be between 1 and 3600 (how often a participant's socket looks at their invitation), got 3601",
            ),
            (
                "-1",
                "sessions.participant_recheck_seconds must be a whole number of seconds between 1 and 3600, got -1",
            ),
            (
                "0.5",
                "sessions.participant_recheck_seconds must be a whole number of seconds between 1 and 3600, got 0.5",
            ),
        ] {
            let err = Config::from_toml_and_env(
                &format!("{base}[sessions]\nparticipant_recheck_seconds = {value}\n"),
                [],
            )
            .unwrap_err();
            assert!(err.0.contains(words), "{value}: {}", err.0);
        }
    }

    #[test]
    fn files_max_bytes_is_read_and_bad_values_are_refused() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let c = Config::from_toml_and_env(&base, []).unwrap();
        assert_eq!(c.files.max_bytes, 16 * 1024 * 1024);
        let c = Config::from_toml_and_env(&base, env(&[("PORTHOLE_FILES__MAX_BYTES", "1000")]))
            .unwrap();
        assert_eq!(c.files.max_bytes, 1000);
        for (value, words) in [
            ("0", "files.max_bytes must be between 1 and 1073741824"),
            (
                "1073741825",
                "files.max_bytes must be between 1 and 1073741824",
            ),
            (
                "-1",
                "files.max_bytes must be a whole number of bytes between 1 and 1073741824, got -1",
            ),
            (
                "\"16M\"",
                "files.max_bytes must be a whole number of bytes between 1 and 1073741824, got \"16M\"",
            ),
        ] {
            let err =
                Config::from_toml_and_env(&format!("{base}[files]\nmax_bytes = {value}\n"), [])
                    .unwrap_err();
            assert!(err.0.contains(words), "{value}: {}", err.0);
        }
        let err = Config::from_toml_and_env(&format!("{base}[files]\nmax = 1\n"), []).unwrap_err();
        assert!(err.0.contains("unknown field `max`"), "{}", err.0);
    }

    #[test]
    fn files_max_concurrent_keys_are_read_and_bad_values_are_refused() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let c = Config::from_toml_and_env(&base, []).unwrap();
        assert_eq!(c.files.max_concurrent, 4);
        assert_eq!(c.files.max_concurrent_per_user, 1);
        let c = Config::from_toml_and_env(
            &format!("{base}[files]\nmax_concurrent = 8\nmax_concurrent_per_user = 2\n"),
            [],
        )
        .unwrap();
        assert_eq!(
            (c.files.max_concurrent, c.files.max_concurrent_per_user),
            (8, 2)
        );
        let c = Config::from_toml_and_env(
            &base,
            env(&[
                ("PORTHOLE_FILES__MAX_CONCURRENT", "2"),
                ("PORTHOLE_FILES__MAX_CONCURRENT_PER_USER", "2"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.files.max_concurrent, c.files.max_concurrent_per_user),
            (2, 2)
        );
        for (toml, says) in [
            (
                "max_concurrent = 0",
                "files.max_concurrent must be between 1 and 256 (file transfers running at \
                 once in the gateway; to allow none, give no role file_transfer), got 0",
            ),
            (
                "max_concurrent = 257",
                "files.max_concurrent must be between 1 and 256",
            ),
            (
                "max_concurrent = -1",
                "files.max_concurrent must be a whole number of transfers between 1 and 256, \
                 got -1",
            ),
            (
                "max_concurrent = \"four\"",
                "files.max_concurrent must be a whole number of transfers between 1 and 256, \
                 got \"four\"",
            ),
            (
                "max_concurrent = 2.5",
                "files.max_concurrent must be a whole number of transfers between 1 and 256, \
                 got 2.5",
            ),
            (
                "max_concurrent_per_user = 0",
                "files.max_concurrent_per_user must be between 1 and files.max_concurrent (4) \
                 (file transfers one person runs at once), got 0",
            ),
            (
                "max_concurrent_per_user = 5",
                "files.max_concurrent_per_user must be between 1 and files.max_concurrent (4) \
                 (file transfers one person runs at once), got 5",
            ),
            (
                "max_concurrent = 2\nmax_concurrent_per_user = 3",
                "files.max_concurrent_per_user must be between 1 and files.max_concurrent (2)",
            ),
            (
                "max_concurrent_per_user = -2",
                "files.max_concurrent_per_user must be a whole number of transfers between 1 \
                 and files.max_concurrent, got -2",
            ),
        ] {
            let err =
                Config::from_toml_and_env(&format!("{base}[files]\n{toml}\n"), []).unwrap_err();
            assert!(err.0.contains(says), "{toml}: {}", err.0);
        }
        let err =
            Config::from_toml_and_env(&base, env(&[("PORTHOLE_FILES__MAX_CONCURRENT", "many")]))
                .unwrap_err();
        assert!(
            err.0
                .contains("files.max_concurrent must be a whole number"),
            "{}",
            err.0
        );
    }

    #[test]
    fn recording_storage_keys_are_read_and_named() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let c = Config::from_toml_and_env(&base, []).unwrap();
        assert_eq!(c.recordings.storage, RecordingStorage::Local);
        assert_eq!(c.recordings.prefix, "recordings/");
        let c = Config::from_toml_and_env(
            &format!("{base}[recordings]\nstorage = \"s3\"\nbucket = \"casts\"\n"),
            env(&[
                ("PORTHOLE_RECORDINGS__BUCKET", "porthole-casts"),
                ("PORTHOLE_RECORDINGS__PREFIX", "gw1/"),
                ("PORTHOLE_RECORDINGS__ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("PORTHOLE_RECORDINGS__FORCE_PATH_STYLE", "true"),
                ("PORTHOLE_RECORDINGS__REGION", "eu-west-1"),
            ]),
        )
        .unwrap();
        let r = &c.recordings;
        assert_eq!(r.storage, RecordingStorage::S3);
        assert_eq!(r.bucket.as_deref(), Some("porthole-casts"));
        assert_eq!(r.prefix, "gw1/");
        assert_eq!(r.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(r.force_path_style);
        assert_eq!(r.region.as_deref(), Some("eu-west-1"));

        let err = Config::from_toml_and_env(&format!("{base}[recordings]\nstorage = \"s3\"\n"), [])
            .unwrap_err();
        assert!(err.0.contains("recordings.bucket"), "{err}");
        let err = Config::from_toml_and_env(
            &base,
            env(&[
                ("PORTHOLE_RECORDINGS__STORAGE", "s3"),
                ("PORTHOLE_RECORDINGS__BUCKET", "Not_A_Bucket"),
            ]),
        )
        .unwrap_err();
        assert!(err.0.contains("recordings.bucket"), "{err}");
        let err =
            Config::from_toml_and_env(&format!("{base}[recordings]\nstorage = \"gcs\"\n"), [])
                .unwrap_err();
        assert!(err.0.contains("recordings.storage"), "{err}");
        let err = Config::from_toml_and_env(
            &format!(
                "{base}[recordings]\nstorage = \"s3\"\nbucket = \"b-1\"\nendpoint_url = \"localhost:9000\"\n"
            ),
            [],
        )
        .unwrap_err();
        assert!(err.0.contains("recordings.endpoint_url"), "{err}");
    }

    #[test]
    fn origin_and_secure_flag_follow_the_public_url() {
        let c = Config::from_toml_and_env(
            &format!("[auth]\njwt_secret = \"{SECRET}\"\n[server]\npublic_url = \"https://gw.example.com/porthole/\"\n"),
            [],
        )
        .unwrap();
        assert_eq!(c.origin(), "https://gw.example.com");
        assert!(c.secure_cookies());
    }

    #[test]
    fn secrets_come_from_files_named_by_file_or_environment() {
        let dir = tempfile::tempdir().unwrap();
        let jwt = dir.path().join("jwt");
        std::fs::write(&jwt, format!("{SECRET}\n")).unwrap();
        let client = dir.path().join("client");
        std::fs::write(&client, "from-a-file").unwrap();
        let oidc =
            "[auth.oidc]\nissuer_url = \"https://id.example.com\"\nclient_id = \"porthole\"\n";
        let text = format!(
            "[auth]\njwt_secret_file = {:?}\n{oidc}",
            jwt.display().to_string()
        );
        let c = Config::from_toml_and_env(
            &text,
            env(&[(
                "PORTHOLE_AUTH__OIDC__CLIENT_SECRET_FILE",
                client.to_str().unwrap(),
            )]),
        )
        .unwrap();
        assert_eq!(
            c.auth.jwt_secret.expose(),
            SECRET,
            "one trailing newline is dropped"
        );
        let oidc_config = c.auth.oidc.unwrap();
        assert_eq!(oidc_config.client_secret.unwrap().expose(), "from-a-file");
        assert_eq!(oidc_config.scopes, "openid email profile");
        assert_eq!(oidc_config.groups_claim, "groups");

        // Both forms, a missing file, an empty file: refused, naming the key.
        let both = format!("[auth]\njwt_secret = \"{SECRET}\"\njwt_secret_file = \"/x\"\n");
        let e = Config::from_toml_and_env(&both, [])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.jwt_secret_file and auth.jwt_secret are both set"),
            "{e}"
        );
        let e = Config::from_toml_and_env("[auth]\njwt_secret_file = \"/nonexistent/jwt\"\n", [])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("auth.jwt_secret_file: cannot read \"/nonexistent/jwt\""),
            "{e}"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = Config::from_toml_and_env(
            &format!(
                "[auth]\njwt_secret_file = {:?}\n",
                empty.display().to_string()
            ),
            [],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is empty"), "{e}");
        // A key that is not a secret has no file form.
        let e = Config::from_toml_and_env(
            &format!("[auth]\njwt_secret = \"{SECRET}\"\n[server]\ngateway_id_file = \"/x\"\n"),
            [],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("gateway_id_file"), "{e}");
    }

    #[test]
    fn single_sign_on_settings_that_cannot_work_are_refused() {
        let base = format!("[auth]\njwt_secret = \"{SECRET}\"\n");
        let oidc =
            "[auth.oidc]\nissuer_url = \"https://id.example.com\"\nclient_id = \"porthole\"\n";
        let refused = |extra: &str| {
            Config::from_toml_and_env(&format!("{base}{extra}"), [])
                .unwrap_err()
                .to_string()
        };
        for (extra, says) in [
            (
                format!("{oidc}scopes = \"email profile\"\n"),
                "auth.oidc.scopes must include openid",
            ),
            (
                "[auth.oidc]\nissuer_url = \"id.example.com\"\nclient_id = \"x\"\n".to_owned(),
                "auth.oidc.issuer_url must start with https://",
            ),
            (
                format!("{oidc}allowed_email_domains = [\"@example.com\"]\n"),
                "is not a domain",
            ),
            (
                format!(
                    "{oidc}[[auth.oidc.role_mapping]]\ngroup = \"sre[\"\nroles = [\"operator\"]\n"
                ),
                "auth.oidc.role_mapping[0].group",
            ),
            (
                format!("{oidc}[[auth.oidc.role_mapping]]\ngroup = \"sre\"\nroles = []\n"),
                "auth.oidc.role_mapping[0].roles must name at least one role",
            ),
            (
                "local = false\n".to_owned(),
                "auth.local = false leaves no way to sign in",
            ),
            (
                "[auth.proxy]\nmode = \"headers\"\n".to_owned(),
                "needs server.trusted_proxies",
            ),
            (
                "[auth.proxy]\nmode = \"aws_alb\"\n".to_owned(),
                "auth.proxy.alb_signer_arns",
            ),
            (
                format!("local_break_glass = [\"Root Admin\"]\n{oidc}"),
                "auth.local_break_glass: \"Root Admin\"",
            ),
        ] {
            let e = refused(&extra);
            assert!(e.contains(says), "{extra:?}: {e}");
        }
        // The client secret is never quoted back, even when it is not text.
        let e = refused(&format!("{oidc}client_secret = 123456789\n"));
        assert!(!e.contains("123456789"), "{e}");
    }
}
