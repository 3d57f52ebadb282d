//! The `notifications` table: webhook deliveries queued, done or given up (migration 0008).
//! Knows rows, not HTTP: [`insert`] queues one in the caller's write transaction; a worker
//! [`claim`]s the due ones with a lease (one conditional update per row, so that of several
//! gateways on the database one gets each), then records the outcome: [`delivered`] or
//! [`failed`] in a write transaction (with their audit event), [`retry_later`] alone. Each
//! outcome applies only while the lease it names is the row's: a worker whose lease lapsed
//! (and whose row another claimed since) changes nothing. [`list`] is the admins' view.

use serde::Serialize;
use sqlx::Row;

use super::db::{Db, DbError, WriteTx};

/// Waiting for its next attempt (or in one).
pub const PENDING: &str = "pending";
/// The receiver answered 2xx.
pub const DELIVERED: &str = "delivered";
/// Given up after the last attempt (or its webhook is no longer configured).
pub const FAILED: &str = "failed";

/// The longest `last_error` kept, in characters.
pub const MAX_ERROR_CHARS: usize = 500;

/// A delivery to queue.
#[derive(Debug, Clone, Copy)]
pub struct NewNotice<'a> {
    /// Its id (`X-Porthole-Delivery`, and `delivery` in a JSON body).
    pub id: &'a str,
    /// The webhook's name.
    pub webhook: &'a str,
    /// The topic (`request`, `decision`, …).
    pub topic: &'a str,
    /// The exact body to POST.
    pub body: &'a str,
    /// When it was queued (ms); its first attempt is due then.
    pub created_at: i64,
}

/// Queues `new` in `tx`: pending, due at once.
pub async fn insert(tx: &mut WriteTx, new: &NewNotice<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO notifications (id, webhook, topic, body, state, attempts, next_at, \
         leased_until, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, 0, $6)",
    )
    .bind(new.id)
    .bind(new.webhook)
    .bind(new.topic)
    .bind(new.body)
    .bind(PENDING)
    .bind(new.created_at)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("queue notification", e))?;
    Ok(())
}

/// A delivery this gateway claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Its id.
    pub id: String,
    /// The webhook's name.
    pub webhook: String,
    /// The topic.
    pub topic: String,
    /// The exact body to POST.
    pub body: String,
    /// Attempts made, this one included.
    pub attempts: i64,
    /// The lease: the row is this worker's until then (ms), and the outcome names it.
    pub lease: i64,
}

/// Claims up to `limit` pending deliveries due at `now` and not leased, earliest first: each
/// is leased until `lease` (a moment after `now`) and its attempt counted. Another gateway's
/// claim of the same row between the read and the update makes this one skip it.
pub async fn claim(db: &Db, now: i64, lease: i64, limit: i64) -> Result<Vec<Claimed>, DbError> {
    let rows = sqlx::query(
        "SELECT id, webhook, topic, body, attempts FROM notifications \
         WHERE state = $1 AND next_at <= $2 AND leased_until <= $2 \
         ORDER BY next_at, created_at, id LIMIT $3",
    )
    .bind(PENDING)
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("read due notifications", e))?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let read = |e| DbError::new("read due notifications", e);
        let id: String = row.try_get("id").map_err(read)?;
        let attempts: i64 = row.try_get("attempts").map_err(read)?;
        let taken = {
            let _writing = db.lock_writes().await;
            // The conditions of the read again, and the attempts seen: the row is ours only if
            // nobody claimed (or finished) it since.
            sqlx::query(
                "UPDATE notifications SET leased_until = $1, attempts = attempts + 1 \
                 WHERE id = $2 AND state = $3 AND next_at <= $4 AND leased_until <= $4 \
                 AND attempts = $5",
            )
            .bind(lease)
            .bind(&id)
            .bind(PENDING)
            .bind(now)
            .bind(attempts)
            .execute(db.pool())
            .await
            .map_err(|e| DbError::new("claim notification", e))?
            .rows_affected()
                == 1
        };
        if taken {
            claimed.push(Claimed {
                id,
                webhook: row.try_get("webhook").map_err(read)?,
                topic: row.try_get("topic").map_err(read)?,
                body: row.try_get("body").map_err(read)?,
                attempts: attempts + 1,
                lease,
            });
        }
    }
    Ok(claimed)
}

