//! `GET /metrics` as Prometheus scrapes it, read with a Prometheus text parser: live sessions
//! rise and fall with a session, starts and ends (by a fixed reason), bytes relayed, attaches,
//! sign-ins by method, policy denials, AWS calls and the audit histogram move; no label carries
//! a person, a node or a session; the bearer token is asked for when set; `metrics.listen`
//! serves `/metrics` alone and the main listener then answers 404 for it.
//!
//! The counters are the process's (the tests of this file run side by side in one process), so
//! they are compared before and after (at least +1); the gauges are each gateway's own, so
//! they are compared exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::api::{Api, WAIT};
use common::emulator::NODE;
use common::gateway::{self, Backend, PASSWORD};
use porthole::gateway::config::Secret;
use porthole::gateway::identity::users::Role;
use prometheus_parse::{Scrape, Value};
use reqwest::StatusCode;

const REASON: &str = "INC-7100 metrics";
const TOKEN: &str = "scrape-token-0123456789abcdef";

/// The label names a metric may carry; anything else would be free text or an identity.
const LABEL_NAMES: &[&str] = &[
    "result",
    "reason",
    "direction",
    "mode",
    "method",
    "action",
    "service",
    "operation",
    "le",
];

/// One scrape: the text and its parse.
struct Metrics {
    text: String,
    scrape: Scrape,
}

impl Metrics {
    /// The value of `name` with `labels` (summed over the other labels); 0 when absent.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                other => panic!("{name} is not a number: {other:?}"),
            })
            .sum()
    }

    /// The TYPE line of `name`.
    fn type_of(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# TYPE {name} ")))
    }
}

fn parse(text: String) -> Metrics {
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(!scrape.samples.is_empty(), "nothing parsed from:\n{text}");
    Metrics { text, scrape }
}

