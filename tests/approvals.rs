//! Just-in-time access through the API, against the emulator and a real shell: a role that
//! requires approval refuses a start without a grant (403 `approval_required`); the person
//! asks, an approver approves with a comment, the session starts under the grant and its
//! audit event names the request and the approvers. Denial, self-approval, dual control (the
//! same person twice refused), expiry of pending requests and of grants (their sessions end),
//! revocation (its session ends), break-glass, and the limits (duration, comment, pending
//! requests) each answer with a code and words, and every step is in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::api::Api;
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway};
use porthole::emulator::nodes::Node;
use porthole::gateway::identity::users::Role;
use porthole::gateway::policy::PolicyFile;
use porthole::gateway::store::audit::{self, StoredEvent};
use reqwest::StatusCode;
use serde_json::{Value, json};

const DB_NODE: &str = "i-0a1b2c3d4e5f60002";
const LAB_NODE: &str = "mi-0a1b2c3d4e5f60003";

/// prod: the prod nodes, after one approval by leads (grants up to 10 min); dual: db-1 after
/// two; oncall: the prod nodes, with break-glass; leads: approves, opens nothing.
const POLICY: &str = r#"
[[roles]]
name = "prod"
targets = [{ tags = ["env=prod"] }]
reason = { pattern = "^INC-[0-9]+", pattern_message = "Start with the incident: INC-123 ..." }
[roles.approval]
approvers = ["leads"]
grant_seconds = 600
pending_seconds = PENDING

[[roles]]
name = "dual"
targets = [{ names = ["db-*"] }]
[roles.approval]
approvers = ["leads"]
min_approvals = 2

[[roles]]
name = "oncall"
targets = [{ tags = ["env=prod"] }]
reason = { required = false }
[roles.approval]
approvers = ["leads"]
break_glass = true

[[roles]]
name = "leads"

[[roles]]
name = "lab"
targets = [{ names = ["lab-*"] }]
reason = { required = false }
"#;

async fn start(backend: Backend, pending_seconds: u64) -> Gateway {
    start_with(backend, pending_seconds, |_| {}).await
}

async fn start_with(
    backend: Backend,
    pending_seconds: u64,
    configure_emulator: impl FnOnce(&mut porthole::emulator::EmulatorConfig),
) -> Gateway {
    let text = POLICY.replace("PENDING", &pending_seconds.to_string());
    let file: PolicyFile = toml::from_str(&text).unwrap();
    gateway::start_with(backend, configure_emulator, |c| {
        c.policy.roles = Some(file.roles);
    })
    .await
}

async fn signed_in(gw: &Gateway, name: &str, roles: &[&str]) -> Api {
    let roles: Vec<Role> = roles.iter().map(|r| Role::parse(r).unwrap()).collect();
    gw.user(name, &roles).await;
    let mut api = Api::new(gw);
    api.login(name).await;
    api
}

