//! The gateway path, as a browser takes it: sign in (`POST /api/v1/auth/login`, with the
//! Origin), open a session (`POST /api/v1/sessions` with a reason and the CSRF token), attach
//! the WebSocket (`GET /api/v1/sessions/{id}/attach`, cookie and Origin), type, and
//! acknowledge output every 32 KiB as the page does (`{"type":"ack","bytes":N}`).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::stats::Errors;
use super::typing::{DRAIN, Plan, Typing};

/// How long one request or a session's first output may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Output is acknowledged every this many bytes, as the terminal page does
/// (`web/static/terminal.js`, well inside the gateway's window).
pub const ACK_EVERY: usize = 32 * 1024;
/// What the echo agent prints first.
pub const GREETING: &str = "echo agent";

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A gateway at a URL (which is also the Origin its pages have).
#[derive(Debug, Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
}

/// A signed-in user: the cookie and the CSRF token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    cookie: String,
    csrf: String,
}

/// Why a step failed: a kind for the report and the detail for the log.
pub type Failure = (String, String);

fn failure(kind: &str, detail: impl Into<String>) -> Failure {
    (kind.to_owned(), detail.into())
}

impl Gateway {
    /// A client of the gateway at `base`.
    pub fn new(base: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(STEP_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            base: base.to_owned(),
        })
    }

    /// Signs `name` in; a 429 (password checks busy) is retried for [`STEP_TIMEOUT`].
    pub async fn sign_in(&self, name: &str, password: &str) -> Result<SignedIn, Failure> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let reply = self
                .http
                .post(format!("{}/api/v1/auth/login", self.base))
                .header("origin", &self.base)
                .json(&json!({"username": name, "password": password}))
                .send()
                .await
                .map_err(|e| failure("sign_in: request", e.to_string()))?;
            let status = reply.status();
            if status == StatusCode::TOO_MANY_REQUESTS && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let cookie = reply
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| {
                    v.starts_with("porthole_session=") || v.starts_with("__Host-porthole_session=")
                })
                .and_then(|v| v.split(';').next())
                .map(str::to_owned);
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            if status != StatusCode::OK {
                return Err(failure(
                    &format!("sign_in: {}", status.as_u16()),
                    format!("{name}: {}", body["error"]["message"]),
                ));
            }
            let csrf = body["csrf_token"].as_str().map(str::to_owned);
            return match (cookie, csrf) {
                (Some(cookie), Some(csrf)) => Ok(SignedIn { cookie, csrf }),
                _ => Err(failure("sign_in: no cookie", name)),
            };
        }
    }

    /// Opens a session on `target`; its id.
    pub async fn open(
        &self,
        who: &SignedIn,
        target: &str,
        reason: &str,
    ) -> Result<String, Failure> {
        let reply = self
            .http
            .post(format!("{}/api/v1/sessions", self.base))
            .header("origin", &self.base)
            .header("cookie", &who.cookie)
            .header("x-csrf-token", &who.csrf)
            .json(&json!({"target": target, "reason": reason}))
            .send()
            .await
            .map_err(|e| failure("open: request", e.to_string()))?;
        let status = reply.status();
        let body: Value = reply.json().await.unwrap_or(Value::Null);
        if status != StatusCode::CREATED {
            let code = body["error"]["code"].as_str().unwrap_or("");
            return Err(failure(
                &format!("open: {} {code}", status.as_u16()),
                body["error"]["message"].to_string(),
            ));
        }
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| failure("open: no id", body.to_string()))
    }

    /// Ends a session (`DELETE /api/v1/sessions/{id}`).
    pub async fn end(&self, who: &SignedIn, id: &str) -> Result<(), Failure> {
        let reply = self
            .http
            .delete(format!("{}/api/v1/sessions/{id}", self.base))
            .header("origin", &self.base)
            .header("cookie", &who.cookie)
            .header("x-csrf-token", &who.csrf)
            .send()
            .await
            .map_err(|e| failure("end: request", e.to_string()))?;
        match reply.status() {
            s if s.is_success() => Ok(()),
            s => Err(failure(&format!("end: {}", s.as_u16()), id)),
        }
    }

    /// Attaches to session `id` and waits for it to be ready: the `sync` message and the echo
    /// agent's greeting. Returns the socket and the output offset reached.
    pub async fn attach(&self, who: &SignedIn, id: &str) -> Result<(Socket, u64), Failure> {
        let url = format!(
            "{}/api/v1/sessions/{id}/attach",
            self.base
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1)
        );
        let mut request = url
            .into_client_request()
            .map_err(|e| failure("attach: url", e.to_string()))?;
        for (name, value) in [("origin", &self.base), ("cookie", &who.cookie)] {
            let value = HeaderValue::from_str(value)
                .map_err(|e| failure("attach: header", e.to_string()))?;
            request.headers_mut().insert(name, value);
        }
        let connect = tokio_tungstenite::connect_async(request);
        let (mut socket, _) = tokio::time::timeout(STEP_TIMEOUT, connect)
            .await
            .map_err(|_| failure("attach: timeout", id))?
            .map_err(|e| failure("attach: refused", e.to_string()))?;
        let ready = async {
            let mut seen = Vec::new();
            let mut offset = None;
            let mut live = 0u64;
            loop {
                match socket.next().await {
                    Some(Ok(Message::Binary(bytes))) => {
                        seen.extend_from_slice(&bytes);
                        if offset.is_some() {
                            live += bytes.len() as u64;
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        if v["type"] == "sync" {
                            offset = v["offset"].as_u64();
                            live = 0;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return Err(failure("attach: closed", format!("{frame:?}")));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(failure("attach: socket", e.to_string())),
                    None => return Err(failure("attach: closed", id)),
                }
                let greeted = memchr::memmem::find(&seen, GREETING.as_bytes()).is_some();
                if let (Some(at), true) = (offset, greeted) {
                    return Ok(at + live);
                }
            }
        };
        let offset = tokio::time::timeout(STEP_TIMEOUT, ready)
            .await
            .map_err(|_| failure("attach: no greeting", id))??;
        let ack = json!({"type": "ack", "bytes": offset}).to_string();
        socket
            .send(Message::Text(ack.into()))
            .await
            .map_err(|e| failure("attach: socket", e.to_string()))?;
        Ok((socket, offset))
    }
}

/// Counts `n` bytes of output received up to `offset`, and acknowledges them every
/// [`ACK_EVERY`] bytes, as the page does.
async fn acknowledge(
    socket: &mut Socket,
    offset: &mut u64,
    unacked: &mut usize,
    n: usize,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    *offset += n as u64;
    *unacked += n;
    if *unacked >= ACK_EVERY {
        *unacked = 0;
        let ack = json!({"type": "ack", "bytes": *offset}).to_string();
        socket.send(Message::Text(ack.into())).await?;
    }
    Ok(())
}

/// The numbered lines `1\r\n` … `lines\r\n` (what `seq` prints), as typed into an echo node.
pub fn numbered_lines(lines: u64) -> Vec<u8> {
    let mut text = Vec::new();
    for n in 1..=lines {
        text.extend_from_slice(format!("{n}\r\n").as_bytes());
    }
    text
}

/// Makes an idle session print `lines` numbered lines: attaches, types them (the echo node
/// prints them back), waits until all of it came back, and detaches, so the session is left
/// with the output in its ring and terminal model (the "printed 3,000 lines, then quiet" case).
pub async fn print_and_leave(
    gw: &Gateway,
    who: &SignedIn,
    id: &str,
    lines: u64,
) -> Result<(), Failure> {
    /// Input per WebSocket message.
    const CHUNK: usize = 4 * 1024;
    let (mut socket, mut offset) = gw.attach(who, id).await?;
    let text = numbered_lines(lines);
    let echoed = async {
        for chunk in text.chunks(CHUNK) {
            socket
                .send(Message::Binary(chunk.to_vec().into()))
                .await
                .map_err(|e| failure("print: socket", e.to_string()))?;
        }
        let mut back = 0usize;
        let mut unacked = 0usize;
        while back < text.len() {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    back += bytes.len();
                    acknowledge(&mut socket, &mut offset, &mut unacked, bytes.len())
                        .await
                        .map_err(|e| failure("print: socket", e.to_string()))?;
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(failure("print: closed", format!("{frame:?}")));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(failure("print: socket", e.to_string())),
                None => return Err(failure("print: closed", id)),
            }
        }
        Ok(())
    };
    tokio::time::timeout(STEP_TIMEOUT, echoed)
        .await
        .map_err(|_| failure("print: timeout", id))??;
    let _ = socket.close(None).await; // detached: the session waits, idle
    Ok(())
}

