//! Sign-in with an OpenID Connect provider: the authorization code flow with PKCE (S256), a
//! nonce, and a `state` bound to the browser by a short-lived signed cookie. The `openidconnect`
//! crate does discovery, the code exchange and the ID token's checks (signature with the
//! provider's keys, `iss`, `aud`, `exp`, `nonce`, allowed algorithms); this module adds the
//! flow cookie, one use per `state`, a JWKS refetch when a token names an unknown key (at most
//! every [`JWKS_REFETCH_EVERY`]), the claims Porthole reads, and an audited reason for every
//! refusal. The person it vouches for is signed in by [`super::sso`].

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, HttpRequest, HttpResponse, IdToken, IdTokenClaims, IssuerUrl, JsonWebKeySet, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Identity;
use super::sso::{External, ExternalError, ExternalSignIn, GroupRoles};
use crate::gateway::config::OidcConfig;
use crate::gateway::store::audit::Client;
use crate::gateway::store::db::{DbError, now_ms};

/// How long a sign-in may take at the provider (the flow cookie's life).
pub const FLOW_SECONDS: u64 = 600;
/// The issuer of flow cookies (never accepted as a sign-in token, whose issuer differs).
const FLOW_ISSUER: &str = "porthole-oidc-flow";
/// Provider metadata is read again after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The provider's keys are fetched again for an unknown key id at most this often.
pub const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(10);

/// Claims beyond the standard ones (groups, custom username claims), kept as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    claims: serde_json::Map<String, serde_json::Value>,
}

impl AdditionalClaims for OtherClaims {}

type Claims = IdTokenClaims<OtherClaims, CoreGenderClaim>;
type Token = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// What the flow cookie carries between the redirect to the provider and the way back.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flow {
    iss: String,
    aud: String,
    exp: u64,
    /// The `state` sent to the provider.
    state: String,
    /// The nonce the ID token must carry.
    nonce: String,
    /// The PKCE verifier of the challenge sent.
    verifier: String,
    /// Where to go once signed in (a local path, checked before).
    next: String,
}

/// Why a sign-in with the provider did not happen. Each has a short reason for the audit log
/// and a message that tells the person what to do.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Single sign-on is not configured.
    #[error("single sign-on is not configured on this gateway")]
    NotConfigured,
    /// The provider could not be reached, or answered nonsense.
    #[error(
        "the sign-in provider could not be reached ({stage}); try again in a minute, and tell \
         the administrators if it persists"
    )]
    Unreachable {
        /// `discovery`, `token exchange`, `keys`.
        stage: &'static str,
        /// What failed (logged and audited, not shown).
        detail: String,
    },
    /// The provider sent the person back with an error (they declined, or it refused).
    #[error("the sign-in provider did not sign you in: {0}")]
    Refused(String),
    /// No flow cookie: the sign-in took too long, or came back to another browser.
    #[error(
        "this sign-in has expired or was started in another browser; start again from the \
         sign-in page"
    )]
    NoFlow,
    /// The `state` that came back is not this browser's.
    #[error("this sign-in answer does not belong to this browser (state mismatch); start again")]
    StateMismatch,
    /// The answer was used before.
    #[error("this sign-in answer was used already; start again from the sign-in page")]
    Replayed,
    /// The provider would not exchange the code.
    #[error("the sign-in provider refused the sign-in code ({0}); start again")]
    CodeRefused(String),
    /// The ID token failed a check.
    #[error("the sign-in provider's answer failed a security check ({why}); start again")]
    BadToken {
        /// `bad signature`, `expired`, `wrong audience`, `nonce mismatch`, ….
        why: &'static str,
        /// The library's words.
        detail: String,
    },
    /// A claim Porthole needs is missing.
    #[error("the sign-in provider did not say {0}; ask an administrator to release that claim")]
    MissingClaim(String),
    /// The email is not in an allowed domain.
    #[error("{email} may not sign in here: only addresses at {allowed} may")]
    EmailDomain {
        /// The person's email (or `no email`).
        email: String,
        /// The domains allowed.
        allowed: String,
    },
    /// The identity could not be signed in (name taken, disabled, …).
    #[error(transparent)]
    External(#[from] ExternalError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl OidcError {
    /// The short reason in the `login.failed` audit row.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not configured",
            Self::Unreachable { .. } => "provider unreachable",
            Self::Refused(_) => "provider refused",
            Self::NoFlow => "no sign-in in progress",
            Self::StateMismatch => "state mismatch",
            Self::Replayed => "replayed",
            Self::CodeRefused(_) => "code refused",
            Self::BadToken { why, .. } => why,
            Self::MissingClaim(_) => "missing claim",
            Self::EmailDomain { .. } => "email domain not allowed",
            Self::External(e) => e.reason(),
            Self::Db(_) => "database",
        }
    }

    /// Whether the fault is the provider's or ours rather than the request's (a 502 or 500).
    pub fn is_server_side(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Db(_))
            || matches!(
                self,
                Self::External(ExternalError::Db(_) | ExternalError::Internal(_))
            )
    }
}

