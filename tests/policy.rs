//! The policy engine through the API: roles from a policy file decide what each user sees in
//! the targets list and may open; a refusal is a 403 that says why and is audited; a reason
//! that breaks a role's rule is a 422 with the rule's own message; a changed policy file is
//! picked up (a bad one is refused and the old policy stays), and both are audited.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};

use common::api::Api;
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway};
use porthole::gateway::identity::users::Role;
use porthole::gateway::store::audit::{self, StoredEvent};
use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The emulator's default nodes.
const DB_NODE: &str = "i-0a1b2c3d4e5f60002";
const LAB_NODE: &str = "mi-0a1b2c3d4e5f60003";
const TICKET: &str = "Give the incident or change number first, e.g. INC-1234.";

const POLICY: &str = r#"
[[roles]]
name = "web-oncall"
description = "web team on call"
targets = [{ tags = ["team=web"] }]
max_duration_seconds = 3600
idle_timeout_seconds = 600
[roles.reason]
pattern = "^(INC|CHG)-[0-9]+"
pattern_message = "Give the incident or change number first, e.g. INC-1234."

[[roles]]
name = "lab"
targets = [{ names = ["lab-*"], ids = ["mi-*"] }]
reason = { required = false }

[[roles]]
name = "watcher"
observe_others = true
read_audit = true
"#;

fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

