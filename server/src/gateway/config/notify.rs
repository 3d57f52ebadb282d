//! `[notify]`: the webhooks told of access requests (`[[notify.webhooks]]`: where, in which
//! format, which events, the secret that signs each delivery) and how a delivery that fails is
//! retried. `docs/approvals.md` (Notifications) describes what a receiver gets.
//!
//! The section is read by hand from its TOML table rather than derived, so that every mistake
//! names its key with the webhook's position (`notify.webhooks[1].format: …`), the unknown ones
//! included. A webhook's `url` is treated as a secret (a Slack webhook URL is its own
//! credential): it is never printed, and has a `url_file` form as `secret` has `secret_file`.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// The events a webhook may ask for, as `events` and the notices name them.
pub const EVENTS: [&str; 4] = ["request", "decision", "break_glass", "session"];
/// Shortest webhook `secret`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;
/// The longest wait between two attempts of one delivery, in seconds: the doubling stops here.
pub const MAX_RETRY_SECONDS: u64 = 600;
/// The most attempts one delivery may be given.
pub const MAX_ATTEMPTS: u32 = 100;
/// The longest `timeout_seconds` of a webhook.
pub const MAX_TIMEOUT_SECONDS: u64 = 120;

/// A webhook's `format`: what its body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookFormat {
    /// `{"event","text","data","delivery","created_at"}`, for programs (the default).
    #[default]
    Json,
    /// A Slack incoming webhook's `{"text": …}` (also what Mattermost and others accept).
    Slack,
}

impl WebhookFormat {
    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
        }
    }
}

/// One `[[notify.webhooks]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Its name in the delivery queue, the audit log and the API (default `webhook-N`, N its
    /// position from 1); 1 to 64 of a-z, 0-9, `.`, `_`, `-`, unique.
    pub name: String,
    /// Where deliveries are POSTed: an `http://` or `https://` URL (a secret: never printed).
    pub url: Secret,
    /// The body's format.
    pub format: WebhookFormat,
    /// The events it is told of, from [`EVENTS`] (default: all).
    pub events: Vec<String>,
    /// Signs each delivery (`X-Porthole-Signature`); at least [`MIN_SECRET_LEN`] bytes.
    pub secret: Secret,
    /// Longest one attempt may take, connecting included, in seconds.
    pub timeout_seconds: u64,
}

impl WebhookConfig {
    /// A JSON webhook named `name` at `url` told of every event, with the default timeout.
    pub fn new(name: &str, url: &str, secret: &str) -> Self {
        Self {
            name: name.to_owned(),
            url: Secret::new(url),
            format: WebhookFormat::Json,
            events: EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            secret: Secret::new(secret),
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
        }
    }

    /// Whether it is told of `event` (one of [`EVENTS`]).
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

/// The default `timeout_seconds`.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

/// `[notify]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Table")]
pub struct NotifyConfig {
    /// `[[notify.webhooks]]`; none: nothing is queued.
    pub webhooks: Vec<WebhookConfig>,
    /// Attempts one delivery is given before it is marked failed.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, in seconds; doubled after each further one, at
    /// most [`MAX_RETRY_SECONDS`].
    pub retry_seconds: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            max_attempts: 8,
            retry_seconds: 2,
        }
    }
}

impl NotifyConfig {
    /// The webhook named `name`.
    pub fn webhook(&self, name: &str) -> Option<&WebhookConfig> {
        self.webhooks.iter().find(|w| w.name == name)
    }

