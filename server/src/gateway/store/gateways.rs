//! The `gateways` table: the gateways sharing this database, each with where the others reach
//! it, the random id of the process that runs it, its state and heartbeat; and the
//! `handovers` table, where a stopping gateway leaves a session's sealed state for the one
//! that takes it over.

use sqlx::Row;

use super::db::{Db, DbError, now_ms};

/// A registered gateway is taking sessions.
pub const RUNNING: &str = "running";
/// A registered gateway is stopping: it takes no new sessions and hands its own over.
pub const DRAINING: &str = "draining";
/// A registered gateway has stopped cleanly.
pub const STOPPED: &str = "stopped";

/// A gateway's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// `server.gateway_id`.
    pub id: String,
    /// `server.internal_url`.
    pub internal_url: String,
    /// The random id of the process that last registered it.
    pub instance: String,
    /// [`RUNNING`], [`DRAINING`] or [`STOPPED`].
    pub state: String,
    /// Its last heartbeat, milliseconds since the epoch.
    pub heartbeat_at: i64,
}

impl Registered {
    /// Whether it marked itself alive since `fresh_after` (milliseconds) and has not stopped.
    pub fn is_alive(&self, fresh_after: i64) -> bool {
        self.state != STOPPED && self.heartbeat_at >= fresh_after
    }
}

fn registered(row: &sqlx::any::AnyRow) -> Result<Registered, DbError> {
    let read = |e| DbError::new("read gateway", e);
    Ok(Registered {
        id: row.try_get("id").map_err(read)?,
        internal_url: row.try_get("internal_url").map_err(read)?,
        instance: row.try_get("instance").map_err(read)?,
        state: row.try_get("state").map_err(read)?,
        heartbeat_at: row.try_get("heartbeat_at").map_err(read)?,
    })
}

/// A query of the gateways: the columns, then `$rest` (a literal, so the SQL stays static).
macro_rules! select_gateways {
    ($rest:literal) => {
        concat!(
            "SELECT id, internal_url, instance, state, heartbeat_at FROM gateways ",
            $rest
        )
    };
}

/// The gateway `id`, when registered.
pub async fn load(db: &Db, id: &str) -> Result<Option<Registered>, DbError> {
    let row = sqlx::query(select_gateways!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("load gateway", e))?;
    row.as_ref().map(registered).transpose()
}

/// Every registered gateway, by id.
pub async fn all(db: &Db) -> Result<Vec<Registered>, DbError> {
    let rows = sqlx::query(select_gateways!("ORDER BY id"))
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("list gateways", e))?;
    rows.iter().map(registered).collect()
}

/// The gateway that owns live session `session_id`, when it is registered.
pub async fn owner_of(db: &Db, session_id: &str) -> Result<Option<Registered>, DbError> {
    let row = sqlx::query(
        "SELECT g.id, g.internal_url, g.instance, g.state, g.heartbeat_at FROM sessions s \
         JOIN gateways g ON g.id = s.owner_gateway WHERE s.id = $1",
    )
    .bind(session_id)
    .fetch_optional(db.pool())
    .await
    .map_err(|e| DbError::new("find a session's gateway", e))?;
    row.as_ref().map(registered).transpose()
}

