//! `porthole emulator` as a person runs it: it prints its endpoint, serves the AWS SDK there,
//! stops on SIGTERM, and refuses bad flags with a message naming the problem.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ssm::config::Credentials;

fn porthole() -> Command {
    Command::new(env!("CARGO_BIN_EXE_porthole"))
}

#[tokio::test]
async fn prints_its_endpoint_serves_it_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = porthole()
        .args(["emulator", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no endpoint in {line:?}"))
        .to_owned();

    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let nodes = ssm.describe_instance_information().send().await.unwrap();
    assert_eq!(nodes.instance_information_list().len(), 4);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

fn refused(args: &[&str]) -> String {
    let out = porthole().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn bad_flags_are_refused_with_a_reason() {
    let err = refused(&["emulator", "--listen", "0.0.0.0:0"]);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );
    let err = refused(&["emulator", "--listen", "127.0.0.1:0", "--drop", "1.5"]);
    assert!(err.contains("--drop"), "{err}");
    let err = refused(&[
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--disconnect-every",
        "0",
    ]);
    assert!(err.contains("--disconnect-every"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nodes.toml");
    std::fs::write(&file, "[[node]]\nid = \"i-1\"\nping_status = \"Sleepy\"\n").unwrap();
    let err = refused(&[
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--nodes",
        file.to_str().unwrap(),
    ]);
    assert!(
        err.contains("nodes.toml") && err.contains("ping_status"),
        "{err}"
    );
}