/// `text` cut to [`MAX_ERROR_CHARS`].
fn short(text: &str) -> String {
    text.chars().take(MAX_ERROR_CHARS).collect()
}

/// Marks claimed delivery `id` delivered at `now`, in `tx`; false when `lease` is no longer the
/// row's (nothing changed).
pub async fn delivered(tx: &mut WriteTx, id: &str, lease: i64, now: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE notifications SET state = $1, delivered_at = $2, leased_until = 0, \
         last_error = NULL WHERE id = $3 AND state = $4 AND leased_until = $5",
    )
    .bind(DELIVERED)
    .bind(now)
    .bind(id)
    .bind(PENDING)
    .bind(lease)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("mark notification delivered", e))?;
    Ok(done.rows_affected() == 1)
}

/// Marks claimed delivery `id` failed for good with `error`, in `tx`; false when `lease` is no
/// longer the row's.
pub async fn failed(tx: &mut WriteTx, id: &str, lease: i64, error: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE notifications SET state = $1, leased_until = 0, last_error = $2 \
         WHERE id = $3 AND state = $4 AND leased_until = $5",
    )
    .bind(FAILED)
    .bind(short(error))
    .bind(id)
    .bind(PENDING)
    .bind(lease)
    .execute(&mut *tx.tx)
    .await
    .map_err(|e| DbError::new("mark notification failed", e))?;
    Ok(done.rows_affected() == 1)
}

/// Puts claimed delivery `id` back, due at `next_at`, with `error`; false when `lease` is no
/// longer the row's.
pub async fn retry_later(
    db: &Db,
    id: &str,
    lease: i64,
    next_at: i64,
    error: &str,
) -> Result<bool, DbError> {
    let _writing = db.lock_writes().await;
    let done = sqlx::query(
        "UPDATE notifications SET next_at = $1, leased_until = 0, last_error = $2 \
         WHERE id = $3 AND state = $4 AND leased_until = $5",
    )
    .bind(next_at)
    .bind(short(error))
    .bind(id)
    .bind(PENDING)
    .bind(lease)
    .execute(db.pool())
    .await
    .map_err(|e| DbError::new("reschedule notification", e))?;
    Ok(done.rows_affected() == 1)
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Delivery {
    /// Its id (the `X-Porthole-Delivery` header).
    pub id: String,
    /// The webhook's name.
    pub webhook: String,
    /// `request`, `decision`, `break_glass` or `session`.
    pub topic: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (ms); null unless pending.
    pub next_at: Option<i64>,
    /// Why the last attempt failed; null when it did not.
    pub last_error: Option<String>,
    /// When it was queued (ms).
    pub created_at: i64,
    /// When the receiver took it (ms); null unless delivered.
    pub delivered_at: Option<i64>,
}

/// Which deliveries [`list`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// Only those in this state ([`PENDING`], [`DELIVERED`] or [`FAILED`]).
    Only(&'static str),
    /// All of them.
    All,
}

impl StateFilter {
    /// `pending`, `delivered`, `failed` or `all`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Only(PENDING)),
            "delivered" => Some(Self::Only(DELIVERED)),
            "failed" => Some(Self::Only(FAILED)),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// Up to `limit` deliveries in `filter`, newest first.
pub async fn list(db: &Db, filter: StateFilter, limit: i64) -> Result<Vec<Delivery>, DbError> {
    let state = match filter {
        StateFilter::Only(state) => state,
        StateFilter::All => "",
    };
    let rows = sqlx::query(
        "SELECT id, webhook, topic, state, attempts, next_at, last_error, created_at, \
         delivered_at FROM notifications WHERE ($1 = '' OR state = $1) \
         ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(state)
    .bind(limit)
    .fetch_all(db.pool())
    .await
    .map_err(|e| DbError::new("list notifications", e))?;
    rows.iter()
        .map(|row| {
            let state: String = row.try_get("state")?;
            let next_at: i64 = row.try_get("next_at")?;
            Ok(Delivery {
                id: row.try_get("id")?,
                webhook: row.try_get("webhook")?,
                topic: row.try_get("topic")?,
                next_at: (state == PENDING).then_some(next_at),
                state,
                attempts: row.try_get("attempts")?,
                last_error: row.try_get("last_error")?,
                created_at: row.try_get("created_at")?,
                delivered_at: row.try_get("delivered_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| DbError::new("read notification", e))
}
