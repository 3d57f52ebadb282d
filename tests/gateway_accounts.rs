#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! Several accounts, one fleet view (issue 15): `[[aws.accounts]]` roles the gateway assumes
//! through the emulator's STS, nodes placed in two accounts of the emulator (which shows each
//! caller only its own account's nodes), listed together with their account names through the
//! gateway's API; one account refused leaves the other listed and is named; policy selectors
//! on accounts; `aws_role_arns` per account; sessions started, used and reconciled in the
//! second account with that account's clients.

mod common;

use common::api::Api;
use common::audit_log::wait_for_events_of;
use common::gateway::{self, Backend, Gateway, both_backends};
use porthole::emulator::EmulatorConfig;
use porthole::emulator::nodes::Node;
use porthole::gateway::config::{AccountConfig, Config, PolicyConfig};
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row as _;

const PROD_ROLE: &str = "arn:aws:iam::111111111111:role/PortholeGateway";
const STAGING_ROLE: &str = "arn:aws:iam::222222222222:role/PortholeGateway";
const PROD_NODE: &str = "i-0000000000000a001";
const STAGING_NODE: &str = "i-0000000000000b001";
const REASON: &str = "INC-15 looking at both accounts";

fn place_nodes(e: &mut EmulatorConfig) {
    e.nodes
        .push(Node::new(PROD_NODE, "prod-web").in_account("111111111111"));
    e.nodes
        .push(Node::new(STAGING_NODE, "staging-web").in_account("222222222222"));
}

fn accounts(c: &mut Config) {
    c.aws.accounts = vec![
        AccountConfig {
            name: "prod".into(),
            role_arn: PROD_ROLE.into(),
            external_id: Some("porthole-prod".into()),
            regions: None,
        },
        AccountConfig {
            name: "staging".into(),
            role_arn: STAGING_ROLE.into(),
            external_id: None,
            regions: Some(vec!["us-east-1".into()]),
        },
    ];
}

async fn signed_in(gw: &Gateway, name: &str, role: Role) -> Api {
    gw.user(name, &[role]).await;
    let mut api = Api::new(gw);
    api.login(name).await;
    api
}

