//! The delivery worker: every [`POLL`], claims the deliveries that are due (a lease on each,
//! so that of several gateways on one database one sends it), POSTs them at once, signed
//! ([`super::sign`]), and records each outcome:
//!
//! - a 2xx answer: `delivered`, audited `notify.delivered`;
//! - anything else (another status, a timeout, no connection): due again after
//!   [`backoff`], or, at the last of `notify.max_attempts`, `failed`, audited `notify.failed`
//!   with the last error;
//! - a delivery whose webhook is no longer configured: `failed` at once.
//!
//! A gateway that stops in the middle of an attempt leaves its lease, which lapses
//! ([`LEASE_MARGIN`] after the webhook's timeout); the attempt counts, and another gateway (or
//! this one started again) makes the next. A receiver may so get one delivery twice: it has
//! the same `X-Porthole-Delivery` id. Nothing here runs in an API request; a slow or dead
//! receiver delays only its own deliveries.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::CONTENT_TYPE;

use super::sign;
use crate::gateway::config::notify::{DEFAULT_TIMEOUT_SECONDS, MAX_RETRY_SECONDS};
use crate::gateway::config::{Config, WebhookConfig};
use crate::gateway::store::audit;
use crate::gateway::store::db::{Db, DbError, now_ms};
use crate::gateway::store::notices::{self, Claimed};
use crate::gateway::telemetry;

/// How often the worker looks for due deliveries.
pub const POLL: Duration = Duration::from_secs(1);
/// Deliveries claimed, and sent at once, per turn; a full batch is followed by another turn
/// without waiting.
pub const BATCH: usize = 8;
/// How long a lease outlives the longest webhook timeout: the time to record the outcome.
pub const LEASE_MARGIN: Duration = Duration::from_secs(15);
/// The most of a receiver's answer kept in `last_error`, in bytes.
const ANSWER_BYTES: usize = 200;

/// The wait before the attempt after `attempts` failed ones: `retry_seconds`, doubled after
/// each further failure, at most [`MAX_RETRY_SECONDS`].
pub fn backoff(retry_seconds: u64, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 63)).unwrap_or(63);
    // At most 63 doublings: the shift cannot overflow, the product saturates.
    let wait = retry_seconds.saturating_mul(1u64 << doublings);
    Duration::from_secs(wait.min(MAX_RETRY_SECONDS))
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered,
    /// It failed, with why (never the URL).
    Failed(String),
    /// It cannot succeed by trying again (the webhook is gone), with why.
    Hopeless(String),
}

/// What to do with a claimed delivery after `attempt`, the `attempts`-th, given
/// `max_attempts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Mark it delivered.
    Delivered,
    /// Try again after this long.
    Retry(Duration, String),
    /// Mark it failed with this error.
    Failed(String),
}

/// The outcome of an attempt (pure: the schedule is tested apart from the network).
pub fn outcome(attempt: Attempt, attempts: i64, max_attempts: u32, retry_seconds: u64) -> Outcome {
    match attempt {
        Attempt::Delivered => Outcome::Delivered,
        Attempt::Hopeless(error) => Outcome::Failed(error),
        Attempt::Failed(error) if attempts >= i64::from(max_attempts) => Outcome::Failed(error),
        Attempt::Failed(error) => Outcome::Retry(backoff(retry_seconds, attempts), error),
    }
}

/// Delivers the queue until aborted (with the gateway's other background tasks).
pub async fn run(db: Db, config: Arc<Config>) {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("porthole/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            // Deliveries wait in the database for another gateway (or the next start).
            tracing::error!("notifications: no HTTP client, nothing is delivered: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match turn(&db, &config, &http).await {
                Ok(n) if n == BATCH => continue,
                Ok(_) => break,
                // The database is away for a moment: the next tick tries again.
                Err(e) => {
                    tracing::warn!("notifications: {e}");
                    break;
                }
            }
        }
    }
}

