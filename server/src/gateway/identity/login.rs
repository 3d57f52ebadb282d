//! Sign-in and sign-out: the password check (argon2id, on the blocking pool, the same work for
//! an unknown name), the failed-sign-in limit, the `logins` row that a token names, and the
//! check of a presented token down to that row.
//!
//! A token is good when its JWT verifies **and** the login row it names is neither revoked
//! nor expired **and** the user is not disabled. The database check is what makes logout and
//! `porthole users disable` take effect at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::json;
use sqlx::Row;

use super::Identity;
use super::tokens::{Claims, ISSUER};
use super::users;
use crate::gateway::facts::User;
use crate::gateway::store::audit::{self, Client, Event, kind};
use crate::gateway::store::db::{DbError, now_ms};

/// A token that is still good: the user (roles and grants resolved), the login row and its
/// CSRF token.
#[derive(Debug, Clone)]
pub struct Login {
    /// The user.
    pub user: User,
    /// The login id (a row of `logins`).
    pub id: String,
    /// The CSRF token of this login.
    pub csrf_token: String,
}

/// A new sign-in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The user.
    pub user: User,
    /// The signed token for the cookie.
    pub token: String,
    /// The CSRF token of this login.
    pub csrf_token: String,
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown name, wrong password, disabled user: the same answer for all three.
    #[error("wrong user name or password")]
    InvalidCredentials,
    /// Every password check is busy: the sign-in is refused rather than queued.
    #[error("too many sign-ins at once; try again in a moment")]
    Busy,
    /// Too many failures for this name or this address within the window.
    #[error(
        "too many failed sign-ins for this user or address; try again in {window_seconds} seconds"
    )]
    RateLimited {
        /// The window's length.
        window_seconds: u64,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Anything else (a hashing task that died, a token that could not be signed).
    #[error("{0}")]
    Internal(String),
}

/// Sign-in attempts being checked, by key (`user:NAME`, `addr:ADDRESS`).
#[derive(Debug, Default)]
pub struct InFlight {
    counts: Mutex<HashMap<String, i64>>,
}

/// One attempt's share of [`InFlight`], given back when it is dropped.
#[derive(Debug)]
struct Attempt<'a> {
    table: &'a InFlight,
    keys: Vec<String>,
}

impl InFlight {
    /// Counts an attempt under `keys` when, with `recorded` failures already in the database
    /// for each key, none would go past `max`; `None` when one would.
    fn begin(&self, keys: Vec<(String, i64)>, max: i64) -> Option<Attempt<'_>> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if keys
            .iter()
            .any(|(key, recorded)| recorded + counts.get(key).copied().unwrap_or(0) >= max)
        {
            return None;
        }
        for (key, _) in &keys {
            *counts.entry(key.clone()).or_default() += 1;
        }
        Some(Attempt {
            table: self,
            keys: keys.into_iter().map(|(k, _)| k).collect(),
        })
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .table
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for key in &self.keys {
            if let Some(n) = counts.get_mut(key) {
                *n -= 1;
                if *n <= 0 {
                    counts.remove(key);
                }
            }
        }
    }
}