    /// Checks the values (also of a configuration built in code); errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(ConfigError(format!(
                "notify.max_attempts: 1 to {MAX_ATTEMPTS}, got {}",
                self.max_attempts
            )));
        }
        if !(1..=MAX_RETRY_SECONDS).contains(&self.retry_seconds) {
            return Err(ConfigError(format!(
                "notify.retry_seconds: 1 to {MAX_RETRY_SECONDS}, got {}",
                self.retry_seconds
            )));
        }
        let mut names = BTreeSet::new();
        for (i, hook) in self.webhooks.iter().enumerate() {
            let at = format!("notify.webhooks[{i}]");
            if !crate::gateway::facts::valid_name(&hook.name) {
                return Err(ConfigError(format!(
                    "{at}.name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-'; got {:?}",
                    hook.name
                )));
            }
            if !names.insert(hook.name.as_str()) {
                return Err(ConfigError(format!(
                    "{at}.name: the webhook {:?} is configured twice (names are unique; a \
                     webhook without a name is webhook-N, N its position from 1)",
                    hook.name
                )));
            }
            if !valid_url(hook.url.expose()) {
                return Err(ConfigError(format!(
                    "{at}.url: not an http:// or https:// URL with a host (value not shown: \
                     a webhook URL may hold its token)"
                )));
            }
            if hook.events.is_empty() {
                return Err(ConfigError(format!(
                    "{at}.events: name at least one of {} (leave the key out for all)",
                    EVENTS.join(", ")
                )));
            }
            if let Some(bad) = hook.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
                return Err(ConfigError(format!(
                    "{at}.events: {bad:?} is not an event; the events are {}",
                    EVENTS.join(", ")
                )));
            }
            if hook.secret.expose().len() < MIN_SECRET_LEN {
                return Err(ConfigError(format!(
                    "{at}.secret must be at least {MIN_SECRET_LEN} bytes (value not shown; \
                     e.g. from `openssl rand -hex 32`)"
                )));
            }
            if !(1..=MAX_TIMEOUT_SECONDS).contains(&hook.timeout_seconds) {
                return Err(ConfigError(format!(
                    "{at}.timeout_seconds: 1 to {MAX_TIMEOUT_SECONDS}, got {}",
                    hook.timeout_seconds
                )));
            }
        }
        Ok(())
    }
}

/// Whether `text` parses as an `http://` or `https://` URL with a host.
fn valid_url(text: &str) -> bool {
    reqwest::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
}

/// The keys of a `[[notify.webhooks]]` table (after `secret_file` and `url_file` were read).
const WEBHOOK_KEYS: &str = "name, url (or url_file), format, events, secret (or secret_file), \
                            timeout_seconds";

impl TryFrom<toml::Table> for NotifyConfig {
    type Error = String;

