//! The `sessions` table: a row per session (who, which node, why, with which document, its
//! state and times), as the API shows it, and the writes of a session's start.

use serde::Serialize;
use sqlx::Row;

use super::db::{Backend, Db, DbError, WriteTx, now_ms};

/// A session row as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SessionView {
    /// Porthole's id.
    pub id: String,
    /// The node.
    pub target: String,
    /// Its region.
    pub region: String,
    /// The reason given.
    pub reason: String,
    /// The SSM document.
    pub document: String,
    /// Who opened it.
    pub user: String,
    /// starting, active, ended, failed.
    pub state: String,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// How it ended.
    pub end_reason: Option<String>,
    /// Where the browser attaches.
    pub attach_url: String,
    /// Whether its terminal may copy and paste (the policy's `clipboard`, decided at the
    /// start).
    pub clipboard: bool,
    /// Which way files may move through it: `none`, `download`, `upload` or `both` (the
    /// policy's `file_transfer`, decided at the start).
    pub file_transfer: String,
    #[serde(skip)]
    user_id: i64,
}

/// A session query: the view's columns, then `$rest` (a literal, so the SQL stays static).
macro_rules! select_sessions {
    ($rest:literal) => {
        concat!(
            "SELECT s.id, s.target, s.region, s.reason, s.document, s.state, s.started_at, ",
            "s.ended_at, s.end_reason, s.user_id, s.clipboard, s.file_transfer, u.name ",
            "FROM sessions s ",
            "JOIN users u ON u.id = s.user_id ",
            $rest
        )
    };
}
pub(super) use select_sessions;

/// The [`SessionView`] of a row selected by `select_sessions!`.
pub(super) fn view_of(row: &sqlx::any::AnyRow) -> Result<SessionView, sqlx::Error> {
    let id: String = row.try_get("id")?;
    Ok(SessionView {
        attach_url: format!("/api/v1/sessions/{id}/attach"),
        id,
        target: row.try_get("target")?,
        region: row.try_get("region")?,
        reason: row.try_get("reason")?,
        document: row.try_get("document")?,
        user: row.try_get("name")?,
        state: row.try_get("state")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        end_reason: row.try_get("end_reason")?,
        user_id: row.try_get("user_id")?,
        clipboard: row.try_get::<i64, _>("clipboard")? != 0,
        file_transfer: row.try_get("file_transfer")?,
    })
}

/// One session row by id.
pub async fn load(db: &Db, id: &str) -> Result<Option<SessionView>, DbError> {
    let row = sqlx::query(select_sessions!("WHERE s.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("load session", e))?;
    row.map(|r| view_of(&r))
        .transpose()
        .map_err(|e| DbError::new("read session", e))
}

impl SessionView {
    /// The owner's user id.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// Whether the session is starting or active.
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "starting" | "active")
    }
}

/// Which sessions a listing shows, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Starting or active.
    Active,
    /// Ended or failed.
    Ended,
    /// All of them.
    All,
}

impl StateFilter {
    /// `active`, `ended` or `all`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "ended" => Some(Self::Ended),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// The sessions of `user_id` (of everyone when `everyone`) in `filter`, newest first (at most
/// 500).
pub async fn visible(
    db: &Db,
    user_id: i64,
    everyone: bool,
    filter: StateFilter,
) -> Result<Vec<SessionView>, DbError> {
    let states: &[&str] = match filter {
        StateFilter::Active => &["starting", "active"],
        StateFilter::Ended => &["ended", "failed"],
        StateFilter::All => &["starting", "active", "ended", "failed"],
    };
    let sql = select_sessions!(
        "WHERE ($1 = 1 OR s.user_id = $2) AND s.state IN ($3, $4, $5, $6) \
         ORDER BY s.started_at DESC, s.id LIMIT 500"
    );
    let pick = |i: usize| states.get(i).or(states.last()).copied().unwrap_or("");
    let rows = sqlx::query(sql)
        .bind(i64::from(everyone))
        .bind(user_id)
        .bind(pick(0))
        .bind(pick(1))
        .bind(pick(2))
        .bind(pick(3))
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("list sessions", e))?;
    rows.iter()
        .map(view_of)
        .collect::<Result<_, _>>()
        .map_err(|e| DbError::new("read session", e))
}

/// What a new session's row holds.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// Porthole's id.
    pub id: &'a str,
    /// The owner.
    pub user_id: i64,
    /// The node.
    pub target: &'a str,
    /// Its region.
    pub region: &'a str,
    /// The name of its account (empty: the gateway's own).
    pub account: &'a str,
    /// The SSM document.
    pub document: &'a str,
    /// The reason given.
    pub reason: &'a str,
    /// The gateway that owns it.
    pub gateway_id: &'a str,
    /// The access request whose grant it starts under.
    pub request_id: Option<&'a str>,
    /// Whether its terminal may copy and paste.
    pub clipboard: bool,
    /// Which way files may move through it (`none`, `download`, `upload`, `both`).
    pub file_transfer: &'a str,
}

