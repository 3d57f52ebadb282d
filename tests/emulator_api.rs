//! The emulator's control plane through the real AWS SDK clients (`aws-sdk-ssm`,
//! `aws-sdk-kms`): every operation, paging, each filter and each error shape. The data channel
//! is not touched here (see `emulator_data_channel.rs`).

// Test helpers outside `#[test]` functions panic on failure too, as test code should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_kms::types::DataKeySpec;
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::primitives::{DateTime, DateTimeFormat};
use aws_sdk_ssm::types::{
    InstanceInformation, InstanceInformationFilter, InstanceInformationFilterKey,
    InstanceInformationStringFilter, PingStatus, PlatformType, ResourceType,
    ResourceTypeForTagging, Session, SessionFilter, SessionFilterKey, SessionState, SessionStatus,
};
use porthole::emulator::nodes::{Node, default_nodes};
use porthole::emulator::{EmulatorConfig, RunningEmulator};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The first built-in node: online Linux, tags Name=web-1, env=prod, team=web.
const NODE: &str = "i-0a1b2c3d4e5f60001";
/// The built-in node that is not online.
const OFFLINE: &str = "i-0a1b2c3d4e5f60004";
const KEY: &str = "alias/porthole-test";
const OTHER_KEY: &str = "porthole-other-key";
const OWNER: &str = "arn:aws:iam::000000000000:user/AKIDTEST";

/// The built-in nodes plus 12 generated ones (16 in all): enough to page with the minimum
/// `MaxResults` of 5, and one of each platform, ping status and agent version.
fn nodes() -> Vec<Node> {
    let mut nodes = default_nodes();
    for i in 0..12u32 {
        let env = if i % 2 == 0 { "test" } else { "stage" };
        let mut node = Node::new(&format!("i-0b{i:015x}"), &format!("gen-{i:02}"))
            .tag("env", env)
            .tag("batch", "generated");
        match i {
            0 => node.platform = "Windows".into(),
            1 => {
                node.platform = "MacOS".into();
                node.agent_version = "3.2.582.0".into();
            }
            2 => node.ping_status = "Inactive".into(),
            3 => node.kms_key_id = Some(KEY.into()),
            4 => node.kms_key_id = Some(OTHER_KEY.into()),
            5 => node = node.tag("owner", "ops"),
            _ => {}
        }
        nodes.push(node);
    }
    nodes
}

struct Harness {
    emulator: RunningEmulator,
    ssm: aws_sdk_ssm::Client,
    kms: aws_sdk_kms::Client,
    _dir: tempfile::TempDir,
}