/// Claims the due deliveries (at most [`BATCH`]) and makes one attempt of each, at once; how
/// many were claimed.
pub async fn turn(db: &Db, config: &Config, http: &reqwest::Client) -> Result<usize, DbError> {
    let longest = config
        .notify
        .webhooks
        .iter()
        .map(|w| w.timeout_seconds)
        .max()
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
    let now = now_ms();
    let lease = now + millis(Duration::from_secs(longest) + LEASE_MARGIN);
    let claimed = notices::claim(db, now, lease, i64::try_from(BATCH).unwrap_or(1)).await?;
    let count = claimed.len();
    futures_util::future::join_all(claimed.into_iter().map(|c| async move {
        let attempt = match config.notify.webhook(&c.webhook) {
            Some(hook) => send(http, hook, &c).await,
            None => Attempt::Hopeless(format!(
                "the webhook {:?} is no longer configured",
                c.webhook
            )),
        };
        if let Err(e) = settle(db, config, &c, attempt).await {
            // The lease lapses and the delivery is tried again.
            tracing::warn!(delivery = %c.id, webhook = %c.webhook, "notifications: {e}");
        }
    }))
    .await;
    Ok(count)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One attempt: POSTs the stored body with its headers and signature.
async fn send(http: &reqwest::Client, hook: &WebhookConfig, c: &Claimed) -> Attempt {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let signature = sign::signature(
        hook.secret.expose().as_bytes(),
        timestamp,
        c.body.as_bytes(),
    );
    let sent = http
        .post(hook.url.expose())
        .timeout(Duration::from_secs(hook.timeout_seconds))
        .header(CONTENT_TYPE, "application/json")
        .header(sign::EVENT_HEADER, &c.topic)
        .header(sign::DELIVERY_HEADER, &c.id)
        .header(sign::TIMESTAMP_HEADER, timestamp.to_string())
        .header(sign::SIGNATURE_HEADER, signature)
        .body(c.body.clone())
        .send()
        .await;
    let url = hook.url.expose();
    match sent {
        Ok(answer) if answer.status().is_success() => Attempt::Delivered,
        Ok(mut answer) => {
            let status = answer.status();
            let mut text = Vec::new();
            while text.len() < ANSWER_BYTES {
                match answer.chunk().await {
                    Ok(Some(chunk)) => text.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            text.truncate(ANSWER_BYTES);
            let text: String = String::from_utf8_lossy(&text)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let text = text.trim();
            Attempt::Failed(scrub(
                &if text.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {text}")
                },
                url,
            ))
        }
        Err(e) => Attempt::Failed(scrub(&describe(e, hook.timeout_seconds), url)),
    }
}

/// Words for a failed request, without its URL (a webhook URL may hold its token).
fn describe(e: reqwest::Error, timeout_seconds: u64) -> String {
    let what = if e.is_timeout() {
        format!("no answer within {timeout_seconds} s")
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "the request failed".to_owned()
    };
    let e = e.without_url();
    let mut words = vec![what];
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !words.iter().any(|w| w.contains(&text)) {
            words.push(text);
        }
        source = cause.source();
    }
    words.join(": ")
}

/// `text` with `url` (and its path and query, where a token would be) replaced.
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "[webhook url]");
    if let Ok(parsed) = reqwest::Url::parse(url) {
        let path = parsed.path();
        if path.len() > 1 {
            out = out.replace(path, "[path]");
        }
        if let Some(query) = parsed.query().filter(|q| !q.is_empty()) {
            out = out.replace(query, "[query]");
        }
    }
    out
}

