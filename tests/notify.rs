//! Webhook notifications (`gateway::notify`) on SQLite and PostgreSQL, against a receiver of
//! the test's own (an axum server on loopback) that checks every delivery's signature with the
//! webhook's secret: both formats, only the events a webhook chose, nothing from a transaction
//! that was rolled back; a receiver that answers 500 is tried again on the schedule until it
//! takes the delivery, or until the last attempt (then `failed` in `/api/v1/notifications` and
//! `notify.failed` in the audit log, the URL's token in neither); and a delivery pending when
//! its gateway stops is made by the next gateway on the database; of two gateways claiming
//! at once, each delivery goes to one, and an outcome recorded under a lapsed lease changes
//! nothing. End to end: a request made
//! through `POST /api/v1/requests`, its approval and the session started under the grant each
//! reach the receiver.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::api::{Api, WAIT};
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway, both_backends};
use hmac::{Hmac, KeyInit, Mac};
use porthole::gateway::config::{Config, WebhookConfig, WebhookFormat};
use porthole::gateway::identity::users::Role;
use porthole::gateway::notify::{self, Notice, Topic};
use porthole::gateway::policy::PolicyFile;
use porthole::gateway::store::audit::{StoredEvent, kind};
use porthole::gateway::store::db::{Db, now_ms};
use porthole::gateway::store::notices::{self, NewNotice};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

both_backends!(deliveries_are_signed_in_both_formats_and_only_as_chosen);
both_backends!(a_failing_receiver_is_tried_again_until_it_takes_the_delivery);
both_backends!(a_delivery_fails_after_its_last_attempt_and_says_why);
both_backends!(pending_deliveries_are_made_by_the_next_gateway);
both_backends!(requests_decisions_and_sessions_reach_the_receiver);
both_backends!(a_delivery_is_claimed_by_one_gateway_at_a_time);

const SECRET_A: &str = "secret-of-webhook-a-0123456789abcdef";
const SECRET_B: &str = "secret-of-webhook-b-0123456789abcdef";
const SECRET_C: &str = "secret-of-webhook-c-0123456789abcdef";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Got {
    /// The last path segment: the webhook it was configured as.
    hook: String,
    headers: HeaderMap,
    body: Vec<u8>,
    status: StatusCode,
    at: Instant,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
            .to_str()
            .unwrap()
    }

    fn delivery(&self) -> &str {
        self.header("x-porthole-delivery")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Whether the signature is that of the body and timestamp under `secret`, checked as a
    /// receiver would: HMAC-SHA256 over `{timestamp}.{body}`, hex after `v1=`.
    fn signed_with(&self, secret: &str) -> bool {
        let timestamp = self.header("x-porthole-timestamp");
        let Some(hex_tag) = self.header("x-porthole-signature").strip_prefix("v1=") else {
            return false;
        };
        let Ok(tag) = hex::decode(hex_tag) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(&self.body);
        mac.verify_slice(&tag).is_ok()
    }

    /// Checks the signature under `secret` (and that another secret fails), the content type
    /// and that the timestamp is now.
    fn assert_signed(&self, secret: &str) {
        assert!(self.signed_with(secret), "signature of {self:?}");
        assert!(
            !self.signed_with(SECRET_C),
            "another secret must not verify"
        );
        assert_eq!(self.header("content-type"), "application/json");
        let sent: i64 = self.header("x-porthole-timestamp").parse().unwrap();
        let now = now_ms() / 1000;
        assert!((now - 60..=now + 1).contains(&sent), "{sent} vs {now}");
    }
}

/// What the receiver answers.
#[derive(Debug, Default)]
struct Plan {
    /// Answer 500 to this many requests more.
    fail_next: AtomicUsize,
    /// Answer 500 to every request.
    fail_always: AtomicBool,
}

#[derive(Clone)]
struct Shared {
    got: mpsc::Sender<Got>,
    plan: Arc<Plan>,
}