/// A request to the provider failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(String);

/// The HTTP client the `openidconnect` crate calls: reqwest, no redirects followed.
#[derive(Debug, Clone)]
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpFailure;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpFailure>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|e| HttpFailure(format!("request: {e}")))?;
            let url = request.url().clone();
            let response = self
                .0
                .execute(request)
                .await
                .map_err(|e| HttpFailure(format!("{url}: {}", error_chain(&e))))?;
            let mut out = openidconnect::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                out = out.header(name, value);
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| HttpFailure(format!("{url}: {e}")))?;
            out.body(body.to_vec())
                .map_err(|e| HttpFailure(format!("{url}: {e}")))
        })
    }
}

/// The provider as last discovered.
#[derive(Debug, Clone)]
struct Provider {
    metadata: ProviderMetadataWithLogout,
    discovered: Instant,
    keys_fetched: Instant,
}

/// The OpenID Connect client of the gateway.
pub struct Oidc {
    config: OidcConfig,
    redirect: RedirectUrl,
    after_logout: String,
    mapping: GroupRoles,
    http: reqwest::Client,
    flow_encoding: EncodingKey,
    flow_decoding: DecodingKey,
    flow_validation: Validation,
    origin: String,
    provider: tokio::sync::Mutex<Option<Provider>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer_url", &self.config.issuer_url)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

/// The start of a sign-in: where to send the browser, and the flow cookie's value.
#[derive(Debug, Clone)]
pub struct Begin {
    /// The provider's authorization URL.
    pub redirect_to: String,
    /// The signed flow cookie.
    pub flow_cookie: String,
}

/// What the provider sent the browser back with.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The state sent.
    pub state: Option<String>,
    /// An error code, when the provider did not sign the person in.
    pub error: Option<String>,
    /// Its description.
    pub error_description: Option<String>,
}

/// A finished sign-in: the login and where to go.
#[derive(Debug)]
pub struct Finished {
    /// The login.
    pub login: ExternalSignIn,
    /// The local path to go to.
    pub next: String,
}

impl Oidc {
    /// A client for `config`; the redirect URI is `public_url` + `/auth/oidc/callback`. The
    /// provider is discovered at the first sign-in (so the gateway starts while it is down).
    pub fn new(
        config: &OidcConfig,
        public_url: &str,
        origin: &str,
        secret: &[u8],
    ) -> Result<Self, String> {
        let base = public_url.trim_end_matches('/');
        let redirect = RedirectUrl::new(format!("{base}/auth/oidc/callback"))
            .map_err(|e| format!("auth.oidc: the redirect URI from server.public_url: {e}"))?;
        let http = reqwest::Client::builder()
            // A provider's answers are never followed elsewhere (the crate's advice: no SSRF).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.http_timeout_seconds))
            .build()
            .map_err(|e| format!("auth.oidc: HTTP client: {e}"))?;
        let mut flow_validation = Validation::new(Algorithm::HS256);
        flow_validation.set_issuer(&[FLOW_ISSUER]);
        flow_validation.set_audience(&[origin]);
        flow_validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        flow_validation.leeway = 0;
        Ok(Self {
            mapping: GroupRoles::new(&config.role_mapping)?,
            config: config.clone(),
            redirect,
            after_logout: format!("{base}/login"),
            http,
            flow_encoding: EncodingKey::from_secret(secret),
            flow_decoding: DecodingKey::from_secret(secret),
            flow_validation,
            origin: origin.to_owned(),
            provider: tokio::sync::Mutex::new(None),
        })
    }

    /// The button's text: "Sign in with …".
    pub fn display_name(&self) -> &str {
        &self.config.display_name
    }

