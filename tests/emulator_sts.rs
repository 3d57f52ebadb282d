#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! The emulator's STS through the real aws-sdk-sts (the AWS Query protocol): `AssumeRole`
//! issues keys that the control plane then knows as the assumed role, so a session started
//! with them is owned by `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`; refusals name the
//! missing permission; expired keys are refused with `ExpiredTokenException`.

mod common;

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_sts::types::Tag;
use common::emulator::{self, NODE};

const ROLE: &str = "arn:aws:iam::111122223333:role/porthole/Oncall";

async fn sdk(url: &str, credentials: Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

#[tokio::test]
async fn assumed_keys_own_the_sessions_they_start() {
    // The node is in the role's account: only callers of that account see and reach it.
    let emu = emulator::start(|c| {
        for node in &mut c.nodes {
            if node.id == NODE {
                node.account = Some("111122223333".into());
            }
        }
    })
    .await;
    let url = emu.emulator.url();
    let gateway = sdk(
        &url,
        Credentials::new("AKIDGATEWAY", "secret", None, None, "test"),
    )
    .await;
    let sts = aws_sdk_sts::Client::new(&gateway);
    let me = sts.get_caller_identity().send().await.unwrap();
    assert_eq!(me.arn(), Some("arn:aws:iam::000000000000:user/AKIDGATEWAY"));

    let reply = sts
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("alice@example.com")
        .source_identity("alice@example.com")
        .external_id("porthole-prod")
        .tags(
            Tag::builder()
                .key("porthole:user")
                .value("alice@example.com")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let assumed_arn = "arn:aws:sts::111122223333:assumed-role/Oncall/alice@example.com";
    assert_eq!(reply.assumed_role_user().unwrap().arn(), assumed_arn);
    assert_eq!(reply.source_identity(), Some("alice@example.com"));
    let c = reply.credentials().unwrap();
    assert!(c.access_key_id().starts_with("ASIA"));
    let sent = emu.emulator.state().sts.assumed();
    assert_eq!(sent[0].external_id.as_deref(), Some("porthole-prod"));
    assert_eq!(
        sent[0].tags,
        [("porthole:user".to_owned(), "alice@example.com".to_owned())]
    );

    let person = sdk(
        &url,
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "assumed",
        ),
    )
    .await;
    let who = aws_sdk_sts::Client::new(&person)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.arn(), Some(assumed_arn));
    assert_eq!(who.account(), Some("111122223333"));
    let ids = |ssm: aws_sdk_ssm::Client| async move {
        let listed = ssm.describe_instance_information().send().await.unwrap();
        listed
            .instance_information_list()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    // Each account sees its own nodes only; another account's node is no target.
    assert_eq!(ids(aws_sdk_ssm::Client::new(&person)).await, [NODE]);
    assert!(
        !ids(aws_sdk_ssm::Client::new(&gateway))
            .await
            .contains(&NODE.to_owned())
    );
    let refused = aws_sdk_ssm::Client::new(&gateway)
        .start_session()
        .target(NODE)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        refused.as_service_error().and_then(|e| e.meta().code()),
        Some("InvalidTarget")
    );
    let ssm = aws_sdk_ssm::Client::new(&person);
    let start = emulator::start_session(&ssm, NODE, "INC-1 as alice").await;
    // Named after the role session (the emulator keeps the characters every SDK accepts).
    assert!(
        start.session_id.starts_with("aliceexample.com-"),
        "{}",
        start.session_id
    );
    let listed = ssm
        .describe_sessions()
        .state(aws_sdk_ssm::types::SessionState::Active)
        .send()
        .await
        .unwrap();
    let session = listed
        .sessions()
        .iter()
        .find(|s| s.session_id() == Some(start.session_id.as_str()))
        .unwrap();
    assert_eq!(session.owner(), Some(assumed_arn));
}

#[tokio::test]
async fn refusals_name_the_permission_and_expired_keys_are_refused() {
    let emu = emulator::start(|c| {
        c.sts.deny_source_identity = vec![ROLE.into()];
        c.sts.deny_roles = vec!["arn:aws:iam::111122223333:role/Forbidden".into()];
        c.sts.lifetime = Some(Duration::from_millis(300));
    })
    .await;
    let url = emu.emulator.url();
    let gateway = sdk(
        &url,
        Credentials::new("AKIDGATEWAY", "secret", None, None, "test"),
    )
    .await;
    let sts = aws_sdk_sts::Client::new(&gateway);

    let e = sts
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("bob")
        .source_identity("bob")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    assert!(
        e.message().unwrap().contains("sts:SetSourceIdentity"),
        "{e:?}"
    );
    let e = sts
        .assume_role()
        .role_arn("arn:aws:iam::111122223333:role/Forbidden")
        .role_session_name("bob")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    assert!(
        e.message().unwrap().contains("sts:AssumeRole on resource"),
        "{e:?}"
    );
    let e = sts
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("not a name")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ValidationError"));

    // Keys that live 300 ms: good at once, refused after.
    let reply = sts
        .assume_role()
        .role_arn(ROLE)
        .role_session_name("bob")
        .send()
        .await
        .unwrap();
    let c = reply.credentials().unwrap();
    let person = sdk(
        &url,
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            None,
            "assumed",
        ),
    )
    .await;
    let ssm = aws_sdk_ssm::Client::new(&person);
    ssm.describe_sessions()
        .state(aws_sdk_ssm::types::SessionState::Active)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = ssm
        .describe_sessions()
        .state(aws_sdk_ssm::types::SessionState::Active)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("ExpiredTokenException"), "{e:?}");
}