/// How many sessions `user_id` has starting or active (in the write transaction, so that the
/// cap cannot be raced).
pub async fn count_live(tx: &mut WriteTx, user_id: i64) -> Result<i64, DbError> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM sessions WHERE user_id = $1 AND state IN ('starting', 'active')",
    )
    .bind(user_id)
    .fetch_one(&mut *tx.tx)
    .await
    .and_then(|r| r.try_get("n"))
    .map_err(|e| DbError::new("count sessions", e))
}

/// Inserts a `starting` row unless `new.user_id` already has `cap` sessions starting or
/// active (counted in the same statement, in the write transaction, so that the cap cannot be
/// raced); whether it was inserted.
pub async fn insert_starting(
    tx: &mut WriteTx,
    new: &NewSession<'_>,
    cap: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO sessions (id, user_id, target, region, document, reason, state, started_at, \
         owner_gateway, heartbeat_at, account, request_id, clipboard, file_transfer) \
         SELECT $1, $2, $3, $4, $5, $6, 'starting', $7, $8, $7, $9, $10, $12, $13 \
         WHERE (SELECT COUNT(*) FROM sessions \
                WHERE user_id = $2 AND state IN ('starting', 'active')) < $11",
    )
    .bind(new.id)
    .bind(new.user_id)
    .bind(new.target)
    .bind(new.region)
    .bind(new.document)
    .bind(new.reason)
    .bind(now_ms())
    .bind(new.gateway_id)
    .bind(new.account)
    .bind(new.request_id)
    .bind(cap)
    .bind(i64::from(new.clipboard))
    .bind(new.file_transfer)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("insert session", e))?;
    Ok(done.rows_affected() == 1)
}

/// The sessions started under access request `request_id` that are starting or active.
pub async fn live_under_request(db: &Db, request_id: &str) -> Result<Vec<SessionView>, DbError> {
    let rows = sqlx::query(select_sessions!(
        "WHERE s.request_id = $1 AND s.state IN ('starting', 'active') ORDER BY s.started_at"
    ))
    .bind(request_id)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("list a grant's sessions", e))?;
    rows.iter()
        .map(view_of)
        .collect::<Result<_, _>>()
        .map_err(|e| DbError::new("read session", e))
}

/// Marks a started session `active` with its SSM session id.
pub async fn activate(db: &Db, id: &str, ssm_session_id: &str) -> Result<(), DbError> {
    // Behind this process's other writers on SQLite: an autocommit write beside an open write
    // transaction would wait on the database's lock, and fail after its busy timeout.
    let _writing = db.lock_single_writer().await;
    sqlx::query("UPDATE sessions SET ssm_session_id = $1, state = 'active' WHERE id = $2")
        .bind(ssm_session_id)
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(|e| DbError::new("activate session", e))?;
    Ok(())
}

/// Marks a session `failed` (it never started), with why.
pub async fn mark_failed(tx: &mut WriteTx, id: &str, message: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE sessions SET state = 'failed', ended_at = $1, end_reason = $2 WHERE id = $3",
    )
    .bind(now_ms())
    .bind(message)
    .bind(id)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("fail session", e))?;
    Ok(())
}

/// How a session that ran ended, for its row.
#[derive(Debug, Clone, Copy)]
pub struct Ending<'a> {
    /// How it ended, in words.
    pub how: &'a str,
    /// Output bytes.
    pub bytes_out: u64,
    /// Input bytes.
    pub bytes_in: u64,
}

/// Marks a session `ended` with how and its byte counts.
pub async fn mark_ended(tx: &mut WriteTx, id: &str, ending: &Ending<'_>) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE sessions SET state = 'ended', ended_at = $1, end_reason = $2, \
         bytes_out = $3, bytes_in = $4 WHERE id = $5",
    )
    .bind(now_ms())
    .bind(ending.how)
    .bind(i64::try_from(ending.bytes_out).unwrap_or(i64::MAX))
    .bind(i64::try_from(ending.bytes_in).unwrap_or(i64::MAX))
    .bind(id)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("end session", e))?;
    Ok(())
}

/// A session recorded as live that no running gateway owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    /// Porthole's id.
    pub id: String,
    /// The node.
    pub target: String,
    /// Its region.
    pub region: String,
    /// The name of its account (empty: the gateway's own).
    pub account: String,
    /// The SSM session, once started.
    pub ssm_session_id: Option<String>,
    /// Its owner's name.
    pub user: String,
    /// The gateway that owned it.
    pub owner_gateway: String,
}

