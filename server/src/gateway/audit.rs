//! The audit log: append-only rows in `audit_events`, each carrying the SHA-256 of its own
//! canonical content and of the row before it, so an edited or deleted row breaks the chain.
//!
//! Events are appended inside the caller's write transaction ([`Db::begin_write`]), either in
//! the same transaction as the change they describe or committed before the action happens:
//! if the audit write fails, the action does not happen.
//!
//! [`Db::begin_write`]: super::db::Db::begin_write

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use super::db::{DbError, now_ms};

/// The hash that the first row chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Event types, as stored.
pub mod kind {
    /// A successful sign-in.
    pub const LOGIN: &str = "login";
    /// A refused sign-in (unknown user, wrong password, disabled user).
    pub const LOGIN_FAILED: &str = "login.failed";
    /// A sign-out.
    pub const LOGOUT: &str = "logout";
    /// A session start, with its reason (written before StartSession is called).
    pub const SESSION_START: &str = "session.start";
    /// A session start that policy refused.
    pub const SESSION_DENIED: &str = "session.denied";
    /// A browser attached to a session.
    pub const SESSION_ATTACH: &str = "session.attach";
    /// A browser detached from a session.
    pub const SESSION_DETACH: &str = "session.detach";
    /// A person asked for a session to be terminated (written before TerminateSession).
    pub const SESSION_TERMINATE: &str = "session.terminate";
    /// A session ended; the detail says how.
    pub const SESSION_END: &str = "session.end";
}

/// Who did it from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    /// The peer address (IP only).
    pub addr: String,
    /// The `User-Agent` header, cut to 512 characters.
    pub user_agent: String,
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// One of [`kind`].
    pub kind: &'static str,
    /// The user name (or the name tried, for failed sign-ins; `porthole` for the gateway).
    pub actor: &'a str,
    /// The node.
    pub target: Option<&'a str>,
    /// Porthole's session id.
    pub session_id: Option<&'a str>,
    /// The reason given.
    pub reason: Option<&'a str>,
    /// More, as a JSON object.
    pub detail: serde_json::Value,
    /// Where from.
    pub client: &'a Client,
}

impl<'a> Event<'a> {
    /// An event with no target, session, reason or detail.
    pub fn new(kind: &'static str, actor: &'a str, client: &'a Client) -> Self {
        Self {
            kind,
            actor,
            target: None,
            session_id: None,
            reason: None,
            detail: serde_json::Value::Object(serde_json::Map::new()),
            client,
        }
    }

    /// Sets the session and its target.
    pub fn session(mut self, session_id: &'a str, target: &'a str) -> Self {
        self.session_id = Some(session_id);
        self.target = Some(target);
        self
    }

