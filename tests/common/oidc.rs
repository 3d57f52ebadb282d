//! Identity providers for the single sign-on tests: a real one (`oidc-provider-mock` from PyPI,
//! through `scripts/python-venv`) on a loopback port, and a forger of our own (discovery, keys
//! and a token endpoint that answers whatever ID token the test made) for the tokens a real
//! provider never issues. And the browser's part of the redirect dance, over plain HTTP.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use super::api::Api;
use super::gateway::Gateway;

/// oidc-provider-mock on `127.0.0.1`, stopped on drop.
pub struct MockProvider {
    /// The issuer: `http://127.0.0.1:PORT`.
    pub issuer: String,
    child: Child,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl MockProvider {
    /// Starts the provider (nonces required) and waits until its discovery answers.
    pub async fn start() -> Self {
        let venv = super::python::venv();
        let port = free_port();
        let child = Command::new(venv.join("bin/oidc-provider-mock"))
            .args(["--port", &port.to_string(), "--require-nonce", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let provider = Self {
            issuer: format!("http://127.0.0.1:{port}"),
            child,
        };
        let http = reqwest::Client::new();
        let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
        for _ in 0..300 {
            if let Ok(r) = http.get(&discovery).send().await
                && r.status().is_success()
            {
                return provider;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("oidc-provider-mock did not answer at {discovery} within 30 s");
    }

    /// Sets the claims the provider issues for `sub` (replacing the earlier ones).
    pub async fn set_user(&self, sub: &str, claims: Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/users/{sub}", self.issuer))
            .json(&claims)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NO_CONTENT,
            "{}",
            r.text().await.unwrap()
        );
    }
}

/// The `[auth.oidc]` section for a provider at `issuer`.
pub fn oidc_config(issuer: &str) -> porthole::gateway::config::OidcConfig {
    toml::from_str(&format!(
        "issuer_url = \"{issuer}\"\nclient_id = \"porthole\"\nclient_secret = \"not-so-secret\"\n\
         display_name = \"Example SSO\"\n\
         [[role_mapping]]\ngroup = \"sre\"\nroles = [\"operator\"]\n\
         [[role_mapping]]\ngroup = \"audit-*\"\nroles = [\"auditor\"]\n"
    ))
    .unwrap()
}

/// The `name=value` of the cookie `name` in `Set-Cookie` headers.
pub fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let value = v.strip_prefix(name)?.strip_prefix('=')?;
            Some(value.split(';').next().unwrap_or("").to_owned())
        })
}

/// One browser's cookie jar, by hand: the dance needs to see every redirect.
pub struct Browser {
    pub http: reqwest::Client,
    pub flow: Option<String>,
}

/// What a step of the dance answered.
#[derive(Debug)]
pub struct Step {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Step {
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            flow: None,
        }
    }

    async fn step(&self, request: reqwest::RequestBuilder) -> Step {
        let r = request.send().await.unwrap();
        Step {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        }
    }

    /// `GET /auth/oidc/login?next=…` at the gateway: the provider's authorization URL (the
    /// flow cookie kept).
    pub async fn start(&mut self, gw: &Gateway, next: &str) -> Step {
        let step = self
            .step(
                self.http
                    .get(format!("{}/auth/oidc/login?next={next}", gw.url)),
            )
            .await;
        if let Some(flow) = set_cookie(&step.headers, "porthole_oidc_flow") {
            self.flow = Some(flow);
        }
        step
    }

    /// The callback at the gateway, with the flow cookie when there is one.
    pub async fn callback(&self, url: &str) -> Step {
        let mut request = self.http.get(url);
        if let Some(flow) = &self.flow {
            request = request.header(COOKIE, format!("porthole_oidc_flow={flow}"));
        }
        self.step(request).await
    }

    /// Signs in as `sub` at oidc-provider-mock (its form posts the subject): the redirect
    /// back to the gateway's callback.
    pub async fn approve(&self, authorize_url: &str, sub: &str) -> String {
        let step = self
            .step(
                self.http
                    .post(authorize_url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("sub={sub}")),
            )
            .await;
        assert_eq!(step.status, StatusCode::FOUND, "{}", step.body);
        step.location()
    }

    /// The whole dance: start at the gateway, approve as `sub`, come back; the callback's
    /// answer.
    pub async fn sign_in(&mut self, gw: &Gateway, sub: &str, next: &str) -> (Step, String) {
        let start = self.start(gw, next).await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        let back = self.approve(&start.location(), sub).await;
        (self.callback(&back).await, back)
    }
}

/// An API client signed in with the session cookie a callback set.
pub async fn api_from(gw: &Gateway, callback: &Step) -> Api {
    let mut api = Api::new(gw);
    let token = set_cookie(&callback.headers, "porthole_session")
        .expect("the callback sets the sign-in cookie");
    api.cookie_name = "porthole_session";
    api.cookie = Some(token);
    let me = api.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);
    api.csrf = me.body["csrf_token"].as_str().map(str::to_owned);
    api
}

// ---------------------------------------------------------------------------------------------
// The forger

