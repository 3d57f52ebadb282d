//! Sharing a session (issue 19): the owner invites a named person into their live session to
//! type along (`write`) or watch (`read`), and revokes them at any time. Against the real
//! emulator and its PTY: who may invite (`join_others`, the owner only), whose roles must allow
//! the node (the invitee's), bad input named, the per-session limit, the participant's keys
//! reaching the shell with the owner seeing the echo, a reader's keys refused, presence and
//! "last typed by", the revocation closing the participant's socket (4005), the audit rows and
//! the recording's marker events that name who typed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::api::{Api, Attach, WAIT};
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway, both_backends};
use porthole::gateway::http::attach::{CLOSE_REPLACED, CLOSE_REVOKED};
use porthole::gateway::identity::users::Role;
use porthole::gateway::policy::PolicyFile;
use reqwest::StatusCode;
use serde_json::{Value, json};

const REASON: &str = "INC-1900 pair debugging the disk";

/// `web` may share its sessions; `ops` reaches every node but may not share; `lab` reaches no
/// node of the emulator's; `scripts` reaches them with another document only.
const POLICY: &str = r#"
[[roles]]
name = "web"
targets = [{ ids = ["*"] }]
join_others = true

[[roles]]
name = "ops"
targets = [{ ids = ["*"] }]

[[roles]]
name = "lab"
targets = [{ ids = ["i-ffff*"] }]
join_others = true

[[roles]]
name = "scripts"
targets = [{ ids = ["*"] }]
documents = ["AWS-StartInteractiveCommand"]
"#;

