//! Waiting for the audit log: the gateway writes many events from tasks of their own (a
//! detach as the relay ends, a session's end, a policy reload, an upload), so a test polls
//! until what it expects is there, under [`WAIT`], and fails naming what it waited for.

use std::time::Duration;

use porthole::gateway::store::audit::{self, StoredEvent};
use porthole::gateway::store::db::Db;

use super::api::WAIT;

/// How often the log is read again.
const POLL: Duration = Duration::from_millis(50);

/// Reads the audit log (of `session`, or all of it) until `done` holds for its events, and
/// returns them (oldest first); fails after [`WAIT`] naming `what` and the kinds it holds.
pub async fn wait_until(
    db: &Db,
    session: Option<&str>,
    what: &str,
    done: impl Fn(&[StoredEvent]) -> bool,
) -> Vec<StoredEvent> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = audit::list(db, session).await.unwrap();
        if done(&events) {
            return events;
        }
        if tokio::time::Instant::now() >= deadline {
            let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
            let log = match session {
                Some(id) => format!("the audit log of session {id}"),
                None => "the audit log".to_owned(),
            };
            panic!("waited {WAIT:?} for {what} in {log}; it holds {kinds:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the log (of `session`, or all of it) holds at least `count` events; returns
/// the kinds of them all, oldest first.
pub async fn wait_for_kinds(db: &Db, session: Option<&str>, count: usize) -> Vec<String> {
    wait_until(db, session, &format!("{count} events"), |events| {
        events.len() >= count
    })
    .await
    .into_iter()
    .map(|e| e.kind)
    .collect()
}

/// Waits until the log (of `session`, or all of it) holds at least `count` events of `kind`;
/// returns those, oldest first.
pub async fn wait_for_events_of(
    db: &Db,
    session: Option<&str>,
    kind: &str,
    count: usize,
) -> Vec<StoredEvent> {
    let what = format!("{count} {kind} event(s)");
    wait_until(db, session, &what, |events| {
        events.iter().filter(|e| e.kind == kind).count() >= count
    })
    .await
    .into_iter()
    .filter(|e| e.kind == kind)
    .collect()
}

/// Waits for an event of `kind` in the log (of `session`, or all of it); returns the oldest.
pub async fn wait_for_event(db: &Db, session: Option<&str>, kind: &str) -> StoredEvent {
    wait_for_events_of(db, session, kind, 1).await.remove(0)
}
