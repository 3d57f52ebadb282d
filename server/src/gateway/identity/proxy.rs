//! Sign-in behind a proxy that signed people in already (`[auth.proxy]`):
//!
//! - `aws_alb`: an AWS Application Load Balancer's `x-amzn-oidc-data`, an ES256 JWT it signs.
//!   Its header names the load balancer (`signer`, checked against `alb_signer_arns`) and the
//!   key (`kid`), fetched from `alb_key_url` and kept. Its payload carries the provider's
//!   claims.
//! - `headers`: `X-Forwarded-User`, `X-Forwarded-Email`, `X-Forwarded-Groups` (oauth2-proxy,
//!   Pomerium), believed only when the TCP peer is one of `server.trusted_proxies`; from
//!   anyone else they are ignored, and the attempt is audited.
//!
//! The HTTP layer hands over the header values ([`ProxyHeaders`]); the person is signed in by
//! [`super::sso`].

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Value, json};

use super::Identity;
use super::sso::{External, ExternalError, ExternalSignIn, GroupRoles};
use crate::gateway::config::{ProxyAuthConfig, ProxyMode};
use crate::gateway::store::audit::Client;
use crate::gateway::store::db::DbError;

/// The header values a proxy may have set (each `None` when absent).
#[derive(Debug, Clone, Default)]
pub struct ProxyHeaders {
    /// `x-amzn-oidc-data`.
    pub alb_data: Option<String>,
    /// `X-Forwarded-User`.
    pub user: Option<String>,
    /// `X-Forwarded-Email`.
    pub email: Option<String>,
    /// `X-Forwarded-Groups` (comma-separated).
    pub groups: Option<String>,
}

impl ProxyHeaders {
    /// Whether any identity header is present.
    pub fn any(&self) -> bool {
        self.alb_data.is_some() || self.user.is_some() || self.email.is_some()
    }
}

/// Why a proxy's word was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Headers that only a trusted proxy may set came from another peer.
    #[error("identity headers from {0}, which is not a trusted proxy, were ignored")]
    Untrusted(String),
    /// The load balancer's token failed a check.
    #[error("the load balancer's sign-in data failed a check ({0}); sign in again")]
    BadToken(String),
    /// The load balancer's key could not be fetched.
    #[error("the load balancer's signing key could not be fetched; try again in a minute")]
    KeyUnavailable(String),
    /// A header or claim Porthole needs is missing.
    #[error("the proxy did not say {0}; ask an administrator")]
    Missing(&'static str),
    /// The identity could not be signed in.
    #[error(transparent)]
    External(#[from] ExternalError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ProxyError {
    /// The short reason in the `login.failed` audit row.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Untrusted(_) => "proxy headers from an untrusted peer",
            Self::BadToken(_) => "bad load balancer token",
            Self::KeyUnavailable(_) => "load balancer key unavailable",
            Self::Missing(_) => "missing claim",
            Self::External(e) => e.reason(),
            Self::Db(_) => "database",
        }
    }
}

/// The proxy sign-in of the gateway.
#[derive(Debug)]
pub struct ProxyAuth {
    config: ProxyAuthConfig,
    mapping: GroupRoles,
    http: reqwest::Client,
    /// Load balancer keys by `kid` (they do not change under a `kid`).
    keys: tokio::sync::Mutex<HashMap<String, DecodingKey>>,
}

