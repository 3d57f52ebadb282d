//! The `access_requests` and `access_decisions` tables: what people asked for, who approved
//! or denied it, and the grants approvals made. States only move forward, each move a
//! conditional UPDATE on the state it leaves, so that two gateways (or two clicks) cannot both
//! make it.

use serde::Serialize;
use sqlx::Row;

use super::db::{Db, DbError, WriteTx};

/// Waiting for approvers.
pub const PENDING: &str = "pending";
/// Enough approvals: a grant until `expires_at`.
pub const APPROVED: &str = "approved";
/// An approver said no.
pub const DENIED: &str = "denied";
/// Undecided in time, or the grant ran out.
pub const EXPIRED: &str = "expired";
/// Withdrawn by the requester or revoked by an approver.
pub const REVOKED: &str = "revoked";

/// One approval or denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Who.
    pub user: String,
    /// What they wrote.
    pub comment: String,
    /// When, milliseconds since the epoch.
    pub at: i64,
    /// Approved (else denied).
    #[serde(skip)]
    pub approve: bool,
    /// Their user id.
    #[serde(skip)]
    pub user_id: i64,
}

/// An access request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Its id.
    pub id: String,
    /// Who asked.
    pub user_id: i64,
    /// Their name.
    pub user: String,
    /// The node.
    pub target: String,
    /// Why.
    pub reason: String,
    /// How long a grant they asked for.
    pub duration_seconds: i64,
    /// Granted by the requester themselves under a break-glass role.
    pub break_glass: bool,
    /// The roles whose holders may decide it.
    pub approvers: Vec<String>,
    /// How many different people must approve.
    pub min_approvals: i64,
    /// [`PENDING`], [`APPROVED`], [`DENIED`], [`EXPIRED`] or [`REVOKED`].
    pub state: String,
    /// When it was asked.
    pub created_at: i64,
    /// When it was approved or denied.
    pub decided_at: Option<i64>,
    /// Pending: when it lapses; approved: when the grant ends.
    pub expires_at: i64,
    /// Who revoked it.
    pub ended_by: Option<String>,
    /// When it was revoked or expired.
    pub ended_at: Option<i64>,
    /// The approvals and denials, oldest first.
    pub verdicts: Vec<Verdict>,
}

impl Request {
    /// Whether it is a grant in force at `now`.
    pub fn grants_at(&self, now: i64) -> bool {
        self.state == APPROVED && self.expires_at > now
    }

    /// The state as of `now`: a pending request or a grant past its end reads `expired`
    /// before the sweep has written so.
    pub fn state_at(&self, now: i64) -> &str {
        if (self.state == PENDING || self.state == APPROVED) && self.expires_at <= now {
            EXPIRED
        } else {
            &self.state
        }
    }

    /// The approvals so far.
    pub fn approvals(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.approve)
    }

    /// The denials so far.
    pub fn denials(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.approve)
    }
}

/// A new request.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// Its id.
    pub id: &'a str,
    /// Who asks.
    pub user_id: i64,
    /// The node.
    pub target: &'a str,
    /// Why.
    pub reason: &'a str,
    /// How long a grant.
    pub duration_seconds: i64,
    /// Self-granted (created approved).
    pub break_glass: bool,
    /// Who may decide.
    pub approvers: &'a [String],
    /// How many must approve.
    pub min_approvals: i64,
    /// [`PENDING`], or [`APPROVED`] for break-glass.
    pub state: &'a str,
    /// Now.
    pub created_at: i64,
    /// When it lapses, or when the grant ends.
    pub expires_at: i64,
}

macro_rules! select_requests {
    ($rest:literal) => {
        concat!(
            "SELECT r.id, r.user_id, u.name, r.target, r.reason, r.duration_seconds, ",
            "r.break_glass, r.approvers, r.min_approvals, r.state, r.created_at, r.decided_at, ",
            "r.expires_at, r.ended_by, r.ended_at FROM access_requests r ",
            "JOIN users u ON u.id = r.user_id ",
            $rest
        )
    };
}

