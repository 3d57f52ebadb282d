//! The API against its OpenAPI document (`GET /api/v1/openapi.json`, generated from the
//! handlers): schemathesis (PyPI, through `scripts/python-venv`) fuzzes the running gateway,
//! signed in as each built-in role, a bounded number of cases per operation, and fails on a
//! server error, an undocumented status, a response that breaks its schema or content type, a
//! request outside the schema that is accepted, or an operation that answers without its
//! sign-in. The document itself names every API route.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::api::Api;
use common::emulator::NODE;
use common::gateway::{self, Backend};
use porthole::gateway::identity::users::Role;
use reqwest::StatusCode;

/// Cases per operation and phase: enough to reach every documented answer, bounded in time.
const EXAMPLES: &str = "25";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_every_api_route() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let mut api = Api::new(&gw);
    let reply = api.get("/api/v1/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["openapi"], "3.1.0");
    let mut paths: Vec<(String, String)> = Vec::new();
    for (path, item) in reply.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            paths.push((method.to_uppercase(), path.clone()));
        }
    }
    paths.sort();
    let want = [
        ("DELETE", "/api/v1/sessions/{id}"),
        ("DELETE", "/api/v1/sessions/{id}/participants/{user}"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/me/settings"),
        ("GET", "/api/v1/notifications"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/recordings/labels"),
        ("GET", "/api/v1/recordings/search"),
        ("GET", "/api/v1/requests"),
        ("GET", "/api/v1/requests/{id}"),
        ("GET", "/api/v1/sessions"),
        ("GET", "/api/v1/sessions/{id}"),
        ("GET", "/api/v1/sessions/{id}/attach"),
        ("GET", "/api/v1/sessions/{id}/files"),
        ("GET", "/api/v1/sessions/{id}/labels"),
        ("GET", "/api/v1/sessions/{id}/participants"),
        ("GET", "/api/v1/sessions/{id}/recording"),
        ("GET", "/api/v1/targets"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/auth/logout"),
        ("POST", "/api/v1/requests"),
        ("POST", "/api/v1/requests/{id}/approve"),
        ("POST", "/api/v1/requests/{id}/deny"),
        ("POST", "/api/v1/requests/{id}/revoke"),
        ("POST", "/api/v1/sessions"),
        ("POST", "/api/v1/sessions/{id}/files"),
        ("POST", "/api/v1/sessions/{id}/participants"),
        ("PUT", "/api/v1/me/settings"),
        ("PUT", "/api/v1/sessions/{id}/labels"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(paths, want);
    let ids: Vec<&str> = reply.body["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "operation ids are unique: {ids:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_as_any_built_in_role() {
    let venv = common::python::venv();
    let gw = gateway::start(Backend::Sqlite, |c| {
        // Fuzzing fails sign-ins by the hundred from one address; the limits have their own
        // tests.
        c.auth.max_failed_logins_per_address = 100_000;
        c.recordings.searches_per_minute = 100_000;
    })
    .await;
    // schemathesis keeps a cache in its working folder: not in the clone.
    let scratch = tempfile::tempdir().unwrap();
    for (name, role) in [
        ("root", Role::Admin),
        ("alice", Role::Operator),
        ("audrey", Role::Auditor),
    ] {
        gw.user(name, std::slice::from_ref(&role)).await;
        let mut api = Api::new(&gw);
        api.login(name).await;
        if role != Role::Auditor {
            // A real session, so listings and recordings have something in them.
            api.open(NODE, "INC-7000 contract fuzzing").await;
        }
        let out = Command::new(venv.join("bin/schemathesis"))
            .current_dir(scratch.path())
            .arg("--config-file")
            .arg(root().join("tests/python/schemathesis.toml"))
            .args(["run", &format!("{}/api/v1/openapi.json", gw.url)])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance,\
                 negative_data_rejection,ignored_auth",
                "--max-examples",
                EXAMPLES,
                "--seed",
                "7",
                "--workers",
                "1",
                "--no-color",
                "--header",
                &format!("Origin: {}", gw.origin()),
                // Signing out would end the sign-in under test; the terminal's WebSocket is
                // tested with real sockets elsewhere.
                "--exclude-operation-id",
                "logout",
                "--exclude-operation-id",
                "attach",
            ])
            .env("PORTHOLE_COOKIE", api.cookie.clone().unwrap())
            .env("PORTHOLE_CSRF", api.csrf.clone().unwrap())
            .env("SCHEMATHESIS_HOOKS", "")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis as {name} ({role:?}): {}\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("passed"), "{text}");
    }
    gw.stop().await;
}