    /// The roles mapped from groups.
    pub fn mapping(&self) -> &GroupRoles {
        &self.mapping
    }

    /// The provider's metadata, discovered now when not yet (or long ago).
    async fn provider(&self) -> Result<Provider, OidcError> {
        let mut cached = self.provider.lock().await;
        if let Some(p) = cached.as_ref()
            && p.discovered.elapsed() < DISCOVERY_TTL
        {
            return Ok(p.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer_url.trim().to_owned()).map_err(|e| {
            OidcError::Unreachable {
                stage: "discovery",
                detail: format!("issuer URL: {e}"),
            }
        })?;
        let http = Http(self.http.clone());
        let metadata = match ProviderMetadataWithLogout::discover_async(issuer, &http).await {
            Ok(metadata) => metadata,
            Err(e) => {
                let detail = error_chain(&e);
                // Metadata read before stays good while the provider is away for a moment
                // (its keys are still fetched again on an unknown key id).
                if let Some(stale) = cached.as_ref() {
                    tracing::warn!(
                        "single sign-on: rediscovery failed, keeping the last: {detail}"
                    );
                    return Ok(stale.clone());
                }
                return Err(OidcError::Unreachable {
                    stage: "discovery",
                    detail,
                });
            }
        };
        let now = Instant::now();
        let provider = Provider {
            metadata,
            discovered: now,
            keys_fetched: now,
        };
        *cached = Some(provider.clone());
        Ok(provider)
    }

    /// Fetches the provider's keys again, unless that was done less than
    /// [`JWKS_REFETCH_EVERY`] ago; whether new keys were fetched.
    async fn refetch_keys(&self) -> Result<bool, OidcError> {
        let mut cached = self.provider.lock().await;
        let Some(provider) = cached.as_mut() else {
            return Ok(false);
        };
        if provider.keys_fetched.elapsed() < JWKS_REFETCH_EVERY {
            return Ok(false);
        }
        provider.keys_fetched = Instant::now();
        let http = Http(self.http.clone());
        let keys = JsonWebKeySet::fetch_async(provider.metadata.jwks_uri(), &http)
            .await
            .map_err(|e| OidcError::Unreachable {
                stage: "keys",
                detail: error_chain(&e),
            })?;
        provider.metadata = provider.metadata.clone().set_jwks(keys);
        Ok(true)
    }

    fn client(
        &self,
        provider: &Provider,
    ) -> CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            provider.metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            self.config
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Starts a sign-in that returns to `next` (a local path, checked by the caller).
    pub async fn begin(&self, next: &str) -> Result<Begin, OidcError> {
        let provider = self.provider().await?;
        let client = self.client(&provider);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self
            .config
            .scopes
            .split_whitespace()
            .filter(|s| *s != "openid")
        {
            request = request.add_scope(Scope::new(scope.to_owned()));
        }
        let (url, state, nonce) = request.url();
        let flow = Flow {
            iss: FLOW_ISSUER.into(),
            aud: self.origin.clone(),
            exp: u64::try_from(now_ms() / 1000).unwrap_or(0) + FLOW_SECONDS,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: next.to_owned(),
        };
        let flow_cookie =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &flow, &self.flow_encoding)
                .map_err(|e| OidcError::Unreachable {
                    stage: "flow cookie",
                    detail: e.to_string(),
                })?;
        Ok(Begin {
            redirect_to: url.to_string(),
            flow_cookie,
        })
    }

    /// The provider's sign-out URL, when it has one (RP-initiated logout), returning the
    /// person to the sign-in page. From the metadata already read, never waiting for the
    /// provider: `None` when there is none yet, or while a discovery is under way.
    pub async fn end_session_url(&self) -> Option<String> {
        let provider = self.provider.try_lock().ok()?.clone()?;
        let endpoint = provider
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        let mut url = endpoint.url().clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", &self.after_logout);
        Some(url.to_string())
    }