impl ProxyAuth {
    /// The proxy sign-in for `config`.
    pub fn new(config: &ProxyAuthConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("auth.proxy: HTTP client: {e}"))?;
        Ok(Self {
            mapping: GroupRoles::new(&config.role_mapping)?,
            config: config.clone(),
            http,
            keys: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The mode.
    pub fn mode(&self) -> ProxyMode {
        self.config.mode
    }

    /// The person the headers name, checked as the mode says.
    async fn identify(
        &self,
        h: &ProxyHeaders,
        peer: &str,
        trusted: bool,
    ) -> Result<External, ProxyError> {
        match self.config.mode {
            ProxyMode::Headers => {
                if !trusted {
                    return Err(ProxyError::Untrusted(peer.to_owned()));
                }
                let user = h
                    .user
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or(ProxyError::Missing("X-Forwarded-User"))?;
                let groups = h
                    .groups
                    .as_deref()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect();
                Ok(External {
                    method: "proxy",
                    issuer: "proxy:headers".into(),
                    subject: user.to_owned(),
                    name: user.to_lowercase(),
                    email: h.email.clone().filter(|e| !e.trim().is_empty()),
                    display_name: None,
                    groups,
                })
            }
            ProxyMode::AwsAlb => {
                let data = h
                    .alb_data
                    .as_deref()
                    .ok_or(ProxyError::Missing("x-amzn-oidc-data"))?;
                self.verify_alb(data).await
            }
        }
    }

    async fn verify_alb(&self, data: &str) -> Result<External, ProxyError> {
        // The load balancer pads its base64 with `=`, which JWT decoders refuse, and signs the
        // segments as sent: the signature is checked over them, the parts decoded unpadded.
        let parts: Vec<&str> = data.trim().split('.').collect();
        let [head, body, signature] = parts.as_slice() else {
            return Err(ProxyError::BadToken("not a JWT".into()));
        };
        let decode = |segment: &str| -> Option<Value> {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment.trim_end_matches('='))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
        };
        let header =
            decode(head).ok_or_else(|| ProxyError::BadToken("unreadable header".into()))?;
        if header["alg"] != "ES256" {
            return Err(ProxyError::BadToken(format!(
                "algorithm {} (ES256 expected)",
                header["alg"]
            )));
        }
        let signer = header["signer"].as_str().unwrap_or_default();
        if !self.config.alb_signer_arns.iter().any(|a| a == signer) {
            return Err(ProxyError::BadToken(format!(
                "signer {signer:?} is not an allowed load balancer"
            )));
        }
        let kid = header["kid"].as_str().unwrap_or_default();
        if kid.is_empty()
            || !kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(ProxyError::BadToken("no usable key id".into()));
        }
        let region = signer.split(':').nth(3).unwrap_or_default();
        let key = self.key(kid, region).await?;
        let signed = format!("{head}.{body}");
        let good = jsonwebtoken::crypto::verify(
            signature.trim_end_matches('='),
            signed.as_bytes(),
            &key,
            Algorithm::ES256,
        )
        .unwrap_or(false);
        if !good {
            return Err(ProxyError::BadToken("bad signature".into()));
        }
        let claims = match decode(body) {
            Some(Value::Object(map)) => map,
            _ => return Err(ProxyError::BadToken("unreadable claims".into())),
        };
        let now = crate::gateway::store::db::now_ms() / 1000;
        match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) if exp + 5 >= now => {}
            Some(_) => return Err(ProxyError::BadToken("expired".into())),
            None => return Err(ProxyError::BadToken("no expiry".into())),
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let subject = text("sub").ok_or(ProxyError::Missing("sub"))?;
        let name =
            text(&self.config.username_claim).ok_or(ProxyError::Missing("the username claim"))?;
        let groups = match claims.get(&self.config.groups_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(one)) => one
                .split(',')
                .map(|g| g.trim().to_owned())
                .filter(|g| !g.is_empty())
                .collect(),
            _ => Vec::new(),
        };
        Ok(External {
            method: "proxy",
            issuer: header["iss"]
                .as_str()
                .map_or_else(|| format!("alb:{signer}"), str::to_owned),
            subject,
            name: name.trim().to_lowercase(),
            email: text("email"),
            display_name: text("name"),
            groups,
        })
    }

    /// The load balancer's public key `kid`, fetched once.
    async fn key(&self, kid: &str, region: &str) -> Result<DecodingKey, ProxyError> {
        let mut keys = self.keys.lock().await;
        if let Some(key) = keys.get(kid) {
            return Ok(key.clone());
        }
        let url = self
            .config
            .alb_key_url
            .replace("{region}", region)
            .replace("{kid}", kid);
        let fetched = async {
            let response = self
                .http
                .get(&url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("{url}: {}", response.status()));
            }
            let pem = response.bytes().await.map_err(|e| e.to_string())?;
            DecodingKey::from_ec_pem(&pem).map_err(|e| format!("{url}: {e}"))
        }
        .await
        .map_err(ProxyError::KeyUnavailable)?;
        if keys.len() >= 64 {
            keys.clear(); // bounded: a load balancer rotates a handful of keys
        }
        keys.insert(kid.to_owned(), fetched.clone());
        Ok(fetched)
    }
}

impl Identity {
    /// Signs in the person a proxy vouched for. `peer` is the TCP peer; `trusted` whether it
    /// is one of `server.trusted_proxies`. Refusals are audited (`login.failed`), headers from
    /// an untrusted peer as a spoof attempt.
    pub async fn proxy_sign_in(
        &self,
        headers: &ProxyHeaders,
        peer: &str,
        trusted: bool,
        client: &Client,
    ) -> Result<ExternalSignIn, ProxyError> {
        let Some(proxy) = self.proxy.as_deref() else {
            return Err(ProxyError::Missing(
                "anything: no [auth.proxy] is configured",
            ));
        };
        let who = match proxy.identify(headers, peer, trusted).await {
            Ok(who) => who,
            Err(e) => {
                let claimed = headers.user.as_deref().unwrap_or("").trim().to_lowercase();
                tracing::warn!(reason = e.reason(), "proxy sign-in refused: {e}");
                self.external_failed(
                    "proxy",
                    &claimed,
                    e.reason(),
                    json!({"peer": peer, "error": e.to_string(), "detail": match &e {
                        ProxyError::BadToken(d) | ProxyError::KeyUnavailable(d) => d.clone(),
                        _ => String::new(),
                    }}),
                    client,
                )
                .await?;
                return Err(e);
            }
        };
        Ok(self.sign_in_external(&who, &proxy.mapping, client).await?)
    }
}
