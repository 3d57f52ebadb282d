//! `[cluster]`, and the `[server]` keys that name this gateway among several: what it takes
//! for gateways sharing one PostgreSQL database to forward attaches to a session's owner and
//! hand sessions over on a rolling deploy (`docs/deploy.md`).

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// Shortest `cluster.secret`, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// `[cluster]`: what the gateways sharing a database share besides it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The secret every gateway of the cluster holds (or `secret_file`), at least
    /// [`MIN_SECRET_LEN`] bytes: requests between gateways are signed with a key derived from
    /// it, and handed-over session state sealed with another. Unset: this gateway neither
    /// forwards nor accepts forwarded requests, and its sessions end when it stops.
    pub secret: Option<Secret>,
    /// How often this gateway marks itself and its sessions alive, in seconds.
    pub heartbeat_seconds: u64,
    /// A gateway (and its sessions) not marked alive for this long is taken for dead: another
    /// ends or takes over what it left, in seconds.
    pub stale_seconds: u64,
    /// Longest a signed request's clock may differ from ours, in seconds.
    pub max_clock_skew_seconds: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            secret: None,
            heartbeat_seconds: 10,
            stale_seconds: 60,
            max_clock_skew_seconds: 30,
        }
    }
}

impl ClusterConfig {
    /// Checks the values; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.secret
            && secret.expose().len() < MIN_SECRET_LEN
        {
            return Err(ConfigError(format!(
                "cluster.secret must be at least {MIN_SECRET_LEN} bytes (the same random value \
                 on every gateway, e.g. from `openssl rand -hex 32`)"
            )));
        }
        if self.heartbeat_seconds == 0 {
            return Err(ConfigError(
                "cluster.heartbeat_seconds must be at least 1".into(),
            ));
        }
        if self.stale_seconds < 2 * self.heartbeat_seconds {
            return Err(ConfigError(format!(
                "cluster.stale_seconds ({}) must be at least twice cluster.heartbeat_seconds \
                 ({}): a gateway missing one heartbeat is not dead",
                self.stale_seconds, self.heartbeat_seconds
            )));
        }
        if !(1..=3600).contains(&self.max_clock_skew_seconds) {
            return Err(ConfigError(
                "cluster.max_clock_skew_seconds must be 1 to 3600".into(),
            ));
        }
        Ok(())
    }
}

/// This machine's host name (the pod's name in Kubernetes), the default `server.gateway_id`;
/// `porthole` when it cannot be read.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "porthole".into())
}

/// The default `server.internal_url`: the listen address, when it names one; else this host's
/// name with the listen port.
pub fn default_internal_url(listen: SocketAddr, host: &str) -> String {
    if listen.ip().is_unspecified() {
        format!("http://{host}:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// Checks `server.gateway_id` and `server.internal_url`; errors name the key.
pub fn validate_identity(gateway_id: &str, internal_url: &str) -> Result<(), ConfigError> {
    let id = gateway_id;
    if id.is_empty() {
        return Err(ConfigError("server.gateway_id must not be empty".into()));
    }
    if id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ConfigError(format!(
            "server.gateway_id must be 1-128 of a-z, A-Z, 0-9, '-', '_', '.', got {gateway_id:?}"
        )));
    }
    let rest = internal_url
        .strip_prefix("http://")
        .or_else(|| internal_url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(['?', '#', ' ']) => Ok(()),
        _ => Err(ConfigError(format!(
            "server.internal_url must be an http:// or https:// URL other gateways reach this \
             one at (http://10.0.3.7:8080), got {internal_url:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_url_defaults_to_the_listen_address_or_the_host() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!());
        let one: SocketAddr = "10.0.0.5:9000".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(default_internal_url(any, "pod-7"), "http://pod-7:8080");
        assert_eq!(default_internal_url(one, "pod-7"), "http://10.0.0.5:9000");
    }

    #[test]
    fn identity_and_cluster_values_are_checked() {
        assert!(validate_identity("porthole-7c9f-x2", "http://10.0.0.5:8080").is_ok());
        for (id, url, words) in [
            ("", "http://a", "server.gateway_id must not be empty"),
            ("a b", "http://a", "server.gateway_id must be"),
            ("a/b", "http://a", "server.gateway_id must be"),
            ("gw", "10.0.0.5:8080", "server.internal_url must be"),
            ("gw", "http://", "server.internal_url must be"),
        ] {
            let e = validate_identity(id, url).map(|()| String::new());
            assert!(
                e.as_ref().is_err_and(|e| e.0.contains(words)),
                "{id} {url}: {e:?}"
            );
        }
        let mut cluster = ClusterConfig {
            secret: Some(Secret::new("short")),
            ..ClusterConfig::default()
        };
        assert!(
            cluster
                .validate()
                .is_err_and(|e| e.0.contains("cluster.secret must be at least 32"))
        );
        cluster.secret = Some(Secret::new("x".repeat(32)));
        assert!(cluster.validate().is_ok());
        cluster.stale_seconds = 15;
        assert!(cluster.validate().is_err_and(|e| e.0.contains("twice")));
    }
}
