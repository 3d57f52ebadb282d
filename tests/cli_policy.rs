//! `porthole policy check` as a person runs it: the decision explained rule by rule, exit 0
//! when allowed and 1 when denied (2 when it cannot be checked); the target from flags or from
//! AWS, the roles from the users table or flags. `users add` takes the configured role names.
//! A bad policy names its key. `porthole serve` reloads the policy on SIGHUP, audited.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::audit_log;

const POLICY: &str = r#"
[[roles]]
name = "web-oncall"
targets = [{ tags = ["team=web"] }]
[roles.reason]
pattern = "^(INC|CHG)-[0-9]+"
pattern_message = "Give the incident or change number first, e.g. INC-1234."

[[roles]]
name = "lab"
targets = [{ names = ["lab-*"] }, { ids = ["mi-*"] }]
"#;

fn porthole() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porthole"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            command.env_remove(key);
        }
    }
    command
}

/// A configuration whose policy is `policy.toml` beside it (a relative path).
fn setup(dir: &Path, policy: &str, extra: &str) -> PathBuf {
    std::fs::write(dir.join("policy.toml"), policy).unwrap();
    let config = dir.join("porthole.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n\
             {extra}\n[policy]\nfile = \"policy.toml\"\nwatch_seconds = 0\n",
            dir.join("p.db").display()
        ),
    )
    .unwrap();
    config
}

/// `porthole users add NAME --role ROLE`, the password on standard input.
fn add_user(config: &Path, name: &str, role: &str) -> Output {
    let mut child = porthole()
        .args(["users", "add", name, "--role", role, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    child.wait_with_output().unwrap()
}

fn check(config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = porthole()
        .args(["policy", "check"])
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_explains_rule_by_rule_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), POLICY, "");
    let web = [
        "alice",
        "i-0abc123",
        "--roles",
        "web-oncall,lab",
        "--name",
        "web-1",
        "--region",
        "eu-west-1",
        "--tag",
        "env=prod",
    ];

    let (code, out, err) = check(&config, &[&web[..], &["--tag", "team=web"]].concat());
    assert_eq!(code, Some(0), "{out}{err}");
    for needle in [
        "(roles as given with --roles; target as given)",
        "user      alice (roles: web-oncall, lab)",
        "target    i-0abc123 (web-1, eu-west-1, env=prod, team=web)",
        "reason    (not given: reason rules not checked)",
        "role web-oncall",
        "targets[0] tags team=web: matches",
        "document: allowed by SSM-SessionManagerRunShell",
        "role lab",
        "targets[0] names lab-*: no, the name \"web-1\" does not match lab-*",
        "targets[1] ids mi-*: no, the id i-0abc123 does not match mi-*",
        "ALLOWED by web-oncall",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }

    let (code, out, _) = check(&config, &[&web[..], &["--tag", "team=data"]].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("targets[0] tags team=web: no, no tag matches team=web (it has team=data)"),
        "{out}"
    );
    assert!(
        out.ends_with(
            "DENIED: no role of yours allows i-0abc123 (web-1, eu-west-1, env=prod, team=data)\n"
        ),
        "{out}"
    );

    let with_reason = [&web[..], &["--tag", "team=web", "--reason"]].concat();
    let (code, out, _) = check(&config, &[&with_reason[..], &["looking around"]].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "DENIED (invalid reason): Give the incident or change number first, e.g. INC-1234."
        ),
        "{out}"
    );
    let (code, out, _) = check(&config, &[&with_reason[..], &["INC-42 disk full"]].concat());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("passes"), "{out}");

    let (code, out, _) = check(
        &config,
        &[
            &web[..],
            &[
                "--tag",
                "team=web",
                "--document",
                "AWS-StartPortForwardingSession",
            ],
        ]
        .concat(),
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "document: no, the document AWS-StartPortForwardingSession does not match \
             SSM-SessionManagerRunShell, AWS-StartInteractiveCommand"
        ),
        "{out}"
    );

    let (code, _, err) = check(&config, &[&web[..], &["--tag", "nope"]].concat());
    assert_eq!(code, Some(2));
    assert!(err.contains("--tag \"nope\": write key=value"), "{err}");
}