/// Two P-256 keys made for these tests (`openssl ecparam -name prime256v1 -genkey`): A is the
/// provider's published key, B a key it never published.
pub const KEY_A: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg0FTLX/EqpifaJ4Jg
C8bmM3Jej5dI2iMZou+ys0izvwahRANCAAQqQ50OXlSVCTJ8Z4+vkhU+Bc8yKg5D
xGxaJaVVw9QFs0kqDJyr9m45sA8qSUkXTXX1ozoumMwnI3cVXzamokur
-----END PRIVATE KEY-----
";
/// The public half of [`KEY_A`] as a JWK's `x` and `y`.
pub const KEY_A_XY: (&str, &str) = (
    "KkOdDl5UlQkyfGePr5IVPgXPMioOQ8RsWiWlVcPUBbM",
    "SSoMnKv2bjmwDypJSRdNdfWjOi6YzCcjdxVfNqaiS6s",
);
pub const KEY_B: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgmqYc89njPQuSfTle
KK9z2ltvphqSXzLwD33aN5XXi7yhRANCAATWjyYGrHGFz1ajgD1g9EJFZ5WFDfL/
lNTr8CqBIAyDNrEqsymVyfBs1bdBdIpTMPdYUpiYD3peF2D2vZCPH31l
-----END PRIVATE KEY-----
";
pub const KEY_B_XY: (&str, &str) = (
    "1o8mBqxxhc9Wo4A9YPRCRWeVhQ3y_5TU6_AqgSAMgzY",
    "sSqzKZXJ8GzVt0F0ilMw91hSmJgPel4XYPa9kI8ffWU",
);

/// The forger's state: the keys it publishes, the ID token its token endpoint answers next.
#[derive(Default)]
pub struct Forged {
    pub published: Vec<(String, (&'static str, &'static str))>,
    pub id_token: Option<String>,
}

/// A provider of the tests' own on `127.0.0.1`, stopped on drop.
pub struct Forger {
    pub issuer: String,
    pub state: Arc<Mutex<Forged>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn jwk(kid: &str, (x, y): (&str, &str)) -> Value {
    json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid, "x": x, "y": y})
}

impl Forger {
    /// Starts the forger, publishing [`KEY_A`] as kid `a`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(Forged {
            published: vec![("a".into(), KEY_A_XY)],
            id_token: None,
        }));
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { Json(d) }
                }),
            )
            .route(
                "/jwks",
                get(|State(s): State<Arc<Mutex<Forged>>>| async move {
                    let keys: Vec<Value> = s
                        .lock()
                        .unwrap()
                        .published
                        .iter()
                        .map(|(kid, xy)| jwk(kid, *xy))
                        .collect();
                    Json(json!({ "keys": keys }))
                }),
            )
            .route(
                "/token",
                post(|State(s): State<Arc<Mutex<Forged>>>| async move {
                    let token = s.lock().unwrap().id_token.clone().unwrap_or_default();
                    Json(json!({
                        "access_token": "forged-access", "token_type": "Bearer",
                        "expires_in": 300, "id_token": token,
                    }))
                }),
            )
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            issuer,
            state,
            task,
        }
    }

    /// Makes the token endpoint answer `token` next.
    pub fn answer(&self, token: String) {
        self.state.lock().unwrap().id_token = Some(token);
    }

    /// Publishes another key.
    pub fn publish(&self, kid: &str, xy: (&'static str, &'static str)) {
        self.state.lock().unwrap().published.push((kid.into(), xy));
    }
}

/// Signs `claims` with ES256 under `kid` with `pem`.
pub fn sign(claims: &Value, kid: &str, pem: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}

/// Good claims for the forger's issuer, the gateway's client and `nonce`; tests spoil one.
pub fn claims(issuer: &str, nonce: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": issuer, "aud": "porthole", "sub": "forged-1", "nonce": nonce,
        "iat": now, "exp": now + 300, "email": "mallory@example.com",
        "preferred_username": "mallory", "groups": ["sre"],
    })
}

// ---------------------------------------------------------------------------------------------
// Behind a proxy

/// The public half of [`KEY_A`] (PEM), as an AWS load balancer serves its keys.
pub const KEY_A_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEKkOdDl5UlQkyfGePr5IVPgXPMioO
Q8RsWiWlVcPUBbNJKgycq/ZuObAPKklJF0119aM6LpjMJyN3FV82pqJLqw==
-----END PUBLIC KEY-----
";

/// An Application Load Balancer's key endpoint: [`KEY_A_PUBLIC`] under `/key-a`.
pub struct KeyServer {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeyServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/key-a", get(|| async { KEY_A_PUBLIC }));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, task }
    }
}

/// An `x-amzn-oidc-data` as a load balancer makes it: padded base64url segments, the
/// signature over them as sent.
pub fn alb_token(header: &Value, claims: &Value, pem: &str) -> String {
    use base64::Engine as _;
    let padded = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE.encode(bytes);
    let signed = format!(
        "{}.{}",
        padded(&serde_json::to_vec(header).unwrap()),
        padded(&serde_json::to_vec(claims).unwrap())
    );
    let signature = jsonwebtoken::crypto::sign(
        signed.as_bytes(),
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    // The crate's signature is unpadded; the load balancer's is padded like the rest.
    let pad = "=".repeat((4 - signature.len() % 4) % 4);
    format!("{signed}.{signature}{pad}")
}

/// A client whose connections come from `ip` (any 127.0.0.0/8 address works on loopback).
pub fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}