async fn events_of(gw: &Gateway, kind: &str) -> Vec<StoredEvent> {
    audit::list(&gw.state.engine.db, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

async fn target_names(api: &mut Api) -> Vec<String> {
    let reply = api.get("/api/v1/targets").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn signed_in(gw: &Gateway, name: &str, roles: &[&str]) -> Api {
    let roles: Vec<Role> = roles.iter().map(|r| Role::parse(r).unwrap()).collect();
    gw.user(name, &roles).await;
    let mut api = Api::new(gw);
    api.login(name).await;
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_roles_decide_what_each_user_reaches() {
    roles_decide_what_each_user_reaches(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_roles_decide_what_each_user_reaches() {
    roles_decide_what_each_user_reaches(Backend::Postgres).await;
}

async fn roles_decide_what_each_user_reaches(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_policy(dir.path(), POLICY);
    let gw = gateway::start(backend, |c| c.policy.file = Some(file.clone())).await;
    let mut alice = signed_in(&gw, "alice", &["web-oncall"]).await;
    let mut bob = signed_in(&gw, "bob", &["lab"]).await;
    let mut carol = signed_in(&gw, "carol", &["watcher"]).await;
    // The built-in roles are gone once a policy defines roles: "operator" allows nothing.
    let mut dave = signed_in(&gw, "dave", &["operator"]).await;

    // The targets list shows only what each may reach.
    assert_eq!(target_names(&mut alice).await, ["web-1"]);
    assert_eq!(target_names(&mut bob).await, ["lab-pi"]);
    assert!(target_names(&mut carol).await.is_empty());
    assert!(target_names(&mut dave).await.is_empty());
    assert_eq!(
        alice.get("/api/v1/me").await.body["user"]["roles"],
        json!(["web-oncall"])
    );

    // Allowed: the start event names the role, the limits and the policy that decided.
    let reason = "INC-4711 disk filling up on web-1";
    let id = alice.open(NODE, reason).await;
    let start = events_of(&gw, "session.start").await;
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].session_id.as_deref(), Some(id.as_str()));
    assert_eq!(start[0].detail["roles"], json!(["web-oncall"]));
    assert_eq!(start[0].detail["max_duration_seconds"], 3600);
    assert_eq!(start[0].detail["idle_timeout_seconds"], 600);
    assert_eq!(start[0].detail["policy"], sha256(POLICY));

    // Denied: a node no role of hers reaches is answered like a node that does not exist
    // (nothing of its name, region or tags); the audit row has the why.
    let reply = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": DB_NODE, "reason": reason}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code()),
        (StatusCode::NOT_FOUND, "unknown_target"),
        "{}",
        reply.text
    );
    assert_eq!(
        reply.message(),
        format!("no managed node {DB_NODE:?} in the configured regions")
    );
    assert!(
        !reply.text.contains("db-1") && !reply.text.contains("team"),
        "{}",
        reply.text
    );
    let why = format!("no role of yours allows {DB_NODE} (db-1, us-east-1, env=prod, team=data)");
    let denied = events_of(&gw, "session.denied").await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].actor, "alice");
    assert_eq!(denied[0].reason.as_deref(), Some(reason));
    assert_eq!(denied[0].detail["why"], why);
    assert_eq!(denied[0].detail["target"], DB_NODE);
    assert_eq!(denied[0].detail["roles"], json!(["web-oncall"]));

    // Invalid reason: 422 with the rule's own message; nothing is started or denied.
    let reply = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": "just having a look around"}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code(), reply.message()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_reason", TICKET),
        "{}",
        reply.text
    );
    let reply = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": "INC-1"}),
        )
        .await;
    assert_eq!(reply.code(), "invalid_reason");
    assert!(reply.message().contains("at least 10"), "{}", reply.text);

    // A document the role does not allow, and a node that does not exist: denied too.
    let reply = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": reason, "document": "AWS-StartPortForwardingSession"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        reply
            .message()
            .contains("but not with the document AWS-StartPortForwardingSession"),
        "{}",
        reply.text
    );
    let reply = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": "i-00000000000000000", "reason": reason}),
        )
        .await;
    assert_eq!(
        (reply.status, reply.code(), reply.message()),
        (
            StatusCode::NOT_FOUND,
            "unknown_target",
            "no managed node \"i-00000000000000000\" in the configured regions"
        ),
        "the same answer as for a node that exists but is not hers"
    );
    assert_eq!(events_of(&gw, "session.denied").await.len(), 3);
    assert_eq!(events_of(&gw, "session.start").await.len(), 1);

    // A role whose reason is optional: no reason at all will do.
    let reply = bob
        .post("/api/v1/sessions", &json!({"target": LAB_NODE}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let bobs = reply.body["id"].as_str().unwrap().to_owned();
    let reply = dave
        .post(
            "/api/v1/sessions",
            &json!({"target": LAB_NODE, "reason": reason}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);

    // The watcher may observe and audit, so sees every session; may not terminate them.
    let all = carol.get("/api/v1/sessions?state=active").await;
    let mut ids: Vec<&str> = all.body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![id.as_str(), bobs.as_str()];
    want.sort();
    assert_eq!(ids, want);
    let reply = carol.delete(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        dave.get("/api/v1/sessions").await.body["sessions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_policy_file_is_checked_then_applied_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let web = "[[roles]]\nname = \"r\"\ntargets = [{tags = [\"team=web\"]}]\n";
    let file = write_policy(dir.path(), web);
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.policy.file = Some(file.clone());
        c.policy.watch_seconds = 1;
    })
    .await;
    let mut alice = signed_in(&gw, "alice", &["r"]).await;
    assert_eq!(target_names(&mut alice).await, ["web-1"]);

    // A bad file: refused, logged and audited; the old policy stays.
    let bad = "[[roles]]\nname = \"r\"\ntargets = [{tags = [\"team=data\"]}]\nreason.pattern = \"^(INC\"\n";
    std::fs::write(&file, bad).unwrap();
    // The watcher writes it on its own time.
    let failed =
        audit_log::wait_for_events_of(&gw.state.engine.db, None, "policy.reload_failed", 1).await;
    let error = failed[0].detail["error"].as_str().unwrap();
    assert!(
        error.contains("roles[0].reason.pattern: invalid regex"),
        "{error}"
    );
    assert_eq!(failed[0].detail["trigger"], "file change");
    assert_eq!(failed[0].detail["kept"], sha256(web));
    assert_eq!(failed[0].actor, "porthole");
    assert_eq!(target_names(&mut alice).await, ["web-1"]);
    assert!(events_of(&gw, "policy.reload").await.is_empty());

    // A good file: audited, then in force for the next request.
    let data = "[[roles]]\nname = \"r\"\ntargets = [{tags = [\"team=data\"]}]\n";
    std::fs::write(&file, data).unwrap();
    let reloaded =
        audit_log::wait_for_events_of(&gw.state.engine.db, None, "policy.reload", 1).await;
    assert_eq!(reloaded[0].detail["hash"], sha256(data));
    assert_eq!(reloaded[0].detail["previous_hash"], sha256(web));
    assert_eq!(reloaded[0].detail["roles"], json!(["r"]));
    assert_eq!(reloaded[0].detail["trigger"], "file change");
    assert_eq!(
        reloaded[0].detail["file"],
        file.display().to_string().as_str()
    );
    assert_eq!(target_names(&mut alice).await, ["db-1", "old-batch"]);
    assert_eq!(gw.state.engine.policy.current().hash(), sha256(data));

    // Asked again with nothing changed: nothing happens, nothing is audited.
    assert_eq!(
        porthole::gateway::reload::reload(&gw.state.engine.policy, &gw.state.engine.db, "test")
            .await,
        Ok(false)
    );
    assert_eq!(events_of(&gw, "policy.reload").await.len(), 1);
    gw.stop().await;
}

/// Document parameters are part of the decision and of the record: a role that lists
/// `parameters` allows only those names, each value matching one of its globs; what it allows
/// runs (the emulator's node runs the command) and `session.start` names the parameters; what
/// it refuses is a 403 naming the parameter, audited in `session.denied` with them; malformed
/// parameters are a 422 that names the problem, and nothing is recorded as started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_parameters_are_checked_by_the_role_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"
[[roles]]
name = "runner"
targets = [{ tags = ["team=web"] }]
documents = ["AWS-StartInteractiveCommand"]
parameters = { command = ["echo PARAM-*", "uptime"] }
reason = { required = false }
"#;
    let file = write_policy(dir.path(), text);
    let gw = gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await;
    let mut alice = signed_in(&gw, "alice", &["runner"]).await;
    let start = |command: &str| {
        json!({"target": NODE, "document": "AWS-StartInteractiveCommand",
               "parameters": {"command": [command]}})
    };

    // Allowed: the command runs on the node, and the start event records it.
    let reply = alice
        .post("/api/v1/sessions", &start("echo PARAM-$((40+2))"))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    // The command exits at once: what it printed is in the recording.
    audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.end").await;
    let recording = alice.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert!(recording.text.contains("PARAM-42"), "{}", recording.text);
    let started = audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.start").await;
    assert_eq!(
        started.detail["parameters"],
        json!({"command": ["echo PARAM-$((40+2))"]})
    );
    assert_eq!(started.detail["document"], "AWS-StartInteractiveCommand");

    // A command the role does not list, and a name it does not list: 403, naming them.
    for (body, words) in [
        (
            start("rm -rf /tmp/x"),
            "the parameter command = \"rm -rf /tmp/x\" does not match echo PARAM-*, uptime",
        ),
        (
            json!({"target": NODE, "document": "AWS-StartInteractiveCommand",
                   "parameters": {"command": ["uptime"], "portNumber": ["22"]}}),
            "the parameter portNumber is not allowed (allowed: command: echo PARAM-*, uptime)",
        ),
    ] {
        let reply = alice.post("/api/v1/sessions", &body).await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{}",
            reply.text
        );
        assert!(
            reply.message().contains("not with these parameters"),
            "{}",
            reply.text
        );
        assert!(reply.message().contains(words), "{}", reply.text);
    }
    let denied = events_of(&gw, "session.denied").await;
    assert_eq!(denied.len(), 2);
    assert_eq!(
        denied[0].detail["parameters"],
        json!({"command": ["rm -rf /tmp/x"]})
    );
    assert!(
        denied[1].detail["why"]
            .as_str()
            .unwrap()
            .contains("portNumber is not allowed")
    );

    // Malformed: 422 that names the problem.
    for (parameters, words) in [
        (
            json!({"bad name!": ["x"]}),
            "\"bad name!\" is not a parameter name",
        ),
        (
            json!({"command": []}),
            "parameters.command: 1 to 16 values (got 0)",
        ),
        (
            json!({"command": ["x".repeat(4097)]}),
            "parameters.command: a value of at most 4096 characters (got 4097)",
        ),
        (json!({"command": ["a\u{0}b"]}), "must not contain NUL"),
    ] {
        let reply = alice
            .post(
                "/api/v1/sessions",
                &json!({"target": NODE, "document": "AWS-StartInteractiveCommand",
                        "parameters": parameters}),
            )
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_parameters"),
            "{}",
            reply.text
        );
        assert!(reply.message().contains(words), "{}", reply.text);
    }
    assert_eq!(events_of(&gw, "session.start").await.len(), 1);
    assert_eq!(events_of(&gw, "session.denied").await.len(), 2);
    gw.stop().await;
}