#[test]
fn users_take_the_configured_roles_and_check_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), POLICY, "");
    let add = |name: &str, role: &str| add_user(&config, name, role);
    let out = add("alice", "web-oncall");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("added alice (web-oncall)"));
    // The built-in names mean nothing once the policy defines roles.
    let out = add("bob", "operator");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown role \"operator\"; the policy defines web-oncall, lab"),
        "{err}"
    );

    let (code, out, err) = check(&config, &["alice", "i-1", "--tag", "team=web"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("(roles from the users table;"), "{out}");
    assert!(out.contains("user      alice (roles: web-oncall)"), "{out}");
    let (code, _, err) = check(&config, &["bob", "i-1", "--tag", "team=web"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no user named \"bob\""), "{err}");

    let out = porthole()
        .args(["users", "disable", "alice", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (code, out, _) = check(&config, &["alice", "i-1", "--tag", "team=web"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.ends_with("DENIED: alice is disabled and cannot sign in\n"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_asks_aws_for_the_targets_name_and_tags() {
    let emu = common::emulator::start(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let aws = format!(
        "[aws]\nendpoint_url = \"{}\"\naccess_key_id = \"AKIDTEST\"\nsecret_access_key = \"secret\"\n",
        emu.emulator.url()
    );
    let config = setup(dir.path(), POLICY, &aws);
    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || check(&config, args))
    };

    let (code, out, err) = run(&["alice", "i-0a1b2c3d4e5f60001", "--roles", "web-oncall"])
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("target from AWS"), "{out}");
    assert!(
        out.contains("target    i-0a1b2c3d4e5f60001 (web-1, us-east-1, env=prod, team=web)"),
        "{out}"
    );
    let (code, out, _) = run(&["alice", "i-0a1b2c3d4e5f60002", "--roles", "web-oncall"])
        .await
        .unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("(db-1, us-east-1, env=prod, team=data)"),
        "{out}"
    );
    let (code, _, err) = run(&["alice", "i-00000000000000000", "--roles", "lab"])
        .await
        .unwrap();
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no managed node \"i-00000000000000000\" in us-east-1"),
        "{err}"
    );
}

#[test]
fn a_bad_policy_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = format!("{POLICY}\n[[roles]]\nname = \"x\"\nreason.pattern = \"^(INC\"\n");
    let config = setup(dir.path(), &bad, "");
    let (code, _, err) = check(&config, &["alice", "i-1", "--roles", "lab", "--tag", "a=b"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("policy.toml: roles[2].reason.pattern: invalid regex"),
        "{err}"
    );
    let out = porthole()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("roles[2].reason.pattern: invalid regex"),
        "{err}"
    );

    // Inline roles are checked with the rest of the configuration.
    let inline = dir.path().join("inline.toml");
    std::fs::write(
        &inline,
        "[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n\
         [[policy.roles]]\nname = \"ok\"\n[[policy.roles]]\nname = \"bad\"\n\
         targets = [{ tags = [\"env\"] }]\n",
    )
    .unwrap();
    let out = porthole()
        .args(["serve", "--config"])
        .arg(&inline)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("policy.roles[1].targets[0].tags[0]: \"env\" is not key=value"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_the_policy_on_sighup_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = setup(
        dir.path(),
        POLICY,
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n"
        ),
    );
    let mut child = porthole()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("porthole listening"), "{line:?}");
    // Once it answers, its SIGHUP handler is in place.
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    let changed = "[[roles]]\nname = \"only\"\ntargets = [{ ids = [\"*\"] }]\n";
    std::fs::write(dir.path().join("policy.toml"), changed).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();

    let db = porthole::gateway::store::db::Db::connect(&format!(
        "sqlite://{}",
        dir.path().join("p.db").display()
    ))
    .await
    .unwrap();
    let reload = audit_log::wait_for_event(&db, None, "policy.reload").await;
    assert_eq!(reload.detail["trigger"], "SIGHUP");
    assert_eq!(reload.detail["roles"], serde_json::json!(["only"]));
    use sha2::Digest;
    assert_eq!(
        reload.detail["hash"],
        hex::encode(sha2::Sha256::digest(changed.as_bytes()))
    );
    db.pool().close().await;

    // Still serving after the signal; stops on SIGTERM.
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(
        tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap()
            .success()
    );
}

