//! The `session_participants` table: the people a session's owner invited into it, with how
//! they take part (`write` or `read`). Who may invite whom is the policy's and the engine's
//! (`sessions::participants`); this module only keeps the rows.

use serde::Serialize;
use sqlx::Row;

use super::db::{Db, DbError, WriteTx, now_ms};
use super::sessions::{SessionView, select_sessions, view_of};

/// One invited person as the API shows them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Participant {
    /// Their user name.
    pub user: String,
    /// `write` (their input reaches the shell) or `read` (they watch).
    pub mode: String,
    /// Who invited them (the session's owner).
    pub invited_by: String,
    /// When, in milliseconds since the epoch.
    pub invited_at: i64,
    #[serde(skip)]
    user_id: i64,
}

impl Participant {
    /// Their user id.
    pub fn user_id(&self) -> i64 {
        self.user_id
    }
}

/// A participants query: the columns of [`Participant`], then `$rest` (a literal, so the SQL
/// stays static).
macro_rules! select_participants {
    ($rest:literal) => {
        concat!(
            "SELECT u.name AS name, p.user_id, p.mode, b.name AS invited_by, p.invited_at ",
            "FROM session_participants p JOIN users u ON u.id = p.user_id ",
            "JOIN users b ON b.id = p.invited_by ",
            $rest
        )
    };
}

fn participant_of(row: &sqlx::any::AnyRow) -> Result<Participant, sqlx::Error> {
    Ok(Participant {
        user: row.try_get("name")?,
        user_id: row.try_get("user_id")?,
        mode: row.try_get("mode")?,
        invited_by: row.try_get("invited_by")?,
        invited_at: row.try_get("invited_at")?,
    })
}

/// The participants of session `session_id`, in the order they were invited.
pub async fn list(db: &Db, session_id: &str) -> Result<Vec<Participant>, DbError> {
    let sql = select_participants!("WHERE p.session_id = $1 ORDER BY p.invited_at, u.name");
    let rows = sqlx::query(sql)
        .bind(session_id)
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("list participants", e))?;
    rows.iter()
        .map(participant_of)
        .collect::<Result<_, _>>()
        .map_err(|e| DbError::new("read participant", e))
}

/// User `user_id` as a participant of session `session_id`, if they are one.
pub async fn find(db: &Db, session_id: &str, user_id: i64) -> Result<Option<Participant>, DbError> {
    let sql = select_participants!("WHERE p.session_id = $1 AND p.user_id = $2");
    let row = sqlx::query(sql)
        .bind(session_id)
        .bind(user_id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("find participant", e))?;
    row.map(|r| participant_of(&r))
        .transpose()
        .map_err(|e| DbError::new("read participant", e))
}

/// How many people are invited into session `session_id`, in `tx`.
pub async fn count(tx: &mut WriteTx, session_id: &str) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM session_participants WHERE session_id = $1")
        .bind(session_id)
        .fetch_one(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("count participants", e))?;
    row.try_get("n")
        .map_err(|e| DbError::new("read participant count", e))
}

/// Invites user `user_id` into session `session_id` with `mode`, by `by`, in `tx`; an invited
/// person invited again gets the new mode. Whether it is a new row.
pub async fn upsert(
    tx: &mut WriteTx,
    session_id: &str,
    user_id: i64,
    mode: &str,
    by: i64,
) -> Result<bool, DbError> {
    let existed = sqlx::query(
        "SELECT 1 AS one FROM session_participants WHERE session_id = $1 AND user_id = $2",
    )
    .bind(session_id)
    .bind(user_id)
    .fetch_optional(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("find participant", e))?
    .is_some();
    sqlx::query(
        "INSERT INTO session_participants (session_id, user_id, mode, invited_by, invited_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (session_id, user_id) DO UPDATE SET \
         mode = excluded.mode, invited_by = excluded.invited_by, invited_at = excluded.invited_at",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(mode)
    .bind(by)
    .bind(now_ms())
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("save participant", e))?;
    Ok(!existed)
}

/// Removes user `user_id` from session `session_id`, in `tx`; whether they were in it.
pub async fn remove(tx: &mut WriteTx, session_id: &str, user_id: i64) -> Result<bool, DbError> {
    let done =
        sqlx::query("DELETE FROM session_participants WHERE session_id = $1 AND user_id = $2")
            .bind(session_id)
            .bind(user_id)
            .execute(&mut *tx.tx)
            .await
            .map_err(|e| DbError::new("remove participant", e))?;
    Ok(done.rows_affected() > 0)
}

/// The running sessions user `user_id` is invited into, newest first, with their mode.
pub async fn shared_with(db: &Db, user_id: i64) -> Result<Vec<(SessionView, String)>, DbError> {
    let sql = select_sessions!(
        "JOIN session_participants p ON p.session_id = s.id \
         WHERE p.user_id = $1 AND s.state IN ('starting', 'active') \
         ORDER BY s.started_at DESC, s.id LIMIT 100"
    );
    let rows = sqlx::query(sql)
        .bind(user_id)
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("list shared sessions", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let view = view_of(row).map_err(|e| DbError::new("read session", e))?;
        let mode = find(db, &view.id, user_id)
            .await?
            .map_or_else(|| "read".to_owned(), |p| p.mode);
        out.push((view, mode));
    }
    Ok(out)
}