async fn sdk_config(url: &str, access_key: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region("us-east-1")
        .credentials_provider(Credentials::new(access_key, "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EmulatorConfig::new(dir.path());
    config.nodes = nodes();
    let emulator = RunningEmulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let sdk = sdk_config(&emulator.url(), "AKIDTEST").await;
    Harness {
        ssm: aws_sdk_ssm::Client::new(&sdk),
        kms: aws_sdk_kms::Client::new(&sdk),
        emulator,
        _dir: dir,
    }
}

/// The error code and message of a failed SDK call (SSM or KMS).
fn code_and_message<T, E, R>(
    result: Result<T, aws_sdk_ssm::error::SdkError<E, R>>,
) -> (String, String)
where
    T: std::fmt::Debug,
    E: ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    let err = result.expect_err("the call should have failed");
    let Some(service) = err.as_service_error() else {
        panic!("not a service error: {err:?}")
    };
    let code = service
        .code()
        .unwrap_or_else(|| panic!("no error code in {err:?}"));
    (
        code.to_owned(),
        service.message().unwrap_or_default().to_owned(),
    )
}

fn ids(list: &[InstanceInformation]) -> Vec<String> {
    list.iter()
        .map(|i| i.instance_id().unwrap().to_owned())
        .collect()
}

fn session_ids(list: &[Session]) -> BTreeSet<String> {
    list.iter()
        .map(|s| s.session_id().unwrap().to_owned())
        .collect()
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::from(t).fmt(DateTimeFormat::DateTime).unwrap()
}

#[tokio::test]
async fn a_session_starts_shows_resumes_and_terminates() {
    let h = start().await;
    let reason = "INC-42: disk full on web-1";
    let started = h
        .ssm
        .start_session()
        .target(NODE)
        .reason(reason)
        .send()
        .await
        .unwrap();
    let id = started.session_id().unwrap();
    assert!(id.starts_with("AKIDTEST-"), "{id}");
    let port = h.emulator.endpoint.port();
    assert_eq!(
        started.stream_url().unwrap(),
        format!("ws://127.0.0.1:{port}/v1/data-channel/{id}?role=publish_subscribe")
    );
    let token = started.token_value().unwrap();
    assert!(!token.is_empty());

    // Active, with the caller as Owner and the Reason.
    let active = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap();
    let [session] = active.sessions() else {
        panic!("one active session: {active:?}")
    };
    assert_eq!(session.session_id(), Some(id));
    assert_eq!(session.target(), Some(NODE));
    assert_eq!(session.owner(), Some(OWNER));
    assert_eq!(session.reason(), Some(reason));
    assert_eq!(session.document_name(), Some("SSM-SessionManagerRunShell"));
    assert!(matches!(
        session.status(),
        Some(SessionStatus::Connecting | SessionStatus::Connected)
    ));
    let start_date = SystemTime::try_from(*session.start_date().unwrap()).unwrap();
    let age = SystemTime::now()
        .duration_since(start_date)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "StartDate {start_date:?}");
    assert!(session.end_date().is_none());
    assert!(active.next_token().is_none());

    // ResumeSession hands out a new token for the same stream.
    let resumed = h.ssm.resume_session().session_id(id).send().await.unwrap();
    assert_eq!(resumed.session_id(), Some(id));
    assert_eq!(resumed.stream_url(), started.stream_url());
    let new_token = resumed.token_value().unwrap();
    assert!(!new_token.is_empty());
    assert_ne!(new_token, token);

    // TerminateSession moves it to History; a second call is fine.
    let ended = h
        .ssm
        .terminate_session()
        .session_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.session_id(), Some(id));
    let active = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap();
    assert!(active.sessions().is_empty(), "{active:?}");
    let history = h
        .ssm
        .describe_sessions()
        .state(SessionState::History)
        .send()
        .await
        .unwrap();
    let [session] = history.sessions() else {
        panic!("one ended session: {history:?}")
    };
    assert_eq!(session.session_id(), Some(id));
    assert!(matches!(
        session.status(),
        Some(SessionStatus::Terminating | SessionStatus::Terminated)
    ));
    assert!(session.end_date().is_some());
    assert_eq!(session.reason(), Some(reason));
    let again = h
        .ssm
        .terminate_session()
        .session_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(again.session_id(), Some(id));

    // An ended session cannot be resumed, and says why.
    let (code, message) = code_and_message(h.ssm.resume_session().session_id(id).send().await);
    assert_eq!(code, "DoesNotExistException");
    assert!(
        message.contains("terminated") && message.contains(id),
        "{message}"
    );
}

