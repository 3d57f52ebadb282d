//! The `session_labels` and `session_tags` tables: the tags and the note a session's owner or
//! an auditor gave it, and the search over them. What a valid tag or note is, and who may
//! write them, is the session engine's (`sessions::labels`); this module only keeps them.

use serde::Serialize;
use sqlx::Row;

use super::db::{Db, DbError, WriteTx, now_ms};
use super::search::like_pattern;
use super::sessions::{SessionView, select_sessions, view_of};

/// A session's labels as the API shows them.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Labels {
    /// Lower-case tags, sorted.
    pub tags: Vec<String>,
    /// Free text (empty: none).
    pub note: String,
    /// Who last changed them (none: never labelled).
    pub updated_by: Option<String>,
    /// When, in milliseconds since the epoch.
    pub updated_at: Option<i64>,
}

/// The labels of session `session_id` (empty ones when it was never labelled).
pub async fn load(db: &Db, session_id: &str) -> Result<Labels, DbError> {
    let row = sqlx::query(
        "SELECT l.note, l.updated_at, u.name FROM session_labels l \
         JOIN users u ON u.id = l.updated_by WHERE l.session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(db.pool())
    .await
    .map_err(|e| DbError::new("load session labels", e))?;
    let read = |e| DbError::new("read session labels", e);
    let Some(row) = row else {
        return Ok(Labels::default());
    };
    let tags = sqlx::query("SELECT tag FROM session_tags WHERE session_id = $1 ORDER BY tag")
        .bind(session_id)
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("load session tags", e))?
        .iter()
        .map(|r| r.try_get::<String, _>("tag"))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    Ok(Labels {
        tags,
        note: row.try_get("note").map_err(read)?,
        updated_by: Some(row.try_get("name").map_err(read)?),
        updated_at: Some(row.try_get("updated_at").map_err(read)?),
    })
}

/// Replaces the labels of session `session_id` with `tags` (already checked and lower case)
/// and `note`, as changed by user `by`, in `tx` (the caller audits the change in the same
/// transaction).
pub async fn replace(
    tx: &mut WriteTx,
    session_id: &str,
    tags: &[String],
    note: &str,
    by: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO session_labels (session_id, note, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO UPDATE SET note = excluded.note, \
         updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(session_id)
    .bind(note)
    .bind(by)
    .bind(now_ms())
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("save session labels", e))?;
    sqlx::query("DELETE FROM session_tags WHERE session_id = $1")
        .bind(session_id)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("replace session tags", e))?;
    for tag in tags {
        sqlx::query("INSERT INTO session_tags (session_id, tag) VALUES ($1, $2)")
            .bind(session_id)
            .bind(tag)
            .execute(&mut *tx.tx)
            .await
            .map_err(|e| DbError::new("save session tag", e))?;
    }
    Ok(())
}

/// The sessions whose tags or note contain `text` (letters in either case), newest first, at
/// most `limit`: user `user_id`'s own, and everyone's ended ones when `everyone`.
pub async fn find(
    db: &Db,
    user_id: i64,
    everyone: bool,
    text: &str,
    limit: u32,
) -> Result<Vec<(SessionView, Labels)>, DbError> {
    let sql = select_sessions!(
        "JOIN session_labels l ON l.session_id = s.id \
         WHERE (s.user_id = $1 OR ($2 = 1 AND s.state IN ('ended', 'failed'))) \
         AND (LOWER(l.note) LIKE LOWER($3) ESCAPE '!' OR EXISTS (SELECT 1 FROM session_tags t \
         WHERE t.session_id = s.id AND t.tag LIKE LOWER($3) ESCAPE '!')) \
         ORDER BY s.started_at DESC, s.id LIMIT $4"
    );
    let rows = sqlx::query(sql)
        .bind(user_id)
        .bind(i64::from(everyone))
        .bind(like_pattern(text))
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await
        .map_err(|e| DbError::new("search session labels", e))?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let view = view_of(row).map_err(|e| DbError::new("read session", e))?;
        let labels = load(db, &view.id).await?;
        found.push((view, labels));
    }
    Ok(found)
}