    fn try_from(table: toml::Table) -> Result<Self, String> {
        let mut config = Self::default();
        for (key, value) in table {
            let at = format!("notify.{key}");
            match key.as_str() {
                "max_attempts" => {
                    config.max_attempts = u32::try_from(whole(&at, value)?)
                        .map_err(|_| format!("{at}: 1 to {MAX_ATTEMPTS}"))?;
                }
                "retry_seconds" => config.retry_seconds = whole(&at, value)?,
                "webhooks" => {
                    let toml::Value::Array(items) = value else {
                        return Err(format!(
                            "{at}: a list of tables ([[notify.webhooks]] sections)"
                        ));
                    };
                    for (i, item) in items.into_iter().enumerate() {
                        config.webhooks.push(webhook(i, item)?);
                    }
                }
                _ => {
                    return Err(format!(
                        "{at}: unknown key; [notify] has webhooks, max_attempts and \
                         retry_seconds"
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// The `i`-th `[[notify.webhooks]]` table, with its defaults.
fn webhook(i: usize, item: toml::Value) -> Result<WebhookConfig, String> {
    let at = format!("notify.webhooks[{i}]");
    let toml::Value::Table(table) = item else {
        return Err(format!("{at}: a table ([[notify.webhooks]])"));
    };
    let mut name = None;
    let mut url = None;
    let mut format = WebhookFormat::Json;
    let mut events = None;
    let mut secret = None;
    let mut timeout_seconds = DEFAULT_TIMEOUT_SECONDS;
    for (key, value) in table {
        let at = format!("{at}.{key}");
        match key.as_str() {
            "name" => name = Some(text(&at, value)?),
            "url" => url = Some(secret_text(&at, value)?),
            "format" => {
                format = match text(&at, value)?.as_str() {
                    "json" => WebhookFormat::Json,
                    "slack" => WebhookFormat::Slack,
                    other => {
                        return Err(format!("{at}: \"json\" or \"slack\", got {other:?}"));
                    }
                }
            }
            "events" => {
                let toml::Value::Array(list) = value else {
                    return Err(format!(
                        "{at}: a list of event names ({})",
                        EVENTS.join(", ")
                    ));
                };
                let mut names = Vec::new();
                for (j, value) in list.into_iter().enumerate() {
                    let event = text(&format!("{at}[{j}]"), value)?;
                    if !EVENTS.contains(&event.as_str()) {
                        return Err(format!(
                            "{at}: {event:?} is not an event; the events are {}",
                            EVENTS.join(", ")
                        ));
                    }
                    if !names.contains(&event) {
                        names.push(event);
                    }
                }
                events = Some(names);
            }
            "secret" => secret = Some(secret_text(&at, value)?),
            "timeout_seconds" => timeout_seconds = whole(&at, value)?,
            _ => return Err(format!("{at}: unknown key; a webhook has {WEBHOOK_KEYS}")),
        }
    }
    let Some(url) = url else {
        return Err(format!(
            "{at}.url: missing: where deliveries are POSTed (or url_file)"
        ));
    };
    let Some(secret) = secret else {
        return Err(format!(
            "{at}.secret: missing: set secret or secret_file (at least {MIN_SECRET_LEN} bytes; \
             it signs every delivery)"
        ));
    };
    Ok(WebhookConfig {
        name: name.unwrap_or_else(|| format!("webhook-{}", i + 1)),
        url,
        format,
        events: events.unwrap_or_else(|| EVENTS.iter().map(|e| (*e).to_owned()).collect()),
        secret,
        timeout_seconds,
    })
}

fn text(at: &str, value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text),
        other => Err(format!("{at}: text in quotes, got {}", other.type_str())),
    }
}

/// A secret: text, never quoted back.
fn secret_text(at: &str, value: toml::Value) -> Result<Secret, String> {
    match value {
        toml::Value::String(text) => Ok(Secret::new(text)),
        _ => Err(format!(
            "{at}: a secret must be text in quotes (the value is not shown)"
        )),
    }
}

fn whole(at: &str, value: toml::Value) -> Result<u64, String> {
    match value {
        toml::Value::Integer(n) => u64::try_from(n).map_err(|_| format!("{at}: at least 0")),
        other => Err(format!("{at}: a whole number, got {}", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::Config;

    const JWT: &str = "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n";
    const HOOK_SECRET: &str = "webhook-secret-0123456789abcdef-0123";

    fn read(extra: &str) -> Result<Config, String> {
        Config::from_toml_and_env(&format!("{JWT}{extra}"), []).map_err(|e| e.0)
    }

    fn hook(extra: &str) -> String {
        format!(
            "[[notify.webhooks]]\nurl = \"https://hooks.example.com/a\"\nsecret = \"{HOOK_SECRET}\"\n{extra}"
        )
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = read("").unwrap();
        assert_eq!(c.notify, NotifyConfig::default());
        assert_eq!((c.notify.max_attempts, c.notify.retry_seconds), (8, 2));
        let c = read(&format!(
            "{}{}[notify]\nmax_attempts = 3\nretry_seconds = 5\n",
            hook(""),
            hook("name = \"chat\"\nformat = \"slack\"\nevents = [\"decision\", \"decision\"]\ntimeout_seconds = 3\n")
        ))
        .unwrap();
        assert_eq!((c.notify.max_attempts, c.notify.retry_seconds), (3, 5));
        let [first, second] = c.notify.webhooks.as_slice() else {
            panic!("two webhooks: {:?}", c.notify.webhooks);
        };
        assert_eq!(first.name, "webhook-1");
        assert_eq!(first.format, WebhookFormat::Json);
        assert_eq!(first.events, EVENTS);
        assert_eq!(first.timeout_seconds, 10);
        assert_eq!(first.url.expose(), "https://hooks.example.com/a");
        assert_eq!(second.name, "chat");
        assert_eq!(second.format, WebhookFormat::Slack);
        assert_eq!(second.events, ["decision"]);
        assert!(second.wants("decision") && !second.wants("request"));
        assert_eq!(second.timeout_seconds, 3);
        assert_eq!(c.notify.webhook("chat"), Some(second));
        // The URL and the secret are never printed.
        let shown = format!("{c:?}");
        assert!(!shown.contains(HOOK_SECRET) && !shown.contains("hooks.example.com"));
    }

    #[test]
    fn secret_and_url_come_from_files_once() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, format!("{HOOK_SECRET}\n")).unwrap();
        let url = dir.path().join("url");
        std::fs::write(&url, "https://hooks.slack.com/services/T0/B0/XYZ\n").unwrap();
        let c = read(&format!(
            "[[notify.webhooks]]\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"{HOOK_SECRET}\"\n\
             [[notify.webhooks]]\nurl_file = {:?}\nsecret_file = {:?}\n",
            url.display().to_string(),
            secret.display().to_string()
        ))
        .unwrap();
        let second = &c.notify.webhooks[1];
        assert_eq!(second.name, "webhook-2");
        assert_eq!(second.secret.expose(), HOOK_SECRET);
        assert_eq!(
            second.url.expose(),
            "https://hooks.slack.com/services/T0/B0/XYZ"
        );
        let e = read(&hook(&format!(
            "secret_file = {:?}\n",
            secret.display().to_string()
        )))
        .unwrap_err();
        assert!(
            e.contains("notify.webhooks[0].secret_file and notify.webhooks[0].secret are both set"),
            "{e}"
        );
    }

    #[test]
    fn every_mistake_names_its_key() {
        let two = |extra: &str| format!("{}{}", hook(""), hook(extra));
        for (toml, says) in [
            (
                two("format = \"xml\"\n"),
                "notify.webhooks[1].format: \"json\" or \"slack\", got \"xml\"",
            ),
            (
                two("format = 1\n"),
                "notify.webhooks[1].format: text in quotes, got integer",
            ),
            (
                two("events = [\"request\", \"login\"]\n"),
                "notify.webhooks[1].events: \"login\" is not an event",
            ),
            (
                two("events = \"request\"\n"),
                "notify.webhooks[1].events: a list of event names",
            ),
            (
                two("events = []\n"),
                "notify.webhooks[1].events: name at least one of",
            ),
            (
                two("events = [1]\n"),
                "notify.webhooks[1].events[0]: text in quotes",
            ),
            (
                two("colour = \"red\"\n"),
                "notify.webhooks[1].colour: unknown key; a webhook has name, url",
            ),
            (
                two("timeout_seconds = 0\n"),
                "notify.webhooks[1].timeout_seconds: 1 to 120, got 0",
            ),
            (
                two("timeout_seconds = \"10\"\n"),
                "notify.webhooks[1].timeout_seconds: a whole number, got string",
            ),
            (
                two("timeout_seconds = -1\n"),
                "notify.webhooks[1].timeout_seconds: at least 0",
            ),
            (
                two("name = \"webhook-1\"\n"),
                "notify.webhooks[1].name: the webhook \"webhook-1\" is configured twice",
            ),
            (
                two("name = \"Ops Chat\"\n"),
                "notify.webhooks[1].name: 1 to 64 characters",
            ),
            (
                format!(
                    "{}[[notify.webhooks]]\nsecret = \"{HOOK_SECRET}\"\n",
                    hook("")
                ),
                "notify.webhooks[1].url: missing",
            ),
            (
                format!(
                    "{}[[notify.webhooks]]\nurl = \"https://x.example\"\n",
                    hook("")
                ),
                "notify.webhooks[1].secret: missing: set secret or secret_file",
            ),
            (
                format!(
                    "{}[[notify.webhooks]]\nurl = \"https://x.example\"\nsecret = \"short\"\n",
                    hook("")
                ),
                "notify.webhooks[1].secret must be at least 32 bytes",
            ),
            (
                format!(
                    "{}[[notify.webhooks]]\nurl = \"ftp://x.example/t0k3n\"\nsecret = \"{HOOK_SECRET}\"\n",
                    hook("")
                ),
                "notify.webhooks[1].url: not an http:// or https:// URL",
            ),
            (
                format!(
                    "{}[[notify.webhooks]]\nurl = \"hooks.example.com/t0k3n\"\nsecret = \"{HOOK_SECRET}\"\n",
                    hook("")
                ),
                "notify.webhooks[1].url: not an http:// or https:// URL",
            ),
            (
                format!(
                    "{}[[notify.webhooks]]\nurl = \"https://x.example\"\nsecret = 1234567890123\n",
                    hook("")
                ),
                "notify.webhooks[1].secret: a secret must be text",
            ),
            (
                "[notify]\nmax_attempts = 0\n".to_owned(),
                "notify.max_attempts: 1 to 100, got 0",
            ),
            (
                "[notify]\nmax_attempts = 99999999999\n".to_owned(),
                "notify.max_attempts: 1 to 100",
            ),
            (
                "[notify]\nretry_seconds = 601\n".to_owned(),
                "notify.retry_seconds: 1 to 600, got 601",
            ),
            (
                "[notify]\nretry_seconds = 0\n".to_owned(),
                "notify.retry_seconds: 1 to 600, got 0",
            ),
            (
                "[notify]\nretries = 3\n".to_owned(),
                "notify.retries: unknown key",
            ),
            (
                "[notify]\nwebhooks = \"x\"\n".to_owned(),
                "notify.webhooks: a list of tables",
            ),
        ] {
            let e = read(&toml).unwrap_err();
            assert!(e.contains(says), "{toml}\n→ {e}");
            // Neither the secret nor the URL's token is quoted back.
            assert!(!e.contains("t0k3n") && !e.contains("1234567890123"), "{e}");
        }
    }

    #[test]
    fn the_retry_keys_come_from_the_environment_too() {
        let c = Config::from_toml_and_env(
            JWT,
            [
                ("PORTHOLE_NOTIFY__MAX_ATTEMPTS".to_owned(), "4".to_owned()),
                ("PORTHOLE_NOTIFY__RETRY_SECONDS".to_owned(), "30".to_owned()),
            ],
        )
        .unwrap();
        assert_eq!((c.notify.max_attempts, c.notify.retry_seconds), (4, 30));
    }

    #[test]
    fn webhooks_come_from_the_environment_as_inline_tables() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, HOOK_SECRET).unwrap();
        let value = format!(
            "[{{url = \"https://hooks.example.com/a\", secret_file = {:?}, events = [\"request\"]}}]",
            secret.display().to_string()
        );
        let c = Config::from_toml_and_env(JWT, [("PORTHOLE_NOTIFY__WEBHOOKS".to_owned(), value)])
            .unwrap();
        let [hook] = c.notify.webhooks.as_slice() else {
            panic!("one webhook: {:?}", c.notify.webhooks);
        };
        assert_eq!(hook.name, "webhook-1");
        assert_eq!(hook.secret.expose(), HOOK_SECRET);
        assert_eq!(hook.events, ["request"]);
    }

    #[test]
    fn a_configuration_built_in_code_is_checked_too() {
        let mut notify = NotifyConfig::default();
        notify.webhooks.push(WebhookConfig::new(
            "a",
            "http://127.0.0.1:1/hook",
            HOOK_SECRET,
        ));
        assert_eq!(notify.validate(), Ok(()));
        notify.webhooks[0].events.push("everything".into());
        assert!(notify.validate().is_err_and(|e| {
            e.0.contains("notify.webhooks[0].events: \"everything\" is not an event")
        }));
        notify.webhooks[0].events.pop();
        notify.webhooks[0].secret = Secret::new("too short");
        assert!(notify.validate().is_err_and(|e| {
            e.0.contains("notify.webhooks[0].secret must be at least 32 bytes")
        }));
    }
}
