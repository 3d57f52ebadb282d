//! The gateway end to end on SQLite and on PostgreSQL: a real server on an ephemeral port, a
//! real emulator behind it reached through aws-sdk-ssm, a real shell in a PTY, and a client
//! that speaks HTTP and the attach WebSocket like a browser.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::api::Api;
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway, PASSWORD, both_backends};
use porthole::gateway::http::attach::{CLOSE_REPLACED, CLOSE_SESSION_ENDED};
use porthole::gateway::identity::users::Role;
use porthole::gateway::store::audit::{self, StoredEvent};
use reqwest::StatusCode;
use serde_json::json;

/// The offline node of the emulator's defaults.
const OFFLINE_NODE: &str = "i-0a1b2c3d4e5f60004";
const REASON: &str = "INC-4711 disk filling up on web-1";

both_backends!(sign_in_out_and_revocation);
both_backends!(targets_are_listed_by_role);
both_backends!(a_session_runs_from_start_to_exit);
both_backends!(delete_terminates_and_the_cap_holds);
both_backends!(error_paths_have_their_status_and_code);
both_backends!(fifty_starts_at_once_answer_cleanly_while_sessions_print);

async fn events(gw: &Gateway, session_id: Option<&str>) -> Vec<StoredEvent> {
    audit::list(&gw.state.engine.db, session_id).await.unwrap()
}

async fn events_of(gw: &Gateway, kind: &str) -> Vec<StoredEvent> {
    events(gw, None)
        .await
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

async fn sign_in_out_and_revocation(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(&gw);

    assert_eq!(api.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    let wrong = api.login_as("alice", "not the password").await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let unknown = api.login_as("mallory", PASSWORD).await;
    assert_eq!(unknown.code(), "invalid_credentials");
    assert_eq!(
        unknown.message(),
        wrong.message(),
        "no hint which part was wrong"
    );
    let failed = events_of(&gw, "login.failed").await;
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].actor, "alice");
    assert_eq!(failed[0].detail["why"], "wrong password");
    assert_eq!(failed[0].client_addr, "127.0.0.1");

    let ok = api.login_as("alice", PASSWORD).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(
        ok.body["user"],
        json!({"name": "alice", "roles": ["operator"]})
    );
    let set_cookie = ok.headers["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain http: {set_cookie}");
    let me = api.get("/api/v1/me").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["user"]["name"], "alice");
    assert_eq!(me.body["csrf_token"].as_str(), api.csrf.as_deref());
    assert_eq!(events_of(&gw, "login").await.len(), 1);

    // Logout needs the CSRF token; afterwards the same cookie is refused.
    let csrf = api.csrf.take();
    let refused = api.post("/api/v1/auth/logout", &json!({})).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "csrf")
    );
    api.csrf = Some("0".repeat(64));
    assert_eq!(
        api.post("/api/v1/auth/logout", &json!({})).await.code(),
        "csrf"
    );
    api.csrf = csrf;
    let out = api.post("/api/v1/auth/logout", &json!({})).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.text);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(api.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(events_of(&gw, "logout").await.len(), 1);

    // Disabling a user ends their sign-ins at once, and they cannot sign in again.
    api.login("alice").await;
    assert_eq!(api.get("/api/v1/me").await.status, StatusCode::OK);
    gw.disable("alice").await;
    assert_eq!(api.get("/api/v1/me").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.login_as("alice", PASSWORD).await.code(),
        "invalid_credentials"
    );
    gw.stop().await;
}

async fn targets_are_listed_by_role(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    let mut api = Api::new(&gw);
    assert_eq!(
        api.get("/api/v1/targets").await.status,
        StatusCode::UNAUTHORIZED
    );
    api.login("alice").await;
    let reply = api.get("/api/v1/targets").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let targets = reply.body["targets"].as_array().unwrap();
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db-1", "lab-pi", "old-batch", "web-1"]);
    let web = targets.iter().find(|t| t["name"] == "web-1").unwrap();
    assert_eq!(
        *web,
        json!({"id": NODE, "name": "web-1", "platform": "Linux", "ping_status": "Online",
               "region": "us-east-1", "account": "",
               "tags": {"Name": "web-1", "env": "prod", "team": "web"}, "approval": null})
    );
    let old = targets.iter().find(|t| t["id"] == OFFLINE_NODE).unwrap();
    assert_eq!(old["ping_status"], "ConnectionLost");

    let mut auditor = Api::new(&gw);
    auditor.login("audrey").await;
    let reply = auditor.get("/api/v1/targets").await;
    assert_eq!(
        reply.body["targets"],
        json!([]),
        "auditors open no sessions"
    );
    gw.stop().await;
}