/// A reload that takes `observe_others` away closes the observers it concerns with 4003 at
/// their next re-check (every 15 s), audited with why; the owner's session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_takes_observing_away_closes_the_observer() {
    use porthole::gateway::http::attach::CLOSE_NOT_ALLOWED;
    let dir = tempfile::tempdir().unwrap();
    let roles = |observe: bool| {
        format!(
            "[[roles]]\nname = \"op\"\ntargets = [{{ ids = [\"*\"] }}]\n\
             [[roles]]\nname = \"watcher\"\nobserve_others = {observe}\n"
        )
    };
    let file = write_policy(dir.path(), &roles(true));
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.policy.file = Some(file.clone());
        c.policy.watch_seconds = 1;
    })
    .await;
    let mut alice = signed_in(&gw, "alice", &["op"]).await;
    let carol = signed_in(&gw, "carol", &["watcher"]).await;
    let id = alice.open(NODE, "INC-4711 disk filling up on web-1").await;
    let mut watcher = carol.attach_with(&id, "?mode=observe", None).await.unwrap();
    watcher.until_synced().await;

    std::fs::write(&file, roles(false)).unwrap();
    audit_log::wait_for_event(&gw.state.engine.db, None, "policy.reload").await;
    let (code, reason) = watcher.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (CLOSE_NOT_ALLOWED, "you may no longer observe this session")
    );
    let end =
        audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.observe_end").await;
    assert_eq!(end.actor, "carol");
    assert_eq!(end.detail["why"], "observe no longer allowed");
    // The owner's session is untouched.
    let row = alice.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(row.body["state"], "active");
    gw.stop().await;
}