    /// Sets the reason.
    pub fn reason(mut self, reason: &'a str) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Sets the detail.
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The fields that are hashed, in a fixed order.
#[derive(Serialize)]
struct Canonical<'a> {
    at: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    actor: &'a str,
    target: Option<&'a str>,
    session_id: Option<&'a str>,
    reason: Option<&'a str>,
    detail: &'a str,
    client_addr: &'a str,
    user_agent: &'a str,
}

/// The hash of a row: SHA-256 over the previous hash, a newline and the canonical JSON.
fn row_hash(prev: &str, canonical: &Canonical<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    // Serialising a struct of strings and integers cannot fail.
    hasher.update(serde_json::to_vec(canonical).unwrap_or_default());
    hex::encode(hasher.finalize())
}

/// Appends `event` in the transaction `conn` belongs to; returns the new row's id.
pub async fn append(conn: &mut AnyConnection, event: &Event<'_>) -> Result<i64, DbError> {
    let prev: String = sqlx::query("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| DbError::new("read audit chain", e))?
        .map(|row| row.try_get::<String, _>("hash"))
        .transpose()
        .map_err(|e| DbError::new("read audit chain", e))?
        .unwrap_or_else(|| GENESIS.to_owned());
    let detail = event.detail.to_string();
    let canonical = Canonical {
        at: now_ms(),
        kind: event.kind,
        actor: event.actor,
        target: event.target,
        session_id: event.session_id,
        reason: event.reason,
        detail: &detail,
        client_addr: &event.client.addr,
        user_agent: &event.client.user_agent,
    };
    let hash = row_hash(&prev, &canonical);
    let row = sqlx::query(
        "INSERT INTO audit_events (at, type, actor, target, session_id, reason, detail, \
         client_addr, user_agent, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(canonical.at)
    .bind(canonical.kind)
    .bind(canonical.actor)
    .bind(canonical.target)
    .bind(canonical.session_id)
    .bind(canonical.reason)
    .bind(&detail)
    .bind(canonical.client_addr)
    .bind(canonical.user_agent)
    .bind(&prev)
    .bind(&hash)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| DbError::new("append audit event", e))?;
    row.try_get::<i64, _>("id")
        .map_err(|e| DbError::new("append audit event", e))
}

/// A stored event, as the API and tests read it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// Milliseconds since the epoch.
    pub at: i64,
    /// The type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Who.
    pub actor: String,
    /// The node.
    pub target: Option<String>,
    /// The session.
    pub session_id: Option<String>,
    /// The reason.
    pub reason: Option<String>,
    /// The detail (JSON).
    pub detail: serde_json::Value,
    /// The client address.
    pub client_addr: String,
    /// The user agent.
    pub user_agent: String,
}

/// Events in order of id, optionally only those of one session.
pub async fn list(
    db: &super::db::Db,
    session_id: Option<&str>,
) -> Result<Vec<StoredEvent>, DbError> {
    let sql = "SELECT id, at, type, actor, target, session_id, reason, detail, client_addr, \
               user_agent FROM audit_events WHERE ($1 = '' OR session_id = $1) ORDER BY id";
    let rows = sqlx::query(sql)
        .bind(session_id.unwrap_or(""))
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("list audit events", e))?;
    rows.iter()
        .map(|row| {
            let detail: String = row.try_get("detail")?;
            Ok(StoredEvent {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                kind: row.try_get("type")?,
                actor: row.try_get("actor")?,
                target: row.try_get("target")?,
                session_id: row.try_get("session_id")?,
                reason: row.try_get("reason")?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                client_addr: row.try_get("client_addr")?,
                user_agent: row.try_get("user_agent")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| DbError::new("list audit events", e))
}

/// Checks the chain from the first row: every row's `prev_hash` is the previous row's hash and
/// its `hash` matches its content. Returns the id of the first row that does not.
pub async fn verify(db: &super::db::Db) -> Result<Result<u64, i64>, DbError> {
    let rows = sqlx::query(
        "SELECT id, at, type, actor, target, session_id, reason, detail, client_addr, \
         user_agent, prev_hash, hash FROM audit_events ORDER BY id",
    )
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("verify audit chain", e))?;
    let mut prev = GENESIS.to_owned();
    let mut count = 0u64;
    for row in &rows {
        let get = |name: &str| -> Result<Option<String>, DbError> {
            row.try_get::<Option<String>, _>(name)
                .map_err(|e| DbError::new("verify audit chain", e))
        };
        let id: i64 = row
            .try_get("id")
            .map_err(|e| DbError::new("verify audit chain", e))?;
        let at: i64 = row
            .try_get("at")
            .map_err(|e| DbError::new("verify audit chain", e))?;
        let (kind, actor, detail) = (get("type")?, get("actor")?, get("detail")?);
        let (addr, agent) = (get("client_addr")?, get("user_agent")?);
        let (target, session_id, reason) = (get("target")?, get("session_id")?, get("reason")?);
        let canonical = Canonical {
            at,
            kind: kind.as_deref().unwrap_or(""),
            actor: actor.as_deref().unwrap_or(""),
            target: target.as_deref(),
            session_id: session_id.as_deref(),
            reason: reason.as_deref(),
            detail: detail.as_deref().unwrap_or(""),
            client_addr: addr.as_deref().unwrap_or(""),
            user_agent: agent.as_deref().unwrap_or(""),
        };
        let stored_prev = get("prev_hash")?.unwrap_or_default();
        let stored_hash = get("hash")?.unwrap_or_default();
        if stored_prev != prev || row_hash(&prev, &canonical) != stored_hash {
            return Ok(Err(id));
        }
        prev = stored_hash;
        count += 1;
    }
    Ok(Ok(count))
}