async fn start(backend: Backend, max_participants: u32) -> Gateway {
    let file: PolicyFile = toml::from_str(POLICY).unwrap();
    gateway::start(backend, move |c| {
        c.policy.roles = Some(file.roles);
        c.sessions.max_participants = max_participants;
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

fn participants(id: &str) -> String {
    format!("/api/v1/sessions/{id}/participants")
}

async fn invite(api: &mut Api, id: &str, user: &str, mode: &str) -> common::api::Reply {
    api.post(&participants(id), &json!({"user": user, "mode": mode}))
        .await
}

/// Reads until a presence message satisfying `ok` arrived; that message.
async fn presence(tab: &mut Attach, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = tab
            .texts
            .iter()
            .rev()
            .find(|t| t["type"] == "presence")
            .filter(|t| ok(t))
        {
            return found.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such presence: {:?}",
            tab.texts
        );
        tab.read_within(Duration::from_millis(200)).await;
    }
}

fn people(message: &Value) -> Vec<(String, String)> {
    message["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn sharing_with_a_writer_and_a_reader(backend: Backend) {
    let gw = start(backend, 8).await;
    let mut alice = signed_in(&gw, "alice", &["web"]).await;
    let mut bob = signed_in(&gw, "bob", &["ops"]).await;
    let dora = signed_in(&gw, "dora", &["ops"]).await;
    let id = alice.open(NODE, REASON).await;
    let mut owner = alice.attach(&id).await.unwrap();
    owner.type_text("echo READY-$((20+1))\n").await;
    owner.expect("READY-21").await;

    // Before an invitation bob does not even see the session.
    assert_eq!(bob.attach(&id).await.err().map(|e| e.0), Some(404));
    assert_eq!(
        bob.get(&format!("/api/v1/sessions/{id}")).await.status,
        StatusCode::NOT_FOUND
    );

    let reply = invite(&mut alice, &id, "bob", "write").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(
        (
            &reply.body["user"],
            &reply.body["mode"],
            &reply.body["invited_by"]
        ),
        (&json!("bob"), &json!("write"), &json!("alice"))
    );
    let reply = invite(&mut alice, &id, "dora", "read").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    let listed = alice.get(&participants(&id)).await;
    let names: Vec<(&str, &str)> = listed.body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["user"].as_str().unwrap(), p["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("bob", "write"), ("dora", "read")]);
    // The invited see the session and who else is in it.
    assert_eq!(
        bob.get(&format!("/api/v1/sessions/{id}")).await.body["user"],
        "alice"
    );
    assert_eq!(bob.get(&participants(&id)).await.status, StatusCode::OK);

    // Bob joins: the screen first, then he types and the owner sees the echo.
    let mut pair = bob.attach(&id).await.unwrap();
    pair.until_synced().await;
    assert!(
        String::from_utf8_lossy(&pair.before_sync).contains("READY-21"),
        "the screen first"
    );
    let seen = presence(&mut owner, |m| {
        people(m).contains(&("bob".into(), "write".into()))
    })
    .await;
    assert_eq!(people(&seen)[0], ("alice".into(), "owner".into()));
    let at = owner.screen.len();
    pair.type_text("echo BOB-TYPED-$((6*7))\n").await;
    owner.expect_from(at, "BOB-TYPED-42").await;
    pair.expect("BOB-TYPED-42").await;
    // Everyone attached is told who typed last; the owner keeps typing as before.
    presence(&mut owner, |m| m["last_typed"] == "bob").await;
    presence(&mut pair, |m| m["last_typed"] == "bob").await;
    owner.type_text("echo ALICE-AGAIN-$((1+1))\n").await;
    pair.expect("ALICE-AGAIN-2").await;
    presence(&mut pair, |m| m["last_typed"] == "alice").await;

    // Dora watches: her keys are refused and reach nothing.
    let mut watcher = dora.attach(&id).await.unwrap();
    watcher.until_synced().await;
    watcher.type_text("echo DORA-$((3*3))\n").await;
    while !watcher.texts.iter().any(|t| t["type"] == "refused") {
        assert!(watcher.read_within(Duration::from_secs(10)).await);
    }
    let refused = watcher
        .texts
        .iter()
        .find(|t| t["type"] == "refused")
        .unwrap();
    assert!(
        refused["message"].as_str().unwrap().contains("read-only"),
        "{refused}"
    );
    presence(&mut owner, |m| {
        people(m).contains(&("dora".into(), "read".into()))
    })
    .await;
    let at = owner.screen.len();
    owner.type_text("echo MARK-$((5+5))\n").await;
    owner.expect_from(at, "MARK-10").await;
    watcher.expect("MARK-10").await;
    assert!(!String::from_utf8_lossy(&owner.screen).contains("DORA-9"));

    // A second tab of bob's takes over his first; the owner's tab is never touched.
    let mut pair_two = bob.attach(&id).await.unwrap();
    pair_two.until_synced().await;
    assert_eq!(pair.closed().await.0, CLOSE_REPLACED);
    let at = owner.screen.len();
    pair_two.type_text("echo SECOND-TAB-$((2+2))\n").await;
    owner.expect_from(at, "SECOND-TAB-4").await;

    // Revoked: his socket closes at once with 4005, naming who stopped sharing; he can no
    // longer attach or see the session.
    let reply = alice
        .delete(&format!("/api/v1/sessions/{id}/participants/bob"))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.text);
    let (code, why) = pair_two.closed().await;
    assert_eq!(code, CLOSE_REVOKED, "{why}");
    assert!(why.contains("alice stopped sharing"), "{why}");
    assert_eq!(bob.attach(&id).await.err().map(|e| e.0), Some(404));
    let reply = alice
        .delete(&format!("/api/v1/sessions/{id}/participants/bob"))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.code(), "unknown_participant");
    presence(&mut owner, |m| !people(m).iter().any(|(n, _)| n == "bob")).await;

    // The owner's shell is theirs throughout.
    let at = owner.screen.len();
    owner.type_text("echo STILL-MINE-$((9+9))\n").await;
    owner.expect_from(at, "STILL-MINE-18").await;
    drop(watcher);
    owner.type_text("exit\n").await;
    owner.closed().await;

    // The audit log: the invitations, the attaches and the revocation, with who and how.
    let events = audit_log::wait_until(
        &gw.state.engine.db,
        Some(&id),
        "the participants' detaches and the end",
        |events| {
            events
                .iter()
                .filter(|e| e.kind == "session.participant.detach")
                .count()
                >= 3
                && events.iter().any(|e| e.kind == "session.end")
        },
    )
    .await;
    let of = |kind: &str| -> Vec<&porthole::gateway::store::audit::StoredEvent> {
        events.iter().filter(|e| e.kind == kind).collect()
    };
    let added = of("session.participant.add");
    assert_eq!(added.len(), 2);
    assert_eq!(added[0].actor, "alice");
    assert_eq!(
        (&added[0].detail["participant"], &added[0].detail["mode"]),
        (&json!("bob"), &json!("write"))
    );
    assert_eq!(added[1].detail["mode"], "read");
    let attached = of("session.participant.attach");
    assert_eq!(attached.len(), 3, "bob twice, dora once");
    assert_eq!(attached[0].actor, "bob");
    assert_eq!(
        (
            &attached[0].detail["mode"],
            &attached[0].detail["invited_by"],
            &attached[0].detail["owner"]
        ),
        (&json!("write"), &json!("alice"), &json!("alice"))
    );
    let removed = of("session.participant.remove");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].actor, "alice");
    assert_eq!(
        (
            &removed[0].detail["participant"],
            &removed[0].detail["mode"]
        ),
        (&json!("bob"), &json!("write"))
    );
    let detaches: Vec<&str> = of("session.participant.detach")
        .iter()
        .map(|e| e.detail["why"].as_str().unwrap())
        .collect();
    assert!(detaches.contains(&"invitation revoked"), "{detaches:?}");

    // The recording names who typed: a marker whenever the author changes.
    let cast = alice.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(cast.status, StatusCode::OK);
    let markers: Vec<String> = cast
        .text
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e[1] == "m")
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        markers,
        [
            "input by alice",
            "input by bob",
            "input by alice",
            "input by bob",
            "input by alice",
        ],
        "dora's refused keys are not input"
    );
    gw.stop().await;
}