async fn events(gw: &Gateway, kind: &str) -> Vec<StoredEvent> {
    audit::list(&gw.state.engine.db, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

/// Asks for `target`, asserting 201; the request object.
async fn ask(api: &mut Api, target: &str, reason: &str, seconds: u64) -> Value {
    let reply = api
        .post(
            "/api/v1/requests",
            &json!({"target": target, "reason": reason, "duration_seconds": seconds}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    reply.body
}

/// `verb` (approve, deny, revoke) on request `id`; the reply.
async fn act(api: &mut Api, id: &str, verb: &str, comment: &str) -> common::api::Reply {
    api.post(
        &format!("/api/v1/requests/{id}/{verb}"),
        &json!({ "comment": comment }),
    )
    .await
}

fn assert_refused(reply: &common::api::Reply, status: StatusCode, code: &str, words: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.code(), code, "{}", reply.text);
    assert!(reply.message().contains(words), "{}", reply.text);
}

fn target_of<'a>(listing: &'a Value, id: &str) -> &'a Value {
    listing["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("{id} not listed: {listing}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_request_approve_start_end() {
    request_approve_start_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_request_approve_start_end() {
    request_approve_start_end(Backend::Postgres).await;
}

async fn request_approve_start_end(backend: Backend) {
    let gw = start(backend, 3600).await;
    let mut alice = signed_in(&gw, "alice", &["prod"]).await;
    let mut bob = signed_in(&gw, "bob", &["leads"]).await;
    let mut dave = signed_in(&gw, "dave", &["prod"]).await;

    // The targets list says what each node needs; the lab node is not alice's at all.
    let listing = alice.get("/api/v1/targets").await.body;
    let web = target_of(&listing, NODE);
    assert_eq!(web["approval"]["approvers"], json!(["leads"]));
    assert_eq!(web["approval"]["min_approvals"], 1);
    assert_eq!(web["approval"]["break_glass"], false);
    assert_eq!(web["approval"]["grant"], Value::Null);
    assert!(
        !listing.to_string().contains(LAB_NODE),
        "lab listed: {listing}"
    );
    assert_eq!(alice.get("/api/v1/me").await.body["approver"], false);
    assert_eq!(bob.get("/api/v1/me").await.body["approver"], true);

    // No grant: the start is refused, saying how to get one, and audited.
    let reason = "INC-4711 disk filling up on web-1";
    let refused = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": reason}),
        )
        .await;
    assert_refused(
        &refused,
        StatusCode::FORBIDDEN,
        "approval_required",
        "1 approval by leads",
    );
    let denied = events(&gw, "session.denied").await;
    assert_eq!(denied.len(), 1);
    assert!(
        denied[0].detail["why"]
            .as_str()
            .unwrap()
            .contains("approved access request")
    );

    // Bad requests are refused with what is wrong, and nothing is recorded.
    let bad = alice
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": "the disk is full", "duration_seconds": 60}),
        )
        .await;
    assert_refused(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reason",
        "INC-123",
    );
    let bad = alice
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": reason, "duration_seconds": 601}),
        )
        .await;
    assert_refused(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_duration",
        "1 to 600",
    );
    let bad = alice
        .post(
            "/api/v1/requests",
            &json!({"target": LAB_NODE, "reason": reason, "duration_seconds": 60}),
        )
        .await;
    assert_refused(&bad, StatusCode::NOT_FOUND, "unknown_target", LAB_NODE);
    let bad = alice
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": reason, "break_glass": true}),
        )
        .await;
    assert_refused(
        &bad,
        StatusCode::FORBIDDEN,
        "break_glass_not_allowed",
        "break-glass",
    );
    let bad = alice
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": reason, "colour": "red"}),
        )
        .await;
    assert_refused(&bad, StatusCode::BAD_REQUEST, "invalid_request", "colour");
    assert!(events(&gw, "access.request").await.is_empty());

    // The request: pending, told to the approvers, a second one for the node refused.
    let request = ask(&mut alice, NODE, reason, 300).await;
    let id = request["id"].as_str().unwrap().to_owned();
    assert_eq!(request["state"], "pending");
    assert_eq!(request["user"], "alice");
    assert_eq!(request["target"], NODE);
    assert_eq!(request["reason"], reason);
    assert_eq!(request["duration_seconds"], 300);
    assert_eq!(request["approvals"], json!([]));
    assert_eq!(request["may_decide"], false);
    assert_eq!(request["may_revoke"], true);
    let again = alice
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": reason, "duration_seconds": 60}),
        )
        .await;
    assert_refused(&again, StatusCode::CONFLICT, "request_pending", &id);
    let listing = alice.get("/api/v1/targets").await.body;
    assert_eq!(target_of(&listing, NODE)["approval"]["request"]["id"], id);

    // Bob sees it among those he may decide; dave (another requester) does not see it.
    let pending = bob.get("/api/v1/requests?state=pending").await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text);
    assert_eq!(pending.body["requests"][0]["id"], id);
    assert_eq!(pending.body["requests"][0]["may_decide"], true);
    let hidden = dave.get(&format!("/api/v1/requests/{id}")).await;
    assert_refused(&hidden, StatusCode::NOT_FOUND, "unknown_request", &id);
    assert_eq!(
        dave.get("/api/v1/requests").await.body["requests"],
        json!([])
    );
    let bad = bob.get("/api/v1/requests?state=maybe").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);

    // The requester cannot approve; bob can, with a comment, once.
    let own = act(&mut alice, &id, "approve", "me").await;
    assert_refused(
        &own,
        StatusCode::FORBIDDEN,
        "self_approval",
        "your own request",
    );
    let approved = act(&mut bob, &id, "approve", "ok, go ahead").await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["state"], "approved");
    assert_eq!(approved.body["approvals"][0]["user"], "bob");
    assert_eq!(approved.body["approvals"][0]["comment"], "ok, go ahead");
    let until = approved.body["expires_at"].as_i64().unwrap();
    let decided = approved.body["decided_at"].as_i64().unwrap();
    assert_eq!(until - decided, 300_000);
    let twice = act(&mut bob, &id, "approve", "again").await;
    assert_refused(
        &twice,
        StatusCode::CONFLICT,
        "request_not_pending",
        "approved",
    );
    let seen = alice.get(&format!("/api/v1/requests/{id}")).await;
    assert_eq!(seen.body["state"], "approved");
    let listing = alice.get("/api/v1/targets").await.body;
    assert_eq!(
        target_of(&listing, NODE)["approval"]["grant"],
        json!({"request_id": id, "expires_at": until})
    );
    // The grant is for that node only.
    let other = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": DB_NODE, "reason": reason}),
        )
        .await;
    assert_refused(&other, StatusCode::FORBIDDEN, "approval_required", DB_NODE);

    // The session starts under the grant; a real shell answers; the start names the grant.
    let session = alice.open(NODE, reason).await;
    let mut term = alice.attach(&session).await.unwrap();
    term.type_text("echo granted-$((6*7))\r").await;
    term.expect("granted-42").await;
    let start = events(&gw, "session.start").await;
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].detail["request_id"], id);
    assert_eq!(start[0].detail["approvers"], json!(["bob"]));
    assert_eq!(start[0].detail["break_glass"], false);
    assert_eq!(start[0].detail["grant_expires_at"], until);
    let ended = alice.delete(&format!("/api/v1/sessions/{session}")).await;
    assert!(ended.status.is_success(), "{}", ended.text);
    audit_log::wait_for_event(&gw.state.engine.db, Some(&session), "session.end").await;
    // The ended session closes the page's socket, and that detach is the last row written:
    // wait for it, or the chain below may count one row more than the list it is compared with.
    tokio::time::timeout(Duration::from_secs(20), term.closed())
        .await
        .expect("the ended session's socket stayed open");
    audit_log::wait_for_event(&gw.state.engine.db, Some(&session), "session.detach").await;

    // Every step is in the chain, in order, with who and what they said.
    let all = audit::list(&gw.state.engine.db, None).await.unwrap();
    let steps: Vec<&str> = all
        .iter()
        .map(|e| e.kind.as_str())
        .filter(|k| k.starts_with("access."))
        .collect();
    assert_eq!(steps, ["access.request", "access.approve", "access.grant"]);
    let approve = &events(&gw, "access.approve").await[0];
    assert_eq!(approve.actor, "bob");
    assert_eq!(approve.detail["comment"], "ok, go ahead");
    assert_eq!(approve.detail["request_id"], id);
    let grant = &events(&gw, "access.grant").await[0];
    assert_eq!(grant.actor, "alice");
    assert_eq!(grant.detail["approved_by"], json!(["bob"]));
    assert_eq!(grant.target.as_deref(), Some(NODE));
    assert_eq!(
        audit::verify(&gw.state.engine.db).await.unwrap(),
        Ok(u64::try_from(all.len()).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_denial_self_approval_and_dual_control() {
    denial_self_approval_and_dual_control(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_denial_self_approval_and_dual_control() {
    denial_self_approval_and_dual_control(Backend::Postgres).await;
}

async fn denial_self_approval_and_dual_control(backend: Backend) {
    let gw = start(backend, 3600).await;
    // Erin requests and approves: never her own.
    let mut erin = signed_in(&gw, "erin", &["prod", "leads"]).await;
    let mut bob = signed_in(&gw, "bob", &["leads"]).await;
    let mut carol = signed_in(&gw, "carol", &["leads"]).await;
    let mut frank = signed_in(&gw, "frank", &["dual"]).await;
    let reason = "INC-77 replica lag";

    let request = ask(&mut erin, NODE, reason, 60).await;
    let id = request["id"].as_str().unwrap();
    assert_eq!(request["may_decide"], false, "{request}");
    let own = act(&mut erin, id, "approve", "").await;
    assert_refused(
        &own,
        StatusCode::FORBIDDEN,
        "self_approval",
        "another approver",
    );
    let long = act(&mut bob, id, "deny", &"x".repeat(1001)).await;
    assert_refused(
        &long,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_comment",
        "at most 1000",
    );
    let control = act(&mut bob, id, "deny", "no\u{7}bell").await;
    assert_refused(
        &control,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_comment",
        "U+0007",
    );
    // Denied, with the comment; the denial ends it; no start under it.
    let denied = act(&mut bob, id, "deny", "not during the freeze").await;
    assert_eq!(denied.status, StatusCode::OK, "{}", denied.text);
    assert_eq!(denied.body["state"], "denied");
    assert_eq!(denied.body["denials"][0]["user"], "bob");
    assert_eq!(
        denied.body["denials"][0]["comment"],
        "not during the freeze"
    );
    let late = act(&mut carol, id, "approve", "").await;
    assert_refused(&late, StatusCode::CONFLICT, "request_not_pending", "denied");
    let refused = erin
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": reason}),
        )
        .await;
    assert_refused(&refused, StatusCode::FORBIDDEN, "approval_required", NODE);
    let deny = &events(&gw, "access.deny").await[0];
    assert_eq!(deny.actor, "bob");
    assert_eq!(deny.detail["comment"], "not during the freeze");
    assert!(events(&gw, "access.grant").await.is_empty());

    // Dual control: two different people; the same one twice is refused.
    let request = ask(&mut frank, DB_NODE, "restore the nightly dump", 120).await;
    let id = request["id"].as_str().unwrap();
    assert_eq!(request["min_approvals"], 2);
    let first = act(&mut bob, id, "approve", "one").await;
    assert_eq!(first.body["state"], "pending", "{}", first.text);
    assert_eq!(first.body["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(first.body["may_decide"], false);
    let twice = act(&mut bob, id, "approve", "two").await;
    assert_refused(
        &twice,
        StatusCode::CONFLICT,
        "already_decided",
        "2 different",
    );
    let refused = frank
        .post(
            "/api/v1/sessions",
            &json!({"target": DB_NODE, "reason": "restore the nightly dump"}),
        )
        .await;
    assert_refused(
        &refused,
        StatusCode::FORBIDDEN,
        "approval_required",
        "2 approvals",
    );
    let second = act(&mut carol, id, "approve", "two").await;
    assert_eq!(second.body["state"], "approved", "{}", second.text);
    let session = frank.open(DB_NODE, "restore the nightly dump").await;
    let start = events(&gw, "session.start").await;
    assert_eq!(start[0].session_id.as_deref(), Some(session.as_str()));
    assert_eq!(start[0].detail["approvers"], json!(["bob", "carol"]));
    let grant = &events(&gw, "access.grant").await[0];
    assert_eq!(grant.detail["approved_by"], json!(["bob", "carol"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_expiry_and_revocation_end_sessions() {
    expiry_and_revocation_end_sessions(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_expiry_and_revocation_end_sessions() {
    expiry_and_revocation_end_sessions(Backend::Postgres).await;
}

async fn expiry_and_revocation_end_sessions(backend: Backend) {
    // Pending requests lapse after 2 s here.
    let gw = start(backend, 2).await;
    let mut alice = signed_in(&gw, "alice", &["prod"]).await;
    let mut bob = signed_in(&gw, "bob", &["leads"]).await;
    let db = gw.state.engine.db.clone();
    let reason = "INC-9 certificate renewal";

    // Undecided: expired, audited, no longer decidable.
    let lapsing = ask(&mut alice, DB_NODE, reason, 60).await;
    let lapsing = lapsing["id"].as_str().unwrap().to_owned();
    audit_log::wait_until(&db, None, "the pending request expires", |events| {
        events.iter().any(|e| e.kind == "access.expire")
    })
    .await;
    let late = act(&mut bob, &lapsing, "approve", "").await;
    assert_refused(
        &late,
        StatusCode::CONFLICT,
        "request_not_pending",
        "expired",
    );
    let expire = &events(&gw, "access.expire").await[0];
    assert_eq!(expire.detail["request_id"], lapsing);
    assert_eq!(expire.detail["was"], "pending");

    // A 3-second grant: the session under it ends with it.
    let request = ask(&mut alice, NODE, reason, 3).await;
    let id = request["id"].as_str().unwrap().to_owned();
    let approved = act(&mut bob, &id, "approve", "quick look").await;
    assert_eq!(approved.body["state"], "approved", "{}", approved.text);
    let session = alice.open(NODE, reason).await;
    let mut term = alice.attach(&session).await.unwrap();
    term.type_text("echo still-$((1+1))\r").await;
    term.expect("still-2").await;
    let ended = tokio::time::timeout(Duration::from_secs(20), term.closed())
        .await
        .expect("the session outlived its grant");
    assert_eq!(ended.0, 4000, "closed with {ended:?}");
    audit_log::wait_for_event(&db, Some(&session), "session.end").await;
    let view = alice.get(&format!("/api/v1/sessions/{session}")).await;
    assert_eq!(view.body["state"], "ended", "{}", view.text);
    audit_log::wait_until(&db, None, "the grant expires", |events| {
        events
            .iter()
            .any(|e| e.kind == "access.expire" && e.detail["request_id"] == id.as_str())
    })
    .await;
    assert_eq!(
        alice.get(&format!("/api/v1/requests/{id}")).await.body["state"],
        "expired"
    );

    // Revoked by an approver: the session under the grant ends at once.
    let request = ask(&mut alice, NODE, reason, 600).await;
    let id = request["id"].as_str().unwrap().to_owned();
    act(&mut bob, &id, "approve", "").await;
    let session = alice.open(NODE, reason).await;
    let mut term = alice.attach(&session).await.unwrap();
    term.type_text("echo revoke-me\r").await;
    term.expect("revoke-me").await;
    let revoked = act(&mut bob, &id, "revoke", "done here").await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    assert_eq!(revoked.body["state"], "revoked");
    assert_eq!(revoked.body["ended_by"], "bob");
    assert_eq!(revoked.body["end_comment"], "done here");
    tokio::time::timeout(Duration::from_secs(20), term.closed())
        .await
        .expect("the session outlived its revoked grant");
    let end = audit_log::wait_for_event(&db, Some(&session), "session.end").await;
    assert!(
        end.detail.to_string().contains("access revoked by bob"),
        "{}",
        end.detail
    );
    let revoke = &events(&gw, "access.revoke").await[0];
    assert_eq!(revoke.actor, "bob");
    assert_eq!(revoke.detail["comment"], "done here");
    assert_eq!(revoke.detail["was"], "approved");
    let refused = alice
        .post(
            "/api/v1/sessions",
            &json!({"target": NODE, "reason": reason}),
        )
        .await;
    assert_refused(&refused, StatusCode::FORBIDDEN, "approval_required", NODE);
    let again = act(&mut bob, &id, "revoke", "").await;
    assert_refused(
        &again,
        StatusCode::CONFLICT,
        "request_not_pending",
        "revoked",
    );

    // The requester may withdraw a pending request of their own.
    let request = ask(&mut alice, NODE, reason, 60).await;
    let id = request["id"].as_str().unwrap().to_owned();
    let withdrawn = act(&mut alice, &id, "revoke", "not needed").await;
    assert_eq!(withdrawn.body["state"], "revoked", "{}", withdrawn.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_and_the_pending_limit() {
    // Twelve prod nodes, so that alice can have more requests pending than allowed.
    let gw = start_with(Backend::Sqlite, 3600, |emu| {
        for i in 0..12 {
            emu.nodes.push(
                Node::new(&format!("i-0f00000000000{i:04}"), &format!("app-{i}"))
                    .tag("env", "prod"),
            );
        }
    })
    .await;
    let mut gus = signed_in(&gw, "gus", &["oncall"]).await;
    let mut alice = signed_in(&gw, "alice", &["prod"]).await;

    // Break-glass needs a reason even where the role's reason is optional.
    let listing = gus.get("/api/v1/targets").await.body;
    assert_eq!(target_of(&listing, NODE)["approval"]["break_glass"], true);
    let bad = gus
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "break_glass": true, "duration_seconds": 60}),
        )
        .await;
    assert_refused(
        &bad,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reason",
        "break-glass",
    );
    let granted = gus
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": "site down, nobody answers",
                    "break_glass": true, "duration_seconds": 60}),
        )
        .await;
    assert_eq!(granted.status, StatusCode::CREATED, "{}", granted.text);
    assert_eq!(granted.body["state"], "approved");
    assert_eq!(granted.body["break_glass"], true);
    let id = granted.body["id"].as_str().unwrap();
    let glass = &events(&gw, "access.break_glass").await[0];
    assert_eq!(glass.actor, "gus");
    assert_eq!(glass.reason.as_deref(), Some("site down, nobody answers"));
    let session = gus.open(NODE, "site down, nobody answers").await;
    let start = events(&gw, "session.start").await;
    assert_eq!(start[0].session_id.as_deref(), Some(session.as_str()));
    assert_eq!(start[0].detail["request_id"], id);
    assert_eq!(start[0].detail["break_glass"], true);
    let again = gus
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": "site still down", "break_glass": true}),
        )
        .await;
    assert_refused(&again, StatusCode::CONFLICT, "grant_active", id);

    // At most ten pending requests of one's own.
    for i in 0..10 {
        ask(
            &mut alice,
            &format!("i-0f00000000000{i:04}"),
            "INC-1 sweep",
            60,
        )
        .await;
    }
    let eleventh = alice
        .post(
            "/api/v1/requests",
            &json!({"target": "i-0f000000000000010", "reason": "INC-1 sweep"}),
        )
        .await;
    assert_refused(
        &eleventh,
        StatusCode::CONFLICT,
        "too_many_requests",
        "the limit is 10",
    );
    assert_eq!(events(&gw, "access.request").await.len(), 10);

    // A node that needs no approval says so; one outside every role is not revealed.
    let mut lab = signed_in(&gw, "lab", &["lab"]).await;
    let none = lab
        .post(
            "/api/v1/requests",
            &json!({"target": LAB_NODE, "reason": "checking the lab"}),
        )
        .await;
    assert_refused(
        &none,
        StatusCode::CONFLICT,
        "approval_not_required",
        "directly",
    );
    let hidden = lab
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": "checking the lab"}),
        )
        .await;
    assert_refused(&hidden, StatusCode::NOT_FOUND, "unknown_target", NODE);
}