/// Records the outcome of `attempt` on claimed delivery `c`, with its audit event when final.
async fn settle(db: &Db, config: &Config, c: &Claimed, attempt: Attempt) -> Result<(), DbError> {
    let notify = &config.notify;
    match outcome(
        attempt,
        c.attempts,
        notify.max_attempts,
        notify.retry_seconds,
    ) {
        Outcome::Retry(wait, error) => {
            let next_at = now_ms() + millis(wait);
            if notices::retry_later(db, &c.id, c.lease, next_at, &error).await? {
                telemetry::notification(telemetry::Delivery::Retried);
                tracing::info!(
                    delivery = %c.id,
                    webhook = %c.webhook,
                    attempts = c.attempts,
                    retry_in_s = wait.as_secs(),
                    "notification not delivered, will retry: {error}"
                );
            } else {
                lapsed(c);
            }
        }
        Outcome::Delivered => {
            let mut tx = db.begin_write().await?;
            if notices::delivered(&mut tx, &c.id, c.lease, now_ms()).await? {
                append(&mut tx, audit::kind::NOTIFY_DELIVERED, c, None).await?;
                tx.commit().await?;
                telemetry::notification(telemetry::Delivery::Delivered);
                tracing::info!(
                    delivery = %c.id,
                    webhook = %c.webhook,
                    attempts = c.attempts,
                    "notification delivered"
                );
            } else {
                lapsed(c);
            }
        }
        Outcome::Failed(error) => {
            let mut tx = db.begin_write().await?;
            if notices::failed(&mut tx, &c.id, c.lease, &error).await? {
                append(&mut tx, audit::kind::NOTIFY_FAILED, c, Some(&error)).await?;
                tx.commit().await?;
                telemetry::notification(telemetry::Delivery::Failed);
                tracing::warn!(
                    delivery = %c.id,
                    webhook = %c.webhook,
                    attempts = c.attempts,
                    "notification given up: {error}"
                );
            } else {
                lapsed(c);
            }
        }
    }
    Ok(())
}

/// The audit event of a final outcome, in `tx`.
async fn append(
    tx: &mut crate::gateway::store::db::WriteTx,
    kind: &'static str,
    c: &Claimed,
    error: Option<&str>,
) -> Result<(), DbError> {
    let client = audit::Client::default();
    let error = error.map(|e| e.chars().take(notices::MAX_ERROR_CHARS).collect::<String>());
    audit::append(
        &mut tx.tx,
        &audit::Event::new(kind, "porthole", &client).detail(serde_json::json!({
            "delivery": c.id,
            "webhook": c.webhook,
            "topic": c.topic,
            "attempts": c.attempts,
            "last_error": error,
        })),
    )
    .await?;
    Ok(())
}

fn lapsed(c: &Claimed) {
    tracing::warn!(
        delivery = %c.id,
        webhook = %c.webhook,
        "notification: the lease lapsed before the outcome was recorded; another attempt will \
         be made"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_retry_seconds_up_to_ten_minutes() {
        let waits: Vec<u64> = (1..=11).map(|n| backoff(2, n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(1, 1), Duration::from_secs(1));
        assert_eq!(backoff(600, 1), Duration::from_secs(600));
        // No overflow however many attempts.
        assert_eq!(backoff(7, i64::MAX), Duration::from_secs(600));
        assert_eq!(backoff(u64::MAX, 2), Duration::from_secs(600));
        assert_eq!(backoff(3, 0), Duration::from_secs(3));
    }

    #[test]
    fn attempts_end_delivered_or_failed_at_the_last() {
        let failed = || Attempt::Failed("HTTP 500".into());
        assert_eq!(outcome(Attempt::Delivered, 8, 8, 2), Outcome::Delivered);
        assert_eq!(
            outcome(failed(), 1, 8, 2),
            Outcome::Retry(Duration::from_secs(2), "HTTP 500".into())
        );
        assert_eq!(
            outcome(failed(), 7, 8, 2),
            Outcome::Retry(Duration::from_secs(128), "HTTP 500".into())
        );
        assert_eq!(
            outcome(failed(), 8, 8, 2),
            Outcome::Failed("HTTP 500".into())
        );
        // Beyond the last (a stopped gateway's attempt counted): failed, not tried again.
        assert_eq!(
            outcome(failed(), 9, 8, 2),
            Outcome::Failed("HTTP 500".into())
        );
        assert_eq!(
            outcome(Attempt::Hopeless("gone".into()), 1, 8, 2),
            Outcome::Failed("gone".into())
        );
    }

    #[test]
    fn errors_never_carry_the_url_or_its_token() {
        let url = "https://hooks.slack.com/services/T0/B0/s3cr3tt0k3n?key=abc123";
        let text = scrub(
            &format!(
                "error sending request for url ({url}): /services/T0/B0/s3cr3tt0k3n key=abc123"
            ),
            url,
        );
        assert!(
            !text.contains("s3cr3tt0k3n") && !text.contains("abc123"),
            "{text}"
        );
        assert!(text.contains("[webhook url]"), "{text}");
        assert_eq!(scrub("HTTP 500", "http://127.0.0.1:9/"), "HTTP 500");
    }
}
