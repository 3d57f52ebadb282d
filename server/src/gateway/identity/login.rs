//! Sign-in and sign-out: the password check (argon2id, on the blocking pool, the same work for
//! an unknown name), the failed-sign-in limits (one user at one address, locked out with
//! backoff; one address across names), the `logins` row that a token names, and the
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
use crate::gateway::telemetry::{self, SignInMethod};

/// `login.failed` rows of single sign-on (their detail's `method`), which the password limits
/// do not count: a provider that is down must not lock the break-glass password out.
const SSO_OIDC: &str = "%\"method\":\"oidc\"%";
const SSO_PROXY: &str = "%\"method\":\"proxy\"%";

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
    /// Too many failures for this name from this address (locked out, with backoff), or
    /// from this address for any names, within the window.
    #[error(
        "too many failed sign-ins {scope}; try again in {}",
        seconds_text(*retry_after_seconds)
    )]
    RateLimited {
        /// `for this user from this address` or `from this address`.
        scope: &'static str,
        /// When another attempt may be made.
        retry_after_seconds: u64,
    },
    /// Password sign-in is off (`auth.local = false`) and the name is not a break-glass one.
    #[error("sign-in with a password is turned off here; use {0}")]
    LocalDisabled(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Anything else (a hashing task that died, a token that could not be signed).
    #[error("{0}")]
    Internal(String),
}

/// Sign-in attempts being checked, by key (`pair:NAME ADDRESS`, `addr:ADDRESS`).
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
    /// Counts an attempt under `keys` when, for each key, its recorded failures and the
    /// attempts of it still being checked stay under its limit: `(key, recorded, max)`;
    /// `Err` with the index of the first key that would not (nothing is counted then).
    fn begin(&self, keys: Vec<(String, i64, i64)>) -> Result<Attempt<'_>, usize> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(full) = keys.iter().position(|(key, recorded, max)| {
            recorded + counts.get(key).copied().unwrap_or(0) >= *max
        }) {
            return Err(full);
        }
        for (key, ..) in &keys {
            *counts.entry(key.clone()).or_default() += 1;
        }
        Ok(Attempt {
            table: self,
            keys: keys.into_iter().map(|(k, ..)| k).collect(),
        })
    }
}

/// The failures recorded in the window that the limits count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Failures {
    /// Of this name from this address.
    pair: i64,
    /// When the latest of them was, in milliseconds since the epoch.
    pair_latest: i64,
    /// From this address, whatever the name.
    addr: i64,
    /// When the oldest of those was.
    addr_oldest: i64,
}

/// How long a user stays locked out at an address after `failures` there, `max` being the
/// limit: `first` for the first lockout, doubled for each failure beyond it, at most `cap`.
fn lockout(failures: i64, max: i64, first: u64, cap: u64) -> u64 {
    let beyond = u32::try_from(failures.saturating_sub(max).max(0))
        .unwrap_or(u32::MAX)
        .min(32);
    first.saturating_mul(1u64 << beyond).min(cap)
}

/// `1 second`, `30 seconds`.
fn seconds_text(n: u64) -> String {
    if n == 1 {
        "1 second".into()
    } else {
        format!("{n} seconds")
    }
}