async fn a_session_runs_from_start_to_exit(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(&gw);
    api.login("alice").await;

    let reply = api
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": format!("  {REASON}  ")}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.body["reason"], REASON, "trimmed");
    assert_eq!(reply.body["state"], "active");
    assert_eq!(reply.body["user"], "alice");
    assert_eq!(
        reply.body["attach_url"],
        format!("/api/v1/sessions/{id}/attach")
    );

    // The audit row of the start exists and was written before the SSM session.
    let start = events_of(&gw, "session.start").await;
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].reason.as_deref(), Some(REASON));
    assert_eq!(start[0].target.as_deref(), Some(NODE));
    assert_eq!(start[0].session_id.as_deref(), Some(id.as_str()));
    let ssm_sessions = gw.emu.emulator.state().registry.list();
    assert_eq!(ssm_sessions.len(), 1);
    let ssm_started = ssm_sessions[0]
        .start_date
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        start[0].at <= ssm_started,
        "audit {} after StartSession {ssm_started}",
        start[0].at
    );

    let mut term = api.attach(&id).await.unwrap();
    term.type_text("echo MARK-$((6*7))\n").await;
    let after = term.expect("MARK-42").await;
    term.control(json!({"type": "resize", "cols": 101, "rows": 37}))
        .await;
    term.type_text("stty size\n").await;
    let after = term.expect_from(after, "37 101").await;
    term.type_text("exit\n").await;
    let (code, reason) = term.closed().await;
    assert_eq!(code, CLOSE_SESSION_ENDED, "{reason}");
    assert_eq!(reason, "the shell exited");
    let closed = term.texts.iter().find(|t| t["type"] == "closed").unwrap();
    assert_eq!(closed["reason"], "the shell exited");
    assert!(
        term.texts
            .iter()
            .any(|t| t["type"] == "status" && t["state"] == "connected")
    );
    let _ = after;

    let ended = api.wait_ended(&id).await;
    assert_eq!(ended["end_reason"], "the shell exited");
    // The detach is written as the relay ends, just after the browser got the close.
    let kinds = audit_log::wait_for_kinds(&gw.state.engine.db, Some(&id), 4).await;
    assert_eq!(
        kinds,
        [
            "session.start",
            "session.attach",
            "session.end",
            "session.detach"
        ],
        "in order"
    );
    let end = events_of(&gw, "session.end").await.remove(0);
    assert_eq!(end.detail["how"], "the shell exited");
    assert!(end.detail["bytes_out"].as_u64().unwrap() > 0);

    // Nothing the browser received carries the SSM token or the stream URL.
    let emulator = gw.emu.emulator.state();
    let ssm_id = &ssm_sessions[0].id;
    let tokens = emulator.registry.get(ssm_id).unwrap().issued_tokens();
    assert!(!tokens.is_empty());
    let stream_url = emulator.stream_url(ssm_id);
    let seen = api.seen.lock().unwrap().clone();
    assert!(
        seen.len() > 1000,
        "the capture holds the session: {} bytes",
        seen.len()
    );
    let hay = String::from_utf8_lossy(&seen);
    for secret in tokens.iter().chain([&stream_url, ssm_id]) {
        assert!(
            !hay.contains(secret.as_str()),
            "{secret} reached the browser"
        );
    }
    assert!(
        !hay.contains(&gw.emu.emulator.url()),
        "the SSM endpoint reached the browser"
    );
    gw.stop().await;
}