impl Identity {
    /// The login `token` stands for, when it is still good.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Login>, DbError> {
        let Some(claims) = self.jwt.verify(token) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT l.revoked_at, l.expires_at, l.csrf_token, u.id, u.name, u.roles, u.disabled \
             FROM logins l JOIN users u ON u.id = l.user_id WHERE l.id = $1",
        )
        .bind(&claims.jti)
        .fetch_optional(self.db.pool())
        .await
        .map_err(|e| DbError::new("check login", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e| DbError::new("read login", e);
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
        Ok(Some(Login {
            user: self.resolve(user),
            id: claims.jti,
            csrf_token,
        }))
    }

    /// How many failed sign-ins were recorded for this name and for this address in the
    /// window.
    async fn recent_failures(&self, name: &str, addr: &str) -> Result<(i64, i64), DbError> {
        let since = now_ms() - (self.auth.failed_login_window_seconds as i64) * 1000;
        let count = |sql: &'static str, value: String| async move {
            sqlx::query(sql)
                .bind(kind::LOGIN_FAILED)
                .bind(value)
                .bind(since)
                .fetch_one(self.db.pool())
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
        Ok((by_name, by_addr))
    }

    /// Signs `name` in with `password`: a `logins` row and `login` in the audit log, or a
    /// refusal (audited as `login.failed` with why).
    pub async fn sign_in(
        &self,
        name: &str,
        password: String,
        client: &Client,
    ) -> Result<SignedIn, SignInError> {
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 64 || password.len() > users::MAX_PASSWORD {
            return Err(SignInError::InvalidCredentials);
        }
        let max = i64::from(self.auth.max_failed_logins);
        let rate_limited = || SignInError::RateLimited {
            window_seconds: self.auth.failed_login_window_seconds,
        };
        // Attempts still being checked count with the recorded failures: without them,
        // parallel attempts would all read the same count and all pass.
        let (by_name, by_addr) = self.recent_failures(&name, &client.addr).await?;
        let mut keys = vec![(format!("user:{name}"), by_name)];
        if !client.addr.is_empty() {
            keys.push((format!("addr:{}", client.addr), by_addr));
        }
        let Some(_attempt) = self.attempts.begin(keys, max) else {
            return Err(rate_limited());
        };
        // Argon2id takes 19 MiB for each check: a burst is refused, not queued.
        let Ok(_permit) = self.hashing.try_acquire() else {
            return Err(SignInError::Busy);
        };
        let found = users::find(&self.db, &name).await?;
        // Always run one hash check, so an unknown name takes as long as a wrong password.
        let (hash, user) = match found {
            Some((user, hash)) => (hash, Some(user)),
            None => (self.dummy_hash.clone(), None),
        };
        let matches = tokio::task::spawn_blocking(move || users::verify_password(&hash, &password))
            .await
            .map_err(|e| SignInError::Internal(e.to_string()))?;
        let user = match user {
            Some(user) if matches && !user.disabled => user,
            other => {
                let why = match other {
                    None => "unknown user",
                    Some(u) if u.disabled => "user disabled",
                    Some(_) => "wrong password",
                };
                let mut tx = self.db.begin_write().await?;
                audit::append(
                    &mut tx.tx,
                    &Event::new(kind::LOGIN_FAILED, &name, client).detail(json!({"why": why})),
                )
                .await?;
                tx.commit().await?;
                return Err(SignInError::InvalidCredentials);
            }
        };
        let login_id = uuid::Uuid::new_v4().to_string();
        let csrf_token = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let ttl_ms = (self.auth.login_ttl_seconds as i64).saturating_mul(1000);
        let mut tx = self.db.begin_write().await?;
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
            &Event::new(kind::LOGIN, &user.name, client).detail(json!({"login_id": login_id})),
        )
        .await?;
        tx.commit().await?;

        let iat = u64::try_from(now / 1000).unwrap_or(0);
        let claims = Claims {
            iss: ISSUER.into(),
            aud: self.origin.clone(),
            sub: user.id.to_string(),
            jti: login_id,
            iat,
            exp: iat + self.auth.login_ttl_seconds,
        };
        let token = self.jwt.sign(&claims).map_err(SignInError::Internal)?;
        Ok(SignedIn {
            user,
            token,
            csrf_token,
        })
    }

    /// Revokes `login` (its token is refused from now on) and audits `logout`.
    pub async fn sign_out(&self, login: &Login, client: &Client) -> Result<(), DbError> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE logins SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(&login.id)
            .execute(&mut *tx.tx)
            .await
            .map_err(|e| DbError::new("revoke login", e))?;
        audit::append(
            &mut tx.tx,
            &Event::new(kind::LOGOUT, &login.user.name, client)
                .detail(json!({"login_id": login.id})),
        )
        .await?;
        tx.commit().await
    }
}