#[tokio::test]
async fn interactive_command_sessions_record_their_document_and_parameters() {
    let h = start().await;
    let started = h
        .ssm
        .start_session()
        .target(NODE)
        .document_name("AWS-StartInteractiveCommand")
        .parameters("command", vec!["top".into()])
        .send()
        .await
        .unwrap();
    let id = started.session_id().unwrap();
    let active = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap();
    let [session] = active.sessions() else {
        panic!("{active:?}")
    };
    assert_eq!(session.session_id(), Some(id));
    assert_eq!(session.document_name(), Some("AWS-StartInteractiveCommand"));
    assert!(session.reason().is_none());
    h.ssm
        .terminate_session()
        .session_id(id)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn start_session_refuses_bad_requests_with_the_service_codes() {
    let h = start().await;
    let (code, message) = code_and_message(h.ssm.start_session().target("i-nope").send().await);
    assert_eq!(code, "InvalidTarget");
    assert!(message.contains("i-nope"), "{message}");

    let (code, message) = code_and_message(h.ssm.start_session().target(OFFLINE).send().await);
    assert_eq!(code, "TargetNotConnected");
    assert_eq!(message, format!("{OFFLINE} is not connected."));

    let (code, message) = code_and_message(
        h.ssm
            .start_session()
            .target(NODE)
            .document_name("AWS-StartSSHSession")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidDocument");
    assert!(message.contains("AWS-StartSSHSession"), "{message}");

    let (code, message) = code_and_message(h.ssm.start_session().send().await);
    assert_eq!(code, "ValidationException");
    assert!(message.contains("'target'"), "{message}");

    let long = "x".repeat(257);
    let (code, message) =
        code_and_message(h.ssm.start_session().target(NODE).reason(long).send().await);
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("'reason'") && message.contains("256"),
        "{message}"
    );
    // 256 characters (not bytes) are fine.
    let ok = h
        .ssm
        .start_session()
        .target(NODE)
        .reason("é".repeat(256))
        .send()
        .await
        .unwrap();
    h.ssm
        .terminate_session()
        .session_id(ok.session_id().unwrap())
        .send()
        .await
        .unwrap();

    for values in [
        None,
        Some(vec![]),
        Some(vec![String::new()]),
        Some(vec!["a".into(), "b".into()]),
    ] {
        let mut call = h
            .ssm
            .start_session()
            .target(NODE)
            .document_name("AWS-StartInteractiveCommand");
        if let Some(values) = values.clone() {
            call = call.parameters("command", values);
        }
        let (code, message) = code_and_message(call.send().await);
        assert_eq!(code, "ValidationException", "{values:?}");
        assert!(message.contains("'command'"), "{values:?}: {message}");
    }

    // Nothing was left behind by the refused calls.
    let active = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap();
    assert!(active.sessions().is_empty(), "{active:?}");
}

#[tokio::test]
async fn unknown_sessions_do_not_exist() {
    let h = start().await;
    let (code, message) = code_and_message(
        h.ssm
            .resume_session()
            .session_id("AKIDTEST-0123")
            .send()
            .await,
    );
    assert_eq!(code, "DoesNotExistException");
    assert!(message.contains("AKIDTEST-0123"), "{message}");
    let (code, _) = code_and_message(
        h.ssm
            .terminate_session()
            .session_id("AKIDTEST-0123")
            .send()
            .await,
    );
    assert_eq!(code, "DoesNotExistException");
    let (code, message) = code_and_message(h.ssm.terminate_session().send().await);
    assert_eq!(code, "ValidationException");
    assert!(message.contains("'sessionId'"), "{message}");
}

#[tokio::test]
async fn describe_instance_information_reports_every_node() {
    let h = start().await;
    let all = h.ssm.describe_instance_information().send().await.unwrap();
    assert!(
        all.next_token().is_none(),
        "16 nodes fit the default page of 50"
    );
    let mut expected: Vec<String> = nodes().into_iter().map(|n| n.id).collect();
    expected.sort();
    assert_eq!(ids(all.instance_information_list()), expected);

    let web = all
        .instance_information_list()
        .iter()
        .find(|i| i.instance_id() == Some(NODE));
    let web = web.unwrap();
    assert_eq!(web.ping_status(), Some(&PingStatus::Online));
    assert_eq!(web.platform_type(), Some(&PlatformType::Linux));
    assert_eq!(web.platform_name(), Some("Amazon Linux"));
    assert!(web.platform_version().is_some_and(|v| !v.is_empty()));
    assert_eq!(web.resource_type(), Some(&ResourceType::Ec2Instance));
    assert_eq!(
        web.agent_version(),
        Some(porthole::ssm::channel::DEFAULT_AGENT_VERSION)
    );
    assert_eq!(web.is_latest_version(), Some(true));
    assert_eq!(web.ip_address(), Some("127.0.0.1"));
    assert_eq!(web.name(), Some("web-1"));
    assert_eq!(web.computer_name(), Some("web-1"));
    let ping = SystemTime::try_from(*web.last_ping_date_time().unwrap()).unwrap();
    let age = SystemTime::now().duration_since(ping).unwrap_or_default();
    assert!(age < Duration::from_secs(60), "LastPingDateTime {ping:?}");

    let find = |id: &str| {
        all.instance_information_list()
            .iter()
            .find(|i| i.instance_id() == Some(id))
            .unwrap()
    };
    assert_eq!(
        find("mi-0a1b2c3d4e5f60003").resource_type(),
        Some(&ResourceType::ManagedInstance)
    );
    assert_eq!(
        find(OFFLINE).ping_status(),
        Some(&PingStatus::ConnectionLost)
    );
    let offline_ping = SystemTime::try_from(*find(OFFLINE).last_ping_date_time().unwrap()).unwrap();
    assert!(
        offline_ping < ping,
        "an offline node was heard from earlier"
    );
    assert_eq!(
        find("i-0b000000000000000").platform_type(),
        Some(&PlatformType::Windows)
    );
    let mac = find("i-0b000000000000001");
    assert_eq!(mac.platform_type(), Some(&PlatformType::Macos));
    assert_eq!(mac.is_latest_version(), Some(false));
    assert_eq!(
        find("i-0b000000000000002").ping_status(),
        Some(&PingStatus::Inactive)
    );
}

#[tokio::test]
async fn describe_instance_information_pages() {
    let h = start().await;
    let all = h.ssm.describe_instance_information().send().await.unwrap();
    let all = ids(all.instance_information_list());
    assert_eq!(all.len(), 16);

    let mut collected = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = h
            .ssm
            .describe_instance_information()
            .max_results(5)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        sizes.push(page.instance_information_list().len());
        collected.extend(ids(page.instance_information_list()));
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [5, 5, 5, 1]);
    assert_eq!(collected, all);

    // The SDK's paginator gets the same.
    let pages: Vec<_> = h
        .ssm
        .describe_instance_information()
        .max_results(7)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let sizes: Vec<usize> = pages
        .iter()
        .map(|p| p.instance_information_list().len())
        .collect();
    assert_eq!(sizes, [7, 7, 2]);
    let flat: Vec<String> = pages
        .iter()
        .flat_map(|p| ids(p.instance_information_list()))
        .collect();
    assert_eq!(flat, all);

    // Filters and paging together.
    let first = h
        .ssm
        .describe_instance_information()
        .filters(string_filter("tag:batch", &["generated"]))
        .max_results(5)
        .send()
        .await
        .unwrap();
    assert_eq!(first.instance_information_list().len(), 5);
    let second = h
        .ssm
        .describe_instance_information()
        .filters(string_filter("tag:batch", &["generated"]))
        .max_results(10)
        .set_next_token(first.next_token().map(str::to_owned))
        .send()
        .await
        .unwrap();
    assert_eq!(second.instance_information_list().len(), 7);
    assert!(second.next_token().is_none());
}

