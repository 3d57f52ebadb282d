//! The access sweep: every [`SWEEP`], the owners of this gateway's live sessions are read
//! again. The sessions of anyone disabled since (`porthole users disable` runs in another
//! process, or on another gateway), and the sessions on nodes an owner's roles no longer reach
//! (groups lost at a sign-in on any gateway, a policy reload), are ended with
//! `TerminateSession`, recorded as "access revoked". Wiring: it reads users through identity
//! and ends sessions through the engine, which know nothing of each other.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::http::AppState;
use super::identity::{Identity, users};
use super::sessions::{Engine, engine, upkeep};

/// How often the owners of live sessions are checked: a disabled person's sessions end within
/// this (plus the time `TerminateSession` takes), well inside 10 seconds.
pub const SWEEP: Duration = Duration::from_secs(3);

/// Ends the live sessions of owners who are disabled or gone, and those on nodes their roles
/// no longer reach; how many.
pub async fn sweep(engine: &Engine, identity: &Identity) -> usize {
    let live = engine.live.all();
    let owners: BTreeSet<i64> = live.iter().map(|l| l.user_id).collect();
    let mut ended = 0;
    for owner in owners {
        match users::find_by_id(&engine.db, owner).await {
            Ok(Some(user)) if !user.disabled => {
                // Roles as the person holds them now, grants from the policy in force.
                let user = identity.resolve(user);
                ended += engine::revoke_unreachable(engine, &user, upkeep::ACCESS_REVOKED).await;
            }
            Ok(_) => {
                for session in live.iter().filter(|l| l.user_id == owner) {
                    upkeep::revoke(engine, session, upkeep::ACCESS_REVOKED).await;
                    ended += 1;
                }
            }
            // The database is down for a moment: next time.
            Err(e) => tracing::warn!("access sweep: {e}"),
        }
    }
    ended
}

/// Runs [`sweep`] every [`SWEEP`] until aborted.
pub async fn run(engine: Arc<Engine>, state: Arc<AppState>) {
    let mut tick = tokio::time::interval(SWEEP);
    loop {
        tick.tick().await;
        if engine.live.is_empty() {
            continue;
        }
        sweep(&engine, &state.identity).await;
    }
}
