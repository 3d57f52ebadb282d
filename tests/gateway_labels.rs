#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! Labels on recordings (`GET`/`PUT /api/v1/sessions/{id}/labels`,
//! `GET /api/v1/recordings/labels?q=`), on SQLite and PostgreSQL: the owner labels a session
//! while it runs and after; an auditor labels others' ended sessions but not running ones;
//! another operator never learns the session exists; every change is audited with the new
//! tags and note; bad tags and notes are refused with 422 `invalid_labels` naming the problem
//! and nothing stored; the CSRF token and Origin are required; the search finds a session by a
//! tag or a word of the note, only among the sessions the caller may read; the play and search
//! pages show them, escaped.

mod common;

use common::api::{Api, Reply};
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway, both_backends};
use porthole::gateway::identity::users::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_backends!(owners_and_auditors_label_sessions_and_search_finds_them);
both_backends!(bad_labels_are_refused_and_nothing_is_stored);

fn path(id: &str) -> String {
    format!("/api/v1/sessions/{id}/labels")
}

async fn put(api: &mut Api, id: &str, body: &Value) -> Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    api.send(Method::PUT, &path(id), Some(&bytes)).await
}

async fn signed_in(gw: &Gateway, name: &str, role: Role) -> Api {
    gw.user(name, &[role]).await;
    let mut api = Api::new(gw);
    api.login(name).await;
    api
}