fn request_of(row: &sqlx::any::AnyRow) -> Result<Request, DbError> {
    let read = |e| DbError::new("read access request", e);
    let approvers: String = row.try_get("approvers").map_err(read)?;
    let break_glass: i64 = row.try_get("break_glass").map_err(read)?;
    Ok(Request {
        id: row.try_get("id").map_err(read)?,
        user_id: row.try_get("user_id").map_err(read)?,
        user: row.try_get("name").map_err(read)?,
        target: row.try_get("target").map_err(read)?,
        reason: row.try_get("reason").map_err(read)?,
        duration_seconds: row.try_get("duration_seconds").map_err(read)?,
        break_glass: break_glass != 0,
        // Written by `insert` from a list of names; anything else reads as nobody.
        approvers: serde_json::from_str(&approvers).unwrap_or_default(),
        min_approvals: row.try_get("min_approvals").map_err(read)?,
        state: row.try_get("state").map_err(read)?,
        created_at: row.try_get("created_at").map_err(read)?,
        decided_at: row.try_get("decided_at").map_err(read)?,
        expires_at: row.try_get("expires_at").map_err(read)?,
        ended_by: row.try_get("ended_by").map_err(read)?,
        ended_at: row.try_get("ended_at").map_err(read)?,
        verdicts: Vec::new(),
    })
}

fn verdict_of(row: &sqlx::any::AnyRow) -> Result<(String, Verdict), DbError> {
    let read = |e| DbError::new("read access decision", e);
    let approve: i64 = row.try_get("approve").map_err(read)?;
    Ok((
        row.try_get("request_id").map_err(read)?,
        Verdict {
            user: row.try_get("user_name").map_err(read)?,
            comment: row.try_get("comment").map_err(read)?,
            at: row.try_get("at").map_err(read)?,
            approve: approve != 0,
            user_id: row.try_get("user_id").map_err(read)?,
        },
    ))
}

/// Attaches their verdicts to `requests` (one query for all of them).
async fn with_verdicts<'e, E>(
    executor: E,
    mut requests: Vec<Request>,
) -> Result<Vec<Request>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    if requests.is_empty() {
        return Ok(requests);
    }
    let (sql, ids) = if let [one] = requests.as_slice() {
        (
            concat!(
                "SELECT request_id, user_id, user_name, approve, comment, at FROM access_decisions ",
                "WHERE request_id = $1 ORDER BY at, user_name"
            ),
            Some(one.id.clone()),
        )
    } else {
        // The requests listed are the newest few hundred: their verdicts are fewer still.
        (
            concat!(
                "SELECT request_id, user_id, user_name, approve, comment, at FROM access_decisions ",
                "WHERE request_id IN (SELECT id FROM access_requests WHERE created_at >= $1) ",
                "ORDER BY at, user_name"
            ),
            None,
        )
    };
    let query = match &ids {
        Some(id) => sqlx::query(sql).bind(id.clone()),
        None => sqlx::query(sql).bind(requests.iter().map(|r| r.created_at).min().unwrap_or(0)),
    };
    let rows = query
        .fetch_all(executor)
        .await
        .map_err(|e| DbError::new("read access decisions", e))?;
    for row in &rows {
        let (id, verdict) = verdict_of(row)?;
        if let Some(r) = requests.iter_mut().find(|r| r.id == id) {
            r.verdicts.push(verdict);
        }
    }
    Ok(requests)
}

/// Records a new request (and nothing else: the caller audits it in the same transaction).
pub async fn insert(tx: &mut WriteTx, new: &NewRequest<'_>) -> Result<(), DbError> {
    let approvers = serde_json::to_string(new.approvers).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO access_requests (id, user_id, target, reason, duration_seconds, \
         break_glass, approvers, min_approvals, state, created_at, decided_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(new.id)
    .bind(new.user_id)
    .bind(new.target)
    .bind(new.reason)
    .bind(new.duration_seconds)
    .bind(i64::from(new.break_glass))
    .bind(approvers)
    .bind(new.min_approvals)
    .bind(new.state)
    .bind(new.created_at)
    .bind((new.state == APPROVED).then_some(new.created_at))
    .bind(new.expires_at)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("insert access request", e))?;
    Ok(())
}