/// Whole seconds from `now` to `until` (milliseconds), at least 1.
fn seconds_until(until: i64, now: i64) -> u64 {
    u64::try_from((until - now + 999) / 1000)
        .unwrap_or(0)
        .max(1)
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

    /// The failed sign-ins recorded in the window for this name from this address, and
    /// from this address for any name.
    async fn recent_failures(&self, name: &str, addr: &str) -> Result<Failures, DbError> {
        let since = now_ms() - (self.auth.failed_login_window_seconds as i64) * 1000;
        let read = |e| DbError::new("count failed sign-ins", e);
        let pair = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MAX(at), 0) AS latest FROM audit_events \
             WHERE type = $1 AND actor = $2 AND client_addr = $3 AND at > $4 \
             AND detail NOT LIKE $5 AND detail NOT LIKE $6",
        )
        .bind(kind::LOGIN_FAILED)
        .bind(name)
        .bind(addr)
        .bind(since)
        .bind(SSO_OIDC)
        .bind(SSO_PROXY)
        .fetch_one(self.db.pool())
        .await
        .map_err(read)?;
        let by_addr = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(MIN(at), 0) AS oldest FROM audit_events \
             WHERE type = $1 AND client_addr = $2 AND at > $3 \
             AND detail NOT LIKE $4 AND detail NOT LIKE $5",
        )
        .bind(kind::LOGIN_FAILED)
        .bind(addr)
        .bind(since)
        .bind(SSO_OIDC)
        .bind(SSO_PROXY)
        .fetch_one(self.db.pool())
        .await
        .map_err(read)?;
        Ok(Failures {
            pair: pair.try_get("n").map_err(read)?,
            pair_latest: pair.try_get("latest").map_err(read)?,
            addr: by_addr.try_get("n").map_err(read)?,
            addr_oldest: by_addr.try_get("oldest").map_err(read)?,
        })
    }

    /// Signs `name` in with `password`: a `logins` row and `login` in the audit log, or a
    /// refusal (audited as `login.failed` with why). Counted either way
    /// ([`telemetry::sign_in`]).
    pub async fn sign_in(
        &self,
        name: &str,
        password: String,
        client: &Client,
    ) -> Result<SignedIn, SignInError> {
        let result = self.sign_in_password(name, password, client).await;
        telemetry::sign_in(SignInMethod::Password, result.is_ok());
        result
    }

    async fn sign_in_password(
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
        let max_addr = i64::from(self.auth.max_failed_logins_per_address);
        let window = self.auth.failed_login_window_seconds;
        let now = now_ms();
        let failures = self.recent_failures(&name, &client.addr).await?;
        // One user at one address: locked out after `max` failures, for longer at each
        // further failure. Another address is not locked out with it, so nobody can keep a
        // person out by failing in their name.
        let mut pair_recorded = failures.pair;
        if failures.pair >= max {
            let locked = lockout(failures.pair, max, self.auth.lockout_seconds, window);
            let until = failures.pair_latest + i64::try_from(locked * 1000).unwrap_or(i64::MAX);
            if now < until {
                return Err(SignInError::RateLimited {
                    scope: "for this user from this address",
                    retry_after_seconds: seconds_until(until, now),
                });
            }
            // The lockout is over: one attempt at a time until the next failure.
            pair_recorded = max - 1;
        }
        // One address, whatever the names (guessing across many accounts).
        let addr_limited = || SignInError::RateLimited {
            scope: "from this address",
            retry_after_seconds: seconds_until(
                failures.addr_oldest + i64::try_from(window * 1000).unwrap_or(i64::MAX),
                now,
            ),
        };
        if failures.addr >= max_addr {
            return Err(addr_limited());
        }
        // Password sign-in turned off: refused after the limits above, so that the refusal
        // (which tells break-glass names apart) cannot be asked without bound.
        if !self.auth.local && !self.auth.local_break_glass.contains(&name) {
            let mut tx = self.db.begin_write().await?;
            audit::append(
                &mut tx.tx,
                &Event::new(kind::LOGIN_FAILED, &name, client)
                    .detail(json!({"method": "password", "why": "password sign-in turned off"})),
            )
            .await?;
            tx.commit().await?;
            let other = match &self.auth.oidc {
                Some(oidc) => format!("\"Sign in with {}\"", oidc.display_name),
                None => "the company sign-in in front of this gateway".to_owned(),
            };
            return Err(SignInError::LocalDisabled(other));
        }
        // Attempts still being checked count with the recorded failures: without them,
        // parallel attempts would all read the same count and all pass.
        let keys = vec![
            (format!("pair:{name} {}", client.addr), pair_recorded, max),
            (format!("addr:{}", client.addr), failures.addr, max_addr),
        ];
        let _attempt = match self.attempts.begin(keys) {
            Ok(attempt) => attempt,
            // The pair's last attempts before its lockout are being checked.
            Err(0) => {
                return Err(SignInError::RateLimited {
                    scope: "for this user from this address",
                    retry_after_seconds: self.auth.lockout_seconds,
                });
            }
            Err(_) => return Err(addr_limited()),
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
        self.issue_login(user, "password", json!({"method": "password"}), client)
            .await
    }

    /// Records a new login of `user` (a `logins` row and `login` in the audit log, with
    /// `detail` and the login id) and signs its token.
    pub(super) async fn issue_login(
        &self,
        user: User,
        method: &str,
        mut detail: serde_json::Value,
        client: &Client,
    ) -> Result<SignedIn, SignInError> {
        let login_id = uuid::Uuid::new_v4().to_string();
        let csrf_token = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let ttl_ms = (self.auth.login_ttl_seconds as i64).saturating_mul(1000);
        if let Some(map) = detail.as_object_mut() {
            map.insert("login_id".into(), json!(login_id));
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO logins (id, user_id, created_at, expires_at, client_addr, user_agent, csrf_token, method) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&login_id)
        .bind(user.id)
        .bind(now)
        .bind(now + ttl_ms)
        .bind(&client.addr)
        .bind(&client.user_agent)
        .bind(&csrf_token)
        .bind(method)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("record login", e))?;
        audit::append(
            &mut tx.tx,
            &Event::new(kind::LOGIN, &user.name, client).detail(detail),
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
            user: self.resolve(user),
            token,
            csrf_token,
        })
    }

    /// Revokes `login` (its token is refused from now on) and audits `logout`; how the login
    /// was made (`password`, `oidc`, `proxy`).
    pub async fn sign_out(&self, login: &Login, client: &Client) -> Result<String, DbError> {
        let mut tx = self.db.begin_write().await?;
        let method: Option<String> = sqlx::query_scalar("SELECT method FROM logins WHERE id = $1")
            .bind(&login.id)
            .fetch_optional(&mut *tx.tx)
            .await
            .map_err(|e| DbError::new("read login", e))?;
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
        tx.commit().await?;
        Ok(method.unwrap_or_else(|| "password".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_up_to_the_window() {
        let at = |failures| lockout(failures, 5, 30, 300);
        assert_eq!(
            [at(5), at(6), at(7), at(8), at(9), at(40)],
            [30, 60, 120, 240, 300, 300]
        );
        assert_eq!(lockout(i64::MAX, 5, 30, 300), 300);
    }

    #[test]
    fn waits_are_whole_seconds_rounded_up() {
        assert_eq!(seconds_until(10_001, 0), 11);
        assert_eq!(seconds_until(10_000, 0), 10);
        assert_eq!(seconds_until(0, 5), 1);
    }

    #[test]
    fn attempts_count_against_each_key_until_dropped() {
        let table = InFlight::default();
        let a = table.begin(vec![("k".into(), 1, 3)]).unwrap();
        let b = table.begin(vec![("k".into(), 1, 3)]).unwrap();
        assert_eq!(table.begin(vec![("k".into(), 1, 3)]).err(), Some(0));
        assert_eq!(
            table
                .begin(vec![("other".into(), 0, 1), ("k".into(), 1, 3)])
                .err(),
            Some(1)
        );
        assert!(
            table.begin(vec![("other".into(), 0, 1)]).is_ok(),
            "nothing was counted"
        );
        drop((a, b));
        assert!(table.begin(vec![("k".into(), 2, 3)]).is_ok());
    }
}