/// Types on an attached session as `plan` says; returns what it measured.
pub async fn type_on(mut socket: Socket, mut offset: u64, plan: Plan, errors: Errors) -> Typing {
    const PATH: &str = "gateway";
    let mut typing = Typing::new(&plan);
    let mut tick = plan.interval();
    let drain_end = plan.end + DRAIN;
    let mut unacked = 0usize;
    loop {
        let typing_now = Instant::now() < plan.end;
        if !typing_now && !typing.waiting() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if typing_now => {
                let key = typing.key(Instant::now());
                if let Err(e) = socket.send(Message::Binary(vec![key].into())).await {
                    errors.add("gateway: send", &e.to_string());
                    break;
                }
            }
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    typing.received(&bytes, Instant::now(), &errors, PATH);
                    let acked = acknowledge(&mut socket, &mut offset, &mut unacked, bytes.len());
                    if let Err(e) = acked.await {
                        errors.add("gateway: send", &e.to_string());
                        break;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    errors.add("gateway: closed", &format!("{frame:?}"));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    errors.add("gateway: socket", &e.to_string());
                    break;
                }
                None => {
                    errors.add("gateway: closed", "no close frame");
                    break;
                }
            },
            _ = tokio::time::sleep_until(drain_end) => break,
        }
    }
    let _ = socket.close(None).await; // the gateway keeps the session; closing is a courtesy
    typing
}