/// One request by id, with its verdicts.
pub async fn load(db: &Db, id: &str) -> Result<Option<Request>, DbError> {
    let row = sqlx::query(select_requests!("WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("load access request", e))?;
    let Some(row) = row else { return Ok(None) };
    Ok(with_verdicts(db.pool(), vec![request_of(&row)?])
        .await?
        .pop())
}

/// One request by id, with its verdicts, read in `tx` (to decide on it there).
pub async fn load_in(tx: &mut WriteTx, id: &str) -> Result<Option<Request>, DbError> {
    let row = sqlx::query(select_requests!("WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("load access request", e))?;
    let Some(row) = row else { return Ok(None) };
    Ok(with_verdicts(&mut *tx.tx, vec![request_of(&row)?])
        .await?
        .pop())
}

/// The newest requests (at most 500), with their verdicts; `pending_only`: only those
/// pending. Who may see which is the caller's to filter.
pub async fn recent(db: &Db, pending_only: bool) -> Result<Vec<Request>, DbError> {
    let rows = sqlx::query(select_requests!(
        "WHERE ($1 = 0 OR r.state = 'pending') ORDER BY r.created_at DESC, r.id LIMIT 500"
    ))
    .bind(i64::from(pending_only))
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("list access requests", e))?;
    let requests = rows.iter().map(request_of).collect::<Result<Vec<_>, _>>()?;
    with_verdicts(db.pool(), requests).await
}

/// The requests of `user_id` for `target` that are pending or approved, newest first, read
/// in `tx` (to decide a new request there) or anywhere.
pub async fn open_for<'e, E>(
    executor: E,
    user_id: i64,
    target: &str,
) -> Result<Vec<Request>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(select_requests!(
        "WHERE r.user_id = $1 AND r.target = $2 AND r.state IN ('pending', 'approved') \
         ORDER BY r.created_at DESC, r.id"
    ))
    .bind(user_id)
    .bind(target)
    .fetch_all(executor)
    .await
    .map_err(|e| DbError::new("find open access requests", e))?;
    rows.iter().map(request_of).collect()
}

/// The requests of `user_id` that are pending or approved (any node), newest first.
pub async fn open_of(db: &Db, user_id: i64) -> Result<Vec<Request>, DbError> {
    let rows = sqlx::query(select_requests!(
        "WHERE r.user_id = $1 AND r.state IN ('pending', 'approved') \
         ORDER BY r.created_at DESC, r.id"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("find open access requests", e))?;
    rows.iter().map(request_of).collect()
}

/// How many requests `user_id` has pending (in `tx`, so that the cap cannot be raced).
pub async fn count_pending(tx: &mut WriteTx, user_id: i64) -> Result<i64, DbError> {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM access_requests WHERE user_id = $1 AND state = 'pending'",
    )
    .bind(user_id)
    .fetch_one(&mut *tx.tx)
    .await
    .and_then(|row| row.try_get::<i64, _>("n"))
    .map_err(|e| DbError::new("count pending access requests", e))
}

/// Records `user`'s approval or denial of `request_id`; false when they already decided it.
pub async fn add_verdict(
    tx: &mut WriteTx,
    request_id: &str,
    user_id: i64,
    user: &str,
    approve: bool,
    comment: &str,
    at: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO access_decisions (request_id, user_id, user_name, approve, comment, at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (request_id, user_id) DO NOTHING",
    )
    .bind(request_id)
    .bind(user_id)
    .bind(user)
    .bind(i64::from(approve))
    .bind(comment)
    .bind(at)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("record access decision", e))?;
    Ok(done.rows_affected() == 1)
}

/// Moves `id` from pending to approved (a grant until `expires_at`) or denied; false when it
/// was no longer pending.
pub async fn decide(
    tx: &mut WriteTx,
    id: &str,
    state: &str,
    at: i64,
    expires_at: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE access_requests SET state = $1, decided_at = $2, expires_at = $3 \
         WHERE id = $4 AND state = 'pending'",
    )
    .bind(state)
    .bind(at)
    .bind(expires_at)
    .bind(id)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("decide access request", e))?;
    Ok(done.rows_affected() == 1)
}

/// Ends `id` as `state` ([`REVOKED`] or [`EXPIRED`]) if it is still `from`; false otherwise.
pub async fn end(
    tx: &mut WriteTx,
    id: &str,
    from: &str,
    state: &str,
    by: Option<&str>,
    at: i64,
) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE access_requests SET state = $1, ended_by = $2, ended_at = $3 \
         WHERE id = $4 AND state = $5",
    )
    .bind(state)
    .bind(by)
    .bind(at)
    .bind(id)
    .bind(from)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("end access request", e))?;
    Ok(done.rows_affected() == 1)
}

/// Pending requests and grants whose time ran out by `now` (at most 100, oldest first).
pub async fn due(db: &Db, now: i64) -> Result<Vec<Request>, DbError> {
    let rows = sqlx::query(select_requests!(
        "WHERE r.state IN ('pending', 'approved') AND r.expires_at <= $1 \
         ORDER BY r.expires_at LIMIT 100"
    ))
    .bind(now)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("find expired access requests", e))?;
    rows.iter().map(request_of).collect()
}
