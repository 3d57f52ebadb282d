//! A typed test client for the gateway's API and attach socket that keeps every byte the
//! "browser" received (status lines, headers, bodies, WebSocket frames), so tests can search
//! it for things that must never reach a browser.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::gateway::{Gateway, PASSWORD};

/// Everything received, shared between a client and its sockets.
pub type Seen = Arc<Mutex<Vec<u8>>>;

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub origin: Option<String>,
    pub cookie: Option<String>,
    /// The sign-in cookie's name (`__Host-porthole_session` behind https).
    pub cookie_name: &'static str,
    pub csrf: Option<String>,
    /// Sent as `X-Forwarded-For` (as a reverse proxy in front of the gateway would).
    pub forwarded_for: Option<String>,
    pub seen: Seen,
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The error message of an error answer.
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or("")
    }
}

impl Api {
    pub fn new(gw: &Gateway) -> Self {
        Self {
            origin: Some(gw.origin()),
            ..Self::at(&gw.url)
        }
    }

    /// A client of the gateway at `url` (its Origin too), signed out.
    pub fn at(url: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: url.to_owned(),
            origin: Some(url.to_owned()),
            cookie: None,
            cookie_name: "porthole_session",
            csrf: None,
            forwarded_for: None,
            seen: Arc::default(),
        }
    }

    fn record(&self, status: StatusCode, headers: &HeaderMap, body: &[u8]) {
        let mut seen = self.seen.lock().unwrap();
        seen.extend_from_slice(status.as_str().as_bytes());
        for (k, v) in headers {
            seen.extend_from_slice(k.as_str().as_bytes());
            seen.extend_from_slice(b": ");
            seen.extend_from_slice(v.as_bytes());
            seen.push(b'\n');
        }
        seen.extend_from_slice(body);
    }

    /// Sends a request with the stored cookie, CSRF token and Origin.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<&[u8]>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(origin) = &self.origin {
            request = request.header("origin", origin);
        }
        if let Some(cookie) = &self.cookie {
            request = request.header("cookie", format!("{}={cookie}", self.cookie_name));
        }
        if let Some(csrf) = &self.csrf {
            request = request.header("x-csrf-token", csrf);
        }
        if let Some(hops) = &self.forwarded_for {
            request = request.header("x-forwarded-for", hops);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_vec());
            // A body over the gateway's limit is answered (413) before it is read, and the
            // gateway then closes the connection: not one for the pool, or the next request
            // may be sent on it as it closes (hyper's IncompleteMessage).
            if body.len() > porthole::gateway::http::MAX_BODY_BYTES {
                request = request.header("connection", "close");
            }
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        self.record(status, &headers, &bytes);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).unwrap();
        self.send(Method::POST, path, Some(&bytes)).await
    }

    pub async fn delete(&mut self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None).await
    }

    /// Signs in; keeps the cookie and CSRF token on success.
    pub async fn login_as(&mut self, user: &str, password: &str) -> Reply {
        let reply = self
            .post(
                "/api/v1/auth/login",
                &serde_json::json!({"username": user, "password": password}),
            )
            .await;
        if reply.status == StatusCode::OK {
            let (name, value) = session_cookie(&reply.headers).unwrap();
            self.cookie_name = name;
            self.cookie = Some(value);
            self.csrf = reply.body["csrf_token"].as_str().map(str::to_owned);
        }
        reply
    }

    /// Signs in with the test password, asserting success.
    pub async fn login(&mut self, user: &str) {
        let reply = self.login_as(user, PASSWORD).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    }

    /// Starts a session, asserting 201; returns its id.
    pub async fn open(&mut self, target: &str, reason: &str) -> String {
        let reply = self
            .post(
                "/api/v1/sessions",
                &serde_json::json!({"target": target, "reason": reason}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["id"].as_str().unwrap().to_owned()
    }

    /// Waits until session `id` has ended (its JSON says `ended`); that JSON.
    pub async fn wait_ended(&mut self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = self.get(&format!("/api/v1/sessions/{id}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            if reply.body["state"] == "ended" {
                return reply.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "never ended: {}",
                reply.text
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Opens the attach socket of a session (with this client's cookie and Origin).
    pub async fn attach(&self, id: &str) -> Result<Attach, (u16, String)> {
        self.attach_since(id, None).await
    }

    /// Opens the attach socket asking for the output from offset `since` on.
    pub async fn attach_since(
        &self,
        id: &str,
        since: Option<u64>,
    ) -> Result<Attach, (u16, String)> {
        let query = since.map(|n| format!("?since={n}")).unwrap_or_default();
        self.attach_with(id, &query, since).await
    }

    /// Opens the attach socket with a raw query string (`?mode=observe`).
    pub async fn attach_with(
        &self,
        id: &str,
        query: &str,
        since: Option<u64>,
    ) -> Result<Attach, (u16, String)> {
        let url = format!(
            "{}/api/v1/sessions/{id}/attach{query}",
            self.base.replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().unwrap();
        if let Some(origin) = &self.origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        if let Some(cookie) = &self.cookie {
            request.headers_mut().insert(
                "cookie",
                HeaderValue::from_str(&format!("{}={cookie}", self.cookie_name)).unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, response)) => {
                self.record(response.status(), response.headers(), b"");
                Ok(Attach {
                    socket,
                    seen: self.seen.clone(),
                    screen: Vec::new(),
                    texts: Vec::new(),
                    close: None,
                    offset: since.unwrap_or(0),
                    synced: false,
                    live: Vec::new(),
                    before_sync: Vec::new(),
                    resyncs: 0,
                    auto_ack: true,
                })
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let body = response.body().clone().unwrap_or_default();
                self.record(response.status(), response.headers(), &body);
                Err((
                    response.status().as_u16(),
                    String::from_utf8_lossy(&body).into_owned(),
                ))
            }
            Err(e) => panic!("attach failed: {e}"),
        }
    }
}

/// The sign-in cookie's name and value in a `Set-Cookie`: `porthole_session`, or
/// `__Host-porthole_session` behind https.
pub fn session_cookie(headers: &HeaderMap) -> Option<(&'static str, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            ["__Host-porthole_session", "porthole_session"]
                .into_iter()
                .find_map(|name| {
                    let value = v.strip_prefix(name)?.strip_prefix('=')?;
                    Some((name, value.split(';').next().unwrap_or("").to_owned()))
                })
        })
}

/// The sign-in cookie's value in a `Set-Cookie`.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    session_cookie(headers).map(|(_, value)| value)
}

/// The last 1,500 bytes of `screen`, as text (failure messages stay readable).
pub fn tail(screen: &[u8]) -> String {
    String::from_utf8_lossy(&screen[screen.len().saturating_sub(1500)..]).into_owned()
}

/// A generous bound for anything a test waits for; waits end as soon as the thing arrives.
pub const WAIT: Duration = Duration::from_secs(60);

/// An attached browser socket.
pub struct Attach {
    pub socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    seen: Seen,
    /// Every output byte, in order.
    pub screen: Vec<u8>,
    /// Every text (JSON) message.
    pub texts: Vec<Value>,
    /// The close code and reason, once closed.
    pub close: Option<(u16, String)>,
    /// The session output offset reached (set by `sync`, advanced by output after it).
    pub offset: u64,
    /// Whether a `sync` arrived.
    pub synced: bool,
    /// Output received after the first `sync` (live bytes, exactly as the session printed).
    pub live: Vec<u8>,
    /// Output received before it: the missing bytes (`since`) or a snapshot of the screen.
    pub before_sync: Vec<u8>,
    /// Acknowledge output as it arrives (a browser does once it has drawn it).
    pub auto_ack: bool,
    /// How many `resync` messages arrived (redraws after an interrupt flush).
    pub resyncs: usize,
}

impl Attach {
    /// Sends keystrokes.
    pub async fn type_text(&mut self, text: &str) {
        self.socket
            .send(Message::Binary(text.as_bytes().to_vec().into()))
            .await
            .unwrap();
    }

    /// Sends a JSON control message.
    pub async fn control(&mut self, value: Value) {
        self.socket
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    /// Acknowledges the output received so far.
    pub async fn ack(&mut self) {
        let text = serde_json::json!({"type": "ack", "bytes": self.offset}).to_string();
        let _ = self.socket.send(Message::Text(text.into())).await; // a closing socket
    }

    /// Reads one message; false once closed.
    async fn read_one(&mut self) -> bool {
        let next = tokio::time::timeout(WAIT, self.socket.next()).await;
        let message = match next {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(_))) | Ok(None) => {
                if self.close.is_none() {
                    self.close = Some((1006, "no close frame".into()));
                }
                return false;
            }
            Err(_) => panic!(
                "nothing from the gateway for {WAIT:?}; the screen ends with: {:?}",
                tail(&self.screen)
            ),
        };
        if let Message::Binary(bytes) = &message {
            self.seen.lock().unwrap().extend_from_slice(bytes);
            self.screen.extend_from_slice(bytes);
            if self.synced {
                self.live.extend_from_slice(bytes);
                self.offset += bytes.len() as u64;
                if self.auto_ack {
                    self.ack().await;
                }
            } else {
                self.before_sync.extend_from_slice(bytes);
            }
            return true;
        }
        match message {
            Message::Text(text) => {
                self.seen.lock().unwrap().extend_from_slice(text.as_bytes());
                let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                let sync = value["type"] == "sync";
                if sync {
                    self.offset = value["offset"].as_u64().unwrap();
                    self.synced = true;
                }
                if value["type"] == "resync" {
                    // A redraw follows (an interrupt flushed output), then a sync.
                    self.synced = false;
                    self.resyncs += 1;
                }
                self.texts.push(value);
                if sync && self.auto_ack {
                    // As the page does: the offset it now stands at.
                    self.ack().await;
                }
                return true;
            }
            Message::Close(frame) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                self.seen
                    .lock()
                    .unwrap()
                    .extend_from_slice(reason.as_bytes());
                self.close = Some((code, reason));
                return false;
            }
            _ => {}
        }
        true
    }

    /// Reads until the screen (from `from`) contains `needle`.
    pub async fn expect_from(&mut self, from: usize, needle: &str) -> usize {
        loop {
            let tail =
                String::from_utf8_lossy(&self.screen[from.min(self.screen.len())..]).into_owned();
            if let Some(at) = tail.find(needle) {
                return from + at + needle.len();
            }
            assert!(
                self.read_one().await,
                "closed ({:?}) before {needle:?} appeared; the screen ends with: {:?}",
                self.close,
                super::api::tail(&self.screen)
            );
        }
    }

    /// Reads until the gateway's `sync` arrived (the replay or snapshot is complete).
    pub async fn until_synced(&mut self) {
        while !self.synced {
            assert!(
                self.read_one().await,
                "closed ({:?}) before a sync",
                self.close
            );
        }
    }

    /// Reads one message if one comes within `wait`; false on silence or close.
    pub async fn read_within(&mut self, wait: Duration) -> bool {
        matches!(tokio::time::timeout(wait, self.read_one()).await, Ok(true))
    }

    /// Reads until the screen contains `needle` anywhere.
    pub async fn expect(&mut self, needle: &str) -> usize {
        self.expect_from(0, needle).await
    }

    /// Reads until the socket closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        while self.read_one().await {}
        self.close.clone().unwrap()
    }
}