/// (id, account) of every target listed.
fn listed(body: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_str().unwrap().to_owned(),
                t["account"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_of_both_accounts_are_listed_with_their_account() {
    let gw = gateway::start_with(Backend::Sqlite, place_nodes, accounts).await;
    let mut admin = signed_in(&gw, "alice", Role::Admin).await;
    let reply = admin.get("/api/v1/targets").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    // Only the two accounts' nodes: the default account's (the gateway's own) is not configured.
    assert_eq!(
        listed(&reply.body),
        [
            (PROD_NODE.to_owned(), "prod".to_owned()),
            (STAGING_NODE.to_owned(), "staging".to_owned()),
        ]
    );
    assert_eq!(reply.body["unavailable"], serde_json::json!([]));
    // The gateway assumed each account's role as itself, with the external id configured.
    let assumed = gw.emu.emulator.state().sts.assumed();
    let prod = assumed.iter().find(|a| a.role_arn == PROD_ROLE).unwrap();
    assert_eq!(prod.session_name, "porthole-gateway");
    assert_eq!(prod.external_id.as_deref(), Some("porthole-prod"));
    assert!(assumed.iter().any(|a| a.role_arn == STAGING_ROLE));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_role_is_refused_is_named_and_the_other_still_listed() {
    let gw = gateway::start_with(
        Backend::Sqlite,
        |e| {
            place_nodes(e);
            e.sts.deny_roles = vec![STAGING_ROLE.into()];
        },
        accounts,
    )
    .await;
    let mut admin = signed_in(&gw, "alice", Role::Admin).await;
    let reply = admin.get("/api/v1/targets").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        listed(&reply.body),
        [(PROD_NODE.to_owned(), "prod".to_owned())]
    );
    let unavailable = reply.body["unavailable"].as_array().unwrap();
    assert_eq!(unavailable.len(), 1, "{}", reply.text);
    assert_eq!(unavailable[0]["account"], "staging");
    assert_eq!(unavailable[0]["region"], "us-east-1");
    let error = unavailable[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("AssumeRole was refused by AWS (AccessDenied)"),
        "{error}"
    );
    // Safe words: AWS's text names the account and the role; the answer does not.
    assert!(!error.contains("222222222222"), "{error}");
    // A node of the unavailable account cannot be opened (it is not listed).
    let refused = admin
        .post(
            "/api/v1/sessions",
            &serde_json::json!({"target": STAGING_NODE, "reason": REASON}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accounts_selector_allows_one_accounts_node_and_refuses_the_others() {
    let gw = gateway::start_with(Backend::Sqlite, place_nodes, |c| {
        accounts(c);
        c.policy = toml::from_str::<PolicyConfig>(
            "[[roles]]\nname = \"prod-oncall\"\ntargets = [{ accounts = [\"pro*\"] }]\n",
        )
        .unwrap();
    })
    .await;
    let mut bob = signed_in(&gw, "bob", Role::parse("prod-oncall").unwrap()).await;
    let reply = bob.get("/api/v1/targets").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(
        listed(&reply.body),
        [(PROD_NODE.to_owned(), "prod".to_owned())]
    );
    let refused = bob
        .post(
            "/api/v1/sessions",
            &serde_json::json!({"target": STAGING_NODE, "reason": REASON}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND, "{}", refused.text);
    let denied = wait_for_events_of(&gw.state.engine.db, None, "session.denied", 1).await;
    let why = denied[0].detail["why"].as_str().unwrap();
    assert!(
        why.contains("(staging-web, account staging, us-east-1)"),
        "{why}"
    );
    let id = bob.open(PROD_NODE, REASON).await;
    let mut term = bob.attach(&id).await.unwrap();
    term.until_synced().await;
    term.type_text("echo prod-$((40+2))\r").await;
    term.expect("prod-42").await;
    gw.stop().await;
}

async fn account_of_row(gw: &Gateway, id: &str) -> String {
    sqlx::query("SELECT account FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_one(gw.state.engine.db.pool())
        .await
        .unwrap()
        .try_get("account")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_role_arns_pick_the_accounts_role_and_the_session_works() {
    const PERSON_PROD: &str = "arn:aws:iam::111111111111:role/Oncall";
    const PERSON_STAGING: &str = "arn:aws:iam::222222222222:role/Oncall";
    let gw = gateway::start_with(Backend::Sqlite, place_nodes, |c| {
        accounts(c);
        c.policy = toml::from_str::<PolicyConfig>(&format!(
            "[[roles]]\nname = \"oncall\"\ntargets = [{{ ids = [\"*\"] }}]\n\
             aws_role_arns = {{ prod = \"{PERSON_PROD}\", staging = \"{PERSON_STAGING}\" }}\n"
        ))
        .unwrap();
    })
    .await;
    let mut alice = signed_in(&gw, "alice", Role::parse("oncall").unwrap()).await;
    let id = alice.open(STAGING_NODE, REASON).await;
    let ssm_id = gw
        .state
        .engine
        .live
        .get(&id)
        .unwrap()
        .ssm_session_id
        .clone();
    assert_eq!(
        gw.ssm_owner(&ssm_id).await,
        "arn:aws:sts::222222222222:assumed-role/Oncall/alice"
    );
    let assumed = gw.emu.emulator.state().sts.assumed();
    let alices: Vec<&str> = assumed
        .iter()
        .filter(|a| a.session_name == "alice")
        .map(|a| a.role_arn.as_str())
        .collect();
    assert_eq!(alices, [PERSON_STAGING]);
    assert_eq!(account_of_row(&gw, &id).await, "staging");
    let mut term = alice.attach(&id).await.unwrap();
    term.until_synced().await;
    term.type_text("echo staging-$((40+2))\r").await;
    term.expect("staging-42").await;

    // In prod, prod's role.
    let other = alice.open(PROD_NODE, REASON).await;
    let ssm_other = gw
        .state
        .engine
        .live
        .get(&other)
        .unwrap()
        .ssm_session_id
        .clone();
    assert_eq!(
        gw.ssm_owner(&ssm_other).await,
        "arn:aws:sts::111111111111:assumed-role/Oncall/alice"
    );
    gw.stop().await;
}

/// No role of the person's own: the session starts with the account's role (the gateway's
/// session in it), and a gateway that restarts terminates it with that account's clients.
async fn a_session_in_the_second_account_runs_and_is_reconciled_there(backend: Backend) {
    let gw = gateway::start_with(backend, place_nodes, accounts).await;
    let mut alice = signed_in(&gw, "alice", Role::Operator).await;
    let id = alice.open(STAGING_NODE, REASON).await;
    let ssm_id = gw
        .state
        .engine
        .live
        .get(&id)
        .unwrap()
        .ssm_session_id
        .clone();
    assert_eq!(
        gw.ssm_owner(&ssm_id).await,
        "arn:aws:sts::222222222222:assumed-role/PortholeGateway/porthole-gateway"
    );
    let mut term = alice.attach(&id).await.unwrap();
    term.until_synced().await;
    term.type_text("echo second-$((40+2))\r").await;
    term.expect("second-42").await;
    let start = wait_for_events_of(&gw.state.engine.db, Some(&id), "session.start", 1).await;
    assert_eq!(start[0].detail["account"], "staging");

    // What a restart does with a session this gateway left live: TerminateSession with the
    // clients of the account the row names (there are none for a row without one here).
    porthole::gateway::sessions::upkeep::reconcile(
        &gw.state.engine,
        porthole::gateway::sessions::upkeep::Sweep::Start,
    )
    .await
    .unwrap();
    let ends = wait_for_events_of(&gw.state.engine.db, Some(&id), "session.end", 1).await;
    let restart = ends
        .iter()
        .find(|e| e.detail["how"] == "gateway restart")
        .expect("an end by gateway restart");
    assert_eq!(
        restart.detail["terminate_session"], true,
        "{}",
        restart.detail
    );
    gw.stop().await;
}
both_backends!(a_session_in_the_second_account_runs_and_is_reconciled_there);