/// Sessions recorded as live whose owner has not marked them since `stale_before`
/// (milliseconds), and those owned by `gateway_id` when given; not those being handed over
/// (a hand-over written since `stale_before`).
pub async fn find_stale(
    db: &Db,
    gateway_id: Option<&str>,
    stale_before: i64,
) -> Result<Vec<Stale>, DbError> {
    let rows = sqlx::query(
        "SELECT s.id, s.target, s.region, s.account, s.ssm_session_id, s.owner_gateway, u.name \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.state IN ('starting', 'active') AND (s.owner_gateway = $1 OR s.heartbeat_at < $2) \
         AND NOT EXISTS (SELECT 1 FROM handovers h WHERE h.session_id = s.id AND h.created_at >= $2)",
    )
    // No gateway is named '' (server.gateway_id is checked), so '' matches by age alone.
    .bind(gateway_id.unwrap_or(""))
    .bind(stale_before)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("find stale sessions", e))?;
    let read = |e| DbError::new("read stale session", e);
    rows.iter()
        .map(|row| {
            Ok(Stale {
                id: row.try_get("id").map_err(read)?,
                target: row.try_get("target").map_err(read)?,
                region: row.try_get("region").map_err(read)?,
                account: row.try_get("account").map_err(read)?,
                ssm_session_id: row.try_get("ssm_session_id").map_err(read)?,
                user: row.try_get("name").map_err(read)?,
                owner_gateway: row.try_get("owner_gateway").map_err(read)?,
            })
        })
        .collect()
}

/// Makes stale session `id` gateway `me`'s, fresh, if it is still live and still stale (or
/// owned by `mine`, when given): false when another gateway claimed it first or its owner
/// marked it since.
pub async fn claim_stale(
    db: &Db,
    id: &str,
    me: &str,
    mine: Option<&str>,
    stale_before: i64,
) -> Result<bool, DbError> {
    let _writing = db.lock_writes().await;
    let claimed = sqlx::query(
        "UPDATE sessions SET owner_gateway = $1, heartbeat_at = $2 \
         WHERE id = $3 AND state IN ('starting', 'active') \
         AND (owner_gateway = $4 OR heartbeat_at < $5) \
         AND NOT EXISTS (SELECT 1 FROM handovers h WHERE h.session_id = $3 AND h.created_at >= $5)",
    )
    .bind(me)
    .bind(now_ms())
    .bind(id)
    .bind(mine.unwrap_or(""))
    .bind(stale_before)
    .execute(db.pool())
    .await
    .map_err(|e| DbError::new("claim stale session", e))?;
    Ok(claimed.rows_affected() == 1)
}

/// Marks a session left live by a stopped gateway `ended`, with how.
pub async fn mark_abandoned(tx: &mut WriteTx, id: &str, how: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE sessions SET state = 'ended', ended_at = $1, end_reason = $2 WHERE id = $3",
    )
    .bind(now_ms())
    .bind(how)
    .bind(id)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("end stale session", e))?;
    Ok(())
}

/// Sessions marked by one statement of [`touch_all`].
const TOUCH_AT_ONCE: usize = 1_000;

/// Marks the sessions `ids` as owned by the gateway that runs them, now (`heartbeat_at`): a
/// statement per [`TOUCH_AT_ONCE`] sessions, not one per session (each commit waits for the
/// disk, and a gateway may run thousands). The caller holds the write lock.
pub async fn touch_all(db: &Db, ids: &[String]) -> Result<(), DbError> {
    let sql = match db.backend() {
        Backend::Sqlite => {
            "UPDATE sessions SET heartbeat_at = $1 WHERE id IN (SELECT value FROM json_each($2))"
        }
        Backend::Postgres => {
            "UPDATE sessions SET heartbeat_at = $1 \
             WHERE id IN (SELECT jsonb_array_elements_text($2::jsonb))"
        }
    };
    let now = now_ms();
    for chunk in ids.chunks(TOUCH_AT_ONCE) {
        // Strings: encoding cannot fail.
        let list = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".to_owned());
        sqlx::query(sql)
            .bind(now)
            .bind(list)
            .execute(db.pool())
            .await
            .map_err(|e| DbError::new("heartbeat", e))?;
    }
    Ok(())
}

/// Marks a session as owned by the gateway that runs it, now (`heartbeat_at`). The caller
/// holds the write lock.
pub async fn touch(db: &Db, id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE sessions SET heartbeat_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(|e| DbError::new("heartbeat", e))?;
    Ok(())
}