fn string_filter(key: &str, values: &[&str]) -> InstanceInformationStringFilter {
    InstanceInformationStringFilter::builder()
        .key(key)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
        .unwrap()
}

fn legacy_filter(key: InstanceInformationFilterKey, values: &[&str]) -> InstanceInformationFilter {
    InstanceInformationFilter::builder()
        .key(key)
        .set_value_set(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
        .unwrap()
}

#[tokio::test]
async fn describe_instance_information_filters() {
    let h = start().await;
    let by_filters = async |key: &str, values: &[&str]| {
        let reply = h
            .ssm
            .describe_instance_information()
            .filters(string_filter(key, values))
            .send()
            .await
            .unwrap();
        ids(reply.instance_information_list())
    };
    let by_legacy = async |key: InstanceInformationFilterKey, values: &[&str]| {
        let reply = h
            .ssm
            .describe_instance_information()
            .instance_information_filter_list(legacy_filter(key, values))
            .send()
            .await
            .unwrap();
        ids(reply.instance_information_list())
    };

    let two = ["i-0a1b2c3d4e5f60002", "mi-0a1b2c3d4e5f60003"];
    assert_eq!(
        by_filters("InstanceIds", &[two[0], two[1], "i-nope"]).await,
        two
    );
    assert_eq!(
        by_legacy(InstanceInformationFilterKey::InstanceIds, &two).await,
        two
    );

    let offline = [OFFLINE, "i-0b000000000000002"];
    assert_eq!(
        by_filters("PingStatus", &["ConnectionLost", "Inactive"]).await,
        offline
    );
    assert_eq!(
        by_legacy(
            InstanceInformationFilterKey::PingStatus,
            &["ConnectionLost", "Inactive"]
        )
        .await,
        offline
    );
    assert_eq!(by_filters("PingStatus", &["Online"]).await.len(), 14);

    let windows = ["i-0b000000000000000"];
    assert_eq!(by_filters("PlatformTypes", &["Windows"]).await, windows);
    assert_eq!(
        by_legacy(InstanceInformationFilterKey::PlatformTypes, &["Windows"]).await,
        windows
    );
    assert_eq!(by_filters("PlatformTypes", &["Linux"]).await.len(), 14);

    let hybrid = ["mi-0a1b2c3d4e5f60003"];
    assert_eq!(
        by_filters("ResourceType", &["ManagedInstance"]).await,
        hybrid
    );
    assert_eq!(
        by_legacy(
            InstanceInformationFilterKey::ResourceType,
            &["ManagedInstance"]
        )
        .await,
        hybrid
    );
    assert_eq!(by_filters("ResourceType", &["EC2Instance"]).await.len(), 15);

    let old_agent = ["i-0b000000000000001"];
    assert_eq!(by_filters("AgentVersion", &["3.2.582.0"]).await, old_agent);
    assert_eq!(
        by_legacy(InstanceInformationFilterKey::AgentVersion, &["3.2.582.0"]).await,
        old_agent
    );

    assert_eq!(
        by_filters("tag:env", &["prod"]).await,
        ["i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002"]
    );
    assert_eq!(by_filters("tag:env", &["test"]).await.len(), 6);
    assert!(by_filters("tag:env", &["PROD"]).await.is_empty());
    assert_eq!(
        by_filters("tag-key", &["owner"]).await,
        ["i-0b000000000000005"]
    );
    assert_eq!(by_filters("tag-key", &["team", "owner"]).await.len(), 5);

    // Several filters must all match.
    let reply = h
        .ssm
        .describe_instance_information()
        .filters(string_filter("tag:env", &["dev"]))
        .filters(string_filter("PingStatus", &["Online"]))
        .send()
        .await
        .unwrap();
    assert_eq!(ids(reply.instance_information_list()), hybrid);
}

#[tokio::test]
async fn describe_instance_information_refuses_bad_requests() {
    let h = start().await;
    for n in [4, 51] {
        let (code, message) = code_and_message(
            h.ssm
                .describe_instance_information()
                .max_results(n)
                .send()
                .await,
        );
        assert_eq!(code, "ValidationException", "MaxResults {n}");
        assert!(message.contains("'maxResults'"), "{message}");
    }
    let (code, _) = code_and_message(
        h.ssm
            .describe_instance_information()
            .next_token("not-a-token")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidNextToken");

    // A DescribeSessions token is not a DescribeInstanceInformation token.
    for _ in 0..2 {
        h.ssm.start_session().target(NODE).send().await.unwrap();
    }
    let sessions = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .max_results(1)
        .send()
        .await
        .unwrap();
    let foreign = sessions.next_token().unwrap();
    let (code, _) = code_and_message(
        h.ssm
            .describe_instance_information()
            .next_token(foreign)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidNextToken");

    let (code, message) = code_and_message(
        h.ssm
            .describe_instance_information()
            .filters(string_filter("Colour", &["red"]))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidFilterKey");
    assert!(message.contains("Colour"), "{message}");
    let (code, _) = code_and_message(
        h.ssm
            .describe_instance_information()
            .instance_information_filter_list(legacy_filter("IamRole".into(), &["r"]))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidFilterKey");

    let (code, message) = code_and_message(
        h.ssm
            .describe_instance_information()
            .filters(string_filter("PingStatus", &["Up"]))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidInstanceInformationFilterValue");
    assert!(message.contains("Up"), "{message}");

    let (code, message) = code_and_message(
        h.ssm
            .describe_instance_information()
            .filters(string_filter("InstanceIds", &[]))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("InstanceIds"), "{message}");

    let (code, message) = code_and_message(
        h.ssm
            .describe_instance_information()
            .filters(string_filter("PingStatus", &["Online"]))
            .instance_information_filter_list(legacy_filter(
                InstanceInformationFilterKey::PingStatus,
                &["Online"],
            ))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        message.contains("InstanceInformationFilterList"),
        "{message}"
    );
}

#[tokio::test]
async fn list_tags_for_resource_gives_a_nodes_tags() {
    let h = start().await;
    let reply = h
        .ssm
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::ManagedInstance)
        .resource_id(NODE)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = reply
        .tag_list()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags, [("Name", "web-1"), ("env", "prod"), ("team", "web")]);

    let (code, message) = code_and_message(
        h.ssm
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::ManagedInstance)
            .resource_id("mi-nope")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidResourceId");
    assert!(message.contains("mi-nope"), "{message}");

    let (code, _) = code_and_message(
        h.ssm
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Document)
            .resource_id(NODE)
            .send()
            .await,
    );
    assert_eq!(code, "InvalidResourceType");
}

#[tokio::test]
async fn describe_sessions_filters_and_pages() {
    let h = start().await;
    let before = SystemTime::now() - Duration::from_secs(1);
    let other_sdk = sdk_config(&h.emulator.url(), "AKIDOTHER").await;
    let other = aws_sdk_ssm::Client::new(&other_sdk);
    let mut mine = BTreeSet::new();
    for i in 0..5 {
        let target = if i % 2 == 0 {
            NODE
        } else {
            "mi-0a1b2c3d4e5f60003"
        };
        let s = h
            .ssm
            .start_session()
            .target(target)
            .reason(format!("r{i}"))
            .send()
            .await
            .unwrap();
        mine.insert(s.session_id().unwrap().to_owned());
    }
    let theirs = other.start_session().target(NODE).send().await.unwrap();
    let theirs = theirs.session_id().unwrap().to_owned();
    assert!(theirs.starts_with("AKIDOTHER-"), "{theirs}");
    let ended = h.ssm.start_session().target(NODE).send().await.unwrap();
    let ended = ended.session_id().unwrap().to_owned();
    h.ssm
        .terminate_session()
        .session_id(&ended)
        .send()
        .await
        .unwrap();
    let after = SystemTime::now() + Duration::from_secs(1);

    let describe = async |state: SessionState, filters: &[(SessionFilterKey, &str)]| {
        let mut call = h.ssm.describe_sessions().state(state);
        for (key, value) in filters {
            call = call.filters(
                SessionFilter::builder()
                    .key(key.clone())
                    .value(*value)
                    .build()
                    .unwrap(),
            );
        }
        let reply = call.send().await.unwrap();
        assert!(reply.next_token().is_none());
        session_ids(reply.sessions())
    };
    let mut all_active = mine.clone();
    all_active.insert(theirs.clone());
    assert_eq!(describe(SessionState::Active, &[]).await, all_active);
    assert_eq!(
        describe(SessionState::History, &[]).await,
        BTreeSet::from([ended.clone()])
    );

    // Owner: the ARN or the user name.
    assert_eq!(
        describe(SessionState::Active, &[(SessionFilterKey::Owner, OWNER)]).await,
        mine
    );
    let only_theirs = BTreeSet::from([theirs.clone()]);
    assert_eq!(
        describe(
            SessionState::Active,
            &[(SessionFilterKey::Owner, "AKIDOTHER")]
        )
        .await,
        only_theirs
    );
    // Target, SessionId, Status.
    let on_hybrid = describe(
        SessionState::Active,
        &[(SessionFilterKey::TargetId, "mi-0a1b2c3d4e5f60003")],
    )
    .await;
    assert_eq!(on_hybrid.len(), 2);
    assert!(on_hybrid.is_subset(&mine));
    assert_eq!(
        describe(
            SessionState::Active,
            &[(SessionFilterKey::SessionId, &theirs)]
        )
        .await,
        only_theirs
    );
    let connecting = describe(
        SessionState::Active,
        &[(SessionFilterKey::Status, "Connecting")],
    );
    assert_eq!(
        connecting.await,
        all_active,
        "nothing attached a data channel"
    );
    assert!(
        describe(
            SessionState::Active,
            &[(SessionFilterKey::Status, "Connected")]
        )
        .await
        .is_empty()
    );
    // InvokedAfter / InvokedBefore take timestamps.
    let (before, after) = (rfc3339(before), rfc3339(after));
    assert_eq!(
        describe(
            SessionState::Active,
            &[(SessionFilterKey::InvokedAfter, &before)]
        )
        .await,
        all_active
    );
    assert!(
        describe(
            SessionState::Active,
            &[(SessionFilterKey::InvokedAfter, &after)]
        )
        .await
        .is_empty()
    );
    assert_eq!(
        describe(
            SessionState::Active,
            &[(SessionFilterKey::InvokedBefore, &after)]
        )
        .await,
        all_active
    );
    assert!(
        describe(
            SessionState::Active,
            &[(SessionFilterKey::InvokedBefore, &before)]
        )
        .await
        .is_empty()
    );
    // Filters combine.
    let combined = describe(
        SessionState::Active,
        &[
            (SessionFilterKey::Owner, OWNER),
            (SessionFilterKey::TargetId, NODE),
        ],
    );
    assert_eq!(combined.await.len(), 3);

    // Paging: newest first, page size respected, every session once.
    let all: Vec<Session> = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap()
        .sessions()
        .to_vec();
    let starts: Vec<DateTime> = all.iter().map(|s| *s.start_date().unwrap()).collect();
    assert!(
        starts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {starts:?}"
    );
    let mut collected = Vec::new();
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = h
            .ssm
            .describe_sessions()
            .state(SessionState::Active)
            .max_results(4)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        sizes.push(page.sessions().len());
        collected.extend(
            page.sessions()
                .iter()
                .map(|s| s.session_id().unwrap().to_owned()),
        );
        match page.next_token() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(sizes.len() < 10, "paging does not end");
    }
    assert_eq!(sizes, [4, 2]);
    let all_ids: Vec<String> = all
        .iter()
        .map(|s| s.session_id().unwrap().to_owned())
        .collect();
    assert_eq!(collected, all_ids);
    let pages: Vec<_> = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(pages, all);
}

#[tokio::test]
async fn describe_sessions_refuses_bad_requests() {
    let h = start().await;
    let (code, message) = code_and_message(h.ssm.describe_sessions().send().await);
    assert_eq!(code, "ValidationException");
    assert!(message.contains("'state'"), "{message}");
    let (code, message) = code_and_message(
        h.ssm
            .describe_sessions()
            .state("Current".into())
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(message.contains("Active, History"), "{message}");
    for n in [0, 201] {
        let (code, message) = code_and_message(
            h.ssm
                .describe_sessions()
                .state(SessionState::Active)
                .max_results(n)
                .send()
                .await,
        );
        assert_eq!(code, "ValidationException", "MaxResults {n}");
        assert!(message.contains("'maxResults'"), "{message}");
    }
    let (code, _) = code_and_message(
        h.ssm
            .describe_sessions()
            .state(SessionState::History)
            .next_token("AAAA")
            .send()
            .await,
    );
    assert_eq!(code, "InvalidNextToken");
    let filter = |key: &str, value: &str| {
        SessionFilter::builder()
            .key(key.into())
            .value(value)
            .build()
            .unwrap()
    };
    let (code, message) = code_and_message(
        h.ssm
            .describe_sessions()
            .state(SessionState::Active)
            .filters(filter("AccessType", "Standard"))
            .send()
            .await,
    );
    assert_eq!(code, "InvalidFilterKey");
    assert!(message.contains("AccessType"), "{message}");
    for (key, value) in [("InvokedAfter", "last tuesday"), ("Status", "Running")] {
        let (code, message) = code_and_message(
            h.ssm
                .describe_sessions()
                .state(SessionState::Active)
                .filters(filter(key, value))
                .send()
                .await,
        );
        assert_eq!(code, "ValidationException", "{key}");
        assert!(message.contains(value), "{message}");
    }
}

#[tokio::test]
async fn kms_generates_and_decrypts_data_keys() {
    let h = start().await;
    let context = |target: &str| {
        [
            ("aws:ssm:SessionId", "AKIDTEST-1"),
            ("aws:ssm:TargetId", target),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect::<std::collections::HashMap<_, _>>()
    };
    let key = h
        .kms
        .generate_data_key()
        .key_id(KEY)
        .key_spec(DataKeySpec::Aes256)
        .set_encryption_context(Some(context(NODE)))
        .send()
        .await
        .unwrap();
    let arn = "arn:aws:kms:us-east-1:000000000000:alias/porthole-test";
    assert_eq!(key.key_id(), Some(arn));
    let plaintext = key.plaintext().unwrap().as_ref().to_vec();
    assert_eq!(plaintext.len(), 32);
    let blob = key.ciphertext_blob().unwrap().clone();

    let opened = h
        .kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .set_encryption_context(Some(context(NODE)))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.plaintext().unwrap().as_ref(), plaintext.as_slice());
    assert_eq!(opened.key_id(), Some(arn));
    assert_eq!(
        opened.encryption_algorithm(),
        Some(&aws_sdk_kms::types::EncryptionAlgorithmSpec::SymmetricDefault)
    );
    // With the key named, by alias or by ARN.
    for key_id in [KEY, arn] {
        let opened = h
            .kms
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(blob.clone())
            .set_encryption_context(Some(context(NODE)))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.plaintext().unwrap().as_ref(), plaintext.as_slice());
    }

    let size = |reply: aws_sdk_kms::operation::generate_data_key::GenerateDataKeyOutput| {
        reply.plaintext().unwrap().as_ref().len()
    };
    let gdk = || h.kms.generate_data_key().key_id(KEY);
    assert_eq!(size(gdk().number_of_bytes(64).send().await.unwrap()), 64);
    assert_eq!(
        size(gdk().key_spec(DataKeySpec::Aes128).send().await.unwrap()),
        16
    );
    let other = h
        .kms
        .generate_data_key()
        .key_id(OTHER_KEY)
        .number_of_bytes(1)
        .send()
        .await;
    assert_eq!(size(other.unwrap()), 1);

    // Errors.
    let unknown = h
        .kms
        .generate_data_key()
        .key_id("alias/nope")
        .number_of_bytes(32)
        .send()
        .await;
    let (code, message) = code_and_message(unknown);
    assert_eq!(code, "NotFoundException");
    assert!(message.contains("alias/nope"), "{message}");
    let (code, message) = code_and_message(gdk().send().await);
    assert_eq!(code, "ValidationException");
    assert!(message.contains("KeySpec or NumberOfBytes"), "{message}");
    let both = gdk()
        .number_of_bytes(32)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await;
    assert_eq!(code_and_message(both).0, "ValidationException");
    let (code, message) = code_and_message(gdk().number_of_bytes(2000).send().await);
    assert_eq!(code, "ValidationException");
    assert!(message.contains("numberOfBytes"), "{message}");
    let wrong_context = h
        .kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .set_encryption_context(Some(context("i-other")))
        .send()
        .await;
    assert_eq!(
        code_and_message(wrong_context).0,
        "InvalidCiphertextException"
    );
    let wrong_key = h
        .kms
        .decrypt()
        .key_id(OTHER_KEY)
        .ciphertext_blob(blob)
        .set_encryption_context(Some(context(NODE)))
        .send()
        .await;
    assert_eq!(code_and_message(wrong_key).0, "IncorrectKeyException");
}

/// A bare HTTP/1.1 POST to the emulator: status, headers (lower-case names) and body.
async fn raw_post(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Posts a large body with `Expect: 100-continue`, sending the body only if the server asks
/// for it (a server that refuses early closes no socket with unread data), and returns the
/// final status.
async fn post_large(addr: SocketAddr, target: &str, body: &[u8]) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.split();
    let mut read = tokio::io::BufReader::new(read);
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\n\
         X-Amz-Target: {target}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let status = async |read: &mut tokio::io::BufReader<_>| -> u16 {
        let mut line = String::new();
        read.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        loop {
            line.clear();
            read.read_line(&mut line).await.unwrap();
            if line.trim().is_empty() {
                break status;
            }
        }
    };
    let first = status(&mut read).await;
    if first != 100 {
        return first;
    }
    write.write_all(body).await.unwrap();
    status(&mut read).await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Checks an error reply's shape and returns its message.
fn error_reply(reply: &(u16, Vec<(String, String)>, String), code: &str) -> String {
    let (status, headers, body) = reply;
    assert_eq!(*status, 400, "{body}");
    assert_eq!(
        header(headers, "content-type"),
        Some("application/x-amz-json-1.1")
    );
    assert_eq!(header(headers, "x-amzn-errortype"), Some(code), "{body}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["__type"], code, "{body}");
    json["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn protocol_errors_have_the_aws_shape() {
    let h = start().await;
    let addr = h.emulator.endpoint;
    let start_session = [("X-Amz-Target", "AmazonSSM.StartSession")];

    let reply = raw_post(addr, &start_session, b"{\"Target\": ").await;
    let message = error_reply(&reply, "SerializationException");
    assert!(message.contains("EOF"), "{message}");
    let reply = raw_post(addr, &start_session, br#"{"Target": 5}"#).await;
    let message = error_reply(&reply, "SerializationException");
    assert!(message.contains("invalid type: integer `5`"), "{message}");
    let reply = raw_post(
        addr,
        &start_session,
        br#"{"Target": "i-1", "Parameters": ["x"]}"#,
    )
    .await;
    error_reply(&reply, "SerializationException");

    let reply = raw_post(addr, &[], b"{}").await;
    let message = error_reply(&reply, "UnknownOperationException");
    assert!(message.contains("X-Amz-Target"), "{message}");
    let reply = raw_post(addr, &[("X-Amz-Target", "AmazonSSM.SendCommand")], b"{}").await;
    let message = error_reply(&reply, "UnknownOperationException");
    assert!(message.contains("AmazonSSM.SendCommand"), "{message}");

    // Over 1 MiB: refused without a 5xx, whether by the handler or by the router's limit.
    for size in [1536 * 1024, 3 * 1024 * 1024] {
        let big = format!(r#"{{"Target":"{NODE}","Reason":"{}"}}"#, "x".repeat(size));
        assert_eq!(
            post_large(addr, "AmazonSSM.StartSession", big.as_bytes()).await,
            413
        );
    }

    // Without an Authorization header the caller is anonymous; an empty body is `{}`.
    let (status, headers, body) = raw_post(
        addr,
        &start_session,
        format!(r#"{{"Target":"{NODE}"}}"#).as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(header(&headers, "x-amzn-requestid").is_some_and(|v| !v.is_empty()));
    let started: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = started["SessionId"].as_str().unwrap();
    assert!(id.starts_with("anonymous-"), "{id}");
    let active = h
        .ssm
        .describe_sessions()
        .state(SessionState::Active)
        .send()
        .await
        .unwrap();
    assert_eq!(
        active.sessions()[0].owner(),
        Some("arn:aws:iam::000000000000:user/anonymous")
    );
    let (status, _, body) =
        raw_post(addr, &[("X-Amz-Target", "AmazonSSM.DescribeSessions")], b"").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("'state'"), "{body}");
}
