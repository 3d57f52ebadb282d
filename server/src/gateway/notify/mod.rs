//! Notifications: what happened to access requests, told to chat and to other systems by
//! webhook (`[[notify.webhooks]]`). A notice is queued in the database in the transaction
//! that records its event ([`enqueue`]), so that nothing is told that did not happen and
//! nothing that happened is lost when a gateway stops; a worker delivers the queue, signed,
//! with retries ([`worker::run`]). Imports `store`, `config`, `facts` and `telemetry`; knows
//! nothing of HTTP handlers or the session engine.
//!
//! - [`render`]: the bodies, one per format (pure).
//! - [`sign`]: the headers and the signature a receiver checks (pure).
//! - [`worker`]: claims due deliveries, POSTs them, records each outcome; the retry schedule.
//!
//! `docs/approvals.md` (Notifications) is the receiver's side of it.

pub mod render;
pub mod sign;
pub mod worker;

pub use worker::run;

use crate::gateway::config::Config;
use crate::gateway::store::db::{DbError, WriteTx, now_ms};
use crate::gateway::store::notices::{self, NewNotice};

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
/// it tells of). Each gets its own delivery id and its body rendered now, in the webhook's
/// format; with no webhook wanting the topic, nothing is written.
pub async fn enqueue(tx: &mut WriteTx, config: &Config, notice: &Notice) -> Result<(), DbError> {
    let created_at = now_ms();
    let topic = notice.topic.as_str();
    for hook in config.notify.webhooks.iter().filter(|w| w.wants(topic)) {
        let id = uuid::Uuid::new_v4().to_string();
        let body = render::body(hook.format, notice, &id, created_at)
            .map_err(|e| DbError::new("render notification", sqlx::Error::Encode(Box::new(e))))?;
        notices::insert(
            tx,
            &NewNotice {
                id: &id,
                webhook: &hook.name,
                topic,
                body: &body,
                created_at,
            },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::config::notify::EVENTS;

    #[test]
    fn topics_are_the_events_webhooks_choose_from() {
        let topics = [
            Topic::Request,
            Topic::Decision,
            Topic::BreakGlass,
            Topic::Session,
        ];
        let names: Vec<&str> = topics.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, EVENTS);
    }
}