async fn delete_terminates_and_the_cap_holds(backend: Backend) {
    let gw = gateway::start(backend, |c| c.sessions.max_per_user = 2).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("bob", &[Role::Operator]).await;
    gw.user("root", &[Role::Admin]).await;
    let mut alice = Api::new(&gw);
    alice.login("alice").await;
    let first = alice.open(NODE, REASON).await;
    let second = alice.open(NODE, REASON).await;
    let third = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": REASON}),
        )
        .await;
    assert_eq!(
        (third.status, third.code()),
        (StatusCode::CONFLICT, "too_many_sessions")
    );
    assert!(
        third.message().contains("limit is 2"),
        "{}",
        third.message()
    );

    // Bob can neither see, attach to nor delete Alice's session.
    let mut bob = Api::new(&gw);
    bob.login("bob").await;
    assert_eq!(
        bob.get(&format!("/api/v1/sessions/{first}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.delete(&format!("/api/v1/sessions/{first}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(bob.attach(&first).await.err().map(|e| e.0), Some(404));
    let listed = bob.get("/api/v1/sessions?state=all").await;
    assert_eq!(listed.body["sessions"], json!([]));

    // Alice attaches, then terminates: the browser is told, the row says who ended it.
    let mut term = alice.attach(&first).await.unwrap();
    term.type_text("echo READY-$((1+1))\n").await;
    term.expect("READY-2").await;
    let reply = alice.delete(&format!("/api/v1/sessions/{first}")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    let (code, reason) = term.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (CLOSE_SESSION_ENDED, "terminated by alice")
    );
    let ended = alice.wait_ended(&first).await;
    assert_eq!(ended["end_reason"], "terminated by alice");
    let terminate = events_of(&gw, "session.terminate").await;
    assert_eq!(terminate.len(), 1);
    assert_eq!(terminate[0].actor, "alice");
    let again = alice.delete(&format!("/api/v1/sessions/{first}")).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "session_ended")
    );

    // Room again for one more; an admin may terminate it.
    let third = alice.open(NODE, REASON).await;
    let mut root = Api::new(&gw);
    root.login("root").await;
    let reply = root.delete(&format!("/api/v1/sessions/{second}")).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(
        alice.wait_ended(&second).await["end_reason"],
        "terminated by root"
    );
    let active = alice.get("/api/v1/sessions?state=active").await;
    let ids: Vec<&str> = active.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [third.as_str()]);

    // A second attach replaces the first.
    let mut tab1 = alice.attach(&third).await.unwrap();
    tab1.type_text("echo TAB-$((2+3))\n").await;
    tab1.expect("TAB-5").await;
    let mut tab2 = alice.attach(&third).await.unwrap();
    let (code, _) = tab1.closed().await;
    assert_eq!(code, CLOSE_REPLACED);
    // The new tab gets the earlier output replayed, then goes on live.
    tab2.expect("TAB-5").await;
    tab2.type_text("echo TAB-$((3+4))\n").await;
    tab2.expect("TAB-7").await;

    // Stopping the gateway ends what is live, and says so.
    let state = gw.state.clone();
    gw.stop().await;
    let row = porthole::gateway::store::sessions::load(&state.engine.db, &third).await;
    let _ = row; // the pool is closed after stop; the end event was checked through the API
}

async fn error_paths_have_their_status_and_code(backend: Backend) {
    let gw = gateway::start(backend, |_| {}).await;
    gw.user("alice", &[Role::Operator]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    let mut api = Api::new(&gw);
    api.login("alice").await;
    let post = |reason: &str| json!({"target": NODE, "reason": reason});

    for (reason, needle) in [
        ("too short", "at least 10"),
        ("          ", "at least 10"),
        (&"x".repeat(501) as &str, "at most 500"),
        ("two\nlines here", "U+000A"),
    ] {
        let reply = api.post("/api/v1/sessions", &post(reason)).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_reason"),
            "{reason:?}"
        );
        assert!(reply.message().contains(needle), "{}", reply.message());
    }
    let reply = api
        .post(
            "/api/v1/sessions",
            &json!({"target": "i-00000000000000000", "reason": REASON}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::NOT_FOUND, "unknown_target")
    );
    let reply = api
        .post(
            "/api/v1/sessions",
            &json!({"target": OFFLINE_NODE, "reason": REASON}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::CONFLICT, "target_not_connected"),
        "{}",
        reply.text
    );
    assert!(
        reply.message().contains("TargetNotConnected"),
        "AWS's words: {}",
        reply.message()
    );
    let failed = api.get("/api/v1/sessions?state=ended").await;
    assert_eq!(failed.body["sessions"][0]["state"], "failed");
    let reply = api
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": REASON, "document": "No Such Doc"}),
        )
        .await;
    assert_eq!(reply.code(), "invalid_document");
    let reply = api
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": REASON, "document": "Missing-Document"}),
        )
        .await;
    assert!(
        matches!(reply.code(), "invalid_document" | "upstream"),
        "{}",
        reply.text
    );
    let reply = api
        .send(
            reqwest::Method::POST,
            "/api/v1/sessions",
            Some(b"{not json"),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let reply = api
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": REASON, "extra": 1}),
        )
        .await;
    assert!(reply.message().contains("extra"), "{}", reply.message());
    let big = vec![b' '; 64 * 1024];
    let reply = api
        .send(reqwest::Method::POST, "/api/v1/sessions", Some(&big))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = api.get("/api/v1/sessions?state=weird").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let reply = api.get("/api/v1/sessions/no-such-id").await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::NOT_FOUND, "unknown_session")
    );
    assert_eq!(
        api.get("/api/v1/nothing-here").await.status,
        StatusCode::NOT_FOUND
    );

    // An auditor may not open sessions; the refusal is audited with its reason.
    let mut auditor = Api::new(&gw);
    auditor.login("audrey").await;
    let reply = auditor.post("/api/v1/sessions", &post(REASON)).await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let denied = events_of(&gw, "session.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor, "audrey");
    assert_eq!(denied[0].reason.as_deref(), Some(REASON));
    // Auditors see every session.
    let all = auditor.get("/api/v1/sessions").await;
    assert!(!all.body["sessions"].as_array().unwrap().is_empty());

    // A reason made of SQL is stored and shown verbatim.
    let sql = "'); DROP TABLE sessions; -- \" OR 1=1 ; SELECT * FROM users";
    let id = api.open(NODE, sql).await;
    let reply = api.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(reply.body["reason"], sql);
    assert_eq!(events(&gw, Some(&id)).await[0].reason.as_deref(), Some(sql));
    api.delete(&format!("/api/v1/sessions/{id}")).await;
    api.wait_ended(&id).await;

    // The audit chain holds.
    let checked = audit::verify(&gw.state.engine.db).await.unwrap();
    assert!(matches!(checked, Ok(n) if n > 5), "{checked:?}");
    gw.stop().await;
}