/// A role's own `max_duration_seconds`, tighter than `[sessions]`, ends the session: the
/// page is closed, and the row and the audit say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roles_own_limit_ends_the_session() {
    use porthole::gateway::http::attach::CLOSE_SESSION_ENDED;
    let dir = tempfile::tempdir().unwrap();
    let text =
        "[[roles]]\nname = \"brief\"\ntargets = [{ ids = [\"*\"] }]\nmax_duration_seconds = 3\n";
    let file = write_policy(dir.path(), text);
    let gw = gateway::start(Backend::Sqlite, |c| c.policy.file = Some(file.clone())).await;
    let mut alice = signed_in(&gw, "alice", &["brief"]).await;
    let id = alice.open(NODE, "INC-4711 disk filling up on web-1").await;
    let mut tab = alice.attach(&id).await.unwrap();
    let (code, reason) = tab.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (
            CLOSE_SESSION_ENDED,
            "reached the maximum duration of 3 seconds"
        )
    );
    let end = audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.end").await;
    assert_eq!(
        end.detail["how"],
        "reached the maximum duration of 3 seconds"
    );
    let row = alice.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(
        row.body["end_reason"],
        "reached the maximum duration of 3 seconds"
    );
    gw.stop().await;
}

const CLIPBOARD_POLICY: &str = r#"
[[roles]]
name = "regulated"
targets = [{ tags = ["team=web"] }]
reason = { required = false }
clipboard = false

[[roles]]
name = "web"
targets = [{ tags = ["team=web"] }]
reason = { required = false }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_the_clipboard_decision_travels_with_the_session() {
    the_clipboard_decision_travels_with_the_session(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_the_clipboard_decision_travels_with_the_session() {
    the_clipboard_decision_travels_with_the_session(Backend::Postgres).await;
}

/// `clipboard = false` on the only role that allows a session: `session.start` records
/// `"clipboard": false` and the session says so; a second role that allows it turns it back on.
async fn the_clipboard_decision_travels_with_the_session(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = write_policy(dir.path(), CLIPBOARD_POLICY);
    let gw = gateway::start(backend, |c| c.policy.file = Some(file.clone())).await;
    let mut alice = signed_in(&gw, "alice", &["regulated"]).await;
    let mut bob = signed_in(&gw, "bob", &["regulated", "web"]).await;

    let off = alice.open(NODE, "INC-77 regulated work").await;
    let on = bob.open(NODE, "INC-78 the same node").await;
    let start = events_of(&gw, "session.start").await;
    let detail = |id: &str| {
        start
            .iter()
            .find(|e| e.session_id.as_deref() == Some(id))
            .unwrap()
            .detail
            .clone()
    };
    assert_eq!(detail(&off)["clipboard"], json!(false), "{}", detail(&off));
    assert_eq!(detail(&off)["roles"], json!(["regulated"]));
    assert_eq!(detail(&on)["clipboard"], json!(true), "{}", detail(&on));
    assert_eq!(detail(&on)["roles"], json!(["regulated", "web"]));

    let reply = alice.get(&format!("/api/v1/sessions/{off}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["clipboard"], json!(false), "{}", reply.text);
    let reply = bob.get(&format!("/api/v1/sessions/{on}")).await;
    assert_eq!(reply.body["clipboard"], json!(true), "{}", reply.text);
    gw.stop().await;
}
