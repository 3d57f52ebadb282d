//! What every handler shares: the configuration, the session engine and identity.

use std::sync::Arc;

use crate::gateway::config::Config;
use crate::gateway::identity::Identity;
use crate::gateway::sessions::Engine;

/// The shared state of the HTTP layer.
#[derive(Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// The gateway's origin (scheme, host, port of the public URL).
    pub origin: String,
    /// The session engine (database, AWS, policy, live sessions).
    pub engine: Arc<Engine>,
    /// Sign-in.
    pub identity: Identity,
    /// The reverse proxies whose `X-Forwarded-For` is believed (`server.trusted_proxies`).
    pub proxies: Vec<ipnet::IpNet>,
    /// `/metrics`: the recorder, this gateway's gauges, `metrics.listen`.
    pub metrics: super::exporter::Exporter,
}
