//! Clean shutdown and crash recovery (issue 5) with the real binaries: `porthole serve` in
//! front of `porthole emulator`, each its own process. SIGTERM mid-session tells the attached
//! browser, terminates the SSM session and audits the end as "gateway shutdown"; after a
//! kill -9 the SSM session is left running until the gateway starts again, which terminates it
//! and audits the end as "gateway restart".
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::types::{SessionState, SessionStatus};
use common::api::{Api, Attach};
use common::emulator::NODE;
use common::gateway::PASSWORD;
use common::procs::{BOUND, Proc, add_user, audit_log, porthole, spawn_emulator};
use nix::sys::signal::{Signal, kill};
use serde_json::Value;

const REASON: &str = "INC-5001 gateway lifecycle test";

/// An emulator and a gateway configuration in front of it, in one temporary folder.
struct Setup {
    // Dropped in this order: the emulator stops before its folder goes.
    _emulator: Proc,
    ssm: aws_sdk_ssm::Client,
    config: PathBuf,
    url: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (emulator, endpoint) = spawn_emulator(dir.path(), &[]);

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let config = dir.path().join("porthole.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{url}\"\n\
                 [database]\nurl = \"sqlite://{db}\"\n\
                 [aws]\nendpoint_url = \"{endpoint}\"\naccess_key_id = \"AKIDTEST\"\n\
                 secret_access_key = \"secret\"\nregion = \"us-east-1\"\n\
                 [auth]\njwt_secret = \"lifecycle-signing-key-0123456789abcdef\"\n",
                db = dir.path().join("porthole.db").display(),
            ),
        )
        .unwrap();

        add_user(&config, "alice", "operator", PASSWORD);

        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        Self {
            config,
            url,
            ssm: aws_sdk_ssm::Client::new(&sdk),
            _emulator: emulator,
            dir,
        }
    }

    /// `porthole serve` with this configuration, once it says it is listening.
    fn serve(&self, name: &str) -> Proc {
        let mut command = porthole();
        command.args(["serve", "--config"]).arg(&self.config);
        let mut gateway = Proc::spawn(command, self.dir.path().join(format!("{name}.stderr")));
        gateway.line_with("porthole listening on");
        gateway
    }

    /// A signed-in API client for alice.
    async fn alice(&self) -> Api {
        let mut api = Api::at(&self.url);
        api.login("alice").await;
        api
    }

    /// The ids of the emulator's sessions on [`NODE`] in `state`.
    async fn ssm_sessions(&self, state: SessionState) -> Vec<(String, Option<SessionStatus>)> {
        let reply = self
            .ssm
            .describe_sessions()
            .state(state)
            .send()
            .await
            .unwrap();
        reply
            .sessions()
            .iter()
            .filter(|s| s.target() == Some(NODE))
            .map(|s| (s.session_id().unwrap().to_owned(), s.status().cloned()))
            .collect()
    }

    /// Waits (within [`BOUND`]) for the emulator to list `ssm_id` as ended.
    async fn expect_terminated(&self, ssm_id: &str) {
        let deadline = Instant::now() + BOUND;
        loop {
            let history = self.ssm_sessions(SessionState::History).await;
            let found = history.iter().find(|(id, _)| id == ssm_id);
            if let Some((_, status)) = found {
                assert!(
                    matches!(
                        status,
                        Some(SessionStatus::Terminated | SessionStatus::Terminating)
                    ),
                    "{history:?}"
                );
                let active = self.ssm_sessions(SessionState::Active).await;
                assert!(!active.iter().any(|(id, _)| id == ssm_id), "{active:?}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the emulator never ended {ssm_id}: history {history:?}, active {:?}",
                self.ssm_sessions(SessionState::Active).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The audit log, as `porthole audit export --format jsonl` prints it.
    fn audit(&self) -> Vec<Value> {
        audit_log(&self.config)
    }

    /// The `session.end` events of session `id`, and the whole log (for failure messages).
    fn ends(&self, id: &str) -> (Vec<Value>, Vec<Value>) {
        let all = self.audit();
        let ends = all
            .iter()
            .filter(|e| e["type"] == "session.end" && e["session_id"] == id)
            .cloned()
            .collect();
        (ends, all)
    }
}

/// Signs in, starts a session on [`NODE`], attaches and sees a marker echoed by the shell.
/// Returns the gateway's session id, the emulator's session id and the attached socket.
async fn live_session(setup: &Setup) -> (String, String, Attach) {
    let mut api = setup.alice().await;
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    // The quotes keep the typed echo from matching; only the shell's output does.
    tab.type_text("echo LIFE''CYCLE-MARK\n").await;
    tab.expect("LIFECYCLE-MARK").await;
    let active = setup.ssm_sessions(SessionState::Active).await;
    let [(ssm_id, _)] = active.as_slice() else {
        panic!("one active SSM session on {NODE}: {active:?}")
    };
    (id, ssm_id.clone(), tab)
}

fn assert_one_end((ends, all): (Vec<Value>, Vec<Value>), how: &str, ssm_id: &str) {
    let [end] = ends.as_slice() else {
        panic!("one session.end expected; the audit log: {all:#?}")
    };
    assert_eq!(end["detail"]["how"], how, "{end:#}");
    assert_eq!(end["detail"]["ssm_session_id"], ssm_id, "{end:#}");
}

#[tokio::test]
async fn sigterm_mid_session_tells_the_browser_terminates_and_audits() {
    let setup = Setup::new().await;
    let mut gateway = setup.serve("gateway");
    let (id, ssm_id, mut tab) = live_session(&setup).await;

    kill(gateway.pid(), Signal::SIGTERM).unwrap();
    let signalled = Instant::now();
    let (code, reason) = tokio::time::timeout(BOUND, tab.closed())
        .await
        .expect("the attached socket was not closed");
    let told = tab
        .texts
        .iter()
        .any(|t| t["type"] == "closed" && t["reason"] == "gateway shutdown");
    assert!(
        (code == 4000 && reason == "gateway shutdown") || told,
        "closed with {code} {reason:?}; texts {:?}",
        tab.texts
    );
    let status = gateway
        .exit_within(BOUND.saturating_sub(signalled.elapsed()))
        .await;
    assert!(
        status.success(),
        "{status:?}; stderr:\n{}",
        gateway.stderr()
    );

    setup.expect_terminated(&ssm_id).await;
    assert_one_end(setup.ends(&id), "gateway shutdown", &ssm_id);
}

#[tokio::test]
async fn after_kill_9_a_restart_terminates_the_left_session_and_audits_it() {
    let setup = Setup::new().await;
    let mut gateway = setup.serve("gateway");
    let (id, ssm_id, _tab) = live_session(&setup).await;

    kill(gateway.pid(), Signal::SIGKILL).unwrap();
    let status = gateway.exit_within(BOUND).await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    // Nobody ended it: the SSM session is still running, and nothing is audited yet.
    let active = setup.ssm_sessions(SessionState::Active).await;
    assert!(
        active.iter().any(|(s, _)| s == &ssm_id),
        "{ssm_id} not active after the kill: {active:?}"
    );
    let (ends, all) = setup.ends(&id);
    assert!(ends.is_empty(), "ended before the restart: {all:#?}");

    let mut again = setup.serve("gateway-restarted");
    setup.expect_terminated(&ssm_id).await;
    assert_one_end(setup.ends(&id), "gateway restart", &ssm_id);
    let mut api = setup.alice().await;
    let reply = api.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["state"], "ended", "{}", reply.text);
    assert_eq!(
        reply.body["end_reason"], "gateway restart",
        "{}",
        reply.text
    );

    // With nothing live, the restarted gateway still stops cleanly.
    kill(again.pid(), Signal::SIGTERM).unwrap();
    let status = again.exit_within(BOUND).await;
    assert!(status.success(), "{status:?}; stderr:\n{}", again.stderr());
}
