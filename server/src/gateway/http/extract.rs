//! The signed-in person as extractors: [`SignedIn`] (the cookie checked down to its login
//! row by identity) and [`SignedInWrite`] (also the CSRF token); the client's address and
//! user agent; the Origin guard for every state-changing request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, ORIGIN, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use ipnet::IpNet;

use super::error::ApiError;
use super::state::AppState;
use crate::gateway::facts::User;
use crate::gateway::store::audit::Client;

/// The sign-in cookie over plain http.
pub const COOKIE_NAME: &str = "porthole_session";
/// The sign-in cookie behind https: browsers keep a `__Host-` cookie only when it is Secure,
/// has `Path=/` and no `Domain`, so no subdomain or other site can set or shadow it.
pub const SECURE_COOKIE_NAME: &str = "__Host-porthole_session";

/// The sign-in cookie's name for this gateway ([`SECURE_COOKIE_NAME`] when its public URL is
/// https, else [`COOKIE_NAME`]).
pub fn cookie_name(state: &AppState) -> &'static str {
    if state.config.secure_cookies() {
        SECURE_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}
/// The header that carries the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The header reverse proxies add the address they saw to.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// Longest user agent kept in the audit log.
const MAX_USER_AGENT: usize = 512;

/// A signed-in request: the user, the login it came with and that login's CSRF token.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user.
    pub user: User,
    /// The login id.
    pub login_id: String,
    /// The CSRF token of this login.
    pub csrf_token: String,
    /// Where the request came from.
    pub client: Client,
}

/// A signed-in, state-changing request whose `X-CSRF-Token` matched (the Origin is checked by
/// [`origin_guard`] for every such request).
#[derive(Debug, Clone)]
pub struct SignedInWrite(pub SignedIn);

/// The client address and user agent of a request.
pub fn client_of(parts: &Parts) -> Client {
    let addr = match parts.extensions.get::<ClientAddr>() {
        Some(ClientAddr(ip)) => ip.to_string(),
        None => parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip().to_canonical().to_string())
            .unwrap_or_default(),
    };
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(MAX_USER_AGENT).collect())
        .unwrap_or_default();
    Client { addr, user_agent }
}

/// The client's address as [`client_address`] found it (an extension of every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The client's address: the peer's, unless the peer is one of the trusted `proxies`; then
/// the `X-Forwarded-For` list (every such header, in order) is read from its end, each
/// trusted proxy skipped, and the first address that is not one is the client's. A malformed
/// entry stops the walk at the last good one (a proxy of ours wrote it, not the client).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted(&client) {
            break;
        }
    }
    client
}

/// The TCP peer of a request, and whether it is one of `server.trusted_proxies`.
pub fn peer_of(state: &AppState, parts: &Parts) -> Option<(IpAddr, bool)> {
    let ConnectInfo(peer) = parts.extensions.get::<ConnectInfo<SocketAddr>>()?;
    let ip = peer.ip().to_canonical();
    Some((ip, state.proxies.iter().any(|net| net.contains(&ip))))
}

/// Middleware: finds the client's address ([`client_address`]) and keeps it in the request
/// as [`ClientAddr`] for [`client_of`].
pub async fn client_addr(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let ip = client_address(peer.ip(), request.headers(), &state.proxies);
        request.extensions_mut().insert(ClientAddr(ip));
    }
    next.run(request).await
}

/// The value of cookie `name` in `headers`.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Checks the cookie of `headers` down to the database; `None` when not signed in.
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
    client: Client,
) -> Result<Option<SignedIn>, ApiError> {
    let Some(token) = cookie(headers, cookie_name(state)) else {
        return Ok(None);
    };
    Ok(state
        .identity
        .authenticate(&token)
        .await?
        .map(|login| SignedIn {
            user: login.user,
            login_id: login.id,
            csrf_token: login.csrf_token,
            client,
        }))
}

impl FromRequestParts<Arc<AppState>> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let client = client_of(parts);
        signed_in(state, &parts.headers, client)
            .await?
            .ok_or_else(ApiError::unauthenticated)
    }
}

impl FromRequestParts<Arc<AppState>> for SignedInWrite {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let signed = SignedIn::from_request_parts(parts, state).await?;
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if sent.is_empty() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "missing X-CSRF-Token header (state-changing requests need the token sign-in returned)",
            ));
        }
        if !constant_time_eq(sent.as_bytes(), signed.csrf_token.as_bytes()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "X-CSRF-Token does not match this sign-in",
            ));
        }
        Ok(Self(signed))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request's `Origin` is the gateway's.
pub fn origin_ok(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.trim_end_matches('/') == expected)
}

/// Middleware: every request that is not GET, HEAD or OPTIONS must carry the gateway's own
/// `Origin` (403 `bad_origin` otherwise), sign-in included. And the API answers no request a
/// browser says comes from another site (`Sec-Fetch-Site: cross-site` or `same-site`), GETs
/// included: the sign-in cookie is `SameSite=Lax`, so another site's top-level navigation
/// carries it, and some GETs write audit rows (a recording read, a search) in the person's name.
/// Pages stay reachable from other sites (links from chat, tickets, alerts).
pub async fn origin_guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let from_elsewhere = request
        .headers()
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| site == "cross-site" || site == "same-site");
    if from_elsewhere && request.uri().path().starts_with("/api/") {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site",
            "the API answers this gateway's own pages only (the browser says this request \
             comes from another site)",
        )
        .into_response();
    }
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    // Requests between gateways carry no Origin: their handlers take only signed ones
    // (`internal.rs`).
    let internal = request.uri().path().starts_with("/internal/");
    if !safe && !internal && !origin_ok(request.headers(), &state.origin) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_origin",
            format!(
                "the Origin header must be {} for requests that change something",
                state.origin
            ),
        )
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        use axum::http::HeaderValue;
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; porthole_session=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE_NAME).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(X_FORWARDED_FOR, v.parse().unwrap());
        }
        headers
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let proxies: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.0.2.7/32".parse().unwrap(),
        ];
        let table: &[(&str, &[&str], &str)] = &[
            // Not from a proxy: the header is the client's own words, ignored.
            ("203.0.113.9", &["198.51.100.1"], "203.0.113.9"),
            // From a proxy: the address it saw.
            ("10.1.2.3", &["198.51.100.1"], "198.51.100.1"),
            // A forged entry to the left of what the proxy appended changes nothing.
            ("10.1.2.3", &["1.2.3.4, 198.51.100.1"], "198.51.100.1"),
            // Two proxies of ours in a row, in one header or several.
            ("10.1.2.3", &["198.51.100.1, 192.0.2.7"], "198.51.100.1"),
            ("10.1.2.3", &["198.51.100.1", "10.9.9.9"], "198.51.100.1"),
            // Only proxies: the farthest one.
            ("10.1.2.3", &["10.0.0.5"], "10.0.0.5"),
            // No header, or garbage right at the end: the peer (a proxy).
            ("10.1.2.3", &[], "10.1.2.3"),
            ("10.1.2.3", &["1.2.3.4, nonsense"], "10.1.2.3"),
            // IPv4 in IPv6 is IPv4.
            ("::ffff:10.1.2.3", &["::ffff:198.51.100.1"], "198.51.100.1"),
        ];
        for (peer, header, want) in table {
            assert_eq!(
                client_address(ip(peer), &forwarded(header), &proxies),
                ip(want),
                "{peer} {header:?}"
            );
        }
        assert_eq!(
            client_address(ip("10.1.2.3"), &forwarded(&["198.51.100.1"]), &[]),
            ip("10.1.2.3"),
            "no trusted proxies: the header is ignored"
        );
    }
}
