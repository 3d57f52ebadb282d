//! Session starts at rate (issue 18): many people start sessions at once through the gateway's
//! HTTP API, against an emulator whose nodes echo (no shell per session), on SQLite and on
//! PostgreSQL. Every start must succeed, every session must be active with exactly one
//! `session.start` row naming it, and `porthole audit verify` must find the chain intact.
//!
//! In the normal run it starts a few dozen sessions (seconds). With `PORTHOLE_MEASURE=1` it
//! starts 500 (or `PORTHOLE_STARTS`) and prints the rate, the measurement of
//! docs/performance.md ("Session start rate (issue 18)"):
//!
//! ```sh
//! PORTHOLE_MEASURE=1 cargo test --locked --test gateway_starts -- --nocapture --test-threads 1
//! ```
//!
//! Nothing here asserts a time: the rate is printed, not checked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::api::Api;
use common::emulator::NODE;
use common::gateway::{self, Backend, both_backends};
use porthole::gateway::identity::users::Role;
use porthole::gateway::store::audit;
use reqwest::StatusCode;
use sqlx::Row;

both_backends!(sessions_start_at_rate_with_the_audit_chain_intact);

/// The people starting sessions at once (the per-user cap is raised to fit their share).
const PEOPLE: usize = 20;

async fn sessions_start_at_rate_with_the_audit_chain_intact(backend: Backend) {
    let measure = std::env::var_os("PORTHOLE_MEASURE").is_some();
    let total: usize = std::env::var("PORTHOLE_STARTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(if measure { 500 } else { 40 });
    let per_person = total.div_ceil(PEOPLE);
    let gw = gateway::start_with(
        backend,
        |emulator| emulator.echo = true,
        |config| {
            config.sessions.max_per_user = u32::try_from(per_person).unwrap();
        },
    )
    .await;
    let mut people = Vec::new();
    for n in 0..PEOPLE {
        let name = format!("oncall{n:02}");
        gw.user(&name, &[Role::Operator]).await;
        let mut api = Api::new(&gw);
        api.login(&name).await;
        people.push(api);
    }
    // Warm-up: the target list is cached after the first start, as in a running gateway.
    let warm = people[0]
        .post(
            "/api/v1/sessions",
            &serde_json::json!({"target": NODE, "reason": "INC-18 warm-up"}),
        )
        .await;
    assert_eq!(warm.status, StatusCode::CREATED, "{}", warm.text);
    let warm_id = warm.body["id"].as_str().unwrap().to_owned();
    let gone = people[0]
        .delete(&format!("/api/v1/sessions/{warm_id}"))
        .await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.text);
    wait_for_state(&gw, &warm_id, "ended").await;

    // Everyone starts their share at once, one start after the other.
    let began = Instant::now();
    let mut tasks = Vec::new();
    let mut left = total;
    for (n, mut api) in people.into_iter().enumerate() {
        let mine = per_person.min(left);
        left -= mine;
        tasks.push(tokio::spawn(async move {
            let mut started = Vec::new();
            for k in 0..mine {
                let asked = Instant::now();
                let reply = api
                    .post(
                        "/api/v1/sessions",
                        &serde_json::json!({
                            "target": NODE,
                            "reason": format!("INC-18 start {n}/{k}"),
                        }),
                    )
                    .await;
                let took = asked.elapsed();
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
                assert_eq!(reply.body["state"], "active", "{}", reply.text);
                started.push((reply.body["id"].as_str().unwrap().to_owned(), took));
            }
            started
        }));
    }
    let mut started = Vec::new();
    for task in tasks {
        started.extend(task.await.unwrap());
    }
    let wall = began.elapsed();
    assert_eq!(started.len(), total);
    let mut took: Vec<Duration> = started.iter().map(|(_, t)| *t).collect();
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    println!(
        "starts {backend:?}: {total} sessions by {PEOPLE} people in {:.2} s: {:.1} starts/s; \
         per start p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        wall.as_secs_f64(),
        total as f64 / wall.as_secs_f64(),
        at(0.5).as_secs_f64() * 1000.0,
        at(0.9).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        at(1.0).as_secs_f64() * 1000.0,
    );

    // Every session is live, here and in the table.
    let db = &gw.state.engine.db;
    for (id, _) in &started {
        assert!(gw.state.engine.live.get(id).is_some(), "{id} is not live");
    }
    let active: i64 = sqlx::query("SELECT COUNT(*) AS n FROM sessions WHERE state = 'active'")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(active, total as i64);
    // Exactly one `session.start` per session, naming it.
    let events = audit::list(db, None).await.unwrap();
    let mut starts: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == audit::kind::SESSION_START)
        .filter_map(|e| e.session_id.as_deref())
        .filter(|id| *id != warm_id)
        .collect();
    starts.sort_unstable();
    let mut expected: Vec<&str> = started.iter().map(|(id, _)| id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(starts, expected);

    // The chain, as an operator checks it.
    let dir = tempfile::tempdir().unwrap();
    let config = gw.cli_config(dir.path());
    let mut verify = Command::new(env!("CARGO_BIN_EXE_porthole"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            verify.env_remove(key);
        }
    }
    let out = verify
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{out:?}");
    assert!(text.starts_with("audit log intact: "), "{text}");
    let checked: usize = text["audit log intact: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(checked, events.len(), "{text}");
    gw.stop().await;
}

async fn wait_for_state(gw: &gateway::Gateway, id: &str, state: &str) {
    let deadline = Instant::now() + common::emulator::WAIT;
    loop {
        let row = sqlx::query("SELECT state FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_one(gw.state.engine.db.pool())
            .await
            .unwrap();
        if row.get::<String, _>("state") == state {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
