//! Sign-in: password check, the `porthole_session` cookie carrying an HS256 JWT whose id is a
//! row in `logins`, CSRF tokens, Origin checks and the failed-sign-in limit.
//!
//! A request is signed in when its cookie's JWT verifies (algorithm pinned to HS256, signature,
//! expiry, issuer and audience checked) **and** the login row it names is neither revoked nor
//! expired **and** the user is not disabled. The database check is what makes logout and
//! `porthole users disable` take effect at once.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{COOKIE, ORIGIN, SET_COOKIE, USER_AGENT};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::Row;

use super::audit::{self, Client, Event, kind};
use super::db::{DbError, now_ms};
use super::error::{ApiError, parse_json};
use super::state::AppState;
use super::users::{self, User};

/// The sign-in cookie.
pub const COOKIE_NAME: &str = "porthole_session";
/// The header that carries the CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The JWT issuer.
pub const ISSUER: &str = "porthole";
/// Longest user agent kept in the audit log.
const MAX_USER_AGENT: usize = 512;

/// The keys and rules for sign-in tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys([redacted])")
    }
}

impl JwtKeys {
    /// Keys from the configured secret; tokens are for `audience` (the gateway's origin).
    pub fn new(secret: &[u8], audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }
}

/// The claims of a sign-in token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// Issuer: [`ISSUER`].
    pub iss: String,
    /// Audience: the gateway's origin.
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The login id (a row of `logins`).
    pub jti: String,
    /// Issued at (seconds).
    pub iat: u64,
    /// Expires at (seconds).
    pub exp: u64,
}

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
    let addr = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip().to_string())
        .unwrap_or_default();
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(MAX_USER_AGENT).collect())
        .unwrap_or_default();
    Client { addr, user_agent }
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
    let Some(token) = cookie(headers, COOKIE_NAME) else {
        return Ok(None);
    };
    let Ok(data) =
        jsonwebtoken::decode::<Claims>(&token, &state.jwt.decoding, &state.jwt.validation)
    else {
        return Ok(None);
    };
    let claims = data.claims;
    let row = sqlx::query(
        "SELECT l.revoked_at, l.expires_at, l.csrf_token, u.id, u.name, u.roles, u.disabled \
         FROM logins l JOIN users u ON u.id = l.user_id WHERE l.id = $1",
    )
    .bind(&claims.jti)
    .fetch_optional(state.db.pool())
    .await
    .map_err(|e| DbError::new("check login", e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let read = |e| ApiError::from(DbError::new("read login", e));
    let revoked: Option<i64> = row.try_get("revoked_at").map_err(read)?;
    let expires: i64 = row.try_get("expires_at").map_err(read)?;
    let csrf_token: String = row.try_get("csrf_token").map_err(read)?;
    let user = users::user_from_row(&row).map_err(read)?;
    if revoked.is_some()
        || expires <= now_ms()
        || user.disabled
        || claims.sub != user.id.to_string()
    {
        return Ok(None);
    }
    Ok(Some(SignedIn {
        user: super::policy::resolve(state, user),
        login_id: claims.jti,
        csrf_token,
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
/// `Origin` (403 `bad_origin` otherwise), sign-in included.
pub async fn origin_guard(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && !origin_ok(request.headers(), &state.origin) {
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// The user as the API shows it.
pub fn user_json(user: &User) -> serde_json::Value {
    json!({
        "name": user.name,
        "roles": user.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
    })
}

/// How many failed sign-ins were recorded for this name or this address in the window.
async fn recent_failures(state: &AppState, name: &str, addr: &str) -> Result<i64, DbError> {
    let since = now_ms() - (state.config.auth.failed_login_window_seconds as i64) * 1000;
    let count = |sql: &'static str, value: String| async move {
        sqlx::query(sql)
            .bind(kind::LOGIN_FAILED)
            .bind(value)
            .bind(since)
            .fetch_one(state.db.pool())
            .await
            .and_then(|row| row.try_get::<i64, _>("n"))
            .map_err(|e| DbError::new("count failed sign-ins", e))
    };
    let by_name = count(
        "SELECT COUNT(*) AS n FROM audit_events WHERE type = $1 AND actor = $2 AND at > $3",
        name.to_owned(),
    )
    .await?;
    let by_addr = if addr.is_empty() {
        0
    } else {
        count(
            "SELECT COUNT(*) AS n FROM audit_events WHERE type = $1 AND client_addr = $2 AND at > $3",
            addr.to_owned(),
        )
        .await?
    };
    Ok(by_name.max(by_addr))
}

/// `POST /api/v1/auth/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    body: Bytes,
) -> Result<Response, ApiError> {
    let client = client_of(&parts);
    let body: LoginBody = parse_json(&body)?;
    let name = body.username.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 || body.password.len() > users::MAX_PASSWORD {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong user name or password",
        ));
    }
    let max = i64::from(state.config.auth.max_failed_logins);
    if recent_failures(&state, &name, &client.addr).await? >= max {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many failed sign-ins for this user or address; try again in {} seconds",
                state.config.auth.failed_login_window_seconds
            ),
        ));
    }
    let found = users::find(&state.db, &name).await?;
    // Always run one hash check, so an unknown name takes as long as a wrong password.
    let (hash, user) = match found {
        Some((user, hash)) => (hash, Some(user)),
        None => (state.dummy_hash.clone(), None),
    };
    let password = body.password;
    let matches = tokio::task::spawn_blocking(move || users::verify_password(&hash, &password))
        .await
        .map_err(ApiError::internal)?;
    let user = match user {
        Some(user) if matches && !user.disabled => user,
        other => {
            let why = match other {
                None => "unknown user",
                Some(u) if u.disabled => "user disabled",
                Some(_) => "wrong password",
            };
            let mut tx = state.db.begin_write().await?;
            audit::append(
                &mut tx.tx,
                &Event::new(kind::LOGIN_FAILED, &name, &client).detail(json!({"why": why})),
            )
            .await?;
            tx.commit().await?;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong user name or password",
            ));
        }
    };
    let login_id = uuid::Uuid::new_v4().to_string();
    let csrf_token = hex::encode(rand::random::<[u8; 32]>());
    let now = now_ms();
    let ttl_ms = (state.config.auth.login_ttl_seconds as i64).saturating_mul(1000);
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO logins (id, user_id, created_at, expires_at, client_addr, user_agent, csrf_token) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&login_id)
    .bind(user.id)
    .bind(now)
    .bind(now + ttl_ms)
    .bind(&client.addr)
    .bind(&client.user_agent)
    .bind(&csrf_token)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("record login", e))?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::LOGIN, &user.name, &client).detail(json!({"login_id": login_id})),
    )
    .await?;
    tx.commit().await?;

    let iat = u64::try_from(now / 1000).unwrap_or(0);
    let claims = Claims {
        iss: ISSUER.into(),
        aud: state.origin.clone(),
        sub: user.id.to_string(),
        jti: login_id,
        iat,
        exp: iat + state.config.auth.login_ttl_seconds,
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &state.jwt.encoding)
        .map_err(ApiError::internal)?;
    let cookie = session_cookie(&state, &token, state.config.auth.login_ttl_seconds);
    let mut response = (
        StatusCode::OK,
        Json(json!({"user": user_json(&user), "csrf_token": csrf_token})),
    )
        .into_response();
    response.headers_mut().insert(SET_COOKIE, cookie);
    Ok(response)
}

fn session_cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `POST /api/v1/auth/logout`: revokes the login; its cookie is refused from now on.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    SignedInWrite(signed): SignedInWrite,
) -> Result<Response, ApiError> {
    let mut tx = state.db.begin_write().await?;
    sqlx::query("UPDATE logins SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(now_ms())
        .bind(&signed.login_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("revoke login", e))?;
    audit::append(
        &mut tx.tx,
        &Event::new(kind::LOGOUT, &signed.user.name, &signed.client)
            .detail(json!({"login_id": signed.login_id})),
    )
    .await?;
    tx.commit().await?;
    let mut response = (StatusCode::OK, Json(json!({"signed_out": true}))).into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

/// `GET /api/v1/me`.
pub async fn me(signed: SignedIn) -> Json<serde_json::Value> {
    Json(json!({"user": user_json(&signed.user), "csrf_token": signed.csrf_token}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
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
}
