//! `[auth.oidc]` and `[auth.proxy]`: single sign-on through an OpenID Connect provider, or
//! behind a proxy that signed people in already; and the group-to-role mapping both use.

use serde::Deserialize;

use super::{ConfigError, Secret};

/// `[auth.oidc]`: sign-in with an OpenID Connect provider (authorization code flow with PKCE).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer (`https://login.example.com/realms/staff`): discovery reads
    /// `ISSUER/.well-known/openid-configuration`, and ID tokens must name it exactly.
    pub issuer_url: String,
    /// The client id registered with the provider.
    pub client_id: String,
    /// The client secret (or `client_secret_file`); unset for a public client (PKCE only).
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// The scopes asked for, space-separated; must include `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: String,
    /// The provider's name on the sign-in button: "Sign in with …".
    #[serde(default = "default_display_name")]
    pub display_name: String,
    /// The claim that names the person in Porthole. Unset: `preferred_username`, else `email`.
    #[serde(default)]
    pub username_claim: Option<String>,
    /// The claim that lists the person's groups (an array of text, or one text).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// When set, only people whose email is in one of these domains may sign in.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
    /// Which roles which groups grant, recomputed at every sign-in.
    #[serde(default)]
    pub role_mapping: Vec<RoleMapping>,
    /// Longest a request to the provider may take, in seconds.
    #[serde(default = "default_http_timeout")]
    pub http_timeout_seconds: u64,
}

fn default_scopes() -> String {
    "openid email profile".into()
}

fn default_display_name() -> String {
    "single sign-on".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_http_timeout() -> u64 {
    10
}

/// One `[[auth.oidc.role_mapping]]` (or `[[auth.proxy.role_mapping]]`): members of a group
/// whose name matches `group` (a glob: `sre-*`) get `roles`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// A group name, or a glob over group names.
    pub group: String,
    /// The roles its members get (names the policy defines).
    pub roles: Vec<String>,
}

/// `[auth.proxy]`: a reverse proxy in front of the gateway signed people in already.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuthConfig {
    /// How the proxy tells who the person is.
    pub mode: ProxyMode,
    /// `aws_alb`: where the load balancer's public keys are, `{region}` and `{kid}` filled in.
    #[serde(default = "default_alb_key_url")]
    pub alb_key_url: String,
    /// `aws_alb`: the load balancers (ARNs) whose `signer` is accepted.
    #[serde(default)]
    pub alb_signer_arns: Vec<String>,
    /// `aws_alb`: the claim that names the person (default `email`).
    #[serde(default = "default_alb_username_claim")]
    pub username_claim: String,
    /// The claim (`aws_alb`) that lists groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Which roles which groups grant, recomputed at every sign-in.
    #[serde(default)]
    pub role_mapping: Vec<RoleMapping>,
}

fn default_alb_key_url() -> String {
    "https://public-keys.auth.elb.{region}.amazonaws.com/{kid}".into()
}

fn default_alb_username_claim() -> String {
    "email".into()
}

/// `auth.proxy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyMode {
    /// An AWS Application Load Balancer's `x-amzn-oidc-data` (an ES256 JWT it signs).
    AwsAlb,
    /// `X-Forwarded-User`, `X-Forwarded-Email`, `X-Forwarded-Groups` (oauth2-proxy, Pomerium),
    /// believed only from `server.trusted_proxies`.
    Headers,
}

/// Checks a role mapping: globs compile, role names are names.
pub fn check_mapping(section: &str, mapping: &[RoleMapping]) -> Result<(), ConfigError> {
    for (i, rule) in mapping.iter().enumerate() {
        let place = format!("{section}.role_mapping[{i}]");
        if rule.group.trim().is_empty() {
            return Err(ConfigError(format!("{place}.group must not be empty")));
        }
        globset::Glob::new(&rule.group).map_err(|e| ConfigError(format!("{place}.group: {e}")))?;
        if rule.roles.is_empty() {
            return Err(ConfigError(format!(
                "{place}.roles must name at least one role"
            )));
        }
        if let Some(bad) = rule
            .roles
            .iter()
            .find(|r| !crate::gateway::facts::valid_name(r))
        {
            return Err(ConfigError(format!(
                "{place}.roles: {bad:?} is not a role name (1 to 64 of a-z, 0-9, '.', '_', '-')"
            )));
        }
    }
    Ok(())
}

impl OidcConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.issuer_url.trim();
        // Plain http lets anyone on the path swap the provider's keys: loopback only.
        let local_http = url.strip_prefix("http://").is_some_and(|rest| {
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            let host = if host.ends_with(']') {
                host
            } else {
                host.rsplit_once(':').map_or(host, |(h, _)| h)
            };
            matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        });
        if !(url.starts_with("https://") || local_http) {
            return Err(ConfigError(format!(
                "auth.oidc.issuer_url must start with https:// (or http:// for a provider on this \
                 machine: 127.0.0.1, localhost, [::1]), got {url:?}"
            )));
        }
        if self.client_id.trim().is_empty() {
            return Err(ConfigError("auth.oidc.client_id must not be empty".into()));
        }
        if !self.scopes.split_whitespace().any(|s| s == "openid") {
            return Err(ConfigError(format!(
                "auth.oidc.scopes must include openid, got {:?}",
                self.scopes
            )));
        }
        if self.groups_claim.trim().is_empty() {
            return Err(ConfigError(
                "auth.oidc.groups_claim must not be empty".into(),
            ));
        }
        if self
            .username_claim
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return Err(ConfigError(
                "auth.oidc.username_claim must not be empty (leave it out for \
                 preferred_username, else email)"
                    .into(),
            ));
        }
        if let Some(bad) = self
            .allowed_email_domains
            .iter()
            .find(|d| d.trim().is_empty() || d.contains('@'))
        {
            return Err(ConfigError(format!(
                "auth.oidc.allowed_email_domains: {bad:?} is not a domain (example.com, no @)"
            )));
        }
        if self.http_timeout_seconds == 0 {
            return Err(ConfigError(
                "auth.oidc.http_timeout_seconds must be at least 1".into(),
            ));
        }
        check_mapping("auth.oidc", &self.role_mapping)
    }
}

impl ProxyAuthConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self, trusted_proxies: usize) -> Result<(), ConfigError> {
        match self.mode {
            ProxyMode::AwsAlb => {
                if self.alb_signer_arns.is_empty() {
                    return Err(ConfigError(
                        "auth.proxy.alb_signer_arns must name the load balancer(s) whose \
                         x-amzn-oidc-data is accepted"
                            .into(),
                    ));
                }
                if !self.alb_key_url.contains("{kid}") {
                    return Err(ConfigError(format!(
                        "auth.proxy.alb_key_url must contain {{kid}}, got {:?}",
                        self.alb_key_url
                    )));
                }
            }
            ProxyMode::Headers => {
                if trusted_proxies == 0 {
                    return Err(ConfigError(
                        "auth.proxy.mode = \"headers\" needs server.trusted_proxies: the \
                         headers are believed only from those addresses"
                            .into(),
                    ));
                }
            }
        }
        check_mapping("auth.proxy", &self.role_mapping)
    }
}
