//! Sessions that survive (issue 5): reattach exactly where a browser left off, the screen
//! restored for a new page (alternate-screen programs included), bulk output and typed input
//! through faults and SSM socket resumes, the limits, a pasted megabyte (flow control:
//! tests/gateway_flow.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::api::{Api, WAIT};
use common::audit_log;
use common::emulator::NODE;
use common::gateway::{self, Backend, Gateway};
use porthole::gateway::http::attach::CLOSE_SESSION_ENDED;
use porthole::gateway::identity::users::Role;
use porthole::gateway::sessions::screen::Screen;
use porthole::gateway::store::audit;
use porthole::ssm::faults::FaultConfig;
use serde_json::json;
use sha2::{Digest, Sha256};

const REASON: &str = "INC-5000 sessions that survive";

async fn signed_in(gw: &Gateway) -> Api {
    gw.user("alice", &[Role::Operator]).await;
    let mut api = Api::new(gw);
    api.login("alice").await;
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reattach_continues_exactly_where_the_browser_left_off() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let mut api = signed_in(&gw).await;
    let id = api.open(NODE, REASON).await;

    let mut tab = api.attach(&id).await.unwrap();
    tab.type_text("for i in $(seq 1 4000); do echo line-$i; done; echo AL''L-DONE\n")
        .await;
    tab.expect("line-1500").await;
    let (offset, first) = (tab.offset, tab.live.clone());
    drop(tab); // the network goes away mid-output
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut tab = api.attach_since(&id, Some(offset)).await.unwrap();
    tab.expect("ALL-DONE").await;
    tab.until_synced().await;
    assert!(
        !tab.before_sync.starts_with(b"\x1bc"),
        "a replay, not a snapshot"
    );
    let mut all = first;
    all.extend_from_slice(&tab.before_sync);
    all.extend_from_slice(&tab.live);
    let text = String::from_utf8_lossy(&all);
    // Every `line-N` printed, in order (the typed `line-$i` has no number).
    let numbers: Vec<u32> = text
        .split("line-")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    if let Some(at) =
        (0..numbers.len().max(4000)).find(|&i| numbers.get(i) != Some(&(i as u32 + 1)))
    {
        let near = &numbers[at.saturating_sub(3)..(at + 3).min(numbers.len())];
        panic!(
            "lost or repeated output at line {}: {near:?} ({} numbers; first tab ended at {})",
            at + 1,
            numbers.len(),
            offset
        );
    }

    // An offset the gateway no longer holds (or a new page) gets the screen instead.
    let mut tab = api.attach_since(&id, Some(u64::MAX)).await.unwrap();
    tab.until_synced().await;
    assert!(
        tab.screen.starts_with(b"\x1bc"),
        "a snapshot starts with a reset"
    );
    assert!(String::from_utf8_lossy(&tab.screen).contains("ALL-DONE"));
    // The replaced tab's detach is written as it goes: wait for it.
    let kinds = audit_log::wait_for_kinds(&gw.state.engine.db, Some(&id), 6).await;
    assert_eq!(
        kinds,
        [
            "session.start",
            "session.attach",
            "session.detach",
            "session.attach",
            // The third attach is recorded before any byte flows; the second one it replaced
            // detaches after.
            "session.attach",
            "session.detach"
        ]
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_page_gets_vims_screen_back_and_the_history_under_it() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let mut api = signed_in(&gw).await;
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    tab.control(json!({"type": "resize", "cols": 100, "rows": 30}))
        .await;
    tab.type_text("echo MARK-$((40+2))-BEFORE\n").await;
    let at = tab.expect("MARK-42-BEFORE").await;
    tab.type_text("vim -u NONE -N notes.txt\n").await;
    let at = tab.expect_from(at, "notes.txt").await;
    tab.type_text("iHELLO-FROM-VIM\x1b").await;
    tab.expect_from(at, "HELLO-FROM-VIM").await;
    tokio::time::sleep(Duration::from_millis(500)).await; // vim finishes drawing
    drop(tab); // the page is reloaded

    let live = gw.state.engine.live.get(&id).unwrap();
    let model = live.screen_text().await.unwrap();
    assert!(
        model.contains("HELLO-FROM-VIM") && model.contains('~'),
        "{model}"
    );
    let mut tab = api.attach(&id).await.unwrap();
    tab.until_synced().await;
    let mut browser = Screen::new(30, 100, 1000);
    browser.process(&tab.screen);
    assert!(
        browser.alternate(),
        "the new page is in vim's alternate screen"
    );
    assert_eq!(
        browser.text(),
        model,
        "the restored screen is the model's screen"
    );
    // Quitting vim shows the main screen, with what was typed before.
    tab.type_text(":q!\r").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = live.screen_text().await.unwrap();
        if text.contains("MARK-42-BEFORE") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_megabytes_and_typed_input_survive_faults_and_socket_cuts() {
    let gw = gateway::start_with(
        Backend::Sqlite,
        |c| {
            c.faults = FaultConfig::uniform(0.05);
            c.seed = 11;
            c.disconnect_every = Some(Duration::from_secs(3));
        },
        // The input is typed once, at the start; on a loaded machine the 20 MB can take
        // longer than the default idle limit (20 minutes) to come through a debug build.
        |c| c.sessions.idle_timeout_seconds = 2 * 60 * 60,
    )
    .await;
    let mut api = signed_in(&gw).await;
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    let raw = 15_000_000; // base64 makes it 20 MB
    tab.type_text(&format!(
        "head -c {raw} /dev/urandom > data.bin; echo SU\"\"M $(base64 data.bin | sha256sum); \
         echo BE''GIN; base64 data.bin; echo EN''D\n"
    ))
    .await;
    let sum_at = tab.expect("SUM ").await;
    let sum_end = tab.expect_from(sum_at, "\r\n").await;
    let expected = String::from_utf8_lossy(&tab.screen[sum_at..sum_end])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let begin = tab.expect_from(sum_end, "BEGIN\r\n").await;
    let end = tab.expect_from(begin, "\r\nEND\r\n").await;
    let unix: Vec<u8> = tab.screen[begin..end - "END\r\n".len()]
        .iter()
        .copied()
        .filter(|&b| b != b'\r')
        .collect();
    assert!(unix.len() > 20_000_000, "only {} bytes arrived", unix.len());
    assert_eq!(
        hex::encode(Sha256::digest(&unix)),
        expected,
        "output differs"
    );

    let typed: String = (0..300).map(|i| format!("{i:03}")).collect();
    tab.type_text(&format!("echo {typed} | sha256sum\n")).await;
    let digest = hex::encode(Sha256::digest(format!("{typed}\n")));
    tab.expect_from(end, &digest).await;
    assert!(
        tab.texts
            .iter()
            .any(|t| t["type"] == "status" && t["state"] == "reconnecting"),
        "the browser was told about the resumes"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_warn_then_end_the_session_with_a_reason() {
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.sessions.idle_timeout_seconds = 12;
        c.sessions.detached_grace_seconds = 3;
    })
    .await;
    let mut api = signed_in(&gw).await;

    // Idle: warned at 10 s left, ended at 12 s without input.
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    let (code, reason) = tab.closed().await;
    assert_eq!(
        (code, reason.as_str()),
        (CLOSE_SESSION_ENDED, "idle for 12 seconds")
    );
    let warning = tab
        .texts
        .iter()
        .find(|t| t["type"] == "warning")
        .expect("a warning");
    assert!(warning["seconds_left"].as_u64().unwrap() <= 10, "{warning}");
    assert!(
        warning["message"].as_str().unwrap().contains("idle"),
        "{warning}"
    );

    // Detached: no browser for 3 s.
    let id = api.open(NODE, REASON).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let row = api.get(&format!("/api/v1/sessions/{id}")).await;
        if row.body["state"] == "ended" {
            assert_eq!(row.body["end_reason"], "no browser attached for 3 seconds");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ssm = gw.emu.emulator.state().registry.list();
    assert!(
        ssm.iter().all(|s| !s.status.is_active()),
        "terminated at SSM too"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_is_given_up_terminated_and_audited_with_why() {
    let gw = gateway::start(Backend::Sqlite, |c| {
        c.sessions.retransmit_give_up_seconds = 2;
    })
    .await;
    let mut api = signed_in(&gw).await;
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    tab.until_synced().await;
    tab.type_text("echo BEFORE-$((1+1))\n").await;
    tab.expect("BEFORE-2").await;

    // The node hangs: its agent keeps the socket but acknowledges nothing more.
    let hung = gw.emu.emulator.state().registry.active();
    assert_eq!(hung.len(), 1);
    hung[0].freeze();
    let typed = tokio::time::Instant::now();
    tab.type_text("echo NEVER-$((2+2))\n").await;
    let (code, reason) = tab.closed().await;
    let took = typed.elapsed();
    assert_eq!(code, CLOSE_SESSION_ENDED, "{reason}");
    assert!(
        reason.starts_with("gave up after ") && reason.ends_with(" without an acknowledgement"),
        "{reason}"
    );
    assert!(took >= Duration::from_secs(2), "given up after {took:?}");
    assert!(!String::from_utf8_lossy(&tab.screen).contains("NEVER-4"));

    // Terminated at SSM too (the client calls TerminateSession, as the official one does),
    // and the end is audited with why.
    let info = hung[0].info();
    assert!(!info.status.is_active(), "{:?}", info.status);
    let end = audit::list(&gw.state.engine.db, Some(&id))
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "session.end")
        .expect("the end is audited");
    assert_eq!(end.detail["how"], reason.as_str(), "{:?}", end.detail);
    let row = api.get(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(row.body["state"], "ended");
    assert_eq!(row.body["end_reason"], reason.as_str());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_replays_what_was_printed_and_its_hash_is_audited() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let mut api = signed_in(&gw).await;
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    tab.control(json!({"type": "resize", "cols": 90, "rows": 28}))
        .await;
    tab.type_text("printf 'REC-%s héllo wörld ✓ 🦀\\n' $((20+3))\n")
        .await;
    tab.expect("REC-23 héllo wörld ✓ 🦀").await;
    tab.type_text("exit\n").await;
    tab.closed().await;
    let end = audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.end").await;

    let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, reqwest::StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/x-asciicast");
    let file = reply.text.clone();
    assert_eq!(
        end.detail["recording"]["sha256"],
        hex::encode(Sha256::digest(file.as_bytes()))
    );
    assert_eq!(end.detail["recording"]["bytes"], file.len() as u64);
    let mut lines = file.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    let events: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut last = 0.0;
    for e in &events {
        let t = e[0].as_f64().unwrap();
        assert!(t >= last, "times never go back");
        last = t;
    }
    let output: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap())
        .collect();
    // All the session printed: what came before the attach (the browser got it as a screen
    // snapshot), then exactly the bytes the browser was sent live.
    assert!(
        output.as_bytes().ends_with(&tab.live),
        "the recording's output ends with exactly what the browser was sent live:\n{:?}\n{:?}",
        common::api::tail(output.as_bytes()),
        common::api::tail(&tab.live)
    );
    assert!(events.iter().any(|e| e[1] == "r" && e[2] == "90x28"));
    assert!(!events.iter().any(|e| e[1] == "i"), "no input by default");

    // Another operator may not fetch it; an auditor may.
    gw.user("bob", &[Role::Operator]).await;
    gw.user("audrey", &[Role::Auditor]).await;
    let mut bob = Api::new(&gw);
    bob.login("bob").await;
    let reply = bob.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, reqwest::StatusCode::NOT_FOUND);
    let mut audrey = Api::new(&gw);
    audrey.login("audrey").await;
    let reply = audrey
        .get(&format!("/api/v1/sessions/{id}/recording"))
        .await;
    assert_eq!(reply.text, file);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_observes_read_only_and_the_owner_sees_who() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let mut alice = signed_in(&gw).await;
    gw.user("root", &[Role::Admin]).await;
    gw.user("bob", &[Role::Operator]).await;
    let id = alice.open(NODE, REASON).await;
    let mut owner = alice.attach(&id).await.unwrap();
    owner.type_text("echo FIRST-$((1+1))\n").await;
    owner.expect("FIRST-2").await;

    let mut bob = Api::new(&gw);
    bob.login("bob").await;
    let refused = bob.attach_with(&id, "?mode=observe", None).await.err();
    assert_eq!(refused.map(|e| e.0), Some(404), "bob does not even see it");

    let mut root = Api::new(&gw);
    root.login("root").await;
    let mut watcher = root.attach_with(&id, "?mode=observe", None).await.unwrap();
    watcher.until_synced().await;
    assert!(
        String::from_utf8_lossy(&watcher.before_sync).contains("FIRST-2"),
        "the screen first"
    );
    // The owner is told who is watching.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !owner
        .texts
        .iter()
        .any(|t| t["type"] == "observers" && t["names"] == json!(["root"]))
    {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", owner.texts);
        owner.read_within(Duration::from_millis(200)).await;
    }
    // Live output reaches the observer; its input reaches nothing.
    owner.type_text("echo LIVE-$((2+3))\n").await;
    watcher.expect("LIVE-5").await;
    watcher.type_text("echo OBSERVER-$((4+4))\n").await;
    while !watcher.texts.iter().any(|t| t["type"] == "refused") {
        assert!(watcher.read_within(Duration::from_secs(10)).await);
    }
    let at = owner.screen.len();
    owner.type_text("echo DONE-$((5+5))\n").await;
    owner.expect_from(at, "DONE-10").await;
    assert!(!String::from_utf8_lossy(&owner.screen).contains("OBSERVER-8"));
    drop(watcher);
    let events = audit_log::wait_until(
        &gw.state.engine.db,
        Some(&id),
        "a session.observe_end",
        |events| events.iter().any(|e| e.kind == "session.observe_end"),
    )
    .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"session.observe"), "{kinds:?}");
    gw.stop().await;
}

/// A recording of more than a megabyte is streamed from the spool in chunks and arrives whole:
/// the length header, the bytes and the hash in the end event agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_recording_is_streamed_whole() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let mut api = signed_in(&gw).await;
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    tab.type_text("seq 1 200000; echo SE''Q-DONE\n").await;
    tab.expect("SEQ-DONE").await;
    tab.type_text("exit\n").await;
    tab.closed().await;
    let end = audit_log::wait_for_event(&gw.state.engine.db, Some(&id), "session.end").await;
    let bytes = end.detail["recording"]["bytes"].as_u64().unwrap();
    assert!(bytes > 1_000_000, "a recording of {bytes} bytes");

    let reply = api.get(&format!("/api/v1/sessions/{id}/recording")).await;
    assert_eq!(reply.status, reqwest::StatusCode::OK);
    assert_eq!(reply.headers["content-length"], bytes.to_string().as_str());
    assert_eq!(reply.text.len() as u64, bytes);
    assert_eq!(
        end.detail["recording"]["sha256"],
        hex::encode(Sha256::digest(reply.text.as_bytes()))
    );
    // The output as the terminal saw it: the recording's output events joined (a chunk may end
    // anywhere, between two lines too).
    let output: String = reply
        .text
        .lines()
        .skip(1)
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event[1] == "o")
        .filter_map(|event| event[2].as_str().map(str::to_owned))
        .collect();
    assert!(
        output.contains("199999\r\n200000\r\n"),
        "the last lines are there"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_megabyte_arrives_complete_and_in_order() {
    let gw = gateway::start(Backend::Sqlite, |_| {}).await;
    let mut api = signed_in(&gw).await;
    let id = api.open(NODE, REASON).await;
    let mut tab = api.attach(&id).await.unwrap();
    tab.until_synced().await;
    // 16,384 different lines of 64 bytes: 1 MiB, in lines a terminal's line discipline takes.
    let mut paste = String::with_capacity(1 << 20);
    for i in 0..16_384u32 {
        let digest = hex::encode(Sha256::digest(i.to_le_bytes()));
        paste.push_str(&digest[..63]);
        paste.push('\n');
    }
    assert_eq!(paste.len(), 1 << 20);
    let want = hex::encode(Sha256::digest(paste.as_bytes()));
    tab.type_text("stty -echo; echo PASTE-''READY; head -c 1048576 | sha256sum; stty echo\n")
        .await;
    let ready = tab.expect("PASTE-READY").await;
    // As a browser pastes: large messages, which the gateway splits into SSM payloads of at
    // most 1,024 bytes; the PTY takes them as fast as `head` reads.
    let started = std::time::Instant::now();
    for chunk in paste.as_bytes().chunks(16 * 1024) {
        tab.type_text(std::str::from_utf8(chunk).unwrap()).await;
    }
    tokio::time::timeout(Duration::from_secs(120), tab.expect_from(ready, &want))
        .await
        .expect("the pasted megabyte's digest");
    println!("1 MiB pasted and hashed in {:?}", started.elapsed());
    gw.stop().await;
}