both_backends!(sharing_with_a_writer_and_a_reader);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_invite_whom_and_bad_invitations_are_named() {
    let gw = start(Backend::Sqlite, 2).await;
    let mut alice = signed_in(&gw, "alice", &["web"]).await;
    let mut bob = signed_in(&gw, "bob", &["ops"]).await;
    signed_in(&gw, "carol", &["lab"]).await;
    signed_in(&gw, "dave", &["scripts"]).await;
    for name in ["erin", "frank", "gina"] {
        signed_in(&gw, name, &["ops"]).await;
    }
    let id = alice.open(NODE, REASON).await;

    // Not the owner: bob does not see it; invited, he still may not invite.
    let reply = invite(&mut bob, &id, "erin", "write").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(
        invite(&mut alice, &id, "bob", "read").await.status,
        StatusCode::CREATED
    );
    let reply = invite(&mut bob, &id, "erin", "write").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        reply.message().contains("only alice may invite"),
        "{}",
        reply.text
    );
    let reply = bob
        .delete(&format!("/api/v1/sessions/{id}/participants/bob"))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);

    // An owner without join_others may not share their own session.
    let own = bob.open(NODE, REASON).await;
    let reply = invite(&mut bob, &own, "alice", "write").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        reply.message().contains("bob may not invite others")
            && reply.message().contains("join_others"),
        "{}",
        reply.text
    );

    // The invitee's own roles must allow the node with the session's document.
    let reply = invite(&mut alice, &id, "carol", "write").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        reply.message().contains(&format!(
            "carol may not join a session on this node: no role of theirs allows {NODE}"
        )),
        "{}",
        reply.text
    );
    let reply = invite(&mut alice, &id, "dave", "read").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        reply.message().contains("not with the document"),
        "{}",
        reply.text
    );

    // Bad input, named.
    for (body, words) in [
        (
            json!({"user": "nobody", "mode": "write"}),
            "there is no user named \"nobody\"",
        ),
        (json!({"user": "alice", "mode": "write"}), "alice is you"),
        (
            json!({"user": "erin", "mode": "admin"}),
            "mode must be \"write\" or \"read\", not \"admin\"",
        ),
        (
            json!({"user": "  ", "mode": "read"}),
            "name the person to invite",
        ),
        (
            json!({"user": "Not A Name!", "mode": "read"}),
            "no user named",
        ),
    ] {
        let reply = alice.post(&participants(&id), &body).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.text
        );
        assert_eq!(reply.code(), "invalid_participant");
        assert!(reply.message().contains(words), "{body}: {}", reply.text);
    }
    let reply = alice
        .post(
            &participants(&id),
            &json!({"user": "erin", "mode": "write", "admin": true}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    gw.disable("gina").await;
    let reply = invite(&mut alice, &id, "gina", "read").await;
    assert_eq!(
        reply.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        reply.text
    );
    assert!(
        reply.message().contains("gina is disabled"),
        "{}",
        reply.text
    );

    // CSRF and Origin, as every state change.
    let mut no_csrf = alice.clone();
    no_csrf.csrf = None;
    assert_eq!(
        invite(&mut no_csrf, &id, "erin", "read").await.status,
        StatusCode::FORBIDDEN
    );
    let mut elsewhere = alice.clone();
    elsewhere.origin = Some("http://evil.example".into());
    assert_eq!(
        invite(&mut elsewhere, &id, "erin", "read").await.status,
        StatusCode::FORBIDDEN
    );

    // The limit (sessions.max_participants = 2): bob and erin; frank is one too many; a new
    // mode for one already invited is not a new participant.
    assert_eq!(
        invite(&mut alice, &id, "erin", "read").await.status,
        StatusCode::CREATED
    );
    let reply = invite(&mut alice, &id, "frank", "read").await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    assert_eq!(reply.code(), "too_many_participants");
    assert!(
        reply.message().contains("already has 2 participants"),
        "{}",
        reply.text
    );
    let reply = invite(&mut alice, &id, "erin", "write").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["mode"], "write");
    assert_eq!(
        alice
            .delete(&format!("/api/v1/sessions/{id}/participants/erin"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        invite(&mut alice, &id, "frank", "read").await.status,
        StatusCode::CREATED
    );

    // Nothing refused was stored or audited.
    let added =
        audit_log::wait_for_events_of(&gw.state.engine.db, Some(&id), "session.participant.add", 4)
            .await;
    let who: Vec<&str> = added
        .iter()
        .map(|e| e.detail["participant"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["bob", "erin", "erin", "frank"]);
    assert_eq!(added[2].detail["previous_mode"], "read");

    // An ended session cannot be shared.
    let mut tab = alice.attach(&id).await.unwrap();
    tab.type_text("exit\n").await;
    tab.closed().await;
    alice.wait_ended(&id).await;
    let reply = invite(&mut alice, &id, "gina", "read").await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text);
    gw.stop().await;
}

/// What another gateway's revocation or a policy reload does to an attached participant: the
/// socket looks at its invitation and the policy every 2 s. A row removed behind this
/// gateway's back (as a revocation on another gateway is) closes it with 4005; a reload that
/// takes the node away from the participant's roles closes it with 4003 naming why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_and_the_policy_are_looked_at_again_while_attached() {
    use porthole::gateway::http::attach::CLOSE_NOT_ALLOWED;
    use porthole::gateway::store::participants;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, POLICY).unwrap();
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.policy.file = Some(file.clone());
        c.policy.watch_seconds = 1;
    })
    .await;
    let mut alice = signed_in(&gw, "alice", &["web"]).await;
    let bob = signed_in(&gw, "bob", &["ops"]).await;
    let erin = signed_in(&gw, "erin", &["ops"]).await;
    let id = alice.open(NODE, REASON).await;
    for name in ["bob", "erin"] {
        let reply = invite(&mut alice, &id, name, "write").await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    }

    // Bob's invitation goes from the table without a word to this gateway's session.
    let mut pair = bob.attach(&id).await.unwrap();
    pair.until_synced().await;
    let db = &gw.state.engine.db;
    let bob_id = participants::list(db, &id).await.unwrap()[0].user_id();
    let mut tx = db.begin_write().await.unwrap();
    assert!(participants::remove(&mut tx, &id, bob_id).await.unwrap());
    tx.commit().await.unwrap();
    let (code, why) = tokio::time::timeout(Duration::from_secs(10), pair.closed())
        .await
        .expect("closed within the recheck");
    assert_eq!(code, CLOSE_REVOKED, "{why}");
    assert!(why.contains("stopped sharing"), "{why}");

    // Erin's roles lose the node in a reload.
    let mut other = erin.attach(&id).await.unwrap();
    other.until_synced().await;
    std::fs::write(
        &file,
        POLICY.replace(
            "name = \"ops\"\ntargets = [{ ids = [\"*\"] }]",
            "name = \"ops\"\ntargets = [{ ids = [\"i-ffff*\"] }]",
        ),
    )
    .unwrap();
    audit_log::wait_for_event(db, None, "policy.reload").await;
    let (code, why) = tokio::time::timeout(Duration::from_secs(10), other.closed())
        .await
        .expect("closed within the recheck");
    assert_eq!(code, CLOSE_NOT_ALLOWED, "{why}");
    assert!(
        why.contains("erin may not join a session on this node: no role of theirs allows"),
        "{why}"
    );
    let ends = audit_log::wait_for_events_of(db, Some(&id), "session.participant.detach", 2).await;
    let whys: Vec<&str> = ends
        .iter()
        .map(|e| e.detail["why"].as_str().unwrap())
        .collect();
    assert_eq!(whys, ["invitation revoked", "join no longer allowed"]);
    // The owner's session is untouched.
    assert_eq!(
        alice.get(&format!("/api/v1/sessions/{id}")).await.body["state"],
        "active"
    );
    gw.stop().await;
}

