#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! Sessions started as the person (issue 15): a policy role names an IAM role, the gateway
//! assumes it through the emulator's STS with the person's name as `RoleSessionName` and
//! `SourceIdentity`, and starts, resumes and terminates the session with those credentials,
//! so SSM's own record (`DescribeSessions`, read with the real AWS SDK) names the person.

mod common;

use std::time::Duration;

use common::api::Api;
use common::audit_log::wait_for_event;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway, both_backends};
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use sha2::Digest as _;

const ROLE: &str = "arn:aws:iam::000000000000:role/porthole/Oncall";
const REASON: &str = "INC-9 who was it, says CloudTrail";

fn policy() -> porthole::gateway::config::PolicyConfig {
    toml::from_str(&format!(
        "[[roles]]\nname = \"oncall\"\ntargets = [{{ ids = [\"*\"] }}]\n\
         aws_role_arn = \"{ROLE}\"\naws_external_id = \"porthole-test\"\n"
    ))
    .unwrap()
}

async fn signed_in(gw: &Gateway, name: &str) -> Api {
    gw.user(name, &[Role::parse("oncall").unwrap()]).await;
    let mut api = Api::new(gw);
    api.login(name).await;
    api
}

async fn sessions_are_owned_by_the_person_in_ssm(backend: Backend) {
    let gw = gateway::start(backend, |c| c.policy = policy()).await;
    let mut alice = signed_in(&gw, "alice").await;
    let mut bob = signed_in(&gw, "bob@example.com").await;
    let a = alice.open(NODE, REASON).await;
    let b = bob.open(NODE, REASON).await;
    let ssm_a = gw.state.engine.live.get(&a).unwrap().ssm_session_id.clone();
    let ssm_b = gw.state.engine.live.get(&b).unwrap().ssm_session_id.clone();
    assert_eq!(
        gw.ssm_owner(&ssm_a).await,
        "arn:aws:sts::000000000000:assumed-role/Oncall/alice"
    );
    assert_eq!(
        gw.ssm_owner(&ssm_b).await,
        "arn:aws:sts::000000000000:assumed-role/Oncall/bob@example.com"
    );

    // What was sent to STS: the person as source identity, the tags, the external id.
    let assumed = gw.emu.emulator.state().sts.assumed();
    let alices = assumed.iter().find(|x| x.session_name == "alice").unwrap();
    assert_eq!(alices.role_arn, ROLE);
    assert_eq!(alices.source_identity.as_deref(), Some("alice"));
    assert_eq!(alices.external_id.as_deref(), Some("porthole-test"));
    let reason_sha = hex::encode(sha2::Sha256::digest(REASON.as_bytes()));
    assert_eq!(
        alices.tags,
        [
            ("porthole:user".to_owned(), "alice".to_owned()),
            ("porthole:session-id".to_owned(), a.clone()),
            ("porthole:reason-sha256".to_owned(), reason_sha),
        ]
    );

    // The audit row joins CloudTrail's: the role, the assumed-role ARN, the source identity;
    // no key of the credentials anywhere in it.
    let start = wait_for_event(&gw.state.engine.db, Some(&a), "session.start").await;
    assert_eq!(start.detail["aws_role_arn"], ROLE);
    assert_eq!(
        start.detail["assumed_role_arn"],
        "arn:aws:sts::000000000000:assumed-role/Oncall/alice"
    );
    assert_eq!(start.detail["source_identity"], "alice");
    let everything = porthole::gateway::store::audit::list(&gw.state.engine.db, None)
        .await
        .unwrap();
    for event in &everything {
        let text = event.detail.to_string();
        assert!(
            !text.contains("ASIA") && !text.contains("emulated-session-token"),
            "{text}"
        );
    }

    // Terminating goes through the person's credentials too (the emulator would refuse
    // nothing else, but the call must not fail for want of them).
    let gone = alice.delete(&format!("/api/v1/sessions/{a}")).await;
    assert_eq!(gone.status, StatusCode::ACCEPTED, "{}", gone.text);
    gw.stop().await;
}
both_backends!(sessions_are_owned_by_the_person_in_ssm);

/// A trust policy without `sts:SetSourceIdentity`: the start fails with a message naming it,
/// nothing is opened at SSM, and the failure is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_assume_role_fails_the_start_and_names_the_permission() {
    let gw = gateway::start_with(
        Backend::Sqlite,
        |e| e.sts.deny_source_identity = vec![ROLE.into()],
        |c| c.policy = policy(),
    )
    .await;
    let mut alice = signed_in(&gw, "alice").await;
    let reply = alice
        .post(
            "/api/v1/sessions",
            &serde_json::json!({"target": NODE, "reason": REASON}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text);
    assert!(
        reply.message().contains("sts:SetSourceIdentity"),
        "{}",
        reply.text
    );
    assert!(
        !reply.text.contains("000000000000"),
        "no account id to the browser: {}",
        reply.text
    );
    assert!(
        gw.emu.emulator.state().registry.list().is_empty(),
        "nothing opened"
    );
    let end = wait_for_event(&gw.state.engine.db, None, "session.end").await;
    let how = end.detail["how"].as_str().unwrap();
    assert!(
        how.starts_with("failed to start: AssumeRole was refused"),
        "{how}"
    );
    assert!(
        end.detail["error"]
            .as_str()
            .unwrap()
            .contains("AccessDenied")
    );
    gw.stop().await;
}

/// Credentials that expire mid-session: when the service cuts the socket, the session resumes
/// with `ResumeSession` signed by fresh credentials, and the shell goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_expiring_mid_session_are_fetched_again_for_the_resume() {
    let gw = gateway::start_with(
        Backend::Sqlite,
        |e| {
            e.sts.lifetime = Some(Duration::from_secs(2));
            e.disconnect_every = Some(Duration::from_secs(4));
        },
        |c| c.policy = policy(),
    )
    .await;
    let mut alice = signed_in(&gw, "alice").await;
    let id = alice.open(NODE, REASON).await;
    let ssm_id = gw
        .state
        .engine
        .live
        .get(&id)
        .unwrap()
        .ssm_session_id
        .clone();
    let mut term = alice.attach(&id).await.unwrap();
    term.until_synced().await;
    term.type_text("echo one-$((40+2))\r").await;
    term.expect("one-42").await;
    // Past the credentials' life and the socket's cut: a resume was needed and made.
    let session = gw.emu.emulator.state().registry.get(&ssm_id).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while session.issued_tokens().len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no ResumeSession within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    term.type_text("echo two-$((40+2))\r").await;
    term.expect("two-42").await;
    let assumed = gw.emu.emulator.state().sts.assumed();
    assert!(assumed.len() >= 2, "fetched again: {}", assumed.len());
    assert_eq!(
        gw.ssm_owner(&ssm_id).await,
        "arn:aws:sts::000000000000:assumed-role/Oncall/alice"
    );
    gw.stop().await;
}
