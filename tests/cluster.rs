//! Several gateways on one PostgreSQL database, each its own `porthole serve` process in front
//! of one `porthole emulator` (issue 20): any gateway answers any request; an attach or an
//! observe that reaches a gateway which does not run the session is forwarded to the one that
//! does, signed with the cluster's key; terminate and the live counters work through any
//! gateway; forged, replayed and misaddressed requests between gateways are refused; a second
//! process cannot take a live gateway's id; the survivors end what a killed gateway left; a
//! participant revoked (or changed to read-only) through another gateway is told at once by
//! the gateway running the session.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::api::Api;
use common::emulator::NODE;
use common::gateway::{PASSWORD, fresh_postgres, postgres_admin_url};
use common::procs::{BOUND, Proc, add_user, audit_log, porthole, spawn_emulator};
use nix::sys::signal::{Signal, kill};
use porthole::gateway::cluster::keys::Keys;
use porthole::gateway::cluster::signing::{self, Request};
use porthole::gateway::store::db::Db;
use serde_json::{Value, json};

const REASON: &str = "INC-2001 several gateways test";
/// The URL people use: the load balancer's, the same for every gateway.
const PUBLIC: &str = "http://porthole.test";
const SECRET: &str = "cluster-secret-0123456789abcdef-0123456789";

/// An emulator, a database, and a configuration every gateway shares.
struct Setup {
    _emulator: Proc,
    config: PathBuf,
    db_url: String,
    db_name: String,
    dir: tempfile::TempDir,
}

/// One gateway process.
struct Gw {
    proc: Proc,
    id: String,
    url: String,
}

impl Setup {
    async fn new() -> Self {
        Self::with_emulator(&[]).await
    }

    /// With these `porthole emulator` flags (faults, KMS).
    async fn with_emulator(flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (emulator, endpoint) = spawn_emulator(dir.path(), flags);
        let (db_url, db_name) = fresh_postgres().await;
        let config = dir.path().join("porthole.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\npublic_url = \"{PUBLIC}\"\n\
                 [database]\nurl = \"{db_url}\"\n\
                 [aws]\nendpoint_url = \"{endpoint}\"\naccess_key_id = \"AKIDTEST\"\n\
                 secret_access_key = \"secret\"\nregion = \"us-east-1\"\n\
                 [auth]\njwt_secret = \"cluster-signing-key-0123456789abcdef\"\n\
                 [cluster]\nsecret = \"{SECRET}\"\nheartbeat_seconds = 1\nstale_seconds = 3\n\
                 [recordings]\ndir = \"{}\"\n",
                dir.path().join("recordings").display(),
            ),
        )
        .unwrap();
        let setup = Self {
            _emulator: emulator,
            config,
            db_url,
            db_name,
            dir,
        };
        setup.add_user("alice", "operator");
        setup.add_user("root", "admin");
        setup
    }

    fn add_user(&self, name: &str, role: &str) {
        add_user(&self.config, name, role, PASSWORD);
    }

    /// `porthole serve` as gateway `id`, on a port of its own.
    fn command(&self, id: &str, port: u16) -> std::process::Command {
        let mut command = porthole();
        command
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("PORTHOLE_SERVER__GATEWAY_ID", id)
            .env("PORTHOLE_SESSIONS__MAX_OBSERVERS", "1")
            .env("PORTHOLE_SERVER__LISTEN", format!("127.0.0.1:{port}"));
        command
    }

    fn serve(&self, id: &str) -> Gw {
        self.serve_with(id, &[])
    }

    /// `porthole serve` as gateway `id`, with these environment variables too.
    fn serve_with(&self, id: &str, env: &[(&str, &str)]) -> Gw {
        let port = free_port();
        let mut command = self.command(id, port);
        command.envs(env.iter().copied());
        let mut proc = Proc::spawn(command, self.dir.path().join(format!("{id}.stderr")));
        proc.line_with("porthole listening on");
        Gw {
            proc,
            id: id.to_owned(),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A signed-in client of `gw` (as through the load balancer: the public Origin).
    async fn client(&self, gw: &Gw, name: &str) -> Api {
        let mut api = Api::at(&gw.url);
        api.origin = Some(PUBLIC.into());
        api.login(name).await;
        api
    }

    async fn db(&self) -> Db {
        Db::connect(&self.db_url).await.unwrap()
    }

    /// The audit events of session `id` of type `kind`, once there are `n` (within BOUND).
    async fn events(&self, id: &str, kind: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + BOUND;
        loop {
            let found: Vec<Value> = audit_log(&self.config)
                .into_iter()
                .filter(|e| e["session_id"] == id && e["type"] == kind)
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "{n} {kind} events of {id} expected, found {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn drop_database(&self) {
        let admin = Db::connect(&postgres_admin_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.db_name
        )))
        .execute(admin.pool())
        .await
        .unwrap();
    }
}

