//! Replacing the policy in force: on SIGHUP, and when the file that holds it changes (its
//! modification time and size are looked at every `policy.watch_seconds`). A new policy is
//! compiled first; a bad one is refused, logged and audited (`policy.reload_failed`) and the
//! old one stays. A good one is audited (`policy.reload`, with its hash) and then swapped in
//! whole: requests already running keep the policy they started with.

use std::sync::Arc;

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::gateway::config::Config;
use crate::gateway::policy::{PolicyHandle, audit_kind, log_loaded, stamp};
use crate::gateway::store::audit::{self, Event};
use crate::gateway::store::db::Db;

/// Reads the policy again and, when it compiles and differs from the one in force, audits and
/// swaps it in. `Ok(true)`: replaced; `Ok(false)`: unchanged; `Err`: refused (logged and
/// audited; the old policy stays).
pub async fn reload(handle: &PolicyHandle, db: &Db, trigger: &str) -> Result<bool, String> {
    let old = handle.current();
    let file = handle
        .watched_file()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let client = audit::Client::default();
    let parse = |text: &str| {
        Config::from_toml_and_env(text, std::env::vars())
            .map(|c| c.policy)
            .map_err(|e| e.to_string())
    };
    let new = match handle.load_again(parse) {
        Ok(new) => new,
        Err(error) => {
            tracing::error!(
                file,
                trigger,
                "policy not reloaded, the old one stays: {error}"
            );
            let detail = json!({
                "file": file, "error": error, "trigger": trigger, "kept": old.hash(),
            });
            if let Err(e) = append(
                db,
                Event::new(audit_kind::RELOAD_FAILED, "porthole", &client).detail(detail),
            )
            .await
            {
                tracing::error!("audit of the refused policy failed: {e}");
            }
            return Err(error);
        }
    };
    if new.hash() == old.hash() {
        tracing::info!(file, trigger, "policy unchanged");
        return Ok(false);
    }
    let detail = json!({
        "file": file,
        "source": new.source().to_string(),
        "hash": new.hash(),
        "previous_hash": old.hash(),
        "roles": new.role_names(),
        "trigger": trigger,
    });
    // Audited before it takes effect: without the record, no change.
    append(
        db,
        Event::new(audit_kind::RELOAD, "porthole", &client).detail(detail),
    )
    .await
    .map_err(|e| {
        tracing::error!("policy not reloaded: the audit write failed: {e}");
        format!("the audit write failed: {e}")
    })?;
    log_loaded(&new);
    handle.replace(Arc::new(new));
    Ok(true)
}

async fn append(db: &Db, event: Event<'_>) -> Result<(), String> {
    let result = async {
        let mut tx = db.begin_write().await?;
        audit::append(&mut tx.tx, &event).await?;
        tx.commit().await
    }
    .await;
    result.map_err(|e| e.to_string())
}

/// Starts the task that reloads the policy on SIGHUP and when its file changes. The signal is
/// registered before this returns, so a SIGHUP sent once the gateway answers requests is
/// never lost. Abort the task when the gateway stops.
pub fn spawn_watcher(policy: Arc<PolicyHandle>, db: Db) -> JoinHandle<()> {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP (the policy reloads on file change only): {e}"
            );
            None
        }
    };
    let file = policy.watched_file();
    let mut tick = match (&file, policy.watch_interval()) {
        (Some(_), Some(every)) => {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            Some(tick)
        }
        _ => None,
    };
    tokio::spawn(async move {
        let mut seen = policy.loaded_stamp();
        loop {
            let trigger = tokio::select! {
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => "SIGHUP",
                () = async {
                    match tick.as_mut() {
                        Some(t) => {
                            t.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                } => {
                    let now = file.as_deref().and_then(stamp);
                    if now == seen {
                        continue;
                    }
                    "file change"
                }
            };
            seen = file.as_deref().and_then(stamp);
            // reload logs and audits its outcome.
            let _ = reload(&policy, &db, trigger).await;
        }
    })
}
