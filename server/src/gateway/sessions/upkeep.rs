//! The upkeep of live sessions across the gateway's life: ending the sessions a stopped or
//! crashed gateway left live ([`reconcile`], at start and then every heartbeat), marking this
//! gateway and its own sessions alive ([`heartbeat`]), and ending them all when it stops
//! ([`end_all`]).

use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use super::live::Credentials;
use crate::gateway::aws::aws_message;
use crate::gateway::store::audit;
use crate::gateway::store::db::DbError;
use crate::gateway::store::gateways;
use crate::gateway::store::sessions as rows;
use crate::gateway::telemetry;

/// Which sessions [`reconcile`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// At start, once this process holds its gateway id: the sessions an earlier process of
    /// this id left, and those whose owner stopped marking them.
    Start,
    /// Every heartbeat: the sessions whose owner stopped marking them (decided by the age of
    /// the mark, never by the owner's id alone).
    Periodic,
}

/// Sessions recorded as live that no running gateway owns — this gateway's own from before a
/// crash or a kill, or another's whose heartbeat stopped — are terminated with
/// `TerminateSession` and recorded as ended by "gateway restart". Each is claimed first (its
/// row made this gateway's, in one conditional update), so that two gateways sweeping at once
/// end it once.
pub async fn reconcile(engine: &Engine, sweep: Sweep) -> Result<usize, DbError> {
    let me = &engine.cluster.id;
    let stale_before = engine.cluster.fresh_after();
    let mine = match sweep {
        Sweep::Start => Some(me.as_str()),
        Sweep::Periodic => None,
    };
    let stale = rows::find_stale(&engine.db, mine, stale_before).await?;
    let mut ended = 0;
    for session in stale {
        // A session this process runs is never another's to end (at start there are none).
        let running_here = sweep == Sweep::Periodic && engine.live.get(&session.id).is_some();
        if running_here
            || !rows::claim_stale(&engine.db, &session.id, me, mine, stale_before).await?
        {
            continue;
        }
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
        if let Err(e) = gateways::forget_handover(&engine.db, &session.id).await {
            tracing::warn!(session = %session.id, "{e}");
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
                    "owner_gateway": session.owner_gateway,
                    "ended_by_gateway": me,
                })),
        )
        .await?;
        tx.commit().await?;
        ended += 1;
        telemetry::session_ended_as(telemetry::EndReason::Restart);
        tracing::info!(
            session = %session.id,
            owner = %session.owner_gateway,
            "ended a session left live by a stopped gateway"
        );
    }
    Ok(ended)
}

/// Every `cluster.heartbeat_seconds`: marks this gateway and its live sessions alive, and ends
/// the sessions of gateways that stopped marking theirs ([`Sweep::Periodic`]).
pub async fn heartbeat(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(engine.cluster.heartbeat);
    loop {
        tick.tick().await;
        let state = if engine.is_draining() {
            gateways::DRAINING
        } else {
            gateways::RUNNING
        };
        match engine.cluster.beat(&engine.db, state).await {
            Ok(true) => {}
            Ok(false) => tracing::error!(
                gateway = %engine.cluster.id,
                "another process registered this gateway id: it took this one for dead; give \
                 each gateway its own server.gateway_id"
            ),
            Err(e) => tracing::warn!("gateway heartbeat: {e}"),
        }
        {
            // On SQLite a commit between an audit append's read and its write fails the
            // append; the chain's writers and this one take turns (see `Db::lock_writes`).
            let _writes = engine.db.lock_single_writer().await;
            let ids: Vec<String> = engine.live.all().iter().map(|l| l.id.clone()).collect();
            if let Err(e) = rows::touch_all(&engine.db, &ids).await {
                tracing::warn!(sessions = ids.len(), "{e}");
            }
        }
        if let Err(e) = reconcile(&engine, Sweep::Periodic).await {
            tracing::warn!("ending sessions left by stopped gateways: {e}");
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
