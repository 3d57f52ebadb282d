//! Ending a running session without a person at its terminal: here (its task records the
//! end) or through the gateway that runs it. Used by terminating, by revoked and expired
//! grants, and by the internal API other gateways call.

use serde_json::json;

use super::{Engine, Error, live};
use crate::gateway::aws;
use crate::gateway::store::gateways::{self, Registered};
use crate::gateway::store::sessions::SessionView;

/// Ends session `id`, which this gateway runs, recorded as `how`, and terminates it at SSM (as
/// the person when a role was assumed for them, else, or when that fails, as the gateway).
/// The session's task records the end.
pub async fn end_here(engine: &Engine, id: &str, how: &str) -> Result<(), Error> {
    let Some(live) = engine.live.get(id) else {
        return Err(Error::SessionEnded(format!(
            "session {id} is not running on this gateway"
        )));
    };
    live.ending(how).await;
    live.terminate_at_ssm(engine, live::Credentials::Session)
        .await
        .map_err(|detail| {
            Error::Upstream(aws::Failure {
                summary: "TerminateSession was refused by AWS or failed".into(),
                detail: format!("TerminateSession: {detail}"),
            })
        })?;
    Ok(())
}

/// Asks `owner`, the gateway running session `id`, to end it as `how`.
pub(super) async fn ask_owner_to_end(
    engine: &Engine,
    owner: &Registered,
    id: &str,
    client_addr: &str,
    how: &str,
) -> Result<(), Error> {
    engine
        .cluster
        .post::<serde_json::Value>(
            owner,
            &format!("/internal/v1/sessions/{id}/end"),
            client_addr,
            &json!({"how": how}),
            crate::gateway::cluster::PEER_TIMEOUT,
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::warn!(session = %id, "ending through {}: {e}", owner.id);
            Error::OwnerUnreachable(format!(
                "the gateway running session {id} ({}) did not end it; try again shortly",
                owner.id
            ))
        })
}

/// Ends `view` as `how`, on this gateway or through the one that runs it (no person asked:
/// a grant was revoked or ran out; the session's task records the end).
pub async fn end_anywhere(engine: &Engine, view: &SessionView, how: &str) -> Result<(), Error> {
    if engine.live.get(&view.id).is_some() {
        return end_here(engine, &view.id, how).await;
    }
    let owner = gateways::owner_of(&engine.db, &view.id)
        .await?
        .filter(|g| g.id != engine.cluster.id && g.is_alive(engine.cluster.fresh_after()));
    match owner {
        Some(owner) if engine.cluster.is_clustered() => {
            ask_owner_to_end(engine, &owner, &view.id, "", how).await
        }
        _ => Err(Error::SessionEnded(format!(
            "session {} is not running on a live gateway",
            view.id
        ))),
    }
}