    /// Checks the answer against the flow cookie: the flow, and the code that came back.
    fn check_answer(
        &self,
        flow_cookie: Option<&str>,
        callback: &Callback,
    ) -> Result<(Flow, String), OidcError> {
        let flow = flow_cookie
            .and_then(|c| {
                jsonwebtoken::decode::<Flow>(c, &self.flow_decoding, &self.flow_validation).ok()
            })
            .map(|data| data.claims)
            .ok_or(OidcError::NoFlow)?;
        // The state first: an answer that is not this browser's says nothing, not even an error.
        let state = callback.state.as_deref().unwrap_or_default();
        if !same(state.as_bytes(), flow.state.as_bytes()) {
            return Err(OidcError::StateMismatch);
        }
        if let Some(error) = &callback.error {
            let text = match &callback.error_description {
                Some(d) if !d.is_empty() => format!("{error}: {d}"),
                _ => error.clone(),
            };
            return Err(OidcError::Refused(clip(&text, 300)));
        }
        let code = callback
            .code
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| OidcError::Refused("no code came back".into()))?;
        Ok((flow, code))
    }

    /// Exchanges the code and verifies the ID token: the identity it vouches for.
    async fn exchange(&self, flow: &Flow, code: String) -> Result<External, OidcError> {
        let provider = self.provider().await?;
        let client = self.client(&provider);
        let http = Http(self.http.clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| OidcError::Unreachable {
                stage: "token exchange",
                detail: format!("the provider has no token endpoint: {e}"),
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(answer) => {
                    OidcError::CodeRefused(clip(&answer.to_string(), 300))
                }
                other => OidcError::Unreachable {
                    stage: "token exchange",
                    detail: error_chain(&other),
                },
            })?;
        let raw = response
            .id_token()
            .ok_or_else(|| OidcError::MissingClaim("an ID token".into()))?
            .to_string();
        let token: Token = raw.parse().map_err(|e| OidcError::BadToken {
            why: "malformed token",
            detail: format!("{e}"),
        })?;
        let nonce = Nonce::new(flow.nonce.clone());
        let claims = match self.verify(&provider, &token, &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.refetch_keys().await? => {
                // The provider may have rotated its keys: once more with the new set.
                let provider = self.provider().await?;
                self.verify(&provider, &token, &nonce)
            }
            other => other,
        }
        .map_err(|e| OidcError::BadToken {
            why: token_fault(&e),
            detail: e.to_string(),
        })?;
        self.identity_of(&claims)
    }

    fn verify(
        &self,
        provider: &Provider,
        token: &Token,
        nonce: &Nonce,
    ) -> Result<Claims, ClaimsVerificationError> {
        let client = self.client(provider);
        token.claims(&client.id_token_verifier(), nonce).cloned()
    }

    /// The person the verified claims name.
    fn identity_of(&self, claims: &Claims) -> Result<External, OidcError> {
        let other = &claims.additional_claims().claims;
        let email = claims.email().map(|e| e.as_str().to_owned());
        let standard = |name: &str| -> Option<String> {
            match name {
                "preferred_username" => claims.preferred_username().map(|u| u.as_str().to_owned()),
                "email" => email.clone(),
                "sub" => Some(claims.subject().as_str().to_owned()),
                "name" => claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned()),
                _ => None,
            }
        };
        let claim = |name: &str| -> Option<String> {
            standard(name).or_else(|| other.get(name).and_then(|v| v.as_str()).map(str::to_owned))
        };
        let name = match &self.config.username_claim {
            Some(c) => {
                claim(c).ok_or_else(|| OidcError::MissingClaim(format!("the claim {c:?}")))?
            }
            None => claim("preferred_username")
                .or_else(|| email.clone())
                .ok_or_else(|| {
                    OidcError::MissingClaim("a preferred_username or email claim".into())
                })?,
        };
        if !self.config.allowed_email_domains.is_empty() {
            let domain = email
                .as_deref()
                .and_then(|e| e.rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase());
            let allowed = domain.as_deref().is_some_and(|d| {
                self.config
                    .allowed_email_domains
                    .iter()
                    .any(|a| a.trim().eq_ignore_ascii_case(d))
            }) && claims.email_verified() != Some(false);
            if !allowed {
                return Err(OidcError::EmailDomain {
                    email: match (&email, claims.email_verified()) {
                        (Some(e), Some(false)) => format!("{e} (not verified)"),
                        (Some(e), _) => e.clone(),
                        (None, _) => "an account without an email".into(),
                    },
                    allowed: self.config.allowed_email_domains.join(", "),
                });
            }
        }
        let groups = match other.get(&self.config.groups_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let display_name = standard("name");
        Ok(External {
            method: "oidc",
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            name: name.trim().to_lowercase(),
            email,
            display_name,
            groups,
        })
    }
}

