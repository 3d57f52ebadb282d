//! The gateway's commands as a person runs them: `porthole demo` prints its URL and passwords
//! and serves sign-in; `migrate` and `users add|list|disable` work on the configured database;
//! a bad configuration fails at start naming the key and never printing a secret.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn porthole() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porthole"));
    // Only what a test sets reaches the commands.
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            command.env_remove(key);
        }
    }
    command
}

#[tokio::test]
async fn demo_prints_its_url_and_passwords_and_serves_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = porthole()
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("PORTHOLE_DEMO_PASSWORD", "demo-password-1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {first:?}"))
        .to_owned();
    let users: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    // The signing key, the database and the folder that holds them are the owner's only.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700, "the data folder");
        assert_eq!(
            mode(&dir.path().join("jwt-secret")),
            0o600,
            "the signing key"
        );
        assert_eq!(mode(&dir.path().join("porthole.db")), 0o600, "the database");
    }
    for (line, name) in users.iter().zip(["admin", "operator", "auditor"]) {
        assert!(
            line.contains(name) && line.contains("demo-password-1"),
            "{line}"
        );
    }

    let http = reqwest::Client::new();
    let reply = http
        .post(format!("{url}/api/v1/auth/login"))
        .header("origin", &url)
        .json(&serde_json::json!({"username": "operator", "password": "demo-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let cookie = reply.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let targets: serde_json::Value = http
        .get(format!("{url}/api/v1/targets"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(targets["targets"].as_array().unwrap().len(), 4, "{targets}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

fn config_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("porthole.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n",
            dir.join("p.db").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn users_are_added_listed_and_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let out = porthole()
        .arg("migrate")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let mut add = porthole()
        .args([
            "users",
            "add",
            "alice",
            "--role",
            "operator,auditor",
            "--config",
        ])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("added alice (operator,auditor)"));

    let out = porthole()
        .args(["users", "add", "bob", "--role", "root", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown role \"root\""),
        "{out:?}"
    );

    let mut short = porthole()
        .args(["users", "add", "bob", "--role", "admin", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    short.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let out = short.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("passwords are 8 to"),
        "{out:?}"
    );

    let out = porthole()
        .args(["users", "disable", "alice", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = porthole()
        .args(["users", "list", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alice") && text.contains("disabled"),
        "{text}"
    );
    assert!(!text.contains("bob"), "{text}");
}

#[test]
fn a_bad_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let out = porthole()
        .args(["serve", "--config"])
        .arg(&config)
        .env("PORTHOLE_SERVER__PUBLIC_URL", "ftp://nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.public_url"), "{err}");

    let out = porthole()
        .args(["serve", "--config"])
        .arg(&config)
        .env("PORTHOLE_DATABASE__URL", "mysql://root:hunter2@db/porthole")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database.url") && !err.contains("hunter2"),
        "{err}"
    );

    let out = porthole()
        .args(["serve", "--config", "/nonexistent/porthole.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/porthole.toml"));

    let out = porthole().arg("serve").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auth.jwt_secret"),
        "{out:?}"
    );
}

/// `porthole serve` with `PORTHOLE_SERVER__LOG_FORMAT=json`: every line it logs is one JSON
/// object with a timestamp, level, target and message, a request's lines carry its
/// `request_id` (the one answered in `x-request-id`), and `/metrics` counts the failed AWS
/// call behind them.
#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let mut add = porthole()
        .args(["users", "add", "alice", "--role", "operator", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    // Nothing listens on port 1: listing the nodes fails, and says so in the log.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let stderr = dir.path().join("serve.stderr");
    let mut child = porthole()
        .args(["serve", "--config"])
        .arg(&config)
        .env("PORTHOLE_SERVER__LOG_FORMAT", "json")
        .env("PORTHOLE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTHOLE_SERVER__PUBLIC_URL", &url)
        .env("PORTHOLE_AWS__ENDPOINT_URL", "http://127.0.0.1:1")
        .env("PORTHOLE_AWS__ACCESS_KEY_ID", "AKIDTEST")
        .env("PORTHOLE_AWS__SECRET_ACCESS_KEY", "secret")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("porthole listening on"), "{first}");

    let http = reqwest::Client::new();
    let reply = http
        .post(format!("{url}/api/v1/auth/login"))
        .header("origin", &url)
        .json(&serde_json::json!({"username": "alice", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let cookie = reply.headers()["set-cookie"].to_str().unwrap().to_owned();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let reply = http
        .get(format!("{url}/api/v1/targets"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 502, "AWS cannot be reached");
    let request_id = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed = metrics
        .lines()
        .find(|l| {
            l.starts_with("porthole_aws_errors_total{")
                && l.contains("operation=\"DescribeInstanceInformation\"")
        })
        .unwrap_or_else(|| panic!("no DescribeInstanceInformation errors in:\n{metrics}"));
    assert!(!failed.ends_with(" 0"), "{failed}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let logged = std::fs::read_to_string(&stderr).unwrap();
    let events: Vec<serde_json::Value> = logged
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n--- all:\n{logged}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(event[key].is_string(), "no {key}: {line}");
            }
            event
        })
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "porthole listening"
                && e["listen"] == format!("127.0.0.1:{port}")),
        "{logged}"
    );
    let in_request: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["request_id"] == request_id.as_str())
        .collect();
    assert!(
        in_request.iter().any(|e| e["level"] == "WARN"),
        "no warning of the failed listing with request_id {request_id}:\n{logged}"
    );
}

#[test]
fn a_bad_log_format_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path());
    let out = porthole()
        .args(["serve", "--config"])
        .arg(&config)
        .env("PORTHOLE_SERVER__LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.log_format must be \"text\" or \"json\", got \"yaml\""),
        "{err}"
    );
}
