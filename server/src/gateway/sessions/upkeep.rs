//! The upkeep of live sessions across the gateway's life: ending the sessions a stopped or
//! crashed gateway left live ([`reconcile`]), marking this gateway's own as owned
//! ([`heartbeat`]), and ending them all when it stops ([`end_all`]).

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use crate::gateway::aws::aws_message;
use crate::gateway::store::audit;
use crate::gateway::store::db::{self, DbError};

/// How often this gateway marks its live sessions as owned (`sessions.heartbeat_at`).
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A live session whose owner has not marked it for this long belongs to no running gateway.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(120);

/// Sessions recorded as live that no running gateway owns — this gateway's own from before a
/// crash or a kill, or another's whose heartbeat stopped — are terminated with
/// `TerminateSession` and recorded as ended by "gateway restart".
pub async fn reconcile(engine: &Engine) -> Result<(), DbError> {
    use sqlx::Row;
    let stale_before = db::now_ms() - HEARTBEAT_STALE.as_millis() as i64;
    let rows = sqlx::query(
        "SELECT s.id, s.target, s.region, s.ssm_session_id, u.name FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         WHERE s.state IN ('starting', 'active') AND (s.owner_gateway = $1 OR s.heartbeat_at < $2)",
    )
    .bind(&engine.config.server.gateway_id)
    .bind(stale_before)
    .fetch_all(engine.db.pool())
    .await
    .map_err(|e| DbError::new("find stale sessions", e))?;
    for row in rows {
        let read = |e| DbError::new("read stale session", e);
        let id: String = row.try_get("id").map_err(read)?;
        let target: String = row.try_get("target").map_err(read)?;
        let region: String = row.try_get("region").map_err(read)?;
        let ssm_id: Option<String> = row.try_get("ssm_session_id").map_err(read)?;
        let user: String = row.try_get("name").map_err(read)?;
        let mut terminated = serde_json::Value::Null;
        if let (Some(ssm_id), Some(clients)) = (&ssm_id, engine.clients(&region)) {
            let sent = clients
                .ssm
                .terminate_session()
                .session_id(ssm_id)
                .send()
                .await;
            terminated = match sent {
                Ok(_) => serde_json::Value::Bool(true),
                Err(e) => serde_json::Value::String(aws_message(&e)),
            };
        }
        let how = "gateway restart";
        let mut tx = engine.db.begin_write().await?;
        sqlx::query(
            "UPDATE sessions SET state = 'ended', ended_at = $1, end_reason = $2 WHERE id = $3",
        )
        .bind(db::now_ms())
        .bind(how)
        .bind(&id)
        .execute(&mut *tx.tx)
        .await
        .map_err(|e| DbError::new("end stale session", e))?;
        let client = audit::Client::default();
        audit::append(
            &mut tx.tx,
            &audit::Event::new(audit::kind::SESSION_END, &user, &client)
                .session(&id, &target)
                .detail(serde_json::json!({
                    "how": how,
                    "ssm_session_id": ssm_id,
                    "terminate_session": terminated,
                })),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(session = %id, "ended a session left live by a stopped gateway");
    }
    Ok(())
}

/// Marks this gateway's live sessions as owned, every [`HEARTBEAT`].
pub async fn heartbeat(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        // On SQLite a commit between an audit append's read and its write fails the append;
        // the chain's writers and this one take turns (see `Db::lock_writes`).
        let _writes = engine.db.lock_writes().await;
        for live in engine.live.all() {
            let done = sqlx::query("UPDATE sessions SET heartbeat_at = $1 WHERE id = $2")
                .bind(db::now_ms())
                .bind(&live.id)
                .execute(engine.db.pool())
                .await;
            if let Err(e) = done {
                tracing::warn!(session = %live.id, "heartbeat: {e}");
            }
        }
    }
}

/// Terminates every live session and waits (a bounded time) for their ends to be recorded.
pub async fn end_all(engine: &Engine, why: &str) {
    for live in engine.live.all() {
        live.ending(why).await;
        if let Some(clients) = engine.clients(&live.region) {
            let sent = clients
                .ssm
                .terminate_session()
                .session_id(&live.ssm_session_id)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::warn!(session = %live.id, "TerminateSession failed: {}", aws_message(&e));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !engine.live.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