/// Moves `api` (and its cookie) to gateway `gw`.
fn through(api: &Api, gw: &Gw) -> Api {
    let mut moved = api.clone();
    moved.base = gw.url.clone();
    moved
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends a signed `POST` of `body` to `path` of `to`, as gateway `from` would (with `keys`),
/// with the headers `edit` leaves; returns the status and body.
async fn signed_post(
    to: &Gw,
    from: &str,
    keys: &Keys,
    path: &str,
    body: &Value,
    edit: impl FnOnce(&mut Vec<(&'static str, String)>),
) -> (u16, String, Vec<(&'static str, String)>) {
    let body = serde_json::to_vec(body).unwrap();
    let request = Request {
        method: "POST",
        path_and_query: path,
        cookie: "",
        body: &body,
    };
    let now = porthole::gateway::store::db::now_ms();
    let mut headers = signing::fresh(from, &to.id, "192.0.2.9", now)
        .headers(keys, &request)
        .to_vec();
    edit(&mut headers);
    let (status, text) = send_raw(to, path, &body, &headers).await;
    (status, text, headers)
}

async fn send_raw(
    to: &Gw,
    path: &str,
    body: &[u8],
    headers: &[(&'static str, String)],
) -> (u16, String) {
    let mut builder = reqwest::Client::new()
        .post(format!("{}{path}", to.url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let reply = builder.send().await.unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_one_gateway_is_reached_through_the_others() {
    let setup = Setup::new().await;
    let a = setup.serve("gw-a");
    let b = setup.serve("gw-b");
    let c = setup.serve("gw-c");

    // Every gateway registered itself, with where the others reach it.
    let db = setup.db().await;
    let registered = porthole::gateway::store::gateways::all(&db).await.unwrap();
    let ids: Vec<&str> = registered.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(ids, ["gw-a", "gw-b", "gw-c"]);
    assert_eq!(registered[1].internal_url, b.url);
    assert!(registered.iter().all(|g| g.state == "running"));

    // Signed in on A, the cookie holds on every gateway (one database).
    let mut alice_a = setup.client(&a, "alice").await;
    let id = alice_a.open(NODE, REASON).await;
    let owner: String = sqlx::query_scalar("SELECT owner_gateway FROM sessions WHERE id = $1")
        .bind(&id)
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(owner, "gw-a");

    // Attach through B: forwarded to A, the shell answers as if B ran it.
    let mut alice_b = through(&alice_a, &b);
    let mut tab = alice_b.attach(&id).await.unwrap();
    tab.type_text("echo FORW''ARDED-$((6*7))\n").await;
    tab.expect("FORWARDED-42").await;

    // Observe through C (an admin): sees what the shell prints next.
    let root_c = setup.client(&c, "root").await;
    let mut watch = root_c
        .attach_with(&id, "?mode=observe", None)
        .await
        .unwrap();
    watch.until_synced().await;
    tab.type_text("echo SEEN''-BY-$((1+1))-EYES\n").await;
    tab.expect("SEEN-BY-2-EYES").await;
    watch.expect("SEEN-BY-2-EYES").await;

    // The live counters, asked of B, come from A: attached, observed by root, bytes out.
    let mut root_b = through(&root_c, &b);
    let page = root_b.get("/live").await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("attached; observed by root"),
        "{}",
        page.text
    );

    // A refusal from the owner reaches the browser as the owner gave it: one observer at a
    // time (sessions.max_observers = 1), which only the owner knows of.
    let refused = root_b
        .attach_with(&id, "?mode=observe", None)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.0, 409, "{refused:?}");
    assert!(refused.1.contains("too_many_observers"), "{refused:?}");

    // Terminate through B: audited with the gateway that ran it, ended by A, the browser
    // (attached through B) told why with the usual close code.
    let reply = alice_b.delete(&format!("/api/v1/sessions/{id}")).await;
    assert!(reply.status.is_success(), "{} {}", reply.status, reply.text);
    let (code, reason) = tokio::time::timeout(BOUND, tab.closed()).await.unwrap();
    assert_eq!((code, reason.as_str()), (4000, "terminated by alice"));
    let (code, _) = tokio::time::timeout(BOUND, watch.closed()).await.unwrap();
    assert_eq!(code, 4000);
    let terminate = setup.events(&id, "session.terminate", 1).await;
    assert_eq!(terminate[0]["actor"], "alice");
    assert_eq!(terminate[0]["detail"]["gateway"], "gw-a");
    let end = setup.events(&id, "session.end", 1).await;
    assert_eq!(end[0]["detail"]["how"], "terminated by alice", "{end:?}");
    // The attach and the observe were recorded by the owner, with the person's address.
    let attach = setup.events(&id, "session.attach", 1).await;
    assert_eq!(attach[0]["client_addr"], "127.0.0.1", "{attach:?}");
    setup.events(&id, "session.observe", 1).await;

    // Once ended, an attach through C is answered as on one gateway.
    let late = through(&alice_a, &c)
        .attach(&id)
        .await
        .err()
        .expect("ended");
    assert_eq!(late.0, 409, "{late:?}");

    drop((a, b, c));
    db.pool().close().await;
    setup.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_between_gateways_must_be_signed_fresh_and_addressed() {
    let setup = Setup::new().await;
    let a = setup.serve("gw-a");
    let _b = setup.serve("gw-b");
    let keys = Keys::derive(SECRET.as_bytes());
    let path = "/internal/v1/sessions/stats";
    let body = json!({"ids": ["nope"]});

    // Signed by B with the cluster's key: answered, once.
    let (status, text, headers) = signed_post(&a, "gw-b", &keys, path, &body, |_| {}).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"stats": {}})
    );
    let again = send_raw(&a, path, &serde_json::to_vec(&body).unwrap(), &headers).await;
    assert_eq!(again.0, 403, "{again:?}");
    assert!(again.1.contains("replayed request"), "{again:?}");

    // Another key, a changed signature, another body, no signature at all.
    let other = Keys::derive(b"not the cluster secret, but as long");
    let (status, text, _) = signed_post(&a, "gw-b", &other, path, &body, |_| {}).await;
    assert_eq!(
        (status, text.contains("bad signature")),
        (403, true),
        "{text}"
    );
    let (status, text, _) = signed_post(&a, "gw-b", &keys, path, &body, |h| {
        for (name, value) in h.iter_mut() {
            if *name == signing::CLIENT {
                *value = "198.51.100.66".into();
            }
        }
    })
    .await;
    assert_eq!(
        (status, text.contains("bad signature")),
        (403, true),
        "{text}"
    );
    let (status, text) = send_raw(&a, path, b"{\"ids\":[]}", &[]).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("x-porthole-from header is missing"), "{text}");

    // Signed for B but sent to A; from a gateway that is not registered.
    let (status, text, _) = signed_post(&a, "gw-b", &keys, path, &body, |h| {
        for (name, value) in h.iter_mut() {
            if *name == signing::TO {
                *value = "gw-b".into();
            }
        }
    })
    .await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains(r#"signed for gateway \"gw-b\", not this one"#),
        "{text}"
    );
    let (status, text, _) = signed_post(&a, "gw-x", &keys, path, &body, |_| {}).await;
    assert_eq!(status, 403, "{text}");
    assert!(
        text.contains("\\\"gw-x\\\" is not a running gateway"),
        "{text}"
    );

    // A forwarded attach with a bad signature is refused before any upgrade.
    let (status, text) = {
        let reply = reqwest::Client::new()
            .get(format!("{}/internal/v1/sessions/x/attach", a.url))
            .header(signing::FROM, "gw-b")
            .header(signing::TO, "gw-a")
            .header(
                signing::TIME,
                porthole::gateway::store::db::now_ms().to_string(),
            )
            .header(signing::NONCE, "00112233445566778899aabbccddeeff")
            .header(signing::CLIENT, "192.0.2.1")
            .header(signing::SIGNATURE, "00".repeat(32))
            .send()
            .await
            .unwrap();
        (reply.status().as_u16(), reply.text().await.unwrap())
    };
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("bad_signature"), "{text}");

    drop(a);
    setup.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_gateways_id_is_not_taken_and_a_killed_ones_sessions_are_ended_by_the_others() {
    let setup = Setup::new().await;
    let mut a = setup.serve("gw-a");
    let b = setup.serve("gw-b");

    // A second process with A's id, while A runs: refused, naming the problem.
    let port = free_port();
    let mut twin = Proc::spawn(
        setup.command("gw-a", port),
        setup.dir.path().join("twin.stderr"),
    );
    let status = twin.exit_within(BOUND).await;
    assert!(!status.success());
    let stderr = twin.stderr();
    assert!(
        stderr.contains("server.gateway_id \"gw-a\" is held by a running gateway"),
        "{stderr}"
    );

    // A session on A; A is killed. B finds A's stale heartbeat and ends the session at SSM,
    // audited (who ended it, whose it was).
    let mut alice = setup.client(&a, "alice").await;
    let id = alice.open(NODE, REASON).await;
    let mut tab = alice.attach(&id).await.unwrap();
    tab.type_text("echo BEFORE''-KILL\n").await;
    tab.expect("BEFORE-KILL").await;
    kill(a.proc.pid(), Signal::SIGKILL).unwrap();
    a.proc.exit_within(BOUND).await;
    let end = setup.events(&id, "session.end", 1).await;
    assert_eq!(end[0]["detail"]["how"], "gateway restart", "{end:?}");
    assert_eq!(end[0]["detail"]["owner_gateway"], "gw-a", "{end:?}");
    assert_eq!(end[0]["detail"]["ended_by_gateway"], "gw-b", "{end:?}");
    assert_eq!(end[0]["detail"]["terminate_session"], true, "{end:?}");
    let mut alice_b = through(&alice, &b);
    let row = alice_b.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(row.body["state"], "ended", "{}", row.text);

    // Now the id is free: a new process takes it (the dead one's row is taken over).
    let _again = setup.serve("gw-a");
    drop(b);
    setup.drop_database().await;
}

/// The numbers of the `n=K` lines of `text`, in order.
fn numbers(text: &str) -> Vec<u64> {
    // What a line shows is what follows its last carriage return (the shell may send an
    // escape sequence and a return before the first one).
    text.lines()
        .filter_map(|line| line.trim_end().rsplit('\r').next())
        .filter_map(|line| line.strip_prefix("n="))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// The shell's PID, as `echo "P""ID=$$"` printed it after `from` on the screen.
async fn shell_pid(tab: &mut common::api::Attach) -> String {
    let from = tab.screen.len();
    tab.type_text("echo \"P\"\"ID=$$\"\n").await;
    let end = tab.expect_from(from, "PID=").await;
    let after = tab.expect_from(end, "\n").await;
    String::from_utf8_lossy(&tab.screen[end..after])
        .trim()
        .to_owned()
}

/// A rolling deploy: a session on A printing a numbered line every 10 ms; SIGTERM to A; the
/// browser is told to reconnect (4010), does so through B with the offset it reached, and the
/// numbers go on with no gap and no repeat, in the same shell.
async fn rolling_deploy(flags: &[&str]) {
    const LAST: u64 = 1200;
    let setup = Setup::with_emulator(flags).await;
    let mut a = setup.serve("gw-a");
    let b = setup.serve("gw-b");
    let mut alice = setup.client(&a, "alice").await;
    let id = alice.open(NODE, REASON).await;
    let mut tab = alice.attach(&id).await.unwrap();
    tab.until_synced().await;
    let pid = shell_pid(&mut tab).await;
    let from = tab.live.len();
    tab.type_text(&format!(
        "i=0; while [ $i -le {LAST} ]; do echo n=$i; i=$((i+1)); sleep 0.01; done\n"
    ))
    .await;
    let seen = tab.expect_from(tab.screen.len(), "n=150\r\n").await;
    assert!(seen > 0);

    kill(a.proc.pid(), Signal::SIGTERM).unwrap();
    let signalled = Instant::now();
    let (code, reason) = tokio::time::timeout(BOUND, tab.closed()).await.unwrap();
    assert_eq!(code, 4010, "{reason}; texts {:?}", tab.texts);
    let status = a.proc.exit_within(BOUND).await;
    assert!(status.success(), "{status:?}; stderr:\n{}", a.proc.stderr());

    // Through B (the load balancer's choice once A is gone), from the offset reached.
    let alice_b = through(&alice, &b);
    let mut again = alice_b.attach_since(&id, Some(tab.offset)).await.unwrap();
    let answered = {
        again.expect_from(0, "n=").await;
        signalled.elapsed()
    };
    again.expect_from(0, &format!("n={LAST}\r\n")).await;
    let mut stream = tab.live[from..].to_vec();
    stream.extend_from_slice(&again.before_sync);
    stream.extend_from_slice(&again.live);
    let text = String::from_utf8_lossy(&stream);
    let got = numbers(&text);
    let want: Vec<u64> = (0..=LAST).collect();
    assert!(
        got == want,
        "numbers with a gap or a repeat across the hand-over: {:?} … {:?}",
        &text[..text.len().min(400)],
        got.windows(2).find(|w| w[1] != w[0] + 1)
    );
    assert_eq!(shell_pid(&mut again).await, pid, "the same shell");
    eprintln!("hand-over: the shell answered through B {answered:?} after SIGTERM");

    // Audited once, by the taker; the row is B's; nothing ended.
    let handover = setup.events(&id, "session.handover", 1).await;
    assert_eq!(handover.len(), 1, "{handover:?}");
    assert_eq!(handover[0]["detail"]["from"], "gw-a");
    assert_eq!(handover[0]["detail"]["to"], "gw-b");
    let db = setup.db().await;
    let (owner, state): (String, String) =
        sqlx::query_as("SELECT owner_gateway, state FROM sessions WHERE id = $1")
            .bind(&id)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!((owner.as_str(), state.as_str()), ("gw-b", "active"));

    // It ends as any session does, through B; its recording holds the whole run.
    let mut alice_b = alice_b;
    let reply = alice_b.delete(&format!("/api/v1/sessions/{id}")).await;
    assert!(reply.status.is_success(), "{}", reply.text);
    let end = setup.events(&id, "session.end", 1).await;
    assert_eq!(end[0]["detail"]["how"], "terminated by alice", "{end:?}");
    let cast = alice_b
        .get(&format!("/api/v1/sessions/{id}/recording"))
        .await;
    assert_eq!(cast.status, 200, "{}", cast.text);
    let output: String = cast
        .text
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap_or_default().to_owned())
        .collect();
    let recorded = numbers(&output);
    assert_eq!(recorded, want, "the recording across the hand-over");
    db.pool().close().await;
    drop(b);
    setup.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_keeps_the_shell_and_every_byte() {
    rolling_deploy(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_keeps_a_kms_session() {
    rolling_deploy(&["--kms", "alias/porthole-test"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_keeps_the_session_through_faults() {
    rolling_deploy(&["--drop", "0.05", "--dup", "0.05", "--reorder", "0.05"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_other_gateway_a_stopping_one_ends_its_sessions_as_before() {
    let setup = Setup::new().await;
    let mut a = setup.serve("gw-a");
    let mut alice = setup.client(&a, "alice").await;
    let id = alice.open(NODE, REASON).await;
    let mut tab = alice.attach(&id).await.unwrap();
    tab.until_synced().await;
    kill(a.proc.pid(), Signal::SIGTERM).unwrap();
    let (code, reason) = tokio::time::timeout(BOUND, tab.closed()).await.unwrap();
    assert_eq!((code, reason.as_str()), (4000, "gateway shutdown"));
    assert!(a.proc.exit_within(BOUND).await.success());
    let end = setup.events(&id, "session.end", 1).await;
    assert_eq!(end[0]["detail"]["how"], "gateway shutdown");
    setup.drop_database().await;
}

/// Median and largest of `samples`.
fn median_max(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    (samples[samples.len() / 2], samples[samples.len() - 1])
}

/// One keystroke's round trip: a character typed, until it comes back (the shell's echo).
async fn keystroke(tab: &mut common::api::Attach) -> Duration {
    let before = tab.screen.len();
    let sent = Instant::now();
    tab.type_text("a").await;
    while tab.screen.len() == before {
        assert!(tab.read_within(BOUND).await, "no echo");
    }
    sent.elapsed()
}

/// Hand-overs back and forth, and keystrokes direct and forwarded: each hand-over closes with
/// 4010 and the shell answers through the other gateway; each keystroke comes back. In CI a
/// few of each; with `PORTHOLE_MEASURE=1` the counts of docs/performance.md ("Several
/// gateways"), whose numbers it prints:
/// `PORTHOLE_MEASURE=1 cargo test --locked --test cluster -- --nocapture repeat`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_overs_and_forwarded_keystrokes_repeat_cleanly() {
    let measure = std::env::var_os("PORTHOLE_MEASURE").is_some();
    let (handovers, rounds, trips) = if measure { (20, 5, 40) } else { (3, 1, 10) };
    let setup = Setup::new().await;
    let mut gws = [Some(setup.serve("gw-a")), Some(setup.serve("gw-b"))];
    let mut alice = setup.client(gws[0].as_ref().unwrap(), "alice").await;
    let id = alice.open(NODE, REASON).await;

    // Keystrokes: direct to the owner against forwarded through the other, alternating.
    let (mut direct, mut forwarded) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (via, samples) in [(0usize, &mut direct), (1, &mut forwarded)] {
            let client = through(&alice, gws[via].as_ref().unwrap());
            let mut tab = client.attach(&id).await.unwrap();
            tab.until_synced().await;
            for _ in 0..trips {
                samples.push(keystroke(&mut tab).await);
            }
            tab.type_text("\u{15}").await; // Ctrl-U: the line is cleared
            tab.socket.close(None).await.unwrap();
            eprintln!("round {round}: via gateway {via}");
        }
    }
    let (d_med, d_max) = median_max(direct);
    let (f_med, f_max) = median_max(forwarded);
    eprintln!(
        "keystroke round trip, {} each: direct median {d_med:?} max {d_max:?}; forwarded \
         median {f_med:?} max {f_max:?}; added median {:?}",
        rounds * trips,
        f_med.saturating_sub(d_med)
    );

    // Hand-overs: SIGTERM to the owner; the browser reconnects through the other gateway
    // with its offset; the time until the shell answers there. The stopped one comes back.
    let mut owner = 0usize;
    let mut tab = through(&alice, gws[owner].as_ref().unwrap())
        .attach(&id)
        .await
        .unwrap();
    tab.until_synced().await;
    let mut took = Vec::new();
    for i in 0..handovers {
        let other = 1 - owner;
        let mut stopping = gws[owner].take().unwrap();
        let signalled = Instant::now();
        kill(stopping.proc.pid(), Signal::SIGTERM).unwrap();
        let (code, reason) = tokio::time::timeout(BOUND, tab.closed()).await.unwrap();
        assert_eq!(code, 4010, "{reason}");
        tab = through(&alice, gws[other].as_ref().unwrap())
            .attach_since(&id, Some(tab.offset))
            .await
            .unwrap();
        tab.until_synced().await;
        let from = tab.screen.len();
        tab.type_text(&format!("echo H''O-{i}\n")).await;
        tab.expect_from(from, &format!("HO-{i}")).await;
        took.push(signalled.elapsed());
        assert!(stopping.proc.exit_within(BOUND).await.success());
        gws[owner] = Some(setup.serve(&stopping.id));
        drop(stopping);
        owner = other;
    }
    let (h_med, h_max) = median_max(took.clone());
    eprintln!(
        "SIGTERM to the shell answering through the other gateway, {handovers} hand-overs: \
         median {h_med:?}, max {h_max:?}; all {took:?}"
    );
    drop(gws);
    setup.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_cannot_take_the_session_leaves_it_to_end_cleanly() {
    let setup = Setup::new().await;
    let mut a = setup.serve("gw-a");
    // B has no AWS clients for the session's region: its take-over fails after it has read
    // the hand-over.
    let port = free_port();
    let mut command = setup.command("gw-b", port);
    command.env("PORTHOLE_AWS__REGION", "eu-west-1");
    let mut b = Proc::spawn(command, setup.dir.path().join("gw-b.stderr"));
    b.line_with("porthole listening on");
    let mut alice = setup.client(&a, "alice").await;
    let id = alice.open(NODE, REASON).await;
    let mut tab = alice.attach(&id).await.unwrap();
    tab.until_synced().await;
    kill(a.proc.pid(), Signal::SIGTERM).unwrap();
    tokio::time::timeout(BOUND, tab.closed()).await.unwrap();
    assert!(a.proc.exit_within(BOUND).await.success());
    // A carried it on and ended it as a stopping gateway does; nothing was handed over and
    // no sealed state is left behind.
    let end = setup.events(&id, "session.end", 1).await;
    assert_eq!(end[0]["detail"]["how"], "gateway shutdown", "{end:?}");
    let db = setup.db().await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM handovers")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    let handovers: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE type = 'session.handover'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(handovers, 0);
    let said = std::fs::read_to_string(setup.dir.path().join("gw-b.stderr")).unwrap();
    assert!(said.contains("cannot take over"), "B says why: {said}");
    db.pool().close().await;
    drop(b);
    setup.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attach_while_the_session_moves_is_told_to_try_again() {
    let setup = Setup::new().await;
    let a = setup.serve("gw-a");
    let b = setup.serve("gw-b");
    let mut alice = setup.client(&a, "alice").await;
    let id = alice.open(NODE, REASON).await;
    let db = setup.db().await;
    // The moment of a hand-over: the state waits in `handovers`, no running gateway owns the
    // row yet.
    sqlx::query(
        "INSERT INTO handovers (session_id, from_gateway, to_gateway, sealed, created_at) \
         VALUES ($1, 'gw-a', 'gw-b', 'x', 0)",
    )
    .bind(&id)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE sessions SET owner_gateway = 'gw-gone' WHERE id = $1")
        .bind(&id)
        .execute(db.pool())
        .await
        .unwrap();
    let (status, body) = through(&alice, &b)
        .attach(&id)
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("handing_over"), "{body}");
    // Once the row names its gateway again, the attach is forwarded to it.
    sqlx::query("UPDATE sessions SET owner_gateway = 'gw-a' WHERE id = $1")
        .bind(&id)
        .execute(db.pool())
        .await
        .unwrap();
    let mut tab = through(&alice, &b).attach(&id).await.unwrap();
    tab.type_text("echo BA''CK\n").await;
    tab.expect("BACK").await;
    db.pool().close().await;
    drop((a, b));
    setup.drop_database().await;
}

/// Sockets that look at their invitation only hourly: whatever closes them sooner is the push
/// from the gateway that made the change.
const HOURLY_RECHECK: &[(&str, &str)] =
    &[("PORTHOLE_SESSIONS__PARTICIPANT_RECHECK_SECONDS", "3600")];

fn participants(id: &str) -> String {
    format!("/api/v1/sessions/{id}/participants")
}

/// Reads `tab` until a presence message in which `name` takes part as `mode` arrived.
async fn until_mode(tab: &mut common::api::Attach, name: &str, mode: &str) {
    let deadline = Instant::now() + BOUND;
    let holds = |t: &Value| {
        t["type"] == "presence"
            && t["people"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == name && p["mode"] == mode))
    };
    while !tab
        .texts
        .iter()
        .rev()
        .find(|t| t["type"] == "presence")
        .is_some_and(holds)
    {
        assert!(
            Instant::now() < deadline,
            "{name} never shown as {mode}: {:?}",
            tab.texts
        );
        tab.read_within(Duration::from_millis(200)).await;
        assert!(tab.close.is_none(), "closed: {:?}", tab.close);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_through_another_gateway_closes_the_participants_socket_at_once() {
    let setup = Setup::new().await;
    setup.add_user("bob", "operator");
    setup.add_user("carol", "operator");
    let a = setup.serve_with("gw-a", HOURLY_RECHECK);
    let b = setup.serve_with("gw-b", HOURLY_RECHECK);

    // The session runs on A; its owner shares it through B.
    let mut alice_a = setup.client(&a, "alice").await;
    let id = alice_a.open(NODE, REASON).await;
    let mut owner = alice_a.attach(&id).await.unwrap();
    owner.until_synced().await;
    let mut alice_b = through(&alice_a, &b);
    for (who, mode) in [("bob", "write"), ("carol", "read")] {
        let reply = alice_b
            .post(&participants(&id), &json!({"user": who, "mode": mode}))
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    // Bob joins through B (forwarded to A), carol straight at A.
    let bob = setup.client(&b, "bob").await;
    let mut bob_tab = bob.attach(&id).await.unwrap();
    bob_tab.until_synced().await;
    let carol = setup.client(&a, "carol").await;
    let mut carol_tab = carol.attach(&id).await.unwrap();
    carol_tab.until_synced().await;
    let at = owner.screen.len();
    bob_tab.type_text("echo BOB-$((6*7))\n").await;
    owner.expect_from(at, "BOB-42").await;

    // Write to read, through B: A applies it at once; bob's keys are refused from then on.
    let reply = alice_b
        .post(&participants(&id), &json!({"user": "bob", "mode": "read"}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    until_mode(&mut bob_tab, "bob", "read").await;
    bob_tab.type_text("echo NOT''-SENT\n").await;
    while !bob_tab.texts.iter().any(|t| t["type"] == "refused") {
        assert!(bob_tab.read_within(BOUND).await, "{:?}", bob_tab.close);
    }

    // Revoked through B: bob's socket (through B, held by A) closes with 4005 at once.
    let asked = Instant::now();
    let reply = alice_b.delete(&format!("{}/bob", participants(&id))).await;
    assert_eq!(reply.status, 204, "{}", reply.text);
    let (code, why) = tokio::time::timeout(BOUND, bob_tab.closed()).await.unwrap();
    assert_eq!(code, 4005, "{why}");
    assert!(why.contains("alice stopped sharing"), "{why}");
    eprintln!("revoked through B, closed by A after {:?}", asked.elapsed());
    assert!(!String::from_utf8_lossy(&owner.screen).contains("NOT-SENT"));
    let removed = setup.events(&id, "session.participant.remove", 1).await;
    assert_eq!(removed[0]["actor"], "alice");
    assert_eq!(removed[0]["detail"]["participant"], "bob");
    assert_eq!(removed[0]["detail"]["mode"], "read");

    // The internal request is taken only signed by a live gateway. Carol's invitation goes
    // from the database alone (as if a revocation had not been pushed): unsigned or badly
    // signed requests to apply it are refused, and her socket stays open.
    let db = setup.db().await;
    sqlx::query(
        "DELETE FROM session_participants WHERE session_id = $1 AND user_id = \
         (SELECT id FROM users WHERE name = 'carol')",
    )
    .bind(&id)
    .execute(db.pool())
    .await
    .unwrap();
    let path = participants(&id).replacen("/api/", "/internal/", 1);
    let body = json!({"user": "carol"});
    let (status, text) = send_raw(&a, &path, &serde_json::to_vec(&body).unwrap(), &[]).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("x-porthole-from header is missing"), "{text}");
    let other = Keys::derive(b"not the cluster secret, but as long");
    let (status, text, _) = signed_post(&a, "gw-b", &other, &path, &body, |_| {}).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("bad signature"), "{text}");
    let keys = Keys::derive(SECRET.as_bytes());
    let (status, text, _) = signed_post(
        &a,
        "gw-b",
        &keys,
        &path,
        &json!({"user": "carol", "mode": "write"}),
        |_| {},
    )
    .await;
    assert_eq!(status, 400, "an unknown field: {text}");
    let at = owner.screen.len();
    owner.type_text("echo STILL-$((3+4))\n").await;
    owner.expect_from(at, "STILL-7").await;
    carol_tab.expect("STILL-7").await;
    assert!(carol_tab.close.is_none());
    // Signed with the cluster's key: applied, her socket closed at once.
    let (status, text, _) = signed_post(&a, "gw-b", &keys, &path, &body, |_| {}).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"user": "carol", "mode": null})
    );
    let (code, why) = tokio::time::timeout(BOUND, carol_tab.closed())
        .await
        .unwrap();
    assert_eq!(code, 4005, "{why}");
    // Asked of a gateway that does not run the session: 409, nothing done.
    let (status, text, _) = signed_post(&b, "gw-a", &keys, &path, &body, |_| {}).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("not running on this gateway"), "{text}");

    // The owner's shell is untouched throughout.
    let at = owner.screen.len();
    owner.type_text("echo MINE-$((9+9))\n").await;
    owner.expect_from(at, "MINE-18").await;
    db.pool().close().await;
    drop((a, b));
    setup.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_the_running_gateway_cannot_be_told_of_still_stands_and_the_recheck_applies_it()
 {
    let setup = Setup::new().await;
    setup.add_user("bob", "operator");
    // The default look at the table: every 2 s.
    let a = setup.serve("gw-a");
    let b = setup.serve("gw-b");
    let mut alice_a = setup.client(&a, "alice").await;
    let id = alice_a.open(NODE, REASON).await;
    let reply = alice_a
        .post(&participants(&id), &json!({"user": "bob", "mode": "write"}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let bob = setup.client(&a, "bob").await;
    let mut bob_tab = bob.attach(&id).await.unwrap();
    bob_tab.until_synced().await;

    // B can no longer reach A (its registered address answers nothing).
    let db = setup.db().await;
    sqlx::query("UPDATE gateways SET internal_url = $1 WHERE id = 'gw-a'")
        .bind(format!("http://127.0.0.1:{}", free_port()))
        .execute(db.pool())
        .await
        .unwrap();
    let mut alice_b = through(&alice_a, &b);
    let reply = alice_b.delete(&format!("{}/bob", participants(&id))).await;
    assert_eq!(reply.status, 204, "the revocation stands: {}", reply.text);
    let (code, why) = tokio::time::timeout(BOUND, bob_tab.closed()).await.unwrap();
    assert_eq!(code, 4005, "{why}");
    assert!(why.contains("alice stopped sharing"), "{why}");
    let said = std::fs::read_to_string(setup.dir.path().join("gw-b.stderr")).unwrap();
    assert!(
        said.contains("could not tell the gateway running the session")
            && said.contains("notices it within 2 s"),
        "B says why and what follows: {said}"
    );
    let refused = bob.attach(&id).await.err().expect("no longer invited");
    assert_eq!(refused.0, 404, "{refused:?}");
    db.pool().close().await;
    drop((a, b));
    setup.drop_database().await;
}
