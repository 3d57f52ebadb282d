//! The upkeep of live sessions across the gateway's life: ending the sessions a stopped or
//! crashed gateway left live ([`reconcile`]), marking this gateway's own as owned
//! ([`heartbeat`]), and ending them all when it stops ([`end_all`]).

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use super::live::Credentials;
use crate::gateway::aws::aws_message;
use crate::gateway::store::audit;
use crate::gateway::store::db::{self, DbError};
use crate::gateway::store::sessions as rows;
use crate::gateway::telemetry;

/// How often this gateway marks its live sessions as owned (`sessions.heartbeat_at`).
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A live session whose owner has not marked it for this long belongs to no running gateway.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(120);

/// Sessions recorded as live that no running gateway owns — this gateway's own from before a
/// crash or a kill, or another's whose heartbeat stopped — are terminated with
/// `TerminateSession` and recorded as ended by "gateway restart".
pub async fn reconcile(engine: &Engine) -> Result<(), DbError> {
    let stale_before = db::now_ms() - HEARTBEAT_STALE.as_millis() as i64;
    let stale =
        rows::find_stale(&engine.db, &engine.config.server.gateway_id, stale_before).await?;
    for session in stale {
        let mut terminated = serde_json::Value::Null;
        if let (Some(ssm_id), Some(clients)) = (
            &session.ssm_session_id,
            engine.clients(&session.account, &session.region),
        ) {
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
        rows::mark_abandoned(&mut tx, &session.id, how).await?;
        let client = audit::Client::default();
        audit::append(
            &mut tx.tx,
            &audit::Event::new(audit::kind::SESSION_END, &session.user, &client)
                .session(&session.id, &session.target)
                .detail(serde_json::json!({
                    "how": how,
                    "ssm_session_id": session.ssm_session_id,
                    "terminate_session": terminated,
                })),
        )
        .await?;
        tx.commit().await?;
        telemetry::session_ended_as(telemetry::EndReason::Restart);
        tracing::info!(session = %session.id, "ended a session left live by a stopped gateway");
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
            if let Err(e) = rows::touch(&engine.db, &live.id).await {
                tracing::warn!(session = %live.id, "{e}");
            }
        }
    }
}

/// How the end of a session whose owner lost access is recorded.
pub const ACCESS_REVOKED: &str = "access revoked";

/// Ends `live` because its owner lost access to it: its end is recorded as `why` ("access
/// revoked"), then `TerminateSession` is called with the gateway's own credentials (a
/// revocation must not depend on the person's, which may be revoked or expired).
pub async fn revoke(engine: &Engine, live: &super::live::LiveSession, why: &str) {
    tracing::info!(session = %live.id, owner = live.user_id, "ending a session: {why}");
    live.ending(why).await;
    let _ = live.terminate_at_ssm(engine, Credentials::Gateway).await; // logged
}

/// Terminates every live session and waits (a bounded time) for their ends to be recorded.
pub async fn end_all(engine: &Engine, why: &str) {
    for live in engine.live.all() {
        live.ending(why).await;
        let _ = live.terminate_at_ssm(engine, Credentials::Gateway).await; // logged
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !engine.live.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