struct Receiver {
    /// `http://127.0.0.1:PORT`.
    url: String,
    got: mpsc::Receiver<Got>,
    plan: Arc<Plan>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn take(
    State(shared): State<Shared>,
    Path(hook): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let plan = &shared.plan;
    let fail = plan.fail_always.load(Ordering::SeqCst)
        || plan
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let got = Got {
        hook,
        headers,
        body: body.to_vec(),
        status,
        at: Instant::now(),
    };
    // The test may have stopped listening; the answer is the same.
    let _ = shared.got.send(got).await;
    (status, if fail { "try later" } else { "ok" })
}

/// A receiver on loopback: `POST /hook/{name}`.
async fn receiver() -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // More than any test sends.
    let (tx, got) = mpsc::channel(256);
    let plan = Arc::new(Plan::default());
    let app = Router::new()
        .route("/hook/{name}", post(take))
        .with_state(Shared {
            got: tx,
            plan: plan.clone(),
        });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver {
        url,
        got,
        plan,
        task,
    }
}

impl Receiver {
    /// The next request, within [`WAIT`].
    async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.got.recv())
            .await
            .expect("a delivery within the wait")
            .unwrap()
    }

    /// The next `n` requests.
    async fn next_n(&mut self, n: usize) -> Vec<Got> {
        let mut all = Vec::new();
        for _ in 0..n {
            all.push(self.next().await);
        }
        all
    }

    /// Requests until one satisfies `done`; all of them.
    async fn until(&mut self, done: impl Fn(&Got) -> bool) -> Vec<Got> {
        let mut all = Vec::new();
        loop {
            let got = self.next().await;
            let stop = done(&got);
            all.push(got);
            if stop {
                return all;
            }
        }
    }

    fn hook(&self, name: &str, secret: &str) -> WebhookConfig {
        WebhookConfig::new(name, &format!("{}/hook/{name}", self.url), secret)
    }
}