/// `users add` and `users disable` are audited (`user.add`, `user.disable`, the actor
/// `cli:<the operating-system user>`), and a CLI run beside a running gateway on the same
/// SQLite file never breaks the hash chain: the gateway appends failed sign-ins all along while
/// the CLI adds and disables users, and `porthole audit verify` then passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_changes_from_the_command_line_are_audited_beside_a_running_gateway() {
    use common::gateway::{self, Backend};
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let config = gw.cli_config(dir.path());
    // The gateway writes audit rows all the while: failed sign-ins from many addresses.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = tokio::spawn({
        let url = gw.url.clone();
        let stop = stop.clone();
        async move {
            let http = reqwest::Client::new();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = http
                    .post(format!("{url}/api/v1/auth/login"))
                    .header("origin", &url)
                    .json(&serde_json::json!({"username": format!("nobody{n}"), "password": "wrong-password"}))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    reply.status() == 401 || reply.status() == 429,
                    "{}",
                    reply.status()
                );
                n += 1;
            }
            n
        }
    });
    let users: Vec<String> = (0..6).map(|i| format!("cli-user-{i}")).collect();
    let config_path = config.clone();
    let names = users.clone();
    tokio::task::spawn_blocking(move || {
        for name in &names {
            let mut child = porthole()
                .args(["users", "add", name, "--role", "operator", "--config"])
                .arg(&config_path)
                .env("USER", "ops-oliver")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"correct horse battery\n")
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let out = porthole()
                .args(["users", "disable", name, "--config"])
                .arg(&config_path)
                .env("USER", "ops-oliver")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
        }
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let attempts = hammer.await.unwrap();
    assert!(attempts > 0);

    let db = &gw.state.engine.db;
    let added = audit_log::wait_for_events_of(db, None, "user.add", users.len()).await;
    let disabled = audit_log::wait_for_events_of(db, None, "user.disable", users.len()).await;
    for (event, name) in added.iter().zip(&users) {
        assert_eq!(event.actor, "cli:ops-oliver");
        assert_eq!(event.detail["user"], name.as_str());
        assert_eq!(event.detail["roles"], "operator");
        assert_eq!(event.client_addr, "local");
        assert!(
            event.user_agent.starts_with("porthole users add (pid "),
            "{}",
            event.user_agent
        );
    }
    assert_eq!(disabled[0].detail["user"], users[0].as_str());
    let out = porthole()
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    gw.stop().await;
}

/// Several accounts (issue 15): `--account` checks an `accounts` selector offline, and the
/// AWS role line names the account's own role from `aws_role_arns`.
#[test]
fn check_takes_the_targets_account_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(
        dir.path(),
        "[[roles]]\nname = \"prod-oncall\"\ntargets = [{ accounts = [\"prod*\"] }]\n\
         aws_role_arn = \"arn:aws:iam::333333333333:role/Default\"\n\
         aws_role_arns = { prod = \"arn:aws:iam::111111111111:role/ProdOncall\" }\n",
        "",
    );
    let args = |account: &str| {
        check(
            &config,
            &[
                "alice",
                "i-0abc123",
                "--roles",
                "prod-oncall",
                "--account",
                account,
            ],
        )
    };
    let (code, out, err) = args("prod");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("targets[0] accounts prod*: matches"), "{out}");
    assert!(
        out.contains("AWS role  arn:aws:iam::111111111111:role/ProdOncall (from role prod-oncall"),
        "{out}"
    );
    let (code, out, err) = args("staging");
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("the account staging does not match prod*"),
        "{out}"
    );
}

#[test]
fn check_says_whether_approval_is_needed_and_who_can_give_it() {
    let policy = r#"
[[roles]]
name = "prod"
targets = [{ tags = ["env=prod"] }]
[roles.approval]
approvers = ["leads"]
min_approvals = 2
grant_seconds = 900

[[roles]]
name = "leads"
"#;
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), policy, "");
    let add = |name: &str, role: &str| assert!(add_user(&config, name, role).status.success());
    add("alice", "prod");
    let (code, out, err) = check(&config, &["alice", "i-1", "--tag", "env=prod"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("  approval: 2 approvals by leads, grants up to 900 s\n"),
        "{out}"
    );
    assert!(
        out.contains("APPROVAL  needed first (roles prod): 2 approvals by leads"),
        "{out}"
    );
    assert!(
        out.contains("APPROVERS none: no enabled user but alice holds leads"),
        "{out}"
    );
    add("bob", "leads");
    add("carol", "leads");
    let (_, out, _) = check(&config, &["alice", "i-1", "--tag", "env=prod"]);
    assert!(
        out.contains("APPROVERS bob, carol (holders of leads; never alice for their own request)"),
        "{out}"
    );
    let (_, out, _) = check(
        &config,
        &["dan", "i-1", "--tag", "env=prod", "--roles", "prod"],
    );
    assert!(
        out.contains("APPROVERS holders of leads (leave out --roles"),
        "{out}"
    );
    // A node the role does not select needs nothing: no approval lines.
    let (code, out, _) = check(&config, &["alice", "i-1", "--tag", "env=dev"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(!out.contains("APPROVAL"), "{out}");
}