/// `GET {base}/metrics` with an optional `Authorization` value: status and body.
async fn get(
    base: &str,
    authorization: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

async fn scrape(base: &str) -> Metrics {
    let (status, headers, text) = get(base, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{headers:?}"
    );
    parse(text)
}

/// Scrapes until `ready` holds (within [`WAIT`]); the last scrape.
async fn scrape_until(base: &str, what: &str, ready: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(base).await;
        if ready(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{}", m.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every label of every sample is one of [`LABEL_NAMES`], and none names `forbidden`.
fn assert_no_identities(m: &Metrics, forbidden: &[&str]) {
    let mut names = BTreeSet::new();
    for sample in &m.scrape.samples {
        assert!(
            sample.metric.starts_with("porthole_"),
            "{} is not one of ours",
            sample.metric
        );
        for (key, value) in sample.labels.iter() {
            assert!(
                LABEL_NAMES.contains(&key.as_str()),
                "{}: label {key}={value:?} is not one of the fixed labels",
                sample.metric
            );
            for word in forbidden {
                assert!(
                    !value.contains(word),
                    "{}: label {key}={value:?} carries {word:?}",
                    sample.metric
                );
            }
            names.insert(key.clone());
        }
    }
    assert!(
        names.contains("reason") && names.contains("method"),
        "{names:?}"
    );
    for word in forbidden {
        assert!(
            !m.text.contains(word),
            "the scrape names {word:?}:\n{}",
            m.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_follow_sessions_sign_ins_and_denials() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    let before = scrape(&gw.url).await;
    for (name, kind) in [
        ("porthole_sessions_live", "gauge"),
        ("porthole_browser_sockets_open", "gauge"),
        ("porthole_db_connections_in_use", "gauge"),
        ("porthole_session_starts_total", "counter"),
        ("porthole_session_ends_total", "counter"),
        ("porthole_relayed_bytes_total", "counter"),
        ("porthole_ssm_resumes_total", "counter"),
        ("porthole_handovers_total", "counter"),
        ("porthole_attaches_total", "counter"),
        ("porthole_sign_ins_total", "counter"),
        ("porthole_policy_denials_total", "counter"),
        ("porthole_aws_calls_total", "counter"),
        ("porthole_aws_errors_total", "counter"),
    ] {
        assert_eq!(before.type_of(name), Some(kind), "{name}:\n{}", before.text);
    }
    assert_eq!(before.get("porthole_sessions_live", &[]), 0.0);
    assert_eq!(before.get("porthole_browser_sockets_open", &[]), 0.0);
    // Counters of a fixed label set are there at zero before anything happened.
    for direction in ["out", "in"] {
        assert!(
            before
                .scrape
                .samples
                .iter()
                .any(|s| s.metric == "porthole_handovers_total"
                    && s.labels.get("direction") == Some(direction)),
            "handovers {direction}:\n{}",
            before.text
        );
    }

    // A wrong password, then a right one.
    let mut alice = Api::new(&gw);
    let refused = alice.login_as("alice", "not the password").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    alice.login("alice").await;
    // A policy denial: an auditor may not open sessions.
    let mut audrey = Api::new(&gw);
    audrey.login_as("audrey", PASSWORD).await;
    let reply = audrey
        .post(
            "/api/v1/sessions",
            &serde_json::json!({"target": NODE, "reason": REASON}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    // …nor may an operator read the audit log.
    assert_eq!(
        alice.get("/api/v1/audit").await.status,
        StatusCode::FORBIDDEN
    );
    let signed = scrape(&gw.url).await;
    let sign_ins = |m: &Metrics, result: &str| {
        m.get(
            "porthole_sign_ins_total",
            &[("method", "password"), ("result", result)],
        )
    };
    assert!(sign_ins(&signed, "failed") >= sign_ins(&before, "failed") + 1.0);
    assert!(sign_ins(&signed, "ok") >= sign_ins(&before, "ok") + 2.0);
    for action in ["start", "audit"] {
        let denials = |m: &Metrics| m.get("porthole_policy_denials_total", &[("action", action)]);
        assert!(denials(&signed) >= denials(&before) + 1.0, "{action}");
    }

    // A session: live, attached, output relayed both ways.
    let id = alice.open(NODE, REASON).await;
    let mut tab = alice.attach(&id).await.unwrap();
    tab.type_text("echo METRICS''-MARK\n").await;
    tab.expect("METRICS-MARK").await;
    let live = scrape(&gw.url).await;
    assert_eq!(
        live.get("porthole_sessions_live", &[]),
        1.0,
        "{}",
        live.text
    );
    assert_eq!(live.get("porthole_browser_sockets_open", &[]), 1.0);
    assert!(live.get("porthole_db_connections_in_use", &[]) >= 0.0);
    let counter = |m: &Metrics, name: &str, labels: &[(&str, &str)]| m.get(name, labels);
    assert!(
        counter(&live, "porthole_session_starts_total", &[("result", "ok")])
            >= counter(
                &signed,
                "porthole_session_starts_total",
                &[("result", "ok")]
            ) + 1.0
    );
    assert!(
        counter(&live, "porthole_attaches_total", &[("mode", "attach")])
            >= counter(&signed, "porthole_attaches_total", &[("mode", "attach")]) + 1.0
    );
    for (direction, at_least) in [("out", "METRICS-MARK".len()), ("in", "echo".len())] {
        let bytes =
            |m: &Metrics| m.get("porthole_relayed_bytes_total", &[("direction", direction)]);
        assert!(
            bytes(&live) >= bytes(&signed) + at_least as f64,
            "{direction}: {} then {}",
            bytes(&signed),
            bytes(&live)
        );
    }
    for operation in ["StartSession", "DescribeInstanceInformation"] {
        let calls = |m: &Metrics| {
            m.get(
                "porthole_aws_calls_total",
                &[("service", "ssm"), ("operation", operation)],
            )
        };
        assert!(calls(&live) >= calls(&before) + 1.0, "{operation}");
    }
    assert_eq!(
        live.type_of("porthole_session_start_seconds"),
        Some("histogram")
    );
    assert_eq!(
        live.type_of("porthole_audit_append_seconds"),
        Some("histogram")
    );
    assert!(
        live.get("porthole_session_start_seconds_count", &[]) >= 1.0,
        "{}",
        live.text
    );
    assert!(
        live.get("porthole_audit_append_seconds_count", &[])
            >= before.get("porthole_audit_append_seconds_count", &[]) + 3.0
    );

    // The shell exits: the session is over, its end counted as `exited`.
    tab.type_text("exit\n").await;
    tab.closed().await;
    let ended = scrape_until(&gw.url, "0 live sessions and 0 sockets", |m| {
        m.get("porthole_sessions_live", &[]) == 0.0
            && m.get("porthole_browser_sockets_open", &[]) == 0.0
    })
    .await;
    let ends =
        |m: &Metrics, reason: &str| m.get("porthole_session_ends_total", &[("reason", reason)]);
    assert!(ends(&ended, "exited") >= ends(&live, "exited") + 1.0);

    // Another, terminated through the API: counted as `terminated`.
    let second = alice.open(NODE, REASON).await;
    let reply = alice.delete(&format!("/api/v1/sessions/{second}")).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    let terminated = scrape_until(&gw.url, "the terminated session ended", |m| {
        m.get("porthole_sessions_live", &[]) == 0.0
            && ends(m, "terminated") >= ends(&ended, "terminated") + 1.0
    })
    .await;
    assert!(
        terminated.get(
            "porthole_aws_calls_total",
            &[("service", "ssm"), ("operation", "TerminateSession")]
        ) >= 1.0
    );

    assert_no_identities(&terminated, &["alice", "audrey", NODE, &id, &second]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_token_is_asked_for_when_set() {
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.metrics.bearer_token = Some(Secret::new(TOKEN));
    })
    .await;
    let (status, headers, body) = get(&gw.url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "{headers:?}"
    );
    assert!(!body.contains("porthole_"), "{body}");
    for wrong in [
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
    ] {
        let (status, _, _) = get(&gw.url, Some(&wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}");
    }
    let (status, _, body) = get(&gw.url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let m = parse(body);
    assert_eq!(m.get("porthole_sessions_live", &[]), 0.0);
    assert!(!m.text.contains(TOKEN));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_serves_the_metrics_alone() {
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics.bearer_token = Some(Secret::new(TOKEN));
    })
    .await;
    let addr = gw.state.metrics.addr().expect("metrics.listen was bound");
    let metrics_url = format!("http://{addr}");
    // The main listener does not serve it, with or without the token.
    let (status, _, body) = get(&gw.url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // The metrics listener does, with the token…
    let (status, _, _) = get(&metrics_url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, body) = get(&metrics_url, Some(&format!("Bearer {TOKEN}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let m = parse(body);
    assert_eq!(m.get("porthole_sessions_live", &[]), 0.0);
    // … and nothing else: not the API, not the pages.
    for path in ["/api/v1/me", "/login", "/healthz"] {
        let status = reqwest::get(format!("{metrics_url}{path}"))
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    // The gateway itself still answers on its own listener.
    assert_eq!(
        reqwest::get(format!("{}/healthz", gw.url))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    gw.stop().await;
}