/// Queues `notice` as the access-request code does: in a write transaction, committed.
async fn enqueue(gw: &Gateway, notice: &Notice) {
    let db = &gw.state.engine.db;
    let mut tx = db.begin_write().await.unwrap();
    notify::enqueue(&mut tx, &gw.state.config, notice)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn notice(topic: Topic, text: &str) -> Notice {
    Notice {
        topic,
        text: text.to_owned(),
        data: json!({
            "id": "r-1", "state": "pending", "user": "alice", "target": "i-0abc",
            "reason": "INC-42 disk full", "duration_seconds": 1800,
        }),
    }
}

/// An admin's API client.
async fn admin(gw: &Gateway) -> Api {
    gw.user("root", &[Role::Admin]).await;
    let mut api = Api::new(gw);
    api.login("root").await;
    api
}

/// `GET /api/v1/notifications?state=…` as `api`, asserting 200.
async fn deliveries(api: &mut Api, state: &str) -> Vec<Value> {
    let reply = api
        .get(&format!("/api/v1/notifications?state={state}"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["deliveries"].as_array().unwrap().clone()
}

/// Reads the listing until `done` holds for it (the outcome is recorded just after the
/// receiver answers), within [`WAIT`].
async fn deliveries_until(
    api: &mut Api,
    state: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = deliveries(api, state).await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "waited for deliveries; have {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn detail_of<'a>(events: &'a [StoredEvent], delivery: &str) -> &'a Value {
    &events
        .iter()
        .find(|e| e.detail["delivery"] == delivery)
        .unwrap_or_else(|| panic!("no audit event for {delivery}: {events:#?}"))
        .detail
}

async fn deliveries_are_signed_in_both_formats_and_only_as_chosen(backend: Backend) {
    let mut rx = receiver().await;
    let hooks = vec![
        rx.hook("audit-sink", SECRET_A),
        WebhookConfig {
            format: WebhookFormat::Slack,
            events: vec!["request".into(), "decision".into()],
            ..rx.hook("chat", SECRET_B)
        },
        WebhookConfig {
            events: vec!["session".into()],
            ..rx.hook("sessions-only", SECRET_C)
        },
    ];
    let gw = gateway::start(backend, |c: &mut Config| c.notify.webhooks = hooks).await;

    // A notice whose transaction is rolled back is never told.
    {
        let mut tx = gw.state.engine.db.begin_write().await.unwrap();
        notify::enqueue(
            &mut tx,
            &gw.state.config,
            &notice(Topic::Request, "rolled back"),
        )
        .await
        .unwrap();
        drop(tx);
    }
    let before = now_ms();
    let asked = notice(
        Topic::Request,
        "alice asks for i-0abc for 30 min: INC-42 <!channel> & <https://evil.example|click>",
    );
    enqueue(&gw, &asked).await;
    let decided = Notice {
        data: json!({"id": "r-1", "state": "approved", "approvals": [{"user": "bob"}]}),
        ..notice(Topic::Decision, "bob approved alice's request for i-0abc")
    };
    enqueue(&gw, &decided).await;
    let after = now_ms();

    // Two webhooks want each topic: four deliveries.
    let mut got = rx.next_n(4).await;
    got.sort_by(|a, b| {
        (a.hook.as_str(), a.header("x-porthole-event"))
            .cmp(&(b.hook.as_str(), b.header("x-porthole-event")))
    });
    let hooks_and_topics: Vec<(&str, &str)> = got
        .iter()
        .map(|g| (g.hook.as_str(), g.header("x-porthole-event")))
        .collect();
    assert_eq!(
        hooks_and_topics,
        [
            ("audit-sink", "decision"),
            ("audit-sink", "request"),
            ("chat", "decision"),
            ("chat", "request"),
        ]
    );
    for g in &got {
        assert_eq!(g.status, StatusCode::OK);
        g.assert_signed(if g.hook == "chat" { SECRET_B } else { SECRET_A });
    }

    // JSON: the notice, its delivery id (the header's) and when it was queued, in that order.
    for (g, sent) in [(&got[0], &decided), (&got[1], &asked)] {
        let body = g.json();
        assert!(
            String::from_utf8_lossy(&g.body).starts_with("{\"event\":"),
            "{body}"
        );
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = vec!["created_at", "data", "delivery", "event", "text"];
        let mut have = keys.clone();
        have.sort_unstable();
        want.sort_unstable();
        assert_eq!(have, want, "{body}");
        assert_eq!(body["event"], sent.topic.as_str());
        assert_eq!(body["text"], sent.text.as_str());
        assert_eq!(body["data"], sent.data);
        assert_eq!(body["delivery"], g.delivery());
        let at = body["created_at"].as_i64().unwrap();
        assert!((before..=after).contains(&at), "{at} in {before}..={after}");
    }
    // Slack: the line alone, Slack's markup characters escaped (no @channel, no link).
    assert_eq!(
        got[2].json(),
        json!({"text": "bob approved alice's request for i-0abc"})
    );
    assert_eq!(
        got[3].json(),
        json!({"text": "alice asks for i-0abc for 30 min: INC-42 &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"})
    );
    let ids: std::collections::BTreeSet<&str> = got.iter().map(Got::delivery).collect();
    assert_eq!(ids.len(), 4, "one id per delivery");

    // The admins' view: exactly those four (none for the rolled-back notice, none for
    // sessions-only), delivered at the first attempt; each audited.
    let mut api = admin(&gw).await;
    let listed = deliveries_until(&mut api, "all", |l| {
        l.len() == 4 && l.iter().all(|d| d["state"] == "delivered")
    })
    .await;
    for d in &listed {
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["last_error"], Value::Null, "{d}");
        assert_eq!(d["next_at"], Value::Null, "{d}");
        let at = d["delivered_at"].as_i64().unwrap();
        assert!(at >= d["created_at"].as_i64().unwrap());
        assert!(ids.contains(d["id"].as_str().unwrap()), "{d}");
        assert_ne!(d["webhook"], "sessions-only");
    }
    // Newest first.
    let created: Vec<i64> = listed
        .iter()
        .map(|d| d["created_at"].as_i64().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    assert!(deliveries(&mut api, "pending").await.is_empty());
    assert!(deliveries(&mut api, "failed").await.is_empty());
    assert_eq!(deliveries(&mut api, "delivered").await.len(), 4);
    let events =
        audit_log::wait_for_events_of(&gw.state.engine.db, None, kind::NOTIFY_DELIVERED, 4).await;
    assert_eq!(events.len(), 4);
    for g in &got {
        let detail = detail_of(&events, g.delivery());
        assert_eq!(detail["webhook"], g.hook.as_str());
        assert_eq!(detail["topic"], g.header("x-porthole-event"));
        assert_eq!(detail["attempts"], 1);
        assert_eq!(detail["last_error"], Value::Null);
    }
    assert!(events.iter().all(|e| e.actor == "porthole"));

    // Who may not read the audit log may not read this; a bad state is named.
    let reply = api.get("/api/v1/notifications?state=sent").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert!(
        reply
            .message()
            .contains("pending, delivered, failed or all"),
        "{}",
        reply.text
    );
    gw.user("alice", &[Role::Operator]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let reply = alice.get("/api/v1/notifications").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    gw.user("audrey", &[Role::Auditor]).await;
    let mut audrey = Api::new(&gw);
    audrey.login("audrey").await;
    assert_eq!(deliveries(&mut audrey, "all").await.len(), 4);
    let reply = Api::new(&gw).get("/api/v1/notifications").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(rx.got.try_recv().is_err(), "nothing more was sent");
    gw.stop().await;
}

async fn a_failing_receiver_is_tried_again_until_it_takes_the_delivery(backend: Backend) {
    let mut rx = receiver().await;
    rx.plan.fail_next.store(2, Ordering::SeqCst);
    let hook = rx.hook("flaky", SECRET_A);
    let gw = gateway::start(backend, |c: &mut Config| {
        c.notify.webhooks = vec![hook];
        c.notify.max_attempts = 5;
        c.notify.retry_seconds = 1;
    })
    .await;
    let mut api = admin(&gw).await;
    enqueue(
        &gw,
        &notice(Topic::Decision, "bob denied alice's request for i-0abc"),
    )
    .await;

    let first = rx.next().await;
    let second = rx.next().await;
    assert_eq!(
        (first.status, second.status),
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR
        )
    );
    // Between the second attempt and the third: pending, with why and when next.
    let pending = deliveries_until(&mut api, "pending", |l| {
        l.first().is_some_and(|d| d["attempts"] == 2)
    })
    .await;
    let d = &pending[0];
    assert_eq!(d["state"], "pending");
    assert_eq!(
        d["last_error"], "HTTP 500 Internal Server Error: try later",
        "{d}"
    );
    assert!(
        d["next_at"].as_i64().unwrap() > d["created_at"].as_i64().unwrap(),
        "{d}"
    );
    let third = rx.next().await;
    assert_eq!(third.status, StatusCode::OK);

    // The same delivery each time, the same bytes, each attempt signed anew.
    for g in [&first, &second, &third] {
        g.assert_signed(SECRET_A);
        assert_eq!(g.delivery(), first.delivery());
        assert_eq!(g.body, first.body);
    }
    // The waits: retry_seconds, then twice that.
    let (gap1, gap2) = (second.at - first.at, third.at - second.at);
    assert!(gap1 >= Duration::from_millis(990), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(1990), "{gap2:?}");

    let listed = deliveries_until(&mut api, "delivered", |l| l.len() == 1).await;
    assert_eq!(listed[0]["id"], first.delivery());
    assert_eq!(listed[0]["attempts"], 3);
    assert_eq!(listed[0]["last_error"], Value::Null);
    let event = audit_log::wait_for_event(&gw.state.engine.db, None, kind::NOTIFY_DELIVERED).await;
    assert_eq!(event.detail["attempts"], 3);
    assert_eq!(event.detail["delivery"], first.delivery());
    assert!(rx.got.try_recv().is_err(), "nothing after the 2xx");
    gw.stop().await;
}

async fn a_delivery_fails_after_its_last_attempt_and_says_why(backend: Backend) {
    let mut rx = receiver().await;
    rx.plan.fail_always.store(true, Ordering::SeqCst);
    // A port nobody listens on, and a URL with a token in its path and query.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let hooks = vec![
        rx.hook("flaky", SECRET_A),
        WebhookConfig::new(
            "nowhere",
            &format!("http://{closed}/services/T0/B0/t0k3n-s3cret?key=k3y-s3cret"),
            SECRET_B,
        ),
    ];
    let gw = gateway::start(backend, |c: &mut Config| {
        c.notify.webhooks = hooks;
        c.notify.max_attempts = 2;
        c.notify.retry_seconds = 1;
    })
    .await;
    let mut api = admin(&gw).await;
    enqueue(
        &gw,
        &notice(
            Topic::BreakGlass,
            "carol granted herself i-0abc: INC-9 outage",
        ),
    )
    .await;

    let attempts = rx.next_n(2).await;
    for g in &attempts {
        assert_eq!(g.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(g.header("x-porthole-event"), "break_glass");
        g.assert_signed(SECRET_A);
    }
    let failed = deliveries_until(&mut api, "failed", |l| l.len() == 2).await;
    let by_hook = |name: &str| {
        failed
            .iter()
            .find(|d| d["webhook"] == name)
            .unwrap()
            .clone()
    };
    let flaky = by_hook("flaky");
    assert_eq!(flaky["id"], attempts[0].delivery());
    assert_eq!(flaky["attempts"], 2);
    assert_eq!(flaky["topic"], "break_glass");
    assert_eq!(
        flaky["last_error"],
        "HTTP 500 Internal Server Error: try later"
    );
    assert_eq!(flaky["next_at"], Value::Null);
    assert_eq!(flaky["delivered_at"], Value::Null);
    let nowhere = by_hook("nowhere");
    assert_eq!(nowhere["attempts"], 2);
    let error = nowhere["last_error"].as_str().unwrap();
    assert!(error.starts_with("could not connect"), "{error}");
    assert!(deliveries(&mut api, "pending").await.is_empty());

    let events =
        audit_log::wait_for_events_of(&gw.state.engine.db, None, kind::NOTIFY_FAILED, 2).await;
    for d in [&flaky, &nowhere] {
        let detail = detail_of(&events, d["id"].as_str().unwrap());
        assert_eq!(detail["webhook"], d["webhook"]);
        assert_eq!(detail["topic"], "break_glass");
        assert_eq!(detail["attempts"], 2);
        assert_eq!(detail["last_error"], d["last_error"]);
    }
    // The URL's token is in no answer and no audit row.
    let all = deliveries(&mut api, "all").await;
    let audit = api.get("/api/v1/audit?type=notify.failed").await;
    for text in [serde_json::to_string(&all).unwrap(), audit.text.clone()] {
        assert!(
            !text.contains("t0k3n") && !text.contains("k3y-s3cret"),
            "{text}"
        );
    }
    assert_eq!(audit.body["events"].as_array().unwrap().len(), 2);
    assert!(rx.got.try_recv().is_err(), "no attempt after the last");
    gw.stop().await;
}

async fn pending_deliveries_are_made_by_the_next_gateway(backend: Backend) {
    let mut rx = receiver().await;
    rx.plan.fail_always.store(true, Ordering::SeqCst);
    let webhooks = |rx: &Receiver, both: bool| {
        let mut hooks = vec![WebhookConfig {
            timeout_seconds: 2,
            ..rx.hook("kept", SECRET_A)
        }];
        if both {
            hooks.push(rx.hook("dropped", SECRET_B));
        }
        hooks
    };
    let hooks = webhooks(&rx, true);
    let gw = gateway::start(backend, |c: &mut Config| {
        c.notify.webhooks = hooks;
        c.notify.max_attempts = 50;
        c.notify.retry_seconds = 1;
    })
    .await;
    enqueue(
        &gw,
        &notice(
            Topic::Session,
            "alice started a session on i-0abc under r-1",
        ),
    )
    .await;
    // Both tried (and refused) while the first gateway runs.
    let seen = rx.next_n(2).await;
    let id_of = |hook: &str| {
        seen.iter()
            .find(|g| g.hook == hook)
            .unwrap()
            .delivery()
            .to_owned()
    };
    let (kept_id, dropped_id) = (id_of("kept"), id_of("dropped"));
    let kept = gw.stop_keeping_database().await;

    // The receiver recovers; the next gateway, on the same database, knows only `kept`.
    rx.plan.fail_always.store(false, Ordering::SeqCst);
    let hooks = webhooks(&rx, false);
    let gw = gateway::start_on(&kept, |c: &mut Config| {
        c.notify.webhooks = hooks;
        c.notify.max_attempts = 50;
        c.notify.retry_seconds = 1;
    })
    .await;
    let tail = rx.until(|g| g.status == StatusCode::OK).await;
    let taken = tail.last().unwrap();
    assert_eq!(taken.hook, "kept", "{tail:?}");
    assert_eq!(taken.delivery(), kept_id);
    taken.assert_signed(SECRET_A);
    assert_eq!(
        taken.json()["text"],
        "alice started a session on i-0abc under r-1"
    );

    let mut api = admin(&gw).await;
    let listed = deliveries_until(&mut api, "all", |l| {
        l.len() == 2 && l.iter().all(|d| d["state"] != "pending")
    })
    .await;
    let by_id = |id: &str| listed.iter().find(|d| d["id"] == id).unwrap().clone();
    let delivered = by_id(&kept_id);
    assert_eq!(delivered["state"], "delivered");
    assert!(delivered["attempts"].as_i64().unwrap() >= 2, "{delivered}");
    let gone = by_id(&dropped_id);
    assert_eq!(gone["state"], "failed");
    assert_eq!(
        gone["last_error"],
        "the webhook \"dropped\" is no longer configured"
    );

    let db = &gw.state.engine.db;
    let events = audit_log::wait_for_events_of(db, None, kind::NOTIFY_DELIVERED, 1).await;
    assert_eq!(detail_of(&events, &kept_id)["webhook"], "kept");
    let events = audit_log::wait_for_events_of(db, None, kind::NOTIFY_FAILED, 1).await;
    assert_eq!(detail_of(&events, &dropped_id)["webhook"], "dropped");
    gw.stop().await;
    kept.drop_database().await;
}

/// prod: the prod nodes after one approval by leads; leads: approves, opens nothing;
/// auditors: read the audit log (and so the notifications).
const POLICY: &str = r#"
[[roles]]
name = "prod"
targets = [{ tags = ["env=prod"] }]
reason = { pattern = "^INC-[0-9]+" }
[roles.approval]
approvers = ["leads"]
grant_seconds = 600

[[roles]]
name = "leads"

[[roles]]
name = "auditors"
read_audit = true

[[roles]]
name = "oncall"
targets = [{ tags = ["env=prod"] }]
[roles.approval]
approvers = ["leads"]
break_glass = true
"#;

async fn requests_decisions_and_sessions_reach_the_receiver(backend: Backend) {
    let mut rx = receiver().await;
    let hooks = vec![
        rx.hook("audit-sink", SECRET_A),
        WebhookConfig {
            format: WebhookFormat::Slack,
            events: vec!["request".into(), "decision".into(), "break_glass".into()],
            ..rx.hook("chat", SECRET_B)
        },
    ];
    let file: PolicyFile = toml::from_str(POLICY).unwrap();
    let gw = gateway::start(backend, |c: &mut Config| {
        c.policy.roles = Some(file.roles);
        c.notify.webhooks = hooks;
    })
    .await;
    let signed_in = |name: &'static str, role: &'static str| {
        let gw = &gw;
        async move {
            gw.user(name, &[Role::parse(role).unwrap()]).await;
            let mut api = Api::new(gw);
            api.login(name).await;
            api
        }
    };
    let mut alice = signed_in("alice", "prod").await;
    let mut bob = signed_in("bob", "leads").await;

    // alice asks: both webhooks are told, JSON with the request object.
    let reason = "INC-4711 disk filling up on web-1";
    let reply = alice
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": reason, "duration_seconds": 600}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let mut asked = rx.next_n(2).await;
    asked.sort_by(|a, b| a.hook.cmp(&b.hook));
    for g in &asked {
        assert_eq!(g.header("x-porthole-event"), "request");
        g.assert_signed(if g.hook == "chat" { SECRET_B } else { SECRET_A });
    }
    let body = asked[0].json();
    assert_eq!(asked[0].hook, "audit-sink");
    assert_eq!(body["event"], "request");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["user"], "alice");
    assert_eq!(body["data"]["target"], NODE);
    assert_eq!(body["data"]["state"], "pending");
    assert_eq!(body["delivery"], asked[0].delivery());
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("alice") && text.contains(NODE) && text.contains(reason),
        "{text}"
    );
    assert_eq!(asked[1].hook, "chat");
    assert_eq!(asked[1].json(), json!({ "text": text }));

    // bob approves: a decision that names the requester.
    let reply = bob
        .post(
            &format!("/api/v1/requests/{id}/approve"),
            &json!({"comment": "go ahead"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let mut decided = rx.next_n(2).await;
    decided.sort_by(|a, b| a.hook.cmp(&b.hook));
    for g in &decided {
        assert_eq!(g.header("x-porthole-event"), "decision");
        g.assert_signed(if g.hook == "chat" { SECRET_B } else { SECRET_A });
    }
    let body = decided[0].json();
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["state"], "approved");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("alice") && text.contains("bob"), "{text}");
    assert_eq!(decided[1].json()["text"], text);

    // alice starts a session under the grant: only the webhook that wants sessions is told.
    let session = alice.open(NODE, reason).await;
    let started = rx.next().await;
    assert_eq!(started.hook, "audit-sink");
    assert_eq!(started.header("x-porthole-event"), "session");
    started.assert_signed(SECRET_A);
    let text = started.json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("alice") && text.contains(&session), "{text}");

    // gus breaks the glass: both webhooks are told, loudly, with his reason.
    let mut gus = signed_in("gus", "oncall").await;
    let reply = gus
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": "site down, nobody answers", "break_glass": true,
                    "duration_seconds": 60}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["state"], "approved");
    let mut broken = rx.next_n(2).await;
    broken.sort_by(|a, b| a.hook.cmp(&b.hook));
    for g in &broken {
        assert_eq!(g.header("x-porthole-event"), "break_glass");
    }
    let text = broken[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("BREAK-GLASS: gus granted themselves access to")
            && text.contains("site down, nobody answers"),
        "{text}"
    );
    assert_eq!(broken[1].json(), json!({ "text": text }));

    let mut api = signed_in("audrey", "auditors").await;
    let listed = deliveries_until(&mut api, "delivered", |l| l.len() == 7).await;
    let topics: Vec<&str> = listed
        .iter()
        .map(|d| d["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        topics.iter().filter(|t| **t == "session").count(),
        1,
        "{topics:?}"
    );
    assert!(rx.got.try_recv().is_err(), "nothing more was sent");
    gw.stop().await;
}

