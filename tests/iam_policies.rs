#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design
//! The IAM policies of `deploy/iam` (docs/aws.md), linted with parliament (PyPI, offline) with no
//! finding left, and checked for what Porthole needs of them: the gateway may assume the
//! person roles with a source identity and tags, a person role may resume and end only its
//! own sessions, a person role may start every document the gateway starts (taken from the
//! code's constants) and no other, and the trust policy lets the gateway set the source
//! identity and tags.

mod common;

use std::path::Path;
use std::process::Command;

use porthole::gateway::policy;
use porthole::gateway::sessions::files;
use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn policy(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("deploy/iam").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The actions of every Allow statement.
fn allowed(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn parliament_finds_nothing_in_the_identity_policies() {
    let venv = common::python::venv();
    // Trust policies have a Principal and no Resource, which parliament (reading every file as
    // an identity policy) reports as malformed: they are checked by the next test instead.
    let out = Command::new(venv.join("bin/parliament"))
        .current_dir(root())
        .args([
            "--directory",
            "deploy/iam",
            "--include_policy_extension",
            "json",
            "--exclude_pattern",
            r".*-trust\.json",
            "--minimum_severity",
            "INFO",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "parliament ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does find things: a policy that allows everything is reported.
    let out = Command::new(venv.join("bin/parliament"))
        .args([
            "--string",
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ssm:StartSesion","Resource":"*"}}"#,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt action is a finding");
}

#[test]
fn the_policies_give_what_porthole_needs_and_no_more() {
    let gateway = policy("gateway-policy.json");
    let actions = allowed(&gateway);
    for needed in [
        "sts:AssumeRole",
        "sts:SetSourceIdentity",
        "sts:TagSession",
        "ssm:DescribeInstanceInformation",
        "ssm:ListTagsForResource",
    ] {
        assert!(
            actions.iter().any(|a| a == needed),
            "the gateway needs {needed}"
        );
    }
    assert!(
        !actions.iter().any(|a| a == "ssm:StartSession"),
        "the gateway starts sessions as the person, never as itself"
    );
    assert!(
        actions.iter().all(|a| !a.contains('*')),
        "no wildcard actions: {actions:?}"
    );

    let person = policy("person-role-policy.json");
    let own = person["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == "ResumeAndEndOwnSessionsOnly")
        .unwrap();
    assert_eq!(
        own["Condition"]["StringLike"]["ssm:resourceTag/aws:ssmmessages:session-id"],
        "${aws:userid}"
    );

    let account = policy("account-role-policy.json");
    let account_actions = allowed(&account);
    assert!(
        account_actions
            .iter()
            .any(|a| a == "ssm:DescribeInstanceInformation")
    );
    assert!(
        !account_actions.iter().any(|a| a == "ssm:StartSession"),
        "an account role lists and ends; it never starts sessions"
    );
    let account_trust = policy("account-role-trust.json");
    assert!(
        account_trust["Statement"][0]["Principal"]["AWS"]
            .as_str()
            .unwrap()
            .ends_with(":role/porthole-gateway")
    );

    let trust = policy("person-role-trust.json");
    let statement = &trust["Statement"][0];
    assert!(
        statement["Principal"]["AWS"]
            .as_str()
            .unwrap()
            .ends_with(":role/porthole-gateway")
    );
    let trusted = allowed(&trust);
    for needed in ["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"] {
        assert!(
            trusted.iter().any(|a| a == needed),
            "the trust policy needs {needed}"
        );
    }
}

/// `value` as a list of strings (IAM allows a string or an array of them).
fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Positions in the pattern reachable after each character of the text.
    let mut reach = vec![false; p.len() + 1];
    reach[0] = true;
    let close = |reach: &mut Vec<bool>| {
        for i in 0..p.len() {
            if reach[i] && p[i] == '*' {
                reach[i + 1] = true;
            }
        }
    };
    close(&mut reach);
    for c in t {
        let mut next = vec![false; p.len() + 1];
        for i in 0..p.len() {
            if reach[i] {
                match p[i] {
                    '*' => next[i] = true,
                    '?' => next[i + 1] = true,
                    x if x == c => next[i + 1] = true,
                    _ => {}
                }
            }
        }
        close(&mut next);
        reach = next;
    }
    reach[p.len()]
}

/// The ARN of document `name` in a region of the example account: AWS's own documents
/// (`AWS-…`) have no account in their ARN.
fn document_arn(name: &str) -> String {
    let account = if name.starts_with("AWS-") {
        ""
    } else {
        "111122223333"
    };
    format!("arn:aws:ssm:eu-west-1:{account}:document/{name}")
}

/// Whether `policy` lets its holder call `ssm:StartSession` with document `name`, with no
/// condition.
fn starts_document(policy: &Value, name: &str) -> bool {
    let arn = document_arn(name);
    policy["Statement"].as_array().unwrap().iter().any(|s| {
        s["Effect"] == "Allow"
            && s.get("Condition").is_none()
            && strings(&s["Action"])
                .iter()
                .any(|a| glob(a, "ssm:StartSession"))
            && strings(&s["Resource"]).iter().any(|r| glob(r, &arn))
    })
}

#[test]
fn a_person_role_may_start_every_document_the_gateway_starts_and_no_other() {
    // What the gateway starts: the shell's default document, the documents a role allows when
    // it names none, and the file transfer's second session.
    let mut started = vec![policy::DEFAULT_DOCUMENT, files::DOCUMENT];
    started.extend(policy::DEFAULT_DOCUMENTS);
    started.sort_unstable();
    started.dedup();
    assert!(
        started.contains(&"AWS-StartInteractiveCommand"),
        "{started:?}"
    );
    let person = policy("person-role-policy.json");
    for name in &started {
        assert!(
            starts_document(&person, name),
            "deploy/iam/person-role-policy.json does not allow ssm:StartSession with {name} \
             ({}), which the gateway starts",
            document_arn(name)
        );
    }
    // No other document: a person role is not a way around the roles of the policy.
    for other in [
        "AWS-StartPortForwardingSession",
        "AWS-StartSSHSession",
        "AWS-StartNonInteractiveCommand",
        "SSM-SomeoneElsesDocument",
    ] {
        assert!(
            !starts_document(&person, other),
            "deploy/iam/person-role-policy.json allows {other}"
        );
    }
    // The matcher itself.
    assert!(glob(
        "arn:aws:ssm:*::document/A-?",
        "arn:aws:ssm:us-east-1::document/A-1"
    ));
    assert!(!glob(
        "arn:aws:ssm:*::document/A",
        "arn:aws:ssm:us-east-1:1:document/A"
    ));
    assert!(glob("ssm:*", "ssm:StartSession") && !glob("ssm:Start", "ssm:StartSession"));
}