/// `gated` reaches every node only after an access request approved by `leads`.
const GATED_POLICY: &str = r#"
[[roles]]
name = "web"
targets = [{ ids = ["*"] }]
join_others = true

[[roles]]
name = "gated"
targets = [{ ids = ["*"] }]
[roles.approval]
approvers = ["leads"]

[[roles]]
name = "leads"
"#;

/// An invitee whose roles allow the node only after an approved access request is refused,
/// saying so, until they hold an approved grant for it; then the invitation is taken and they
/// type along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitee_whose_roles_need_approval_is_refused_until_granted() {
    let file: PolicyFile = toml::from_str(GATED_POLICY).unwrap();
    let gw = gateway::start(Backend::Sqlite, move |c| {
        c.policy.roles = Some(file.roles);
    })
    .await;
    let mut alice = signed_in(&gw, "alice", &["web"]).await;
    let mut carol = signed_in(&gw, "carol", &["gated"]).await;
    let mut lead = signed_in(&gw, "lead", &["leads"]).await;
    let id = alice.open(NODE, REASON).await;

    let reply = invite(&mut alice, &id, "carol", "write").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.code(), "forbidden");
    assert_eq!(
        reply.message(),
        "carol may not join a session on this node: their roles need an approved access \
         request for it first (1 approval by leads, grants up to 3600 s)",
        "{}",
        reply.text
    );
    let added = porthole::gateway::store::audit::list(&gw.state.engine.db, Some(&id))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "session.participant.add")
        .count();
    assert_eq!(added, 0, "nothing refused is added");

    // A pending request is not a grant.
    let asked = carol
        .post(
            "/api/v1/requests",
            &json!({"target": NODE, "reason": "INC-1900 pairing with alice", "duration_seconds": 600}),
        )
        .await;
    assert_eq!(asked.status, StatusCode::CREATED, "{}", asked.text);
    let request = asked.body["id"].as_str().unwrap().to_owned();
    let reply = invite(&mut alice, &id, "carol", "write").await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert!(
        reply.message().contains("need an approved access request"),
        "{}",
        reply.text
    );

    // Approved: the invitation is taken, and carol's keys reach the shell.
    let approved = lead
        .post(
            &format!("/api/v1/requests/{request}/approve"),
            &json!({"comment": "go ahead"}),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    assert_eq!(approved.body["state"], "approved", "{}", approved.text);
    let reply = invite(&mut alice, &id, "carol", "write").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.body["mode"], "write");
    let mut pair = carol.attach(&id).await.unwrap();
    pair.until_synced().await;
    pair.type_text("echo CAROL-$((5*5))\n").await;
    pair.expect("CAROL-25").await;
    gw.stop().await;
}