/// Two gateways' workers (two pools on one database, each with its own write lock, as two
/// processes have) claim at once: each delivery goes to one of them. A lease keeps a row from
/// being claimed again until it lapses; an outcome recorded under a lapsed lease (the first
/// claimer, late) changes nothing, under the current one it does.
async fn a_delivery_is_claimed_by_one_gateway_at_a_time(backend: Backend) {
    let kept = gateway::fresh_database(backend).await;
    let a = Db::connect(&kept.url).await.unwrap();
    a.migrate().await.unwrap();
    let b = Db::connect(&kept.url).await.unwrap();
    let now = now_ms();
    let mut tx = a.begin_write().await.unwrap();
    for i in 0..20 {
        let id = format!("d-{i:02}");
        notices::insert(
            &mut tx,
            &NewNotice {
                id: &id,
                webhook: "w",
                topic: "request",
                body: "{}",
                created_at: now,
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let lease = now + 60_000;
    let (by_a, by_b) = tokio::join!(
        notices::claim(&a, now, lease, 20),
        notices::claim(&b, now, lease + 1, 20)
    );
    let (by_a, by_b) = (by_a.unwrap(), by_b.unwrap());
    let mut ids: Vec<&str> = by_a.iter().chain(&by_b).map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        20,
        "each once: {} by a, {} by b",
        by_a.len(),
        by_b.len()
    );
    assert_eq!(by_a.len() + by_b.len(), 20);
    assert!(
        by_a.iter()
            .chain(&by_b)
            .all(|c| c.attempts == 1 && c.body == "{}")
    );
    // Leased: not claimed again before the lease ends.
    assert!(
        notices::claim(&b, lease - 1, lease + 60_000, 20)
            .await
            .unwrap()
            .is_empty()
    );

    // The lease lapsed: claimed again, the second attempt, under a new lease.
    let later = lease + 2;
    let again = notices::claim(&b, later, later + 60_000, 20).await.unwrap();
    assert_eq!(again.len(), 20);
    assert!(
        again
            .iter()
            .all(|c| c.attempts == 2 && c.lease == later + 60_000)
    );
    let old = by_a.first().or(by_b.first()).unwrap();
    let mut tx = a.begin_write().await.unwrap();
    assert!(
        !notices::delivered(&mut tx, &old.id, old.lease, later)
            .await
            .unwrap()
    );
    assert!(
        !notices::failed(&mut tx, &old.id, old.lease, "late")
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    assert!(
        !notices::retry_later(&a, &old.id, old.lease, later, "late")
            .await
            .unwrap()
    );
    let mut tx = b.begin_write().await.unwrap();
    assert!(
        notices::delivered(&mut tx, &old.id, later + 60_000, later)
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let other = again.iter().find(|c| c.id != old.id).unwrap();
    assert!(
        notices::retry_later(&b, &other.id, other.lease, later + 5_000, "HTTP 502")
            .await
            .unwrap()
    );

    let all = notices::list(&a, notices::StateFilter::All, 200)
        .await
        .unwrap();
    assert_eq!(all.len(), 20);
    let row = |id: &str| all.iter().find(|d| d.id == id).unwrap();
    let done = row(&old.id);
    assert_eq!(
        (done.state.as_str(), done.attempts, done.delivered_at),
        ("delivered", 2, Some(later))
    );
    let waiting = row(&other.id);
    assert_eq!(waiting.state, "pending");
    assert_eq!(waiting.next_at, Some(later + 5_000));
    assert_eq!(waiting.last_error.as_deref(), Some("HTTP 502"));
    let pending = notices::StateFilter::parse("pending").unwrap();
    assert_eq!(notices::list(&a, pending, 200).await.unwrap().len(), 19);
    a.pool().close().await;
    b.pool().close().await;
    kept.drop_database().await;
}