/// 50 session starts at once from five people, while two sessions print without pause (their
/// indexers and recorders writing) and an admin observes one: every start answers 201, the
/// cap's 409, or 503 `busy` with `Retry-After` — never 500; nothing is left `starting`, and
/// the audit chain verifies afterwards.
async fn fifty_starts_at_once_answer_cleanly_while_sessions_print(backend: Backend) {
    let gw = gateway::start(backend, |c| c.sessions.max_per_user = 9).await;
    gw.user("root", &[Role::Admin]).await;
    let mut root = Api::new(&gw);
    root.login("root").await;
    // Two sessions printing all along, one of them observed.
    let mut printers = Vec::new();
    for _ in 0..2 {
        let id = root
            .open(NODE, "INC-8000 printing while others start")
            .await;
        let mut term = root.attach(&id).await.unwrap();
        term.type_text("while :; do seq 1 2000; done\n").await;
        printers.push((id, term));
    }
    let mut watcher = root
        .attach_with(&printers[0].0, "?mode=observe", None)
        .await
        .unwrap();
    let mut people = Vec::new();
    for n in 0..5 {
        let name = format!("user{n}");
        gw.user(&name, &[Role::Operator]).await;
        let mut api = Api::new(&gw);
        api.login(&name).await;
        people.push(api);
    }
    let starts = people.iter().flat_map(|api| {
        (0..10).map(move |_| {
            let mut api = api.clone();
            async move {
                api.post(
                    "/api/v1/sessions",
                    &json!({"target": NODE, "reason": "INC-8001 many at once"}),
                )
                .await
            }
        })
    });
    let (replies, _) = tokio::join!(
        futures_util::future::join_all(starts),
        watcher.read_within(Duration::from_millis(500))
    );
    let mut created = 0;
    for reply in &replies {
        match (reply.status, reply.code()) {
            (StatusCode::CREATED, _) => created += 1,
            (StatusCode::CONFLICT, "too_many_sessions") => {}
            (StatusCode::SERVICE_UNAVAILABLE, "busy") => {
                assert!(reply.headers.contains_key("retry-after"), "{}", reply.text);
                assert!(reply.message().contains("try again"), "{}", reply.text);
            }
            _ => panic!("{} {}", reply.status, reply.text),
        }
    }
    assert!(created >= 40, "only {created} of 50 started");
    let db = &gw.state.engine.db;
    // Nothing half-made: every row is active (or ended), none starting.
    let sessions = root.get("/api/v1/sessions?state=all").await;
    assert!(
        sessions.body["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] != "starting"),
        "{}",
        sessions.text
    );
    drop((printers, watcher));
    assert!(matches!(audit::verify(db).await.unwrap(), Ok(n) if n > 50));
    // … and so does `porthole audit verify`, as an operator runs it.
    let dir = tempfile::tempdir().unwrap();
    let config = gw.cli_config(dir.path());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_porthole"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    gw.stop().await;
}