/// Registers this process (`instance`) as gateway `id`: [`RUNNING`], heartbeat now. With
/// `replacing`, only if the row is still that process's (false when another registered it
/// since); without, the row must not exist yet (false when it does).
pub async fn register(
    db: &Db,
    id: &str,
    internal_url: &str,
    instance: &str,
    replacing: Option<&str>,
) -> Result<bool, DbError> {
    let _writing = db.lock_writes().await;
    let now = now_ms();
    let done = match replacing {
        Some(seen) => sqlx::query(
            "UPDATE gateways SET internal_url = $1, instance = $2, state = $3, started_at = $4, \
             heartbeat_at = $4 WHERE id = $5 AND instance = $6",
        )
        .bind(internal_url)
        .bind(instance)
        .bind(RUNNING)
        .bind(now)
        .bind(id)
        .bind(seen)
        .execute(db.pool())
        .await
        .map(|r| r.rows_affected() == 1),
        None => sqlx::query(
            "INSERT INTO gateways (id, internal_url, instance, state, started_at, heartbeat_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(id)
        .bind(internal_url)
        .bind(instance)
        .bind(RUNNING)
        .bind(now)
        .execute(db.pool())
        .await
        .map(|_| true),
    };
    match done {
        Ok(done) => Ok(done),
        Err(e) => {
            let e = DbError::new("register gateway", e);
            if e.is_unique_violation() {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Marks gateway `id` (run by `instance`) alive now, in `state`; false when another process
/// has registered the id since (this one must stop claiming it).
pub async fn beat(db: &Db, id: &str, instance: &str, state: &str) -> Result<bool, DbError> {
    let _writing = db.lock_writes().await;
    let updated = sqlx::query(
        "UPDATE gateways SET heartbeat_at = $1, state = $2 WHERE id = $3 AND instance = $4",
    )
    .bind(now_ms())
    .bind(state)
    .bind(id)
    .bind(instance)
    .execute(db.pool())
    .await
    .map_err(|e| DbError::new("gateway heartbeat", e))?;
    Ok(updated.rows_affected() == 1)
}

/// Marks this process's gateway row `state` (without touching the heartbeat).
pub async fn set_state(db: &Db, id: &str, instance: &str, state: &str) -> Result<(), DbError> {
    let _writing = db.lock_writes().await;
    sqlx::query("UPDATE gateways SET state = $1 WHERE id = $2 AND instance = $3")
        .bind(state)
        .bind(id)
        .bind(instance)
        .execute(db.pool())
        .await
        .map_err(|e| DbError::new("gateway state", e))?;
    Ok(())
}

/// A session's sealed hand-over state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// The session.
    pub session_id: String,
    /// The gateway handing it over.
    pub from_gateway: String,
    /// The gateway taking it over.
    pub to_gateway: String,
    /// The sealed state (base64).
    pub sealed: String,
}

/// Leaves `handover` for its receiver (replacing an earlier one of the same session).
pub async fn put_handover(db: &Db, handover: &Handover) -> Result<(), DbError> {
    let _writing = db.lock_writes().await;
    sqlx::query("DELETE FROM handovers WHERE session_id = $1")
        .bind(&handover.session_id)
        .execute(db.pool())
        .await
        .map_err(|e| DbError::new("replace hand-over", e))?;
    sqlx::query(
        "INSERT INTO handovers (session_id, from_gateway, to_gateway, sealed, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&handover.session_id)
    .bind(&handover.from_gateway)
    .bind(&handover.to_gateway)
    .bind(&handover.sealed)
    .bind(now_ms())
    .execute(db.pool())
    .await
    .map_err(|e| DbError::new("write hand-over", e))?;
    Ok(())
}

/// Takes (deletes and returns, in one statement, so that of two gateways asking at once only
/// one gets it) the hand-over of `session_id` from `from_gateway` to `to_gateway`.
pub async fn take_handover(
    db: &Db,
    session_id: &str,
    from_gateway: &str,
    to_gateway: &str,
) -> Result<Option<Handover>, DbError> {
    let _writing = db.lock_writes().await;
    let row = sqlx::query(
        "DELETE FROM handovers WHERE session_id = $1 AND from_gateway = $2 AND to_gateway = $3 \
         RETURNING session_id, from_gateway, to_gateway, sealed",
    )
    .bind(session_id)
    .bind(from_gateway)
    .bind(to_gateway)
    .fetch_optional(db.pool())
    .await
    .map_err(|e| DbError::new("take hand-over", e))?;
    let Some(row) = row else { return Ok(None) };
    let read = |e| DbError::new("read hand-over", e);
    Ok(Some(Handover {
        session_id: row.try_get("session_id").map_err(read)?,
        from_gateway: row.try_get("from_gateway").map_err(read)?,
        to_gateway: row.try_get("to_gateway").map_err(read)?,
        sealed: row.try_get("sealed").map_err(read)?,
    }))
}

/// Whether a hand-over of `session_id` waits to be taken.
pub async fn handover_pending(db: &Db, session_id: &str) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT 1 AS one FROM handovers WHERE session_id = $1")
        .bind(session_id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("find hand-over", e))?;
    Ok(row.is_some())
}

/// Deletes whatever hand-over of `session_id` is left (the session ended or was taken over by
/// a sweep): its sealed keys and recording do not stay in the database.
pub async fn forget_handover(db: &Db, session_id: &str) -> Result<(), DbError> {
    let _writing = db.lock_writes().await;
    sqlx::query("DELETE FROM handovers WHERE session_id = $1")
        .bind(session_id)
        .execute(db.pool())
        .await
        .map_err(|e| DbError::new("forget hand-over", e))?;
    Ok(())
}

/// Hands the row of live session `session_id` from `from` to `to` (owner and heartbeat);
/// false when `from` did not own it.
pub async fn move_session(
    db: &Db,
    session_id: &str,
    from: &str,
    to: &str,
) -> Result<bool, DbError> {
    let _writing = db.lock_writes().await;
    let updated = sqlx::query(
        "UPDATE sessions SET owner_gateway = $1, heartbeat_at = $2 \
         WHERE id = $3 AND owner_gateway = $4 AND state IN ('starting', 'active')",
    )
    .bind(to)
    .bind(now_ms())
    .bind(session_id)
    .bind(from)
    .execute(db.pool())
    .await
    .map_err(|e| DbError::new("move session", e))?;
    Ok(updated.rows_affected() == 1)
}