impl Identity {
    /// The OpenID Connect client, when configured.
    pub fn oidc(&self) -> Result<&Oidc, OidcError> {
        self.oidc.as_deref().ok_or(OidcError::NotConfigured)
    }

    /// Starts a sign-in that returns to `next`; a provider that cannot be reached is audited
    /// (`login.failed`, "provider unreachable").
    pub async fn oidc_begin(&self, next: &str, client: &Client) -> Result<Begin, OidcError> {
        let oidc = self.oidc()?;
        match oidc.begin(next).await {
            Ok(begin) => Ok(begin),
            Err(e) => {
                let detail = match &e {
                    OidcError::Unreachable { detail, .. } => detail.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(
                    reason = e.reason(),
                    "single sign-on could not start: {detail}"
                );
                self.external_failed(
                    "oidc",
                    "",
                    e.reason(),
                    json!({"issuer": oidc.config.issuer_url, "error": detail}),
                    client,
                )
                .await?;
                Err(e)
            }
        }
    }

    /// Finishes a sign-in that came back from the provider: checks it, takes its `state` once,
    /// signs the person in. Every refusal is audited as `login.failed` with its reason.
    pub async fn oidc_callback(
        &self,
        flow_cookie: Option<&str>,
        callback: &Callback,
        client: &Client,
    ) -> Result<Finished, OidcError> {
        let oidc = self.oidc()?;
        let result = async {
            let (flow, code) = oidc.check_answer(flow_cookie, callback)?;
            // Taken before the code is used: an answer replayed is refused here, and its code
            // never reaches the provider again.
            self.take_state(&flow.state).await?;
            let who = oidc.exchange(&flow, code).await?;
            Ok::<_, OidcError>((who, flow.next))
        }
        .await;
        let (who, next) = match result {
            Ok(done) => done,
            Err(e) => {
                let detail = match &e {
                    OidcError::Unreachable { detail, .. } | OidcError::BadToken { detail, .. } => {
                        json!({"issuer": oidc.config.issuer_url, "error": clip(detail, 500)})
                    }
                    other => json!({"issuer": oidc.config.issuer_url, "error": other.to_string()}),
                };
                tracing::warn!(reason = e.reason(), "single sign-on refused: {e}");
                self.external_failed("oidc", "", e.reason(), detail, client)
                    .await?;
                return Err(e);
            }
        };
        let login = self.sign_in_external(&who, &oidc.mapping, client).await?;
        Ok(Finished { login, next })
    }

    /// Records that the sign-in with `state` came back, once: a second time is a replay.
    async fn take_state(&self, state: &str) -> Result<(), OidcError> {
        let now = now_ms();
        let mut tx = self.db.begin_write().await?;
        // Flows older than a day are long expired; their states need not be kept.
        sqlx::query("DELETE FROM sso_flows WHERE used_at < $1")
            .bind(now - 24 * 3600 * 1000)
            .execute(&mut *tx.tx)
            .await
            .map_err(|e| DbError::new("forget old sign-in flows", e))?;
        let inserted = sqlx::query("INSERT INTO sso_flows (state, used_at) VALUES ($1, $2)")
            .bind(state)
            .bind(now)
            .execute(&mut *tx.tx)
            .await
            .map_err(|e| DbError::new("record sign-in flow", e));
        match inserted {
            Ok(_) => {}
            Err(e) if e.is_unique_violation() => return Err(OidcError::Replayed),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        Ok(())
    }
}

/// What the verifier's refusal means, in the audit log's words.
fn token_fault(e: &ClaimsVerificationError) -> &'static str {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    match e {
        C::Expired(_) => "expired",
        C::InvalidAudience(_) => "wrong audience",
        C::InvalidIssuer(_) => "wrong issuer",
        C::InvalidNonce(_) => "nonce mismatch",
        C::SignatureVerification(S::NoSignature) => "unsigned token",
        C::SignatureVerification(S::NoMatchingKey) => "unknown signing key",
        C::SignatureVerification(S::DisallowedAlg(_) | S::UnsupportedAlg(_)) => {
            "algorithm not allowed"
        }
        C::SignatureVerification(_) => "bad signature",
        C::InvalidSubject(_) => "invalid subject",
        _ => "invalid token",
    }
}

/// An error with its sources, for the log and the audit row.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    clip(&text, 500)
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// Compares without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