/// The ids of the sessions `GET /api/v1/recordings/labels?q=` finds for `api`.
async fn find(api: &mut Api, q: &str) -> Vec<String> {
    let reply = api
        .get(&format!(
            "/api/v1/recordings/labels?q={}",
            porthole::gateway::http::layout::encode_component(q)
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{q:?}: {}", reply.text);
    reply.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"]["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn owners_and_auditors_label_sessions_and_search_finds_them(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    let mut alice = signed_in(&gw, "alice", Role::Operator).await;
    let mut bob = signed_in(&gw, "bob", Role::Operator).await;
    let mut audrey = signed_in(&gw, "audrey", Role::Auditor).await;
    let id = alice.open(NODE, "INC-4211 disk full on the db host").await;

    // Never labelled: empty.
    let reply = alice.get(&path(&id)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"tags": [], "note": "", "updated_by": null, "updated_at": null})
    );

    // The owner labels the running session: kept trimmed, lower case, sorted, once each.
    let reply = put(
        &mut alice,
        &id,
        &json!({"tags": ["INC-4211", " db ", "inc-4211"], "note": "  /var filled up\r\nfixed by rotating logs "}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["tags"], json!(["db", "inc-4211"]));
    assert_eq!(reply.body["note"], "/var filled up\nfixed by rotating logs");
    assert_eq!(reply.body["updated_by"], "alice");
    assert!(reply.body["updated_at"].as_i64().unwrap() > 0);
    assert_eq!(alice.get(&path(&id)).await.body, reply.body);

    // Audited with what was set, in the session's log.
    let event = audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.label").await;
    assert_eq!(event.actor, "alice");
    assert_eq!(event.target.as_deref(), Some(NODE));
    assert_eq!(event.detail["tags"], json!(["db", "inc-4211"]));
    assert_eq!(
        event.detail["note"],
        "/var filled up\nfixed by rotating logs"
    );
    assert_eq!(event.detail["owner"], "alice");

    // Another operator: the session does not exist for them, to read or to label.
    let reply = bob.get(&path(&id)).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let reply = put(&mut bob, &id, &json!({"tags": ["mine"]})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(reply.code(), "unknown_session");
    assert!(find(&mut bob, "inc-4211").await.is_empty());

    // An auditor reads the labels of a running session but labels it only once it has ended.
    assert_eq!(
        audrey.get(&path(&id)).await.body["tags"],
        json!(["db", "inc-4211"])
    );
    let reply = put(&mut audrey, &id, &json!({"tags": ["reviewed"]})).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(reply.code(), "session_running");
    assert!(
        reply.message().contains("once it has ended"),
        "{}",
        reply.message()
    );
    assert!(
        find(&mut audrey, "inc-4211").await.is_empty(),
        "running sessions are their owner's alone"
    );

    // The owner finds it by a tag, by part of a tag, by a word of the note, in any case.
    assert_eq!(find(&mut alice, "inc-4211").await, [id.as_str()]);
    assert_eq!(find(&mut alice, "INC-42").await, [id.as_str()]);
    assert_eq!(find(&mut alice, "ROTATING").await, [id.as_str()]);
    assert!(find(&mut alice, "nothing like it").await.is_empty());
    // LIKE's metacharacters match literally.
    assert!(find(&mut alice, "inc_4211").await.is_empty());
    assert!(find(&mut alice, "%").await.is_empty());

    // Ended: the auditor finds it, and labels it; the change replaces tags and note.
    alice.delete(&format!("/api/v1/sessions/{id}")).await;
    alice.wait_ended(&id).await;
    assert_eq!(find(&mut audrey, "db").await, [id.as_str()]);
    let reply = put(
        &mut audrey,
        &id,
        &json!({"tags": ["inc-4211", "reviewed", "Zone:eu/1", "日本"], "note": "<b>ok</b>"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        reply.body["tags"],
        json!(["inc-4211", "reviewed", "zone:eu/1", "日本"])
    );
    assert_eq!(reply.body["updated_by"], "audrey");
    let events =
        audit_log::wait_for_events_of(&gw.state.engine.db, Some(&id), "session.label", 2).await;
    assert_eq!(events[1].actor, "audrey");
    assert_eq!(events[1].detail["owner"], "alice");
    assert!(
        find(&mut alice, "rotating").await.is_empty(),
        "the old note is gone"
    );
    assert_eq!(find(&mut alice, "reviewed").await, [id.as_str()]);
    assert_eq!(find(&mut alice, "日本").await, [id.as_str()]);

    // The play page shows them, escaped, with the form for those who may change them; the
    // search page lists the session under its labels.
    let page = alice.get(&format!("/sessions/{id}/play")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(">reviewed</a>"), "{}", page.text);
    assert!(page.text.contains("/search?q=zone%3Aeu/1"), "{}", page.text);
    assert!(
        page.text.contains("&#60;b&#62;ok&#60;/b&#62;"),
        "{}",
        page.text
    );
    assert!(!page.text.contains("<b>ok</b>"));
    assert!(page.text.contains("id=\"labels-form\""));
    let page = alice.get("/search?q=reviewed").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("id=\"label-results\""), "{}", page.text);
    assert!(
        page.text.contains(&format!("data-session-id=\"{id}\"")),
        "{}",
        page.text
    );
    // Clearing: empty tags and note.
    let reply = put(&mut alice, &id, &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["tags"], json!([]));
    assert_eq!(reply.body["note"], "");
    assert!(find(&mut alice, "reviewed").await.is_empty());
    gw.stop().await;
}

async fn bad_labels_are_refused_and_nothing_is_stored(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    let mut alice = signed_in(&gw, "alice", Role::Operator).await;
    let id = alice.open(NODE, "INC-4212 labels").await;
    let saved = put(&mut alice, &id, &json!({"tags": ["keep"], "note": "kept"}))
        .await
        .body;
    assert_eq!(saved["tags"], json!(["keep"]));

    let many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let table = [
        (
            json!({"tags": ["two words"]}),
            "tags[0]: ' ' is not allowed",
        ),
        (
            json!({"tags": ["ok", ""]}),
            "tags[1]: a tag may not be empty",
        ),
        (
            json!({"tags": ["x".repeat(41)]}),
            "at most 40 characters (got 41)",
        ),
        (json!({"tags": ["a<b"]}), "'<' is not allowed"),
        (json!({"tags": many}), "at most 20 different tags (got 21)"),
        (json!({"note": "bell\u{7}"}), "note: no control characters"),
        (
            json!({"note": "n".repeat(2001)}),
            "note: at most 2000 characters (got 2001)",
        ),
    ];
    for (body, message) in table {
        let reply = put(&mut alice, &id, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_labels", "{body}");
        assert!(
            reply.message().contains(message),
            "{body}: {}",
            reply.message()
        );
        assert_eq!(
            alice.get(&path(&id)).await.body,
            saved,
            "{body}: nothing stored"
        );
    }

    // Not the right shape: 400, nothing stored.
    for body in [
        json!({"tags": "one"}),
        json!({"labels": ["x"]}),
        json!({"note": 5}),
    ] {
        let reply = put(&mut alice, &id, &body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text
        );
    }
    assert_eq!(alice.get(&path(&id)).await.body, saved);

    // Without the CSRF token, or from another Origin: 403, nothing stored.
    let mut no_csrf = alice.clone();
    no_csrf.csrf = None;
    let reply = put(&mut no_csrf, &id, &json!({"tags": ["x"]})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.code(), "csrf");
    let mut elsewhere = alice.clone();
    elsewhere.origin = Some("https://evil.example".into());
    let reply = put(&mut elsewhere, &id, &json!({"tags": ["x"]})).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.code(), "bad_origin");
    assert_eq!(alice.get(&path(&id)).await.body, saved);

    // An unknown session: 404 naming it. Signed out: 401.
    let reply = put(&mut alice, "no-such-session", &json!({"tags": ["x"]})).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    let reply = Api::new(&gw).get(&path(&id)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);

    // The search's query is checked like the recordings search's.
    for (q, status) in [
        ("", StatusCode::UNPROCESSABLE_ENTITY),
        (&"q".repeat(201), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let reply = alice.get(&format!("/api/v1/recordings/labels?q={q}")).await;
        assert_eq!(reply.status, status, "{}", reply.text);
        assert_eq!(reply.code(), "invalid_query");
    }
    let reply = alice.get("/api/v1/recordings/labels?q=a&limit=3").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert!(
        reply.message().contains("limit: not a parameter"),
        "{}",
        reply.message()
    );
    gw.stop().await;
}
