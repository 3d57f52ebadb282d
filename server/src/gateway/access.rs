//! The access sweep: every [`SWEEP`], the owners of this gateway's live sessions are read
//! again, and the sessions of anyone disabled since (`porthole users disable` runs in another
//! process, or on another gateway) are ended with `TerminateSession`, recorded as
//! "access revoked". Wiring: it reads users through identity and ends sessions through the
//! engine, which know nothing of each other.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::identity::users;
use super::sessions::{Engine, upkeep};

/// How often the owners of live sessions are checked: a disabled person's sessions end within
/// this (plus the time `TerminateSession` takes), well inside 10 seconds.
pub const SWEEP: Duration = Duration::from_secs(3);

/// Ends the live sessions of owners who are disabled or gone; how many.
pub async fn sweep(engine: &Engine) -> usize {
    let live = engine.live.all();
    let owners: BTreeSet<i64> = live.iter().map(|l| l.user_id).collect();
    let mut revoked = BTreeSet::new();
    for owner in owners {
        match users::find_by_id(&engine.db, owner).await {
            Ok(Some(user)) if !user.disabled => {}
            Ok(_) => {
                revoked.insert(owner);
            }
            // The database is down for a moment: next time.
            Err(e) => tracing::warn!("access sweep: {e}"),
        }
    }
    let mut ended = 0;
    for session in live.iter().filter(|l| revoked.contains(&l.user_id)) {
        upkeep::revoke(session, upkeep::ACCESS_REVOKED).await;
        ended += 1;
    }
    ended
}

/// Runs [`sweep`] every [`SWEEP`] until aborted.
pub async fn run(engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(SWEEP);
    loop {
        tick.tick().await;
        if engine.live.is_empty() {
            continue;
        }
        sweep(&engine).await;
    }
}
