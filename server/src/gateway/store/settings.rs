//! The `user_settings` table: each person's settings as the JSON text identity checked, one row
//! per person (none until they first save). What the keys mean is identity's
//! (`identity::settings`); this module only keeps the text.

use sqlx::Row;

use super::db::{Db, DbError, now_ms};

/// The stored settings text of user `user_id`, if they ever saved any.
pub async fn load(db: &Db, user_id: i64) -> Result<Option<String>, DbError> {
    let row = sqlx::query("SELECT settings FROM user_settings WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(db.pool())
        .await
        .map_err(|e| DbError::new("load user settings", e))?;
    row.map(|r| r.try_get::<String, _>("settings"))
        .transpose()
        .map_err(|e| DbError::new("read user settings", e))
}

/// Stores `settings` (JSON text) as user `user_id`'s, replacing what was there.
pub async fn save(db: &Db, user_id: i64, settings: &str) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO user_settings (user_id, settings, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET settings = excluded.settings, \
         updated_at = excluded.updated_at",
    )
    .bind(user_id)
    .bind(settings)
    .bind(now_ms())
    .execute(db.pool())
    .await
    .map_err(|e| DbError::new("save user settings", e))?;
    Ok(())
}
