//! `[metrics]` and `server.log_format`: what operators watch the gateway with. `/metrics`
//! (Prometheus text) is served on the main listener, or on `metrics.listen` alone, and asks
//! for `Authorization: Bearer <metrics.bearer_token>` when a token is set. Logs are text or
//! one JSON object per line.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// The shortest bearer token accepted.
pub const MIN_TOKEN: usize = 16;

/// `[metrics]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// When set (or `bearer_token_file`), `/metrics` answers only requests that carry
    /// `Authorization: Bearer <token>`; others get 401.
    pub bearer_token: Option<Secret>,
    /// A separate address `/metrics` is served on (`0.0.0.0:9100`), instead of the main
    /// listener (which then answers 404 for it).
    #[serde(deserialize_with = "listen_address")]
    pub listen: Option<SocketAddr>,
}

/// `metrics.listen`, with an error that names the key.
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "metrics.listen: {text:?} is not an address and port (0.0.0.0:9100, [::]:9100)"
        ))
    })
}

impl MetricsConfig {
    /// Checks the token and the address; `main` is `server.listen`.
    pub fn validate(&self, main: SocketAddr) -> Result<(), ConfigError> {
        if let Some(token) = &self.bearer_token {
            let text = token.expose();
            if text.chars().count() < MIN_TOKEN {
                return Err(ConfigError(format!(
                    "metrics.bearer_token must be at least {MIN_TOKEN} characters (value not \
                     shown)"
                )));
            }
            // It travels in a header: visible ASCII only (RFC 6750's token68 and more).
            if !text.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError(
                    "metrics.bearer_token must be printable ASCII without spaces (value not \
                     shown)"
                        .into(),
                ));
            }
        }
        if let Some(listen) = self.listen
            && listen.port() != 0
            && listen.port() == main.port()
            && (listen.ip() == main.ip()
                || listen.ip().is_unspecified()
                || main.ip().is_unspecified())
        {
            return Err(ConfigError(format!(
                "metrics.listen ({listen}) is the address of server.listen ({main}): leave \
                 metrics.listen out to serve /metrics there, or choose another port"
            )));
        }
        Ok(())
    }
}

/// `server.log_format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines for a person (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`, and the fields of
    /// the event and of the spans it is in (`request_id`, `session`, …).
    Json,
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(serde::de::Error::custom(format!(
                "server.log_format must be \"text\" or \"json\", got {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    const BASE: &str = "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n";
    const TOKEN: &str = "metrics-token-0123456789";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn metrics_are_open_on_the_main_listener_by_default() {
        let c = Config::from_toml_and_env(BASE, []).unwrap();
        assert!(c.metrics.bearer_token.is_none());
        assert_eq!(c.metrics.listen, None);
        assert_eq!(c.server.log_format, LogFormat::Text);
    }

    #[test]
    fn the_keys_are_read_from_the_file_and_the_environment() {
        let c = Config::from_toml_and_env(
            &format!(
                "{BASE}[metrics]\nbearer_token = \"{TOKEN}\"\n[server]\nlog_format = \"json\"\n"
            ),
            [],
        )
        .unwrap();
        assert_eq!(c.metrics.bearer_token.as_ref().unwrap().expose(), TOKEN);
        assert_eq!(c.server.log_format, LogFormat::Json);
        let c = Config::from_toml_and_env(
            BASE,
            env(&[
                ("PORTHOLE_METRICS__LISTEN", "0.0.0.0:9100"),
                // Text whatever it looks like: a secret.
                ("PORTHOLE_METRICS__BEARER_TOKEN", "12345678901234567890"),
                ("PORTHOLE_SERVER__LOG_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.metrics.listen, Some("0.0.0.0:9100".parse().unwrap()));
        assert_eq!(
            c.metrics.bearer_token.as_ref().unwrap().expose(),
            "12345678901234567890"
        );
        assert_eq!(c.server.log_format, LogFormat::Json);
    }

    #[test]
    fn the_token_comes_from_a_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metrics-token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let c = Config::from_toml_and_env(
            BASE,
            env(&[(
                "PORTHOLE_METRICS__BEARER_TOKEN_FILE",
                file.to_str().unwrap(),
            )]),
        )
        .unwrap();
        assert_eq!(c.metrics.bearer_token.as_ref().unwrap().expose(), TOKEN);
        let shown = format!("{c:?}");
        assert!(!shown.contains(TOKEN), "{shown}");
        assert!(shown.contains("bearer_token: Some([redacted])"), "{shown}");
        // Both forms at once: refused, naming the key.
        let e = Config::from_toml_and_env(
            &format!("{BASE}[metrics]\nbearer_token = \"{TOKEN}\"\nbearer_token_file = \"/x\"\n"),
            [],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("metrics.bearer_token_file and metrics.bearer_token are both set"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_name_the_key_and_never_the_token() {
        for (extra, says, secret) in [
            (
                "[metrics]\nbearer_token = \"short-token\"\n",
                "metrics.bearer_token must be at least 16 characters",
                Some("short-token"),
            ),
            (
                "[metrics]\nbearer_token = \"a token with spaces in it\"\n",
                "metrics.bearer_token must be printable ASCII",
                Some("a token with spaces"),
            ),
            (
                "[metrics]\nbearer_token = 1234567890123456789\n",
                "a secret must be text",
                Some("1234567890123456789"),
            ),
            (
                "[metrics]\nlisten = \"nowhere\"\n",
                "metrics.listen: \"nowhere\" is not an address and port",
                None,
            ),
            (
                "[server]\nlisten = \"0.0.0.0:8080\"\n[metrics]\nlisten = \"127.0.0.1:8080\"\n",
                "metrics.listen (127.0.0.1:8080) is the address of server.listen",
                None,
            ),
            ("[metrics]\nport = 9100\n", "unknown field `port`", None),
            (
                "[server]\nlog_format = \"yaml\"\n",
                "server.log_format must be \"text\" or \"json\", got \"yaml\"",
                None,
            ),
        ] {
            let e = Config::from_toml_and_env(&format!("{BASE}{extra}"), [])
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{extra:?}: {e}");
            if let Some(secret) = secret {
                assert!(!e.contains(secret), "{extra:?}: {e}");
            }
        }
        let e = Config::from_toml_and_env(BASE, env(&[("PORTHOLE_SERVER__LOG_FORMAT", "JSON")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.log_format"), "{e}");
        // Another port, or port 0 (chosen at start), is fine.
        for listen in ["127.0.0.1:9100", "127.0.0.1:0"] {
            Config::from_toml_and_env(&format!("{BASE}[metrics]\nlisten = \"{listen}\"\n"), [])
                .unwrap();
        }
    }
}
