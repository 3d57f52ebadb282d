//! Notifications: what happened to access requests, told to chat and to other systems by
//! webhook (`[[notify.webhooks]]`). A notice is queued in the database in the transaction
//! that records its event ([`enqueue`]), so that nothing is told that did not happen and
//! nothing that happened is lost when a gateway stops; a worker delivers the queue, signed,
//! with retries. Imports `store`, `config`, `facts` and `telemetry`; knows nothing of HTTP
//! handlers or the session engine.

use crate::gateway::config::Config;
use crate::gateway::store::db::{DbError, WriteTx};

/// What a notice is about; webhooks choose theirs in `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// A person asked for access (`"request"`).
    Request,
    /// A request was approved, denied, revoked or expired (`"decision"`).
    Decision,
    /// A person granted themselves access without an approver (`"break_glass"`).
    BreakGlass,
    /// A session started under a grant (`"session"`).
    Session,
}

impl Topic {
    /// The name used in `events` and in the JSON body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Decision => "decision",
            Self::BreakGlass => "break_glass",
            Self::Session => "session",
        }
    }
}

/// One notice.
#[derive(Debug, Clone)]
pub struct Notice {
    /// What it is about.
    pub topic: Topic,
    /// One line for people (the Slack format's text): names who, what node, why.
    pub text: String,
    /// The facts, for programs (the JSON format's `data`): the request object.
    pub data: serde_json::Value,
}

/// Queues `notice` for every webhook that wants its topic, in `tx` (committed with the event
/// it tells of).
pub async fn enqueue(tx: &mut WriteTx, config: &Config, notice: &Notice) -> Result<(), DbError> {
    // Filled in by the webhook delivery work (queue table, worker, signatures).
    let _ = (tx, config, notice);
    Ok(())
}
