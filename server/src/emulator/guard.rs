//! The emulator answers only loopback names. A page in the developer's browser could otherwise
//! reach it: through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1, so
//! the request's `Host` is that name), or directly from another site (the `Origin` is that
//! site). Either would let the page start a session and type into a shell. Unless
//! `--allow-remote` is given, every request needs a loopback `Host` (`localhost`,
//! `127.0.0.0/8`, `[::1]`, any port), and a request that carries an `Origin` (browsers send
//! one on WebSocket upgrades and cross-site posts; the AWS SDKs and CLI send none) needs a
//! loopback one too. Refusals are 403 with an AWS-shaped JSON error that names the header.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Whether `host` (a `Host` header's value, or the host of an origin) names this machine by a
/// loopback name: `localhost`, an address in 127.0.0.0/8 or `::1`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:port
        match rest.split_once(']') {
            Some((inside, after)) if after.is_empty() || valid_port(after) => inside,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(&format!(":{port}")) => name,
            Some(_) => return false,
            None => host,
        }
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn valid_port(text: &str) -> bool {
    text.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an `Origin` header's value is a loopback origin (`http://127.0.0.1:8080`, …).
pub fn is_loopback_origin(origin: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| is_loopback_host(rest.trim_end_matches('/')))
}

/// Why `headers` may not reach the emulator, or `None` when they may.
pub fn refusal(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match host {
        Some(h) if is_loopback_host(h) => {}
        Some(h) => {
            return Some(format!(
                "Host {h:?} is not a loopback name (localhost, 127.0.0.1, [::1]); \
                 start the emulator with --allow-remote to accept other names"
            ));
        }
        None => return Some("the request has no Host header".into()),
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !is_loopback_origin(origin) {
            return Some(format!(
                "Origin {origin:?} is not a loopback origin: web pages may not drive the \
                 emulator; start it with --allow-remote to accept them"
            ));
        }
    }
    None
}

/// Middleware: refuses requests whose `Host` or `Origin` is not loopback, unless the emulator
/// was started with `--allow-remote`.
pub async fn loopback_only(
    State(state): State<Arc<super::State>>,
    request: Request,
    next: Next,
) -> Response {
    if !state.config.allow_remote
        && let Some(why) = refusal(request.headers())
    {
        tracing::warn!("emulator: refused a request: {why}");
        let body = serde_json::json!({"__type": "AccessDeniedException", "message": why});
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "application/x-amz-json-1.1")],
            body.to_string(),
        )
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_only() {
        for ok in [
            "localhost",
            "LOCALHOST:4566",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "[::1]",
            "[::1]:4566",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:4566",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.0.0.1:80",
            "0.0.0.0:4566",
            "[::2]:4566",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:123456",
            "",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
        assert!(is_loopback_origin("http://127.0.0.1:8080"));
        assert!(is_loopback_origin("http://localhost:3000/"));
        assert!(!is_loopback_origin("https://evil.example"));
        assert!(!is_loopback_origin("null"));
    }
}
